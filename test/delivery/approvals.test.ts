import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { evaluateApprovals } from '../../src/delivery/approvals.js';
import type { Approval, ApprovalRequest, ApprovalRules, SodCode, SodException } from '../../src/delivery/approvals.js';
import { ValidationError } from '../../src/errors/index.js';
import { approval, DIGEST, hex, HOUR, NOW, people, request, rules } from './fixtures.js';

const evaluate = (approvals: Approval[], over: { rules?: Partial<ApprovalRules>; request?: Partial<ApprovalRequest>; exceptions?: SodException[] } = {}) =>
  evaluateApprovals({
    request: { ...request, ...over.request },
    rules: { ...rules, ...over.rules },
    approvals,
    now: NOW,
    people,
    ...(over.exceptions === undefined ? {} : { exceptions: over.exceptions }),
  });

const codes = (r: ReturnType<typeof evaluate>) => r.refused.map((x) => x.reason.code);

describe('segregation of duties', () => {
  it.each<[string, SodCode, Partial<ApprovalRequest>]>([
    ['bob', 'self_approval', { requester: 'bob' }],
    ['bob', 'triggered_run', { triggeredBy: 'bob@example.com' }],
    ['bob', 'author_in_range', { authors: ['someone@example.com', 'Bob <BOB@example.com>'] }],
    ['dave', 'committer_in_range', {}],
    ['erin', 'last_config_editor', {}],
  ])('refuses %s with %s', (who, code, req) => {
    const r = evaluate([approval(who)], { request: req });
    expect(r.satisfied).toBe(false);
    expect(codes(r)).toEqual([code]);
    expect(r.refused[0]?.reason.message).toMatch(new RegExp(`^${who} `));
  });

  it('matches identities case-insensitively and through the people directory', () => {
    expect(codes(evaluate([approval('ALICE')]))).toEqual(['self_approval']);
    expect(codes(evaluate([approval('Alice Liddell')]))).toEqual(['self_approval']);
  });

  it('reports the first conflict when an approver has several', () => {
    // alice requested, triggered and authored.
    const r = evaluate([approval('alice')]);
    expect(codes(r)).toEqual(['self_approval']);
  });

  it('an identity claimed by two people merges them (fail closed)', () => {
    const dir = [...people, { id: 'frank', identities: ['shared@example.com'] }, { id: 'grace', identities: ['shared@example.com'] }];
    const r = evaluateApprovals({ request: { ...request, authors: ['frank'] }, rules, approvals: [approval('grace')], now: NOW, people: dir });
    expect(codes(r)).toEqual(['author_in_range']);
  });

  it('a named exception lifts a conflict and is returned for the record', () => {
    // Dependency bump: a bot authored it, bob merged and triggered the run.
    const exceptions: SodException[] = [{ policyId: 'dependency-bumps', appliesTo: (who, code) => who === 'bob' && code === 'triggered_run' }];
    const r = evaluate([approval('bob')], { request: { triggeredBy: 'bob', authors: ['renovate[bot]'] }, exceptions });
    expect(r.satisfied).toBe(true);
    expect(r.exceptionsUsed).toEqual([{ policyId: 'dependency-bumps', approver: 'bob', code: 'triggered_run' }]);
    expect(r.counted[0]?.exceptions).toEqual(r.exceptionsUsed);
  });

  it('an exception must cover every conflict of the approver', () => {
    const exceptions: SodException[] = [{ policyId: 'dependency-bumps', appliesTo: (_who, code) => code === 'triggered_run' }];
    const r = evaluate([approval('bob')], { request: { triggeredBy: 'bob', committers: ['bob'] }, exceptions });
    expect(r.satisfied).toBe(false);
    expect(codes(r)).toEqual(['committer_in_range']);
    expect(r.exceptionsUsed).toEqual([]);
  });

  it('an exception that does not apply changes nothing', () => {
    const r = evaluate([approval('dave')], { exceptions: [{ policyId: 'bots-only', appliesTo: (who) => who.endsWith('[bot]') }] });
    expect(codes(r)).toEqual(['committer_in_range']);
  });

  it('exceptions never lift expiry, binding, role or justification refusals', () => {
    const always: SodException[] = [{ policyId: 'anything-goes', appliesTo: () => true }];
    const r = evaluate(
      [
        approval('bob', { at: NOW - 5 * HOUR }),
        approval('carol', { bindingDigest: `sha256:${hex('f')}` }),
        approval('frank', { roles: ['developer'] }),
        approval('grace', { justification: 'ok' }),
      ],
      { exceptions: always },
    );
    expect(r.satisfied).toBe(false);
    expect(codes(r)).toEqual(['expired', 'wrong_binding', 'role_not_allowed', 'no_justification']);
  });
});

