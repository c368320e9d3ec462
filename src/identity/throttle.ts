/**
 * Failed-login throttling per account and per source address (NIST SP 800-63B 5.2.2). The
 * account key is the attempted name, known or not, so an unknown user is throttled exactly
 * like a real one and lockout reveals nothing about which accounts exist.
 */
import type { Tx } from '../storage/index.js';

export interface ThrottleRule {
  /** Failures allowed inside the window before back-off starts. */
  readonly freeFailures: number;
  readonly windowMs: number;
  /** First lockout; doubles with each further failure, up to maxLockMs. */
  readonly baseLockMs: number;
  readonly maxLockMs: number;
}

export const ACCOUNT_RULE: ThrottleRule = { freeFailures: 5, windowMs: 15 * 60_000, baseLockMs: 30_000, maxLockMs: 15 * 60_000 };
export const SOURCE_RULE: ThrottleRule = { freeFailures: 20, windowMs: 15 * 60_000, baseLockMs: 30_000, maxLockMs: 15 * 60_000 };

export const accountKey = (name: string): string => `account:${name.toLowerCase().slice(0, 128)}`;
export const sourceKey = (address: string): string => `source:${address.slice(0, 64)}`;

/** Seconds until every given key may try again; 0 if none is locked. */
export async function lockedFor(db: Tx['db'], keys: readonly string[], now: Date): Promise<number> {
  if (keys.length === 0) return 0;
  const rows = await db.selectFrom('login_throttle').select(['locked_until']).where('key', 'in', [...keys]).execute();
  let until = 0;
  for (const r of rows) {
    if (r.locked_until !== null) until = Math.max(until, Date.parse(r.locked_until));
  }
  return until > now.getTime() ? Math.ceil((until - now.getTime()) / 1000) : 0;
}

/** Count one failure against `key`; locks it once the free failures are used up. */
export async function recordFailure(tx: Tx, key: string, rule: ThrottleRule, now: Date): Promise<void> {
  // Insert-if-absent then lock the row: concurrent failures on PostgreSQL count one by one.
  await tx.db.insertInto('login_throttle').values({ key, failures: 0, window_started_at: now.toISOString(), locked_until: null }).onConflict((oc) => oc.column('key').doNothing()).execute();
  const select = tx.db.selectFrom('login_throttle').selectAll().where('key', '=', key);
  const row = await (tx.engine === 'postgres' ? select.forUpdate() : select).executeTakeFirstOrThrow();
  const fresh = now.getTime() - Date.parse(row.window_started_at) > rule.windowMs;
  const failures = fresh ? 1 : row.failures + 1;
  const windowStart = fresh ? now.toISOString() : row.window_started_at;
  // The free failures used up, the account locks: the next attempt waits.
  const over = failures - rule.freeFailures + 1;
  const lockedUntil = over > 0 ? new Date(now.getTime() + Math.min(rule.maxLockMs, rule.baseLockMs * 2 ** Math.min(over - 1, 20))).toISOString() : null;
  await tx.db.updateTable('login_throttle').set({ failures, window_started_at: windowStart, locked_until: lockedUntil }).where('key', '=', key).execute();
}

/** A success clears the account's counter (not the source's: one good login must not launder a spray). */
export async function clearFailures(tx: Tx, key: string): Promise<void> {
  await tx.db.deleteFrom('login_throttle').where('key', '=', key).execute();
}
