/**
 * Platform signing keys (Ed25519): one active key per purpose, shared by every replica through
 * `platform_keys`. The private half is stored only sealed by the vault, bound to its purpose and
 * kid, so a database reader learns nothing and a row cannot borrow another row's key. Retired
 * keys stay listed, verify-only, so evidence signed before a rotation still verifies.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { sql } from 'kysely';
import type { AuditEventInput, AuditLog, RequestContext } from '../audit/index.js';
import { AirlockError, ValidationError } from '../errors/index.js';
import { linkKeyId } from '../runner/index.js';
import { toStorageError } from '../storage/index.js';
import type { Database, Store, Tx } from '../storage/index.js';
import type { AttestationSigner } from './dsse.js';

export const KEY_PURPOSES = ['attestation', 'layout'] as const;
/** attestation: provenance, test results, SBOMs, VSAs; layout: in-toto root layouts. */
export type KeyPurpose = (typeof KEY_PURPOSES)[number];
export const KEY_ALGORITHM = 'ed25519';

export type Actor = AuditEventInput['actor'];

/** What the vault offers (Vault.sealBlob / openBlob): the purpose string is bound into the ciphertext. */
export interface BlobSealer {
  sealBlob(purpose: string, plaintext: Buffer): Promise<string>;
  openBlob(purpose: string, sealed: string): Promise<Buffer>;
}

export interface PlatformKeysDeps {
  readonly store: Store;
  readonly audit: AuditLog;
  readonly sealer: BlobSealer;
  readonly clock: () => Date;
}

export interface PlatformKeyInfo {
  readonly kid: string;
  readonly purpose: KeyPurpose;
  readonly algorithm: typeof KEY_ALGORITHM;
  /** SPKI PEM. */
  readonly publicKeyPem: string;
  /** The raw 32-byte Ed25519 public key, base64. */
  readonly publicKeyRaw: string;
  /** '' (platform-wide) or 'project:<name>'. */
  readonly scope: string;
  readonly createdAt: string;
  readonly retiredAt: string | null;
  readonly status: 'active' | 'retired';
}

export type PlatformSigner = AttestationSigner & { readonly publicKey: KeyObject };

const SYSTEM_ACTOR: Actor = { kind: 'system', id: 'platform-keys' };
/** The SPKI DER prefix of an Ed25519 public key (RFC 8410 §4); the raw key follows. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** Binds the sealed private key to its row: opening it under another purpose or kid fails. */
const sealPurpose = (purpose: string, kid: string): string => `platform-key:${purpose}:${kid}`;

function keyError(message: string, kid: string, reason: string): AirlockError {
  return new AirlockError('KEY_INVALID', message, { reason, kid });
}

/** '' (platform-wide) or 'project:<name>': a layout key per project limits what one key vouches for. */
function checkScope(scope: string): void {
  if (scope !== '' && !/^project:[a-z][a-z0-9-]{0,62}$/.test(scope)) throw new ValidationError('invalid key scope: "" or project:<name>', [{ path: 'scope', message: 'must be "" or project:<name>' }]);
}

function checkPurpose(purpose: unknown): asserts purpose is KeyPurpose {
  if (!(KEY_PURPOSES as readonly unknown[]).includes(purpose)) {
    throw new ValidationError(`invalid key purpose: must be one of ${KEY_PURPOSES.join(', ')}`, [{ path: 'purpose', message: `must be one of ${KEY_PURPOSES.join(', ')}` }]);
  }
}

interface ParsedRow {
  readonly kid: string;
  readonly purpose: KeyPurpose;
  readonly publicKey: KeyObject;
  readonly raw: Buffer;
  readonly row: Database['platform_keys'];
}

