/**
 * Whether a deployment request has the approvals its environment demands. Pure: the caller
 * passes the stored approvals, the rules, the people directory and the time.
 *
 * An approval counts only if it names this request's binding digest (replay for another digest
 * set), is not expired, comes from someone with no stake in the change (segregation of duties:
 * not the requester, the run's trigger, an author or committer in the range, or the last editor
 * of the environment's configuration) unless a named exception covers it, holds an allowed role
 * and is justified. Quorum counts distinct people. A deny from an eligible approver blocks.
 */
import { ValidationError } from '../errors/index.js';
import type { FieldIssue } from '../errors/index.js';
import { isSha256Digest } from './binding.js';
import { isJustified, MIN_JUSTIFICATION_LENGTH, personResolver } from './people.js';
import type { Person, PersonResolver, Reason } from './people.js';
import type { ProtectionRules } from './rules.js';

/** Segregation-of-duties conflicts; only these can be lifted by a named exception. */
export type SodCode = 'self_approval' | 'triggered_run' | 'author_in_range' | 'committer_in_range' | 'last_config_editor';

export type ApprovalRefusalCode =
  | SodCode
  | 'wrong_binding'
  | 'future_dated'
  | 'expired'
  | 'role_not_allowed'
  | 'no_justification'
  | 'duplicate_approver';

export type ApprovalDecision = 'approve' | 'deny';

export interface Approval {
  readonly approver: string;
  readonly decision: ApprovalDecision;
  readonly justification: string;
  readonly bindingDigest: string;
  /** Epoch milliseconds, as recorded by the server. */
  readonly at: number;
  /** The approver's roles when they decided. */
  readonly roles: readonly string[];
}

export interface ApprovalRequest {
  /** Who asked for the deployment. */
  readonly requester: string;
  /** Who triggered the run that built what ships. */
  readonly triggeredBy: string;
  /** Author and committer identities of every commit in the deployed range. */
  readonly authors: readonly string[];
  readonly committers: readonly string[];
  readonly lastConfigEditor?: string;
  readonly bindingDigest: string;
}

export type ApprovalRules = Pick<ProtectionRules, 'required' | 'roles' | 'ownersRequired' | 'owners' | 'validForMs' | 'justificationRequired'>;

/**
 * A named exception (e.g. a Cedar policy for automated dependency bumps). `appliesTo` says
 * whether it lifts one conflict for one approver; the policy id used is returned for the record.
 */
export interface SodException {
  readonly policyId: string;
  appliesTo(approver: string, code: SodCode): boolean;
}

export interface UsedException {
  readonly policyId: string;
  readonly approver: string;
  readonly code: SodCode;
}

export interface EvaluateApprovalsInput {
  readonly request: ApprovalRequest;
  readonly rules: ApprovalRules;
  readonly approvals: readonly Approval[];
  /** Epoch milliseconds. */
  readonly now: number;
  readonly people?: readonly Person[];
  readonly exceptions?: readonly SodException[];
}

export interface CountedApproval {
  readonly approver: string;
  readonly at: number;
  readonly expiresAt: number;
  readonly roles: readonly string[];
  readonly justification: string;
  readonly owner: boolean;
  readonly exceptions: readonly UsedException[];
}

export interface Denial {
  readonly approver: string;
  readonly at: number;
  readonly justification: string;
  readonly exceptions: readonly UsedException[];
}

export interface RefusedApproval {
  readonly approver: string;
  readonly decision: ApprovalDecision;
  readonly at: number;
  readonly reason: Reason<ApprovalRefusalCode>;
}

export interface ApprovalEvaluation {
  readonly satisfied: boolean;
  /** Approvals counted towards the quorum: one per person, the most recent. */
  readonly counted: readonly CountedApproval[];
  /** Denies from eligible approvers; any one blocks. */
  readonly denials: readonly Denial[];
  readonly refused: readonly RefusedApproval[];
  /** Exceptions relied on by counted approvals and denials (write these into the record). */
  readonly exceptionsUsed: readonly UsedException[];
  /** What is still needed, for a person; empty when satisfied. */
  readonly missing: string;
  /** When satisfied: the instant the quorum lapses as approvals expire. */
  readonly validUntil?: number;
}

const SOD_MESSAGE: Readonly<Record<SodCode, string>> = {
  self_approval: 'requested this deployment',
  triggered_run: 'triggered the run that built it',
  author_in_range: 'authored a commit in the deployed range',
  committer_in_range: 'committed a commit in the deployed range',
  last_config_editor: "last edited the environment's configuration",
};

