/** Verifying an artifact's evidence where the verifier stands (docs/verify.md). */
export { envelopeDigest, verifyArtifact, vsaFor } from './verifier.js';
export type { Check, TrustedKey, Verdict, VerifyPolicy } from './verifier.js';