describe('eligibility', () => {
  it('refuses an approver without an allowed role; no roles declared means no restriction', () => {
    expect(codes(evaluate([approval('bob', { roles: ['developer'] })]))).toEqual(['role_not_allowed']);
    expect(evaluate([approval('bob', { roles: [] })], { rules: { roles: [] } }).satisfied).toBe(true);
  });

  it('requires a justification of at least 10 characters after trimming', () => {
    expect(codes(evaluate([approval('bob', { justification: '' })]))).toEqual(['no_justification']);
    expect(codes(evaluate([approval('bob', { justification: '   short!!   ' })]))).toEqual(['no_justification']);
    expect(evaluate([approval('bob', { justification: ' 10 chars!! ' })]).satisfied).toBe(true);
    expect(evaluate([approval('bob', { justification: '' })], { rules: { justificationRequired: false } }).satisfied).toBe(true);
  });

  it('refuses an approval dated after now', () => {
    expect(codes(evaluate([approval('bob', { at: NOW + 1 })]))).toEqual(['future_dated']);
  });

  it('an approval is valid for [at, at + validFor)', () => {
    expect(evaluate([approval('bob', { at: NOW })]).satisfied).toBe(true);
    expect(evaluate([approval('bob', { at: NOW - 4 * HOUR + 1 })]).satisfied).toBe(true);
    expect(codes(evaluate([approval('bob', { at: NOW - 4 * HOUR })]))).toEqual(['expired']);
  });
});

describe('denies', () => {
  it('a deny from an eligible approver blocks and is named', () => {
    const r = evaluate([approval('carol'), approval('bob', { decision: 'deny', justification: 'not during the migration' })]);
    expect(r.satisfied).toBe(false);
    expect(r.denials.map((d) => d.approver)).toEqual(['bob']);
    expect(r.missing).toBe('denied by bob');
  });

  it('a deny needs no justification to block', () => {
    const r = evaluate([approval('carol'), approval('bob', { decision: 'deny', justification: '' })]);
    expect(r.satisfied).toBe(false);
    expect(r.denials).toHaveLength(1);
  });

  it('a deny from an ineligible person, an expired deny or one for another binding does not block', () => {
    const r = evaluate([
      approval('carol'),
      approval('alice', { decision: 'deny' }),
      approval('bob', { decision: 'deny', at: NOW - 5 * HOUR }),
      approval('frank', { decision: 'deny', bindingDigest: `sha256:${hex('e')}` }),
    ]);
    expect(r.satisfied).toBe(true);
    expect(codes(r)).toEqual(['self_approval', 'expired', 'wrong_binding']);
  });

  it('a deny blocks even if the same person approved later', () => {
    const r = evaluate([approval('bob', { decision: 'deny', at: NOW - 2 * HOUR }), approval('bob', { at: NOW - HOUR })]);
    expect(r.satisfied).toBe(false);
    expect(r.missing).toContain('denied by bob');
  });
});

