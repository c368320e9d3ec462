/**
 * Keys the vault holds for other domains, each wrapped by the root key (vault_sealed_keys):
 *
 * - `identity-seal`: the 256-bit key that seals TOTP seeds, JWT signing keys and OIDC verifiers.
 *   Its format (`v1.<nonce>.<ciphertext>.<tag>`, the record name as AAD) is the one the old key
 *   file sealed with, so values sealed before the key moved in still open.
 * - `audit-checkpoint`: the Ed25519 key that signs audit checkpoints, kept as its 32-byte seed
 *   (RFC 8032 §5.1.5); its public key is stored in clear (and bound into the AAD) so verifiers
 *   can read it without the root key.
 *
 * Before issue 5 both were files under `$AIRLOCK_HOME/keys/`; {@link LegacyKeyFile} is how the
 * vault imports them once.
 */
import { createPrivateKey, createPublicKey, createSecretKey, generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { AirlockError } from '../errors/index.js';
import { KEY_BYTES, NONCE_BYTES, OpenFailed, TAG_BYTES, encodeAad, gcmOpen, gcmSeal } from './aead.js';

/** The keys the vault holds for other domains, by `vault_sealed_keys.name`. */
export const SEALED_KEY_NAMES = ['identity-seal', 'audit-checkpoint'] as const;
export type SealedKeyName = (typeof SEALED_KEY_NAMES)[number];

/** What each key is, for messages and logs. */
export const SEALED_KEY_DESCRIPTIONS: Readonly<Record<SealedKeyName, string>> = {
  'identity-seal': 'identity sealing key (TOTP seeds, token signing keys, OIDC verifiers)',
  'audit-checkpoint': 'audit checkpoint signing key',
};

/**
 * Seals and opens small secrets with the identity sealing key. Structurally the identity
 * domain's `SealKey`: the vault does not import identity.
 */
export interface SealKey {
  /** `v1.<nonce>.<ciphertext>.<tag>` (base64url parts); `aad` binds it to one record. */
  seal(plain: Buffer, aad: string): string;
  /** The plaintext, or KEY_INVALID for a wrong key, wrong record or any alteration. */
  open(sealed: string, aad: string): Buffer;
}

/** The checkpoint signing key: the private key stays a KeyObject; the public key is 32 raw bytes. */
export interface CheckpointKeyPair {
  readonly privateKey: KeyObject;
  readonly publicKey: Buffer;
}

/**
 * A key file of an install from before the keys moved into the vault. `read` returns the key
 * (the 32-byte sealing key; the checkpoint key's 32-byte Ed25519 seed) or undefined when there
 * is no file, and refuses an unsafe or malformed one (its owner's checks).
 */
export interface LegacyKeyFile {
  readonly path: string;
  read(): Promise<Buffer | undefined>;
}

/** The old key files to import at open, by key. */
export type LegacyKeyFiles = Partial<Readonly<Record<SealedKeyName, LegacyKeyFile>>>;

/**
 * What opening did with a key (never its bytes): `generated` in the vault; `imported` from its
 * old file; `file_removed` (the old file, once the vault holds the same key); `file_kept` (an
 * old file holding a different key than the vault's: left alone); `file_remove_failed`.
 */
export interface SealedKeyEvent {
  readonly key: SealedKeyName;
  readonly action: 'generated' | 'imported' | 'file_removed' | 'file_kept' | 'file_remove_failed';
  readonly path?: string;
}

/** AAD of a sealed key: its name, and its public key when it has one (so neither can be swapped). */
export function sealedKeyAad(name: string, publicKey: Buffer | null): Buffer {
  return encodeAad(['sealed-key', name, publicKey === null ? '' : publicKey.toString('base64url')]);
}

/** PKCS#8 prefix of an Ed25519 private key (RFC 8410 §7): the 32-byte seed follows. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** The Ed25519 private key of a 32-byte seed. */
export function ed25519FromSeed(seed: Buffer): KeyObject {
  if (seed.length !== KEY_BYTES) throw new OpenFailed();
  const der = Buffer.concat([ED25519_PKCS8_PREFIX, seed]);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    der.fill(0);
  }
}

/** The raw 32-byte public key of an Ed25519 private key (RFC 8037 JWK "x"). */
export function ed25519PublicKey(privateKey: KeyObject): Buffer {
  return Buffer.from(createPublicKey(privateKey).export({ format: 'jwk' }).x ?? '', 'base64url');
}

/** A new Ed25519 key as its seed (the caller zeroes it) and public key. */
export function newEd25519Seed(): { seed: Buffer; publicKey: Buffer } {
  const { privateKey } = generateKeyPairSync('ed25519');
  const seed = Buffer.from(privateKey.export({ format: 'jwk' }).d ?? '', 'base64url');
  return { seed, publicKey: ed25519PublicKey(privateKey) };
}

const B64URL = /^[A-Za-z0-9_-]*$/;

function unsealFailed(): AirlockError {
  // One message for every failure and no echo of the input (as the old file key said it).
  return new AirlockError('KEY_INVALID', 'sealed data could not be opened: it was sealed with another key, belongs to another record, or was altered', { reason: 'unseal_failed' });
}

/**
 * The identity sealing key over 32 bytes: AES-256-GCM (SP 800-38D), random 96-bit
 * nonce, the record name (UTF-8) as AAD, in the format the old key file used.
 */
export function sealKeyOver(bytes: Buffer): SealKey {
  if (bytes.length !== KEY_BYTES) throw new OpenFailed();
  const key = createSecretKey(bytes); // a copy inside the KeyObject: the caller zeroes its buffer
  return Object.freeze({
    seal(plain: Buffer, aad: string): string {
      const s = gcmSeal(key, Buffer.from(aad, 'utf8'), plain);
      return `v1.${s.nonce.toString('base64url')}.${s.ciphertext.toString('base64url')}.${s.tag.toString('base64url')}`;
    },
    open(sealed: string, aad: string): Buffer {
      const parts = sealed.split('.');
      if (parts.length !== 4 || parts[0] !== 'v1') throw unsealFailed();
      const [, n, c, t] = parts as [string, string, string, string];
      if (!B64URL.test(n) || !B64URL.test(c) || !B64URL.test(t)) throw unsealFailed();
      const nonce = Buffer.from(n, 'base64url');
      const tag = Buffer.from(t, 'base64url');
      if (nonce.length !== NONCE_BYTES || tag.length !== TAG_BYTES) throw unsealFailed();
      try {
        return gcmOpen(key, Buffer.from(aad, 'utf8'), { nonce, ciphertext: Buffer.from(c, 'base64url'), tag });
      } catch {
        throw unsealFailed();
      }
    },
  });
}
