import { afterEach, describe, expect, it } from 'vitest';
import { ENGINES, openTestStore } from '../support/engines.js';
import type { TestStore } from '../support/engines.js';
import {
  PolicyEngine,
  activePolicyEngine,
  activePolicyVersion,
  defaultPolicies,
  getPolicyVersion,
  listPolicyVersions,
  parsePolicyFiles,
  writePolicyVersion,
} from '../../src/policy/index.js';
import type { PolicySource } from '../../src/policy/index.js';

const T0 = new Date('2025-01-02T03:04:05.000Z');
const T1 = new Date('2025-01-02T04:00:00.000Z');

const withCiRole: PolicySource = {
  ...defaultPolicies(),
  ...parsePolicyFiles([{ file: 'ci.cedar', text: '@id("role-ci") permit (principal in Airlock::Role::"ci", action == Airlock::Action::"runs.read", resource);' }]),
};

async function count(t: TestStore): Promise<number> {
  const rows = (await t.raw('select count(*) as n from policy_versions')) as { n: number | string }[];
  return Number(rows[0]?.n);
}

describe.each(ENGINES)('policy versions on %s', (engine) => {
  let t: TestStore | undefined;
  afterEach(async () => {
    await t?.cleanup();
    t = undefined;
  });

  it('starts empty; versions count up from 0; the highest is active; digests are stable', async () => {
    t = await openTestStore(engine);
    const { store } = t;
    expect(await activePolicyVersion(store.db)).toBeUndefined();
    expect(await listPolicyVersions(store.db)).toEqual([]);
    expect((await activePolicyEngine(store.db)).version).toBeNull();

    const v0 = await store.transact((tx) => writePolicyVersion(tx, { policies: defaultPolicies(), author: 'system', reason: 'shipped defaults', now: T0 }));
    expect(v0).toEqual({ version: 0, digest: PolicyEngine.load(defaultPolicies()).digest });
    const v1 = await store.transact((tx) => writePolicyVersion(tx, { policies: withCiRole, author: 'user:root', reason: 'CI may read runs', now: T1 }));
    expect(v1.version).toBe(1);
    expect(v1.digest).not.toBe(v0.digest);
    // Writing the defaults again: a new version, the same digest.
    const v2 = await store.transact((tx) => writePolicyVersion(tx, { policies: Object.fromEntries(Object.entries(defaultPolicies()).reverse()), author: 'user:root', reason: 'revert', now: T1 }));
    expect(v2).toEqual({ version: 2, digest: v0.digest });

    const active = await activePolicyVersion(store.db);
    expect(active).toMatchObject({ version: 2, digest: v0.digest, author: 'user:root', reason: 'revert', createdAt: T1.toISOString() });
    expect(active?.policies).toEqual(defaultPolicies());
    expect((await getPolicyVersion(store.db, 1))?.policies).toEqual(withCiRole);
    expect(await getPolicyVersion(store.db, 7)).toBeUndefined();

    const list = await listPolicyVersions(store.db);
    expect(list.map((v) => v.version)).toEqual([2, 1, 0]);
    expect(list[2]).toEqual({ version: 0, digest: v0.digest, author: 'system', reason: 'shipped defaults', createdAt: T0.toISOString() });
    expect(list[0]).not.toHaveProperty('policies');

    const loaded = await activePolicyEngine(store.db);
    expect(loaded.version).toBe(2);
    expect(loaded.engine.digest).toBe(v0.digest);
  });

  it('refuses an invalid set with POLICY_INVALID and writes nothing', async () => {
    t = await openTestStore(engine);
    const { store } = t;
    await store.transact((tx) => writePolicyVersion(tx, { policies: defaultPolicies(), author: 'system', reason: 'defaults', now: T0 }));
    const bad = { ...defaultPolicies(), 'grant-all': '@id("grant-all") permit (principal, action, resource) when { context.isAdmin };' };
    const err = await store.transact((tx) => writePolicyVersion(tx, { policies: bad, author: 'user:mallory', reason: 'oops', now: T1 })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'POLICY_INVALID', message: expect.stringContaining('grant-all') as unknown });
    expect(await count(t)).toBe(1);
    expect((await activePolicyVersion(store.db))?.version).toBe(0);
  });

  it('requires an author and a reason', async () => {
    t = await openTestStore(engine);
    const { store } = t;
    const err = await store.transact((tx) => writePolicyVersion(tx, { policies: defaultPolicies(), author: ' ', reason: '', now: T0 })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(await count(t)).toBe(0);
  });

  it('rolls back with the caller: a failure later in the same transaction leaves no version', async () => {
    t = await openTestStore(engine);
    const { store } = t;
    await expect(
      store.transact(async (tx) => {
        await writePolicyVersion(tx, { policies: defaultPolicies(), author: 'system', reason: 'defaults', now: T0 });
        throw new Error('audit append failed');
      }),
    ).rejects.toThrow('audit append failed');
    expect(await count(t)).toBe(0);
  });

  it('refuses a stored version edited outside Airlock (digest mismatch)', async () => {
    t = await openTestStore(engine);
    const { store } = t;
    await store.transact((tx) => writePolicyVersion(tx, { policies: withCiRole, author: 'user:root', reason: 'ci', now: T0 }));
    // An attacker with database access widens the CI role by editing the stored JSON.
    await t.raw(`update policy_versions set policies = replace(policies, 'action == Airlock::Action::\\"runs.read\\"', 'action') where version = 0`);
    const row = ((await t.raw('select policies from policy_versions')) as { policies: string }[])[0];
    expect(row?.policies).not.toContain('action == Airlock::Action::\\"runs.read\\"');
    await expect(activePolicyVersion(store.db)).rejects.toMatchObject({ code: 'POLICY_INVALID', message: expect.stringContaining('digest') as unknown });
    await expect(activePolicyEngine(store.db)).rejects.toMatchObject({ code: 'POLICY_INVALID' });
  });
});
