/**
 * Freezes set by hand (issue 7): one-off (`airlock freeze ENV --until … --reason …`) or recurring
 * (a cron schedule in an IANA time zone, each occurrence lasting a fixed elapsed time, in force
 * between `from` and `until`). Every change is recorded in the transaction that makes it; lifting
 * keeps the row, so the history of who froze and who lifted stays readable. `active()` hands the
 * freezes in force to `deployAllowed` (windows.ts), which decides.
 */
import { randomUUID } from 'node:crypto';
import type { AuditLog, RequestContext } from '../audit/index.js';
import { ConflictError, NotFoundError, ValidationError } from '../errors/index.js';
import type { FieldIssue } from '../errors/index.js';
import type { Database, Store } from '../storage/index.js';
import type { RecurringFreeze, Schedule } from './rules.js';
import { isTimeZone, nextOccurrence, openOccurrence, scheduleIssues } from './windows.js';
import type { Interval, OneOffFreeze } from './windows.js';

type Actor = Parameters<AuditLog['append']>[0]['actor'];
type FreezeRow = Database['freezes'];

/** The stored `until` of a recurring freeze given none: in force until someone lifts it. */
export const UNTIL_LIFTED = '9999-12-31T23:59:59.999Z';
/** Longest single occurrence of a recurring freeze: longer ones are a standing freeze in disguise. */
export const MAX_FREEZE_DURATION_SECONDS = 31 * 24 * 3600;
const MIN_REASON = 5;
const MAX_REASON = 1000;
const ENV = /^[a-z][a-z0-9-]{0,62}$/;

export interface FreezesDeps {
  readonly store: Store;
  readonly audit: AuditLog;
  readonly clock: () => Date;
}

/** What `add` takes. With `cron` (and `timezone`, `durationSeconds`) it is recurring; else one-off and `until` is required. */
export interface FreezeInput {
  readonly environment: string;
  readonly reason: string;
  /** ISO 8601 end; optional for a recurring freeze (then until lifted). */
  readonly until?: string | undefined;
  /** ISO 8601 start (default now). */
  readonly from?: string | undefined;
  readonly cron?: string | undefined;
  readonly timezone?: string | undefined;
  readonly durationSeconds?: number | undefined;
}

/** A freeze as the API shows it. Times are ISO 8601 UTC. */
export interface FreezeInfo {
  readonly id: string;
  readonly environment: string;
  readonly kind: 'one-off' | 'recurring';
  readonly from: string;
  /** {@link UNTIL_LIFTED} for a recurring freeze set without an end. */
  readonly until: string;
  readonly reason: string;
  readonly cron?: string;
  readonly timezone?: string;
  readonly durationSeconds?: number;
  readonly createdBy: string;
  readonly createdAt: string;
  readonly liftedAt?: string;
  readonly liftedBy?: string;
  /** Deployments to the environment are refused by this freeze right now. */
  readonly activeNow: boolean;
  /** Recurring: the occurrence in force now, else the next one to start (clipped to from..until); absent when none is left. */
  readonly next?: { readonly from: string; readonly until: string };
}

/** The freezes in force for one environment, in the shapes `deployAllowed` takes. */
export interface ActiveFreezes {
  readonly oneOff: OneOffFreeze[];
  readonly recurring: RecurringFreeze[];
}

const iso = (t: number): string => new Date(t).toISOString();

/** A time the caller gave, normalised to UTC; an issue naming `path` when it is not one. */
function time(value: string | undefined, path: string, issues: FieldIssue[]): number | undefined {
  if (value === undefined) return undefined;
  const t = Date.parse(value);
  if (Number.isNaN(t)) {
    issues.push({ path, message: `${JSON.stringify(value.slice(0, 60))} is not an ISO 8601 date-time such as 2025-01-31T18:00:00Z` });
    return undefined;
  }
  return t;
}

