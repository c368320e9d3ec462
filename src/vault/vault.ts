/**
 * The vault: envelope encryption of secret versions and of other keys' blobs, under a keyring of
 * key-encryption keys (KEKs) wrapped by the root key.
 *
 *   root key --HKDF--> wrapping key --AES-GCM--> KEKs (vault_keys), key-check and HMAC key (vault_meta),
 *                                                 other domains' keys (vault_sealed_keys)
 *   KEK --AES-GCM--> per-version data key (secret_versions.wrapped_dek) --AES-GCM--> value
 *
 * Threat: someone holding the database (a dump, a DBA) learns nothing of any value without the
 * root key, and cannot move a ciphertext to another secret, version or scope (AAD). A server
 * started with the wrong root key refuses to start rather than serve errors or garbage.
 */
import { createHmac, createSecretKey, randomBytes, timingSafeEqual } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import { AirlockError, ValidationError } from '../errors/index.js';
import type { FieldIssue } from '../errors/index.js';
import { isDriverError, toStorageError } from '../storage/index.js';
import type { Database, Store, Tx } from '../storage/index.js';
import { KEY_BYTES, OpenFailed, encodeAad, unwrapKey, wrapKey } from './aead.js';
import { SCHEME, blobContext, formatBlob, isKekId, kekFromBytes, newKek, openEnvelope, parseBlob, rewrapDek, sealEnvelope, secretContext } from './envelope.js';
import type { Kek } from './envelope.js';
import { MASTER_KEY_ENV, rootWrappingKey } from './root-key.js';
import type { RootKey } from './root-key.js';
import { SEALED_KEY_DESCRIPTIONS, SEALED_KEY_NAMES, ed25519FromSeed, ed25519PublicKey, newEd25519Seed, sealKeyOver, sealedKeyAad } from './sealed-keys.js';
import type { CheckpointKeyPair, LegacyKeyFiles, SealKey, SealedKeyEvent, SealedKeyName } from './sealed-keys.js';

/** Largest value the vault encrypts in one piece. */
export const MAX_PLAINTEXT_BYTES = 1024 * 1024;
/** Versions re-wrapped per transaction by {@link Vault.rewrap} unless told otherwise. */
export const DEFAULT_REWRAP_BATCH = 500;

const CHECK_NAME = 'root-check';
const HMAC_NAME = 'audit-hmac';
const IDENTITY_SEAL: SealedKeyName = 'identity-seal';
const CHECKPOINT: SealedKeyName = 'audit-checkpoint';
/** The known plaintext of the key-check record (32 bytes, so it is wrapped like a key). */
const KEY_CHECK = Buffer.concat([Buffer.from('airlock vault key check v1', 'utf8'), Buffer.alloc(6)]);
const AUDIT_HASH_PREFIX = 'hmac-sha256:';

/** What a secret version's ciphertext is bound to. `scope` is `secrets.scope_key` (see {@link secretScope}). */
export interface SecretAad {
  readonly secretId: string;
  readonly version: number;
  readonly scope: string;
}

/** The encrypted columns of a `secret_versions` row, as written by {@link Vault.encrypt}. */
export type VersionCiphertext = Pick<Database['secret_versions'], 'scheme' | 'kek_id' | 'wrapped_dek' | 'nonce' | 'ciphertext' | 'tag' | 'value_size'>;

/** Reported after each batch of {@link Vault.rewrap}. */
export interface RewrapProgress {
  readonly rewrapped: number;
  readonly batches: number;
  /** Versions still under another KEK when the batch committed. */
  readonly remaining: number;
  readonly kekId: string;
}

/** Options of {@link Vault.rewrap}. */
export interface RewrapOptions {
  readonly batchSize?: number;
  readonly onProgress?: (progress: RewrapProgress) => void;
}

/** Dependencies of {@link Vault.open}. */
export interface VaultDeps {
  readonly store: Store;
  readonly root: RootKey;
  readonly clock?: () => Date;
  /**
   * Key files of an install from before the keys moved into the vault: a key the vault does not
   * hold yet is imported from its file (same bytes, so what it sealed or signed stays valid), and
   * the file is deleted once the vault holds that key.
   */
  readonly legacyKeys?: LegacyKeyFiles;
  /** Told what opening did with the held keys (generated, imported, old file removed or kept); never key bytes. */
  readonly onSealedKey?: (event: SealedKeyEvent) => void;
}

/** The scope string bound into a version's AAD: what the database checks `secrets.scope_key` against. */
export function secretScope(scope: { kind: 'global' } | { kind: 'project'; projectId: string } | { kind: 'environment'; projectId: string; environment: string }): string {
  switch (scope.kind) {
    case 'global':
      return 'global';
    case 'project':
      return `project:${scope.projectId}`;
    case 'environment':
      return `project:${scope.projectId}/env:${scope.environment}`;
  }
}

