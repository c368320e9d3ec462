/**
 * The checkpoint signing key. A server keeps it in the vault, sealed by the root key (issue 5);
 * {@link checkpointKeyFrom} describes the key the vault hands out.
 *
 * Before that it was a file: one Ed25519 private key, PKCS#8 PEM, at
 * `<home>/keys/audit-checkpoint.pem`, readable by its owner only. The file functions remain for
 * importing an old install's key into the vault ({@link readCheckpointKeyFile}), for verifiers on
 * a home not yet migrated, and for standalone logs (tests, benchmarks). Whoever holds the key can
 * sign checkpoints for this log, so a file is created atomically with owner-only permissions,
 * refused if anyone else could read or replace it, and never quoted in an error message.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { chmod, mkdir, open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { isErrnoException, writeNewKeyFile } from '../keyfiles/index.js';
import { AirlockError } from '../errors/index.js';
import { ed25519Signer, ed25519Verifier, formatVerifierKey, isValidKeyName } from './checkpoint.js';
import type { NoteSigner, NoteVerifier } from './checkpoint.js';

/** The signing key and what is published about it. */
export interface CheckpointKey {
  readonly signer: NoteSigner;
  readonly verifierKey: string;
  readonly publicKey: Buffer;
}

/** A signing key kept in a file. */
export interface CheckpointKeyFile extends CheckpointKey {
  readonly path: string;
  readonly created: boolean;
}

/** The public half only: enough to verify checkpoints and to print for `airlock audit key`. */
export interface CheckpointVerifierKey {
  readonly verifier: NoteVerifier;
  readonly verifierKey: string;
  readonly publicKey: Buffer;
  /** The key file it was read from; absent when it came from the vault. */
  readonly path?: string;
}

const KEY_DIR_MODE = 0o700;
const KEY_FILE_MODE = 0o600;
/** A PKCS#8 Ed25519 PEM is about 120 bytes; anything far larger is not our key and is not read into memory. */
const MAX_KEY_FILE_BYTES = 16 * 1024;

/** Where the checkpoint key of an Airlock home lives. */
export function checkpointKeyPath(home: string): string {
  return path.join(home, 'keys', 'audit-checkpoint.pem');
}


function keyError(reason: string, message: string, keyPath: string, cause?: unknown): AirlockError {
  // Callers pass only fs errors as causes (paths and errno codes), never parser output over key bytes.
  return new AirlockError('KEY_INVALID', message, { reason, path: keyPath }, cause === undefined ? undefined : { cause });
}

function checkName(name: string, keyPath: string): void {
  if (!isValidKeyName(name)) {
    throw keyError('bad_name', 'the checkpoint key name must be non-empty with no spaces and no "+"; use the log origin, e.g. example.com/audit', keyPath);
  }
}

/** Rejects a key file group or others can read or write; POSIX mode bits mean nothing on Windows. */
function checkPermissions(mode: number, keyPath: string): void {
  if (process.platform === 'win32') return;
  if ((mode & 0o077) !== 0) {
    throw keyError(
      'insecure_permissions',
      `the checkpoint signing key ${keyPath} is accessible by other users (mode ${(mode & 0o777).toString(8).padStart(3, '0')}); ` +
        `run \`chmod 600 ${keyPath}\`, and replace the key if someone else may have copied it`,
      keyPath,
    );
  }
}

/** Reads and checks the key file through one descriptor, so the checks and the read see the same file. */
async function readPrivateKey(keyPath: string): Promise<KeyObject> {
  let handle: FileHandle;
  try {
    handle = await open(keyPath, 'r');
  } catch (err) {
    if (isErrnoException(err) && err.code === 'ENOENT') {
      throw keyError('missing', `no checkpoint signing key at ${keyPath}; it is created the first time the audit log signs a checkpoint (check the Airlock home is the intended one)`, keyPath, err);
    }
    throw keyError('unreadable', `cannot open the checkpoint signing key ${keyPath}; check the file's owner and permissions`, keyPath, err);
  }
  let pem: string;
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) {
      throw keyError('unreadable', `the checkpoint signing key ${keyPath} is not a regular file`, keyPath);
    }
    checkPermissions(stat.mode, keyPath);
    if (stat.size > MAX_KEY_FILE_BYTES) {
      throw keyError('unreadable', `${keyPath} is too large to be an Ed25519 PEM private key`, keyPath);
    }
    pem = await handle.readFile({ encoding: 'utf8' });
  } finally {
    await handle.close();
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    // The parser's error is dropped on purpose: nothing derived from the file's bytes goes into an error.
    throw keyError(
      'unreadable',
      `${keyPath} is not a readable unencrypted PEM private key; restore it from backup, or move it away to have a new key generated`,
      keyPath,
    );
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw keyError(
      'wrong_key_type',
      `${keyPath} holds a ${key.asymmetricKeyType ?? 'unknown'} key; audit checkpoints are signed with an Ed25519 key (PKCS#8 PEM)`,
      keyPath,
    );
  }
  return key;
}

