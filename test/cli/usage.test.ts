import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { PassThrough } from 'node:stream';
import { join } from 'node:path';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACTOR_KINDS, OUTCOMES, formatVerifierKey } from '../../src/audit/index.js';
import { CLI_ACTOR_KINDS, CLI_OUTCOMES, buildProgram, newCli } from '../../src/cli/index.js';
import { ROOT, json, requireBuilt, run } from './helpers.js';

function someKey(): string {
  const { publicKey } = generateKeyPairSync('ed25519');
  return formatVerifierKey('auditor.example/audit', Buffer.from(publicKey.export({ format: 'jwk' }).x ?? '', 'base64url'));
}

/** Every command path with the long flags of its own options. */
function commandTree(): { path: string[]; flags: string[] }[] {
  const out: { path: string[]; flags: string[] }[] = [];
  const walk = (cmd: Command, path: string[]): void => {
    out.push({ path, flags: cmd.options.map((o) => o.long ?? o.short ?? o.flags) });
    for (const sub of cmd.commands) walk(sub, [...path, sub.name()]);
  };
  const sink = (): PassThrough => new PassThrough();
  walk(buildProgram(newCli({ stdout: sink(), stderr: sink(), stdin: sink(), env: {}, cwd: ROOT, stderrIsTTY: false })), []);
  return out;
}

