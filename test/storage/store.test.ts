import { afterEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { ENGINES, openTestStore } from '../support/engines.js';
import type { TestStore } from '../support/engines.js';
import { MIGRATION_NAMES } from '../../src/storage/index.js';

describe.each(ENGINES)('store on %s', (engine) => {
  let t: TestStore | undefined;
  afterEach(async () => {
    await t?.cleanup();
    t = undefined;
  });

  it('migrates to the latest version and reports status', async () => {
    t = await openTestStore(engine);
    const status = await t.store.migrationStatus();
    expect(status.map((s) => s.name)).toEqual(MIGRATION_NAMES);
    expect(status.every((s) => s.executedAt !== null)).toBe(true);
    // Idempotent: a second run applies nothing and fails nothing.
    await expect(t.store.migrate()).resolves.toHaveLength(MIGRATION_NAMES.length);
  });

  it('group-commits concurrent units of work and isolates a failing one', async () => {
    t = await openTestStore(engine);
    const store = t.store;
    const put = (key: string) => store.transact(async (tx) => {
      await tx.db.insertInto('airlock_meta').values({ key, value: 'v' }).execute();
      if (key === 'bad') throw new Error('boom');
      return key;
    });
    const results = await Promise.allSettled(['a', 'b', 'bad', 'c'].map(put));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    const keys = (await store.db.selectFrom('airlock_meta').select('key').orderBy('key').execute()).map((r) => r.key);
    expect(keys).toEqual(['a', 'b', 'c']);
  });

  it('maps a constraint violation to CONFLICT without leaking values', async () => {
    t = await openTestStore(engine);
    const store = t.store;
    await store.transact((tx) => tx.db.insertInto('airlock_meta').values({ key: 'k', value: 'hunter2-secret' }).execute());
    const err = await store
      .transact((tx) => tx.db.insertInto('airlock_meta').values({ key: 'k', value: 'hunter2-secret' }).execute())
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CONFLICT' });
    expect((err as Error).message).not.toContain('hunter2');
  });

  it('refuses new work after close and finishes queued work first', async () => {
    t = await openTestStore(engine);
    const store = t.store;
    const pending = Array.from({ length: 20 }, (_, i) => store.transact((tx) => tx.db.insertInto('airlock_meta').values({ key: `k${i}`, value: 'v' }).execute()));
    const closing = store.close();
    await expect(store.transact(() => Promise.resolve(1))).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
    await Promise.all(pending);
    await closing;
  });

  it('reads through the read connection see committed writes', async () => {
    t = await openTestStore(engine);
    await t.store.transact((tx) => tx.db.insertInto('airlock_meta').values({ key: 'x', value: '1' }).execute());
    const row = await sql<{ value: string }>`select value from airlock_meta where key = 'x'`.execute(t.store.db);
    expect(row.rows[0]?.value).toBe('1');
  });
});