describe('quorum and owners', () => {
  it('counts distinct people and reports how many are missing', () => {
    const r = evaluate([approval('bob')], { rules: { required: 3 } });
    expect(r.satisfied).toBe(false);
    expect(r.missing).toBe('2 more approvals from distinct eligible people holding one of the roles release-manager (1 of 3)');
  });

  it('needs an owner among the counted approvers when owners are required', () => {
    const ownersRules = { required: 2, ownersRequired: true };
    const noOwner = evaluate([approval('frank'), approval('grace')], { rules: ownersRules });
    expect(noOwner.satisfied).toBe(false);
    expect(noOwner.missing).toBe('an approval from an owner (one of bob, carol)');
    const withOwner = evaluate([approval('frank'), approval('carol@example.com')], { rules: ownersRules });
    expect(withOwner.satisfied).toBe(true);
    expect(withOwner.counted.find((c) => c.approver === 'carol@example.com')?.owner).toBe(true);
  });

  it('owners required but none declared can never be satisfied', () => {
    const r = evaluate([approval('bob')], { rules: { ownersRequired: true, owners: [] } });
    expect(r.satisfied).toBe(false);
    expect(r.missing).toContain('declares no owners');
  });

  it('validUntil is when the quorum lapses', () => {
    const r = evaluate([approval('bob', { at: NOW - 3 * HOUR }), approval('carol', { at: NOW - HOUR }), approval('frank', { at: NOW - 2 * HOUR })], {
      rules: { required: 2 },
    });
    // The second-newest approval (frank, 2h old) lapses in 2h.
    expect(r.validUntil).toBe(NOW + 2 * HOUR);
    const owned = evaluate([approval('bob', { at: NOW - 3 * HOUR }), approval('frank', { at: NOW - HOUR })], { rules: { required: 1, ownersRequired: true } });
    expect(owned.validUntil).toBe(NOW + HOUR);
    expect(evaluate([approval('bob', { at: NOW - 4 * HOUR })]).validUntil).toBeUndefined();
  });

  it('counts the most recent approval of a person', () => {
    const r = evaluate([approval('bob', { at: NOW - 3 * HOUR, justification: 'first look was fine' }), approval('bob', { at: NOW - HOUR })]);
    expect(r.counted).toHaveLength(1);
    expect(r.counted[0]?.at).toBe(NOW - HOUR);
    expect(r.refused[0]).toMatchObject({ approver: 'bob', at: NOW - 3 * HOUR, reason: { code: 'duplicate_approver' } });
  });
});

