/**
 * Our envelopes as Sigstore bundles v0.3 (key-based: `publicKey.hint` = kid, no Fulcio
 * certificate, no Rekor entry), and their verification with @sigstore/verify offline. The
 * top-level `sigstore.verify` insists on a transparency log and a trusted root from TUF, so
 * this builds the pieces it would: a trust root with no authorities, a key selector mapping the
 * hint to our public key, and a Verifier that requires no log entries or timestamps.
 */
import type { KeyObject } from 'node:crypto';
import { bundleFromJSON } from '@sigstore/bundle';
import type { Bundle } from '@sigstore/bundle';
import { Verifier, toSignedEntity, toTrustMaterial } from '@sigstore/verify';
import type { KeyFinderFunc } from '@sigstore/verify';
import { ValidationError } from '../errors/index.js';
import { IN_TOTO_PAYLOAD_TYPE } from './dsse.js';
import type { Envelope } from './dsse.js';

export const SIGSTORE_BUNDLE_V03 = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const TRUSTED_ROOT_MEDIA_TYPE = 'application/vnd.dev.sigstore.trustedroot+json;version=0.1';

export interface SigstoreBundle {
  readonly mediaType: typeof SIGSTORE_BUNDLE_V03;
  readonly verificationMaterial: {
    readonly publicKey: { readonly hint: string };
    readonly tlogEntries: readonly never[];
    readonly timestampVerificationData: { readonly rfc3161Timestamps: readonly never[] };
  };
  readonly dsseEnvelope: {
    readonly payload: string;
    readonly payloadType: string;
    readonly signatures: readonly { readonly sig: string; readonly keyid: string }[];
  };
}

export type SigstoreVerification = { readonly ok: true; readonly payload: Buffer; readonly kid: string } | { readonly ok: false; readonly reason: string };

/** A one-signature envelope as a v0.3 bundle; the bundle format allows exactly one DSSE signature. */
export function toSigstoreBundle(envelope: Envelope): SigstoreBundle {
  const [sig, ...rest] = envelope.signatures;
  if (sig === undefined || rest.length > 0) {
    throw new ValidationError('a Sigstore bundle carries exactly one DSSE signature', [{ path: 'envelope.signatures', message: `must hold exactly one signature, not ${envelope.signatures.length}` }]);
  }
  if (sig.keyid === '') throw new ValidationError('a key-based Sigstore bundle needs the key id as its hint', [{ path: 'envelope.signatures[0].keyid', message: 'must be the signing key id' }]);
  return {
    mediaType: SIGSTORE_BUNDLE_V03,
    verificationMaterial: { publicKey: { hint: sig.keyid }, tlogEntries: [], timestampVerificationData: { rfc3161Timestamps: [] } },
    dsseEnvelope: { payload: envelope.payload, payloadType: envelope.payloadType, signatures: [{ sig: sig.sig, keyid: sig.keyid }] },
  };
}

/** No Fulcio, Rekor, CT log or TSA: trust comes only from the key selector. */
const EMPTY_TRUSTED_ROOT: Parameters<typeof toTrustMaterial>[0] = { mediaType: TRUSTED_ROOT_MEDIA_TYPE, tlogs: [], ctlogs: [], certificateAuthorities: [], timestampAuthorities: [] };

class UnknownHint extends Error {}

function message(err: unknown): string {
  return err instanceof Error ? err.message : 'unknown error';
}

export interface VerifySigstoreOptions {
  /** Default {@link IN_TOTO_PAYLOAD_TYPE}. */
  readonly expectedPayloadType?: string;
}

/**
 * Verifies an untrusted bundle against our keys (kid -> public key) with @sigstore/verify.
 * Refused: anything but a key-based DSSE bundle, a hint that is not one of our kids, a
 * signature keyid that contradicts the hint, another payload type, or a bad signature.
 */
export function verifySigstoreBundle(bundle: unknown, keys: ReadonlyMap<string, KeyObject>, opts: VerifySigstoreOptions = {}): SigstoreVerification {
  const expectedType = opts.expectedPayloadType ?? IN_TOTO_PAYLOAD_TYPE;
  let parsed: Bundle;
  try {
    parsed = bundleFromJSON(bundle);
  } catch (err) {
    const fields = (err as { fields?: unknown }).fields;
    return { ok: false, reason: `not a valid Sigstore bundle: ${message(err)}${Array.isArray(fields) && fields.length > 0 ? ` (${fields.join(', ')})` : ''}` };
  }
  if (parsed.content.$case !== 'dsseEnvelope') return { ok: false, reason: 'bundle holds no DSSE envelope' };
  if (parsed.verificationMaterial.content.$case !== 'publicKey') return { ok: false, reason: 'bundle is not signed with a public key' };
  const hint = parsed.verificationMaterial.content.publicKey.hint;
  const env = parsed.content.dsseEnvelope;
  if (env.payloadType !== expectedType) return { ok: false, reason: `payload type ${env.payloadType.slice(0, 100)} is not ${expectedType}` };
  if (!keys.has(hint)) return { ok: false, reason: `bundle key hint ${hint.slice(0, 100)} is not a trusted key id` };
  const keyid = env.signatures[0]?.keyid ?? '';
  if (keyid !== '' && keyid !== hint) return { ok: false, reason: `signature key id ${keyid.slice(0, 100)} does not match the bundle key hint ${hint.slice(0, 100)}` };

  const selector: KeyFinderFunc = (h) => {
    const publicKey = keys.get(h);
    if (publicKey === undefined) throw new UnknownHint(`key hint ${h.slice(0, 100)} is not trusted`);
    // Retired keys stay valid for verification; with no timestamps there is nothing to compare anyway.
    return { publicKey, validFor: () => true };
  };
  try {
    const verifier = new Verifier(toTrustMaterial(EMPTY_TRUSTED_ROOT, selector), { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
    verifier.verify(toSignedEntity(parsed));
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return { ok: false, reason: `sigstore verification failed: ${typeof code === 'string' ? `${code}: ` : ''}${message(err)}` };
  }
  return { ok: true, payload: Buffer.from(env.payload), kid: hint };
}
