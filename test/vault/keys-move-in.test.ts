/**
 * Other keys move into the vault (issue 5): the identity sealing key and the audit checkpoint key
 * are held in vault_sealed_keys, wrapped by the root key. A new vault generates them and writes no
 * file; an old install's key files are imported once (same bytes, so what they sealed or signed
 * stays valid) and then deleted. Tampering, a wrong root key and unsafe files are refused.
 */
import { createPublicKey, randomBytes, sign, verify } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { legacyKeyFiles } from '../../src/app/keys.js';
import { checkpointKeyPath, formatCheckpoint, loadOrCreateCheckpointKey, openCheckpoint, parseVerifierKey, readCheckpointKeyFile, signNote } from '../../src/audit/index.js';
import type { CheckpointKeyFile } from '../../src/audit/index.js';
import { loadOrCreateSealKey, readSealKeyFile, sealKeyFromBytes, sealKeyPath } from '../../src/identity/index.js';
import { openStore } from '../../src/storage/index.js';
import type { Store } from '../../src/storage/index.js';
import { RootKey, Vault } from '../../src/vault/index.js';
import type { SealedKeyEvent } from '../../src/vault/index.js';
import { ENGINES, openTestStore } from '../support/engines.js';
import type { TestStore } from '../support/engines.js';
import { refusal } from '../support/refusal.js';

const ORIGIN = 'airlock.test/audit';
const newRoot = (): RootKey => RootKey.fromBytes(randomBytes(32));
const ROOT_HASH = Buffer.alloc(32, 7);

/** Every encoding in which leaked key bytes could sit in the database. */
function forms(value: Buffer): Buffer[] {
  return [value, ...[value.toString('base64'), value.toString('base64url'), value.toString('hex'), value.toString('hex').toUpperCase()].map((f) => Buffer.from(f, 'utf8'))];
}

function found(haystack: Buffer, value: Buffer): number {
  return forms(value).filter((f) => haystack.includes(f)).length;
}

/** Every column of every table of a PostgreSQL schema, as text (bytea as hex). */
async function dumpPostgres(ts: TestStore): Promise<Buffer> {
  if (ts.config.kind !== 'postgres') throw new Error('not PostgreSQL');
  const schema = ts.config.schema ?? 'public';
  const cols = await sql<{ table_name: string; column_name: string; data_type: string }>`
    select table_name, column_name, data_type from information_schema.columns where table_schema = ${schema} order by table_name, ordinal_position`.execute(ts.store.db);
  const tables = new Map<string, { name: string; bytea: boolean }[]>();
  for (const c of cols.rows) tables.set(c.table_name, [...(tables.get(c.table_name) ?? []), { name: c.column_name, bytea: c.data_type === 'bytea' }]);
  expect([...tables.keys()]).toContain('vault_sealed_keys');
  const parts: string[] = [];
  for (const [table, columns] of tables) {
    const exprs = columns.map((c, i) => sql`${c.bytea ? sql`encode(${sql.ref(c.name)}, 'hex')` : sql`${sql.ref(c.name)}::text`} as ${sql.id(`c${i}`)}`);
    const rows = await sql<Record<string, string | null>>`select ${sql.join(exprs)} from ${sql.table(`${schema}.${table}`)}`.execute(ts.store.db);
    for (const r of rows.rows) parts.push(Object.values(r).join('\u0000'));
  }
  return Buffer.from(parts.join('\n'), 'utf8');
}

/** An install from before the keys moved in: both key files, and a value sealed and a note signed with them. */
async function oldInstall(home: string): Promise<{ sealed: string; secret: Buffer; ckey: CheckpointKeyFile; note: string; sealBytes: Buffer; seed: Buffer }> {
  const seal = await loadOrCreateSealKey(home);
  const ckey = await loadOrCreateCheckpointKey(home, ORIGIN);
  const secret = randomBytes(20);
  const sealed = seal.seal(secret, 'totp:user-1');
  const note = signNote(formatCheckpoint({ origin: ORIGIN, size: 3, rootHash: ROOT_HASH, extensions: [] }), [ckey.signer]);
  return { sealed, secret, ckey, note, sealBytes: (await readSealKeyFile(home))!, seed: (await readCheckpointKeyFile(home))! };
}

function open(store: Store, root: RootKey, home: string, events: SealedKeyEvent[] = []): Promise<Vault> {
  return Vault.open({ store, root, legacyKeys: legacyKeyFiles(home), onSealedKey: (e) => events.push(e) });
}

async function heldRows(store: Store): Promise<{ name: string; origin: string; root_key_id: string }[]> {
  return store.db.selectFrom('vault_sealed_keys').select(['name', 'origin', 'root_key_id']).orderBy('name').execute();
}

