/**
 * The policy decision point. A policy set is parsed, validated (strict) and cached inside the
 * Cedar module once, when it is loaded; each decision then sends only the request and the
 * principal's own entity (its roles), which keeps a decision around 0.1 ms.
 */
import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import { AirlockError } from '../errors/index.js';
import { ACTIONS, ACTION_GROUPS, DECISION_ACTIONS, NO_MFA_AGE_SECONDS, PRIVILEGED_ACTIONS, isAction } from './actions.js';
import { annotatedId, cedar, cedarMessage } from './cedar.js';
import type { AuthorizationAnswer, EntityJson, StatefulAuthorizationCall } from './cedar.js';
import { policyIdProblem, policySchemaText } from './files.js';
import type { PolicySource } from './files.js';

/** Who asks. Roles apply to users and service accounts only; `attrs` to workloads. */
export interface PrincipalRef {
  readonly type: 'User' | 'ServiceAccount' | 'Workload' | 'Anonymous';
  readonly id: string;
  readonly roles?: readonly string[];
  readonly attrs?: Readonly<Record<string, string>>;
}

/** What is acted on: a collection (Resource), or one user or service account. */
export interface ResourceRef {
  readonly type: 'Resource' | 'User' | 'ServiceAccount';
  readonly id: string;
}

/** Facts about the request; every field is always present. */
export interface AuthzContext {
  /** "anonymous" | "password" | "sso" | "session" | "service-token" | "workload-token" */
  readonly authMethod: string;
  readonly mfa: boolean;
  /** Seconds since the last MFA proof; NO_MFA_AGE_SECONDS (2147483647) when none. */
  readonly mfaAgeSeconds: number;
  readonly sourceAddress: string;
}

export interface AuthzRequest {
  readonly principal: PrincipalRef;
  readonly action: string;
  readonly resource: ResourceRef;
  readonly context: AuthzContext;
}

/**
 * A decision. `policies` are the deciding policy ids: the permits that allowed it, or the
 * forbids that refused it (empty when nothing permitted: deny by default). Any error refuses.
 */
export interface Decision {
  readonly allowed: boolean;
  readonly policies: readonly string[];
  readonly errors: readonly string[];
}

/** A secret release: one decision per declared secret (action `secrets.release`). */
export interface ReleaseAuthzRequest {
  readonly workload: { readonly id: string; readonly pipeline: string; readonly run: string; readonly step: string };
  readonly secret: { readonly id: string; readonly name: string; readonly project: string; readonly environment: string };
  readonly context: ReleaseContext;
}

/** policies/airlock.cedarschema ReleaseContext; every field is always present. */
export interface ReleaseContext {
  readonly sourceAddress: string;
  readonly project: string;
  readonly pipeline: string;
  readonly stage: string;
  readonly step: string;
  readonly environment: string;
  readonly environmentProtected: boolean;
  readonly branch: string;
  readonly commit: string;
  readonly trigger: string;
  readonly approved: boolean;
}

/** Whether a named policy lifts one conflict of one approver (action `deployments.sod-exception`). */
export interface SodExceptionAuthzRequest {
  /** The approver (a username) with the roles they held when deciding. */
  readonly approver: { readonly id: string; readonly roles: readonly string[] };
  readonly environment: { readonly project: string; readonly name: string };
  readonly context: SodExceptionContext;
}

/** policies/airlock.cedarschema SodExceptionContext, less the request fields the engine fills in. */
export interface SodExceptionContext {
  /** The conflict: self_approval, triggered_run, author_in_range, committer_in_range, last_config_editor. */
  readonly code: string;
  readonly requester: string;
  readonly triggeredBy: string;
  readonly authors: readonly string[];
  readonly committers: readonly string[];
  /** "" when unknown. */
  readonly lastConfigEditor: string;
}

/** Why a refused request was refused, for the HTTP layer to pick its error. */
export type Refusal = 'MFA_REQUIRED' | 'STEP_UP_REQUIRED' | 'FORBIDDEN';

