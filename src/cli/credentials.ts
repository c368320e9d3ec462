/**
 * The stored login of `airlock login`: one session per user account on this machine, in
 * `credentials.json` under `$AIRLOCK_CLI_CONFIG_DIR`, else `$XDG_CONFIG_HOME/airlock`, else
 * `~/.config/airlock`. The session token is a bearer credential: the directory is 0700, the file
 * 0600, written atomically (temp file + rename, so a crash never leaves half a token), and a file
 * other users could read is refused, as ssh refuses an unprotected private key.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, open, rename, rm, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { AirlockError } from '../errors/index.js';

/** What `airlock login` keeps: never the password or the TOTP code. */
export interface StoredCredentials {
  /** Base URL the token was issued by; it is only ever sent back there. */
  readonly server: string;
  readonly username: string;
  /** The session token (bearer). */
  readonly token: string;
  readonly sessionId: string;
  readonly expiresAt: string;
}

const FILE_NAME = 'credentials.json';
/** Group and other bits: none may be set on the file or its directory. */
const SHARED_BITS = 0o077;
const CHECK_MODES = process.platform !== 'win32';

/** The directory holding the CLI's own state (not the server's AIRLOCK_HOME). */
export function credentialsDir(env: NodeJS.ProcessEnv): string {
  const explicit = env.AIRLOCK_CLI_CONFIG_DIR;
  if (explicit !== undefined && explicit !== '') return explicit;
  // XDG Base Directory spec: a relative XDG_CONFIG_HOME is invalid and must be ignored.
  const xdg = env.XDG_CONFIG_HOME;
  if (xdg !== undefined && xdg !== '' && isAbsolute(xdg)) return join(xdg, 'airlock');
  return join(env.HOME !== undefined && env.HOME !== '' ? env.HOME : homedir(), '.config', 'airlock');
}

/** The credentials file path. */
export function credentialsPath(env: NodeJS.ProcessEnv): string {
  return join(credentialsDir(env), FILE_NAME);
}

function damaged(path: string, why: string): AirlockError {
  return new AirlockError('CONFIG_INVALID', `the credentials file ${path} ${why}; delete it and run \`airlock login\` again`, { path });
}

function modeText(mode: number): string {
  return `0${(mode & 0o777).toString(8)}`;
}

function isCredentials(v: unknown): v is StoredCredentials {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return ['server', 'username', 'token', 'sessionId', 'expiresAt'].every((k) => typeof o[k] === 'string' && o[k] !== '');
}

/**
 * The stored login, or undefined when there is none. Refuses (CONFIG_INVALID) a file that is a
 * symbolic link, is not owned by this user, or is readable or writable by group or others.
 */
export async function readCredentials(env: NodeJS.ProcessEnv): Promise<StoredCredentials | undefined> {
  const path = credentialsPath(env);
  let handle;
  try {
    // O_NOFOLLOW: a link planted in place of the file must not redirect the read. The checks
    // below run on the opened descriptor, so the file cannot be swapped between check and read.
    handle = await open(path, constants.O_RDONLY | (CHECK_MODES ? constants.O_NOFOLLOW : 0));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'ELOOP') throw damaged(path, 'is a symbolic link, which is refused');
    throw new AirlockError('CONFIG_INVALID', `cannot read the credentials file ${path} (${code ?? 'unreadable'})`, { path });
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw damaged(path, 'is not a regular file');
    if (CHECK_MODES) {
      if (typeof process.getuid === 'function' && stat.uid !== process.getuid()) throw damaged(path, 'belongs to another user');
      if ((stat.mode & SHARED_BITS) !== 0) {
        throw new AirlockError(
          'CONFIG_INVALID',
          `the credentials file ${path} is accessible by other users (mode ${modeText(stat.mode)}); refusing to use it. Run \`chmod 600 ${path}\` if you trust its content, or delete it and log in again`,
          { path, mode: modeText(stat.mode) },
        );
      }
    }
    const text = await handle.readFile('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw damaged(path, 'is not valid JSON');
    }
    if (!isCredentials(parsed)) throw damaged(path, 'does not hold server, username, token, sessionId and expiresAt');
    return { server: parsed.server, username: parsed.username, token: parsed.token, sessionId: parsed.sessionId, expiresAt: parsed.expiresAt };
  } finally {
    await handle.close();
  }
}

/** Create the directory (0700) if needed and make sure nobody else can enter it. */
async function ensureDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (!CHECK_MODES) return;
  const stat = await lstat(dir);
  if (!stat.isDirectory()) throw new AirlockError('CONFIG_INVALID', `${dir} is not a directory; cannot store credentials there`, { path: dir });
  // Another user able to write here could replace the file between our writes and reads.
  if (typeof process.getuid === 'function' && stat.uid !== process.getuid()) {
    throw new AirlockError('CONFIG_INVALID', `${dir} belongs to another user; set AIRLOCK_CLI_CONFIG_DIR to a directory of your own`, { path: dir });
  }
  if ((stat.mode & SHARED_BITS) !== 0) await chmod(dir, 0o700);
}

/** Store `creds` atomically with mode 0600, replacing any earlier login. */
export async function writeCredentials(env: NodeJS.ProcessEnv, creds: StoredCredentials): Promise<string> {
  const path = credentialsPath(env);
  const dir = dirname(path);
  await ensureDir(dir);
  const temp = join(dir, `.${FILE_NAME}.${randomBytes(6).toString('hex')}.tmp`);
  const body = `${JSON.stringify({ server: creds.server, username: creds.username, token: creds.token, sessionId: creds.sessionId, expiresAt: creds.expiresAt }, null, 2)}\n`;
  // wx: never write through a file (or link) someone else prepared under the temp name.
  const handle = await open(temp, 'wx', 0o600);
  try {
    try {
      await handle.writeFile(body, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  // Make the rename itself durable (best effort: not every platform can fsync a directory).
  try {
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    // Durability of the rename is a nicety; the file content is already synced.
  }
  return path;
}

/** Remove the stored login; false when there was none. */
export async function deleteCredentials(env: NodeJS.ProcessEnv): Promise<boolean> {
  const path = credentialsPath(env);
  try {
    await lstat(path);
  } catch {
    return false;
  }
  await rm(path, { force: true });
  return true;
}