async function setRow(store: Store, name: string, values: { sealed?: Buffer; public_key?: Buffer | null }): Promise<void> {
  await store.transact(async (tx) => {
    await tx.db.updateTable('vault_sealed_keys').set(values).where('name', '=', name).execute();
  });
}

function checkpointVerifies(vault: Vault): boolean {
  const msg = Buffer.from('checkpoint body', 'utf8');
  const { privateKey, publicKey } = vault.checkpointKey();
  const pub = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: publicKey.toString('base64url') }, format: 'jwk' });
  return verify(null, msg, pub, sign(null, msg, privateKey));
}

describe.each(ENGINES)('keys held by the vault on %s', (engine) => {
  let ts: TestStore | undefined;
  const extra: Store[] = [];
  afterEach(async () => {
    for (const s of extra.splice(0)) await s.close();
    await ts?.cleanup();
    ts = undefined;
  });

  it('a new vault generates both keys inside the database and writes no key file', async () => {
    ts = await openTestStore(engine);
    const root = newRoot();
    const events: SealedKeyEvent[] = [];
    const vault = await open(ts.store, root, ts.home, events);
    expect(events).toEqual([
      { key: 'identity-seal', action: 'generated' },
      { key: 'audit-checkpoint', action: 'generated' },
    ]);
    expect(existsSync(join(ts.home, 'keys'))).toBe(false);
    expect(await heldRows(ts.store)).toEqual([
      { name: 'audit-checkpoint', origin: 'generated', root_key_id: root.id },
      { name: 'identity-seal', origin: 'generated', root_key_id: root.id },
    ]);
    const seed = randomBytes(20);
    const sealed = vault.identitySealKey().seal(seed, 'totp:u1');
    expect(vault.identitySealKey().open(sealed, 'totp:u1')).toEqual(seed);
    expect(checkpointVerifies(vault)).toBe(true);

    // Reopened (a restart, another replica): the same keys, nothing generated again.
    const again: SealedKeyEvent[] = [];
    const reopened = await open(ts.store, root, ts.home, again);
    expect(again).toEqual([]);
    expect(reopened.identitySealKey().open(sealed, 'totp:u1')).toEqual(seed);
    expect(reopened.checkpointKey().publicKey).toEqual(vault.checkpointKey().publicKey);
    expect(await Vault.checkpointPublicKey(ts.store.db, root)).toEqual(vault.checkpointKey().publicKey);
    expect(await Vault.checkpointPublicKey(ts.store.db)).toEqual(vault.checkpointKey().publicKey);
    // A value sealed for one record does not open for another.
    expect((await refusal(Promise.resolve().then(() => reopened.identitySealKey().open(sealed, 'totp:u2')))).details).toEqual({ reason: 'unseal_failed' });
  });

  it('imports an old install’s key files (same keys), then deletes them', async () => {
    ts = await openTestStore(engine);
    const old = await oldInstall(ts.home);
    const events: SealedKeyEvent[] = [];
    const vault = await open(ts.store, newRoot(), ts.home, events);
    expect(events).toEqual([
      { key: 'identity-seal', action: 'imported', path: sealKeyPath(ts.home) },
      { key: 'audit-checkpoint', action: 'imported', path: checkpointKeyPath(ts.home) },
      { key: 'identity-seal', action: 'file_removed', path: sealKeyPath(ts.home) },
      { key: 'audit-checkpoint', action: 'file_removed', path: checkpointKeyPath(ts.home) },
    ]);
    expect(existsSync(sealKeyPath(ts.home))).toBe(false);
    expect(existsSync(checkpointKeyPath(ts.home))).toBe(false);
    expect((await heldRows(ts.store)).map((r) => r.origin)).toEqual(['imported', 'imported']);
    // What the file key sealed still opens; what the vault seals opens with the old key too (same bytes).
    expect(vault.identitySealKey().open(old.sealed, 'totp:user-1')).toEqual(old.secret);
    expect(sealKeyFromBytes(old.sealBytes).open(vault.identitySealKey().seal(old.secret, 'x'), 'x')).toEqual(old.secret);
    // The published verifier key is unchanged: old checkpoints verify, new signatures verify under it.
    expect(vault.checkpointKey().publicKey).toEqual(old.ckey.publicKey);
    const verifier = parseVerifierKey(old.ckey.verifierKey);
    expect(openCheckpoint(old.note, [verifier], ORIGIN).checkpoint.size).toBe(3);
    expect(checkpointVerifies(vault)).toBe(true);
  });

  it('refuses a wrong root key before importing anything, and leaves the files in place', async () => {
    ts = await openTestStore(engine);
    const root = newRoot();
    // A vault from before migration 0005: initialised, holding no other keys yet.
    await Vault.open({ store: ts.store, root });
    await ts.raw('delete from vault_sealed_keys');
    const old = await oldInstall(ts.home);
    const events: SealedKeyEvent[] = [];
    const err = await refusal(open(ts.store, newRoot(), ts.home, events));
    expect(err.code).toBe('KEY_INVALID');
    expect(err.details.reason).toBe('root_key_mismatch');
    expect(events).toEqual([]);
    expect(await heldRows(ts.store)).toEqual([]);
    expect(readFileSync(sealKeyPath(ts.home), 'utf8').trim()).toBe(old.sealBytes.toString('base64'));
    expect(existsSync(checkpointKeyPath(ts.home))).toBe(true);
    // The right key imports them.
    const vault = await open(ts.store, root, ts.home, events);
    expect(vault.identitySealKey().open(old.sealed, 'totp:user-1')).toEqual(old.secret);
    expect(existsSync(sealKeyPath(ts.home))).toBe(false);
  });

  it('refuses an old key file others can read, rather than generate a key that would orphan what it sealed', async () => {
    ts = await openTestStore(engine);
    const old = await oldInstall(ts.home);
    chmodSync(sealKeyPath(ts.home), 0o644);
    const root = newRoot();
    const err = await refusal(open(ts.store, root, ts.home));
    expect(err.code).toBe('KEY_INVALID');
    expect(err.details.reason).toBe('insecure_permissions');
    expect(await heldRows(ts.store)).toEqual([]);
    chmodSync(sealKeyPath(ts.home), 0o600);
    const vault = await open(ts.store, root, ts.home);
    expect(vault.identitySealKey().open(old.sealed, 'totp:user-1')).toEqual(old.secret);
  });

  it('two replicas opening at once import each key exactly once', async () => {
    ts = await openTestStore(engine);
    const old = await oldInstall(ts.home);
    const root = newRoot();
    await Vault.open({ store: ts.store, root }); // the key-check exists; the held keys do not
    await ts.raw('delete from vault_sealed_keys');
    const other = await openStore(ts.config);
    extra.push(other);
    const events: SealedKeyEvent[] = [];
    const [a, b] = await Promise.all([open(ts.store, root, ts.home, events), open(other, root, ts.home, events)]);
    expect(events.filter((e) => e.action === 'imported').map((e) => e.key).sort()).toEqual(['audit-checkpoint', 'identity-seal']);
    expect(events.filter((e) => e.action === 'generated')).toEqual([]);
    expect(a.checkpointKey().publicKey).toEqual(old.ckey.publicKey);
    expect(b.checkpointKey().publicKey).toEqual(old.ckey.publicKey);
    expect(b.identitySealKey().open(a.identitySealKey().seal(old.secret, 'r'), 'r')).toEqual(old.secret);
    expect(existsSync(sealKeyPath(ts.home)) || existsSync(checkpointKeyPath(ts.home))).toBe(false);
  });

  it('deletes a leftover file holding the vault’s key (crash after commit) and keeps one holding another key', async () => {
    ts = await openTestStore(engine);
    const old = await oldInstall(ts.home);
    const root = newRoot();
    await open(ts.store, root, ts.home);
    // The import committed but the process died before deleting: the same seal key file is back.
    writeFileSync(sealKeyPath(ts.home), `${old.sealBytes.toString('base64')}\n`, { mode: 0o600 });
    // A replica that had its own checkpoint key.
    const foreign = await loadOrCreateCheckpointKey(ts.home, ORIGIN);
    expect(foreign.publicKey).not.toEqual(old.ckey.publicKey);
    const events: SealedKeyEvent[] = [];
    const vault = await open(ts.store, root, ts.home, events);
    expect(events).toEqual([
      { key: 'identity-seal', action: 'file_removed', path: sealKeyPath(ts.home) },
      { key: 'audit-checkpoint', action: 'file_kept', path: checkpointKeyPath(ts.home) },
    ]);
    expect(existsSync(sealKeyPath(ts.home))).toBe(false);
    expect(existsSync(checkpointKeyPath(ts.home))).toBe(true);
    expect(vault.checkpointKey().publicKey).toEqual(old.ckey.publicKey);
  });

  it('holds no form of either key in the database (the clear public key is found by the same search)', async () => {
    ts = await openTestStore(engine);
    const old = await oldInstall(ts.home);
    const pem = readFileSync(checkpointKeyPath(ts.home), 'utf8');
    const der = Buffer.from(pem.split('\n').filter((l) => l !== '' && !l.startsWith('-----')).join(''), 'base64');
    const vault = await open(ts.store, newRoot(), ts.home);
    // Use both keys, so anything they write is in the database too.
    await ts.store.transact(async (tx) => {
      await tx.db.insertInto('airlock_meta').values({ key: 'test.sealed', value: vault.identitySealKey().seal(randomBytes(20), 'totp:x') }).execute();
    });
    const secrets = [old.sealBytes, old.seed, der];
    let haystack: Buffer;
    if (ts.config.kind === 'sqlite') {
      const file = ts.config.path;
      haystack = Buffer.concat([readFileSync(file), existsSync(`${file}-wal`) ? readFileSync(`${file}-wal`) : Buffer.alloc(0)]);
    } else {
      haystack = await dumpPostgres(ts);
    }
    expect(found(haystack, vault.checkpointKey().publicKey)).toBeGreaterThan(0);
    for (const s of secrets) expect(found(haystack, s)).toBe(0);
    expect(haystack.includes(Buffer.from(pem.split('\n')[1]!, 'utf8'))).toBe(false);
  });

  it('refuses a tampered, swapped or moved key row with KEY_INVALID naming the key and the table', async () => {
    ts = await openTestStore(engine);
    const root = newRoot();
    const vault = await open(ts.store, root, ts.home);
    const rows = await ts.store.db.selectFrom('vault_sealed_keys').selectAll().execute();
    const seal = rows.find((r) => r.name === 'identity-seal')!;
    const cp = rows.find((r) => r.name === 'audit-checkpoint')!;

    const flipped = Buffer.from(seal.sealed);
    flipped[20] = flipped[20]! ^ 1;
    await setRow(ts.store, 'identity-seal', { sealed: flipped });
    let err = await refusal(open(ts.store, root, ts.home));
    expect(err.code).toBe('KEY_INVALID');
    expect(err.details).toEqual({ reason: 'sealed_key_invalid', key: 'identity-seal' });
    expect(err.message).toMatch(/identity sealing key .*vault_sealed_keys row 'identity-seal' was altered/);
    await setRow(ts.store, 'identity-seal', { sealed: seal.sealed });

    // Another public key in clear (to make verifiers trust an attacker's key) is refused by the AAD.
    const attacker = randomBytes(32);
    await setRow(ts.store, 'audit-checkpoint', { public_key: attacker });
    err = await refusal(open(ts.store, root, ts.home));
    expect(err.details).toEqual({ reason: 'sealed_key_invalid', key: 'audit-checkpoint' });
    expect((await refusal(Vault.checkpointPublicKey(ts.store.db, root))).details).toEqual({ reason: 'sealed_key_invalid', key: 'audit-checkpoint' });
    // Without the root key a reader can only take the stored value (documented: pass --key to verify independently).
    expect(await Vault.checkpointPublicKey(ts.store.db)).toEqual(attacker);
    await setRow(ts.store, 'audit-checkpoint', { public_key: cp.public_key });

    // The sealing key moved into the checkpoint row (or back) does not open there.
    await setRow(ts.store, 'audit-checkpoint', { sealed: seal.sealed });
    err = await refusal(open(ts.store, root, ts.home));
    expect(err.details).toEqual({ reason: 'sealed_key_invalid', key: 'audit-checkpoint' });
    await setRow(ts.store, 'audit-checkpoint', { sealed: cp.sealed });

    // Restored rows open again, with the same keys.
    expect((await open(ts.store, root, ts.home)).checkpointKey().publicKey).toEqual(vault.checkpointKey().publicKey);
    // A deleted key-check while the vault holds keys is not silently re-initialised.
    await ts.raw("delete from vault_meta where name = 'root-check'");
    err = await refusal(open(ts.store, newRoot(), ts.home));
    expect(err.details.reason).toBe('meta_missing');
  });

  it('root key rotation re-wraps the held keys: the new key opens them, the old one is refused', async () => {
    ts = await openTestStore(engine);
    const oldRoot = newRoot();
    const vault = await open(ts.store, oldRoot, ts.home);
    const secret = randomBytes(16);
    const sealed = vault.identitySealKey().seal(secret, 'totp:r');
    const before = await ts.store.db.selectFrom('vault_sealed_keys').select(['name', 'sealed']).orderBy('name').execute();
    const next = newRoot();
    await vault.rewrapKeks(next);
    const after = await ts.store.db.selectFrom('vault_sealed_keys').select(['name', 'sealed', 'root_key_id']).orderBy('name').execute();
    expect(after.map((r) => r.root_key_id)).toEqual([next.id, next.id]);
    expect(after.map((r) => r.sealed)).not.toEqual(before.map((r) => r.sealed));
    const reopened = await open(ts.store, next, ts.home);
    expect(reopened.identitySealKey().open(sealed, 'totp:r')).toEqual(secret);
    expect(reopened.checkpointKey().publicKey).toEqual(vault.checkpointKey().publicKey);
    expect((await refusal(open(ts.store, oldRoot, ts.home))).details.reason).toBe('root_key_mismatch');
    expect((await refusal(Vault.checkpointPublicKey(ts.store.db, oldRoot))).details.reason).toBe('root_key_mismatch');
  });
});
