/**
 * Segregation-of-duties exceptions as named Cedar policies: deny by default, only a permit that
 * names `deployments.sod-exception` lifts a conflict, a forbid still wins, and the policy used
 * is reported by its @id for the record. Fed to the delivery core, which writes it down.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { evaluateApprovals } from '../../src/delivery/index.js';
import type { Approval, SodException } from '../../src/delivery/index.js';
import { PolicyEngine, defaultPolicies, defaultPolicyDir, parsePolicyFiles, sodExceptionsFor } from '../../src/policy/index.js';
import type { SodExceptionFacts } from '../../src/policy/index.js';

const RENOVATE = 'renovate[bot]@users.noreply.github.com';
const DEPENDABOT = '49699333+dependabot[bot]@users.noreply.github.com';

/** The shipped example, uncommented (sod-exceptions.cedar). */
function shippedExample(): string {
  const text = readFileSync(join(defaultPolicyDir(), 'sod-exceptions.cedar'), 'utf8');
  const start = text.indexOf('// @id("sod-dependency-bumps")');
  const end = text.indexOf('// };', start) + '// };'.length;
  expect(start).toBeGreaterThan(0);
  return text
    .slice(start, end)
    .split('\n')
    .map((l) => l.replace(/^\/\/ ?/, ''))
    .join('\n');
}

const BOTS_AUTHOR = `@id("bots-author")
permit (principal, action == Airlock::Action::"deployments.sod-exception", resource is Airlock::Environment)
when { context.code == "author_in_range" && ["${RENOVATE}", "${DEPENDABOT}"].containsAll(context.authors) };`;

const engineWith = (...texts: string[]): PolicyEngine => PolicyEngine.load({ ...defaultPolicies(), ...parsePolicyFiles(texts.map((text, i) => ({ file: `extra-${i}.cedar`, text }))) });

const FACTS: SodExceptionFacts = {
  project: 'shop',
  environment: 'production',
  requester: 'alice',
  triggeredBy: 'alice',
  authors: [RENOVATE],
  committers: ['bob@example.com'],
  approvers: [{ id: 'bob', roles: ['release-manager'] }],
};

const CODES = ['self_approval', 'triggered_run', 'author_in_range', 'committer_in_range', 'last_config_editor'] as const;