const kekAad = (kekId: string): Buffer => encodeAad(['kek', kekId]);
const checkAad = (rootKeyId: string): Buffer => encodeAad(['root-check', rootKeyId]);
const hmacAad = (): Buffer => encodeAad(['audit-hmac']);

function vaultError(reason: string, message: string, details: Record<string, unknown> = {}): AirlockError {
  return new AirlockError('KEY_INVALID', message, { reason, ...details });
}

function decryptFailed(aad: SecretAad): AirlockError {
  // One message for every cause: which layer failed is of no use to a caller and of some use to an attacker.
  return vaultError('decrypt_failed', `secret ${aad.secretId} version ${aad.version} could not be decrypted: its ciphertext, data key or binding (secret, version, scope) was altered, or its key is gone`, {
    secretId: aad.secretId,
    version: aad.version,
  });
}

function blobFailed(purpose: string): AirlockError {
  return vaultError('unseal_failed', `sealed ${purpose} could not be opened: it belongs to another record, was altered, or its key is gone`, { purpose });
}

function checkAadInput(aad: SecretAad): void {
  const issues: FieldIssue[] = [];
  if (typeof aad.secretId !== 'string' || aad.secretId === '' || aad.secretId.length > 200) issues.push({ path: 'secretId', message: 'must be a non-empty string of at most 200 characters' });
  if (!Number.isSafeInteger(aad.version) || aad.version < 1) issues.push({ path: 'version', message: 'must be an integer >= 1' });
  if (typeof aad.scope !== 'string' || aad.scope === '' || aad.scope.length > 500) issues.push({ path: 'scope', message: 'must be a non-empty string of at most 500 characters' });
  if (issues.length > 0) throw new ValidationError('invalid vault binding', issues);
}

function checkPurpose(purpose: string): void {
  if (typeof purpose !== 'string' || purpose === '' || purpose.length > 500) throw new ValidationError('invalid sealing purpose', [{ path: 'purpose', message: 'must be a non-empty string of at most 500 characters' }]);
}

function checkPlaintext(plaintext: Buffer): void {
  if (plaintext.length > MAX_PLAINTEXT_BYTES) {
    throw new AirlockError('PAYLOAD_TOO_LARGE', `a vault value holds at most ${MAX_PLAINTEXT_BYTES} bytes, not ${plaintext.length}`, { limit: MAX_PLAINTEXT_BYTES, size: plaintext.length });
  }
}

/** Serialises creation and rotation across replicas (SQLite's BEGIN IMMEDIATE already serialises writers). */
async function lockTables(tx: Tx, tables: readonly ('vault_keys' | 'vault_meta' | 'vault_sealed_keys')[]): Promise<void> {
  if (tx.engine !== 'postgres') return;
  // Conflicts with itself, not with readers: decryption continues while a rotation runs.
  for (const t of tables) await sql`lock table ${sql.table(t)} in share row exclusive mode`.execute(tx.db);
}

async function readSafely<T>(what: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    throw isDriverError(err) ? toStorageError(err, what) : err;
  }
}

/** Envelope encryption over the keyring stored in `vault_keys`; see the module comment. */
export class Vault {
  private readonly store: Store;
  private readonly clock: () => Date;
  private root: RootKey;
  private readonly hmacKey: KeyObject;
  /** Unwrapped KEKs by id. Never evicted: KEKs are never deleted, and a row always names one that exists. */
  private readonly keks = new Map<string, Kek>();
  /** The keys held for other domains, unwrapped once at open. */
  private held: { readonly seal: SealKey; readonly checkpoint: CheckpointKeyPair } | undefined;

  private constructor(store: Store, root: RootKey, clock: () => Date, hmacKey: KeyObject) {
    this.store = store;
    this.root = root;
    this.clock = clock;
    this.hmacKey = hmacKey;
  }

