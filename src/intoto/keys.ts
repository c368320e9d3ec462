/** securesystemslib Ed25519 key objects and their key ids. */
import { createHash, createPublicKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { canonicalBytes } from './canonical.js';
import type { InTotoLayoutKey, InTotoPublicKey } from './types.js';

const HEX64 = /^[0-9a-f]{64}$/;

function publicOf(key: KeyObject): KeyObject {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== 'ed25519') throw new TypeError(`an Ed25519 key is required, got ${pub.asymmetricKeyType ?? 'a secret key'}`);
  return pub;
}

/** The key object in-toto reads: the raw 32-byte public key as lower-case hex. */
export function inTotoPublicKey(key: KeyObject): InTotoPublicKey {
  const jwk = publicOf(key).export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new TypeError('the Ed25519 key has no public part');
  return {
    keyid_hash_algorithms: ['sha256', 'sha512'],
    keytype: 'ed25519',
    keyval: { public: Buffer.from(jwk.x, 'base64url').toString('hex') },
    scheme: 'ed25519',
  };
}

/**
 * The securesystemslib key id: SHA-256 hex of the canonical JSON of the key object (with its
 * `keyid_hash_algorithms`, without `keyid`), exactly as `format_metadata_to_key` computes it.
 */
export function inTotoKeyId(key: KeyObject | InTotoPublicKey): string {
  const obj = 'keytype' in key ? key : inTotoPublicKey(key);
  const { keyid_hash_algorithms, keytype, keyval, scheme } = obj;
  return createHash('sha256').update(canonicalBytes({ keyid_hash_algorithms: [...keyid_hash_algorithms], keytype, keyval: { public: keyval.public }, scheme })).digest('hex');
}

/** The key object with `keyid` added, as a layout's `keys` map holds it. */
export function inTotoLayoutKey(key: KeyObject): InTotoLayoutKey {
  const obj = inTotoPublicKey(key);
  return { ...obj, keyid: inTotoKeyId(obj) };
}

/** A node KeyObject from a securesystemslib Ed25519 key object; throws TypeError when it is not one. */
export function keyFromInToto(value: unknown): KeyObject {
  const v = value as Partial<InTotoPublicKey> | null;
  if (typeof v !== 'object' || v === null || v.keytype !== 'ed25519' || v.scheme !== 'ed25519') throw new TypeError('not an ed25519 key object');
  const hex = v.keyval?.public;
  if (typeof hex !== 'string' || !HEX64.test(hex)) throw new TypeError('keyval.public is not 64 lower-case hex characters');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(hex, 'hex').toString('base64url') }, format: 'jwk' });
}
