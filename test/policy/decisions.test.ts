import { describe, expect, it } from 'vitest';
import { ACTIONS, BUILTIN_ROLES, PolicyEngine, ROLES_REQUIRING_MFA, defaultPolicies, parsePolicyFiles } from '../../src/policy/index.js';
import type { AuthzContext, AuthzRequest, PrincipalRef, ResourceRef } from '../../src/policy/index.js';

const engine = PolicyEngine.load(defaultPolicies());

const FRESH_MFA: AuthzContext = { authMethod: 'session', mfa: true, mfaAgeSeconds: 10, sourceAddress: '10.0.0.1' };
const NO_MFA: AuthzContext = { authMethod: 'password', mfa: false, mfaAgeSeconds: 2147483647, sourceAddress: '10.0.0.1' };
const ANON_CTX: AuthzContext = { authMethod: 'anonymous', mfa: false, mfaAgeSeconds: 2147483647, sourceAddress: '203.0.113.9' };

const user = (id: string, ...roles: string[]): PrincipalRef => ({ type: 'User', id, roles });
const anonymous: PrincipalRef = { type: 'Anonymous', id: 'anonymous' };
const collection = (action: string): ResourceRef => ({ type: 'Resource', id: action.split('.')[0] ?? action });

function req(principal: PrincipalRef, action: string, context: AuthzContext = FRESH_MFA, resource: ResourceRef = collection(action)): AuthzRequest {
  return { principal, action, resource, context };
}

function allowedActions(principal: PrincipalRef, context: AuthzContext = FRESH_MFA): string[] {
  return ACTIONS.filter((a) => engine.authorize(req(principal, a, context)).allowed).sort();
}

// Written out from the issue, not derived from the source: a drifting policy fails here.
const PUBLIC = ['system.health.read', 'auth.login', 'auth.setup', 'auth.token.exchange', 'auth.oidc.start', 'auth.oidc.callback', 'oidc.discovery.read', 'agents.register', 'keys.read'];
const SELF = ['auth.logout', 'auth.whoami', 'auth.stepup', 'audit.tree.read', 'audit.checkpoints.read', 'audit.proofs.read', 'audit.key.read'];
const ROLE_GRANTS: Record<string, string[]> = {
  developer: ['projects.read', 'pipelines.run', 'runs.read', 'runs.cancel', 'artifacts.read', 'deployments.read', 'deployments.request'],
  operator: ['projects.read', 'projects.create', 'pipelines.run', 'runs.read', 'runs.cancel', 'artifacts.read', 'artifacts.write', 'deployments.create', 'deployments.read', 'deployments.request', 'deployments.freeze', 'breakglass.use', 'incidents.read', 'incidents.update', 'audit.checkpoints.create', 'service-accounts.read', 'agents.tokens.create', 'agents.disable', 'agents.read'],
  'release-manager': ['runs.read', 'artifacts.read', 'deployments.read', 'deployments.request', 'deployments.create', 'deployments.approve', 'deployments.freeze', 'breakglass.use', 'incidents.read', 'incidents.update', 'audit.entries.read'],
  'security-auditor': ['audit.entries.read', 'users.read', 'roles.read', 'service-accounts.read', 'service-accounts.keys.read', 'policies.read', 'projects.read', 'runs.read', 'artifacts.read', 'agents.read', 'deployments.read', 'incidents.read'],
  admin: [...ACTIONS],
  // A machine role: a person holding it gains nothing (below: what a service account gets).
  runner: [],
};
const expected = (...lists: string[][]): string[] => [...new Set(lists.flat())].sort();

