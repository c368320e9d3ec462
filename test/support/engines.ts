/**
 * One storage suite, every engine (as Kysely runs each integration test on every dialect).
 * PostgreSQL runs for real at 127.0.0.1:5432; each store gets its own schema. With CI=true
 * an unreachable PostgreSQL fails the run: it is never skipped.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import type { DatabaseConfig } from '../../src/config/index.js';
import { openStore } from '../../src/storage/index.js';
import type { Engine, Store, StoreOptions } from '../../src/storage/index.js';

export const ENGINES: readonly Engine[] = ['sqlite', 'postgres'];
export const PG_URL = process.env.AIRLOCK_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

let pgChecked: Promise<void> | undefined;

/** Fails loudly if PostgreSQL is down: a storage suite that silently skips proves nothing. */
export function requirePostgres(): Promise<void> {
  pgChecked ??= (async () => {
    const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
    try {
      await client.connect();
      await client.query('select 1');
    } catch (err) {
      throw new Error(`PostgreSQL is required for the storage suite at ${PG_URL} (CI=${process.env.CI ?? 'unset'}): ${(err as Error).message}`, { cause: err });
    } finally {
      await client.end().catch(() => undefined);
    }
  })();
  return pgChecked;
}

/** A fresh, migrated store plus a raw SQL hook for tampering. */
export interface TestStore {
  readonly store: Store;
  readonly config: DatabaseConfig;
  readonly home: string;
  /** Run raw SQL on the store's own write connection (for tamper tests). */
  raw(query: string): Promise<unknown[]>;
  cleanup(): Promise<void>;
}

/** Database config for a new isolated database on `engine` (schema or file). */
export async function freshDatabase(engine: Engine): Promise<{ config: DatabaseConfig; home: string; drop: () => Promise<void> }> {
  const home = mkdtempSync(join(tmpdir(), 'airlock-test-'));
  if (engine === 'sqlite') {
    return { config: { kind: 'sqlite', path: join(home, 'airlock.db') }, home, drop: () => Promise.resolve(rmSync(home, { recursive: true, force: true })) };
  }
  await requirePostgres();
  // A PostgreSQL install must be given its vault root key (it is never generated there).
  process.env.AIRLOCK_MASTER_KEY ??= randomBytes(32).toString('base64');
  // Dropped by test/support/global-setup.ts after the run, never while other suites migrate.
  const schema = `t_${process.env.AIRLOCK_TEST_RUN ?? 'adhoc'}_${randomBytes(6).toString('hex')}`;
  return {
    config: { kind: 'postgres', url: PG_URL, schema },
    home,
    drop: () => Promise.resolve(rmSync(home, { recursive: true, force: true })),
  };
}

/** Open and migrate a fresh store on `engine`. */
export async function openTestStore(engine: Engine, options: StoreOptions = {}): Promise<TestStore> {
  const { config, home, drop } = await freshDatabase(engine);
  const store = await openStore(config, options);
  await store.migrate();
  let closed = false;
  return {
    store,
    config,
    home,
    raw: (query) => store.transact(async (tx) => (await sql.raw(query).execute(tx.db)).rows),
    cleanup: async () => {
      if (!closed) await store.close();
      closed = true;
      await drop();
    },
  };
}