/** Fails closed on a row whose kid is not the hash of its public key (an edited row). */
function parseRow(row: Database['platform_keys']): ParsedRow {
  if (row.algorithm !== KEY_ALGORITHM) throw keyError(`platform key ${row.kid} has algorithm ${row.algorithm}; only ${KEY_ALGORITHM} is supported`, row.kid, 'algorithm_unsupported');
  if (!(KEY_PURPOSES as readonly string[]).includes(row.purpose)) throw keyError(`platform key ${row.kid} has an unknown purpose`, row.kid, 'purpose_unknown');
  const raw = Buffer.from(row.public_key);
  if (raw.length !== 32) throw keyError(`platform key ${row.kid} does not hold a 32-byte Ed25519 public key`, row.kid, 'public_key_invalid');
  const publicKey = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
  if (linkKeyId(publicKey) !== row.kid) throw keyError(`platform key ${row.kid}: its public key does not match its key id; the row was altered`, row.kid, 'kid_mismatch');
  return { kid: row.kid, purpose: row.purpose as KeyPurpose, publicKey, raw, row };
}

function info(p: ParsedRow): PlatformKeyInfo {
  return {
    kid: p.kid,
    purpose: p.purpose,
    algorithm: KEY_ALGORITHM,
    publicKeyPem: p.publicKey.export({ type: 'spki', format: 'pem' }) as string,
    publicKeyRaw: p.raw.toString('base64'),
    scope: p.row.scope,
    createdAt: p.row.created_at,
    retiredAt: p.row.retired_at,
    status: p.row.retired_at === null ? 'active' : 'retired',
  };
}

async function reading<T>(what: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw toStorageError(err, what);
  }
}

/** Serialises rotations across replicas; SQLite's BEGIN IMMEDIATE already serialises writers. */
async function lockKeys(tx: Tx): Promise<void> {
  if (tx.engine === 'postgres') await sql`lock table platform_keys in share row exclusive mode`.execute(tx.db);
}

/** The platform's own signing keys, by purpose. */
export class PlatformKeys {
  private readonly privateKeys = new Map<string, KeyObject>();

  constructor(private readonly deps: PlatformKeysDeps) {}

  /**
   * The active key for `purpose`, created on first use. Replicas racing to create it insert
   * with ON CONFLICT DO NOTHING against the one-active-per-purpose index; the loser re-reads
   * and signs with the winner's key, and only the winner records `keys.create`.
   */
  async signer(purpose: KeyPurpose, scope = ''): Promise<PlatformSigner> {
    checkPurpose(purpose);
    checkScope(scope);
    let row = await this.activeRow(purpose, scope);
    if (row === undefined) {
      const fresh = await this.newRow(purpose, `${SYSTEM_ACTOR.kind}:${SYSTEM_ACTOR.id}`, scope);
      await this.deps.store.transact(async (tx) => {
        const inserted = await tx.db.insertInto('platform_keys').values(fresh).onConflict((oc) => oc.doNothing()).executeTakeFirst();
        if ((inserted.numInsertedOrUpdatedRows ?? 0n) > 0n) {
          await this.deps.audit.record(tx, { actor: SYSTEM_ACTOR, action: 'keys.create', resource: `platform-keys/${fresh.kid}`, outcome: 'allowed', details: { purpose, scope, kid: fresh.kid, algorithm: KEY_ALGORITHM } });
        }
      });
      row = await this.activeRow(purpose, scope);
      if (row === undefined) throw new AirlockError('STORAGE_FAILED', `no active ${purpose} key after creating one; check the platform_keys table`);
    }
    const parsed = parseRow(row);
    const privateKey = await this.privateKeyOf(parsed);
    return { kid: parsed.kid, publicKey: parsed.publicKey, sign: (data: Buffer) => cryptoSign(null, data, privateKey) };
  }

  /**
   * A new active key for `purpose`; the old one is retired (verify-only). The retirement, the
   * new row and the `keys.rotate` event commit together or not at all.
   */
  async rotate(purpose: KeyPurpose, actor: Actor, context?: RequestContext, scope = ''): Promise<{ kid: string; retired: string | null }> {
    checkPurpose(purpose);
    checkScope(scope);
    const fresh = await this.newRow(purpose, `${actor.kind}:${actor.id}`, scope);
    return this.deps.store.transact(async (tx) => {
      await lockKeys(tx);
      const old = await tx.db.selectFrom('platform_keys').select('kid').where('purpose', '=', purpose).where('scope', '=', scope).where('retired_at', 'is', null).executeTakeFirst();
      if (old !== undefined) await tx.db.updateTable('platform_keys').set({ retired_at: fresh.created_at }).where('kid', '=', old.kid).execute();
      await tx.db.insertInto('platform_keys').values(fresh).execute();
      const retired = old?.kid ?? null;
      await this.deps.audit.record(tx, { actor, action: 'keys.rotate', resource: `platform-keys/${fresh.kid}`, outcome: 'allowed', context, details: { purpose, scope, kid: fresh.kid, retired, algorithm: KEY_ALGORITHM } });
      return { kid: fresh.kid, retired };
    });
  }