describe('role matrix (every action, with a fresh MFA proof)', () => {
  for (const role of BUILTIN_ROLES) {
    it(`${role}: exactly its grants plus public and self`, () => {
      expect(allowedActions(user('u1', role))).toEqual(expected(PUBLIC, SELF, ROLE_GRANTS[role] ?? []));
    });
  }

  it('deny by default: a user with no role gets only public and self', () => {
    expect(allowedActions(user('nobody'))).toEqual(expected(PUBLIC, SELF));
    const d = engine.authorize(req(user('nobody'), 'runs.read'));
    expect(d).toEqual({ allowed: false, policies: [], errors: [] });
  });

  it('a user with two roles gets the union', () => {
    expect(allowedActions(user('u2', 'developer', 'security-auditor'))).toEqual(expected(PUBLIC, SELF, ROLE_GRANTS.developer!, ROLE_GRANTS['security-auditor']!));
  });

  it('the security auditor never reads or reveals secrets, and changes nothing', () => {
    for (const a of ['secrets.read', 'secrets.reveal', 'secrets.write', 'policies.update', 'users.roles.update', 'audit.checkpoints.create']) {
      expect(engine.authorize(req(user('aud', 'security-auditor'), a)).allowed, a).toBe(false);
    }
  });

  it('developers cannot deploy, approve or touch identities', () => {
    for (const a of ['deployments.create', 'deployments.approve', 'users.create', 'service-accounts.keys.create', 'secrets.reveal', 'audit.entries.read']) {
      expect(engine.authorize(req(user('dev', 'developer'), a)).allowed, a).toBe(false);
    }
  });

  it('Anonymous gets exactly the public actions, whatever it claims', () => {
    expect(allowedActions(anonymous, ANON_CTX)).toEqual(expected(PUBLIC));
    expect(allowedActions(anonymous, FRESH_MFA)).toEqual(expected(PUBLIC));
    // Claiming a role: Anonymous can be in no Role, so the schema check refuses the request.
    const forged = engine.authorize(req({ ...anonymous, roles: ['admin'] }, 'policies.update'));
    expect(forged.allowed).toBe(false);
    expect(forged.errors.join()).toMatch(/Role|parent|conform/i);
    expect(engine.authorize(req({ ...anonymous, roles: ['admin'] }, 'system.health.read')).allowed).toBe(false);
  });

  it('a Workload gets only the public actions and fetching its secrets, and cannot borrow a role', () => {
    const wl: PrincipalRef = { type: 'Workload', id: 'w1', attrs: { pipeline: 'p', run: 'r', step: 's' } };
    expect(allowedActions(wl, { ...NO_MFA, authMethod: 'workload-token' })).toEqual(expected(PUBLIC, ['secrets.fetch']));
    const borrowed = engine.authorize(req({ ...wl, roles: ['admin'] }, 'runs.read'));
    expect(borrowed.allowed).toBe(false);
    expect(borrowed.errors.length).toBeGreaterThan(0);
    // Missing attributes are refused too (fail closed), not defaulted.
    expect(engine.authorize(req({ type: 'Workload', id: 'w2', attrs: { pipeline: 'p' } }, 'system.health.read')).allowed).toBe(false);
  });

  it('service accounts follow their roles, but cannot do privileged actions without MFA', () => {
    const sa: PrincipalRef = { type: 'ServiceAccount', id: 'ci', roles: ['operator'] };
    const token: AuthzContext = { authMethod: 'service-token', mfa: false, mfaAgeSeconds: 2147483647, sourceAddress: '10.1.1.1' };
    expect(engine.authorize(req(sa, 'pipelines.run', token)).allowed).toBe(true);
    expect(engine.authorize(req(sa, 'auth.whoami', token)).allowed).toBe(true);
    expect(engine.authorize(req(sa, 'deployments.create', token))).toMatchObject({ allowed: false, policies: ['mfa-required'] });
  });

  it('runner: a service account takes and reports jobs on Resource::"agents", nothing else; a user with the role gets nothing', () => {
    const agent: PrincipalRef = { type: 'ServiceAccount', id: 'agent-linux-1', roles: ['runner'] };
    const token: AuthzContext = { authMethod: 'service-token', mfa: false, mfaAgeSeconds: 2147483647, sourceAddress: '10.1.1.2' };
    expect(allowedActions(agent, token)).toEqual(expected(PUBLIC, SELF, ['agents.jobs.claim', 'agents.jobs.report']));
    expect(engine.authorize(req(agent, 'agents.jobs.claim', token))).toEqual({ allowed: true, policies: ['role-runner'], errors: [] });
    // Only on the agents collection, not on some other resource.
    expect(engine.authorize(req(agent, 'agents.jobs.claim', token, { type: 'Resource', id: 'runs' })).allowed).toBe(false);
    for (const a of ['agents.tokens.create', 'agents.read', 'runs.read', 'pipelines.run', 'artifacts.read', 'service-accounts.keys.create']) {
      expect(engine.authorize(req(agent, a, token)).allowed, a).toBe(false);
    }
    expect(engine.authorize(req(user('person', 'runner'), 'agents.jobs.claim')).allowed).toBe(false);
  });

  it('registration tokens need MFA, like every privileged action', () => {
    expect(engine.authorize(req(user('op', 'operator'), 'agents.tokens.create', NO_MFA)).policies).toEqual(['mfa-required']);
    expect(engine.authorize(req(user('op', 'operator'), 'agents.tokens.create')).policies).toEqual(['agents-operator']);
    expect(engine.authorize(req(user('dev', 'developer'), 'agents.tokens.create')).allowed).toBe(false);
    expect(engine.authorize(req(anonymous, 'agents.register', ANON_CTX)).allowed).toBe(true);
  });

  it('custom roles are plain Role entities granted by extra policies', () => {
    const ci = user('bot', 'ci-reader');
    expect(engine.authorize(req(ci, 'runs.read')).allowed).toBe(false);
    const extra = parsePolicyFiles([{ file: 'ci.cedar', text: '@id("role-ci-reader") permit (principal in Airlock::Role::"ci-reader", action in [Airlock::Action::"runs.read", Airlock::Action::"artifacts.read"], resource);' }]);
    const custom = PolicyEngine.load({ ...defaultPolicies(), ...extra });
    expect(custom.authorize(req(ci, 'runs.read'))).toEqual({ allowed: true, policies: ['role-ci-reader'], errors: [] });
    expect(custom.authorize(req(ci, 'runs.cancel')).allowed).toBe(false);
    expect(custom.digest).not.toBe(engine.digest);
  });
});

