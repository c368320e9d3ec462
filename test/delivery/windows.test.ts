import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deployAllowed, nextOccurrence, openOccurrence } from '../../src/delivery/windows.js';
import type { DeployWindowInput } from '../../src/delivery/windows.js';
import type { RecurringFreeze, Schedule } from '../../src/delivery/rules.js';
import { ValidationError } from '../../src/errors/index.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const t = (iso: string): number => Date.parse(iso);
const berlinWeekdays: Schedule = { cron: '0 9 * * 1-5', timezone: 'Europe/Berlin', durationMs: 8 * HOUR };
const berlinDaily: Schedule = { cron: '0 9 * * *', timezone: 'Europe/Berlin', durationMs: 8 * HOUR };
const decide = (now: number, over: Partial<DeployWindowInput> = {}) =>
  deployAllowed({ windows: [berlinWeekdays], freezes: [], oneOffFreezes: [], now, ...over });

describe('change windows', () => {
  it('a window is open on [start, start + duration)', () => {
    const start = t('2025-06-02T07:00:00Z'); // Monday 09:00 CEST
    expect(decide(start - 1).allowed).toBe(false);
    expect(decide(start)).toMatchObject({ allowed: true, reason: { code: 'in_window' }, window: { start, end: start + 8 * HOUR } });
    expect(decide(start + 8 * HOUR - 1).allowed).toBe(true);
    expect(decide(start + 8 * HOUR)).toMatchObject({ allowed: false, reason: { code: 'outside_window' } });
  });

  it('outside every window names the next one to open', () => {
    const saturday = t('2025-06-07T12:00:00Z');
    const r = decide(saturday, { windows: [berlinWeekdays, { cron: '0 6 * * 1', timezone: 'UTC', durationMs: HOUR }] });
    expect(r.allowed).toBe(false);
    expect(r.nextWindow).toEqual({ start: t('2025-06-09T06:00:00Z'), end: t('2025-06-09T07:00:00Z') });
    expect(r.reason.message).toContain('2025-06-09T06:00:00.000Z');
  });

  it('with no windows declared, any time outside a freeze is allowed', () => {
    expect(decide(t('2025-06-07T03:00:00Z'), { windows: [] })).toMatchObject({ allowed: true, reason: { code: 'no_windows' } });
  });

  describe('Europe/Berlin across DST switches', () => {
    it('March: 09:00 local is 08:00Z before the switch and 07:00Z after', () => {
      // Friday 28 March (CET) and Monday 31 March (CEST).
      expect(decide(t('2025-03-28T07:30:00Z')).allowed).toBe(false); // 08:30 CET
      expect(decide(t('2025-03-28T08:00:00Z')).window).toEqual({ start: t('2025-03-28T08:00:00Z'), end: t('2025-03-28T16:00:00Z') });
      expect(decide(t('2025-03-31T07:00:00Z')).window).toEqual({ start: t('2025-03-31T07:00:00Z'), end: t('2025-03-31T15:00:00Z') });
      expect(decide(t('2025-03-31T15:00:00Z')).allowed).toBe(false); // 17:00 CEST
      expect(decide(t('2025-03-29T12:00:00Z')).nextWindow?.start).toBe(t('2025-03-31T07:00:00Z'));
      // The switch day itself (Sunday 30 March) with a daily window.
      expect(decide(t('2025-03-30T06:59:59.999Z'), { windows: [berlinDaily] }).allowed).toBe(false);
      expect(decide(t('2025-03-30T07:00:00Z'), { windows: [berlinDaily] }).allowed).toBe(true);
    });

    it('October: 09:00 local is 07:00Z before the switch and 08:00Z after', () => {
      expect(decide(t('2025-10-24T07:00:00Z')).allowed).toBe(true); // Friday 09:00 CEST
      expect(decide(t('2025-10-27T07:30:00Z')).allowed).toBe(false); // Monday 08:30 CET
      expect(decide(t('2025-10-27T08:00:00Z')).allowed).toBe(true);
      expect(decide(t('2025-10-27T15:59:59.999Z')).allowed).toBe(true);
      expect(decide(t('2025-10-27T16:00:00Z')).allowed).toBe(false); // 17:00 CET
      expect(decide(t('2025-10-26T07:30:00Z'), { windows: [berlinDaily] }).allowed).toBe(false); // Sunday 08:30 CET
      expect(decide(t('2025-10-26T08:00:00Z'), { windows: [berlinDaily] }).allowed).toBe(true);
    });

    it('durations are elapsed time: a night window over the March switch ends an hour later on the clock', () => {
      const night: Schedule = { cron: '0 22 * * *', timezone: 'Europe/Berlin', durationMs: 8 * HOUR };
      // Saturday 22:00 CET = 21:00Z; 8 h later is 05:00Z = 07:00 CEST.
      expect(openOccurrence(night, t('2025-03-30T04:59:59.999Z'))).toEqual({ start: t('2025-03-29T21:00:00Z'), end: t('2025-03-30T05:00:00Z') });
      expect(openOccurrence(night, t('2025-03-30T05:00:00Z'))).toBeUndefined();
    });

    it('a local time skipped in spring fires an hour later; one repeated in autumn is open at both instants', () => {
      const early: Schedule = { cron: '30 2 * * *', timezone: 'Europe/Berlin', durationMs: 30 * 60_000 };
      expect(nextOccurrence(early, t('2025-03-29T12:00:00Z'))?.start).toBe(t('2025-03-30T01:30:00Z')); // 03:30 CEST
      expect(nextOccurrence(early, t('2025-10-25T12:00:00Z'))?.start).toBe(t('2025-10-26T00:30:00Z')); // first 02:30 (CEST)
      expect(openOccurrence(early, t('2025-10-26T00:45:00Z'))).toBeDefined();
      // The second 02:30 (CET) opens too: a freeze set for that local time covers both.
      expect(openOccurrence(early, t('2025-10-26T01:45:00Z'))).toEqual({ start: t('2025-10-26T01:30:00Z'), end: t('2025-10-26T02:00:00Z') });
      expect(openOccurrence(early, t('2025-10-26T01:15:00Z'))).toBeUndefined();
    });
  });
});