  /**
   * Opens the vault of `store` with `root`. On first use creates the key-check, the audit HMAC
   * key and the first KEK in one transaction (serialised across replicas); otherwise verifies the
   * key-check and refuses a wrong root key with KEY_INVALID naming the expected and given key ids.
   * Then loads the keys it holds for other domains, creating (or importing from `legacyKeys`)
   * any it does not hold yet in one transaction under the same lock.
   *
   * @example
   * const vault = await Vault.open({ store, root: (await loadRootKey({ env, home })).key });
   */
  static async open(deps: VaultDeps): Promise<Vault> {
    const { store, root } = deps;
    const clock = deps.clock ?? (() => new Date());
    rootWrappingKey(root); // refuses anything but a real RootKey before touching the database
    let meta = await readSafely('reading the vault key-check', () => readMeta(store.db));
    if (meta.get(CHECK_NAME) === undefined) {
      await store.transact(async (tx) => {
        await lockTables(tx, ['vault_meta', 'vault_keys']);
        await initialise(tx, root, clock());
      });
      meta = await readSafely('reading the vault key-check', () => readMeta(store.db));
    }
    const vault = new Vault(store, root, clock, verifyMeta(meta, root));
    await readSafely('reading the vault keys', () => vault.loadKeks(store.db));
    await vault.loadHeldKeys(deps.legacyKeys ?? {}, deps.onSealedKey ?? (() => undefined));
    return vault;
  }

  /**
   * The public half of the checkpoint key as stored, for verifier-only readers (no vault open, no
   * write). With `root`, the row is authenticated first (its public key is bound into the AAD of
   * the sealed private key), so a public key swapped in the database is refused; without it, the
   * stored value is taken as is. Undefined when the vault holds no checkpoint key yet.
   */
  static async checkpointPublicKey(db: Kysely<Database>, root?: RootKey): Promise<Buffer | undefined> {
    const row = await readSafely('reading the vault checkpoint key', () => db.selectFrom('vault_sealed_keys').selectAll().where('name', '=', CHECKPOINT).executeTakeFirst());
    if (row === undefined) return undefined;
    if (root === undefined) {
      if (row.public_key?.length !== KEY_BYTES) throw sealedKeyInvalid(CHECKPOINT);
      return Buffer.from(row.public_key);
    }
    if (row.root_key_id !== root.id) throw mismatch(row.root_key_id, root.id);
    const seed = openSealedRow(row, rootWrappingKey(root));
    try {
      return checkpointPair(row, seed).publicKey;
    } finally {
      seed.fill(0);
    }
  }

  /** Id of the root key in use (safe to show). */
  get rootKeyId(): string {
    return this.root.id;
  }

  /** The identity sealing key (TOTP seeds, token signing keys, OIDC verifiers), held sealed by the root key. */
  identitySealKey(): SealKey {
    return this.heldKeys().seal;
  }

  /** The audit checkpoint signing key, held sealed by the root key; its public key is also stored in clear. */
  checkpointKey(): CheckpointKeyPair {
    return this.heldKeys().checkpoint;
  }

  /**
   * Encrypts one secret version under a fresh data key wrapped by the active KEK (read in `tx`).
   * The result is the encrypted columns of its `secret_versions` row.
   */
  async encrypt(tx: Tx, aad: SecretAad, plaintext: Buffer): Promise<VersionCiphertext> {
    checkAadInput(aad);
    checkPlaintext(plaintext);
    const kek = await this.activeKek(tx.db);
    const e = sealEnvelope(kek, secretContext(aad.secretId, aad.version, aad.scope), plaintext);
    return { scheme: SCHEME, kek_id: e.kekId, wrapped_dek: e.wrappedDek, nonce: e.nonce, ciphertext: e.ciphertext, tag: e.tag, value_size: plaintext.length };
  }

  /**
   * Decrypts a version row for the secret, version and scope it must belong to. Any altered byte
   * (ciphertext, nonce, tag, wrapped key, KEK) or a row moved to another binding: KEY_INVALID,
   * with nothing of the value in the error.
   */
  async decrypt(row: Omit<VersionCiphertext, 'value_size'>, aad: SecretAad): Promise<Buffer> {
    checkAadInput(aad);
    if (row.scheme !== SCHEME || !isKekId(row.kek_id)) throw decryptFailed(aad);
    const kek = await this.kekById(row.kek_id, this.store.db);
    if (kek === undefined) throw decryptFailed(aad);
    try {
      return openEnvelope(kek, secretContext(aad.secretId, aad.version, aad.scope), {
        kekId: row.kek_id,
        wrappedDek: row.wrapped_dek,
        nonce: row.nonce,
        ciphertext: row.ciphertext,
        tag: row.tag,
      });
    } catch (err) {
      if (err instanceof OpenFailed) throw decryptFailed(aad);
      throw err;
    }
  }

  /**
   * Makes a new active KEK; the previous ones are retired (they still decrypt). Runs in `tx` if
   * given, so the caller can audit it atomically. Follow with {@link rewrap}.
   */
  async rotateKek(tx?: Tx): Promise<string> {
    const work = async (t: Tx): Promise<string> => {
      await lockTables(t, ['vault_keys']);
      await this.assertRootCurrent(t.db);
      const now = this.clock().toISOString();
      await t.db.updateTable('vault_keys').set({ state: 'retired', retired_at: now }).where('state', '=', 'active').execute();
      return this.insertKek(t.db, now);
    };
    return tx === undefined ? this.store.transact(work) : work(tx);
  }