/** Raw 32-byte Ed25519 public key (RFC 8037 JWK "x"). */
function rawPublicKey(privateKey: KeyObject): Buffer {
  const { x } = createPublicKey(privateKey).export({ format: 'jwk' });
  return Buffer.from(x ?? '', 'base64url');
}

/** fsync a directory so a new entry in it survives a crash; some platforms cannot, which is harmless. */
async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Best effort only.
  }
}

/**
 * Writes a new key without ever exposing a partial file: the PEM is written and fsynced to a
 * private temporary file (exclusive create, 0600), then hard-linked into place. link(2) fails
 * with EEXIST rather than replacing, so when two processes race exactly one key wins, and a
 * reader never sees an empty or half-written key file (which `open(path, 'wx')` followed by a
 * write would show it). Returns the new key, or undefined if another process created one first.
 */
async function createKeyFile(keyPath: string): Promise<KeyObject | undefined> {
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  if (!(await writeNewKeyFile(keyPath, pem, KEY_FILE_MODE))) return undefined;
  await syncDirectory(path.dirname(keyPath));
  return privateKey;
}

function describeKey(name: string, privateKey: KeyObject): { signer: NoteSigner; verifierKey: string; publicKey: Buffer } {
  const signer = ed25519Signer(name, privateKey);
  const publicKey = rawPublicKey(privateKey);
  return { signer, verifierKey: formatVerifierKey(name, publicKey), publicKey };
}

/** The signing key `name` for an Ed25519 private key held elsewhere (the vault). */
export function checkpointKeyFrom(name: string, privateKey: KeyObject): CheckpointKey {
  if (!isValidKeyName(name)) throw new AirlockError('KEY_INVALID', 'the checkpoint key name must be non-empty with no spaces and no "+"; use the log origin, e.g. example.com/audit', { reason: 'bad_name' });
  return describeKey(name, privateKey);
}

/** The verifier for a raw 32-byte Ed25519 public key stored elsewhere (the vault's clear copy). */
export function checkpointVerifierKeyFrom(name: string, publicKey: Buffer): CheckpointVerifierKey {
  return { verifier: ed25519Verifier(name, publicKey), verifierKey: formatVerifierKey(name, publicKey), publicKey };
}

/**
 * The 32-byte Ed25519 seed of an old install's key file, for importing it into the vault; undefined
 * when there is no file. Refuses what {@link loadOrCreateCheckpointKey} refuses (loose
 * permissions, not Ed25519, unparsable). The caller zeroes the result.
 */
export async function readCheckpointKeyFile(home: string): Promise<Buffer | undefined> {
  let key: KeyObject;
  try {
    key = await readPrivateKey(checkpointKeyPath(home));
  } catch (err) {
    if (err instanceof AirlockError && err.details.reason === 'missing') return undefined;
    throw err;
  }
  return Buffer.from(key.export({ format: 'jwk' }).d ?? '', 'base64url');
}

/** Loads the checkpoint signing key, creating it (dir 0700, file 0600) on first use; refuses loose permissions, non-Ed25519 and unparsable files. */
export async function loadOrCreateCheckpointKey(home: string, name: string): Promise<CheckpointKeyFile> {
  const keyPath = checkpointKeyPath(home);
  checkName(name, keyPath); // before touching the disk, so a bad name creates nothing
  try {
    return { ...describeKey(name, await readPrivateKey(keyPath)), path: keyPath, created: false };
  } catch (err) {
    if (!(err instanceof AirlockError && err.details.reason === 'missing')) throw err;
  }
  let created: KeyObject | undefined;
  try {
    const keysDir = path.dirname(keyPath);
    // mkdir's mode is filtered by the umask; if we made the directory, make its mode exactly 0700.
    if ((await mkdir(keysDir, { recursive: true, mode: KEY_DIR_MODE })) !== undefined) await chmod(keysDir, KEY_DIR_MODE);
    created = await createKeyFile(keyPath);
  } catch (err) {
    throw keyError('unwritable', `cannot create the checkpoint signing key ${keyPath}; check that the Airlock home is writable`, keyPath, err);
  }
  if (created !== undefined) return { ...describeKey(name, created), path: keyPath, created: true };
  // Another process (or call) created the key between our read and our link: use theirs.
  return { ...describeKey(name, await readPrivateKey(keyPath)), path: keyPath, created: false };
}

/** Loads only the public half of the checkpoint key (for `airlock audit key` and verification); never creates one. */
export async function loadVerifierKey(home: string, name: string): Promise<CheckpointVerifierKey & { readonly path: string }> {
  const keyPath = checkpointKeyPath(home);
  checkName(name, keyPath);
  const privateKey = await readPrivateKey(keyPath);
  const publicKey = rawPublicKey(privateKey);
  return { verifier: ed25519Verifier(name, publicKey), verifierKey: formatVerifierKey(name, publicKey), publicKey, path: keyPath };
}