function scheduleOf(row: FreezeRow): Schedule | undefined {
  if (row.cron === null || row.timezone === null || row.duration_seconds === null) return undefined;
  return { cron: row.cron, timezone: row.timezone, durationMs: row.duration_seconds * 1000 };
}

/** The part of `occ` inside [from, until). */
function clip(occ: Interval, from: number, until: number): Interval | undefined {
  const start = Math.max(occ.start, from);
  const end = Math.min(occ.end, until);
  return start < end ? { start, end } : undefined;
}

/** Whether a recurring freeze is in force at `now`, and its current or next occurrence. */
function recurringAt(schedule: Schedule, from: number, until: number, now: number): { active: boolean; next?: Interval } {
  if (now >= until) return { active: false };
  const t = Math.max(now, from);
  const open = openOccurrence(schedule, t);
  const current = open === undefined ? undefined : clip(open, from, until);
  if (current !== undefined) return { active: now >= from, next: current };
  const upcoming = nextOccurrence(schedule, t);
  const next = upcoming === undefined ? undefined : clip(upcoming, from, until);
  return next === undefined ? { active: false } : { active: false, next };
}

/** One-off and recurring freezes of environments: add, list, lift, and the ones in force. */
export class Freezes {
  constructor(private readonly deps: FreezesDeps) {}

  /**
   * Freeze an environment; recorded (`deployments.freeze`) in the same transaction. Every bad
   * field is reported at once, and nothing is written.
   * @example await freezes.add(actor, { environment: 'production', reason: 'Friday evenings', cron: '0 18 * * 5', timezone: 'Europe/Paris', durationSeconds: 60 * 3600 })
   */
  async add(actor: Actor, input: FreezeInput, context?: RequestContext): Promise<FreezeInfo> {
    const now = this.deps.clock();
    const issues: FieldIssue[] = [];
    if (typeof input.environment !== 'string' || !ENV.test(input.environment)) {
      issues.push({ path: 'environment', message: 'must be lower-case letters, digits and "-", starting with a letter (at most 63)' });
    }
    const reason = typeof input.reason === 'string' ? input.reason.trim() : '';
    if (reason.length < MIN_REASON) issues.push({ path: 'reason', message: `is required: say why, in at least ${MIN_REASON} characters` });
    else if (reason.length > MAX_REASON) issues.push({ path: 'reason', message: `must be at most ${MAX_REASON} characters` });

    const recurring = input.cron !== undefined || input.timezone !== undefined || input.durationSeconds !== undefined;
    const from = time(input.from, 'from', issues) ?? now.getTime();
    const until = time(input.until, 'until', issues);
    if (input.until === undefined && !recurring) {
      issues.push({ path: 'until', message: 'is required for a one-off freeze (or give cron, timezone and durationSeconds for a recurring one)' });
    }
    if (until !== undefined && until <= Math.max(from, now.getTime())) {
      issues.push({ path: 'until', message: `must be after the start (${iso(from)}) and in the future` });
    }

    let schedule: Schedule | undefined;
    if (recurring) {
      const d = input.durationSeconds;
      if (d === undefined) issues.push({ path: 'durationSeconds', message: 'is required for a recurring freeze: how long each occurrence lasts' });
      else if (!Number.isSafeInteger(d) || d <= 0 || d > MAX_FREEZE_DURATION_SECONDS) {
        issues.push({ path: 'durationSeconds', message: `must be a whole number of seconds from 1 to ${MAX_FREEZE_DURATION_SECONDS} (31 days)` });
      }
      if (input.cron === undefined) issues.push({ path: 'cron', message: 'is required for a recurring freeze, e.g. "0 18 * * 5" (Fridays at 18:00)' });
      else if (input.cron.length > 200) issues.push({ path: 'cron', message: 'must be a cron expression of at most 200 characters' });
      if (input.timezone === undefined) issues.push({ path: 'timezone', message: 'is required for a recurring freeze: an IANA time zone such as Europe/Paris' });
      else if (input.timezone.length > 100 || !isTimeZone(input.timezone)) {
        issues.push({ path: 'timezone', message: `${JSON.stringify(input.timezone.slice(0, 100))} is not an IANA time zone (e.g. Europe/Paris, UTC)` });
      }
      if (input.cron !== undefined && input.cron.length <= 200) {
        // Timezone and duration are checked above with messages in this API's names.
        const cronIssue = scheduleIssues({ cron: input.cron, timezone: 'UTC', durationMs: 1 }, 'freeze').find((i) => i.path === 'freeze.cron');
        if (cronIssue !== undefined) issues.push({ path: 'cron', message: cronIssue.message });
      }
      if (issues.length === 0 && d !== undefined && input.cron !== undefined && input.timezone !== undefined) {
        schedule = { cron: input.cron, timezone: input.timezone, durationMs: d * 1000 };
        // A schedule that never fires inside from..until would freeze nothing: a mistake, not a freeze.
        const end = until ?? Date.parse(UNTIL_LIFTED);
        if (recurringAt(schedule, from, end, Math.max(from, now.getTime())).next === undefined) {
          issues.push({ path: 'cron', message: `${JSON.stringify(input.cron)} never fires between ${iso(from)} and ${until === undefined ? 'the end of time' : iso(until)}` });
        }
      }
    }
    if (issues.length > 0) throw new ValidationError(`invalid freeze: ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`, issues);

    const id = randomUUID();
    const row: FreezeRow = {
      id,
      project_id: null,
      environment: input.environment,
      starts_at: iso(from),
      until: until === undefined ? UNTIL_LIFTED : iso(until),
      reason,
      created_by: actor.id,
      created_at: now.toISOString(),
      lifted_at: null,
      lifted_by: null,
      cron: schedule?.cron ?? null,
      timezone: schedule?.timezone ?? null,
      duration_seconds: schedule === undefined ? null : schedule.durationMs / 1000,
    };
    await this.deps.store.transact(async (tx) => {
      await tx.db.insertInto('freezes').values(row).execute();
      await this.deps.audit.record(tx, {
        actor,
        action: 'deployments.freeze',
        resource: `environments/${row.environment}`,
        outcome: 'allowed',
        context,
        details: { id, kind: schedule === undefined ? 'one-off' : 'recurring', from: row.starts_at, until: row.until, cron: row.cron, timezone: row.timezone, durationSeconds: row.duration_seconds, reason },
      });
    });
    return this.view(row, now.getTime());
  }