describe('MFA and step-up', () => {
  const admin = user('root', 'admin');

  it('a sensitive action 301 s after the MFA proof is refused by step-up-required; 10 s after, allowed', () => {
    const stale = engine.authorize(req(admin, 'policies.update', { ...FRESH_MFA, mfaAgeSeconds: 301 }));
    expect(stale).toEqual({ allowed: false, policies: ['step-up-required'], errors: [] });
    expect(engine.refusal(req(admin, 'policies.update', { ...FRESH_MFA, mfaAgeSeconds: 301 }))).toBe('STEP_UP_REQUIRED');
    expect(engine.authorize(req(admin, 'policies.update', { ...FRESH_MFA, mfaAgeSeconds: 300 })).allowed).toBe(true);
    expect(engine.authorize(req(admin, 'policies.update', { ...FRESH_MFA, mfaAgeSeconds: 10 }))).toEqual({ allowed: true, policies: ['role-admin'], errors: [] });
  });

  it('every sensitive action needs step-up, even for admin', () => {
    for (const a of ['policies.update', 'users.roles.update', 'users.email.update', 'roles.create', 'secrets.reveal', 'deployments.approve', 'breakglass.use']) {
      expect(engine.authorize(req(admin, a, { ...FRESH_MFA, mfaAgeSeconds: 3600 })).policies, a).toEqual(['step-up-required']);
    }
    // A merely privileged action is fine with an old MFA proof.
    expect(engine.authorize(req(admin, 'users.create', { ...FRESH_MFA, mfaAgeSeconds: 3600 })).allowed).toBe(true);
  });

  it('a privileged action without MFA is refused by mfa-required', () => {
    const d = engine.authorize(req(admin, 'users.create', NO_MFA));
    expect(d).toEqual({ allowed: false, policies: ['mfa-required'], errors: [] });
    expect(engine.refusal(req(admin, 'users.create', NO_MFA))).toBe('MFA_REQUIRED');
    // mfa=false with a (bogus) fresh age is still refused: the flag is what counts.
    expect(engine.authorize(req(admin, 'deployments.create', { ...NO_MFA, mfaAgeSeconds: 0 })).policies).toEqual(['mfa-required']);
    // Sensitive and no MFA at all: both guardrails decide.
    expect(engine.authorize(req(admin, 'policies.update', NO_MFA)).policies).toEqual(['mfa-required', 'step-up-required']);
  });

  it('refusal() asks for MFA only when MFA would help', () => {
    expect(engine.refusal(req(user('dev', 'developer'), 'policies.update', NO_MFA))).toBe('FORBIDDEN');
    expect(engine.refusal(req(user('rm', 'release-manager'), 'deployments.approve', NO_MFA))).toBe('MFA_REQUIRED');
    expect(engine.refusal(req(user('rm', 'release-manager'), 'deployments.approve', { ...FRESH_MFA, mfaAgeSeconds: 900 }))).toBe('STEP_UP_REQUIRED');
    expect(engine.refusal(req(user('rm', 'release-manager'), 'deployments.approve'))).toBeUndefined();
  });

  it('ROLES_REQUIRING_MFA matches what the default policies grant', () => {
    expect(engine.rolesRequiringMfa(BUILTIN_ROLES).sort()).toEqual([...ROLES_REQUIRING_MFA].sort());
    expect([...ROLES_REQUIRING_MFA].sort()).toEqual(['admin', 'operator', 'release-manager']);
    // A custom role granted a privileged action on one resource only still counts.
    const extra = parsePolicyFiles([
      { file: 'x.cedar', text: '@id("staging-deployer") permit (principal in Airlock::Role::"staging", action == Airlock::Action::"deployments.create", resource == Airlock::Resource::"staging");' },
    ]);
    expect(PolicyEngine.load({ ...defaultPolicies(), ...extra }).rolesRequiringMfa(['staging', 'developer'])).toEqual(['staging']);
  });
});

