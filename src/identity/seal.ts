/**
 * Sealing of secrets at rest (TOTP seeds, JWT signing keys, OIDC verifiers) with a 256-bit key.
 * AES-256-GCM (NIST SP 800-38D) with a random 96-bit nonce; the associated data names the record
 * (e.g. `totp:<userId>`), so a sealed value copied into another row does not open there.
 *
 * A server's key lives in the vault, sealed by the root key (issue 5), which hands out a SealKey
 * of the same format. Before that it was the file `<home>/keys/identity-seal.key`: the file
 * functions here remain to import an old install's key into the vault ({@link readSealKeyFile})
 * and for tests.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmod, mkdir, open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { isErrnoException, writeNewKeyFile } from '../keyfiles/index.js';
import { AirlockError } from '../errors/index.js';

/** Seals and opens small secrets; the key bytes never leave the closure. */
export interface SealKey {
  /** `v1.<nonce>.<ciphertext>.<tag>` (base64url parts); `aad` binds it to one record. */
  seal(plain: Buffer, aad: string): string;
  /** The plaintext, or AirlockError('KEY_INVALID') for a wrong key, wrong record or any alteration. */
  open(sealed: string, aad: string): Buffer;
}

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_DIR_MODE = 0o700;
const KEY_FILE_MODE = 0o600;
/** 32 bytes in base64 plus a newline; anything much larger is not our key and is not read. */
const MAX_KEY_FILE_BYTES = 1024;
const B64URL = /^[A-Za-z0-9_-]*$/;

/** Where the identity sealing key of an Airlock home lives. */
export function sealKeyPath(home: string): string {
  return path.join(home, 'keys', 'identity-seal.key');
}

function keyError(reason: string, message: string, keyPath?: string, cause?: unknown): AirlockError {
  // Only fs errors (paths, errno codes) are ever attached as causes, never anything read from the key.
  return new AirlockError('KEY_INVALID', message, keyPath === undefined ? { reason } : { reason, path: keyPath }, cause === undefined ? undefined : { cause });
}

function openFailed(): AirlockError {
  // One message for every failure and no echo of the input: the difference between "wrong key"
  // and "altered" is of no use to a caller and of some use to an attacker.
  return keyError('unseal_failed', 'sealed data could not be opened: it was sealed with another key, belongs to another record, or was altered');
}

/** A SealKey over 32 raw key bytes (an old key file's, and tests; the vault makes its own in this format). */
export function sealKeyFromBytes(bytes: Buffer): SealKey {
  if (bytes.length !== KEY_BYTES) throw keyError('wrong_length', `a seal key must be ${KEY_BYTES} bytes, not ${bytes.length}`);
  const key = Buffer.from(bytes); // private copy: a later change to the caller's buffer cannot alter it
  return {
    seal(plain: Buffer, aad: string): string {
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
      cipher.setAAD(Buffer.from(aad, 'utf8'));
      const ciphertext = Buffer.concat([cipher.update(plain), cipher.final()]);
      const tag = cipher.getAuthTag();
      return `v1.${nonce.toString('base64url')}.${ciphertext.toString('base64url')}.${tag.toString('base64url')}`;
    },
    open(sealed: string, aad: string): Buffer {
      const parts = sealed.split('.');
      if (parts.length !== 4 || parts[0] !== 'v1') throw openFailed();
      const [, n, c, t] = parts as [string, string, string, string];
      if (!B64URL.test(n) || !B64URL.test(c) || !B64URL.test(t)) throw openFailed();
      const nonce = Buffer.from(n, 'base64url');
      const tag = Buffer.from(t, 'base64url');
      // Pinning the tag length stops a truncated tag from being accepted (SP 800-38D §5.2.1.2).
      if (nonce.length !== NONCE_BYTES || tag.length !== TAG_BYTES) throw openFailed();
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
        decipher.setAAD(Buffer.from(aad, 'utf8'));
        decipher.setAuthTag(tag);
        return Buffer.concat([decipher.update(Buffer.from(c, 'base64url')), decipher.final()]);
      } catch {
        throw openFailed();
      }
    },
  };
}


