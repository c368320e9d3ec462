/**
 * The vault on every storage engine: envelope round trips, every tamper refused, the wrong root
 * key refused at open, KEK rotation with batched rewrap, root key rotation, the audit HMAC and
 * sealed blobs. Tampering is done the way an attacker with database access would: on the rows.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AirlockError } from '../../src/errors/index.js';
import { openStore } from '../../src/storage/index.js';
import type { Store } from '../../src/storage/index.js';
import { RootKey, Vault, secretScope } from '../../src/vault/index.js';
import type { RewrapProgress, SecretAad } from '../../src/vault/index.js';
import { ENGINES, openTestStore } from '../support/engines.js';
import type { TestStore } from '../support/engines.js';
import { refusal } from '../support/refusal.js';

const T0 = new Date('2026-03-01T12:00:00Z');
const clock = (): Date => T0;
const newRoot = (): RootKey => RootKey.fromBytes(randomBytes(32));

type Scope = Parameters<typeof secretScope>[0];


/** A decrypt that must fail with KEY_INVALID and say nothing of `plaintext`. */
async function expectTamperRefused(promise: Promise<unknown>, plaintext: Buffer): Promise<AirlockError> {
  const err = await refusal(promise);
  expect(err.code).toBe('KEY_INVALID');
  const shown = `${err.message} ${JSON.stringify(err.details)}`;
  for (const form of [plaintext.toString('utf8'), plaintext.toString('hex'), plaintext.toString('base64')]) expect(shown).not.toContain(form);
  return err;
}

async function addProject(store: Store, id: string): Promise<void> {
  await store.transact(async (tx) => {
    await tx.db.insertInto('projects').values({ id, name: id, repo: `/srv/git/${id}`, created_at: T0.toISOString(), created_by: 'user:test' }).execute();
  });
}

async function addSecret(store: Store, id: string, scope: Scope, name = id): Promise<string> {
  const scopeKey = secretScope(scope);
  await store.transact(async (tx) => {
    await tx.db
      .insertInto('secrets')
      .values({
        id,
        name,
        scope_kind: scope.kind,
        project_id: scope.kind === 'global' ? null : scope.projectId,
        environment: scope.kind === 'environment' ? scope.environment : null,
        scope_key: scopeKey,
        owner: 'user:alice',
        description: `test secret ${id}`,
        rotation_interval_s: 86_400 * 90,
        last_rotated_at: null,
        expires_at: null,
        last_read_at: null,
        current_version: 0,
        created_at: T0.toISOString(),
        created_by: 'user:alice',
        updated_at: T0.toISOString(),
        deleted_at: null,
        deleted_by: null,
      })
      .execute();
  });
  return scopeKey;
}

/** Encrypts and stores one version, as the secrets service will: in one transaction. */
async function put(vault: Vault, store: Store, aad: SecretAad, value: Buffer): Promise<void> {
  await store.transact(async (tx) => {
    const enc = await vault.encrypt(tx, aad, value);
    await tx.db
      .insertInto('secret_versions')
      .values({ secret_id: aad.secretId, version: aad.version, ...enc, created_at: T0.toISOString(), created_by: 'user:alice' })
      .execute();
    await tx.db.updateTable('secrets').set({ current_version: aad.version }).where('id', '=', aad.secretId).execute();
  });
}

async function row(store: Store, secretId: string, version: number) {
  return store.db.selectFrom('secret_versions').selectAll().where('secret_id', '=', secretId).where('version', '=', version).executeTakeFirstOrThrow();
}

async function kekIds(store: Store): Promise<{ active: string[]; retired: string[] }> {
  const rows = await store.db.selectFrom('vault_keys').select(['id', 'state']).orderBy('created_at').execute();
  return { active: rows.filter((r) => r.state === 'active').map((r) => r.id), retired: rows.filter((r) => r.state === 'retired').map((r) => r.id) };
}

const flip = (buf: Buffer, at = 0): Buffer => {
  const copy = Buffer.from(buf);
  copy[at % copy.length] = (copy[at % copy.length] ?? 0) ^ 0x01;
  return copy;
};