  /**
   * Re-wraps every version's data key under the active KEK, `batchSize` versions per transaction,
   * until none is left under another KEK. Readers keep working throughout: a row always names a
   * KEK that exists. Idempotent; rows written meanwhile under an older KEK are picked up too.
   */
  async rewrap(options: RewrapOptions = {}): Promise<{ rewrapped: number; batches: number; kekId: string }> {
    const batchSize = options.batchSize ?? DEFAULT_REWRAP_BATCH;
    if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > 10_000) {
      throw new ValidationError('invalid rewrap options', [{ path: 'batchSize', message: 'must be an integer from 1 to 10000' }]);
    }
    let rewrapped = 0;
    let batches = 0;
    for (;;) {
      // Between batches let other work run (and the store's executor finish its previous drain).
      if (batches > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const r = await this.store.transact((tx) => this.rewrapBatch(tx, batchSize));
      if (r.selected === 0) return { rewrapped, batches, kekId: r.kekId };
      batches++;
      rewrapped += r.updated;
      options.onProgress?.({ rewrapped, batches, remaining: r.remaining, kekId: r.kekId });
    }
  }

  /**
   * Root key rotation: re-wraps every KEK, the audit HMAC key and the key-check under `newRoot`, in
   * one transaction. Afterwards this vault uses `newRoot`; other replicas still on the old key
   * refuse to create keys and must restart with the new one.
   */
  async rewrapKeks(newRoot: RootKey): Promise<{ keks: number; rootKeyId: string }> {
    const newWrap = rootWrappingKey(newRoot);
    if (newRoot.id === this.root.id) throw new ValidationError('invalid root key rotation', [{ path: 'newRoot', message: 'is the root key already in use' }]);
    const oldWrap = rootWrappingKey(this.root);
    const keks = await this.store.transact(async (tx) => {
      await lockTables(tx, ['vault_meta', 'vault_keys']);
      await this.assertRootCurrent(tx.db);
      const now = this.clock().toISOString();
      const rows = await tx.db.selectFrom('vault_keys').select(['id', 'wrapped']).execute();
      for (const row of rows) {
        const bytes = this.unwrapKekRow(row.id, row.wrapped, oldWrap);
        try {
          await tx.db
            .updateTable('vault_keys')
            .set({ wrapped: wrapKey(newWrap, kekAad(row.id), bytes), root_key_id: newRoot.id })
            .where('id', '=', row.id)
            .execute();
        } finally {
          bytes.fill(0);
        }
      }
      const hmac = await tx.db.selectFrom('vault_meta').select('sealed').where('name', '=', HMAC_NAME).executeTakeFirst();
      if (hmac === undefined) throw vaultError('meta_missing', 'the vault audit HMAC key is missing: the vault_meta table was altered; restore it from backup');
      const hmacBytes = openMetaKey(hmac.sealed, oldWrap, hmacAad(), 'audit HMAC key');
      try {
        await tx.db.updateTable('vault_meta').set({ sealed: wrapKey(newWrap, hmacAad(), hmacBytes), root_key_id: newRoot.id, updated_at: now }).where('name', '=', HMAC_NAME).execute();
      } finally {
        hmacBytes.fill(0);
      }
      for (const row of await tx.db.selectFrom('vault_sealed_keys').selectAll().execute()) {
        const held = openSealedRow(row, oldWrap);
        try {
          await tx.db
            .updateTable('vault_sealed_keys')
            .set({ sealed: wrapKey(newWrap, sealedKeyAad(row.name, row.public_key), held), root_key_id: newRoot.id })
            .where('name', '=', row.name)
            .execute();
        } finally {
          held.fill(0);
        }
      }
      await tx.db.updateTable('vault_meta').set({ sealed: sealCheck(newRoot), root_key_id: newRoot.id, updated_at: now }).where('name', '=', CHECK_NAME).execute();
      return rows.length;
    });
    this.root = newRoot;
    return { keks, rootKeyId: newRoot.id };
  }

  /**
   * `hmac-sha256:<hex>` of `value` under the vault's own key: lets an investigator match a leaked
   * value to a secret without the value being stored anywhere (as Vault's audit hashes).
   */
  auditHash(value: Buffer | string): string {
    return AUDIT_HASH_PREFIX + createHmac('sha256', this.hmacKey).update(value).digest('hex');
  }