describe('segregation-of-duties exceptions from Cedar', () => {
  it('ships none active: with the default set nothing applies, not even for an admin (whose role permits every action)', () => {
    const engine = PolicyEngine.load(defaultPolicies());
    expect(engine.sodExceptionPolicies()).toEqual([]);
    expect(sodExceptionsFor(engine, { ...FACTS, approvers: [{ id: 'root', roles: ['admin'] }] })).toEqual([]);
    // role-admin allows the decision itself, which is why an allow alone is not an exception.
    const d = engine.authorizeSodException({ approver: { id: 'root', roles: ['admin'] }, environment: { project: 'shop', name: 'production' }, context: { code: 'author_in_range', requester: 'alice', triggeredBy: 'alice', authors: [], committers: [], lastConfigEditor: '' } });
    expect(d).toEqual({ allowed: true, policies: ['role-admin'], errors: [] });
    // And a release manager is refused by default.
    expect(engine.authorizeSodException({ approver: { id: 'bob', roles: ['release-manager'] }, environment: { project: 'shop', name: 'production' }, context: { code: 'author_in_range', requester: 'alice', triggeredBy: 'alice', authors: [RENOVATE], committers: [], lastConfigEditor: '' } })).toEqual({ allowed: false, policies: [], errors: [] });
  });

  it('a named policy lifts only its code, only in its context, and is reported by its @id', () => {
    const [bots] = sodExceptionsFor(engineWith(BOTS_AUTHOR), FACTS);
    expect(bots?.policyId).toBe('bots-author');
    expect(bots?.appliesTo('bob', 'author_in_range')).toBe(true);
    for (const code of CODES.filter((c) => c !== 'author_in_range')) expect(bots?.appliesTo('bob', code), code).toBe(false);
    // A human author in the range: the condition fails.
    const [mixed] = sodExceptionsFor(engineWith(BOTS_AUTHOR), { ...FACTS, authors: [RENOVATE, 'mallory@example.com'] });
    expect(mixed?.appliesTo('bob', 'author_in_range')).toBe(false);
    // Two bots are still all bots.
    expect(sodExceptionsFor(engineWith(BOTS_AUTHOR), { ...FACTS, authors: [RENOVATE, DEPENDABOT] })[0]?.appliesTo('bob', 'author_in_range')).toBe(true);
  });

  it('the shipped example, enabled: a release manager who committed bot-authored changes may approve them', () => {
    const engine = engineWith(shippedExample());
    expect(engine.sodExceptionPolicies()).toEqual(['sod-dependency-bumps']);
    const [bumps] = sodExceptionsFor(engine, FACTS);
    expect(bumps?.policyId).toBe('sod-dependency-bumps');
    expect(bumps?.appliesTo('bob', 'committer_in_range')).toBe(true);
    expect(bumps?.appliesTo('bob', 'author_in_range')).toBe(false);
    expect(bumps?.appliesTo('bob', 'self_approval')).toBe(false);
    // Not without the role: an approver with no recorded roles, or a developer.
    expect(bumps?.appliesTo('carol', 'committer_in_range')).toBe(false);
    expect(sodExceptionsFor(engine, { ...FACTS, approvers: [{ id: 'bob', roles: ['developer'] }] })[0]?.appliesTo('bob', 'committer_in_range')).toBe(false);
    // Two approvals by bob under different roles: each must be covered.
    expect(sodExceptionsFor(engine, { ...FACTS, approvers: [{ id: 'bob', roles: ['release-manager'] }, { id: 'bob', roles: [] }] })[0]?.appliesTo('bob', 'committer_in_range')).toBe(false);
    expect(sodExceptionsFor(engine, { ...FACTS, authors: ['mallory@example.com'] })[0]?.appliesTo('bob', 'committer_in_range')).toBe(false);
  });

  it('a forbid still wins over an exception', () => {
    const noProd = `@id("no-exceptions-in-production")
forbid (principal, action == Airlock::Action::"deployments.sod-exception", resource)
when { context.environment == "production" };`;
    const engine = engineWith(BOTS_AUTHOR, noProd);
    expect(sodExceptionsFor(engine, FACTS)[0]?.appliesTo('bob', 'author_in_range')).toBe(false);
    expect(sodExceptionsFor(engine, { ...FACTS, environment: 'staging' })[0]?.appliesTo('bob', 'author_in_range')).toBe(true);
  });

  it('a blanket permit is not an exception; a permit that lifts everything is, but only under its own name', () => {
    const blanket = '@id("everyone-everything") permit (principal, action, resource);';
    expect(sodExceptionsFor(engineWith(blanket), FACTS)).toEqual([]);
    // With an exception present but its condition false, an admin's allowed decision (by
    // role-admin alone) does not borrow the exception's name.
    const [bots] = sodExceptionsFor(engineWith(BOTS_AUTHOR), { ...FACTS, authors: ['mallory@example.com'], approvers: [{ id: 'root', roles: ['admin'] }] });
    expect(bots?.appliesTo('root', 'author_in_range')).toBe(false);
    // Documented behaviour: a permit with no condition lifts every conflict of everyone; it
    // cannot be anonymous (every policy needs an @id), so each use is recorded under its name.
    const liftAll = '@id("lift-all") permit (principal, action == Airlock::Action::"deployments.sod-exception", resource);';
    const [all] = sodExceptionsFor(engineWith(liftAll), FACTS);
    expect(all?.policyId).toBe('lift-all');
    for (const code of CODES) expect(all?.appliesTo('anyone', code), code).toBe(true);
    expect(() => PolicyEngine.load({ ...defaultPolicies(), 'lift-all': 'permit (principal, action == Airlock::Action::"deployments.sod-exception", resource);' })).toThrow(/@id\("lift-all"\)/);
    // Listed with other actions, it still names this one explicitly.
    const listed = '@id("listed") permit (principal, action in [Airlock::Action::"runs.read", Airlock::Action::"deployments.sod-exception"], resource);';
    expect(engineWith(listed).sodExceptionPolicies()).toEqual(['listed']);
  });

  it('refuses a policy that reads what the decision context does not have', () => {
    const bad = '@id("bad") permit (principal, action == Airlock::Action::"deployments.sod-exception", resource) when { context.branch == "main" };';
    expect(() => engineWith(bad)).toThrow(/bad/);
  });

  it('feeds the delivery core, which records the policy used', () => {
    const at = Date.now();
    const approval: Approval = { approver: 'bob', decision: 'approve', justification: 'checked the dependency bump', bindingDigest: `sha256:${'a'.repeat(64)}`, at, roles: ['release-manager'] };
    const evaluate = (exceptions: readonly SodException[], authors: string[]) =>
      evaluateApprovals({
        request: { requester: 'alice', triggeredBy: 'alice', authors, committers: ['bob'], bindingDigest: approval.bindingDigest },
        rules: { required: 1, roles: ['release-manager'], ownersRequired: false, owners: [], validForMs: 3_600_000, justificationRequired: true },
        approvals: [approval],
        now: at,
        exceptions,
      });
    const engine = engineWith(shippedExample());
    const ok = evaluate(sodExceptionsFor(engine, { ...FACTS, authors: [RENOVATE], committers: ['bob'] }), [RENOVATE]);
    expect(ok.satisfied).toBe(true);
    expect(ok.exceptionsUsed).toEqual([{ policyId: 'sod-dependency-bumps', approver: 'bob', code: 'committer_in_range' }]);
    const refused = evaluate(sodExceptionsFor(engine, { ...FACTS, authors: ['mallory@example.com'], committers: ['bob'] }), ['mallory@example.com']);
    expect(refused.satisfied).toBe(false);
    expect(refused.refused.map((r) => r.reason.code)).toEqual(['committer_in_range']);
    // The default set: nothing lifted.
    expect(evaluate(sodExceptionsFor(PolicyEngine.load(defaultPolicies()), FACTS), [RENOVATE]).refused.map((r) => r.reason.code)).toEqual(['committer_in_range']);
  });
});