describe('airlock CLI: usage, help and exit codes', () => {
  let home: string;
  let env: Record<string, string>;
  beforeAll(() => {
    requireBuilt();
    home = mkdtempSync(join(tmpdir(), 'airlock-cli-usage-'));
    env = { AIRLOCK_HOME: join(home, 'home') };
  });
  afterAll(() => {
    rmSync(home, { recursive: true, force: true });
  });

  it('offers exactly the audit domain\'s actor kinds and outcomes (listed literally to keep start-up light)', () => {
    expect(CLI_ACTOR_KINDS).toEqual(ACTOR_KINDS);
    expect(CLI_OUTCOMES).toEqual(OUTCOMES);
  });

  it('prints the package version with --version', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = await run(['--version']);
    expect(r).toMatchObject({ code: 0, stdout: `${pkg.version}\n`, stderr: '' });
  });

  it('answers --help on every command and subcommand with its options and the exit codes', async () => {
    const tree = commandTree();
    const paths = tree.map((c) => c.path.join(' '));
    // The documented tree (a new command must be added to docs/cli.md too).
    expect(paths).toEqual([
      '',
      'server',
      'demo',
      'db',
      'db migrate',
      'db status',
      'audit',
      'audit key',
      'audit verify',
      'audit proof',
      'audit proof inclusion',
      'audit proof consistency',
      'audit proof verify',
      'audit checkpoint',
      'audit tail',
      'audit search',
      'audit export',
      'audit verify-export',
      'config',
      'config show',
      'init',
      'account',
      'account setup',
      'login',
      'whoami',
      'logout',
      'step-up',
      'token',
      'token rotate-signing-key',
      'token exchange',
      'user',
      'user create',
      'user list',
      'user show',
      'user disable',
      'user roles',
      'user email',
      'user reset',
      'role',
      'role list',
      'role create',
      'service-account',
      'service-account create',
      'service-account list',
      'service-account disable',
      'service-account key',
      'service-account key create',
      'service-account key list',
      'service-account key revoke',
      'lint',
      'schema',
      'schema pipeline',
      'project',
      'project add',
      'project list',
      'run',
      'runs',
      'runs list',
      'runs show',
      'runs cancel',
      'logs',
      'agent',
      'agent token',
      'agent token create',
      'secret',
      'secret set',
      'secret list',
      'secret versions',
      'secret reveal',
      'secret delete',
      'secret usage',
      'secret rotate',
      'secret rewrap',
      'secret audit-hash',
      'policy',
      'policy get',
      'policy set',
      'policy versions',
      'policy show',
      'policy test',
      'artifact',
      'artifact list',
      'artifact show',
      'artifact get',
      'artifact verify',
      'artifact publish',
      'release',
      'release create',
      'release list',
      'release show',
      'deploy',
      'approve',
      'deny',
      'deployments',
      'deployments list',
      'deployments show',
      'deployments deploy',
      'deployments export',
      'break-glass',
      'rollback',
      'incidents',
      'incidents list',
      'incidents show',
      'incidents close',
      'freeze',
      'freeze list',
      'freeze lift',
      'export',
      'export in-toto',
      'verify',
      'attestations',
      'keys',
      'keys list',
      'keys rotate',
    ]);
    const docs = readFileSync(join(ROOT, 'docs/cli.md'), 'utf8');
    const results = await Promise.all(tree.map((c) => run([...c.path, '--help'], { env })));
    tree.forEach((c, i) => {
      const r = results[i]!;
      const name = `airlock ${c.path.join(' ')} --help`;
      expect(r.code, name).toBe(0);
      expect(r.stdout, name).toContain(`Usage: airlock${c.path.length > 0 ? ` ${c.path.join(' ')}` : ''}`);
      expect(r.stdout, name).toContain('Exit codes:');
      // Global options are listed on every command.
      expect(r.stdout, name).toContain('--home <dir>');
      for (const flag of c.flags) {
        expect(r.stdout, `${name} mentions ${flag}`).toContain(flag);
        if (c.path.length > 0 && flag !== '--help') expect(docs, `docs/cli.md documents ${c.path.join(' ')} ${flag}`).toContain(flag);
      }
      if (c.path.length > 0) expect(docs, `docs/cli.md documents airlock ${c.path.join(' ')}`).toContain(`airlock ${c.path.join(' ')}`);
    });
    const help = await run(['help', 'audit']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('verify-export');
  });

  it('exits 2 on an unknown command or option, or a missing subcommand, printing one airlock: line', async () => {
    const [cmd, sub, opt, subOpt, missing, excess] = await Promise.all([
      run(['bogus'], { env }),
      run(['audit', 'bogus'], { env }),
      run(['--bogus'], { env }),
      run(['audit', 'verify', '--bogus'], { env }),
      run(['audit'], { env }),
      run(['audit', 'key', 'extra'], { env }),
    ]);
    expect(cmd.code).toBe(2);
    expect(cmd.stderr).toMatch(/^airlock: unknown command 'bogus' \(USAGE\)$/m);
    expect(sub.code).toBe(2);
    expect(opt.code).toBe(2);
    expect(subOpt.code).toBe(2);
    expect(subOpt.stderr).toMatch(/^airlock: unknown option '--bogus'/m);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('Usage: airlock audit');
    expect(excess.code).toBe(2);
    for (const r of [cmd, sub, opt, subOpt, excess]) {
      expect(r.stdout).toBe('');
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
  });

  it('exits 2 naming the setting for a bad configuration (environment, flag or file)', async () => {
    const badFile = join(home, 'bad.yaml');
    writeFileSync(badFile, 'listen: 127.0.0.1:7300\nfrobnicate: true\n');
    const [listen, interval, level, file, url] = await Promise.all([
      run(['server'], { env: { ...env, AIRLOCK_LISTEN: 'nonsense' } }),
      run(['config', 'show'], { env: { ...env, AIRLOCK_CHECKPOINT_INTERVAL_MS: '5' } }),
      run(['config', 'show', '--log-level', 'loud'], { env }),
      run(['config', 'show', '--config', badFile], { env }),
      run(['db', 'status'], { env: { ...env, AIRLOCK_DATABASE_URL: 'mysql://root:hunter2@db/x' } }),
    ]);
    expect(listen.code).toBe(2);
    expect(listen.stderr).toMatch(/^airlock: invalid setting AIRLOCK_LISTEN: .*nonsense.* \(CONFIG_INVALID\)$/m);
    expect(interval.code).toBe(2);
    expect(interval.stderr).toContain('AIRLOCK_CHECKPOINT_INTERVAL_MS');
    expect(level.code).toBe(2);
    expect(level.stderr).toContain('--log-level');
    expect(file.code).toBe(2);
    expect(file.stderr).toContain('frobnicate');
    expect(url.code).toBe(2);
    expect(url.stderr).toContain('AIRLOCK_DATABASE_URL');
    expect(url.stderr).not.toContain('hunter2');
    expect(existsSync(env.AIRLOCK_HOME!)).toBe(false);
  });

  it('exits 2 naming the flag for a non-integer, negative or out-of-range number and a bad date', async () => {
    const cases: [string[], string][] = [
      [['audit', 'proof', 'inclusion', '--seq', '-1'], '--seq'],
      [['audit', 'proof', 'inclusion', '--seq', '1.5'], '--seq'],
      [['audit', 'proof', 'inclusion', '--seq', '1', '--size', 'big'], '--size'],
      [['audit', 'proof', 'inclusion'], '--seq'],
      [['audit', 'proof', 'consistency', '--from', '-3'], '--from'],
      [['audit', 'proof', 'consistency', '--from', '1', '--to', '2x'], '--to'],
      [['audit', 'tail', '-n', 'ten'], '--lines'],
      [['audit', 'search', '--since', 'yesterday'], '--since'],
      [['audit', 'search', '--until', '2024-02-31'], '--until'],
      [['audit', 'search', '--limit', '0'], '--limit'],
      [['audit', 'search', '--outcome', 'maybe'], '--outcome'],
      [['audit', 'export', '--from', 'x'], '--from'],
      [['audit', 'proof', 'verify', 'p.json', '--key', 'k'], '--checkpoint'],
    ];
    const results = await Promise.all(cases.map(([args]) => run(args, { env })));
    cases.forEach(([args, flag], i) => {
      const r = results[i]!;
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toContain(flag);
      expect(r.stderr, args.join(' ')).toMatch(/^airlock: .*\(USAGE\)$/m);
    });
    // Nothing was created by commands that failed to parse.
    expect(existsSync(env.AIRLOCK_HOME!)).toBe(false);
  });

  it('shows the configuration without ever printing the database password', async () => {
    const secretEnv = { ...env, AIRLOCK_DATABASE_URL: 'postgres://alice:s3cret-pw@db.example:5432/airlock', AIRLOCK_DATABASE_SCHEMA: 'tenant_a' };
    const [human, machine] = await Promise.all([run(['config', 'show'], { env: secretEnv }), run(['config', 'show', '--json'], { env: secretEnv })]);
    expect(human.code).toBe(0);
    expect(machine.code).toBe(0);
    for (const r of [human, machine]) {
      expect(r.stdout).not.toContain('s3cret-pw');
      expect(r.stderr).not.toContain('s3cret-pw');
    }
    const shown = json<{ home: string; database: { kind: string; url: string; schema: string }; listen: { port: number } }>(machine);
    expect(shown.database).toEqual({ kind: 'postgres', url: 'postgres://alice:***@db.example:5432/airlock', schema: 'tenant_a' });
    expect(shown.home).toBe(env.AIRLOCK_HOME);
    expect(shown.listen.port).toBe(7300);
    expect(human.stdout).toContain('alice:***@db.example');
    // Flags beat the environment.
    const flagged = json<{ home: string }>(await run(['--home', join(home, 'other'), 'config', 'show', '--json'], { env }));
    expect(flagged.home).toBe(join(home, 'other'));
  });

  it('reports failures as one line with the error code (exit 1), with a stack trace only at debug level', async () => {
    const proofFile = join(home, 'garbage.json');
    writeFileSync(proofFile, '{"type":"inclusion","leafIndex":0}');
    const [noDb, noKey, debug, badProof, missingFile] = await Promise.all([
      run(['audit', 'tail'], { env }),
      run(['audit', 'key'], { env }),
      run(['audit', 'key', '--log-level', 'debug'], { env }),
      run(['audit', 'proof', 'verify', proofFile, '--json'], { env }),
      run(['audit', 'verify-export', join(home, 'nope.jsonl'), '--key', someKey()], { env }),
    ]);
    expect(noDb.code).toBe(1);
    expect(noDb.stderr).toMatch(/^airlock: there is no database at .*airlock db migrate.* \(NOT_FOUND\)$/m);
    expect(noKey.code).toBe(1);
    expect(noKey.stderr.trim().split('\n')).toHaveLength(1);
    expect(noKey.stderr).toMatch(/^airlock: no checkpoint signing key at .*\(KEY_INVALID\)$/m);
    expect(noKey.stderr).not.toMatch(/^\s+at /m);
    expect(debug.code).toBe(1);
    expect(debug.stderr).toMatch(/^\s+at /m);
    expect(badProof.code).toBe(1);
    expect(json(badProof)).toMatchObject({ ok: false, error: { code: 'VALIDATION_FAILED' } });
    expect(missingFile.code).toBe(1);
    expect(missingFile.stderr).toMatch(/^airlock: cannot read .*nope\.jsonl: no such file \(NOT_FOUND\)$/m);
    // Read commands never create the home, the database or a key.
    expect(existsSync(env.AIRLOCK_HOME!)).toBe(false);
  });

  it('refuses to serve an unmigrated database with --no-migrate (exit 1)', async () => {
    const r = await run(['server', '--no-migrate', '--listen', '127.0.0.1:0'], { env: { AIRLOCK_HOME: join(home, 'unmigrated') } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^airlock: the database has 7 pending migration\(s\) and --no-migrate was given; run `airlock db migrate` first \(STORAGE_FAILED\)$/m);
  });

  it('reports db status on a home with no database without creating one', async () => {
    const r = await run(['db', 'status', '--json'], { env });
    expect(r.code).toBe(0);
    expect(json(r)).toEqual({
      migrations: [
        { name: '0001_audit_log', executedAt: null },
        { name: '0002_identity', executedAt: null },
        { name: '0003_runs', executedAt: null },
        { name: '0004_vault', executedAt: null },
        { name: '0005_vault_sealed_keys', executedAt: null },
        { name: '0006_artifacts_provenance', executedAt: null },
        { name: '0007_delivery', executedAt: null },
      ],
      pending: 7,
    });
    expect(existsSync(env.AIRLOCK_HOME!)).toBe(false);
  });
});