  /**
   * Seals a small secret (a signing key, a TOTP seed) for `purpose` (e.g. `totp:<userId>`), which
   * binds it: the text opens only for the same purpose. Uses the active KEK.
   */
  async sealBlob(purpose: string, plaintext: Buffer): Promise<string> {
    checkPurpose(purpose);
    checkPlaintext(plaintext);
    const kek = await this.activeKek(this.store.db);
    return formatBlob(sealEnvelope(kek, blobContext(purpose), plaintext));
  }

  /** Opens what {@link sealBlob} made for the same purpose, or KEY_INVALID. */
  async openBlob(purpose: string, sealed: string): Promise<Buffer> {
    checkPurpose(purpose);
    let envelope;
    try {
      envelope = parseBlob(sealed);
    } catch {
      throw blobFailed(purpose);
    }
    const kek = await this.kekById(envelope.kekId, this.store.db);
    if (kek === undefined) throw blobFailed(purpose);
    try {
      return openEnvelope(kek, blobContext(purpose), envelope);
    } catch (err) {
      if (err instanceof OpenFailed) throw blobFailed(purpose);
      throw err;
    }
  }

  // --- keys held for other domains ------------------------------------------------------

  private heldKeys(): { readonly seal: SealKey; readonly checkpoint: CheckpointKeyPair } {
    if (this.held === undefined) throw new AirlockError('INTERNAL', 'the vault keys are not loaded');
    return this.held;
  }

  /**
   * Loads the held keys, creating the missing ones first (imported from their old files if
   * there are any), then deletes old files whose key the vault now holds. A file is deleted only
   * after the commit: a crash in between leaves both, and the next open deletes the file.
   */
  private async loadHeldKeys(legacy: LegacyKeyFiles, notify: (event: SealedKeyEvent) => void): Promise<void> {
    const read = (): Promise<Map<string, Database['vault_sealed_keys']>> =>
      readSafely('reading the vault sealed keys', async () => new Map((await this.store.db.selectFrom('vault_sealed_keys').selectAll().execute()).map((r) => [r.name, r])));
    let rows = await read();
    const missing = SEALED_KEY_NAMES.filter((name) => !rows.has(name));
    if (missing.length > 0) {
      for (const event of await this.createHeldKeys(missing, legacy)) notify(event);
      rows = await read();
    }
    const wrap = rootWrappingKey(this.root);
    const opened = (name: SealedKeyName): { row: Database['vault_sealed_keys']; bytes: Buffer } => {
      const row = rows.get(name);
      if (row === undefined) throw vaultError('sealed_key_missing', `the vault's ${SEALED_KEY_DESCRIPTIONS[name]} is missing after it was created; check the vault_sealed_keys table`, { key: name });
      if (row.root_key_id !== this.root.id) throw mismatch(row.root_key_id, this.root.id);
      return { row, bytes: openSealedRow(row, wrap) };
    };
    const seal = opened(IDENTITY_SEAL);
    try {
      const checkpoint = opened(CHECKPOINT);
      try {
        this.held = { seal: sealKeyOver(seal.bytes), checkpoint: checkpointPair(checkpoint.row, checkpoint.bytes) };
        await retireLegacyFile(IDENTITY_SEAL, legacy[IDENTITY_SEAL], seal.bytes, notify);
        await retireLegacyFile(CHECKPOINT, legacy[CHECKPOINT], checkpoint.bytes, notify);
      } finally {
        checkpoint.bytes.fill(0);
      }
    } finally {
      seal.bytes.fill(0);
    }
  }

  /** Creates the `missing` held keys under the vault lock (another replica may have just done it). */
  private async createHeldKeys(missing: readonly SealedKeyName[], legacy: LegacyKeyFiles): Promise<SealedKeyEvent[]> {
    // Files are read before the transaction (no file I/O under the lock). A file that exists but
    // cannot be read safely stops the open: generating a new key instead would orphan what the
    // old one sealed or signed.
    const fromFiles = new Map<SealedKeyName, { bytes: Buffer; path: string }>();
    try {
      for (const name of missing) {
        const file = legacy[name];
        const bytes = await file?.read();
        if (file === undefined || bytes === undefined) continue;
        if (bytes.length !== KEY_BYTES) {
          bytes.fill(0);
          throw vaultError('legacy_key_invalid', `${file.path} does not hold a ${KEY_BYTES}-byte ${SEALED_KEY_DESCRIPTIONS[name]}; restore it from backup`, { key: name, path: file.path });
        }
        fromFiles.set(name, { bytes, path: file.path });
      }
      return await this.store.transact(async (tx) => {
        await lockTables(tx, ['vault_sealed_keys']);
        await this.assertRootCurrent(tx.db);
        const present = new Set((await tx.db.selectFrom('vault_sealed_keys').select('name').execute()).map((r) => r.name));
        const events: SealedKeyEvent[] = [];
        const at = this.clock().toISOString();
        for (const name of missing) {
          if (present.has(name)) continue;
          const file = fromFiles.get(name);
          await insertHeldKey(tx.db, this.root, name, file?.bytes, at);
          events.push(file === undefined ? { key: name, action: 'generated' } : { key: name, action: 'imported', path: file.path });
        }
        return events;
      });
    } finally {
      for (const f of fromFiles.values()) f.bytes.fill(0);
    }
  }