describe('no self role change', () => {
  const self = (id: string, ...roles: string[]): AuthzRequest => req(user(id, ...roles), 'users.roles.update', FRESH_MFA, { type: 'User', id });

  it('a developer changing their own roles is denied', () => {
    const d = engine.authorize(self('dev', 'developer'));
    expect(d.allowed).toBe(false);
    expect(d.policies).toContain('no-self-role-change');
  });

  it('an admin changing their own roles or disabling themselves is denied by no-self-role-change', () => {
    expect(engine.authorize(self('root', 'admin'))).toEqual({ allowed: false, policies: ['no-self-role-change'], errors: [] });
    expect(engine.authorize(req(user('root', 'admin'), 'users.disable', FRESH_MFA, { type: 'User', id: 'root' })).policies).toEqual(['no-self-role-change']);
    expect(engine.refusal(self('root', 'admin'))).toBe('FORBIDDEN');
  });

  it('nobody changes their own e-mail address (it maps commits to people), not even an admin', () => {
    const own = req(user('root', 'admin'), 'users.email.update', FRESH_MFA, { type: 'User', id: 'root' });
    expect(engine.authorize(own)).toEqual({ allowed: false, policies: ['no-self-role-change'], errors: [] });
    expect(engine.refusal(own)).toBe('FORBIDDEN');
    // Another admin may, with a fresh MFA proof and only then; nobody else may at all.
    expect(engine.authorize(req(user('root', 'admin'), 'users.email.update', FRESH_MFA, { type: 'User', id: 'bob' }))).toEqual({ allowed: true, policies: ['role-admin'], errors: [] });
    expect(engine.authorize(req(user('root', 'admin'), 'users.email.update', NO_MFA, { type: 'User', id: 'bob' })).policies).toEqual(['mfa-required', 'step-up-required']);
    for (const role of ['developer', 'release-manager', 'operator', 'security-auditor']) {
      expect(engine.authorize(req(user('rm', role), 'users.email.update', FRESH_MFA, { type: 'User', id: 'bob' })).allowed, role).toBe(false);
    }
  });

  it("an admin changing someone else's roles is allowed", () => {
    expect(engine.authorize(req(user('root', 'admin'), 'users.roles.update', FRESH_MFA, { type: 'User', id: 'bob' }))).toEqual({ allowed: true, policies: ['role-admin'], errors: [] });
    // A service account and a user with the same id are different entities.
    expect(engine.authorize(req({ type: 'ServiceAccount', id: 'bob', roles: ['admin'] }, 'users.disable', FRESH_MFA, { type: 'User', id: 'bob' })).allowed).toBe(true);
  });
});

