/**
 * Break-glass: deploying during a freeze or without the approvals. Nobody does it alone: two
 * distinct people, each holding the break-glass permission, each with a fresh MFA step-up and a
 * justification, both within `ttlMs`. The caller records it as a high-severity event.
 */
import { ValidationError } from '../errors/index.js';
import type { FieldIssue } from '../errors/index.js';
import { isJustified, MIN_JUSTIFICATION_LENGTH, personResolver } from './people.js';
import type { Person, Reason } from './people.js';

export type BreakGlassCode = 'one_person' | 'no_permission' | 'no_step_up' | 'no_justification' | 'expired' | 'future_dated';

export interface BreakGlassRequest {
  readonly person: string;
  readonly justification: string;
  /** Epoch milliseconds. */
  readonly at: number;
  readonly mfaFresh: boolean;
  readonly hasPermission: boolean;
}

export interface EvaluateBreakGlassInput {
  readonly requests: readonly BreakGlassRequest[];
  readonly now: number;
  readonly ttlMs: number;
  readonly people?: readonly Person[];
}

export interface RefusedBreakGlass {
  readonly person: string;
  readonly at: number;
  readonly reason: Reason<BreakGlassCode>;
}

export interface BreakGlassDecision {
  readonly allowed: boolean;
  readonly reason: Reason<BreakGlassCode | 'granted'>;
  /** The distinct people whose requests count, in the order they asked. */
  readonly participants: readonly string[];
  readonly refused: readonly RefusedBreakGlass[];
  /** Allowed: the instant fewer than two requests remain within the ttl. */
  readonly validUntil?: number;
}

const isBoolean = (v: unknown): v is boolean => typeof v === 'boolean';

function validate(input: EvaluateBreakGlassInput): void {
  const issues: FieldIssue[] = [];
  if (!Number.isFinite(input.now)) issues.push({ path: 'now', message: 'must be a finite epoch-millisecond time' });
  if (!Number.isFinite(input.ttlMs) || input.ttlMs <= 0) issues.push({ path: 'ttlMs', message: 'must be a positive number of milliseconds' });
  input.requests.forEach((r, i) => {
    if (typeof r.person !== 'string' || r.person.trim() === '') issues.push({ path: `requests[${i}].person`, message: 'must be a non-empty string' });
    if (!Number.isFinite(r.at)) issues.push({ path: `requests[${i}].at`, message: 'must be a finite epoch-millisecond time' });
    // A flag that is not a boolean (e.g. the string "false") must not read as granted.
    if (!isBoolean(r.mfaFresh)) issues.push({ path: `requests[${i}].mfaFresh`, message: 'must be a boolean' });
    if (!isBoolean(r.hasPermission)) issues.push({ path: `requests[${i}].hasPermission`, message: 'must be a boolean' });
  });
  if (issues.length > 0) throw new ValidationError(`invalid break-glass input: ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`, issues);
}

function judge(r: BreakGlassRequest, now: number, ttlMs: number): Reason<BreakGlassCode> | undefined {
  if (!r.hasPermission) return { code: 'no_permission', message: `${r.person} does not hold the break-glass permission` };
  if (!r.mfaFresh) return { code: 'no_step_up', message: `${r.person} has not completed a fresh MFA step-up` };
  if (!isJustified(r.justification)) return { code: 'no_justification', message: `${r.person} gave no justification of at least ${MIN_JUSTIFICATION_LENGTH} characters` };
  if (r.at > now) return { code: 'future_dated', message: `${r.person}'s request is dated after the evaluation time` };
  if (now - r.at >= ttlMs) return { code: 'expired', message: `${r.person}'s request expired at ${new Date(r.at + ttlMs).toISOString()}` };
  return undefined;
}

export function evaluateBreakGlass(input: EvaluateBreakGlassInput): BreakGlassDecision {
  validate(input);
  const { now, ttlMs } = input;
  const who = personResolver(input.people);
  const refused: RefusedBreakGlass[] = [];
  // Per person, the latest valid request (it lasts longest).
  const latest = new Map<string, { readonly person: string; readonly at: number; readonly index: number }>();
  input.requests.forEach((r, index) => {
    const reason = judge(r, now, ttlMs);
    if (reason !== undefined) {
      refused.push({ person: r.person, at: r.at, reason });
      return;
    }
    const key = who.key(r.person);
    const prior = latest.get(key);
    if (prior === undefined || r.at > prior.at) latest.set(key, { person: r.person, at: r.at, index });
    const dup = prior === undefined ? undefined : r.at > prior.at ? prior : { person: r.person, at: r.at };
    if (dup !== undefined) {
      refused.push({ person: dup.person, at: dup.at, reason: { code: 'one_person', message: `${dup.person} already asked; one person counts once` } });
    }
  });
  const valid = [...latest.values()].sort((a, b) => a.at - b.at || a.index - b.index);
  const participants = valid.map((v) => v.person);
  if (valid.length >= 2) {
    const ats = valid.map((v) => v.at).sort((a, b) => b - a);
    return {
      allowed: true,
      reason: { code: 'granted', message: `break-glass granted by ${participants.join(', ')}` },
      participants,
      refused,
      validUntil: (ats[1] ?? now) + ttlMs,
    };
  }
  // Name what stopped a second person, if anyone else tried; else it is one person (or none).
  const validKeys = new Set(latest.keys());
  const other = refused.find((r) => r.reason.code !== 'one_person' && !validKeys.has(who.key(r.person)));
  const distinct = new Set(input.requests.map((r) => who.key(r.person))).size;
  const reason: Reason<BreakGlassCode> = other?.reason ?? {
    code: 'one_person',
    message: `break-glass needs two distinct people; ${distinct === 0 ? 'nobody has' : participants.length === 1 ? `only ${participants[0] ?? ''} has` : 'only one person has'} asked`,
  };
  return { allowed: false, reason, participants, refused };
}
