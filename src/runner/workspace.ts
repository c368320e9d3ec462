/**
 * The per-attempt workspace: created fresh, filled with the source and verified inputs,
 * emptied of declared outputs, then removed.
 *
 * Paths inside it are walked component by component and symbolic links are refused: the
 * source tree and the step both control what is in the workspace, and a `dist -> /etc` link
 * must not turn "copy input to dist/x" into a write outside it, nor "collect dist/x" into a
 * read of a host file that then gets signed as a product.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, cp, lstat, mkdir, open, readdir, rm, stat, statfs } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { copyBlobVerified } from '../artifacts/index.js';
import type { BlobInfo, BlobStoreLike } from '../artifacts/index.js';

/** A path problem the step author can act on (never a host path beyond the workspace). */
export class WorkspacePathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WorkspacePathError';
  }
}

/** Create `<workRoot>/<jobId>-<random>` with mode 0700, plus `.home` and `.tmp` later. */
export async function createWorkspace(workRoot: string, jobId: string): Promise<string> {
  await mkdir(workRoot, { recursive: true, mode: 0o700 });
  const dir = join(workRoot, `${jobId}-${randomBytes(8).toString('hex')}`);
  await mkdir(dir, { mode: 0o700 });
  await chmod(dir, 0o700); // the umask may have widened nothing, but be explicit
  return dir;
}

/** The step's HOME and TMPDIR inside the workspace. */
export async function createHomeAndTmp(workspace: string): Promise<{ home: string; tmp: string }> {
  const home = join(workspace, '.home');
  const tmp = join(workspace, '.tmp');
  await mkdir(home, { recursive: true, mode: 0o700 });
  await mkdir(tmp, { recursive: true, mode: 0o700 });
  return { home, tmp };
}

/** Copy the checked-out tree without any `.git` (history and credentials stay out). */
export async function copySource(source: string, workspace: string): Promise<void> {
  const st = await stat(source);
  if (!st.isDirectory()) throw new WorkspacePathError('the source is not a directory');
  await cp(source, workspace, {
    recursive: true,
    force: true,
    errorOnExist: false,
    // Keep links exactly as committed; the default rewrites relative links to point back
    // into the original checkout.
    verbatimSymlinks: true,
    filter: (path) => basename(path) !== '.git',
  });
}

/**
 * Make sure every directory leading to `rel` exists and is a real directory (no links),
 * creating missing ones when `create` is set. Returns the absolute path of `rel`.
 */
async function walkParents(workspace: string, rel: string, create: boolean): Promise<string> {
  const parts = rel.split('/');
  let current = workspace;
  for (const part of parts.slice(0, -1)) {
    current = join(current, part);
    let st;
    try {
      st = await lstat(current);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      if (!create) throw new WorkspacePathError(`${rel} was not produced`);
      await mkdir(current, { mode: 0o755 });
      continue;
    }
    if (st.isSymbolicLink()) throw new WorkspacePathError(`${rel}: ${current.slice(workspace.length + 1)} is a symbolic link; links are not followed`);
    if (!st.isDirectory()) throw new WorkspacePathError(`${rel}: ${current.slice(workspace.length + 1)} is not a directory`);
  }
  return join(workspace, rel);
}

/** Copy a blob into the workspace at `rel`, verifying its hash; nothing lands on a mismatch. */
export async function placeInput(blobs: BlobStoreLike, workspace: string, rel: string, digest: string): Promise<void> {
  const dest = await walkParents(workspace, rel, true);
  const existing = await lstat(dest).catch(() => null);
  if (existing?.isDirectory() === true) throw new WorkspacePathError(`${rel} is a directory in the source tree`);
  // The copy renames over `dest`: an existing file or link there is replaced, never followed.
  await copyBlobVerified(blobs, digest, dest);
}

/** Store a declared output. Only regular files inside the workspace qualify. */
export async function collectOutput(blobs: BlobStoreLike, workspace: string, rel: string): Promise<BlobInfo> {
  const path = await walkParents(workspace, rel, false);
  let fh;
  try {
    // O_NOFOLLOW refuses a link at the last component; O_NONBLOCK keeps a FIFO from hanging us.
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new WorkspacePathError(`${rel} was not produced`);
    if (code === 'ELOOP') throw new WorkspacePathError(`${rel} is a symbolic link; only regular files are collected`);
    throw err;
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw new WorkspacePathError(`${rel} is a directory; declare the files in it`);
    if (!st.isFile()) throw new WorkspacePathError(`${rel} is not a regular file`);
    return await blobs.put(fh.createReadStream({ autoClose: false }));
  } finally {
    await fh.close();
  }
}

/** Whether the file system holding `dir` has (almost) no space left. */
export async function isFull(dir: string): Promise<boolean> {
  try {
    const fs = await statfs(dir);
    return fs.bavail * fs.bsize < 64 * 1024;
  } catch {
    return false;
  }
}

/** Make every directory under `dir` writable again, so a step's `chmod 000` cannot pin it. */
async function unlockTree(dir: string): Promise<void> {
  await chmod(dir, 0o700).catch(() => undefined);
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    if (entry.isDirectory()) await unlockTree(join(dir, entry.name));
  }
}

/** Remove the workspace; returns false if something of it could not be removed. */
export async function removeWorkspace(dir: string): Promise<boolean> {
  try {
    await rm(dir, { recursive: true, force: true, maxRetries: 2 });
    return true;
  } catch {
    await unlockTree(dir);
    try {
      await rm(dir, { recursive: true, force: true, maxRetries: 2 });
      return true;
    } catch {
      return false;
    }
  }
}
