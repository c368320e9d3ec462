/**
 * The git CLI behind a narrow port. Each project is mirrored into `$AIRLOCK_HOME/repos`
 * (`git clone --mirror`, then `git fetch` per run), so a run reads exactly the commit it
 * resolved, even if the origin moves on or rewrites history later.
 */
import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AirlockError, ValidationError } from '../errors/index.js';

export interface CommitInfo {
  readonly sha: string;
  readonly author: { readonly name: string; readonly email: string; readonly time: string };
  readonly committer: { readonly name: string; readonly email: string; readonly time: string };
  readonly subject: string;
}

/** What runs need from git. */
export interface GitPort {
  /** Fetch the project's mirror up to date (creating it on first use). */
  sync(projectId: string, repo: string): Promise<string>;
  resolve(mirror: string, ref: string): Promise<string>;
  commit(mirror: string, sha: string): Promise<CommitInfo>;
  /** The bytes of `path` at `sha`, or undefined when the commit has no such file. */
  readFile(mirror: string, sha: string, path: string): Promise<Buffer | undefined>;
  /** Write the tree of `sha` (without .git) into `dest`. */
  exportTree(mirror: string, sha: string, dest: string): Promise<void>;
  /**
   * Every commit reachable from `to` but not from `from` (all of `to`'s history when `from`
   * is undefined), newest first, at most `limit`: whose change is in a deployed range.
   */
  range(mirror: string, from: string | undefined, to: string, limit?: number): Promise<CommitInfo[]>;
  /**
   * Author and committer emails of the newest commit reachable from `sha` that changed any of
   * `paths` (literal repository paths), or undefined when none did: who last edited them.
   */
  lastEditor(mirror: string, sha: string, paths: readonly string[]): Promise<{ author: string; committer: string } | undefined>;
}

const GIT_ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin', GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1', HOME: '/nonexistent', LANG: 'C' };
const MAX_BUFFER = 64 * 1024 * 1024;

function git(args: readonly string[], options: { cwd?: string; encoding?: 'buffer' } = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile('git', [...args], { cwd: options.cwd, env: GIT_ENV, encoding: 'buffer', maxBuffer: MAX_BUFFER, timeout: 120_000 }, (err, stdout, stderr) => {
      if (err !== null) {
        // git's stderr names the problem (unknown revision, not a repository); it holds no secrets we hold.
        const text = stderr.toString('utf8').trim().split('\n').slice(-3).join(' ').slice(0, 400);
        reject(Object.assign(new Error(text || err.message), { gitExit: typeof err.code === 'number' ? err.code : null }));
      } else resolve(stdout);
    });
  });
}

export class GitCli implements GitPort {
  constructor(private readonly reposDir: string) {}

  async sync(projectId: string, repo: string): Promise<string> {
    const mirror = join(this.reposDir, `${projectId}.git`);
    try {
      if (!existsSync(mirror)) {
        await mkdir(this.reposDir, { recursive: true, mode: 0o700 });
        await git(['clone', '--quiet', '--mirror', '--', repo, mirror]);
      } else {
        await git(['fetch', '--quiet', '--prune', 'origin', '+refs/*:refs/*'], { cwd: mirror });
      }
    } catch (err) {
      if (!existsSync(join(mirror, 'HEAD'))) await rm(mirror, { recursive: true, force: true });
      throw new AirlockError('VALIDATION_FAILED', `cannot fetch the repository ${repo}: ${(err as Error).message}`, { issues: [{ path: 'repo', message: 'not a reachable git repository' }] });
    }
    return mirror;
  }

  async resolve(mirror: string, ref: string): Promise<string> {
    if (!/^[A-Za-z0-9._/@^~-]{1,200}$/.test(ref) || ref.startsWith('-')) {
      throw new ValidationError(`ref "${ref.slice(0, 60)}" is not a branch, tag or commit name`, [{ path: 'ref', message: 'invalid ref' }]);
    }
    try {
      return (await git(['rev-parse', '--verify', '--end-of-options', `${ref}^{commit}`], { cwd: mirror })).toString('utf8').trim();
    } catch {
      throw new ValidationError(`ref "${ref}" does not name a commit in this repository`, [{ path: 'ref', message: 'unknown ref' }]);
    }
  }

