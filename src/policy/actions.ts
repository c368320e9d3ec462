/**
 * The action vocabulary and built-in roles. These mirror policies/airlock.cedarschema, which is
 * the authority for Cedar; the engine refuses to start if the two disagree, so a route can name
 * an action from these lists and know that the schema declares it.
 */

/** Permitted to anyone, including an unauthenticated caller. */
export const PUBLIC_ACTIONS = [
  'system.health.read',
  'auth.login',
  'auth.setup',
  'auth.token.exchange',
  'auth.oidc.start',
  'auth.oidc.callback',
  'oidc.discovery.read',
  'agents.register',
  'keys.read',
] as const;

/** Permitted to every signed-in user and service account. */
export const SELF_ACTIONS = [
  'auth.logout',
  'auth.whoami',
  'auth.stepup',
  'audit.tree.read',
  'audit.checkpoints.read',
  'audit.proofs.read',
  'audit.key.read',
] as const;

/** Refused without MFA on the session (policy "mfa-required"). */
export const PRIVILEGED_ACTIONS = [
  'users.create',
  'users.disable',
  'users.roles.update',
  'users.credentials.reset',
  'users.email.update',
  'roles.create',
  'service-accounts.create',
  'service-accounts.disable',
  'service-accounts.keys.create',
  'service-accounts.keys.revoke',
  'policies.update',
  'secrets.reveal',
  'deployments.create',
  'deployments.freeze',
  'deployments.approve',
  'breakglass.use',
  'incidents.update',
  'agents.tokens.create',
  'agents.disable',
  'keys.rotate',
] as const;

/** Refused without an MFA proof in the last {@link STEP_UP_MAX_AGE_SECONDS} (policy "step-up-required"). */
export const SENSITIVE_ACTIONS = ['policies.update', 'users.roles.update', 'users.credentials.reset', 'users.email.update', 'roles.create', 'secrets.reveal', 'deployments.approve', 'breakglass.use', 'keys.rotate'] as const;

/** Every requestable action, exactly as the schema declares it (groups excluded). */
export const ACTIONS = [
  ...PUBLIC_ACTIONS,
  ...SELF_ACTIONS,
  'audit.entries.read',
  'audit.checkpoints.create',
  'users.read',
  'users.create',
  'users.disable',
  'users.roles.update',
  'users.credentials.reset',
  'users.email.update',
  'roles.read',
  'roles.create',
  'service-accounts.read',
  'service-accounts.create',
  'service-accounts.disable',
  'service-accounts.keys.read',
  'service-accounts.keys.create',
  'service-accounts.keys.revoke',
  'policies.read',
  'policies.update',
  'projects.read',
  'projects.create',
  'pipelines.run',
  'runs.read',
  'runs.cancel',
  'secrets.read',
  'secrets.write',
  'secrets.reveal',
  'secrets.fetch',
  'deployments.read',
  'deployments.request',
  'deployments.create',
  'deployments.freeze',
  'deployments.approve',
  'breakglass.use',
  'incidents.read',
  'incidents.update',
  'artifacts.read',
  'artifacts.write',
  'agents.read',
  'agents.tokens.create',
  'agents.disable',
  'agents.jobs.claim',
  'agents.jobs.report',
  'keys.rotate',
] as const;

/**
 * Actions decided inside a domain with their own context type, never by the request
 * enforcement point: `secrets.release` (one decision per secret released to a step) and
 * `deployments.sod-exception` (whether a named policy lifts an approver's conflict).
 */
export const DECISION_ACTIONS = ['secrets.release', 'deployments.sod-exception'] as const;

/** An action name the schema declares. */
export type Action = (typeof ACTIONS)[number];

/** Action groups in the schema: policies say `action in Airlock::Action::"<group>"`. */
export const ACTION_GROUPS: Readonly<Record<'public' | 'self' | 'privileged' | 'sensitive', readonly Action[]>> = {
  public: PUBLIC_ACTIONS,
  self: SELF_ACTIONS,
  privileged: PRIVILEGED_ACTIONS,
  sensitive: SENSITIVE_ACTIONS,
};

/** Seconds an MFA proof counts as fresh for sensitive actions (mirrors policy "step-up-required"). */
export const STEP_UP_MAX_AGE_SECONDS = 300;

/** context.mfaAgeSeconds when the session has no MFA proof at all. */
export const NO_MFA_AGE_SECONDS = 2_147_483_647;

/** The job functions shipped in policies/*.cedar, and `runner`, the machine role of remote agents. */
export const BUILTIN_ROLES = ['developer', 'release-manager', 'operator', 'security-auditor', 'admin', 'runner'] as const;
export type BuiltinRole = (typeof BUILTIN_ROLES)[number];

/**
 * Built-in roles whose holders must enrol MFA: the default policies grant them a privileged
 * action (deploy, approve, change users, roles or policies), which "mfa-required" refuses
 * without it. `PolicyEngine.rolesRequiringMfa` computes the same from any policy set; a test
 * checks that this constant matches the default set.
 */
export const ROLES_REQUIRING_MFA: readonly BuiltinRole[] = ['release-manager', 'operator', 'admin'];

const actionSet: ReadonlySet<string> = new Set(ACTIONS);

/** True when `action` is a requestable action of the schema (not a group, not unknown). */
export function isAction(action: string): action is Action {
  return actionSet.has(action);
}