const NS = 'Airlock';
const ENTITY_TYPES: Readonly<Record<string, string>> = {
  User: `${NS}::User`,
  ServiceAccount: `${NS}::ServiceAccount`,
  Workload: `${NS}::Workload`,
  Anonymous: `${NS}::Anonymous`,
  Resource: `${NS}::Resource`,
  Secret: `${NS}::Secret`,
  Environment: `${NS}::Environment`,
};
const SOD_EXCEPTION_ACTION = 'deployments.sod-exception';
const PRINCIPAL_TYPES = new Set(['User', 'ServiceAccount', 'Workload', 'Anonymous']);
const RESOURCE_TYPES = new Set(['Resource', 'User', 'ServiceAccount']);
const ROLE_TYPE = `${NS}::Role`;
const ACTION_TYPE = `${NS}::Action`;

/** sha256:<hex> of the RFC 8785 canonical JSON of the policy set: the same set, the same digest. */
export function policyDigest(policies: PolicySource): string {
  const text = canonicalize(policies);
  if (text === undefined) throw new AirlockError('POLICY_INVALID', 'the policy set cannot be serialised');
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

function invalid(policyId: string, message: string, issues: readonly { policyId: string; message: string }[] = [{ policyId, message }]): AirlockError {
  return new AirlockError('POLICY_INVALID', `policy "${policyId}": ${message}`, { policyId, issues });
}

interface LoadedSchema {
  readonly name: string;
  readonly text: string;
}
let schema: LoadedSchema | undefined;

/**
 * Parse the shipped schema once per process and check that it declares exactly ACTIONS and
 * ACTION_GROUPS: a route naming an action the schema lacks would otherwise be refused forever.
 */
function loadSchema(): LoadedSchema {
  if (schema !== undefined) return schema;
  const text = policySchemaText();
  const json = cedar.schemaToJson(text);
  if (json.type === 'failure') {
    throw new AirlockError('POLICY_INVALID', `the Cedar schema policies/airlock.cedarschema is invalid: ${json.errors.map(cedarMessage).join('; ')}`);
  }
  const actions = json.json[NS]?.actions ?? {};
  const declared = Object.entries(actions).filter(([, a]) => (a.appliesTo?.principalTypes.length ?? 0) > 0).map(([name]) => name);
  const problems: string[] = [];
  const known: readonly string[] = [...ACTIONS, ...DECISION_ACTIONS];
  const missing = known.filter((a) => !declared.includes(a));
  const extra = declared.filter((a) => !known.includes(a));
  if (missing.length > 0) problems.push(`missing actions ${missing.join(', ')}`);
  if (extra.length > 0) problems.push(`undeclared in ACTIONS: ${extra.join(', ')}`);
  for (const [group, members] of Object.entries(ACTION_GROUPS)) {
    const inSchema = declared.filter((a) => (actions[a]?.memberOf ?? []).some((m) => m.id === group)).sort();
    if (inSchema.join() !== [...members].sort().join()) problems.push(`group "${group}" differs from ACTION_GROUPS.${group}`);
  }
  if (problems.length > 0) throw new AirlockError('POLICY_INVALID', `policies/airlock.cedarschema and src/policy/actions.ts disagree: ${problems.join('; ')}`);
  const name = `airlock-schema-${createHash('sha256').update(text).digest('hex').slice(0, 16)}`;
  const parsed = cedar.preparseSchema(name, text);
  if (parsed.type === 'failure') throw new AirlockError('POLICY_INVALID', `the Cedar schema is invalid: ${parsed.errors.map(cedarMessage).join('; ')}`);
  schema = { name, text };
  return schema;
}

/** Check each entry is exactly one static policy whose `@id` matches its key. */
function checkEntries(policies: PolicySource): Map<string, string> {
  if (typeof policies !== 'object' || Array.isArray(policies)) throw new AirlockError('POLICY_INVALID', 'a policy set is an object of policy id -> Cedar text');
  const out = new Map<string, string>();
  for (const [id, text] of Object.entries(policies)) {
    const problem = policyIdProblem(id);
    if (problem !== undefined) throw invalid(id, `invalid policy id: ${problem}`);
    if (typeof text !== 'string') throw invalid(id, 'the policy must be Cedar text');
    const parts = cedar.policySetTextToParts(text);
    if (parts.type === 'failure') throw invalid(id, parts.errors.map(cedarMessage).join('; '));
    if (parts.policy_templates.length > 0) throw invalid(id, 'policy templates (?principal, ?resource) are not supported');
    if (parts.policies.length !== 1) throw invalid(id, `expected exactly one policy, found ${parts.policies.length}`);
    // The annotation travels with the text (policy show, audit), so it must say the same id.
    const annotated = annotatedId(text);
    if (annotated !== id) throw invalid(id, annotated === undefined ? `the policy needs the annotation @id("${id}")` : `its annotation @id("${annotated}") does not match its id`);
    out.set(id, text);
  }
  return out;
}

// Decisions are readonly by type, not Object.freeze: freezing fresh objects on this hot path
// changes their maps inside optimized code, and on Node 20 (V8 11.3) the lazy deoptimization
// that follows crashed the process ("unreachable code" in DoComputeBuiltinContinuation).
function deny(errors: readonly string[], policies: readonly string[] = []): Decision {
  return { allowed: false, policies: [...policies], errors: [...errors] };
}

/** A validated policy set, ready to answer requests. Immutable: an update loads a new engine. */
export class PolicyEngine {
  /** sha256:<hex> of the canonical JSON of {@link policies}. */
  readonly digest: string;
  readonly policies: PolicySource;
  private readonly setId: string;
  private readonly schemaName: string;
  private sodExceptionIds: readonly string[] | undefined;

  private constructor(policies: PolicySource, digest: string, setId: string, loaded: LoadedSchema) {
    this.policies = policies;
    this.digest = digest;
    this.setId = setId;
    this.schemaName = loaded.name;
  }

  /**
   * Validate `policies` against the schema (strict) and parse them once. Throws
   * AirlockError('POLICY_INVALID') naming the first bad policy id and Cedar's message; every
   * problem is in `details.issues`.
   * @example const engine = PolicyEngine.load(defaultPolicies());
   */
  static load(policies: PolicySource): PolicyEngine {
    const loaded = loadSchema();
    const entries = checkEntries(policies);
    const frozen: PolicySource = Object.freeze(Object.fromEntries(entries));
    const result = cedar.validate({ schema: loaded.text, policies: { staticPolicies: { ...frozen } }, validationSettings: { mode: 'strict' } });
    if (result.type === 'failure') throw new AirlockError('POLICY_INVALID', `the policy set is invalid: ${result.errors.map(cedarMessage).join('; ')}`);
    const issues = result.validationErrors.map((e) => ({ policyId: e.policyId, message: cedarMessage(e.error) }));
    const first = issues[0];
    if (first !== undefined) throw invalid(first.policyId, first.message, issues);
    const digest = policyDigest(frozen);
    // Cedar keeps preparsed sets for the life of the process, keyed by id: keying by digest
    // means reloading the same set reuses its entry instead of adding another.
    const setId = `airlock-${digest}`;
    const parsed = cedar.preparsePolicySet(setId, { staticPolicies: { ...frozen } });
    if (parsed.type === 'failure') throw new AirlockError('POLICY_INVALID', `the policy set is invalid: ${parsed.errors.map(cedarMessage).join('; ')}`);
    return new PolicyEngine(frozen, digest, setId, loaded);
  }

  /** True when `action` is a requestable action of the schema. */
  knownAction(action: string): boolean {
    return isAction(action);
  }

  /**
   * Decide. Never throws: a malformed request (unknown action, entity type or attribute,
   * wrong context type) is refused with the reason in `errors`. Deny unless a permit applies
   * and no forbid does; a policy that fails to evaluate also refuses (fail closed).
   */
  authorize(req: AuthzRequest): Decision {
    return this.guarded(() => this.call(req));
  }

  /** Build a call and decide it; a call that cannot be built (or is refused while built) is a deny. */
  private guarded(build: () => StatefulAuthorizationCall | string): Decision {
    let call: StatefulAuthorizationCall;
    try {
      const built = build();
      if (typeof built === 'string') return deny([built]);
      call = built;
    } catch {
      return deny(['malformed authorization request']);
    }
    return this.decide(call);
  }

  /**
   * Decide whether one secret may be released to a step. Never throws; anything malformed
   * or erroring refuses, as for {@link authorize}.
   */
  authorizeRelease(req: ReleaseAuthzRequest): Decision {
    return this.guarded((): StatefulAuthorizationCall => {
      const w = req.workload;
      const sec = req.secret;
      const c = req.context;
      const principal = { type: ENTITY_TYPES.Workload ?? '', id: w.id };
      const resource = { type: ENTITY_TYPES.Secret ?? '', id: sec.id };
      return {
        principal,
        action: { type: ACTION_TYPE, id: 'secrets.release' },
        resource,
        // Copied field by field, so nothing a caller adds reaches Cedar.
        context: { authMethod: 'workload-token', mfa: false, mfaAgeSeconds: NO_MFA_AGE_SECONDS, sourceAddress: c.sourceAddress, project: c.project, pipeline: c.pipeline, stage: c.stage, step: c.step, environment: c.environment, environmentProtected: c.environmentProtected, branch: c.branch, commit: c.commit, trigger: c.trigger, approved: c.approved },
        entities: [
          { uid: principal, attrs: { pipeline: w.pipeline, run: w.run, step: w.step }, parents: [] },
          { uid: resource, attrs: { name: sec.name, project: sec.project, environment: sec.environment }, parents: [] },
        ],
        preparsedPolicySetId: this.setId,
        preparsedSchemaName: this.schemaName,
        validateRequest: true,
      };
    });
  }

  /**
   * Decide whether a policy lifts one segregation-of-duties conflict of one approver. Never
   * throws; anything malformed or erroring refuses, as for {@link authorize}. An allowed
   * decision is an exception only if one of {@link sodExceptionPolicies} is among its
   * deciding policies: see sodExceptionsFor.
   */
  authorizeSodException(req: SodExceptionAuthzRequest): Decision {
    return this.guarded((): StatefulAuthorizationCall => {
      const a = req.approver;
      const env = req.environment;
      const c = req.context;
      const principal = { type: ENTITY_TYPES.User ?? '', id: a.id };
      const resource = { type: ENTITY_TYPES.Environment ?? '', id: `${env.project}/${env.name}` };
      return {
        principal,
        action: { type: ACTION_TYPE, id: SOD_EXCEPTION_ACTION },
        resource,
        // Copied field by field, so nothing a caller adds reaches Cedar. No live session is
        // judged (a recorded approval is re-evaluated on every read): no MFA claim.
        context: {
          authMethod: 'approval',
          mfa: false,
          mfaAgeSeconds: NO_MFA_AGE_SECONDS,
          sourceAddress: '',
          code: c.code,
          project: env.project,
          environment: env.name,
          requester: c.requester,
          triggeredBy: c.triggeredBy,
          authors: [...c.authors],
          committers: [...c.committers],
          lastConfigEditor: c.lastConfigEditor,
        },
        entities: [
          { uid: principal, attrs: {}, parents: a.roles.map((id) => ({ type: ROLE_TYPE, id })) },
          { uid: resource, attrs: { project: env.project, name: env.name }, parents: [] },
        ],
        preparsedPolicySetId: this.setId,
        preparsedSchemaName: this.schemaName,
        validateRequest: true,
      };
    });
  }

  /**
   * Ids of the permits that name `deployments.sod-exception` in their action scope (== or in
   * a list), sorted: the only policies that can lift a conflict. A blanket permit (`action`
   * unconstrained, as role-admin's) also allows the action, but was not written as an
   * exception and must not silently become one.
   */
  sodExceptionPolicies(): readonly string[] {
    this.sodExceptionIds ??= Object.entries(this.policies)
      .filter(([, text]) => {
        const json = cedar.policyToJson(text);
        if (json.type === 'failure' || json.json.effect !== 'permit') return false;
        const scope = json.json.action as { op: string; entity?: { id?: string }; entities?: { id?: string }[] };
        if (scope.op === '==' || scope.op === 'in') return [...(scope.entity === undefined ? [] : [scope.entity]), ...(scope.entities ?? [])].some((e) => e.id === SOD_EXCEPTION_ACTION);
        return false;
      })
      .map(([id]) => id)
      .sort();
    return this.sodExceptionIds;
  }

  private decide(call: StatefulAuthorizationCall): Decision {
    let answer: AuthorizationAnswer;
    try {
      answer = cedar.statefulIsAuthorized(call);
    } catch {
      return deny(['the policy engine failed']);
    }
    if (answer.type === 'failure') return deny(answer.errors.map(cedarMessage));
    const { decision, diagnostics } = answer.response;
    if (diagnostics.errors.length > 0) {
      // Cedar skips a policy that errors, so an erroring forbid would let a permit through.
      const errors = diagnostics.errors.map((e) => `policy "${e.policyId}": ${cedarMessage(e.error)}`);
      return deny(errors, [...new Set(diagnostics.errors.map((e) => e.policyId))]);
    }
    return { allowed: decision === 'allow', policies: [...diagnostics.reason].sort(), errors: [] };
  }

  /**
   * Why `req` is refused: MFA_REQUIRED or STEP_UP_REQUIRED when the same request with a fresh
   * MFA proof would be allowed, else FORBIDDEN; undefined when it is allowed. Asking for MFA
   * only when it would help avoids telling a caller to step up for something it may never do.
   */
  refusal(req: AuthzRequest): Refusal | undefined {
    if (this.authorize(req).allowed) return undefined;
    const fresh = this.authorize({ ...req, context: { ...req.context, mfa: true, mfaAgeSeconds: 0 } });
    if (!fresh.allowed) return 'FORBIDDEN';
    return req.context.mfa ? 'STEP_UP_REQUIRED' : 'MFA_REQUIRED';
  }

  /**
   * The roles among `roles` whose holders must enrol MFA: a user holding only that role might
   * be permitted some privileged action on some resource (Cedar partial evaluation with the
   * resource unknown; the schema is left out, it only slows this down). When Cedar cannot
   * answer, the role counts as requiring MFA.
   */
  rolesRequiringMfa(roles: readonly string[]): string[] {
    const context = { authMethod: 'session', mfa: true, mfaAgeSeconds: 0, sourceAddress: '' };
    const principal = { type: ENTITY_TYPES.User ?? '', id: 'mfa-probe' };
    return roles.filter((role) =>
      PRIVILEGED_ACTIONS.some((action) => {
        const answer = cedar.isAuthorizedPartial({
          principal,
          action: { type: ACTION_TYPE, id: action },
          resource: null,
          context,
          policies: { staticPolicies: { ...this.policies } },
          entities: [{ uid: principal, attrs: {}, parents: [{ type: ROLE_TYPE, id: role }] }],
        });
        return answer.type !== 'residuals' || answer.response.decision !== 'deny';
      }),
    );
  }

  /** The Cedar call for `req`, or why it cannot be asked. */
  private call(req: AuthzRequest): StatefulAuthorizationCall | string {
    const { principal: p, resource: r, context: c } = req;
    if (!isAction(req.action)) return `unknown action "${req.action}"`;
    if (!PRINCIPAL_TYPES.has(p.type)) return `unknown principal type "${p.type}"`;
    if (!RESOURCE_TYPES.has(r.type)) return `unknown resource type "${r.type}"`;
    if (typeof p.id !== 'string' || typeof r.id !== 'string') return 'principal and resource ids must be strings';
    if (!Number.isSafeInteger(c.mfaAgeSeconds)) return 'context.mfaAgeSeconds must be an integer';
    const uid = { type: ENTITY_TYPES[p.type] ?? '', id: p.id };
    const entities: EntityJson[] = [];
    // Only the principal's entity: roles are its parents (Role entities themselves carry
    // nothing) and no policy reads a resource's attributes. Roles or attributes on a type
    // that cannot have them are passed on for Cedar's schema check to refuse.
    if (p.type === 'User' || p.type === 'ServiceAccount' || p.roles !== undefined || p.attrs !== undefined) {
      entities.push({ uid, attrs: { ...p.attrs }, parents: (p.roles ?? []).map((id) => ({ type: ROLE_TYPE, id })) });
    }
    return {
      principal: uid,
      action: { type: ACTION_TYPE, id: req.action },
      resource: { type: ENTITY_TYPES[r.type] ?? '', id: r.id },
      // Copied field by field: extra fields would be refused by the schema anyway.
      context: { authMethod: c.authMethod, mfa: c.mfa, mfaAgeSeconds: c.mfaAgeSeconds, sourceAddress: c.sourceAddress },
      entities,
      preparsedPolicySetId: this.setId,
      preparsedSchemaName: this.schemaName,
      validateRequest: true,
    };
  }
}
