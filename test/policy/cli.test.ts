/**
 * `airlock policy show|test`, in process. The command definitions below are the ones proposed
 * for src/cli/program.ts (kept in step by hand until they are wired there).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { openTestStore } from '../support/engines.js';
import type { Cli } from '../../src/cli/cli.js';
import { act, collect, UsageError } from '../../src/cli/cli.js';
import type { Io } from '../../src/cli/io.js';
import * as handlers from '../../src/cli/handlers/policy.js';
import { PolicyEngine, defaultPolicies, parsePolicyFiles, writePolicyVersion } from '../../src/policy/index.js';

function sink(): { stream: Writable; text: () => string } {
  let buf = '';
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, done) {
      buf += chunk.toString();
      done();
    },
  });
  return { stream, text: () => buf };
}

async function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; error?: unknown }> {
  const out = sink();
  const err = sink();
  const io: Io = { stdout: out.stream, stderr: err.stream, stdin: new PassThrough(), env, cwd: process.cwd(), stderrIsTTY: false };
  const cli: Cli = { io, exitCode: 0, logLevel: undefined };
  const program = new Command('airlock').exitOverride();
  const policy = program.command('policy');
  policy
    .command('show')
    .option('--policies <dir>')
    .option('--active')
    .option('--schema')
    .option('--json')
    .action(act(cli, (command) => handlers.show(cli, command)));
  policy
    .command('test')
    .requiredOption('--principal <type:id>')
    .option('--role <name>', '', collect)
    .option('--attr <key=value>', '', collect)
    .requiredOption('--action <action>')
    .option('--resource <type:id>')
    .option('--mfa')
    .option('--mfa-age <seconds>')
    .option('--auth-method <method>')
    .option('--source-address <address>')
    .option('--policies <dir>')
    .option('--active')
    .option('--json')
    .action(act(cli, (command) => handlers.test(cli, command)));
  try {
    await program.parseAsync(['node', 'airlock', ...args]);
    return { code: cli.exitCode, stdout: out.text() };
  } catch (error) {
    return { code: -1, stdout: out.text(), error };
  }
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function policyDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-policy-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

describe('airlock policy show', () => {
  it('prints every shipped policy with the digest', async () => {
    const r = await run(['policy', 'show']);
    expect(r.code).toBe(0);
    const digest = PolicyEngine.load(defaultPolicies()).digest;
    expect(r.stdout).toContain(digest);
    for (const id of Object.keys(defaultPolicies())) expect(r.stdout).toContain(`@id("${id}")`);
  });

  it('--json gives the set as id -> text; --schema prints the schema', async () => {
    const r = await run(['policy', 'show', '--json']);
    const doc = JSON.parse(r.stdout) as { source: string; digest: string; policies: Record<string, string> };
    expect(doc.source).toBe('defaults');
    expect(doc.policies).toEqual(defaultPolicies());
    const s = await run(['policy', 'show', '--schema']);
    expect(s.stdout).toContain('namespace Airlock');
  });

  it('--policies DIR validates the directory and refuses an invalid one', async () => {
    const good = policyDir({ 'a.cedar': '@id("only") permit (principal, action == Airlock::Action::"runs.read", resource);' });
    const r = await run(['policy', 'show', '--policies', good, '--json']);
    expect((JSON.parse(r.stdout) as { policies: object }).policies).toEqual({ only: '@id("only") permit (principal, action == Airlock::Action::"runs.read", resource);' });
    const bad = policyDir({ 'a.cedar': '@id("typo") permit (principal, action == Airlock::Action::"runs.raed", resource);' });
    const b = await run(['policy', 'show', '--policies', bad]);
    expect(b.error).toMatchObject({ code: 'POLICY_INVALID', message: expect.stringContaining('typo') as unknown });
  });
});

describe('--active reads the version in force from the database', () => {
  it('shows and tests against the stored version, and falls back to the defaults before any is stored', async () => {
    const t = await openTestStore('sqlite');
    try {
      if (t.config.kind !== 'sqlite') throw new Error('sqlite expected');
      const env = { AIRLOCK_DATABASE_URL: `sqlite:${t.config.path}`, AIRLOCK_HOME: t.home };
      const before = await run(['policy', 'show', '--active', '--json'], env);
      expect(JSON.parse(before.stdout)).toMatchObject({ source: 'defaults', version: null });
      const extra = parsePolicyFiles([{ file: 'ci.cedar', text: '@id("role-ci") permit (principal in Airlock::Role::"ci", action == Airlock::Action::"runs.read", resource);' }]);
      await t.store.transact((tx) => writePolicyVersion(tx, { policies: defaultPolicies(), author: 'system', reason: 'defaults', now: new Date() }));
      await t.store.transact((tx) => writePolicyVersion(tx, { policies: { ...defaultPolicies(), ...extra }, author: 'user:root', reason: 'ci', now: new Date() }));
      const shown = await run(['policy', 'show', '--active', '--json'], env);
      expect(JSON.parse(shown.stdout)).toMatchObject({ source: 'active', version: 1 });
      const tested = await run(['policy', 'test', '--active', '--principal', 'user:bot', '--role', 'ci', '--action', 'runs.read'], env);
      expect(tested.code).toBe(0);
      expect(tested.stdout).toContain('active version 1');
      expect((await run(['policy', 'test', '--principal', 'user:bot', '--role', 'ci', '--action', 'runs.read'], env)).code).toBe(1);
    } finally {
      await t.cleanup();
    }
  });
});

describe('airlock policy test', () => {
  it('allows (exit 0) and names the deciding policy', async () => {
    const r = await run(['policy', 'test', '--principal', 'user:alice', '--role', 'developer', '--action', 'runs.read']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ALLOW/);
    expect(r.stdout).toContain('deciding policies: role-developer');
  });

  it('denies (exit 1) and explains step-up', async () => {
    const r = await run(['policy', 'test', '--principal', 'user:root', '--role', 'admin', '--action', 'policies.update', '--mfa-age', '301', '--json']);
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as { allowed: boolean; policies: string[]; refusal: string; request: { context: { mfa: boolean } } };
    expect(doc).toMatchObject({ allowed: false, policies: ['step-up-required'], refusal: 'STEP_UP_REQUIRED' });
    expect(doc.request.context.mfa).toBe(true);
    const fresh = await run(['policy', 'test', '--principal', 'user:root', '--role', 'admin', '--action', 'policies.update', '--mfa', '--mfa-age', '5']);
    expect(fresh.code).toBe(0);
  });

  it('denies self role change and anonymous access by default', async () => {
    const self = await run(['policy', 'test', '--principal', 'user:root', '--role', 'admin', '--mfa', '--action', 'users.roles.update', '--resource', 'user:root', '--json']);
    expect(JSON.parse(self.stdout)).toMatchObject({ allowed: false, policies: ['no-self-role-change'], refusal: 'FORBIDDEN' });
    const anon = await run(['policy', 'test', '--principal', 'anonymous', '--action', 'audit.entries.read']);
    expect(anon.code).toBe(1);
    expect(anon.stdout).toContain('denied by default');
  });

  it('evaluates a directory of extra policies', async () => {
    const dir = policyDir({ 'ci.cedar': '@id("role-ci") permit (principal in Airlock::Role::"ci", action == Airlock::Action::"runs.read", resource);' });
    const r = await run(['policy', 'test', '--policies', dir, '--principal', 'service-account:bot', '--role', 'ci', '--action', 'runs.read']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('role-ci');
  });

  it('refuses malformed input as a usage error', async () => {
    for (const args of [
      ['--principal', 'robot:x', '--action', 'runs.read'],
      ['--principal', 'user:a', '--action', 'runs.raed'],
      ['--principal', 'anonymous', '--role', 'admin', '--action', 'runs.read'],
      ['--principal', 'user:a', '--action', 'runs.read', '--resource', 'project:x'],
      ['--principal', 'user:a', '--action', 'runs.read', '--mfa-age', 'soon'],
      ['--principal', 'user:a', '--action', 'runs.read', '--policies', '.', '--active'],
    ]) {
      const r = await run(['policy', 'test', ...args]);
      expect(r.error, args.join(' ')).toBeInstanceOf(UsageError);
    }
  });
});