  /** Freezes, newest first (at most 500): of one environment, and with lifted ones when asked. */
  async list(query: { environment?: string | undefined; includeLifted?: boolean | undefined } = {}): Promise<FreezeInfo[]> {
    let q = this.deps.store.db.selectFrom('freezes').selectAll();
    if (query.environment !== undefined) q = q.where('environment', '=', query.environment);
    if (query.includeLifted !== true) q = q.where('lifted_at', 'is', null);
    const rows = await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(500).execute();
    const now = this.deps.clock().getTime();
    return rows.map((r) => this.view(r, now));
  }

  /** One freeze by id. */
  async show(id: string): Promise<FreezeInfo> {
    return this.view(await this.row(id), this.deps.clock().getTime());
  }

  /**
   * Lift a freeze: it stops refusing deployments at once; recorded (`deployments.freeze.lift`).
   * Lifting one that is already lifted is refused (and recorded as denied).
   */
  async lift(actor: Actor, id: string, reason: string, context?: RequestContext): Promise<FreezeInfo> {
    const why = typeof reason === 'string' ? reason.trim() : '';
    if (why.length < MIN_REASON || why.length > MAX_REASON) throw new ValidationError(`a lift needs a reason of ${MIN_REASON} to ${MAX_REASON} characters`, [{ path: 'reason', message: `must be ${MIN_REASON} to ${MAX_REASON} characters: say why` }]);
    const now = this.deps.clock().toISOString();
    // The update's own condition decides who lifts: two concurrent lifts cannot both succeed.
    const lifted = await this.deps.store.transact(async (tx) => {
      const row = await tx.db.selectFrom('freezes').selectAll().where('id', '=', id).executeTakeFirst();
      if (row === undefined || row.lifted_at !== null) return row;
      const res = await tx.db.updateTable('freezes').set({ lifted_at: now, lifted_by: actor.id }).where('id', '=', id).where('lifted_at', 'is', null).executeTakeFirst();
      if (res.numUpdatedRows !== 1n) return { ...row, lifted_at: now };
      await this.deps.audit.record(tx, { actor, action: 'deployments.freeze.lift', resource: `environments/${row.environment}`, outcome: 'allowed', context, details: { id, kind: row.cron === null ? 'one-off' : 'recurring', reason: why } });
      return undefined;
    });
    if (lifted !== undefined) {
      const message = `freeze ${id} was already lifted at ${lifted.lifted_at ?? '?'}${lifted.lifted_by === null ? '' : ` by ${lifted.lifted_by}`}`;
      await this.deps.audit.append({ actor, action: 'deployments.freeze.lift', resource: `environments/${lifted.environment}`, outcome: 'denied', reason: message, context, details: { id } });
      throw new ConflictError(message, { id });
    }
    return this.show(id);
  }

