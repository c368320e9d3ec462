/** The commit range of a deployment: every commit between what an environment runs and what ships. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GitCli } from '../../src/runs/index.js';
import { makeRepo } from './support.js';

function commitAs(dir: string, who: { author: string; committer: string }, file: string): string {
  writeFileSync(join(dir, file), file);
  const env = { ...process.env, GIT_AUTHOR_NAME: who.author, GIT_AUTHOR_EMAIL: `${who.author}@example.com`, GIT_COMMITTER_NAME: who.committer, GIT_COMMITTER_EMAIL: `${who.committer}@example.com` };
  execFileSync('git', ['-C', dir, 'add', '-A'], { env });
  execFileSync('git', ['-C', dir, 'commit', '-q', '-m', `add ${file}`], { env });
  return execFileSync('git', ['-C', dir, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
}

describe('git commit ranges', () => {
  it('lists the commits between two commits with their authors and committers, newest first', async () => {
    const repo = makeRepo({ 'a.txt': 'a' });
    const base = repo.head;
    const c1 = commitAs(repo.dir, { author: 'carol', committer: 'carol' }, 'b.txt');
    const c2 = commitAs(repo.dir, { author: 'dave', committer: 'erin' }, 'c.txt');
    const git = new GitCli(mkdtempSync(join(tmpdir(), 'airlock-repos-')));
    const mirror = await git.sync('p1', repo.dir);
    const range = await git.range(mirror, base, c2);
    expect(range.map((c) => [c.sha, c.author.email, c.committer.email])).toEqual([
      [c2, 'dave@example.com', 'erin@example.com'],
      [c1, 'carol@example.com', 'carol@example.com'],
    ]);
    expect((await git.range(mirror, undefined, c2)).map((c) => c.sha)).toEqual([c2, c1, base]);
    expect(await git.range(mirror, c2, c2)).toEqual([]);
    await expect(git.range(mirror, '--all', c2)).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
  });
});