  /** Every key, active and retired, public halves only; oldest first. */
  async publicKeys(): Promise<PlatformKeyInfo[]> {
    const rows = await reading('reading platform keys', () => this.deps.store.db.selectFrom('platform_keys').selectAll().orderBy('created_at').orderBy('kid').execute());
    return rows.map((r) => info(parseRow(r)));
  }

  /** kid -> public key for verification (retired keys included); only `purpose`'s keys if given. */
  async verifierKeys(purpose?: KeyPurpose): Promise<Map<string, KeyObject>> {
    if (purpose !== undefined) checkPurpose(purpose);
    const rows = await reading('reading platform keys', () => {
      const q = this.deps.store.db.selectFrom('platform_keys').selectAll();
      return (purpose === undefined ? q : q.where('purpose', '=', purpose)).execute();
    });
    return new Map(rows.map((r) => parseRow(r)).map((p) => [p.kid, p.publicKey]));
  }

  /** One key's public information, or undefined if there is no such kid. */
  async keyInfo(kid: string): Promise<PlatformKeyInfo | undefined> {
    const row = await reading('reading platform keys', () => this.deps.store.db.selectFrom('platform_keys').selectAll().where('kid', '=', kid).executeTakeFirst());
    return row === undefined ? undefined : info(parseRow(row));
  }

  private activeRow(purpose: KeyPurpose, scope: string): Promise<Database['platform_keys'] | undefined> {
    return reading('reading platform keys', () => this.deps.store.db.selectFrom('platform_keys').selectAll().where('purpose', '=', purpose).where('scope', '=', scope).where('retired_at', 'is', null).executeTakeFirst());
  }

  private async newRow(purpose: KeyPurpose, createdBy: string, scope: string): Promise<Database['platform_keys']> {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const kid = linkKeyId(publicKey);
    const der = privateKey.export({ type: 'pkcs8', format: 'der' });
    try {
      const sealed = await this.deps.sealer.sealBlob(sealPurpose(purpose, kid), der);
      const raw = publicKey.export({ type: 'spki', format: 'der' }).subarray(ED25519_SPKI_PREFIX.length);
      return { kid, purpose, scope, algorithm: KEY_ALGORITHM, public_key: Buffer.from(raw), private_sealed: sealed, created_at: this.deps.clock().toISOString(), created_by: createdBy, retired_at: null };
    } finally {
      der.fill(0);
    }
  }

  /** Unsealed once per kid and kept in memory; checked against the row's public key. */
  private async privateKeyOf(p: ParsedRow): Promise<KeyObject> {
    const cached = this.privateKeys.get(p.kid);
    if (cached !== undefined) return cached;
    let der: Buffer;
    try {
      der = await this.deps.sealer.openBlob(sealPurpose(p.purpose, p.kid), p.row.private_sealed);
    } catch (err) {
      if (err instanceof AirlockError && err.code === 'KEY_INVALID') {
        throw keyError(`the private key of platform key ${p.kid} (${p.purpose}) could not be unsealed: it was altered, belongs to another key, or its vault key is gone; rotate the key`, p.kid, 'unseal_failed');
      }
      throw err;
    }
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    } catch {
      throw keyError(`the private key of platform key ${p.kid} does not parse; rotate the key`, p.kid, 'private_key_invalid');
    } finally {
      der.fill(0);
    }
    if (privateKey.asymmetricKeyType !== 'ed25519' || linkKeyId(privateKey) !== p.kid) {
      throw keyError(`the private key of platform key ${p.kid} does not match its public key; rotate the key`, p.kid, 'private_key_mismatch');
    }
    this.privateKeys.set(p.kid, privateKey);
    return privateKey;
  }
}
