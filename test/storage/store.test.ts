import { afterEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { ENGINES, freshDatabase, openTestStore } from '../support/engines.js';
import type { TestStore } from '../support/engines.js';
import { MIGRATION_NAMES, openStore } from '../../src/storage/index.js';

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

  it('reports every migration pending on an empty database, and migrates once under concurrency', async () => {
    const { config, drop } = await freshDatabase(engine);
    const stores = [await openStore(config), await openStore(config), await openStore(config)];
    try {
      expect((await stores[0]!.migrationStatus()).every((m) => m.executedAt === null)).toBe(true);
      // PostgreSQL: truly concurrent. SQLite: one process may hold only one waiting writer
      // (better-sqlite3 waits synchronously), so concurrency there is between processes.
      const results = engine === 'postgres' ? await Promise.all(stores.map((s) => s.migrate())) : [await stores[0]!.migrate(), await stores[1]!.migrate(), await stores[2]!.migrate()];
      for (const r of results) expect(r.every((m) => m.executedAt !== null)).toBe(true);
      const rows = await sql<{ n: number | string }>`select count(*) as n from airlock_migrations`.execute(stores[0]!.db);
      expect(Number(rows.rows[0]?.n)).toBe(MIGRATION_NAMES.length);
    } finally {
      for (const s of stores) await s.close();
      await drop();
    }
  });

  it('never loses a unit of work queued just as a drain finishes (any microtask delay)', async () => {
    t = await openTestStore(engine);
    const store = t.store;
    for (let delay = 0; delay < 20; delay++) {
      await store.transact(async () => Promise.resolve());
      let p = Promise.resolve();
      for (let i = 0; i < delay; i++) p = p.then(() => undefined);
      await p;
      const late = store.transact(async () => Promise.resolve(delay));
      const timeout = new Promise((_, fail) => setTimeout(() => fail(new Error(`unit queued ${delay} microtasks after a drain never ran`)), 2000));
      await expect(Promise.race([late, timeout])).resolves.toBe(delay);
    }
  });

  it('refuses to run against a database migrated by a newer version', async () => {
    t = await openTestStore(engine);
    await t.raw(`insert into airlock_migrations (name, executed_at) values ('9999_from_the_future', '2030-01-01T00:00:00Z')`);
    await expect(t.store.migrate()).rejects.toMatchObject({ code: 'MIGRATION_FAILED', message: expect.stringContaining('9999_from_the_future') as unknown });
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
