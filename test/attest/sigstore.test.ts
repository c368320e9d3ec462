/**
 * Sigstore interop: our bundles are valid v0.3 bundles that @sigstore/verify verifies offline with
 * our public key alone; tampered, re-keyed or re-typed bundles are refused with a reason.
 */
import { generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { bundleFromJSON, bundleToJSON } from '@sigstore/bundle';
import { Verifier, toSignedEntity, toTrustMaterial } from '@sigstore/verify';
import { describe, expect, it } from 'vitest';
import { IN_TOTO_PAYLOAD_TYPE, SIGSTORE_BUNDLE_V03, attestationSigner, signEnvelope, signStatement, statement, toSigstoreBundle, verifySigstoreBundle } from '../../src/attest/index.js';
import { LINK_PAYLOAD_TYPE } from '../../src/runner/index.js';

const signer = attestationSigner(generateKeyPairSync('ed25519').privateKey);
const other = attestationSigner(generateKeyPairSync('ed25519').privateKey);
const keys = new Map<string, KeyObject>([[signer.kid, signer.publicKey]]);
const st = statement([{ name: 'app.tgz', digest: { sha256: 'a'.repeat(64) } }], 'https://example.com/predicate/v1', { ok: true });
const envelope = signStatement(st, signer);

function reasonOf(result: ReturnType<typeof verifySigstoreBundle>): string {
  if (result.ok) throw new Error('expected the bundle to be refused');
  return result.reason;
}

/** A JSON copy with one edit, as an attacker would hand it over. */
function edited(edit: (b: { verificationMaterial: { publicKey: { hint: string } }; dsseEnvelope: { payload: string; payloadType: string; signatures: { sig: string; keyid: string }[] } }) => void): unknown {
  const copy = JSON.parse(JSON.stringify(toSigstoreBundle(envelope))) as Parameters<typeof edit>[0];
  edit(copy);
  return copy;
}

describe('Sigstore bundles', () => {
  it('has the v0.3 key-based shape and survives the library round trip unchanged', () => {
    const bundle = toSigstoreBundle(envelope);
    expect(bundle).toEqual({
      mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
      verificationMaterial: { publicKey: { hint: signer.kid }, tlogEntries: [], timestampVerificationData: { rfc3161Timestamps: [] } },
      dsseEnvelope: { payload: envelope.payload, payloadType: IN_TOTO_PAYLOAD_TYPE, signatures: [{ sig: envelope.signatures[0]!.sig, keyid: signer.kid }] },
    });
    expect(SIGSTORE_BUNDLE_V03).toBe(bundle.mediaType);
    const parsed = bundleFromJSON(JSON.parse(JSON.stringify(bundle)));
    expect(parsed.content.$case).toBe('dsseEnvelope');
    expect(parsed.verificationMaterial.content.$case).toBe('publicKey');
    expect(parsed.verificationMaterial.tlogEntries).toEqual([]);
    // protobuf JSON drops empty lists; everything else comes back byte for byte.
    const { verificationMaterial, ...rest } = bundle;
    expect(bundleToJSON(parsed)).toEqual({ ...rest, verificationMaterial: { publicKey: verificationMaterial.publicKey, timestampVerificationData: {} } });
  });

  it('verifies with @sigstore/verify used directly, offline, with only our public key', () => {
    const bundle = bundleFromJSON(JSON.parse(JSON.stringify(toSigstoreBundle(envelope))));
    const trust = toTrustMaterial({ mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1', tlogs: [], ctlogs: [], certificateAuthorities: [], timestampAuthorities: [] }, (hint) => {
      if (hint !== signer.kid) throw new Error('unknown key');
      return { publicKey: signer.publicKey, validFor: () => true };
    });
    const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
    const result = verifier.verify(toSignedEntity(bundle));
    expect(result.key.export({ type: 'spki', format: 'der' })).toEqual(signer.publicKey.export({ type: 'spki', format: 'der' }));
    // The same verifier refuses the bundle when another key is behind the hint.
    const wrongTrust = toTrustMaterial({ mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1', tlogs: [], ctlogs: [], certificateAuthorities: [], timestampAuthorities: [] }, () => ({ publicKey: other.publicKey, validFor: () => true }));
    expect(() => new Verifier(wrongTrust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 }).verify(toSignedEntity(bundle))).toThrow(/signature verification failed/);
  });

  it('verifySigstoreBundle accepts our bundle and returns the signed payload', () => {
    const result = verifySigstoreBundle(JSON.parse(JSON.stringify(toSigstoreBundle(envelope))), keys);
    expect(result).toEqual({ ok: true, payload: Buffer.from(envelope.payload, 'base64'), kid: signer.kid });
  });

  it('refuses a tampered payload', () => {
    const tampered = edited((b) => {
      b.dsseEnvelope.payload = Buffer.from(Buffer.from(b.dsseEnvelope.payload, 'base64').toString().replace('app.tgz', 'evil.tgz')).toString('base64');
    });
    expect(reasonOf(verifySigstoreBundle(tampered, keys))).toBe('sigstore verification failed: SIGNATURE_ERROR: signature verification failed');
  });

  it('refuses the wrong key: another key behind our hint, or a hint we do not trust', () => {
    expect(reasonOf(verifySigstoreBundle(toSigstoreBundle(envelope), new Map([[signer.kid, other.publicKey]])))).toBe('sigstore verification failed: SIGNATURE_ERROR: signature verification failed');
    const foreign = toSigstoreBundle(signStatement(st, other));
    expect(reasonOf(verifySigstoreBundle(foreign, keys))).toBe(`bundle key hint ${other.kid} is not a trusted key id`);
    // Re-pointing the hint at our key does not make a foreign signature ours.
    const rehinted = edited((b) => {
      b.verificationMaterial.publicKey.hint = signer.kid;
      b.dsseEnvelope.signatures[0]!.sig = foreign.dsseEnvelope.signatures[0]!.sig;
      b.dsseEnvelope.signatures[0]!.keyid = signer.kid;
    });
    expect(reasonOf(verifySigstoreBundle(rehinted, keys))).toBe('sigstore verification failed: SIGNATURE_ERROR: signature verification failed');
    const mismatch = edited((b) => {
      b.dsseEnvelope.signatures[0]!.keyid = other.kid;
    });
    expect(reasonOf(verifySigstoreBundle(mismatch, keys))).toBe(`signature key id ${other.kid} does not match the bundle key hint ${signer.kid}`);
  });

  it('refuses a wrong payload type, signed or relabelled', () => {
    const link = toSigstoreBundle(signEnvelope(LINK_PAYLOAD_TYPE, Buffer.from('{}'), signer));
    expect(reasonOf(verifySigstoreBundle(link, keys))).toBe(`payload type ${LINK_PAYLOAD_TYPE} is not ${IN_TOTO_PAYLOAD_TYPE}`);
    expect(verifySigstoreBundle(link, keys, { expectedPayloadType: LINK_PAYLOAD_TYPE }).ok).toBe(true);
    const relabelled = edited((b) => {
      b.dsseEnvelope.payloadType = LINK_PAYLOAD_TYPE;
    });
    expect(reasonOf(verifySigstoreBundle(relabelled, keys, { expectedPayloadType: LINK_PAYLOAD_TYPE }))).toBe('sigstore verification failed: SIGNATURE_ERROR: signature verification failed');
  });

  it('refuses malformed bundles and unverifiable log or timestamp material', () => {
    expect(reasonOf(verifySigstoreBundle({}, keys))).toMatch(/^not a valid Sigstore bundle: invalid bundle \(.*mediaType/);
    expect(reasonOf(verifySigstoreBundle('x', keys))).toMatch(/^not a valid Sigstore bundle/);
    const noSig = edited((b) => {
      b.dsseEnvelope.signatures = [];
    });
    expect(reasonOf(verifySigstoreBundle(noSig, keys))).toContain('content.dsseEnvelope.signatures');
    const withLog = JSON.parse(JSON.stringify(toSigstoreBundle(envelope))) as { verificationMaterial: { tlogEntries: unknown[] } };
    withLog.verificationMaterial.tlogEntries.push({
      logIndex: '1',
      logId: { keyId: Buffer.alloc(32).toString('base64') },
      kindVersion: { kind: 'dsse', version: '0.0.1' },
      integratedTime: '1700000000',
      inclusionProof: { logIndex: '1', rootHash: Buffer.alloc(32).toString('base64'), treeSize: '2', hashes: [], checkpoint: { envelope: 'x' } },
      canonicalizedBody: Buffer.from('{}').toString('base64'),
    });
    expect(reasonOf(verifySigstoreBundle(withLog, keys))).toMatch(/^sigstore verification failed: TLOG_/);
  });

  it('wraps only one-signature envelopes', () => {
    const two = { ...envelope, signatures: [...envelope.signatures, ...signStatement(st, other).signatures] };
    expect(() => toSigstoreBundle(two)).toThrow(/exactly one DSSE signature/);
  });
});