const DECISIONS: ReadonlySet<unknown> = new Set<ApprovalDecision>(['approve', 'deny']);

function validate(input: EvaluateApprovalsInput): void {
  const issues: FieldIssue[] = [];
  const { request, rules } = input;
  if (!Number.isFinite(input.now)) issues.push({ path: 'now', message: 'must be a finite epoch-millisecond time' });
  if (!Number.isSafeInteger(rules.required) || rules.required < 0) issues.push({ path: 'rules.required', message: 'must be an integer >= 0' });
  if (!Number.isFinite(rules.validForMs) || rules.validForMs <= 0) issues.push({ path: 'rules.validForMs', message: 'must be a positive number of milliseconds' });
  if (!Array.isArray(rules.roles)) issues.push({ path: 'rules.roles', message: 'must be an array' });
  if (!Array.isArray(rules.owners)) issues.push({ path: 'rules.owners', message: 'must be an array' });
  if (typeof request.requester !== 'string' || request.requester.trim() === '') issues.push({ path: 'request.requester', message: 'must be a non-empty string' });
  if (typeof request.triggeredBy !== 'string' || request.triggeredBy.trim() === '') issues.push({ path: 'request.triggeredBy', message: 'must be a non-empty string' });
  if (!Array.isArray(request.authors)) issues.push({ path: 'request.authors', message: 'must be an array' });
  if (!Array.isArray(request.committers)) issues.push({ path: 'request.committers', message: 'must be an array' });
  if (!isSha256Digest(request.bindingDigest)) issues.push({ path: 'request.bindingDigest', message: 'must be sha256:<64 hex digits>' });
  input.approvals.forEach((a, i) => {
    if (typeof a.approver !== 'string' || a.approver.trim() === '') issues.push({ path: `approvals[${i}].approver`, message: 'must be a non-empty string' });
    if (!DECISIONS.has(a.decision)) issues.push({ path: `approvals[${i}].decision`, message: "must be 'approve' or 'deny'" });
    if (!Number.isFinite(a.at)) issues.push({ path: `approvals[${i}].at`, message: 'must be a finite epoch-millisecond time' });
    if (!Array.isArray(a.roles)) issues.push({ path: `approvals[${i}].roles`, message: 'must be an array' });
  });
  if (issues.length > 0) throw new ValidationError(`invalid approval evaluation input: ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`, issues);
}

/** The conflicts of one approver with the change, in a fixed order. */
function conflicts(approver: string, request: ApprovalRequest, who: PersonResolver): SodCode[] {
  const me = who.key(approver);
  const hit = (ids: readonly (string | undefined)[]): boolean => ids.some((id) => id !== undefined && who.key(id) === me);
  const found: SodCode[] = [];
  if (hit([request.requester])) found.push('self_approval');
  if (hit([request.triggeredBy])) found.push('triggered_run');
  if (hit(request.authors)) found.push('author_in_range');
  if (hit(request.committers)) found.push('committer_in_range');
  if (hit([request.lastConfigEditor])) found.push('last_config_editor');
  return found;
}

interface Eligible {
  readonly approval: Approval;
  readonly person: string;
  readonly index: number;
  readonly exceptions: readonly UsedException[];
}

/** One approval on its own: refused with a reason, or eligible (with the exceptions it needed). */
function judge(
  a: Approval,
  input: EvaluateApprovalsInput,
  who: PersonResolver,
): { readonly refusal: Reason<ApprovalRefusalCode> } | { readonly exceptions: readonly UsedException[] } {
  const { request, rules, now } = input;
  if (a.bindingDigest !== request.bindingDigest) {
    return { refusal: { code: 'wrong_binding', message: `${a.approver}'s ${a.decision} is bound to ${a.bindingDigest}, not to this request's ${request.bindingDigest}: what ships has changed` } };
  }
  if (a.at > now) {
    return { refusal: { code: 'future_dated', message: `${a.approver}'s ${a.decision} is dated after the evaluation time` } };
  }
  if (now - a.at >= rules.validForMs) {
    return { refusal: { code: 'expired', message: `${a.approver}'s ${a.decision} expired at ${new Date(a.at + rules.validForMs).toISOString()} (valid for ${rules.validForMs} ms)` } };
  }
  const used: UsedException[] = [];
  for (const code of conflicts(a.approver, request, who)) {
    const exception = (input.exceptions ?? []).find((e) => e.appliesTo(a.approver, code));
    if (exception === undefined) {
      return { refusal: { code, message: `${a.approver} ${SOD_MESSAGE[code]} and may not approve or deny it` } };
    }
    used.push({ policyId: exception.policyId, approver: a.approver, code });
  }
  if (rules.roles.length > 0 && !a.roles.some((r) => rules.roles.includes(r))) {
    return { refusal: { code: 'role_not_allowed', message: `${a.approver} held none of the roles ${rules.roles.join(', ')} when deciding` } };
  }
  // A deny needs no justification to count: refusing to ship fails safe.
  if (a.decision === 'approve' && rules.justificationRequired && !isJustified(a.justification)) {
    return { refusal: { code: 'no_justification', message: `${a.approver}'s approval has no justification of at least ${MIN_JUSTIFICATION_LENGTH} characters` } };
  }
  return { exceptions: used };
}