  /**
   * The unlifted freezes of `environment` for `deployAllowed` at `at` (default now): every
   * one-off not yet over (a later one may extend the freeze), and the recurring ones whose
   * from..until contains `at`.
   */
  async active(environment: string, at: number = this.deps.clock().getTime()): Promise<ActiveFreezes> {
    const rows = await this.deps.store.db.selectFrom('freezes').selectAll().where('environment', '=', environment).where('lifted_at', 'is', null).execute();
    const oneOff: OneOffFreeze[] = [];
    const recurring: RecurringFreeze[] = [];
    for (const r of rows) {
      const from = Date.parse(r.starts_at);
      const until = Date.parse(r.until);
      const schedule = scheduleOf(r);
      if (schedule === undefined) {
        if (until > at) oneOff.push({ from, until, reason: r.reason });
      } else if (from <= at && at < until) {
        recurring.push({ ...schedule, reason: r.reason });
      }
    }
    return { oneOff, recurring };
  }

  private async row(id: string): Promise<FreezeRow> {
    const row = await this.deps.store.db.selectFrom('freezes').selectAll().where('id', '=', id).executeTakeFirst();
    if (row === undefined) throw new NotFoundError(`no freeze ${id} (see airlock freeze list --all)`, { id });
    return row;
  }

  private view(r: FreezeRow, now: number): FreezeInfo {
    const from = Date.parse(r.starts_at);
    const until = Date.parse(r.until);
    const schedule = scheduleOf(r);
    const lifted = r.lifted_at !== null;
    const base = {
      id: r.id,
      environment: r.environment,
      from: r.starts_at,
      until: r.until,
      reason: r.reason,
      createdBy: r.created_by,
      createdAt: r.created_at,
      ...(r.lifted_at === null ? {} : { liftedAt: r.lifted_at }),
      ...(r.lifted_by === null ? {} : { liftedBy: r.lifted_by }),
    };
    if (schedule === undefined) return { ...base, kind: 'one-off', activeNow: !lifted && from <= now && now < until };
    const at = lifted ? undefined : recurringAt(schedule, from, until, now);
    return {
      ...base,
      kind: 'recurring',
      cron: schedule.cron,
      timezone: schedule.timezone,
      durationSeconds: schedule.durationMs / 1000,
      activeNow: at?.active ?? false,
      ...(at?.next === undefined ? {} : { next: { from: iso(at.next.start), until: iso(at.next.end) } }),
    };
  }
}
