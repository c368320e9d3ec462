/**
 * Change windows and freezes. A schedule is open at `now` when some cron occurrence `t` (in the
 * schedule's IANA time zone) satisfies t <= now < t + durationMs. Freezes win over windows; with
 * no windows declared, any time outside a freeze is allowed.
 *
 * Occurrences come from cron-parser's `next()`, which resolves local times through the zone's
 * rules: a time skipped by the spring switch fires an hour later; a time repeated in autumn opens
 * at both of its instants (so a freeze set for 02:30 covers both), though `nextWindow` names only
 * the first. Durations are elapsed time.
 */
import { CronExpressionParser } from 'cron-parser';
import type { CronExpression } from 'cron-parser';
import { ValidationError } from '../errors/index.js';
import type { FieldIssue } from '../errors/index.js';
import type { Reason } from './people.js';
import type { RecurringFreeze, Schedule } from './rules.js';

/** A freeze set by hand (`airlock freeze ENV --until … --reason …`); epoch milliseconds. */
export interface OneOffFreeze {
  readonly from?: number;
  readonly until: number;
  readonly reason: string;
}

export interface Interval {
  readonly start: number;
  readonly end: number;
}

export type DeployWindowCode = 'no_windows' | 'in_window' | 'outside_window' | 'frozen';

export interface ActiveFreeze extends Interval {
  readonly kind: 'one_off' | 'recurring';
  readonly reason: string;
}

export interface DeployWindowInput {
  readonly windows: readonly Schedule[];
  readonly freezes: readonly RecurringFreeze[];
  readonly oneOffFreezes: readonly OneOffFreeze[];
  /** Epoch milliseconds. */
  readonly now: number;
}

export interface DeployWindowDecision {
  readonly allowed: boolean;
  readonly reason: Reason<DeployWindowCode>;
  /** The window that is open now (in_window). */
  readonly window?: Interval;
  /** Outside every window: the next one to open (freezes not considered). */
  readonly nextWindow?: Interval;
  /** Every freeze in force now. */
  readonly freezes: readonly ActiveFreeze[];
  /** Frozen: the first instant no freeze is in force, when one is found. */
  readonly frozenUntil?: number;
}

/** True when `zone` is an IANA time zone the runtime knows. */
export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** Parse problems of one schedule (empty when it is usable); `path` prefixes field names. */
export function scheduleIssues(schedule: Schedule, path: string): FieldIssue[] {
  const issues: FieldIssue[] = [];
  if (typeof schedule.timezone !== 'string' || !isTimeZone(schedule.timezone)) {
    issues.push({ path: `${path}.timezone`, message: `${JSON.stringify(schedule.timezone)} is not an IANA time zone` });
  }
  if (!Number.isFinite(schedule.durationMs) || schedule.durationMs <= 0) {
    issues.push({ path: `${path}.durationMs`, message: 'must be a positive number of milliseconds' });
  }
  if (typeof schedule.cron !== 'string' || schedule.cron.trim() === '') {
    issues.push({ path: `${path}.cron`, message: 'must be a cron expression' });
  } else {
    try {
      CronExpressionParser.parse(schedule.cron, { strict: false });
    } catch (err) {
      issues.push({ path: `${path}.cron`, message: `invalid cron expression ${JSON.stringify(schedule.cron)}: ${(err as Error).message}` });
    }
  }
  return issues;
}

function expression(schedule: Schedule, after: number): CronExpression {
  return CronExpressionParser.parse(schedule.cron, { currentDate: new Date(after), tz: schedule.timezone });
}

/** The first occurrence strictly after `after`, as an interval; undefined if there is none. */
export function nextOccurrence(schedule: Schedule, after: number): Interval | undefined {
  const cron = expression(schedule, after);
  if (!cron.hasNext()) return undefined;
  const start = cron.next().getTime();
  return { start, end: start + schedule.durationMs };
}

