/**
 * in-toto v0.9 metablocks: `{"signatures": [{"keyid", "sig"}], "signed": {...}}`. The Ed25519
 * signature (hex) covers the canonical JSON bytes of `signed` directly, with no type prefix: the
 * same runner key also signs DSSE envelopes, whose PAE starts with `DSSEv1 `, which canonical
 * JSON (starting with `{`) can never equal, so neither signature can be replayed as the other.
 */
import { verify as cryptoVerify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { canonicalBytes } from './canonical.js';
import { inTotoKeyId } from './keys.js';
import type { InTotoSigner, Metablock } from './types.js';

const HEX_SIG = /^[0-9a-fA-F]{128}$/; // securesystemslib accepts either case

/** Sign `signed` into a metablock with one signature. */
export function signMetablock<T>(signed: T, signer: InTotoSigner): Metablock<T> {
  const sig = signer.sign(canonicalBytes(signed));
  if (sig.length !== 64) throw new TypeError('the in-toto signer did not return a 64-byte Ed25519 signature');
  return { signatures: [{ keyid: inTotoKeyId(signer.publicKey), sig: sig.toString('hex') }], signed };
}

export type MetablockVerification = { readonly ok: true; readonly keyid: string } | { readonly ok: false; readonly reason: string };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Verify a metablock with one Ed25519 key the way in-toto does: the first signature whose keyid
 * is the key's id must verify over the canonical JSON of `signed`. Fails closed on any shape
 * problem; a value canonical JSON cannot encode (a float) fails too, as it would in Python.
 */
export function verifyMetablock(block: unknown, publicKey: KeyObject): MetablockVerification {
  let keyid: string;
  try {
    keyid = inTotoKeyId(publicKey);
  } catch {
    return { ok: false, reason: 'the verification key is not an Ed25519 key' };
  }
  if (!isRecord(block) || !isRecord(block.signed)) return { ok: false, reason: 'not a metablock (signatures and signed)' };
  if (!Array.isArray(block.signatures)) return { ok: false, reason: 'signatures is not a list' };
  const entry = (block.signatures as unknown[]).find((s) => isRecord(s) && s.keyid === keyid);
  if (!isRecord(entry)) return { ok: false, reason: `no signature by key ${keyid.slice(0, 8)}…` };
  if (typeof entry.sig !== 'string' || !HEX_SIG.test(entry.sig)) return { ok: false, reason: 'the signature is not 128 hex characters' };
  let bytes: Buffer;
  try {
    bytes = canonicalBytes(block.signed);
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  if (!cryptoVerify(null, bytes, publicKey, Buffer.from(entry.sig, 'hex'))) return { ok: false, reason: `the signature by key ${keyid.slice(0, 8)}… does not verify` };
  return { ok: true, keyid };
}
