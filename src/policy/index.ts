/**
 * Authorization: Cedar policies decide every request (deny by default). The shipped set lives
 * in policies/*.cedar with its schema; changes are stored as numbered versions.
 */
export {
  ACTIONS,
  ACTION_GROUPS,
  DECISION_ACTIONS,
  BUILTIN_ROLES,
  NO_MFA_AGE_SECONDS,
  PRIVILEGED_ACTIONS,
  PUBLIC_ACTIONS,
  ROLES_REQUIRING_MFA,
  SELF_ACTIONS,
  SENSITIVE_ACTIONS,
  STEP_UP_MAX_AGE_SECONDS,
  isAction,
} from './actions.js';
export type { Action, BuiltinRole } from './actions.js';
export { PolicyEngine, policyDigest } from './engine.js';
export type { AuthzContext, AuthzRequest, Decision, PrincipalRef, Refusal, ReleaseAuthzRequest, ReleaseContext, ResourceRef, SodExceptionAuthzRequest, SodExceptionContext } from './engine.js';
export { sodExceptionsFor } from './sod-exceptions.js';
export type { NamedSodException, SodExceptionFacts } from './sod-exceptions.js';
export { defaultPolicies, defaultPolicyDir, parsePolicyFiles, policySchemaText, readPolicyDirectory, readPolicyFiles } from './files.js';
export type { PolicyFile, PolicySource } from './files.js';
export { activePolicyEngine, activePolicyVersion, getPolicyVersion, listPolicyVersions, writePolicyVersion } from './versions.js';
export type { PolicyVersion, PolicyVersionInfo, PolicyVersionInput } from './versions.js';