describe('freezes', () => {
  const weekend: RecurringFreeze = { cron: '0 15 * * 5', timezone: 'Europe/Berlin', durationMs: 63 * HOUR, reason: 'weekend freeze' };

  it('a recurring freeze wins over an open window and says when it ends', () => {
    const saturdayNoon = t('2025-06-07T10:00:00Z'); // inside the daily window
    const r = decide(saturdayNoon, { windows: [berlinDaily], freezes: [weekend] });
    expect(r.allowed).toBe(false);
    expect(r.reason.code).toBe('frozen');
    expect(r.reason.message).toContain('weekend freeze');
    expect(r.freezes).toEqual([{ kind: 'recurring', reason: 'weekend freeze', start: t('2025-06-06T13:00:00Z'), end: t('2025-06-09T04:00:00Z') }]);
    expect(r.frozenUntil).toBe(t('2025-06-09T04:00:00Z')); // Monday 06:00 CEST
    expect(decide(t('2025-06-06T12:59:59.999Z'), { windows: [berlinDaily], freezes: [weekend] }).allowed).toBe(true);
  });

  it('a one-off freeze applies on [from, until)', () => {
    const now = t('2025-06-03T10:00:00Z');
    const f = { from: now, until: now + DAY, reason: 'release of the century' };
    expect(decide(now - 1, { oneOffFreezes: [f] }).allowed).toBe(true);
    expect(decide(now, { oneOffFreezes: [f] })).toMatchObject({ allowed: false, reason: { code: 'frozen' }, frozenUntil: now + DAY });
    expect(decide(now + DAY - 1, { oneOffFreezes: [f], windows: [] }).allowed).toBe(false);
    expect(decide(now + DAY, { oneOffFreezes: [f], windows: [] }).allowed).toBe(true);
  });

  it('follows chained freezes to the first free instant', () => {
    // A one-off freeze until Friday 16:00 CEST runs into the weekend freeze (from 15:00).
    const r = decide(t('2025-06-06T08:00:00Z'), { freezes: [weekend], oneOffFreezes: [{ until: t('2025-06-06T14:00:00Z'), reason: 'incident INC-7' }] });
    expect(r.freezes.map((f) => f.kind)).toEqual(['one_off']);
    expect(r.frozenUntil).toBe(t('2025-06-09T04:00:00Z'));
  });

  it('a freeze that never ends has no frozenUntil', () => {
    const always: RecurringFreeze = { cron: '0 * * * *', timezone: 'UTC', durationMs: 2 * HOUR, reason: 'indefinite' };
    const r = decide(t('2025-06-06T08:00:00Z'), { freezes: [always] });
    expect(r.allowed).toBe(false);
    expect(r.frozenUntil).toBeUndefined();
    expect(r.reason.message).toContain('no end in sight');
  });
});

describe('input validation', () => {
  it('names every bad schedule field', () => {
    let err: unknown;
    try {
      deployAllowed({
        windows: [{ cron: 'bogus', timezone: 'Mars/Olympus_Mons', durationMs: 0 }],
        freezes: [{ cron: '0 0 31 2 *', timezone: 'UTC', durationMs: HOUR, reason: 'never' }],
        oneOffFreezes: [{ until: Number.NaN, reason: 'x' }],
        now: Date.now(),
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).issues.map((i) => i.path)).toEqual([
      'windows[0].timezone',
      'windows[0].durationMs',
      'windows[0].cron',
      'freezes[0].cron',
      'oneOffFreezes[0].until',
    ]);
  });
});

describe('properties (fast-check)', () => {
  const range = fc.integer({ min: t('2024-01-01T00:00:00Z'), max: t('2026-12-31T00:00:00Z') });

  it('a UTC daily window matches arithmetic', () => {
    fc.assert(
      fc.property(range, fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }), fc.integer({ min: 60_000, max: 23 * HOUR }), (now, h, m, d) => {
        const offset = (h * 60 + m) * 60_000;
        const expected = (((now - offset) % DAY) + DAY) % DAY < d;
        const r = deployAllowed({ windows: [{ cron: `${m} ${h} * * *`, timezone: 'UTC', durationMs: d }], freezes: [], oneOffFreezes: [], now });
        expect(r.allowed).toBe(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('a Europe/Berlin 09:00-17:00 window is open exactly when the Berlin clock reads 09:00-16:59', () => {
    const fmt = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', hour: '2-digit', hourCycle: 'h23' });
    fc.assert(
      fc.property(range, (now) => {
        const hour = Number(fmt.format(now));
        expect(decide(now, { windows: [berlinDaily] }).allowed).toBe(hour >= 9 && hour < 17);
      }),
      { numRuns: 500 },
    );
  });

  it('a freeze always wins, and the next window is after now', () => {
    fc.assert(
      fc.property(range, fc.integer({ min: 1, max: 10 * DAY }), (now, len) => {
        const frozen = decide(now, { windows: [berlinDaily], oneOffFreezes: [{ from: now - 1, until: now + len, reason: 'r' }] });
        expect(frozen.allowed).toBe(false);
        expect(frozen.frozenUntil).toBe(now + len);
        const r = decide(now, { windows: [berlinDaily] });
        if (!r.allowed) expect(r.nextWindow!.start).toBeGreaterThan(now);
      }),
      { numRuns: 200 },
    );
  });
});
