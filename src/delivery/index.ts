/**
 * Delivery (issue 7, in progress): what a deployment is bound to, who may approve it
 * (segregation of duties over the whole change), when deploys are allowed (windows, freezes),
 * break-glass, and the signed, offline-verifiable deployment record. docs/delivery.md.
 */
export { MIN_JUSTIFICATION_LENGTH, isJustified, normalizeIdentity, personResolver } from './people.js';
export type { Person, PersonResolver, Reason } from './people.js';
export type { ProtectionRules, RecurringFreeze, Schedule } from './rules.js';
export { BINDING_TYPE, bindingDigest, bindingDocument, isSha256Digest, makeBinding } from './binding.js';
export type { ArtifactDigest, CommitRange, DeploymentBinding } from './binding.js';
export { evaluateApprovals } from './approvals.js';
export type {
  Approval,
  ApprovalDecision,
  ApprovalEvaluation,
  ApprovalRefusalCode,
  ApprovalRequest,
  ApprovalRules,
  CountedApproval,
  Denial,
  EvaluateApprovalsInput,
  RefusedApproval,
  SodCode,
  SodException,
  UsedException,
} from './approvals.js';
export { deployAllowed, isTimeZone, nextOccurrence, openOccurrence, scheduleIssues } from './windows.js';
export type { ActiveFreeze, DeployWindowCode, DeployWindowDecision, DeployWindowInput, Interval, OneOffFreeze } from './windows.js';
export { evaluateBreakGlass } from './breakglass.js';
export type { BreakGlassCode, BreakGlassDecision, BreakGlassRequest, EvaluateBreakGlassInput, RefusedBreakGlass } from './breakglass.js';
export { Deployments, deploymentRecordAnchors } from './deployments.js';
export { Incidents, MIN_POSTMORTEM_LENGTH } from './incidents.js';
export type { IncidentView } from './incidents.js';
export type { DeliveryFacts, DeploymentNotice, DeploymentSecrets, PolicyDecision, DeployerPort, DeploymentSummary, DeploymentView, DeploymentsDeps, EnvironmentFacts, RecordProofs, ReleaseBasis } from './deployments.js';
export { APPROVAL_V1, DEPLOYMENT_RECORD_V1, RECORD_FILE_FORMAT, recordDigest, signRecord, verifyRecordFile } from './record.js';
export type { DeploymentRecord, RecordCheck, RecordFile } from './record.js';
export { LocalDeployer, assertEnvironmentName } from './deployer.js';
export type { CurrentRelease, DeployArtifact, DeployInput, DeployResult, DeployStep, LocalDeployerDeps, RollbackTarget, StopResult, VerifyingObjects } from './deployer.js';
export { MAX_HEALTH_OUTPUT, runHealthCheck } from './health.js';
export type { HealthCheck, HealthCheckOptions, HealthResult } from './health.js';
export { DEFAULT_TOLERANCE_SEC, SIGNATURE_HEADER, sendWebhook, signWebhook, verifyWebhook } from './webhook.js';
export type { SendWebhookOptions, VerifyResult, WebhookHeaders } from './webhook.js';
export { Freezes, MAX_FREEZE_DURATION_SECONDS, UNTIL_LIFTED } from './freezes.js';
export type { ActiveFreezes, FreezeInfo, FreezeInput, FreezesDeps } from './freezes.js';
export { ApprovalNotifier, webhookTargetLabel } from './notifier.js';
export type { ApprovalNotice, ApprovalNotifierDeps, NotifierLogger, SendWebhook, WebhookTarget } from './notifier.js';
export { boundedMemo } from './memo.js';
