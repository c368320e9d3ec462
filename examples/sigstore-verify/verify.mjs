#!/usr/bin/env node
// Check an Airlock attestation without Airlock: only the Sigstore libraries and node:crypto.
// Airlock signs with its own Ed25519 key (no Fulcio certificate, no Rekor entry), so the trust
// root is that public key: get it from `airlock attestations DIGEST --out DIR` (DIR/keys/) or
// `airlock keys list`, and compare its id with what your team published.
//
//   node verify.mjs --bundle provenance.sigstore.json --key keys/<kid>.pem [--artifact FILE]
//
// Exit 0: the signature verifies with that key, the payload is an in-toto statement, and (with
// --artifact) the statement names that file's SHA-256. Exit 1 with the reason otherwise.
import { createHash, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { bundleFromJSON } from '@sigstore/bundle';
import { Verifier, toSignedEntity, toTrustMaterial } from '@sigstore/verify';

const IN_TOTO = 'application/vnd.in-toto+json';
const fail = (why) => {
  process.stderr.write(`FAIL: ${why}\n`);
  process.exit(1);
};

let values;
try {
  ({ values } = parseArgs({ options: { bundle: { type: 'string' }, key: { type: 'string' }, artifact: { type: 'string' } } }));
} catch (err) {
  fail(err.message);
}
if (values.bundle === undefined || values.key === undefined) fail('usage: verify.mjs --bundle FILE --key PEM [--artifact FILE]');

const publicKey = createPublicKey(readFileSync(values.key));
// Airlock's key id: SHA-256 of the key's SubjectPublicKeyInfo (DER), in hex.
const kid = createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex');

let bundle;
try {
  bundle = bundleFromJSON(JSON.parse(readFileSync(values.bundle, 'utf8')));
} catch (err) {
  fail(`not a Sigstore bundle: ${err.message}`);
}
const trust = toTrustMaterial(
  { mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1', tlogs: [], ctlogs: [], certificateAuthorities: [], timestampAuthorities: [] },
  (hint) => {
    if (hint !== kid) throw new Error(`the bundle names key ${hint}, not the given key ${kid}`);
    return { publicKey, validFor: () => true };
  },
);
try {
  // Key-only bundles: no transparency log, certificate log or timestamp to require.
  new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 }).verify(toSignedEntity(bundle));
} catch (err) {
  fail(`signature: ${err.message}`);
}
// The signature covers the payload type (DSSE PAE), but only a check says which type it is.
if (bundle.content.$case !== 'dsseEnvelope' || bundle.content.dsseEnvelope.payloadType !== IN_TOTO) fail(`payload type is not ${IN_TOTO}`);
const statement = JSON.parse(bundle.content.dsseEnvelope.payload.toString('utf8'));
if (statement._type !== 'https://in-toto.io/Statement/v1') fail('the payload is not an in-toto Statement v1');
if (values.artifact !== undefined) {
  const digest = createHash('sha256').update(readFileSync(values.artifact)).digest('hex');
  if (!statement.subject.some((s) => s.digest?.sha256 === digest)) fail(`the statement does not name ${values.artifact} (sha256 ${digest})`);
}
process.stdout.write(`OK: ${statement.predicateType} signed by ${kid}${values.artifact === undefined ? '' : ` for ${values.artifact}`}\n`);