export function evaluateApprovals(input: EvaluateApprovalsInput): ApprovalEvaluation {
  validate(input);
  const { rules } = input;
  const who = personResolver(input.people);
  const owners = new Set(rules.owners.map((o) => who.key(o)));
  const refused: RefusedApproval[] = [];
  const approves: Eligible[] = [];
  const denies: Eligible[] = [];

  input.approvals.forEach((approval, index) => {
    const verdict = judge(approval, input, who);
    if ('refusal' in verdict) {
      refused.push({ approver: approval.approver, decision: approval.decision, at: approval.at, reason: verdict.refusal });
      return;
    }
    const eligible = { approval, person: who.key(approval.approver), index, exceptions: verdict.exceptions };
    (approval.decision === 'approve' ? approves : denies).push(eligible);
  });

  // One person, one vote: keep each person's most recent approval (it lasts longest).
  approves.sort((x, y) => y.approval.at - x.approval.at || x.index - y.index);
  const byPerson = new Map<string, Eligible>();
  for (const e of approves) {
    const first = byPerson.get(e.person);
    if (first === undefined) {
      byPerson.set(e.person, e);
      continue;
    }
    refused.push({
      approver: e.approval.approver,
      decision: 'approve',
      at: e.approval.at,
      reason: { code: 'duplicate_approver', message: `${e.approval.approver} is the same person as ${first.approval.approver}, already counted once` },
    });
  }
  const counted: CountedApproval[] = [...byPerson.values()]
    .sort((x, y) => x.approval.at - y.approval.at || x.index - y.index)
    .map((e) => ({
      approver: e.approval.approver,
      at: e.approval.at,
      expiresAt: e.approval.at + rules.validForMs,
      roles: [...e.approval.roles],
      justification: e.approval.justification,
      owner: owners.has(e.person),
      exceptions: e.exceptions,
    }));
  const denials: Denial[] = denies
    .sort((x, y) => x.approval.at - y.approval.at || x.index - y.index)
    .map((e) => ({ approver: e.approval.approver, at: e.approval.at, justification: e.approval.justification, exceptions: e.exceptions }));

  const hasOwner = counted.some((c) => c.owner);
  const enough = counted.length >= rules.required;
  const ownerOk = !rules.ownersRequired || hasOwner;
  const satisfied = denials.length === 0 && enough && ownerOk;

  const missing: string[] = [];
  if (denials.length > 0) missing.push(`denied by ${[...new Set(denials.map((d) => d.approver))].join(', ')}`);
  if (!enough) {
    const more = rules.required - counted.length;
    const roles = rules.roles.length > 0 ? ` holding one of the roles ${rules.roles.join(', ')}` : '';
    missing.push(`${more} more approval${more === 1 ? '' : 's'} from distinct eligible people${roles} (${counted.length} of ${rules.required})`);
  }
  if (!ownerOk) {
    missing.push(rules.owners.length === 0 ? "an owner's approval, but the environment declares no owners" : `an approval from an owner (one of ${rules.owners.join(', ')})`);
  }

  const exceptionsUsed = [...counted.flatMap((c) => c.exceptions), ...denials.flatMap((d) => d.exceptions)];
  const result: ApprovalEvaluation = { satisfied, counted, denials, refused, exceptionsUsed, missing: missing.join('; ') };
  if (!satisfied) return result;
  const lapses: number[] = [];
  const expiries = counted.map((c) => c.expiresAt).sort((x, y) => y - x);
  if (rules.required > 0) lapses.push(expiries[rules.required - 1] ?? Number.NEGATIVE_INFINITY);
  if (rules.ownersRequired) lapses.push(Math.max(...counted.filter((c) => c.owner).map((c) => c.expiresAt)));
  return lapses.length > 0 ? { ...result, validUntil: Math.min(...lapses) } : result;
}