describe.each(ENGINES)('vault on %s', (engine) => {
  let ts: TestStore;
  let store: Store;
  let rootBytes: Buffer;
  let root: RootKey;
  let vault: Vault;
  let scope: string;
  const value = Buffer.from(`sk_live_${randomBytes(18).toString('hex')}`, 'utf8');

  beforeEach(async () => {
    ts = await openTestStore(engine);
    store = ts.store;
    rootBytes = randomBytes(32);
    root = RootKey.fromBytes(rootBytes);
    vault = await Vault.open({ store, root, clock });
    scope = await addSecret(store, 'sec-a', { kind: 'global' });
  });
  afterEach(async () => {
    await ts.cleanup();
  });

  describe('envelope encryption', () => {
    it('round-trips values of every size under a per-version data key', async () => {
      await addProject(store, 'payments');
      const envScope = await addSecret(store, 'sec-env', { kind: 'environment', projectId: 'payments', environment: 'production' });
      expect(envScope).toBe('project:payments/env:production');
      const values = [value, Buffer.alloc(0), randomBytes(64 * 1024), Buffer.from('ünïcödé ✓', 'utf8')];
      for (const [i, v] of values.entries()) await put(vault, store, { secretId: 'sec-env', version: i + 1, scope: envScope }, v);
      const { active } = await kekIds(store);
      for (const [i, v] of values.entries()) {
        const r = await row(store, 'sec-env', i + 1);
        expect(r).toMatchObject({ scheme: 1, kek_id: active[0], value_size: v.length });
        expect(r.nonce).toHaveLength(12);
        expect(r.tag).toHaveLength(16);
        expect(r.wrapped_dek).toHaveLength(60);
        expect(r.ciphertext).toHaveLength(v.length);
        expect(await vault.decrypt(r, { secretId: 'sec-env', version: i + 1, scope: envScope })).toEqual(v);
      }
      // A fresh data key and nonce per version: the same value never encrypts the same way twice.
      await put(vault, store, { secretId: 'sec-a', version: 1, scope }, value);
      await put(vault, store, { secretId: 'sec-a', version: 2, scope }, value);
      const [r1, r2] = [await row(store, 'sec-a', 1), await row(store, 'sec-a', 2)];
      expect(r1.ciphertext.equals(r2.ciphertext)).toBe(false);
      expect(r1.wrapped_dek.equals(r2.wrapped_dek)).toBe(false);
      expect(r1.nonce.equals(r2.nonce)).toBe(false);
    });

    it.each(['ciphertext', 'tag', 'nonce', 'wrapped_dek'] as const)('refuses a version whose %s has one flipped bit (at every position tried)', async (column) => {
      await put(vault, store, { secretId: 'sec-a', version: 1, scope }, value);
      const good = await row(store, 'sec-a', 1);
      const aad = { secretId: 'sec-a', version: 1, scope };
      for (const at of [0, 5, good[column].length - 1]) {
        const tampered = flip(good[column], at);
        await store.transact(async (tx) => {
          await tx.db.updateTable('secret_versions').set({ [column]: tampered }).where('secret_id', '=', 'sec-a').where('version', '=', 1).execute();
        });
        const err = await expectTamperRefused(vault.decrypt(await row(store, 'sec-a', 1), aad), value);
        expect(err.details).toMatchObject({ reason: 'decrypt_failed', secretId: 'sec-a', version: 1 });
      }
      // Put back, it opens again: the refusals were the tampering, not the test.
      await store.transact(async (tx) => {
        await tx.db.updateTable('secret_versions').set({ [column]: good[column] }).where('secret_id', '=', 'sec-a').execute();
      });
      expect(await vault.decrypt(await row(store, 'sec-a', 1), aad)).toEqual(value);
    });

    it('refuses truncated tags and nonces, an unknown scheme, and a wrapped key cut short', async () => {
      await put(vault, store, { secretId: 'sec-a', version: 1, scope }, value);
      const good = await row(store, 'sec-a', 1);
      const aad = { secretId: 'sec-a', version: 1, scope };
      const variants = [
        { ...good, tag: good.tag.subarray(0, 12) },
        { ...good, tag: good.tag.subarray(0, 4) },
        { ...good, nonce: good.nonce.subarray(0, 8) },
        { ...good, wrapped_dek: good.wrapped_dek.subarray(0, 59) },
        { ...good, ciphertext: good.ciphertext.subarray(1) },
        { ...good, scheme: 2 },
      ];
      for (const v of variants) await expectTamperRefused(vault.decrypt(v, aad), value);
    });

    it('refuses the right row under another binding: secret id, version or scope', async () => {
      await addProject(store, 'payments');
      const projectScope = secretScope({ kind: 'project', projectId: 'payments' });
      await put(vault, store, { secretId: 'sec-a', version: 1, scope }, value);
      const r = await row(store, 'sec-a', 1);
      for (const aad of [
        { secretId: 'sec-b', version: 1, scope },
        { secretId: 'sec-a', version: 2, scope },
        { secretId: 'sec-a', version: 1, scope: projectScope },
        { secretId: 'sec-a', version: 1, scope: secretScope({ kind: 'environment', projectId: 'payments', environment: 'staging' }) },
      ]) {
        await expectTamperRefused(vault.decrypt(r, aad), value);
      }
      expect(await vault.decrypt(r, { secretId: 'sec-a', version: 1, scope })).toEqual(value);
    });

    it('refuses a ciphertext row moved to another secret or another version, and a data key swapped between rows', async () => {
      await addSecret(store, 'sec-b', { kind: 'global' });
      const other = Buffer.from('the-other-secret-value', 'utf8');
      await put(vault, store, { secretId: 'sec-a', version: 1, scope }, value);
      await put(vault, store, { secretId: 'sec-b', version: 1, scope }, other);
      const a1 = await row(store, 'sec-a', 1);
      const b1 = await row(store, 'sec-b', 1);
      const crypto = (r: typeof a1) => ({ scheme: r.scheme, kek_id: r.kek_id, wrapped_dek: r.wrapped_dek, nonce: r.nonce, ciphertext: r.ciphertext, tag: r.tag, value_size: r.value_size });
      await store.transact(async (tx) => {
        // sec-a's value copied over sec-b v1, and replayed as sec-a v2.
        await tx.db.updateTable('secret_versions').set(crypto(a1)).where('secret_id', '=', 'sec-b').where('version', '=', 1).execute();
        await tx.db.insertInto('secret_versions').values({ ...a1, version: 2 }).execute();
      });
      await expectTamperRefused(vault.decrypt(await row(store, 'sec-b', 1), { secretId: 'sec-b', version: 1, scope }), value);
      await expectTamperRefused(vault.decrypt(await row(store, 'sec-a', 2), { secretId: 'sec-a', version: 2, scope }), value);
      // Only the data key swapped in: neither value opens with the other's key.
      await expectTamperRefused(vault.decrypt({ ...a1, wrapped_dek: b1.wrapped_dek }, { secretId: 'sec-a', version: 1, scope }), value);
      await expectTamperRefused(vault.decrypt({ ...b1, wrapped_dek: a1.wrapped_dek }, { secretId: 'sec-b', version: 1, scope }), other);
    });

    it('refuses a version pointed at another or an unknown KEK', async () => {
      await put(vault, store, { secretId: 'sec-a', version: 1, scope }, value);
      const r = await row(store, 'sec-a', 1);
      const next = await vault.rotateKek();
      const aad = { secretId: 'sec-a', version: 1, scope };
      await expectTamperRefused(vault.decrypt({ ...r, kek_id: next }, aad), value);
      await expectTamperRefused(vault.decrypt({ ...r, kek_id: 'kek_0000000000000000' }, aad), value);
      await expectTamperRefused(vault.decrypt({ ...r, kek_id: 'not-a-kek' }, aad), value);
      expect(await vault.decrypt(r, aad)).toEqual(value);
    });

    it('refuses to open when a stored KEK was altered, naming the key and not serving anything', async () => {
      await put(vault, store, { secretId: 'sec-a', version: 1, scope }, value);
      const { active } = await kekIds(store);
      const k = await store.db.selectFrom('vault_keys').select('wrapped').where('id', '=', active[0]!).executeTakeFirstOrThrow();
      await store.transact(async (tx) => {
        await tx.db.updateTable('vault_keys').set({ wrapped: flip(k.wrapped, 20) }).where('id', '=', active[0]!).execute();
      });
      const err = await refusal(Vault.open({ store, root }));
      expect(err.code).toBe('KEY_INVALID');
      expect(err.details).toMatchObject({ reason: 'kek_invalid', kekId: active[0] });
      expect(err.message).toContain('vault_keys');
    });

    it('refuses bad bindings and oversized values before encrypting', async () => {
      await store.transact(async (tx) => {
        const err = await refusal(vault.encrypt(tx, { secretId: '', version: 0, scope: '' }, value));
        expect(err.code).toBe('VALIDATION_FAILED');
        expect(JSON.stringify(err.details)).toContain('secretId');
        expect(JSON.stringify(err.details)).toContain('version');
        expect(JSON.stringify(err.details)).toContain('scope');
        const big = await refusal(vault.encrypt(tx, { secretId: 'sec-a', version: 1, scope }, Buffer.alloc(1024 * 1024 + 1)));
        expect(big.code).toBe('PAYLOAD_TOO_LARGE');
      });
    });
  });

  describe('the root key', () => {
    it('refuses a wrong root key at open naming both key ids, and opens with the right one', async () => {
      await put(vault, store, { secretId: 'sec-a', version: 1, scope }, value);
      const wrong = newRoot();
      const err = await refusal(Vault.open({ store, root: wrong }));
      expect(err.code).toBe('KEY_INVALID');
      expect(err.message).toBe(
        `AIRLOCK_MASTER_KEY does not open this database's vault (root key id expected ${root.id}, got ${wrong.id}); start with the key this database was created with, or restore it from backup`,
      );
      expect(err.details).toMatchObject({ reason: 'root_key_mismatch', expectedKeyId: root.id, keyId: wrong.id });
      // The wrong key left nothing behind: the right one still opens and decrypts.
      const again = await Vault.open({ store, root: RootKey.fromBytes(rootBytes) }); // the same key, loaded afresh
      expect(await again.decrypt(await row(store, 'sec-a', 1), { secretId: 'sec-a', version: 1, scope })).toEqual(value);
      expect(await store.db.selectFrom('vault_meta').select('root_key_id').execute()).toEqual([{ root_key_id: root.id }, { root_key_id: root.id }]);
    }, 30_000);

    it('refuses a key-check record that was altered or deleted, instead of re-initialising the vault', async () => {
      const check = await store.db.selectFrom('vault_meta').select('sealed').where('name', '=', 'root-check').executeTakeFirstOrThrow();
      await store.transact(async (tx) => {
        await tx.db.updateTable('vault_meta').set({ sealed: flip(check.sealed, 30) }).where('name', '=', 'root-check').execute();
      });
      expect((await refusal(Vault.open({ store, root }))).details).toMatchObject({ reason: 'meta_invalid' });

      await store.transact(async (tx) => {
        await tx.db.deleteFrom('vault_meta').execute();
      });
      const err = await refusal(Vault.open({ store, root: newRoot() }));
      expect(err.details).toMatchObject({ reason: 'meta_missing' });
      expect(await store.db.selectFrom('vault_meta').selectAll().execute()).toEqual([]);
    });

    it('initialises once when replicas open a new vault at the same time', async () => {
      const fresh = await openTestStore(engine);
      const others: Store[] = [];
      try {
        for (let i = 0; i < 3; i++) others.push(await openStore(fresh.config));
        const sharedRoot = newRoot();
        const vaults = await Promise.all([fresh.store, ...others].map((s) => Vault.open({ store: s, root: sharedRoot })));
        expect(new Set(vaults.map((v) => v.auditHash('x'))).size).toBe(1);
        const { active, retired } = await kekIds(fresh.store);
        expect(active).toHaveLength(1);
        expect(retired).toHaveLength(0);
        expect(await fresh.store.db.selectFrom('vault_meta').select('name').orderBy('name').execute()).toEqual([{ name: 'audit-hmac' }, { name: 'root-check' }]);
        // Racing with different keys: exactly one wins, the others are refused by the key-check.
        const racing = await openTestStore(engine);
        const racers = [racing.store, await openStore(racing.config), await openStore(racing.config)];
        try {
          const outcomes = await Promise.allSettled(racers.map((s) => Vault.open({ store: s, root: newRoot() })));
          expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
          for (const o of outcomes) if (o.status === 'rejected') expect((o.reason as AirlockError).details).toMatchObject({ reason: 'root_key_mismatch' });
        } finally {
          for (const s of racers.slice(1)) await s.close();
          await racing.cleanup();
        }
      } finally {
        for (const s of others) await s.close();
        await fresh.cleanup();
      }
    });

    it('rotates the root key: KEKs, HMAC key and key-check move to the new key; the old key is refused', async () => {
      await put(vault, store, { secretId: 'sec-a', version: 1, scope }, value);
      const blob = await vault.sealBlob('totp:user-1', Buffer.from('JBSWY3DPEHPK3PXP'));
      const hashBefore = vault.auditHash(value);
      const stale = await Vault.open({ store, root }); // another replica, still on the old key
      const next = newRoot();
      const res = await vault.rewrapKeks(next);
      expect(res).toEqual({ keks: 1, rootKeyId: next.id });
      expect(vault.rootKeyId).toBe(next.id);
      const rows = await store.db.selectFrom('vault_keys').select('root_key_id').execute();
      expect(rows.every((r) => r.root_key_id === next.id)).toBe(true);

      const reopened = await Vault.open({ store, root: next });
      expect(await reopened.decrypt(await row(store, 'sec-a', 1), { secretId: 'sec-a', version: 1, scope })).toEqual(value);
      expect((await reopened.openBlob('totp:user-1', blob)).toString()).toBe('JBSWY3DPEHPK3PXP');
      expect(reopened.auditHash(value)).toBe(hashBefore);
      const err = await refusal(Vault.open({ store, root }));
      expect(err.details).toMatchObject({ reason: 'root_key_mismatch', expectedKeyId: next.id, keyId: root.id });
      // A replica still on the old key must not create keys the new root cannot open.
      expect((await refusal(stale.rotateKek())).details).toMatchObject({ reason: 'root_key_mismatch' });
      expect((await refusal(vault.rewrapKeks(next))).code).toBe('VALIDATION_FAILED');
    });
  });

  describe('KEK rotation and rewrap', () => {
    it('rewraps every data key under the active KEK in batches, reporting progress; old and new data decrypt; idempotent', async () => {
      const firstKek = (await kekIds(store)).active[0]!;
      const values = new Map<number, Buffer>();
      for (let v = 1; v <= 23; v++) {
        values.set(v, randomBytes(40));
        await put(vault, store, { secretId: 'sec-a', version: v, scope }, values.get(v)!);
      }
      const other = await Vault.open({ store, root }); // a replica opened before the rotation
      const second = await vault.rotateKek();
      for (let v = 24; v <= 27; v++) {
        values.set(v, randomBytes(40));
        await put(vault, store, { secretId: 'sec-a', version: v, scope }, values.get(v)!);
      }
      const third = await vault.rotateKek();
      expect(new Set([firstKek, second, third]).size).toBe(3);
      expect(await kekIds(store)).toEqual({ active: [third], retired: [firstKek, second] });
      expect((await row(store, 'sec-a', 24)).kek_id).toBe(second);

      const before = await row(store, 'sec-a', 1);
      const progress: RewrapProgress[] = [];
      const res = await vault.rewrap({ batchSize: 10, onProgress: (p) => progress.push(p) });
      expect(res).toEqual({ rewrapped: 27, batches: 3, kekId: third });
      expect(progress.map((p) => [p.rewrapped, p.batches, p.remaining])).toEqual([
        [10, 1, 17],
        [20, 2, 7],
        [27, 3, 0],
      ]);
      const kekCol = await store.db.selectFrom('secret_versions').select('kek_id').distinct().execute();
      expect(kekCol).toEqual([{ kek_id: third }]);
      for (const [v, expected] of values) {
        const aad = { secretId: 'sec-a', version: v, scope };
        expect(await vault.decrypt(await row(store, 'sec-a', v), aad)).toEqual(expected);
        // The replica learns the KEKs it has never seen from the database.
        expect(await other.decrypt(await row(store, 'sec-a', v), aad)).toEqual(expected);
      }
      expect(await vault.rewrap({ batchSize: 10, onProgress: () => progress.push({} as RewrapProgress) })).toEqual({ rewrapped: 0, batches: 0, kekId: third });
      expect(progress).toHaveLength(3);
      // The value's ciphertext never changes on rewrap; only the data key's wrapping does.
      const after = await row(store, 'sec-a', 1);
      expect(after.ciphertext.equals(before.ciphertext) && after.nonce.equals(before.nonce) && after.tag.equals(before.tag)).toBe(true);
      expect(after.wrapped_dek.equals(before.wrapped_dek)).toBe(false);
    });

    it('keeps serving reads while a rewrap runs', async () => {
      for (let v = 1; v <= 60; v++) await put(vault, store, { secretId: 'sec-a', version: v, scope }, Buffer.from(`value-${v}`));
      await vault.rotateKek();
      const state = { stop: false };
      let reads = 0;
      const reader = (async () => {
        while (!state.stop) {
          const v = (reads % 60) + 1;
          expect((await vault.decrypt(await row(store, 'sec-a', v), { secretId: 'sec-a', version: v, scope })).toString()).toBe(`value-${v}`);
          reads++;
          // Yield as a request handler would: SQLite answers synchronously, so a bare loop would starve the writer.
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
      })();
      const res = await vault.rewrap({ batchSize: 5 });
      state.stop = true;
      await reader;
      expect(res.rewrapped).toBe(60);
      expect(reads).toBeGreaterThan(0);
    });

    it('stops a rewrap at a tampered data key, naming the version, and leaves it under its old KEK', async () => {
      await put(vault, store, { secretId: 'sec-a', version: 1, scope }, value);
      const r = await row(store, 'sec-a', 1);
      await store.transact(async (tx) => {
        await tx.db.updateTable('secret_versions').set({ wrapped_dek: flip(r.wrapped_dek, 40) }).execute();
      });
      await vault.rotateKek();
      const err = await expectTamperRefused(vault.rewrap(), value);
      expect(err.details).toMatchObject({ secretId: 'sec-a', version: 1 });
      expect((await row(store, 'sec-a', 1)).kek_id).toBe(r.kek_id);
    });

    it('rotates inside the caller transaction, so a rolled-back rotation leaves the old KEK active', async () => {
      const before = await kekIds(store);
      await expect(
        store.transact(async (tx) => {
          await vault.rotateKek(tx);
          throw new Error('caller failed');
        }),
      ).rejects.toThrow('caller failed');
      expect(await kekIds(store)).toEqual(before);
      await put(vault, store, { secretId: 'sec-a', version: 1, scope }, value);
      expect((await row(store, 'sec-a', 1)).kek_id).toBe(before.active[0]);
    });
  });

  describe('audit hash', () => {
    it('is stable for a value, different for others, and keyed per vault', async () => {
      const h = vault.auditHash(value);
      expect(h).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
      expect(vault.auditHash(value)).toBe(h);
      expect(vault.auditHash(value.toString('utf8'))).toBe(h);
      expect((await Vault.open({ store, root })).auditHash(value)).toBe(h);
      expect(vault.auditHash(Buffer.concat([value, Buffer.from('x')]))).not.toBe(h);
      expect(vault.auditHash('')).not.toBe(h);
      // Not a bare hash: without the vault's key nobody can test guesses against it.
      expect(h).not.toContain(createHash('sha256').update(value).digest('hex'));
      const elsewhere = await openTestStore(engine);
      try {
        expect((await Vault.open({ store: elsewhere.store, root })).auditHash(value)).not.toBe(h);
      } finally {
        await elsewhere.cleanup();
      }
    });
  });

  describe('sealed blobs', () => {
    it('round-trips, binds the purpose, and refuses every altered part', async () => {
      const seed = randomBytes(20);
      const sealed = await vault.sealBlob('totp:user-1', seed);
      expect(sealed).toMatch(/^av1\.kek_[0-9a-f]{16}(\.[A-Za-z0-9_-]+){4}$/);
      expect(await vault.openBlob('totp:user-1', sealed)).toEqual(seed);
      await expectTamperRefused(vault.openBlob('totp:user-2', sealed), seed);
      const parts = sealed.split('.');
      for (let i = 2; i < parts.length; i++) {
        const altered = [...parts];
        const bytes = Buffer.from(altered[i]!, 'base64url');
        altered[i] = flip(bytes, 3).toString('base64url');
        await expectTamperRefused(vault.openBlob('totp:user-1', altered.join('.')), seed);
      }
      for (const junk of ['', 'v1.a.b.c', sealed.replace('av1.', 'av2.'), `${sealed}.x`, sealed.replace(/kek_[0-9a-f]+/, 'kek_0000000000000000')]) {
        const err = await expectTamperRefused(vault.openBlob('totp:user-1', junk), seed);
        expect(err.details).toMatchObject({ reason: 'unseal_failed', purpose: 'totp:user-1' });
      }
      // A blob sealed before a rotation still opens; one from another vault never does.
      await vault.rotateKek();
      expect(await vault.openBlob('totp:user-1', sealed)).toEqual(seed);
      expect((await vault.sealBlob('totp:user-1', seed)).split('.')[1]).not.toBe(parts[1]);
      const elsewhere = await openTestStore(engine);
      try {
        const foreign = await Vault.open({ store: elsewhere.store, root });
        await expectTamperRefused(foreign.openBlob('totp:user-1', sealed), seed);
      } finally {
        await elsewhere.cleanup();
      }
    });
  });

  describe('secrets tables', () => {
    it('holds at most one active KEK, whatever writes race', async () => {
      const { active } = await kekIds(store);
      const k = await store.db.selectFrom('vault_keys').selectAll().where('id', '=', active[0]!).executeTakeFirstOrThrow();
      const second = store.transact(async (tx) => {
        await tx.db.insertInto('vault_keys').values({ ...k, id: 'kek_00000000000000ff' }).execute();
      });
      await expect(second).rejects.toBeInstanceOf(AirlockError);
      await new Promise<void>((resolve) => setImmediate(resolve)); // see the note in the next test
      expect((await kekIds(store)).active).toEqual(active);
    });

    it('keeps scope_key consistent with the scope columns and names unique per live scope', async () => {
      await addProject(store, 'payments');
      const bad = store.transact(async (tx) => {
        await tx.db
          .insertInto('secrets')
          .values({
            id: 'sec-bad',
            name: 'x',
            scope_kind: 'project',
            project_id: 'payments',
            environment: null,
            scope_key: 'global',
            owner: 'user:alice',
            description: '',
            rotation_interval_s: null,
            last_rotated_at: null,
            expires_at: null,
            last_read_at: null,
            current_version: 0,
            created_at: T0.toISOString(),
            created_by: 'user:alice',
            updated_at: T0.toISOString(),
            deleted_at: null,
            deleted_by: null,
          })
          .execute();
      });
      await expect(bad).rejects.toBeInstanceOf(AirlockError);
      await expect(addSecret(store, 'sec-dup', { kind: 'global' }, 'sec-a')).rejects.toBeInstanceOf(AirlockError);
      // Store.transact loses a unit queued in the few microtasks between one drain ending and its
      // clean-up (reported with the vault work); a macrotask boundary steps around it.
      await new Promise<void>((resolve) => setImmediate(resolve));
      // The same name in another scope, or once the first is deleted, is fine.
      await addSecret(store, 'sec-p', { kind: 'project', projectId: 'payments' }, 'sec-a');
      await store.transact(async (tx) => {
        await tx.db.updateTable('secrets').set({ deleted_at: T0.toISOString(), deleted_by: 'user:alice' }).where('id', '=', 'sec-a').execute();
      });
      await addSecret(store, 'sec-a2', { kind: 'global' }, 'sec-a');
    });
  });
});
