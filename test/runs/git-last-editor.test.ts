/** Who last edited an environment's configuration files, read from the project's mirror. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GitCli } from '../../src/runs/index.js';
import { makeRepo } from './support.js';

function commitAs(dir: string, who: { author: string; committer: string }, files: Record<string, string>): string {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const env = { ...process.env, GIT_AUTHOR_NAME: who.author, GIT_AUTHOR_EMAIL: `${who.author}@example.com`, GIT_COMMITTER_NAME: who.committer, GIT_COMMITTER_EMAIL: `${who.committer}@example.com` };
  execFileSync('git', ['-C', dir, 'add', '-A'], { env });
  execFileSync('git', ['-C', dir, 'commit', '-q', '-m', `change ${Object.keys(files).join(' ')}`], { env });
  return execFileSync('git', ['-C', dir, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
}

describe('git last editor of paths', () => {
  it('names the author and committer of the newest commit reachable from the sha that touched any path', async () => {
    const repo = makeRepo({ 'airlock.yaml': 'v1', 'prod.yaml': 'A: "1"', 'app.js': '1' });
    const c1 = commitAs(repo.dir, { author: 'erin', committer: 'frank' }, { 'airlock.yaml': 'v2' });
    const c2 = commitAs(repo.dir, { author: 'dave', committer: 'dave' }, { 'app.js': '2' });
    const c3 = commitAs(repo.dir, { author: 'gina', committer: 'gina' }, { 'prod.yaml': 'A: "2"' });
    const git = new GitCli(mkdtempSync(join(tmpdir(), 'airlock-repos-')));
    const mirror = await git.sync('p1', repo.dir);

    // A later commit to other files does not make its author the config's editor.
    expect(await git.lastEditor(mirror, c2, ['airlock.yaml'])).toEqual({ author: 'erin@example.com', committer: 'frank@example.com' });
    expect(await git.lastEditor(mirror, c3, ['airlock.yaml'])).toEqual({ author: 'erin@example.com', committer: 'frank@example.com' });
    // Any of the paths counts: the overrides file was edited last.
    expect(await git.lastEditor(mirror, c3, ['airlock.yaml', 'prod.yaml'])).toEqual({ author: 'gina@example.com', committer: 'gina@example.com' });
    // Only history reachable from the sha: at c1 gina's edit does not exist yet.
    expect(await git.lastEditor(mirror, c1, ['airlock.yaml', 'prod.yaml'])).toEqual({ author: 'erin@example.com', committer: 'frank@example.com' });
    // The initial commit (support.ts: Ada Author, Cy Committer) is the editor of files never changed since.
    expect(await git.lastEditor(mirror, c3, ['app.js', 'nothing.yaml'])).toEqual({ author: 'dave@example.com', committer: 'dave@example.com' });
    expect(await git.lastEditor(mirror, repo.head, ['prod.yaml'])).toEqual({ author: 'ada@example.com', committer: 'cy@example.com' });
    expect(await git.lastEditor(mirror, c3, ['never-existed.yaml'])).toBeUndefined();
    expect(await git.lastEditor(mirror, c3, [])).toBeUndefined();
  });

  it('treats paths literally: pathspec magic cannot hide the editor, and only full commit ids are accepted', async () => {
    const repo = makeRepo({ 'airlock.yaml': 'v1' });
    const c1 = commitAs(repo.dir, { author: 'erin', committer: 'erin' }, { 'airlock.yaml': 'v2' });
    const git = new GitCli(mkdtempSync(join(tmpdir(), 'airlock-repos-')));
    const mirror = await git.sync('p1', repo.dir);
    // As magic, ":(exclude)airlock.yaml" would drop airlock.yaml from the query; literally it is another file.
    expect(await git.lastEditor(mirror, c1, ['airlock.yaml', ':(exclude)airlock.yaml'])).toEqual({ author: 'erin@example.com', committer: 'erin@example.com' });
    // A glob matches nothing literally, rather than every YAML file.
    expect(await git.lastEditor(mirror, c1, ['*.yaml'])).toBeUndefined();
    await expect(git.lastEditor(mirror, 'HEAD', ['airlock.yaml'])).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(git.lastEditor(mirror, '--all', ['airlock.yaml'])).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    // An unknown commit is an error, not "nobody edited it" (which would lift the conflict).
    await expect(git.lastEditor(mirror, 'f'.repeat(40), ['airlock.yaml'])).rejects.toThrow();
  });
});
