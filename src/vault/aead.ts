/**
 * The one primitive of the vault: AES-256-GCM (NIST SP 800-38D) with a random 96-bit nonce and
 * a full 128-bit tag, plus the canonical encoding of associated data. Everything else (data keys,
 * key-encryption keys, the root key's records) is built from these two functions.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

export const KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
/** A wrapped 256-bit key: nonce || ciphertext || tag. */
export const WRAPPED_KEY_BYTES = NONCE_BYTES + KEY_BYTES + TAG_BYTES;

/** GCM refused the input. Never leaves the vault: callers turn it into a KEY_INVALID saying what could not be opened. */
export class OpenFailed extends Error {
  constructor() {
    super('authenticated decryption failed');
    this.name = 'OpenFailed';
  }
}

/**
 * Associated data: a JSON array, so the parts can never run into each other (`a|b` + `c` vs
 * `a` + `b|c`), prefixed by the scheme so a future scheme's AAD never equals this one's.
 */
export function encodeAad(parts: readonly (string | number)[]): Buffer {
  return Buffer.from(JSON.stringify(['airlock-vault/1', ...parts]), 'utf8');
}

/** The three parts of a GCM output, as stored in separate columns. */
export interface Sealed {
  readonly nonce: Buffer;
  readonly ciphertext: Buffer;
  readonly tag: Buffer;
}

/** Encrypts under `key` with a fresh random nonce (one key never sees 2^32 of them: SP 800-38D §8.3). */
export function gcmSeal(key: KeyObject | Buffer, aad: Buffer, plaintext: Buffer): Sealed {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { nonce, ciphertext, tag: cipher.getAuthTag() };
}

/** Decrypts and authenticates, or throws OpenFailed (wrong key, wrong AAD, any altered byte). */
export function gcmOpen(key: KeyObject | Buffer, aad: Buffer, sealed: Sealed): Buffer {
  // Pinned lengths: a truncated tag would otherwise be accepted (SP 800-38D §5.2.1.2).
  if (sealed.nonce.length !== NONCE_BYTES || sealed.tag.length !== TAG_BYTES) throw new OpenFailed();
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.tag);
    return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]);
  } catch {
    throw new OpenFailed();
  }
}

/** Wraps a 256-bit key into one buffer: nonce || ciphertext || tag. */
export function wrapKey(kek: KeyObject | Buffer, aad: Buffer, key: Buffer): Buffer {
  const s = gcmSeal(kek, aad, key);
  return Buffer.concat([s.nonce, s.ciphertext, s.tag]);
}

/** Unwraps what {@link wrapKey} made, or throws OpenFailed. */
export function unwrapKey(kek: KeyObject | Buffer, aad: Buffer, wrapped: Buffer): Buffer {
  if (wrapped.length !== WRAPPED_KEY_BYTES) throw new OpenFailed();
  const key = gcmOpen(kek, aad, {
    nonce: wrapped.subarray(0, NONCE_BYTES),
    ciphertext: wrapped.subarray(NONCE_BYTES, NONCE_BYTES + KEY_BYTES),
    tag: wrapped.subarray(NONCE_BYTES + KEY_BYTES),
  });
  if (key.length !== KEY_BYTES) throw new OpenFailed();
  return key;
}