/** The earliest occurrence whose interval contains `now`, if any. */
export function openOccurrence(schedule: Schedule, now: number): Interval | undefined {
  // Smallest t > now - duration; open iff t <= now. No earlier t can cover now, and a later
  // covering t is <= now too, so this one answers the question.
  const occ = nextOccurrence(schedule, now - schedule.durationMs);
  return occ !== undefined && occ.start <= now ? occ : undefined;
}

function activeFreezes(input: Pick<DeployWindowInput, 'freezes' | 'oneOffFreezes'>, t: number): ActiveFreeze[] {
  const active: ActiveFreeze[] = [];
  for (const f of input.oneOffFreezes) {
    const from = f.from ?? Number.NEGATIVE_INFINITY;
    if (from <= t && t < f.until) active.push({ kind: 'one_off', reason: f.reason, start: from, end: f.until });
  }
  for (const f of input.freezes) {
    const occ = openOccurrence(f, t);
    if (occ !== undefined) active.push({ kind: 'recurring', reason: f.reason, ...occ });
  }
  return active;
}

/** Bound on chained freezes followed to find the end; past it the freeze is reported open-ended. */
const MAX_FREEZE_HOPS = 1000;

function freezeEnd(input: Pick<DeployWindowInput, 'freezes' | 'oneOffFreezes'>, active: readonly ActiveFreeze[]): number | undefined {
  let current = active;
  for (let hop = 0; hop < MAX_FREEZE_HOPS; hop++) {
    const t = Math.max(...current.map((f) => f.end));
    current = activeFreezes(input, t);
    if (current.length === 0) return t;
  }
  return undefined;
}

function validate(input: DeployWindowInput): void {
  const issues: FieldIssue[] = [];
  if (!Number.isFinite(input.now)) issues.push({ path: 'now', message: 'must be a finite epoch-millisecond time' });
  input.windows.forEach((w, i) => issues.push(...scheduleIssues(w, `windows[${i}]`)));
  input.freezes.forEach((f, i) => issues.push(...scheduleIssues(f, `freezes[${i}]`)));
  input.oneOffFreezes.forEach((f, i) => {
    if (!Number.isFinite(f.until)) issues.push({ path: `oneOffFreezes[${i}].until`, message: 'must be a finite epoch-millisecond time' });
    if (f.from !== undefined && !Number.isFinite(f.from)) issues.push({ path: `oneOffFreezes[${i}].from`, message: 'must be a finite epoch-millisecond time or absent' });
  });
  if (issues.length > 0) throw new ValidationError(`invalid change windows: ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`, issues);
}

const iso = (t: number): string => new Date(t).toISOString();

export function deployAllowed(input: DeployWindowInput): DeployWindowDecision {
  validate(input);
  const { now } = input;
  const freezes = activeFreezes(input, now);
  if (freezes.length > 0) {
    const until = freezeEnd(input, freezes);
    const reasons = freezes.map((f) => f.reason).join('; ');
    const message = `deployments are frozen (${reasons}) ${until === undefined ? 'with no end in sight' : `until ${iso(until)}`}`;
    const decision: DeployWindowDecision = { allowed: false, reason: { code: 'frozen', message }, freezes };
    return until === undefined ? decision : { ...decision, frozenUntil: until };
  }
  if (input.windows.length === 0) {
    return { allowed: true, reason: { code: 'no_windows', message: 'no change windows are declared and no freeze is in force' }, freezes };
  }
  for (const w of input.windows) {
    const open = openOccurrence(w, now);
    if (open !== undefined) {
      return { allowed: true, reason: { code: 'in_window', message: `inside the change window ${w.cron} (${w.timezone}) until ${iso(open.end)}` }, window: open, freezes };
    }
  }
  const next = input.windows
    .map((w) => nextOccurrence(w, now))
    .filter((o): o is Interval => o !== undefined)
    .sort((a, b) => a.start - b.start)[0];
  const message = `outside every change window${next === undefined ? '' : `; the next opens at ${iso(next.start)}`}`;
  const decision: DeployWindowDecision = { allowed: false, reason: { code: 'outside_window', message }, freezes };
  return next === undefined ? decision : { ...decision, nextWindow: next };
}
