/**
 * Runner: executes one pipeline step as an isolated process group (bubblewrap when available),
 * and proves what went in and came out with a signed link record.
 */
export { executeStep, DEFAULT_KILL_GRACE_MS, DEFAULT_MAX_LOG_BYTES } from './executor.js';
export type {
  EnvironmentFingerprint,
  ExecutorDeps,
  LinkRecord,
  LinkSigner,
  LogRecord,
  SignedEnvelope,
  StepJob,
  StepResult,
  StepStatus,
} from './types.js';
export { LINK_PAYLOAD_TYPE, LINK_TYPE, ed25519LinkSigner, linkKeyId, linkPayload, pae, signLink, verifyLink } from './link.js';
export type { LinkVerification } from './link.js';
export { truncationMarker } from './logs.js';
export { findBwrap } from './sandbox.js';
export { groupAlive, killGroup } from './process.js';
export { FIXED_PATH, RESERVED_ENV, validateJob } from './validate.js';
export { compareVersions, findVersion, formatVersion, parseRange, parseVersion, satisfies, RangeSyntaxError } from './semver.js';
export type { Range, SemVer } from './semver.js';
export { MASK, SecretMasker, maskingOutput } from './masking.js';
export type { SecretMaskerOptions } from './masking.js';
