/**
 * Freezes set by hand, on both engines: one-off and recurring (cron in a time zone), each bad
 * field refused by name with nothing written, list with in-force flags and next occurrences,
 * lift (recorded; lifting twice refused and recorded as denied), and `active()` feeding
 * `deployAllowed` so that a deploy inside an occurrence is refused and one outside is allowed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/index.js';
import { Freezes, UNTIL_LIFTED, deployAllowed } from '../../src/delivery/index.js';
import type { FreezeInfo } from '../../src/delivery/index.js';
import { isAirlockError } from '../../src/errors/index.js';
import { ENGINES, openTestStore } from '../support/engines.js';
import type { TestStore } from '../support/engines.js';

const HOUR = 3_600_000;
/** Friday 6 June 2025, 12:00 UTC (14:00 in Paris, summer time). */
const FRIDAY_NOON = Date.parse('2025-06-06T12:00:00Z');
const WEEKEND = { cron: '0 18 * * 5', timezone: 'Europe/Paris', durationSeconds: 62 * 3600 };
const alice = { kind: 'user' as const, id: 'alice' };
const bob = { kind: 'user' as const, id: 'bob' };

describe.each(ENGINES)('freezes on %s', (engine) => {
  let t: TestStore;
  let audit: AuditLog;
  let freezes: Freezes;
  let now = FRIDAY_NOON;

  beforeAll(async () => {
    t = await openTestStore(engine);
    audit = new AuditLog(t.store);
    freezes = new Freezes({ store: t.store, audit, clock: () => new Date(now) });
  }, 60_000);

  afterAll(async () => {
    await t.cleanup();
  });

  async function rows(environment: string) {
    return t.store.db.selectFrom('freezes').selectAll().where('environment', '=', environment).execute();
  }
  async function events(action: string, id: string) {
    return (await audit.search({ action, order: 'asc', limit: 500 })).map((e) => e.event).filter((e) => e.details.id === id);
  }
  /** The ValidationError `add` throws, with its field paths. */
  async function refused(input: Parameters<Freezes['add']>[1]): Promise<{ paths: string[]; message: string }> {
    try {
      await freezes.add(alice, input);
    } catch (err) {
      if (!isAirlockError(err) || err.code !== 'VALIDATION_FAILED') throw err;
      const issues = (err.details as { issues?: { path: string }[] }).issues ?? [];
      return { paths: issues.map((i) => i.path), message: err.message };
    }
    throw new Error(`accepted ${JSON.stringify(input)}`);
  }
  async function decision(environment: string, at: number) {
    const a = await freezes.active(environment, at);
    return deployAllowed({ windows: [], freezes: a.recurring, oneOffFreezes: a.oneOff, now: at });
  }

  it('adds a one-off freeze, stores it and records it in the same commit', async () => {
    const until = new Date(FRIDAY_NOON + 2 * HOUR).toISOString();
    const f = await freezes.add(alice, { environment: 'prod-one', reason: '  end of quarter  ', until }, { requestId: 'req-1' });
    expect(f).toMatchObject({ environment: 'prod-one', kind: 'one-off', from: new Date(FRIDAY_NOON).toISOString(), until, reason: 'end of quarter', createdBy: 'alice', activeNow: true });
    expect(f.cron).toBeUndefined();
    expect(f.next).toBeUndefined();
    expect(await rows('prod-one')).toEqual([expect.objectContaining({ id: f.id, starts_at: f.from, until, cron: null, timezone: null, duration_seconds: null, lifted_at: null })]);
    const [event] = await events('deployments.freeze', f.id);
    expect(event).toMatchObject({ actor: { id: 'alice' }, resource: 'environments/prod-one', outcome: 'allowed', context: { requestId: 'req-1' }, details: { id: f.id, kind: 'one-off', from: f.from, until, cron: null, timezone: null, durationSeconds: null, reason: 'end of quarter' } });

    expect((await decision('prod-one', FRIDAY_NOON + HOUR)).reason.code).toBe('frozen');
    expect((await decision('prod-one', FRIDAY_NOON + 3 * HOUR)).allowed).toBe(true);
    // Another environment is not frozen by it.
    expect((await decision('prod-other', FRIDAY_NOON + HOUR)).allowed).toBe(true);
  });

  it('adds a recurring freeze; until lifted when no end is given; next occurrence read in its time zone', async () => {
    const f = await freezes.add(alice, { environment: 'prod-weekly', reason: 'no deploys over the weekend', ...WEEKEND });
    // Friday 18:00 in Paris is 16:00 UTC in June; 62 h later is Monday 08:00 Paris.
    expect(f).toMatchObject({ kind: 'recurring', until: UNTIL_LIFTED, cron: '0 18 * * 5', timezone: 'Europe/Paris', durationSeconds: 223_200, activeNow: false, next: { from: '2025-06-06T16:00:00.000Z', until: '2025-06-09T06:00:00.000Z' } });
    expect(await rows('prod-weekly')).toEqual([expect.objectContaining({ until: UNTIL_LIFTED, cron: '0 18 * * 5', timezone: 'Europe/Paris', duration_seconds: 223_200 })]);
    const [event] = await events('deployments.freeze', f.id);
    expect(event?.details).toMatchObject({ kind: 'recurring', cron: '0 18 * * 5', timezone: 'Europe/Paris', durationSeconds: 223_200, until: UNTIL_LIFTED, reason: 'no deploys over the weekend' });
  });

  it('refuses a deploy inside a recurring occurrence and allows one outside it, within from..until only', async () => {
    const from = '2025-06-01T00:00:00.000Z';
    const until = '2025-06-30T00:00:00.000Z';
    now = Date.parse('2025-05-20T12:00:00Z');
    try {
      await freezes.add(alice, { environment: 'prod-june', reason: 'June weekends only', from, until, ...WEEKEND });
    } finally {
      now = FRIDAY_NOON;
    }
    const saturday = Date.parse('2025-06-07T12:00:00Z');
    const refusedHere = await decision('prod-june', saturday);
    expect(refusedHere).toMatchObject({ allowed: false, reason: { code: 'frozen' }, freezes: [{ kind: 'recurring', reason: 'June weekends only' }] });
    expect(refusedHere.frozenUntil).toBe(Date.parse('2025-06-09T06:00:00Z'));
    expect(refusedHere.reason.message).toContain('June weekends only');
    // Friday 15:59 UTC is 17:59 in Paris: not yet.
    expect((await decision('prod-june', Date.parse('2025-06-06T15:59:00Z'))).allowed).toBe(true);
    expect((await decision('prod-june', Date.parse('2025-06-06T16:00:00Z'))).allowed).toBe(false);
    expect((await decision('prod-june', Date.parse('2025-06-10T12:00:00Z'))).allowed).toBe(true);
    // Before from and after until the schedule does not apply, though it would fire.
    expect((await decision('prod-june', Date.parse('2025-05-31T12:00:00Z'))).allowed).toBe(true);
    expect((await decision('prod-june', Date.parse('2025-07-05T12:00:00Z'))).allowed).toBe(true);
  });

  it('refuses every bad field by name, writing nothing and recording nothing', async () => {
    const before = (await t.store.db.selectFrom('freezes').select('id').execute()).length;
    const seqBefore = (await audit.search({ order: 'desc', limit: 1 }))[0]?.seq ?? -1;
    const base = { environment: 'prod-bad', reason: 'a good reason' };
    const cases: [Parameters<Freezes['add']>[1], string[], RegExp?][] = [
      [{ ...base, ...WEEKEND, cron: 'nope' }, ['cron'], /invalid cron expression "nope"/],
      [{ ...base, ...WEEKEND, cron: '61 * * * *' }, ['cron'], /61/],
      [{ ...base, ...WEEKEND, timezone: 'Mars/Olympus_Mons' }, ['timezone'], /IANA/],
      [{ ...base, ...WEEKEND, durationSeconds: 0 }, ['durationSeconds']],
      [{ ...base, ...WEEKEND, durationSeconds: 31 * 86_400 + 1 }, ['durationSeconds'], /31 days/],
      [{ ...base, ...WEEKEND, durationSeconds: 1.5 }, ['durationSeconds']],
      [{ ...base, cron: '0 18 * * 5' }, ['timezone', 'durationSeconds']],
      [{ ...base, timezone: 'UTC', durationSeconds: 60 }, ['cron']],
      [{ ...base }, ['until']],
      [{ ...base, until: 'tomorrow' }, ['until']],
      [{ ...base, until: new Date(FRIDAY_NOON - HOUR).toISOString() }, ['until'], /in the future/],
      [{ ...base, from: new Date(FRIDAY_NOON + 2 * HOUR).toISOString(), until: new Date(FRIDAY_NOON + HOUR).toISOString() }, ['until']],
      [{ ...base, ...WEEKEND, until: new Date(FRIDAY_NOON - HOUR).toISOString() }, ['until']],
      [{ ...base, from: 'soon', until: new Date(FRIDAY_NOON + HOUR).toISOString() }, ['from']],
      [{ ...base, reason: ' no ', until: new Date(FRIDAY_NOON + HOUR).toISOString() }, ['reason']],
      [{ ...base, environment: 'Prod!', until: new Date(FRIDAY_NOON + HOUR).toISOString() }, ['environment']],
      // 29 February does not come before the end given: the freeze would freeze nothing.
      [{ ...base, cron: '0 0 29 2 *', timezone: 'UTC', durationSeconds: 3600, until: '2025-12-31T00:00:00Z' }, ['cron'], /never fires/],
      // Every bad field at once.
      [{ environment: 'X', reason: '', cron: 'x', timezone: 'Nowhere', durationSeconds: -1 }, ['environment', 'reason', 'durationSeconds', 'timezone', 'cron']],
    ];
    for (const [input, paths, message] of cases) {
      const r = await refused(input);
      expect(r.paths.sort(), JSON.stringify(input)).toEqual([...paths].sort());
      if (message !== undefined) expect(r.message).toMatch(message);
    }
    expect((await t.store.db.selectFrom('freezes').select('id').execute()).length).toBe(before);
    expect((await audit.search({ order: 'desc', limit: 1 }))[0]?.seq ?? -1).toBe(seqBefore);
  });

  it('lists freezes with whether each applies now and the next occurrence; filters by environment and lifted', async () => {
    const one = await freezes.add(alice, { environment: 'prod-list', reason: 'tomorrow only', from: new Date(FRIDAY_NOON + 24 * HOUR).toISOString(), until: new Date(FRIDAY_NOON + 30 * HOUR).toISOString() });
    const weekly = await freezes.add(bob, { environment: 'prod-list', reason: 'weekend freeze', ...WEEKEND });
    const listed = await freezes.list({ environment: 'prod-list' });
    expect(listed.map((f) => f.id).sort()).toEqual([one.id, weekly.id].sort());
    expect(listed.find((f) => f.id === one.id)).toMatchObject({ kind: 'one-off', activeNow: false });

    now = Date.parse('2025-06-07T12:00:00Z');
    try {
      const during = await freezes.list({ environment: 'prod-list' });
      // Saturday noon: both in force; the recurring one names the occurrence in force.
      expect(during.find((f) => f.id === one.id)?.activeNow).toBe(true);
      expect(during.find((f) => f.id === weekly.id)).toMatchObject({ activeNow: true, createdBy: 'bob', next: { from: '2025-06-06T16:00:00.000Z', until: '2025-06-09T06:00:00.000Z' } });
      now = Date.parse('2025-06-10T12:00:00Z');
      expect((await freezes.list({ environment: 'prod-list' })).find((f) => f.id === weekly.id)).toMatchObject({ activeNow: false, next: { from: '2025-06-13T16:00:00.000Z', until: '2025-06-16T06:00:00.000Z' } });
    } finally {
      now = FRIDAY_NOON;
    }
    const all = await freezes.list();
    expect(all.map((f) => f.environment)).toEqual(expect.arrayContaining(['prod-list', 'prod-one', 'prod-weekly']));
    expect(all.every((f: FreezeInfo) => f.liftedAt === undefined)).toBe(true);
  });

  it('lifts a freeze: recorded, no longer in force, listed only with includeLifted; twice is refused and recorded', async () => {
    const f = await freezes.add(alice, { environment: 'prod-lift', reason: 'weekend freeze', ...WEEKEND });
    const saturday = Date.parse('2025-06-07T12:00:00Z');
    expect((await decision('prod-lift', saturday)).allowed).toBe(false);

    const lifted = await freezes.lift(bob, f.id, 'release must ship this weekend', { requestId: 'req-lift' });
    expect(lifted).toMatchObject({ id: f.id, liftedAt: new Date(FRIDAY_NOON).toISOString(), liftedBy: 'bob', activeNow: false });
    expect(lifted.next).toBeUndefined();
    expect(await events('deployments.freeze.lift', f.id)).toEqual([expect.objectContaining({ actor: expect.objectContaining({ id: 'bob' }) as object, outcome: 'allowed', resource: 'environments/prod-lift', context: expect.objectContaining({ requestId: 'req-lift' }) as object, details: { id: f.id, kind: 'recurring', reason: 'release must ship this weekend' } })]);
    expect(await freezes.active('prod-lift', saturday)).toEqual({ oneOff: [], recurring: [] });
    expect((await decision('prod-lift', saturday)).allowed).toBe(true);
    expect(await freezes.list({ environment: 'prod-lift' })).toEqual([]);
    expect(await freezes.list({ environment: 'prod-lift', includeLifted: true })).toEqual([expect.objectContaining({ id: f.id, liftedBy: 'bob' })]);

    await expect(freezes.lift(alice, f.id, 'lift it again please')).rejects.toMatchObject({ code: 'CONFLICT' });
    const denied = (await events('deployments.freeze.lift', f.id)).filter((e) => e.outcome === 'denied');
    expect(denied).toEqual([expect.objectContaining({ actor: expect.objectContaining({ id: 'alice' }) as object, reason: expect.stringMatching(/already lifted .* by bob/) as string })]);
    // The first lift stands.
    expect((await rows('prod-lift'))[0]).toMatchObject({ lifted_by: 'bob' });

    await expect(freezes.lift(alice, '00000000-0000-4000-8000-000000000000', 'no such freeze')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(freezes.lift(alice, f.id, 'no')).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
  });

  it('lets exactly one of two concurrent lifts win', async () => {
    const f = await freezes.add(alice, { environment: 'prod-race', reason: 'race freeze', until: new Date(FRIDAY_NOON + HOUR).toISOString() });
    const results = await Promise.allSettled([freezes.lift(alice, f.id, 'first lifter'), freezes.lift(bob, f.id, 'second lifter')]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(rejected).toHaveLength(1);
    expect(rejected[0]?.reason).toMatchObject({ code: 'CONFLICT' });
    expect((await events('deployments.freeze.lift', f.id)).map((e) => e.outcome).sort()).toEqual(['allowed', 'denied']);
  });

  it('active() leaves out lifted freezes, one-offs already over, and recurring ones outside from..until', async () => {
    const past = await freezes.add(alice, { environment: 'prod-active', reason: 'short one', until: new Date(FRIDAY_NOON + HOUR).toISOString() });
    await freezes.add(alice, { environment: 'prod-active', reason: 'later one', from: new Date(FRIDAY_NOON + 5 * HOUR).toISOString(), until: new Date(FRIDAY_NOON + 6 * HOUR).toISOString() });
    await freezes.add(alice, { environment: 'prod-active', reason: 'weekly later', from: new Date(FRIDAY_NOON + 48 * HOUR).toISOString(), ...WEEKEND });
    const at = FRIDAY_NOON + 2 * HOUR;
    const a = await freezes.active('prod-active', at);
    expect(a.oneOff).toEqual([{ from: FRIDAY_NOON + 5 * HOUR, until: FRIDAY_NOON + 6 * HOUR, reason: 'later one' }]);
    expect(a.recurring).toEqual([]);
    expect(a.oneOff.some((o) => o.reason === past.reason)).toBe(false);
    const later = await freezes.active('prod-active', FRIDAY_NOON + 49 * HOUR);
    expect(later.recurring).toEqual([{ cron: '0 18 * * 5', timezone: 'Europe/Paris', durationMs: 223_200_000, reason: 'weekly later' }]);
  });
});
