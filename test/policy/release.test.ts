/**
 * The shipped secret-release policies (policies/secrets-release.cedar), decided directly: what
 * a step may receive depends on the secret's scope, the stage's environment and the run's gate
 * state, and anything malformed refuses.
 */
import { describe, expect, it } from 'vitest';
import { PolicyEngine, defaultPolicies } from '../../src/policy/index.js';
import type { ReleaseAuthzRequest, ReleaseContext } from '../../src/policy/index.js';

const engine = PolicyEngine.load(defaultPolicies());
const CTX: ReleaseContext = { sourceAddress: '10.0.0.7', project: 'shop', pipeline: 'shop', stage: 'build', step: 'compile', environment: '', environmentProtected: false, branch: 'main', commit: 'c'.repeat(40), trigger: 'manual', approved: false };
const WORKLOAD = { id: 'run:r1:step:s1', pipeline: 'shop', run: 'r1', step: 'compile' };

function ask(secret: Partial<ReleaseAuthzRequest['secret']>, context: Partial<ReleaseContext> = {}) {
  return engine.authorizeRelease({ workload: WORKLOAD, secret: { id: 's-1', name: 'API_TOKEN', project: 'shop', environment: '', ...secret }, context: { ...CTX, ...context } });
}

describe('secret release policy', () => {
  it('releases a global or own-project secret to a step of that project', () => {
    expect(ask({ project: '' })).toEqual({ allowed: true, policies: ['secrets-release-declared'], errors: [] });
    expect(ask({})).toEqual({ allowed: true, policies: ['secrets-release-declared'], errors: [] });
  });

  it('refuses another project\'s secret (deny by default)', () => {
    expect(ask({ project: 'payroll' })).toEqual({ allowed: false, policies: [], errors: [] });
  });

  it('refuses an environment secret outside its environment, and in a protected one until approved', () => {
    expect(ask({ environment: 'production' }, { environment: 'staging' })).toMatchObject({ allowed: false, policies: ['protected-secrets-need-approval'] });
    expect(ask({ environment: 'production' }, { environment: 'production', environmentProtected: true, approved: false })).toMatchObject({ allowed: false, policies: ['protected-secrets-need-approval'] });
    expect(ask({ environment: 'production' }, { environment: 'production', environmentProtected: true, approved: true })).toMatchObject({ allowed: true, policies: ['secrets-release-declared'] });
    // An unprotected environment needs no approval.
    expect(ask({ environment: 'staging' }, { environment: 'staging' })).toMatchObject({ allowed: true });
  });

  it('fails closed on a malformed request', () => {
    const bad = engine.authorizeRelease({ workload: WORKLOAD, secret: { id: 's-1', name: 'X', project: 'shop', environment: '' }, context: { ...CTX, approved: 'yes' as unknown as boolean } });
    expect(bad.allowed).toBe(false);
    expect(bad.errors.length).toBeGreaterThan(0);
  });
});
