/**
 * Authorization figures: loading the default Cedar policy set, and the latency of one decision
 * (`PolicyEngine.authorize`) for a user holding two roles, over a realistic mix of actions
 * (allowed, denied by default, and refused by the MFA and step-up guardrails). For reference,
 * the same decisions with the policy set and schema parsed on every call, which is what the
 * preparsed engine avoids.
 */
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { ACTIONS, PolicyEngine, defaultPolicies, policySchemaText } from '../src/policy/index.js';
import type { AuthzContext, AuthzRequest } from '../src/policy/index.js';
import { QUICK, Samples, emit, now, progress, round } from './lib.js';

const DECISION_P99_GOAL_MS = 1;

/**
 * The i-th request: every action in turn, MFA fresh, stale or absent, resource a collection or a
 * user. `round` makes the source address unique per pass, so no request repeats one the engine
 * has memoised: the figure is the cost of a real Cedar evaluation.
 */
function requestAt(i: number, round = 0): AuthzRequest {
  const action = ACTIONS[i % ACTIONS.length] ?? 'runs.read';
  const contexts: AuthzContext[] = [
    { authMethod: 'session', mfa: true, mfaAgeSeconds: 42, sourceAddress: '10.0.0.7' },
    { authMethod: 'session', mfa: true, mfaAgeSeconds: 4000, sourceAddress: '10.0.0.7' },
    { authMethod: 'password', mfa: false, mfaAgeSeconds: 2147483647, sourceAddress: '10.0.0.7' },
  ];
  const base = contexts[i % 3] ?? contexts[0]!;
  const context = { ...base, sourceAddress: `10.${round}.${(i >> 8) & 255}.${i & 255}` };
  const resource = action.startsWith('users.') && i % 2 === 0 ? ({ type: 'User', id: `user-${i % 50}` } as const) : ({ type: 'Resource', id: action.split('.')[0] ?? 'system' } as const);
  return { principal: { type: 'User', id: `user-${i % 97}`, roles: ['developer', 'release-manager'] }, action, resource, context };
}

export async function benchAuthz(): Promise<void> {
  const n = QUICK ? 5_000 : 20_000;

  progress('authz: loading and validating the default policy set');
  const policies = defaultPolicies();
  PolicyEngine.load(policies); // the schema is parsed once per process: measure a later load
  const t0 = now();
  const engine = PolicyEngine.load(policies);
  const loadMs = now() - t0;
  emit({ bench: 'authz_policy_load', value: round(loadMs, 2), unit: 'ms', policies: Object.keys(policies).length, validation: 'strict' });

  progress(`authz: ${n} decisions with the preparsed policy set`);
  for (let i = 0; i < 2_000; i++) engine.authorize(requestAt(i, 1)); // warm-up (JIT)
  const samples = new Samples();
  let allowed = 0;
  const start = now();
  for (let i = 0; i < n; i++) {
    const req = requestAt(i, 2);
    const t = now();
    const d = engine.authorize(req);
    samples.push(now() - t);
    if (d.allowed) allowed++;
  }
  const elapsedS = (now() - start) / 1000;
  const s = samples.summary();
  emit({
    bench: 'authz_decision_p99',
    value: s.p99,
    unit: 'ms',
    p50: s.p50,
    p999: s.p999,
    max: s.max,
    mean: s.mean,
    n,
    decisionsPerS: Math.round(n / elapsedS),
    allowedFraction: round(allowed / n, 3),
    principal: 'User with 2 roles',
    api: 'statefulIsAuthorized (preparsed policies and schema)',
    goal: `p99 <= ${DECISION_P99_GOAL_MS} ms`,
    pass: s.p99 <= DECISION_P99_GOAL_MS,
  });

  // Reference: parse the policy text and schema on every call (what the engine avoids).
  const m = QUICK ? 500 : 2_000;
  progress(`authz: ${m} decisions parsing policies and schema per call (reference)`);
  const schema = policySchemaText();
  const staticPolicies = { ...policies };
  const unparsed = new Samples();
  for (let i = 0; i < m; i++) {
    const r = requestAt(i);
    const t = now();
    cedar.isAuthorized({
      principal: { type: 'Airlock::User', id: r.principal.id },
      action: { type: 'Airlock::Action', id: r.action },
      resource: { type: `Airlock::${r.resource.type}`, id: r.resource.id },
      context: { ...r.context },
      schema,
      validateRequest: true,
      policies: { staticPolicies },
      entities: [{ uid: { type: 'Airlock::User', id: r.principal.id }, attrs: {}, parents: (r.principal.roles ?? []).map((id) => ({ type: 'Airlock::Role', id })) }],
    });
    unparsed.push(now() - t);
  }
  const u = unparsed.summary();
  emit({ bench: 'authz_decision_unparsed_p99', value: u.p99, unit: 'ms', p50: u.p50, n: m, api: 'isAuthorized (policies and schema parsed per call)' });
  return Promise.resolve();
}
