/**
 * DSSE v1.0 envelopes for attestations. Signatures cover the pre-authentication encoding
 * (PAE, shared with the runner's link records), never the JSON, so a signature over one
 * payload type cannot be replayed as another.
 */
import { createPublicKey, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { linkKeyId, pae } from '../runner/index.js';

export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
/** More signatures than this is not a real envelope but an attempt to make verification expensive. */
export const MAX_SIGNATURES = 16;

export interface EnvelopeSignature {
  readonly keyid: string;
  /** base64 */
  readonly sig: string;
}

export interface Envelope {
  readonly payloadType: string;
  /** base64 */
  readonly payload: string;
  readonly signatures: readonly EnvelopeSignature[];
}

/** Ed25519 over the DSSE PAE; `kid` is the SHA-256 hex of the public key's SPKI DER. */
export interface AttestationSigner {
  readonly kid: string;
  sign(data: Buffer): Buffer;
}

export interface VerifyEnvelopeOptions {
  /** Distinct trusted keys that must have signed; default 1. */
  readonly threshold?: number;
  /** Default {@link IN_TOTO_PAYLOAD_TYPE}: a caller that forgets to say cannot accept a link as an attestation. */
  readonly expectedPayloadType?: string;
}

export type EnvelopeVerification = { readonly ok: true; readonly payload: Buffer; readonly keyids: string[] } | { readonly ok: false; readonly reason: string };

function requireEd25519Private(privateKey: KeyObject): void {
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519') throw new TypeError('an Ed25519 private key is required');
}

/** A signer over a `node:crypto` Ed25519 private key (tests, offline tools; the platform uses PlatformKeys). */
export function attestationSigner(privateKey: KeyObject): AttestationSigner & { readonly publicKey: KeyObject } {
  requireEd25519Private(privateKey);
  const publicKey = createPublicKey(privateKey);
  return { kid: linkKeyId(publicKey), publicKey, sign: (data: Buffer) => cryptoSign(null, data, privateKey) };
}

/** Sign `payload` as `payloadType` into a one-signature envelope. */
export function signEnvelope(payloadType: string, payload: Buffer, signer: AttestationSigner): Envelope {
  if (typeof payloadType !== 'string' || payloadType === '') throw new TypeError('payloadType must be a non-empty string');
  const sig = signer.sign(pae(payloadType, payload));
  return { payloadType, payload: payload.toString('base64'), signatures: [{ keyid: signer.kid, sig: sig.toString('base64') }] };
}

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64: Buffer.from skips junk silently, which would make encodings malleable. */
export function decodeBase64(text: unknown): Buffer | null {
  if (typeof text !== 'string' || !BASE64_RE.test(text)) return null;
  return Buffer.from(text, 'base64');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Shortened for messages: key ids come from untrusted input. */
function show(text: string): string {
  const printable = text.replace(/[^\x20-\x7e]/g, '?');
  return printable.length > 72 ? `${printable.slice(0, 72)}…` : printable;
}

function isEd25519Public(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'ed25519';
}

/**
 * Verifies an untrusted envelope against trusted keys (kid -> Ed25519 public key). Each
 * signature is checked over the PAE with the key its keyid names (a signature without a keyid
 * is tried against every key); unknown keyids do not count, and each key counts once however
 * many signatures it has, so one key repeated cannot meet a threshold of two. The payload is
 * returned undecoded: parse it only after this succeeds.
 */
export function verifyEnvelope(envelope: unknown, keys: ReadonlyMap<string, KeyObject>, opts: VerifyEnvelopeOptions = {}): EnvelopeVerification {
  const threshold = opts.threshold ?? 1;
  const expectedType = opts.expectedPayloadType ?? IN_TOTO_PAYLOAD_TYPE;
  if (!Number.isSafeInteger(threshold) || threshold < 1) return { ok: false, reason: 'threshold must be an integer of at least 1' };
  if (!isRecord(envelope)) return { ok: false, reason: 'envelope is not a JSON object' };
  if (typeof envelope.payloadType !== 'string') return { ok: false, reason: 'envelope payloadType is missing or not a string' };
  if (envelope.payloadType !== expectedType) return { ok: false, reason: `payload type ${show(envelope.payloadType)} is not ${expectedType}` };
  const payload = decodeBase64(envelope.payload);
  if (payload === null) return { ok: false, reason: 'envelope payload is not valid base64' };
  if (!Array.isArray(envelope.signatures) || envelope.signatures.length === 0) return { ok: false, reason: 'envelope has no signatures' };
  if (envelope.signatures.length > MAX_SIGNATURES) return { ok: false, reason: `envelope has more than ${MAX_SIGNATURES} signatures` };

  const message = pae(expectedType, payload);
  const verifies = (key: KeyObject, sig: Buffer): boolean => isEd25519Public(key) && cryptoVerify(null, message, key, sig);
  const counted = new Map<string, string>(); // key identity (SPKI hash) -> kid as the caller named it
  const problems: string[] = [];
  const signatures = envelope.signatures as unknown[];
  for (const [i, entry] of signatures.entries()) {
    const n = i + 1;
    if (!isRecord(entry)) {
      problems.push(`signature ${n} is not a JSON object`);
      continue;
    }
    if (entry.keyid !== undefined && typeof entry.keyid !== 'string') {
      problems.push(`signature ${n} keyid is not a string`);
      continue;
    }
    const sig = decodeBase64(entry.sig);
    if (sig === null) {
      problems.push(`signature ${n} sig is not valid base64`);
      continue;
    }
    if (sig.length !== 64) {
      problems.push(`signature ${n} is not a 64-byte Ed25519 signature`);
      continue;
    }
    let verifiedBy: [string, KeyObject] | undefined;
    const keyid = entry.keyid ?? '';
    if (keyid !== '') {
      const key = keys.get(keyid);
      if (key === undefined) {
        problems.push(`signature ${n} uses unknown key id ${show(keyid)}`);
        continue;
      }
      if (!isEd25519Public(key)) {
        problems.push(`signature ${n}: trusted key ${show(keyid)} is not an Ed25519 key`);
        continue;
      }
      if (verifies(key, sig)) verifiedBy = [keyid, key];
      else problems.push(`signature ${n} does not verify with key ${show(keyid)}`);
    } else {
      // DSSE keyids are optional, unauthenticated hints: without one, any trusted key may match.
      for (const [kid, key] of keys) {
        if (verifies(key, sig)) {
          verifiedBy = [kid, key];
          break;
        }
      }
      if (verifiedBy === undefined) problems.push(`signature ${n} has no key id and verifies with no trusted key`);
    }
    if (verifiedBy === undefined) continue;
    // Count keys, not key ids: two names for one key are still one signer.
    const identity = linkKeyId(verifiedBy[1].type === 'private' ? createPublicKey(verifiedBy[1]) : verifiedBy[1]);
    if (counted.has(identity)) {
      problems.push(`signature ${n} repeats key ${show(verifiedBy[0])}, which counts once`);
      continue;
    }
    counted.set(identity, verifiedBy[0]);
  }
  if (counted.size < threshold) {
    const head = counted.size === 0 ? 'no valid signature from a trusted key' : `only ${counted.size} of ${threshold} required trusted keys signed`;
    return { ok: false, reason: problems.length === 0 ? head : `${head} (${problems.join('; ')})` };
  }
  return { ok: true, payload, keyids: [...counted.values()] };
}
