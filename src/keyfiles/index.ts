/**
 * Key files on disk: written once, atomically, never replaced. Shared by every component that
 * keeps a key under AIRLOCK_HOME (audit checkpoint key, identity seal key, vault root key).
 */
import { randomBytes } from 'node:crypto';
import { link, open, unlink } from 'node:fs/promises';
import path from 'node:path';

export const KEY_FILE_MODE = 0o600;

/** Narrow a caught error to a Node.js system error with a `code`. */
export function isErrnoException(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && 'code' in err;
}

/**
 * Write `contents` to a private temporary file (exact mode, fsynced), then hard-link it to
 * `keyPath`. Never replaces an existing file: a racing writer loses and gets `false`, and the
 * caller reads the winner's key. `true` when this call created the file.
 */
export async function writeNewKeyFile(keyPath: string, contents: string, mode = KEY_FILE_MODE): Promise<boolean> {
  const tmp = path.join(path.dirname(keyPath), `.${path.basename(keyPath)}.${String(process.pid)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(tmp, 'wx', mode);
  try {
    try {
      await handle.chmod(mode); // the umask may have narrowed the mode; make it exact
      await handle.writeFile(contents, { encoding: 'utf8' });
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(tmp, keyPath);
    } catch (err) {
      if (isErrnoException(err) && err.code === 'EEXIST') return false;
      throw err;
    }
    return true;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}
