/**
 * Proof of no plaintext at rest: a known value is written through the vault, then every byte the
 * database holds (the SQLite file and its WAL; every column of every PostgreSQL table, as text or
 * hex) is searched for it in plain, base64 and hex form. A control value stored in plain text
 * (the secret's description) must be found by the same search, so a blind search cannot pass.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { RootKey, Vault, secretScope } from '../../src/vault/index.js';
import { ENGINES, openTestStore } from '../support/engines.js';
import type { TestStore } from '../support/engines.js';

/** Every encoding in which a leaked value could sit in the database. */
function forms(value: Buffer): string[] {
  return [value.toString('utf8'), value.toString('base64'), value.toString('base64url'), value.toString('hex'), value.toString('hex').toUpperCase()];
}

/** The forms of `value` found in `haystack`. */
function found(haystack: Buffer, value: Buffer): string[] {
  return forms(value).filter((f) => haystack.includes(Buffer.from(f, 'utf8')));
}

/** Every column of every table of the store's schema, as text (bytea as hex), one buffer. */
async function dumpPostgres(ts: TestStore): Promise<Buffer> {
  if (ts.config.kind !== 'postgres') throw new Error('not PostgreSQL');
  const schema = ts.config.schema ?? 'public';
  const cols = await sql<{ table_name: string; column_name: string; data_type: string }>`
    select table_name, column_name, data_type from information_schema.columns where table_schema = ${schema} order by table_name, ordinal_position`.execute(ts.store.db);
  const tables = new Map<string, { name: string; bytea: boolean }[]>();
  for (const c of cols.rows) tables.set(c.table_name, [...(tables.get(c.table_name) ?? []), { name: c.column_name, bytea: c.data_type === 'bytea' }]);
  expect([...tables.keys()]).toEqual(expect.arrayContaining(['secrets', 'secret_versions', 'vault_keys', 'vault_meta']));
  const parts: string[] = [];
  for (const [table, columns] of tables) {
    // Each expression gets its own alias: unaliased, every encode(...) would come back as one "encode" key.
    const exprs = columns.map((c, i) => sql`${c.bytea ? sql`encode(${sql.ref(c.name)}, 'hex')` : sql`${sql.ref(c.name)}::text`} as ${sql.id(`c${i}`)}`);
    const rows = await sql<Record<string, string | null>>`select ${sql.join(exprs)} from ${sql.table(`${schema}.${table}`)}`.execute(ts.store.db);
    for (const r of rows.rows) {
      expect(Object.keys(r)).toHaveLength(columns.length);
      parts.push(Object.values(r).join('\u0000'));
    }
  }
  return Buffer.from(parts.join('\n'), 'utf8');
}

describe.each(ENGINES)('no plaintext at rest on %s', (engine) => {
  let ts: TestStore | undefined;
  afterEach(async () => {
    await ts?.cleanup();
    ts = undefined;
  });

  it('stores no form of a secret value, nor of the root key, anywhere in the database', async () => {
    ts = await openTestStore(engine);
    const { store } = ts;
    const rootBytes = randomBytes(32);
    const vault = await Vault.open({ store, root: RootKey.fromBytes(rootBytes) });
    const value = Buffer.from(`ghp_${randomBytes(24).toString('hex')}`, 'utf8');
    const blobValue = Buffer.from(`totp-seed-${randomBytes(16).toString('hex')}`, 'utf8');
    const control = Buffer.from(`control-${randomBytes(16).toString('hex')}`, 'utf8');
    const scope = secretScope({ kind: 'global' });
    const now = new Date().toISOString();
    await store.transact(async (tx) => {
      await tx.db
        .insertInto('secrets')
        .values({
          id: 'sec-1',
          name: 'github-token',
          scope_kind: 'global',
          project_id: null,
          environment: null,
          scope_key: scope,
          owner: 'user:alice',
          description: control.toString('utf8'),
          rotation_interval_s: null,
          last_rotated_at: null,
          expires_at: null,
          last_read_at: null,
          current_version: 1,
          created_at: now,
          created_by: 'user:alice',
          updated_at: now,
          deleted_at: null,
          deleted_by: null,
        })
        .execute();
      for (const version of [1, 2]) {
        const enc = await vault.encrypt(tx, { secretId: 'sec-1', version, scope }, value);
        await tx.db.insertInto('secret_versions').values({ secret_id: 'sec-1', version, ...enc, created_at: now, created_by: 'user:alice' }).execute();
      }
      // A sealed blob kept in a text column, as the identity domain will.
      await tx.db.insertInto('airlock_meta').values({ key: 'test.sealed', value: await vault.sealBlob('test:blob', blobValue) }).execute();
    });
    await vault.rotateKek();
    await vault.rewrap();
    // The values are really there, encrypted.
    const row = await store.db.selectFrom('secret_versions').selectAll().where('version', '=', 2).executeTakeFirstOrThrow();
    expect(await vault.decrypt(row, { secretId: 'sec-1', version: 2, scope })).toEqual(value);

    if (ts.config.kind === 'sqlite') {
      const file = ts.config.path;
      const wal = `${file}-wal`;
      expect(existsSync(wal)).toBe(true);
      const walBytes = readFileSync(wal);
      expect(walBytes.length).toBeGreaterThan(0);
      const all = Buffer.concat([readFileSync(file), walBytes]);
      // The control proves the search sees what was written (it is in the WAL until a checkpoint).
      expect(found(all, control)).toContain(control.toString('utf8'));
      expect(found(all, value)).toEqual([]);
      expect(found(all, blobValue)).toEqual([]);
      expect(found(all, rootBytes)).toEqual([]);
      // And after close, when SQLite checkpoints the WAL into the main file.
      await store.close();
      const closed = Buffer.concat([readFileSync(file), existsSync(wal) ? readFileSync(wal) : Buffer.alloc(0)]);
      expect(found(closed, control)).toContain(control.toString('utf8'));
      expect(found(closed, value)).toEqual([]);
      expect(found(closed, blobValue)).toEqual([]);
      expect(found(closed, rootBytes)).toEqual([]);
    } else {
      const dump = await dumpPostgres(ts);
      expect(found(dump, control)).toContain(control.toString('utf8'));
      expect(found(dump, value)).toEqual([]);
      expect(found(dump, blobValue)).toEqual([]);
      expect(found(dump, rootBytes)).toEqual([]);
      // The dump does include the bytea columns (hex): the stored ciphertext is found there.
      expect(dump.includes(Buffer.from(row.ciphertext.toString('hex')))).toBe(true);
    }
  });
});
