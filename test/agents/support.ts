/** Fixtures for the agent tests: a git repository holding pipelines, agent keys, HTTP helpers. */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const GIT_ENV = { ...process.env, GIT_AUTHOR_NAME: 'Alice', GIT_AUTHOR_EMAIL: 'alice@example.com', GIT_COMMITTER_NAME: 'Alice', GIT_COMMITTER_EMAIL: 'alice@example.com', GIT_CONFIG_NOSYSTEM: '1' };

/** A local git repository; each `commit` writes airlock.yaml (and other files) and tags the commit. */
export interface Repo {
  readonly dir: string;
  commit(tag: string, files: Record<string, string>): string;
  remove(): void;
}

export function makeRepo(): Repo {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-agent-repo-'));
  const git = (...args: string[]): string => execFileSync('git', args, { cwd: dir, env: GIT_ENV, encoding: 'utf8' }).trim();
  git('init', '--quiet', '--initial-branch=main');
  return {
    dir,
    commit(tag, files) {
      for (const [path, text] of Object.entries(files)) writeFileSync(join(dir, path), text);
      git('add', '-A');
      git('commit', '--quiet', '-m', `pipeline ${tag}`);
      git('tag', tag);
      return git('rev-parse', 'HEAD');
    },
    remove: () => {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A one-stage pipeline with one step for remote agents. */
export function pipeline(name: string, step: { run: string; outputs?: string[]; inputs?: string[]; extra?: string }, more = ''): string {
  const lines = [
    'version: 1',
    `pipeline: ${name}`,
    'owners: [alice]',
    'stages:',
    '  build:',
    '    steps:',
    '      - name: make',
    `        run: ${JSON.stringify(step.run)}`,
    '        runs-on: [remote]',
    '        timeout: 2m',
  ];
  if (step.outputs !== undefined) lines.push(`        outputs: [${step.outputs.join(', ')}]`);
  if (step.inputs !== undefined) lines.push(`        inputs: [${step.inputs.join(', ')}]`);
  if (step.extra !== undefined) lines.push(step.extra);
  return `${lines.join('\n')}\n${more}`;
}

/** An Ed25519 key pair and its public key in the form registration takes. */
export function agentKeys(): { privateKey: KeyObject; publicKey: KeyObject; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

/** Wait until `check` returns a value (not undefined), polling every `everyMs`. */
export async function until<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
