/** Audit: the tamper-evident log (promise 1). Everything other domains may use is here. */
export { AuditLog, systemClock } from './log.js';
export type { AuditEntry, AuditQuery, Clock, ConsistencyProof, InclusionProof, TreeHead } from './log.js';
export { ACTOR_KINDS, AUDIT_SCHEMA_VERSION, OUTCOMES, MAX_EVENT_BYTES, canonicalEvent } from './event.js';
export type { ActorKind, AuditEvent, AuditEventInput, JsonValue, Outcome, RequestContext } from './event.js';
export { Checkpointer } from './checkpointer.js';
export type { CheckpointerOptions, SignedCheckpoint } from './checkpointer.js';
export { verifyLog } from './verify.js';
export type { AnchoredDocument, FaultKind, Finding, VerifyOptions, VerifyReport } from './verify.js';
export {
  formatCheckpoint,
  formatVerifierKey,
  keyId,
  openCheckpoint,
  openNote,
  parseCheckpoint,
  parseVerifierKey,
  signNote,
  ed25519Signer,
  ed25519Verifier,
} from './checkpoint.js';
export type { Checkpoint, NoteSigner, NoteVerifier } from './checkpoint.js';
export { checkpointKeyFrom, checkpointKeyPath, checkpointVerifierKeyFrom, loadOrCreateCheckpointKey, loadVerifierKey, readCheckpointKeyFile } from './keys.js';
export type { CheckpointKey, CheckpointKeyFile, CheckpointVerifierKey } from './keys.js';
export {
  HASH_SIZE,
  consistencyPlan,
  emptyRoot,
  inclusionPlan,
  leafHash,
  nodeHash,
  rootFromInclusionProof,
  verifyConsistency,
  verifyInclusion,
  MerkleBuilder,
} from './merkle.js';
export { encodeInclusionProof, encodeConsistencyProof, decodeInclusionProof, decodeConsistencyProof, verifyProofDocument } from './proof-format.js';
export type { InclusionProofDocument, ConsistencyProofDocument } from './proof-format.js';
export { EXPORT_FORMAT, exportLog, latestCheckpoint, verifyExport, type ExportEntryLine, type ExportFinding, type ExportHeader, type ExportOptions, type ExportSummary, type ExportVerification, type VerifyExportOptions } from './export.js';
