/**
 * Attestations (issue 6): DSSE envelopes, in-toto statements and predicates (SLSA provenance,
 * test results, VSAs, CycloneDX), the platform signing keys, stored attestations, and
 * Sigstore bundle v0.3 interop.
 */
export { IN_TOTO_PAYLOAD_TYPE, MAX_SIGNATURES, attestationSigner, decodeBase64, signEnvelope, verifyEnvelope } from './dsse.js';
export type { AttestationSigner, Envelope, EnvelopeSignature, EnvelopeVerification, VerifyEnvelopeOptions } from './dsse.js';
export {
  AIRLOCK_PIPELINE_BUILD_TYPE,
  CYCLONEDX_BOM,
  DSSE_ENVELOPE_MEDIA_TYPE,
  IN_TOTO_STATEMENT_V1,
  SLSA_PROVENANCE_V1,
  TEST_RESULT_V01,
  VSA_V1,
  linkByproduct,
  parseStatement,
  provenancePredicate,
  statement,
  statementBytes,
  subjectDigest,
  testResultPredicate,
  vsaPredicate,
} from './statement.js';
export type { DigestSet, ProvenanceInput, ProvenancePredicate, ResourceDescriptor, Statement, Subject, TestResultPredicate, VsaInput, VsaPredicate } from './statement.js';
export { signStatement, verifyStatement } from './attestation.js';
export type { StatementVerification, VerifyStatementOptions } from './attestation.js';
export { KEY_ALGORITHM, KEY_PURPOSES, PlatformKeys } from './keyring.js';
export type { BlobSealer, KeyPurpose, PlatformKeyInfo, PlatformKeysDeps, PlatformSigner } from './keyring.js';
export { Attestations } from './store.js';
export type { AttestationRecord, NewAttestation } from './store.js';
export { SIGSTORE_BUNDLE_V03, toSigstoreBundle, verifySigstoreBundle } from './sigstore.js';
export type { SigstoreBundle, SigstoreVerification, VerifySigstoreOptions } from './sigstore.js';
