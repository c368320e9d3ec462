/**
 * The vault's root key, from `AIRLOCK_MASTER_KEY`: the key itself (base64 of 32 bytes, or 64 hex
 * characters) or the absolute path of a file holding it (mode 0600 or stricter). Embedded
 * installs without one get `$AIRLOCK_HOME/keys/master.key`, created on first start.
 *
 * The key's bytes never leave this module: two subkeys are derived with HKDF-SHA256 (RFC 5869),
 * one to name the key (its id, safe to print and store) and one to wrap the vault's keys.
 * Neither the value nor anything read from a key file ever appears in an error message.
 */
import { createSecretKey, hkdfSync, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { chmod, mkdir, open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { inspect } from 'node:util';
import { isErrnoException, writeNewKeyFile } from '../keyfiles/index.js';
import { AirlockError } from '../errors/index.js';
import { KEY_BYTES } from './aead.js';

/** The environment variable holding the root key or the path of its file. */
export const MASTER_KEY_ENV = 'AIRLOCK_MASTER_KEY';

// RFC 5869 §3.2: distinct `info` strings give independent keys from one input key.
const ID_INFO = 'airlock vault/1 root key id';
const WRAP_INFO = 'airlock vault/1 root wrapping key';
const ID_BYTES = 8;
const KEY_DIR_MODE = 0o700;
const KEY_FILE_MODE = 0o600;
/** A key in base64 or hex plus whitespace; anything larger is not a key file and is not read. */
const MAX_KEY_FILE_BYTES = 1024;
const HEX_KEY = /^[0-9a-fA-F]{64}$/;
const BASE64_KEY = /^(?:[A-Za-z0-9+/]{43}|[A-Za-z0-9_-]{43})=?$/;

const wrapKeys = new WeakMap<RootKey, KeyObject>();

/** The root key: only its id is visible; it prints and serialises as its id. */
export class RootKey {
  /** `root_<16 hex>`: HKDF of the key, so the id names the key without revealing it. */
  readonly id: string;

  private constructor(id: string) {
    this.id = id;
  }

  /** A root key from 32 raw bytes (the caller's buffer is not kept). */
  static fromBytes(bytes: Buffer): RootKey {
    if (bytes.length !== KEY_BYTES) throw keyError('wrong_length', `a root key must be ${KEY_BYTES} bytes, not ${bytes.length}`);
    const id = Buffer.from(hkdfSync('sha256', bytes, Buffer.alloc(0), ID_INFO, ID_BYTES)).toString('hex');
    const wrap = Buffer.from(hkdfSync('sha256', bytes, Buffer.alloc(0), WRAP_INFO, KEY_BYTES));
    const root = new RootKey(`root_${id}`);
    wrapKeys.set(root, createSecretKey(wrap));
    wrap.fill(0);
    return root;
  }

  toJSON(): { id: string } {
    return { id: this.id };
  }

  [inspect.custom](): string {
    return `RootKey { id: '${this.id}' }`;
  }
}

/** The AES-256-GCM key that wraps KEKs and the vault's records (vault-internal; not exported by index.ts). */
export function rootWrappingKey(root: RootKey): KeyObject {
  const key = wrapKeys.get(root);
  if (key === undefined) throw keyError('invalid_root', 'not a root key made by RootKey.fromBytes');
  return key;
}

/** Where a key was found. */
export type RootKeySource = 'env-value' | 'env-file' | 'generated' | 'home-file';

/** Inputs of {@link loadRootKey}. */
export interface LoadRootKeyOptions {
  readonly env: NodeJS.ProcessEnv;
  /** The Airlock home (`$AIRLOCK_HOME`). */
  readonly home: string;
  /**
   * Embedded mode: with AIRLOCK_MASTER_KEY unset and no `<home>/keys/master.key`, create that file.
   * Default false: a managed install must be given its key, not silently get a new one.
   */
  readonly generate?: boolean;
}

/** A loaded root key; `created` means a new key file was written and the caller should warn. */
export interface LoadedRootKey {
  readonly key: RootKey;
  readonly created: boolean;
  readonly source: RootKeySource;
  /** The key file, for file sources. */
  readonly path?: string;
}

/** Where an embedded install keeps its generated root key. */
export function masterKeyPath(home: string): string {
  return path.join(home, 'keys', 'master.key');
}

function keyError(reason: string, message: string, extra: Record<string, unknown> = {}, cause?: unknown): AirlockError {
  // Only fs errors (paths, errno codes) are attached as causes, never anything read from a key.
  return new AirlockError('KEY_INVALID', message, { reason, setting: MASTER_KEY_ENV, ...extra }, cause === undefined ? undefined : { cause });
}

/** 32 key bytes from canonical hex or base64 (standard or URL alphabet), else undefined. */
function parseKeyText(text: string): Buffer | undefined {
  if (HEX_KEY.test(text)) return Buffer.from(text, 'hex');
  if (!BASE64_KEY.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64'); // Node decodes both alphabets
  const canonical = text.replace(/=$/, '').replace(/\+/g, '-').replace(/\//g, '_');
  // Canonical only: 43 characters carry 258 bits, and the 2 spare bits must be zero.
  return bytes.length === KEY_BYTES && bytes.toString('base64url') === canonical ? bytes : undefined;
}

/** A RootKey from freshly read bytes, which are then wiped. */
function rootFrom(bytes: Buffer): RootKey {
  try {
    return RootKey.fromBytes(bytes);
  } finally {
    bytes.fill(0);
  }
}


/**
 * Reads and checks a key file through one descriptor, so the checks and the read see the same
 * file. `name` is how messages refer to it: the path for our own file, a description for a path
 * taken from the environment (whose value is never echoed).
 */
async function readKeyFile(file: string, name: string, missingOk: boolean): Promise<Buffer | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    if (isErrnoException(err) && err.code === 'ENOENT') {
      if (missingOk) return undefined;
      throw keyError('missing_file', `${name} does not exist; set ${MASTER_KEY_ENV} to the key or to the absolute path of its file`, {}, err);
    }
    throw keyError('unreadable', `cannot open ${name}; check the file's owner and permissions`, {}, err);
  }
  let text: string;
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw keyError('unreadable', `${name} is not a regular file`);
    if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
      throw keyError(
        'insecure_permissions',
        `${name} is accessible by other users (mode ${(stat.mode & 0o777).toString(8).padStart(3, '0')}); ` +
          'run `chmod 600` on it, and treat the vault as exposed if someone else may have copied it',
        { mode: stat.mode & 0o777 },
      );
    }
    if (stat.size > MAX_KEY_FILE_BYTES) throw keyError('malformed', `${name} is too large to hold a 32-byte key`);
    text = (await handle.readFile({ encoding: 'utf8' })).trim();
  } finally {
    await handle.close();
  }
  const bytes = parseKeyText(text);
  if (bytes === undefined) throw keyError('malformed', `${name} must hold exactly one 32-byte key, in base64 (44 characters) or hex (64 characters)`);
  return bytes;
}

