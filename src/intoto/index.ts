/**
 * in-toto v0.9 export: securesystemslib canonical JSON and Ed25519 key objects, runner-signed
 * links for step attempts, a root layout derived from the pipeline, and the files
 * `in-toto-verify` (in-toto 1.3) checks a run with (docs/intoto.md). Pure except `writeExport`.
 */
export { CanonicalJsonError, canonicalBytes, encodeCanonical } from './canonical.js';
export { inTotoKeyId, inTotoLayoutKey, inTotoPublicKey, keyFromInToto } from './keys.js';
export { signMetablock, verifyMetablock } from './metablock.js';
export type { MetablockVerification } from './metablock.js';
export { artifactsOf, commandArgv, hashDict, linkFileName, linkFor, linkProblem, linkShapeProblem, signLinkMetablock, stepName } from './link.js';
export type { ExpectedLink, LinkInput } from './link.js';
export { fnmatchEscape, inTotoDate, layoutFor } from './layout.js';
export type { Functionary, LayoutOptions } from './layout.js';
export { LAYOUT_FILE, LAYOUT_KEY_FILE, LAYOUT_VALIDITY_MS, exportInToto } from './export.js';
export type { ExportFile, ExportInput, ExportStep, InTotoRouteDeps } from './export.js';
export { writeExport } from './write.js';
export type { ArtifactRule, HashDict, InTotoLayout, InTotoLayoutKey, InTotoLink, InTotoPublicKey, InTotoSigner, InTotoStep, Metablock } from './types.js';