  // --- keyring ---------------------------------------------------------------------------

  private unwrapKekRow(id: string, wrapped: Buffer, wrap: KeyObject): Buffer {
    try {
      return unwrapKey(wrap, kekAad(id), wrapped);
    } catch {
      throw vaultError('kek_invalid', `vault key ${id} cannot be opened with root key ${this.root.id}: the vault_keys table was altered; restore it from backup`, { kekId: id });
    }
  }

  /** Unwraps every KEK not yet in memory. A KEK wrapped by another root means the root was rotated elsewhere. */
  private async loadKeks(db: Kysely<Database>): Promise<void> {
    const rows = await db.selectFrom('vault_keys').select(['id', 'wrapped', 'root_key_id']).execute();
    for (const row of rows) {
      if (this.keks.has(row.id)) continue;
      if (row.root_key_id !== this.root.id) {
        throw vaultError(
          'root_key_rotated',
          `vault key ${row.id} is wrapped by root key ${row.root_key_id}, not by this process's ${this.root.id}: the root key was rotated; restart with the new ${MASTER_KEY_ENV}`,
          { kekId: row.id, expectedKeyId: row.root_key_id, keyId: this.root.id },
        );
      }
      const bytes = this.unwrapKekRow(row.id, row.wrapped, rootWrappingKey(this.root));
      try {
        this.keks.set(row.id, kekFromBytes(row.id, bytes));
      } finally {
        bytes.fill(0);
      }
    }
  }

  private async kekById(id: string, db: Kysely<Database>): Promise<Kek | undefined> {
    const known = this.keks.get(id);
    if (known !== undefined) return known;
    // Created by another replica since we loaded: one re-read.
    await readSafely('reading the vault keys', () => this.loadKeks(db));
    return this.keks.get(id);
  }

  private async activeKek(db: Kysely<Database>): Promise<Kek> {
    const row = await readSafely('reading the active vault key', () => db.selectFrom('vault_keys').select('id').where('state', '=', 'active').executeTakeFirst());
    if (row === undefined) throw vaultError('no_active_kek', 'the vault has no active key: the vault_keys table was altered; restore it from backup');
    const kek = await this.kekById(row.id, db);
    if (kek === undefined) throw vaultError('kek_invalid', `vault key ${row.id} could not be loaded`, { kekId: row.id });
    return kek;
  }

  private async insertKek(db: Kysely<Database>, now: string): Promise<string> {
    const { kek, bytes } = newKek();
    try {
      await db
        .insertInto('vault_keys')
        .values({ id: kek.id, wrapped: wrapKey(rootWrappingKey(this.root), kekAad(kek.id), bytes), root_key_id: this.root.id, state: 'active', created_at: now, retired_at: null })
        .execute();
    } finally {
      bytes.fill(0);
    }
    this.keks.set(kek.id, kek);
    return kek.id;
  }

  /** Refuses to create or rewrap keys under a root key that is no longer the database's (rotated by another replica). */
  private async assertRootCurrent(db: Kysely<Database>): Promise<void> {
    const check = await db.selectFrom('vault_meta').select('root_key_id').where('name', '=', CHECK_NAME).executeTakeFirst();
    if (check?.root_key_id !== this.root.id) throw mismatch(check?.root_key_id ?? '(none)', this.root.id);
  }