  async commit(mirror: string, sha: string): Promise<CommitInfo> {
    const out = (await git(['show', '-s', '--format=%H%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%s', sha], { cwd: mirror })).toString('utf8').trim();
    const [h = sha, an = '', ae = '', at = '', cn = '', ce = '', ct = '', subject = ''] = out.split('\0');
    return { sha: h, author: { name: an, email: ae, time: at }, committer: { name: cn, email: ce, time: ct }, subject };
  }

  async range(mirror: string, from: string | undefined, to: string, limit = 10_000): Promise<CommitInfo[]> {
    for (const sha of [from, to]) {
      if (sha !== undefined && !/^[0-9a-f]{40,64}$/.test(sha)) throw new ValidationError('a commit range needs full commit ids', [{ path: 'range', message: 'not a commit id' }]);
    }
    const spec = from === undefined ? [to] : [`${from}..${to}`];
    const out = (await git(['log', `--max-count=${limit}`, '--format=%H%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%s%x1e', ...spec, '--'], { cwd: mirror })).toString('utf8');
    return out
      .split('\x1e')
      .map((r) => r.trim())
      .filter((r) => r !== '')
      .map((r) => {
        const [h = '', an = '', ae = '', at = '', cn = '', ce = '', ct = '', subject = ''] = r.split('\0');
        return { sha: h, author: { name: an, email: ae, time: at }, committer: { name: cn, email: ce, time: ct }, subject };
      });
  }

  async lastEditor(mirror: string, sha: string, paths: readonly string[]): Promise<{ author: string; committer: string } | undefined> {
    if (!/^[0-9a-f]{40,64}$/.test(sha)) throw new ValidationError('the last editor is asked at a full commit id', [{ path: 'sha', message: 'not a commit id' }]);
    if (paths.length === 0) return undefined;
    // Literal pathspecs: a path from airlock.yaml is attacker-written, and pathspec magic such as
    // ":(exclude)airlock.yaml" or a glob would otherwise hide the real last editor.
    const out = (await git(['--literal-pathspecs', 'log', '-1', '--format=%ae%x00%ce', sha, '--', ...paths], { cwd: mirror })).toString('utf8').trim();
    if (out === '') return undefined;
    const [author = '', committer = ''] = out.split('\0');
    return { author, committer };
  }

  async readFile(mirror: string, sha: string, path: string): Promise<Buffer | undefined> {
    try {
      return await git(['show', `${sha}:${path}`], { cwd: mirror });
    } catch {
      return undefined;
    }
  }

  async exportTree(mirror: string, sha: string, dest: string): Promise<void> {
    await mkdir(dest, { recursive: true, mode: 0o700 });
    // git archive | tar -x, without a shell.
    await new Promise<void>((resolve, reject) => {
      const archive = execFile('git', ['archive', '--format=tar', sha], { cwd: mirror, env: GIT_ENV, encoding: 'buffer', maxBuffer: 1024 * 1024 * 1024 });
      const tar = execFile('tar', ['-x', '-C', dest], { env: GIT_ENV });
      let failed = false;
      const fail = (e: Error): void => {
        if (!failed) {
          failed = true;
          reject(e);
        }
      };
      if (archive.stdout === null || tar.stdin === null) {
        fail(new Error('cannot connect git archive to tar'));
        return;
      }
      archive.stdout.pipe(tar.stdin);
      archive.on('error', fail);
      tar.on('error', fail);
      archive.on('exit', (code) => {
        if (code !== 0) fail(new Error(`git archive exited ${String(code)}`));
      });
      tar.on('exit', (code) => {
        if (code === 0) {
          if (!failed) resolve();
        } else fail(new Error(`tar exited ${String(code)}`));
      });
    });
  }
}
