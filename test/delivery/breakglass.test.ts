import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { evaluateBreakGlass } from '../../src/delivery/breakglass.js';
import type { BreakGlassRequest } from '../../src/delivery/breakglass.js';
import { ValidationError } from '../../src/errors/index.js';
import { NOW, people } from './fixtures.js';

const TTL = 15 * 60_000;
const ask = (person: string, over: Partial<BreakGlassRequest> = {}): BreakGlassRequest => ({
  person,
  justification: 'payments are down, rolling forward the fix',
  at: NOW - 60_000,
  mfaFresh: true,
  hasPermission: true,
  ...over,
});
const decide = (requests: BreakGlassRequest[]) => evaluateBreakGlass({ requests, now: NOW, ttlMs: TTL, people });

describe('break-glass', () => {
  it('two distinct people with permission, fresh MFA and a justification may break the glass', () => {
    const r = decide([ask('alice', { at: NOW - 5 * 60_000 }), ask('bob', { at: NOW - 60_000 })]);
    expect(r).toMatchObject({ allowed: true, reason: { code: 'granted' }, participants: ['alice', 'bob'], refused: [] });
    expect(r.validUntil).toBe(NOW - 5 * 60_000 + TTL);
  });

  it.each<[string, Partial<BreakGlassRequest>]>([
    ['no_permission', { hasPermission: false }],
    ['no_step_up', { mfaFresh: false }],
    ['no_justification', { justification: ' urgent  ' }],
    ['expired', { at: NOW - TTL }],
    ['future_dated', { at: NOW + 1 }],
  ])('the second person is refused with %s', (code, over) => {
    const r = decide([ask('alice'), ask('bob', over)]);
    expect(r.allowed).toBe(false);
    expect(r.reason.code).toBe(code);
    expect(r.reason.message).toMatch(/^bob/);
    expect(r.refused).toHaveLength(1);
    expect(r.refused[0]).toMatchObject({ person: 'bob', reason: { code } });
    expect(r.participants).toEqual(['alice']);
  });

  it('the same person under two identities is one person', () => {
    const r = decide([ask('bob'), ask('BOB@example.com', { at: NOW - 1000 })]);
    expect(r.allowed).toBe(false);
    expect(r.reason.code).toBe('one_person');
    expect(r.participants).toEqual(['BOB@example.com']);
  });

  it('nobody asking is refused as one_person', () => {
    expect(decide([]).reason).toEqual({ code: 'one_person', message: 'break-glass needs two distinct people; nobody has asked' });
  });

  it('refuses flags that are not booleans', () => {
    const bad = { ...ask('bob'), hasPermission: 'false' } as unknown as BreakGlassRequest;
    expect(() => decide([ask('alice'), bad])).toThrow(ValidationError);
  });

  it('allowed only with two distinct valid people (fast-check)', () => {
    const world: Record<string, string> = { alice: 'alice', 'alice@example.com': 'alice', bob: 'bob', 'bob@example.com': 'bob', carol: 'carol' };
    const arb: fc.Arbitrary<BreakGlassRequest> = fc.record({
      person: fc.constantFrom(...Object.keys(world)),
      justification: fc.constantFrom('', 'now!', 'database failover stuck'),
      at: fc.integer({ min: NOW - 2 * TTL, max: NOW + 1000 }),
      mfaFresh: fc.boolean(),
      hasPermission: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(arb, { maxLength: 6 }), (requests) => {
        const valid = requests.filter((r) => r.hasPermission && r.mfaFresh && r.justification.length >= 10 && r.at <= NOW && NOW - r.at < TTL);
        const distinct = new Set(valid.map((r) => world[r.person]));
        const d = decide(requests);
        expect(d.allowed).toBe(distinct.size >= 2);
        expect(new Set(d.participants.map((p) => world[p]))).toEqual(distinct);
        if (d.allowed) expect(d.validUntil).toBeGreaterThan(NOW);
      }),
      { numRuns: 500 },
    );
  });
});
