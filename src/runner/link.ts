/**
 * Link records and their DSSE envelopes.
 *
 * The signature covers the DSSE pre-authentication encoding (PAE), never the JSON itself:
 * `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body` (DSSE v1.0, "Protocol"). Binding the
 * payload type stops a signature over one kind of document from being replayed as another.
 */
import { createHash, createPublicKey, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import canonicalize from 'canonicalize';
import type { LinkRecord, LinkSigner, SignedEnvelope } from './types.js';

export const LINK_TYPE = 'https://airlock.dev/link/v1';
export const LINK_PAYLOAD_TYPE = 'application/vnd.airlock.link+json';

/** DSSE v1 pre-authentication encoding; lengths are byte lengths in ASCII decimal. */
export function pae(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${payload.length} `), payload]);
}

/** The canonical bytes of a link record: RFC 8785 JSON (keys sorted, no whitespace). */
export function linkPayload(link: LinkRecord): Buffer {
  const text = canonicalize(link);
  if (text === undefined) throw new TypeError('link record cannot be serialised');
  return Buffer.from(text, 'utf8');
}

/** Sign a link record into a DSSE envelope. */
export function signLink(link: LinkRecord, signer: LinkSigner): SignedEnvelope {
  const payload = linkPayload(link);
  const sig = signer.sign(pae(LINK_PAYLOAD_TYPE, payload));
  return Object.freeze({
    payloadType: LINK_PAYLOAD_TYPE,
    payload: payload.toString('base64'),
    signatures: Object.freeze([Object.freeze({ keyid: signer.keyid, sig: sig.toString('base64') })]),
  });
}

/** Key id for a public key: SHA-256 (hex) of its SubjectPublicKeyInfo DER. */
export function linkKeyId(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256').update(pub.export({ type: 'spki', format: 'der' })).digest('hex');
}

/**
 * An Ed25519 signer for links over a `node:crypto` private key.
 *
 * @example
 * const { privateKey, publicKey } = generateKeyPairSync('ed25519');
 * const result = await executeStep(job, { ...deps, signer: ed25519LinkSigner(privateKey) });
 * verifyLink(result.link, publicKey); // { ok: true, link }
 */
export function ed25519LinkSigner(privateKey: KeyObject): LinkSigner {
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519') {
    throw new TypeError('an Ed25519 private key is required');
  }
  return { keyid: linkKeyId(privateKey), publicKey: createPublicKey(privateKey), sign: (data: Buffer) => cryptoSign(null, data, privateKey) };
}

export type LinkVerification = { readonly ok: true; readonly link: LinkRecord; readonly keyid: string } | { readonly ok: false; readonly reason: string };

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64: Buffer.from silently skips junk, which would make encodings malleable. */
function decodeBase64(text: unknown): Buffer | null {
  if (typeof text !== 'string' || !BASE64_RE.test(text)) return null;
  return Buffer.from(text, 'base64');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isStringMap(value: unknown): boolean {
  return isRecord(value) && Object.values(value).every((v) => typeof v === 'string');
}

function checkLinkShape(value: unknown): string | null {
  if (!isRecord(value)) return 'payload is not a JSON object';
  if (value._type !== LINK_TYPE) return `payload _type is not ${LINK_TYPE}`;
  for (const key of ['pipeline', 'runId', 'stage', 'step', 'command', 'startedAt', 'finishedAt']) {
    if (typeof value[key] !== 'string') return `payload field ${key} is missing or not a string`;
  }
  if (!Number.isInteger(value.attempt)) return 'payload field attempt is not an integer';
  if (!isStringMap(value.materials)) return 'payload field materials is not a map of digests';
  if (!isStringMap(value.products)) return 'payload field products is not a map of digests';
  if (!isRecord(value.byproducts)) return 'payload field byproducts is missing';
  return null;
}

/**
 * Verify a link envelope against one Ed25519 public key. Fails closed: wrong payload type,
 * malformed base64 or JSON, a key that is not Ed25519, or no signature that verifies over the
 * PAE all give `{ ok: false, reason }`. The payload is parsed only after a signature checks.
 */
export function verifyLink(envelope: unknown, publicKey: KeyObject): LinkVerification {
  if (publicKey.asymmetricKeyType !== 'ed25519') return { ok: false, reason: 'the verification key is not an Ed25519 key' };
  const pub = publicKey.type === 'private' ? createPublicKey(publicKey) : publicKey;
  if (!isRecord(envelope)) return { ok: false, reason: 'envelope is not an object' };
  if (envelope.payloadType !== LINK_PAYLOAD_TYPE) return { ok: false, reason: `payloadType is not ${LINK_PAYLOAD_TYPE}` };
  const payload = decodeBase64(envelope.payload);
  if (payload === null) return { ok: false, reason: 'payload is not valid base64' };
  if (!Array.isArray(envelope.signatures) || envelope.signatures.length === 0) return { ok: false, reason: 'envelope has no signatures' };
  const message = pae(LINK_PAYLOAD_TYPE, payload);
  let keyid: string | undefined;
  for (const entry of envelope.signatures as unknown[]) {
    if (!isRecord(entry)) continue;
    const sig = decodeBase64(entry.sig);
    if (sig?.length !== 64) continue;
    if (cryptoVerify(null, message, pub, sig)) {
      keyid = typeof entry.keyid === 'string' ? entry.keyid : '';
      break;
    }
  }
  if (keyid === undefined) return { ok: false, reason: 'no signature verifies with the given key' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, reason: 'payload is not valid JSON' };
  }
  const shapeProblem = checkLinkShape(parsed);
  if (shapeProblem !== null) return { ok: false, reason: shapeProblem };
  return { ok: true, link: parsed as LinkRecord, keyid };
}
