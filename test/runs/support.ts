/** A git repository made from a directory of files, for runs tests. */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

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
