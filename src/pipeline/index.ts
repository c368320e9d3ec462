/**
 * The pipeline-definition domain: `airlock.yaml` in, a validated, frozen PipelineDefinition
 * out (docs/pipeline.md). No storage, no HTTP.
 */
export type {
  ApprovalRules,
  CredentialKind,
  EnvironmentDefinition,
  EvidenceRules,
  Freeze,
  HealthCheck,
  PipelineDefinition,
  PipelineProblem,
  Schedule,
  SecretUse,
  StageDefinition,
  StepDefinition,
} from './types.js';
export { OverridesInvalidError, PipelineInvalidError } from './errors.js';
export { lintPipeline, lintPipelineWithDefinition, parsePipeline } from './pipeline.js';
export { pipelineJsonSchema } from './schema.js';
export type { CredentialMatch, ValueContext } from './credentials.js';
export { findCredentialFormats, findCredentials, looksRandom, redact, scanForCredentials, shannonEntropy } from './credentials.js';
export type { ConfigDiff, EffectiveConfig } from './config.js';
export { configDiff, configDigest, effectiveConfig, parseOverrides } from './config.js';
export { branchAllowed, branchMatches, scheduleActive } from './schedule.js';
export { DEFAULT_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS, SEMVER_RANGE_PATTERN } from './rules.js';