/** Reads and checks the key file through one descriptor, so the checks and the read see the same file. */
async function readKeyFile(keyPath: string): Promise<Buffer | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(keyPath, 'r');
  } catch (err) {
    if (isErrnoException(err) && err.code === 'ENOENT') return undefined;
    throw keyError('unreadable', `cannot open the identity seal key ${keyPath}; check the file's owner and permissions`, keyPath, err);
  }
  let text: string;
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw keyError('unreadable', `the identity seal key ${keyPath} is not a regular file`, keyPath);
    if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
      throw keyError(
        'insecure_permissions',
        `the identity seal key ${keyPath} is accessible by other users (mode ${(stat.mode & 0o777).toString(8).padStart(3, '0')}); ` +
          `run \`chmod 600 ${keyPath}\`, and treat TOTP seeds and signing keys as exposed if someone else may have copied it`,
        keyPath,
      );
    }
    if (stat.size > MAX_KEY_FILE_BYTES) throw keyError('wrong_length', `${keyPath} is too large to be a 32-byte base64 seal key`, keyPath);
    text = (await handle.readFile({ encoding: 'utf8' })).trim();
  } finally {
    await handle.close();
  }
  const bytes = Buffer.from(text, 'base64');
  // Strict: the text must be exactly the canonical base64 of 32 bytes (nothing the decoder skipped).
  if (bytes.length !== KEY_BYTES || bytes.toString('base64') !== text) {
    throw keyError('wrong_length', `${keyPath} must hold exactly ${KEY_BYTES} bytes in base64; restore it from backup (data sealed with it cannot be opened without it)`, keyPath);
  }
  return bytes;
}

/** Writes a new key to a private temporary file, then hard-links it into place (never replaces; a racing writer loses). */
async function createKeyFile(keyPath: string): Promise<Buffer | undefined> {
  const bytes = randomBytes(KEY_BYTES);
  return (await writeNewKeyFile(keyPath, `${bytes.toString('base64')}\n`, KEY_FILE_MODE)) ? bytes : undefined;
}

/**
 * The key bytes of an old install's seal key file, for importing them into the vault; undefined
 * when there is no file. Refuses what {@link loadOrCreateSealKey} refuses. The caller zeroes them.
 */
export async function readSealKeyFile(home: string): Promise<Buffer | undefined> {
  return readKeyFile(sealKeyPath(home));
}

/**
 * Loads the identity seal key, creating it on first use (directory 0700, file 0600). Refuses a
 * file others can read or write, or one that is not exactly 32 base64 bytes, with KEY_INVALID.
 */
export async function loadOrCreateSealKey(home: string): Promise<SealKey> {
  const keyPath = sealKeyPath(home);
  const existing = await readKeyFile(keyPath);
  if (existing !== undefined) return sealKeyFromBytes(existing);
  let created: Buffer | undefined;
  try {
    const dir = path.dirname(keyPath);
    // mkdir's mode is filtered by the umask; if we made the directory, make its mode exactly 0700.
    if ((await mkdir(dir, { recursive: true, mode: KEY_DIR_MODE })) !== undefined) await chmod(dir, KEY_DIR_MODE);
    created = await createKeyFile(keyPath);
  } catch (err) {
    throw keyError('unwritable', `cannot create the identity seal key ${keyPath}; check that the Airlock home is writable`, keyPath, err);
  }
  if (created !== undefined) return sealKeyFromBytes(created);
  // Another process created the key between our read and our link: use theirs.
  const theirs = await readKeyFile(keyPath);
  if (theirs === undefined) throw keyError('unreadable', `the identity seal key ${keyPath} vanished while being created`, keyPath);
  return sealKeyFromBytes(theirs);
}
