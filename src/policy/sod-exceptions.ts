/**
 * Segregation-of-duties exceptions as named Cedar policies (policies/sod-exceptions.cedar).
 * The delivery core asks, per approver and conflict, whether some exception applies, and
 * writes the id of the one it used into the approval's audit event and the deployment record.
 * Deny by default: with no permit naming `deployments.sod-exception`, nothing is ever lifted.
 */
import type { PolicyEngine } from './engine.js';

/** The deployment an exception decision is about, and who decided on it. */
export interface SodExceptionFacts {
  readonly project: string;
  readonly environment: string;
  readonly requester: string;
  readonly triggeredBy: string;
  /** Author and committer e-mail addresses of every commit in the deployed range. */
  readonly authors: readonly string[];
  readonly committers: readonly string[];
  readonly lastConfigEditor?: string | undefined;
  /**
   * The approvers with the roles they held when deciding (from their signed approvals). An
   * approver not listed is judged with no role.
   */
  readonly approvers: readonly { readonly id: string; readonly roles: readonly string[] }[];
}

/** One named exception; structurally a delivery `SodException`. */
export interface NamedSodException {
  readonly policyId: string;
  appliesTo(approver: string, code: string): boolean;
}

/**
 * One exception per permit that names `deployments.sod-exception` (PolicyEngine
 * .sodExceptionPolicies), in id order. `appliesTo(approver, code)` is a synchronous Cedar
 * decision and holds only if the decision is allowed and this policy is among the permits
 * that decided it: a forbid still wins, and a blanket permit (role-admin) lifts nothing.
 * An approver with several recorded approvals must be covered under each set of roles.
 */
export function sodExceptionsFor(engine: PolicyEngine, facts: SodExceptionFacts): NamedSodException[] {
  const ids = engine.sodExceptionPolicies();
  if (ids.length === 0) return [];
  // Snapshot: the facts cannot change between the decisions of one evaluation.
  const authors = [...new Set(facts.authors)];
  const committers = [...new Set(facts.committers)];
  const rolesOf = new Map<string, string[][]>();
  for (const a of facts.approvers) rolesOf.set(a.id, [...(rolesOf.get(a.id) ?? []), [...a.roles]]);
  const decisions = new Map<string, readonly string[] | undefined>();
  /** The deciding permits when allowed, undefined when refused. */
  const deciders = (approver: string, code: string, roles: readonly string[]): readonly string[] | undefined => {
    const key = JSON.stringify([approver, code, roles]);
    if (decisions.has(key)) return decisions.get(key);
    const d = engine.authorizeSodException({
      approver: { id: approver, roles },
      environment: { project: facts.project, name: facts.environment },
      context: { code, requester: facts.requester, triggeredBy: facts.triggeredBy, authors, committers, lastConfigEditor: facts.lastConfigEditor ?? '' },
    });
    const found = d.allowed ? d.policies : undefined;
    decisions.set(key, found);
    return found;
  };
  return ids.map((policyId) => ({
    policyId,
    appliesTo: (approver: string, code: string): boolean => (rolesOf.get(approver) ?? [[]]).every((roles) => deciders(approver, code, roles)?.includes(policyId) === true),
  }));
}
