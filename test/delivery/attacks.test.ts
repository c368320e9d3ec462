/**
 * The attacks from the delivery issue that the decision core decides. Each is tried and must be
 * refused with its stable reason code; the honest counterpart next to it must pass, so a refusal
 * cannot come from a broken fixture.
 */
import { describe, expect, it } from 'vitest';
import { evaluateApprovals } from '../../src/delivery/approvals.js';
import { bindingDigest } from '../../src/delivery/binding.js';
import { evaluateBreakGlass } from '../../src/delivery/breakglass.js';
import { deployAllowed } from '../../src/delivery/windows.js';
import { approval, binding, HOUR, NOW, people, request, rules, sha } from './fixtures.js';

describe('attacks that must fail', () => {
  it('self-approval: the requester approving their own deployment', () => {
    const r = evaluateApprovals({ request, rules, approvals: [approval('alice')], now: NOW, people });
    expect(r.satisfied).toBe(false);
    expect(r.counted).toEqual([]);
    expect(r.refused).toHaveLength(1);
    expect(r.refused[0]).toMatchObject({ approver: 'alice', reason: { code: 'self_approval' } });
    expect(evaluateApprovals({ request, rules, approvals: [approval('bob')], now: NOW, people }).satisfied).toBe(true);
  });

  it('approval by an author in the range (known by another identity)', () => {
    // Mallory wrote a commit under her email, then approves under her username.
    const req = { ...request, authors: [...request.authors, 'Mallory <mallory@example.com>'] };
    const dir = [...people, { id: 'mallory', identities: ['mallory@example.com'] }];
    const r = evaluateApprovals({ request: req, rules, approvals: [approval('mallory')], now: NOW, people: dir });
    expect(r.satisfied).toBe(false);
    expect(r.refused[0]?.reason.code).toBe('author_in_range');
    expect(r.refused[0]?.reason.message).toContain('mallory');
  });

  it('one person approving twice (under two identities) to reach a quorum of two', () => {
    const two = { ...rules, required: 2 };
    const approvals = [approval('bob', { at: NOW - 2 * HOUR }), approval('bob@example.com', { at: NOW - HOUR })];
    const r = evaluateApprovals({ request, rules: two, approvals, now: NOW, people });
    expect(r.satisfied).toBe(false);
    expect(r.counted.map((c) => c.approver)).toEqual(['bob@example.com']);
    expect(r.refused).toHaveLength(1);
    expect(r.refused[0]).toMatchObject({ approver: 'bob', reason: { code: 'duplicate_approver' } });
    expect(r.missing).toContain('1 more approval');
    const honest = evaluateApprovals({ request, rules: two, approvals: [approval('bob'), approval('carol')], now: NOW, people });
    expect(honest.satisfied).toBe(true);
  });

  it('an expired approval', () => {
    const stale = approval('bob', { at: NOW - rules.validForMs });
    const r = evaluateApprovals({ request, rules, approvals: [stale], now: NOW, people });
    expect(r.satisfied).toBe(false);
    expect(r.refused[0]?.reason.code).toBe('expired');
    const fresh = approval('bob', { at: NOW - rules.validForMs + 1 });
    expect(evaluateApprovals({ request, rules, approvals: [fresh], now: NOW, people }).satisfied).toBe(true);
  });

  it('an approval replayed for a different digest set', () => {
    // Bob approved run 42; a new commit was pushed and the request now ships something else.
    const changed = bindingDigest({ ...binding, commitRange: { from: sha('1'), to: sha('3') } });
    const r = evaluateApprovals({ request: { ...request, bindingDigest: changed }, rules, approvals: [approval('bob')], now: NOW, people });
    expect(r.satisfied).toBe(false);
    expect(r.refused[0]?.reason.code).toBe('wrong_binding');
    expect(r.refused[0]?.reason.message).toContain(changed);
  });

  it('a deploy during a freeze, even inside a change window', () => {
    const r = deployAllowed({
      windows: [{ cron: '0 9 * * 1-5', timezone: 'Europe/Berlin', durationMs: 8 * HOUR }],
      freezes: [],
      oneOffFreezes: [{ until: NOW + 24 * HOUR, reason: 'quarter-end close' }],
      now: NOW, // a Monday, 12:00 in Berlin
    });
    expect(r.allowed).toBe(false);
    expect(r.reason.code).toBe('frozen');
    expect(r.reason.message).toContain('quarter-end close');
    expect(r.frozenUntil).toBe(NOW + 24 * HOUR);
    const open = deployAllowed({ windows: [{ cron: '0 9 * * 1-5', timezone: 'Europe/Berlin', durationMs: 8 * HOUR }], freezes: [], oneOffFreezes: [], now: NOW });
    expect(open.allowed).toBe(true);
  });

  it('break-glass by one person (asking twice)', () => {
    const ask = { person: 'alice', justification: 'production is down, hotfix for INC-12', at: NOW - 60_000, mfaFresh: true, hasPermission: true };
    const r = evaluateBreakGlass({ requests: [ask, { ...ask, person: 'alice@example.com', at: NOW }], now: NOW, ttlMs: 15 * 60_000, people });
    expect(r.allowed).toBe(false);
    expect(r.reason.code).toBe('one_person');
    const ok = evaluateBreakGlass({ requests: [ask, { ...ask, person: 'bob' }], now: NOW, ttlMs: 15 * 60_000, people });
    expect(ok.allowed).toBe(true);
  });
});
