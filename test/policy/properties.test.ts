import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ACTIONS, BUILTIN_ROLES, PUBLIC_ACTIONS, PolicyEngine, SENSITIVE_ACTIONS, defaultPolicies } from '../../src/policy/index.js';
import type { AuthzContext, AuthzRequest, PrincipalRef, ResourceRef } from '../../src/policy/index.js';

const engine = PolicyEngine.load(defaultPolicies());
const PUBLIC: ReadonlySet<string> = new Set(PUBLIC_ACTIONS);
const SENSITIVE: ReadonlySet<string> = new Set(SENSITIVE_ACTIONS);

// Role names include look-alikes of admin: only the exact Role::"admin" may grant admin rights.
const role = fc.constantFrom(...BUILTIN_ROLES, 'Admin', 'admin ', 'ci', 'administrators', '');
const id = fc.oneof(fc.constantFrom('alice', 'bob', 'anonymous', 'admin'), fc.string({ maxLength: 12 }));
const principal: fc.Arbitrary<PrincipalRef> = fc.record({
  type: fc.constantFrom('User', 'ServiceAccount', 'Workload', 'Anonymous'),
  id,
  roles: fc.option(fc.uniqueArray(role, { maxLength: 4 }), { nil: undefined }),
  attrs: fc.option(fc.constant({ pipeline: 'p', run: 'r', step: 's' }), { nil: undefined }),
}).map((p) => Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) as unknown as PrincipalRef);
const resource: fc.Arbitrary<ResourceRef> = fc.record({ type: fc.constantFrom('Resource', 'User', 'ServiceAccount'), id });
const context: fc.Arbitrary<AuthzContext> = fc.record({
  authMethod: fc.constantFrom('anonymous', 'password', 'sso', 'session', 'service-token', 'workload-token'),
  mfa: fc.boolean(),
  mfaAgeSeconds: fc.oneof(fc.integer({ min: 0, max: 600 }), fc.constant(2147483647), fc.integer({ min: -10, max: 2147483647 })),
  sourceAddress: fc.constantFrom('127.0.0.1', '::1', '203.0.113.7'),
});
const request: fc.Arbitrary<AuthzRequest> = fc.record({ principal, action: fc.constantFrom(...ACTIONS), resource, context });

describe('authorization properties (fast-check)', () => {
  it('never allows an Anonymous principal anything outside the public actions', () => {
    fc.assert(
      fc.property(request, (r) => {
        const anon: AuthzRequest = { ...r, principal: { ...r.principal, type: 'Anonymous' } };
        const d = engine.authorize(anon);
        if (d.allowed) expect(PUBLIC.has(anon.action), anon.action).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('never allows policies.update to a principal without the admin role', () => {
    fc.assert(
      fc.property(request, (r) => {
        const ask: AuthzRequest = { ...r, action: 'policies.update', resource: { type: 'Resource', id: 'policies' } };
        const d = engine.authorize(ask);
        if (d.allowed) {
          expect(ask.principal.roles ?? []).toContain('admin');
          expect(['User', 'ServiceAccount']).toContain(ask.principal.type);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('never allows a sensitive action without an MFA proof of at most 300 s', () => {
    fc.assert(
      fc.property(request, fc.constantFrom(...SENSITIVE_ACTIONS), (r, action) => {
        const d = engine.authorize({ ...r, action });
        if (d.allowed) {
          expect(SENSITIVE.has(action)).toBe(true);
          expect(r.context.mfa).toBe(true);
          expect(r.context.mfaAgeSeconds).toBeLessThanOrEqual(300);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('every decision is well formed: allowed decisions name a permit and carry no errors', () => {
    fc.assert(
      fc.property(request, (r) => {
        const d = engine.authorize(r);
        if (d.allowed) {
          expect(d.errors).toEqual([]);
          expect(d.policies.length).toBeGreaterThan(0);
          for (const p of d.policies) expect(['mfa-required', 'step-up-required', 'no-self-role-change']).not.toContain(p);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