  private async rewrapBatch(tx: Tx, batchSize: number): Promise<{ selected: number; updated: number; remaining: number; kekId: string }> {
    const active = await this.activeKek(tx.db);
    const rows = await tx.db
      .selectFrom('secret_versions')
      .select(['secret_id', 'version', 'kek_id', 'wrapped_dek'])
      .where('kek_id', '<>', active.id)
      .orderBy('secret_id')
      .orderBy('version')
      .limit(batchSize)
      .execute();
    let updated = 0;
    for (const row of rows) {
      // The data key is bound to (secret, version) only, so the row alone suffices; scope is for messages.
      const aad: SecretAad = { secretId: row.secret_id, version: row.version, scope: '' };
      const from = await this.kekById(row.kek_id, tx.db);
      if (from === undefined) throw decryptFailed(aad);
      let wrapped: Buffer;
      try {
        wrapped = rewrapDek(from, active, secretContext(row.secret_id, row.version, ''), row.wrapped_dek);
      } catch (err) {
        if (err instanceof OpenFailed) throw decryptFailed(aad);
        throw err;
      }
      // Conditional on the KEK we read: a concurrent writer's change is never overwritten.
      const res = await tx.db
        .updateTable('secret_versions')
        .set({ kek_id: active.id, wrapped_dek: wrapped })
        .where('secret_id', '=', row.secret_id)
        .where('version', '=', row.version)
        .where('kek_id', '=', row.kek_id)
        .executeTakeFirst();
      updated += Number(res.numUpdatedRows);
    }
    const remaining =
      rows.length < batchSize
        ? 0
        : Number((await tx.db.selectFrom('secret_versions').select((eb) => eb.fn.countAll().as('n')).where('kek_id', '<>', active.id).executeTakeFirst())?.n ?? 0);
    return { selected: rows.length, updated, remaining, kekId: active.id };
  }
}

// --- first use and the key-check ------------------------------------------------------------

async function readMeta(db: Kysely<Database>): Promise<Map<string, Database['vault_meta']>> {
  const rows = await db.selectFrom('vault_meta').selectAll().execute();
  return new Map(rows.map((r) => [r.name, r]));
}

/** The key-check: a known constant sealed under the root key and bound to its id. */
function sealCheck(root: RootKey): Buffer {
  return wrapKey(rootWrappingKey(root), checkAad(root.id), KEY_CHECK);
}

function mismatch(expected: string, got: string): AirlockError {
  return vaultError(
    'root_key_mismatch',
    `${MASTER_KEY_ENV} does not open this database's vault (root key id expected ${expected}, got ${got}); start with the key this database was created with, or restore it from backup`,
    { expectedKeyId: expected, keyId: got },
  );
}

function sealedKeyInvalid(name: SealedKeyName): AirlockError {
  return vaultError('sealed_key_invalid', `the vault's ${SEALED_KEY_DESCRIPTIONS[name]} cannot be opened: its vault_sealed_keys row '${name}' was altered; restore it from backup`, { key: name });
}

function isSealedKeyName(name: string): name is SealedKeyName {
  return (SEALED_KEY_NAMES as readonly string[]).includes(name);
}

/** Unwraps a held key's row with the root wrapping key (its name and public key are the AAD). */
function openSealedRow(row: Database['vault_sealed_keys'], wrap: KeyObject): Buffer {
  try {
    return unwrapKey(wrap, sealedKeyAad(row.name, row.public_key), row.sealed);
  } catch {
    if (isSealedKeyName(row.name)) throw sealedKeyInvalid(row.name);
    throw vaultError('sealed_key_invalid', 'a vault_sealed_keys row cannot be opened: the table was altered; restore it from backup');
  }
}

/** The checkpoint key from its row's seed; the stored public key must be the seed's. */
function checkpointPair(row: Database['vault_sealed_keys'], seed: Buffer): CheckpointKeyPair {
  let privateKey: KeyObject;
  try {
    privateKey = ed25519FromSeed(seed);
  } catch {
    throw sealedKeyInvalid(CHECKPOINT);
  }
  const publicKey = ed25519PublicKey(privateKey);
  if (row.public_key === null || !publicKey.equals(row.public_key)) throw sealedKeyInvalid(CHECKPOINT);
  return { privateKey, publicKey };
}

/** Inserts one held key: `imported` bytes (copied), or a new key. */
async function insertHeldKey(db: Kysely<Database>, root: RootKey, name: SealedKeyName, imported: Buffer | undefined, at: string): Promise<void> {
  let bytes: Buffer;
  let publicKey: Buffer | null = null;
  if (name === CHECKPOINT) {
    if (imported === undefined) {
      ({ seed: bytes, publicKey } = newEd25519Seed());
    } else {
      bytes = Buffer.from(imported);
      publicKey = ed25519PublicKey(ed25519FromSeed(bytes));
    }
  } else {
    bytes = imported === undefined ? randomBytes(KEY_BYTES) : Buffer.from(imported);
  }
  try {
    await db
      .insertInto('vault_sealed_keys')
      .values({
        name,
        root_key_id: root.id,
        sealed: wrapKey(rootWrappingKey(root), sealedKeyAad(name, publicKey), bytes),
        public_key: publicKey,
        origin: imported === undefined ? 'generated' : 'imported',
        created_at: at,
      })
      .execute();
  } finally {
    bytes.fill(0);
  }
}

