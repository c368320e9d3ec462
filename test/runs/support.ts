/** A git repository made from a directory of files, for runs tests. */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { App } from '../../src/app/index.js';

export const EXAMPLE = resolve(import.meta.dirname, '../../examples/hello-pipeline');

const GIT_ENV = { ...process.env, GIT_AUTHOR_NAME: 'Ada Author', GIT_AUTHOR_EMAIL: 'ada@example.com', GIT_COMMITTER_NAME: 'Cy Committer', GIT_COMMITTER_EMAIL: 'cy@example.com', GIT_CONFIG_NOSYSTEM: '1', HOME: tmpdir() };

export function git(dir: string, ...args: string[]): string {
  return execFileSync('git', ['-C', dir, ...args], { env: GIT_ENV, encoding: 'utf8' }).trim();
}

/** A new repository holding `files` (or a copy of `from`), committed; returns its path and HEAD. */
export function makeRepo(files: Record<string, string> = {}, from?: string): { dir: string; head: string } {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-repo-'));
  if (from !== undefined) cpSync(from, dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  git(dir, 'init', '-q', '-b', 'main');
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '-m', 'initial');
  return { dir, head: git(dir, 'rev-parse', 'HEAD') };
}

/** Commit a change to `files` on the current branch; returns the new HEAD. */
export function commit(dir: string, files: Record<string, string>, message = 'change'): string {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '-m', message);
  return git(dir, 'rev-parse', 'HEAD');
}

/** Start a run of `project` as `actor` and wait (up to ~15 s) for it to succeed; its id. Any other end throws, naming its stages. */
export async function succeededRun(app: App, actor: { kind: 'user'; id: string }, project: string): Promise<string> {
  const started = await app.runs.start(actor, { project });
  for (let i = 0; i < 600; i++) {
    const r = await app.runs.show(started.id);
    if (r.state === 'succeeded') return r.id;
    if (r.state !== 'queued' && r.state !== 'running') throw new Error(`run ${r.state}: ${JSON.stringify(r.stages)}`);
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error(`run ${started.id} did not finish`);
}