describe('input validation', () => {
  it('names every bad field', () => {
    let err: unknown;
    try {
      evaluateApprovals({
        request: { ...request, bindingDigest: 'md5:abc', requester: '' },
        rules: { ...rules, required: -1, validForMs: 0 },
        approvals: [{ ...approval('bob'), at: Number.NaN, decision: 'maybe' as 'approve' }],
        now: NOW,
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).issues.map((i) => i.path).sort()).toEqual(
      ['approvals[0].at', 'approvals[0].decision', 'request.bindingDigest', 'request.requester', 'rules.required', 'rules.validForMs'].sort(),
    );
  });
});

describe('properties (fast-check)', () => {
  // A small world: persons with aliases; the change's stakeholders are fixed below.
  const world: Record<string, string> = {
    alice: 'alice', 'alice@example.com': 'alice',
    bob: 'bob', 'bob@example.com': 'bob',
    carol: 'carol', 'carol@example.com': 'carol',
    dave: 'dave', 'dave@example.com': 'dave',
    erin: 'erin', 'erin@example.com': 'erin',
    frank: 'frank', grace: 'grace', heidi: 'heidi',
  };
  const stakeholders = new Set(['alice', 'dave', 'erin']);
  const owners = new Set(['bob', 'carol']);
  const OTHER = `sha256:${hex('9')}`;
  const arbApproval: fc.Arbitrary<Approval> = fc.record({
    approver: fc.constantFrom(...Object.keys(world)),
    decision: fc.constantFrom<'approve' | 'deny'>('approve', 'approve', 'approve', 'deny'),
    justification: fc.constantFrom('', 'short', 'a proper justification'),
    bindingDigest: fc.constantFrom(DIGEST, DIGEST, OTHER),
    at: fc.integer({ min: NOW - 6 * HOUR, max: NOW + HOUR }),
    roles: fc.subarray(['release-manager', 'developer']),
  });
  const arbRules = fc.record({
    required: fc.integer({ min: 0, max: 4 }),
    ownersRequired: fc.boolean(),
    justificationRequired: fc.boolean(),
  });

  /** Independent oracle: eligibility per approval, straight from the rules. */
  function eligible(a: Approval, r: ApprovalRules): boolean {
    const person = world[a.approver]!;
    return (
      a.bindingDigest === DIGEST &&
      a.at <= NOW &&
      NOW - a.at < r.validForMs &&
      !stakeholders.has(person) &&
      a.roles.includes('release-manager') &&
      (a.decision === 'deny' || !r.justificationRequired || a.justification.trim().length >= 10)
    );
  }

  it('satisfied exactly when enough distinct eligible people approve, an owner among them if required, and no eligible deny', () => {
    fc.assert(
      fc.property(fc.array(arbApproval, { maxLength: 12 }), arbRules, (approvals, over) => {
        const r0: ApprovalRules = { ...rules, ...over, owners: [...owners] };
        const result = evaluateApprovals({ request, rules: r0, approvals, now: NOW, people });
        const ok = approvals.filter((a) => eligible(a, r0));
        const approvers = new Set(ok.filter((a) => a.decision === 'approve').map((a) => world[a.approver]!));
        const denied = ok.some((a) => a.decision === 'deny');
        const expected = !denied && approvers.size >= r0.required && (!r0.ownersRequired || [...approvers].some((p) => owners.has(p)));
        expect(result.satisfied).toBe(expected);
        // Quorum is never reached with fewer distinct eligible approvers than required.
        if (result.satisfied) expect(approvers.size).toBeGreaterThanOrEqual(r0.required);
        // Counted approvers are distinct people, none of them a stakeholder, all bound and fresh.
        const countedPeople = result.counted.map((c) => world[c.approver]!);
        expect(new Set(countedPeople).size).toBe(countedPeople.length);
        expect(new Set(countedPeople)).toEqual(approvers);
        for (const c of result.counted) expect(c.expiresAt).toBeGreaterThan(NOW);
        // Every input is accounted for exactly once.
        expect(result.counted.length + result.denials.length + result.refused.length).toBe(approvals.length);
      }),
      { numRuns: 500 },
    );
  });

  it('the order of approvals does not change the outcome', () => {
    fc.assert(
      fc.property(
        fc.array(arbApproval, { maxLength: 10 }).chain((a) => fc.tuple(fc.constant(a), fc.shuffledSubarray(a, { minLength: a.length, maxLength: a.length }))),
        arbRules,
        ([a, b], over) => {
          const r0 = { ...rules, ...over };
          const x = evaluateApprovals({ request, rules: r0, approvals: a, now: NOW, people });
          const y = evaluateApprovals({ request, rules: r0, approvals: b, now: NOW, people });
          expect(y.satisfied).toBe(x.satisfied);
          expect(y.missing).toBe(x.missing);
          expect(new Set(y.counted.map((c) => world[c.approver]))).toEqual(new Set(x.counted.map((c) => world[c.approver])));
        },
      ),
    );
  });

  it('no approval from a stakeholder ever counts without an exception', () => {
    fc.assert(
      fc.property(fc.array(arbApproval, { maxLength: 12 }), (approvals) => {
        const result = evaluateApprovals({ request, rules: { ...rules, required: 0 }, approvals, now: NOW, people });
        for (const c of result.counted) expect(stakeholders.has(world[c.approver]!)).toBe(false);
      }),
    );
  });
});