describe('decisions carry their deciding policies and errors', () => {
  it('allow and deny name the policies that decided', () => {
    expect(engine.authorize(req(anonymous, 'system.health.read', ANON_CTX))).toEqual({ allowed: true, policies: ['public'], errors: [] });
    expect(engine.authorize(req(user('a'), 'auth.whoami'))).toEqual({ allowed: true, policies: ['self'], errors: [] });
    expect(engine.authorize(req(user('o', 'operator'), 'deployments.create', NO_MFA)).policies).toEqual(['mfa-required']);
  });

  it('each decision is its own object: a caller altering one cannot alter the next', () => {
    const d = engine.authorize(req(user('a'), 'auth.whoami'));
    (d.policies as string[]).push('forged');
    (d as { allowed: boolean }).allowed = false;
    expect(engine.authorize(req(user('a'), 'auth.whoami'))).toEqual({ allowed: true, policies: ['self'], errors: [] });
  });

  it('malformed requests are refused with a reason, never thrown', () => {
    const cases: [AuthzRequest, RegExp][] = [
      [req(user('a', 'admin'), 'policies.delete'), /unknown action/],
      [req(user('a', 'admin'), 'privileged'), /unknown action/],
      [req({ type: 'Robot', id: 'r' } as unknown as PrincipalRef, 'runs.read'), /principal type/],
      [req(user('a', 'admin'), 'runs.read', FRESH_MFA, { type: 'Project', id: 'x' } as unknown as ResourceRef), /resource type/],
      // runs.read does not apply to a User resource: the schema refuses the request.
      [req(user('a', 'admin'), 'runs.read', FRESH_MFA, { type: 'User', id: 'b' }), /./],
      [req(user('a', 'admin'), 'runs.read', { ...FRESH_MFA, mfaAgeSeconds: 1.5 }), /mfaAgeSeconds/],
      [req(user('a', 'admin'), 'runs.read', { ...FRESH_MFA, mfa: 'yes' } as unknown as AuthzContext), /./],
      [req(user('a', 'admin'), 'runs.read', { authMethod: 'session' } as unknown as AuthzContext), /./],
    ];
    for (const [r, message] of cases) {
      const d = engine.authorize(r);
      expect(d.allowed, JSON.stringify(r)).toBe(false);
      expect(d.errors.join(' '), JSON.stringify(r)).toMatch(message);
    }
  });

  it('a forbid that fails to evaluate refuses instead of letting a permit through', () => {
    // Integer overflow raises an evaluation error; Cedar would skip the forbid and allow.
    const extra = parsePolicyFiles([{ file: 'o.cedar', text: '@id("overflowing-forbid") forbid (principal, action, resource) when { context.mfaAgeSeconds * 9223372036854775807 > 0 };' }]);
    const custom = PolicyEngine.load({ ...defaultPolicies(), ...extra });
    const d = custom.authorize(req(user('a', 'developer'), 'runs.read', FRESH_MFA));
    expect(d.allowed).toBe(false);
    expect(d.policies).toEqual(['overflowing-forbid']);
    expect(d.errors[0]).toContain('overflowing-forbid');
  });
});