/**
 * Deletes an old key file once the vault holds the same key. A file holding another key (a
 * replica that had its own checkpoint key, a stray copy) is left alone and reported: it may be
 * the only copy of something an operator still needs.
 */
async function retireLegacyFile(name: SealedKeyName, file: LegacyKeyFiles[SealedKeyName], held: Buffer, notify: (event: SealedKeyEvent) => void): Promise<void> {
  if (file === undefined) return;
  let bytes: Buffer | undefined;
  try {
    bytes = await file.read();
  } catch {
    notify({ key: name, action: 'file_kept', path: file.path });
    return;
  }
  if (bytes === undefined) return;
  const same = bytes.length === held.length && timingSafeEqual(bytes, held);
  bytes.fill(0);
  if (!same) {
    notify({ key: name, action: 'file_kept', path: file.path });
    return;
  }
  try {
    await unlink(file.path);
  } catch (err) {
    // Another replica sharing this home removed it first.
    if (err instanceof Error && 'code' in err && err.code === 'ENOENT') return;
    notify({ key: name, action: 'file_remove_failed', path: file.path });
    return;
  }
  notify({ key: name, action: 'file_removed', path: file.path });
}

function openMetaKey(sealed: Buffer, wrap: KeyObject, aad: Buffer, what: string): Buffer {
  try {
    return unwrapKey(wrap, aad, sealed);
  } catch {
    throw vaultError('meta_invalid', `the vault ${what} cannot be opened: the vault_meta table was altered; restore it from backup`);
  }
}

/** Verifies the key-check under `root` and returns the audit HMAC key. */
function verifyMeta(meta: Map<string, Database['vault_meta']>, root: RootKey): KeyObject {
  const check = meta.get(CHECK_NAME);
  if (check === undefined) throw vaultError('meta_missing', 'the vault key-check record is missing after initialisation; check the vault_meta table');
  if (check.root_key_id !== root.id) throw mismatch(check.root_key_id, root.id);
  const wrap = rootWrappingKey(root);
  const constant = openMetaKey(check.sealed, wrap, checkAad(root.id), 'key-check record');
  if (!timingSafeEqual(constant, KEY_CHECK)) throw vaultError('meta_invalid', 'the vault key-check record holds an unexpected value: the vault_meta table was altered; restore it from backup');
  const hmac = meta.get(HMAC_NAME);
  if (hmac === undefined) throw vaultError('meta_missing', 'the vault audit HMAC key is missing: the vault_meta table was altered; restore it from backup');
  if (hmac.root_key_id !== root.id) throw mismatch(hmac.root_key_id, root.id);
  const bytes = openMetaKey(hmac.sealed, wrap, hmacAad(), 'audit HMAC key');
  try {
    return createSecretKey(bytes);
  } finally {
    bytes.fill(0);
  }
}

/** First use: the key-check, the audit HMAC key and the first KEK, unless another replica won the race. */
async function initialise(tx: Tx, root: RootKey, now: Date): Promise<void> {
  const existing = await tx.db.selectFrom('vault_meta').select('name').where('name', '=', CHECK_NAME).executeTakeFirst();
  if (existing !== undefined) return;
  // Keys or versions without a key-check: the record was deleted. Creating a new one would let any
  // key "open" this vault (and then fail on every row); refuse instead.
  const keys = await tx.db.selectFrom('vault_keys').select('id').limit(1).executeTakeFirst();
  const versions = await tx.db.selectFrom('secret_versions').select('secret_id').limit(1).executeTakeFirst();
  const held = await tx.db.selectFrom('vault_sealed_keys').select('name').limit(1).executeTakeFirst();
  if (keys !== undefined || versions !== undefined || held !== undefined) {
    throw vaultError('meta_missing', 'the vault key-check record is missing but the vault holds keys: the vault_meta table was altered; restore it from backup');
  }
  const wrap = rootWrappingKey(root);
  const at = now.toISOString();
  const hmacBytes = randomBytes(KEY_BYTES);
  try {
    await tx.db
      .insertInto('vault_meta')
      .values([
        { name: CHECK_NAME, root_key_id: root.id, sealed: sealCheck(root), updated_at: at },
        { name: HMAC_NAME, root_key_id: root.id, sealed: wrapKey(wrap, hmacAad(), hmacBytes), updated_at: at },
      ])
      .execute();
  } finally {
    hmacBytes.fill(0);
  }
  const { kek, bytes } = newKek();
  try {
    await tx.db.insertInto('vault_keys').values({ id: kek.id, wrapped: wrapKey(wrap, kekAad(kek.id), bytes), root_key_id: root.id, state: 'active', created_at: at, retired_at: null }).execute();
  } finally {
    bytes.fill(0);
  }
}
