import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { describe, expect, it } from 'vitest';
import {
  ACTIONS,
  ACTION_GROUPS,
  DECISION_ACTIONS,
  PolicyEngine,
  defaultPolicies,
  defaultPolicyDir,
  parsePolicyFiles,
  policyDigest,
  policySchemaText,
  readPolicyDirectory,
} from '../../src/policy/index.js';
import type { PolicySource } from '../../src/policy/index.js';

const ROOT = join(import.meta.dirname, '../..');

/** The error a call throws (fails the test when it does not throw). */
function thrown(fn: () => unknown): { code?: string; message: string; details?: Record<string, unknown> } {
  try {
    fn();
  } catch (err) {
    return err as { code?: string; message: string };
  }
  throw new Error('expected an error');
}

const EXPECTED_IDS = [
  'public',
  'self',
  'mfa-required',
  'step-up-required',
  'no-self-role-change',
  'role-admin',
  'role-security-auditor',
  'role-release-manager',
  'role-operator',
  'role-developer',
  'role-runner',
  'agents-operator',
  'agents-auditor',
  'secrets-fetch-workload',
  'secrets-release-declared',
  'protected-secrets-need-approval',
];

describe('shipped schema and default policies', () => {
  it('finds policies/ next to package.json and reads every .cedar file', () => {
    expect(defaultPolicyDir()).toBe(join(ROOT, 'policies'));
    const files = readdirSync(join(ROOT, 'policies')).filter((f) => f.endsWith('.cedar'));
    expect(files.length).toBeGreaterThanOrEqual(5);
    expect(Object.keys(defaultPolicies()).sort()).toEqual([...EXPECTED_IDS].sort());
  });

  it('loads and validates the default set; every entry carries its own @id', () => {
    const engine = PolicyEngine.load(defaultPolicies());
    for (const [id, text] of Object.entries(engine.policies)) expect(text).toContain(`@id("${id}")`);
    expect(engine.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    // Same set, same digest, whatever the key order.
    const reversed = Object.fromEntries(Object.entries(defaultPolicies()).reverse());
    expect(PolicyEngine.load(reversed).digest).toBe(engine.digest);
    expect(policyDigest(reversed)).toBe(engine.digest);
  });

  it('declares every action with appliesTo for all four principal types, and exactly the groups of ACTION_GROUPS', () => {
    const json = cedar.schemaToJson(policySchemaText());
    expect(json.type).toBe('success');
    if (json.type !== 'success') return;
    const actions = json.json.Airlock?.actions ?? {};
    const requestable = Object.keys(actions).filter((a) => (actions[a]?.appliesTo?.principalTypes.length ?? 0) > 0);
    expect(requestable.sort()).toEqual([...ACTIONS, ...DECISION_ACTIONS].sort());
    // A decision-only action is asked about a Workload only, with its own context type.
    expect(actions['secrets.release']?.appliesTo?.principalTypes).toEqual(['Workload']);
    expect(actions['secrets.release']?.appliesTo?.resourceTypes).toEqual(['Secret']);
    for (const a of ACTIONS) {
      expect(actions[a]?.appliesTo?.principalTypes.sort(), a).toEqual(['Anonymous', 'ServiceAccount', 'User', 'Workload']);
      expect(actions[a]?.appliesTo?.resourceTypes, a).toContain('Resource');
    }
    for (const [group, members] of Object.entries(ACTION_GROUPS)) {
      const inSchema = Object.keys(actions).filter((a) => (actions[a]?.memberOf ?? []).some((m) => m.id === group));
      expect(inSchema.sort(), group).toEqual([...members].sort());
    }
    // Targeting one user or one service account uses that entity as the resource.
    expect(actions['users.roles.update']?.appliesTo?.resourceTypes).toContain('User');
    expect(actions['service-accounts.keys.revoke']?.appliesTo?.resourceTypes).toContain('ServiceAccount');
  });

  it('groups match the issue: privileged and sensitive', () => {
    expect([...ACTION_GROUPS.sensitive].sort()).toEqual(['breakglass.use', 'deployments.approve', 'keys.rotate', 'policies.update', 'roles.create', 'secrets.reveal', 'users.credentials.reset', 'users.email.update', 'users.roles.update']);
    for (const a of ACTION_GROUPS.sensitive) expect(ACTION_GROUPS.privileged).toContain(a);
    expect(ACTION_GROUPS.privileged).toContain('deployments.create');
    expect(ACTION_GROUPS.privileged).toContain('deployments.freeze');
    expect(ACTION_GROUPS.privileged).not.toContain('secrets.read');
    expect(ACTION_GROUPS.privileged).not.toContain('deployments.read');
  });

  it('knownAction accepts actions and refuses groups and unknown names', () => {
    const engine = PolicyEngine.load(defaultPolicies());
    expect(engine.knownAction('policies.update')).toBe(true);
    expect(engine.knownAction('privileged')).toBe(false);
    expect(engine.knownAction('policies.delete')).toBe(false);
  });
});

describe('parsePolicyFiles', () => {
  it('splits files into one entry per @id, keeping each policy text', () => {
    const source = parsePolicyFiles([
      { file: 'a.cedar', text: '// comment\n@id("a1")\npermit (principal, action == Airlock::Action::"runs.read", resource);\n\n@id("a2") forbid (principal, action, resource);' },
      { file: 'b.cedar', text: '@id("b1") permit (principal in Airlock::Role::"ci", action == Airlock::Action::"runs.read", resource);' },
    ]);
    expect(Object.keys(source)).toEqual(['a1', 'a2', 'b1']);
    expect(source.a1).toBe('@id("a1")\npermit (principal, action == Airlock::Action::"runs.read", resource);');
    expect(PolicyEngine.load(source).policies).toEqual(source);
  });

  it('refuses a duplicate id across files, naming the id and both places', () => {
    const err = thrown(() =>
      parsePolicyFiles([
        { file: 'one.cedar', text: '@id("dup") permit (principal, action, resource);' },
        { file: 'two.cedar', text: '\n\n@id("dup") forbid (principal, action, resource);' },
      ]),
    );
    expect(err.code).toBe('POLICY_INVALID');
    expect(err.message).toContain('"dup"');
    expect(err.message).toContain('one.cedar:1');
    expect(err.message).toContain('two.cedar:3');
  });

  it('refuses the shipped set plus a file that reuses a shipped id', () => {
    const dir = defaultPolicyDir();
    const files = readdirSync(dir)
      .filter((f) => f.endsWith('.cedar'))
      .map((f) => ({ file: f, text: readFileSync(join(dir, f), 'utf8') }));
    files.push({ file: 'custom.cedar', text: '@id("role-admin") permit (principal, action, resource);' });
    expect(thrown(() => parsePolicyFiles(files))).toMatchObject({ code: 'POLICY_INVALID', message: expect.stringContaining('role-admin') as unknown });
  });

  it('refuses a policy without @id, naming file and line', () => {
    const err = thrown(() => parsePolicyFiles([{ file: 'x.cedar', text: '@id("ok") permit (principal, action, resource);\n\npermit (principal, action, resource);' }]));
    expect(err.code).toBe('POLICY_INVALID');
    expect(err.message).toContain('x.cedar:3');
    expect(err.message).toContain('@id');
  });

  it('refuses syntax errors (file and line), templates and ids that could pollute objects', () => {
    expect(thrown(() => parsePolicyFiles([{ file: 's.cedar', text: '\n@id("s") permit (principal, action, resource)' }]))).toMatchObject({
      code: 'POLICY_INVALID',
      message: expect.stringMatching(/^s\.cedar/) as unknown,
    });
    expect(thrown(() => parsePolicyFiles([{ file: 't.cedar', text: '@id("t") permit (principal == ?principal, action, resource);' }])).message).toContain('template');
    expect(thrown(() => parsePolicyFiles([{ file: 'p.cedar', text: '@id("__proto__") permit (principal, action, resource);' }])).message).toContain('invalid policy id');
  });

  it('readPolicyDirectory refuses a missing directory and one without policies', () => {
    expect(thrown(() => readPolicyDirectory(join(ROOT, 'no-such-dir')))).toMatchObject({ code: 'NOT_FOUND' });
    expect(thrown(() => readPolicyDirectory(join(ROOT, 'src/policy')))).toMatchObject({ code: 'POLICY_INVALID' });
  });
});

describe('PolicyEngine.load refuses invalid sets (POLICY_INVALID naming the policy)', () => {
  const withExtra = (id: string, text: string): PolicySource => ({ ...defaultPolicies(), [id]: text });

  it('an unknown action', () => {
    const err = thrown(() => PolicyEngine.load(withExtra('bad-action', '@id("bad-action") permit (principal, action == Airlock::Action::"policies.delete", resource);')));
    expect(err.code).toBe('POLICY_INVALID');
    expect(err.message).toContain('"bad-action"');
    expect(err.message).toContain('policies.delete');
    expect((err.details?.issues as { policyId: string }[])[0]?.policyId).toBe('bad-action');
  });

  it('an unknown attribute of the context or of an entity', () => {
    const ctx = thrown(() => PolicyEngine.load(withExtra('bad-ctx', '@id("bad-ctx") permit (principal, action, resource) when { context.vpn };')));
    expect(ctx).toMatchObject({ code: 'POLICY_INVALID' });
    expect(ctx.message).toContain('"bad-ctx"');
    expect(ctx.message).toContain('vpn');
    const attr = thrown(() => PolicyEngine.load(withExtra('bad-attr', '@id("bad-attr") permit (principal is Airlock::User, action, resource) when { principal.department == "ops" };')));
    expect(attr.message).toContain('"bad-attr"');
    expect(attr.message).toContain('department');
  });

  it('an unknown entity type and a type error', () => {
    expect(thrown(() => PolicyEngine.load(withExtra('bad-type', '@id("bad-type") permit (principal in Airlock::Group::"x", action, resource);'))).message).toContain('"bad-type"');
    expect(thrown(() => PolicyEngine.load(withExtra('bad-cmp', '@id("bad-cmp") permit (principal, action, resource) when { context.mfaAgeSeconds == "old" };'))).message).toContain('"bad-cmp"');
  });

  it('an @id that disagrees with its key, a missing @id, two policies in one entry, bad text', () => {
    expect(thrown(() => PolicyEngine.load({ x: '@id("y") permit (principal, action, resource);' })).message).toContain('does not match');
    expect(thrown(() => PolicyEngine.load({ x: 'permit (principal, action, resource);' })).message).toContain('@id("x")');
    expect(thrown(() => PolicyEngine.load({ x: '@id("x") permit (principal, action, resource); @id("x2") permit (principal, action, resource);' })).message).toContain('exactly one');
    expect(thrown(() => PolicyEngine.load({ x: '@id("x") permit (principal, action, resource' })).message).toMatch(/^policy "x": /);
    expect(thrown(() => PolicyEngine.load({ x: 42 } as unknown as PolicySource)).message).toContain('Cedar text');
    expect(thrown(() => PolicyEngine.load({ 'bad id!': '@id("bad id!") permit (principal, action, resource);' })).code).toBe('POLICY_INVALID');
  });

  it('a refused load leaves the engine already loaded untouched', () => {
    const engine = PolicyEngine.load(defaultPolicies());
    expect(() => PolicyEngine.load(withExtra('allow-all', '@id("allow-all") permit (principal, action, resource) when { context.nope };'))).toThrow();
    const anon = engine.authorize({
      principal: { type: 'Anonymous', id: 'anonymous' },
      action: 'users.read',
      resource: { type: 'Resource', id: 'users' },
      context: { authMethod: 'anonymous', mfa: false, mfaAgeSeconds: 2147483647, sourceAddress: '' },
    });
    expect(anon.allowed).toBe(false);
  });
});