/** Writes a new key to a private temporary file, then hard-links it into place (never replaces; a racing writer loses). */
async function createKeyFile(file: string): Promise<Buffer | undefined> {
  const bytes = randomBytes(KEY_BYTES);
  return (await writeNewKeyFile(file, `${bytes.toString('base64')}\n`, KEY_FILE_MODE)) ? bytes : undefined;
}

/**
 * Loads the root key. AIRLOCK_MASTER_KEY holding 64 hex characters or 44 base64 characters is the
 * key; an absolute path names its file. Unset: `<home>/keys/master.key` if it exists, else (with
 * `generate`) a new key written there with mode 0600. Refuses anything else with KEY_INVALID.
 *
 * @example
 * const { key, created } = await loadRootKey({ env: process.env, home, generate: embedded });
 * if (created) log.warn('generated a new vault root key: back it up');
 */
export async function loadRootKey(opts: LoadRootKeyOptions): Promise<LoadedRootKey> {
  const raw = opts.env[MASTER_KEY_ENV];
  if (raw !== undefined) {
    const value = raw.trim();
    if (value === '') throw keyError('empty', `${MASTER_KEY_ENV} is set but empty; set it to the key or to the absolute path of its file, or unset it`);
    // Decided by shape: a key is 64 hex or 43-44 base64 characters, a file path is absolute.
    if (HEX_KEY.test(value) || BASE64_KEY.test(value)) {
      const bytes = parseKeyText(value);
      if (bytes === undefined) throw keyError('malformed', `${MASTER_KEY_ENV} looks like a base64 key but does not decode to exactly 32 bytes (value not shown)`);
      return { key: rootFrom(bytes), created: false, source: 'env-value' };
    }
    if (path.isAbsolute(value)) {
      const bytes = await readKeyFile(value, `the key file named by ${MASTER_KEY_ENV}`, false);
      if (bytes === undefined) throw keyError('missing_file', `the key file named by ${MASTER_KEY_ENV} does not exist`);
      return { key: rootFrom(bytes), created: false, source: 'env-file', path: value };
    }
    throw keyError(
      'malformed',
      `${MASTER_KEY_ENV} must be a 32-byte key (44 base64 or 64 hex characters) or the absolute path of a file holding one; ` +
        `the value given (${value.length} characters, not shown) is neither`,
    );
  }
  const file = masterKeyPath(opts.home);
  const existing = await readKeyFile(file, `the root key file ${file}`, true);
  if (existing !== undefined) return { key: rootFrom(existing), created: false, source: 'home-file', path: file };
  if (opts.generate !== true) {
    throw keyError('missing', `${MASTER_KEY_ENV} is not set and ${file} does not exist; set ${MASTER_KEY_ENV} to a 32-byte key (\`openssl rand -base64 32\`) or to the path of a file holding one`);
  }
  let created: Buffer | undefined;
  try {
    const dir = path.dirname(file);
    // mkdir's mode is filtered by the umask; if we made the directory, make its mode exactly 0700.
    if ((await mkdir(dir, { recursive: true, mode: KEY_DIR_MODE })) !== undefined) await chmod(dir, KEY_DIR_MODE);
    created = await createKeyFile(file);
  } catch (err) {
    throw keyError('unwritable', `cannot create the root key file ${file}; check that the Airlock home is writable`, { path: file }, err);
  }
  if (created !== undefined) return { key: rootFrom(created), created: true, source: 'generated', path: file };
  // Another process created the key between our read and our link: use theirs.
  const theirs = await readKeyFile(file, `the root key file ${file}`, false);
  if (theirs === undefined) throw keyError('missing_file', `the root key file ${file} vanished while being created`);
  return { key: rootFrom(theirs), created: false, source: 'home-file', path: file };
}
