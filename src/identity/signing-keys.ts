/**
 * JWT signing keys (EdDSA over Ed25519, RFC 8037), rotated by `kid` and shared by every replica
 * through the `signing_keys` table. The private JWK is stored only sealed (AES-GCM, bound to its
 * kid); the public halves are published as a JWKS so relying parties (clouds, Vault) can verify
 * tokens without any stored credential.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import type { JsonWebKey, KeyObject } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { calculateJwkThumbprint } from 'jose';
import type { JWK } from 'jose';
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import { AirlockError } from '../errors/index.js';
import type { Database, Store, Tx } from '../storage/index.js';
import type { SealKey } from './seal.js';

/** The longest lifetime of any token we sign (service tokens; workload tokens are shorter). */
export const MAX_TOKEN_TTL_SECONDS = 3600;
/** Largest clock skew tolerated on exp/nbf when verifying. */
export const CLOCK_TOLERANCE_SECONDS = 30;
/** Keys are re-read at most this often; a replica may keep signing with a just-retired key this long. */
export const KEY_CACHE_MS = 5000;
/**
 * How long a retired key stays published: its last token may have been signed up to one cache
 * period after retirement (by a replica that had not yet noticed), lives at most
 * MAX_TOKEN_TTL_SECONDS, and is accepted CLOCK_TOLERANCE_SECONDS past its exp.
 */
export const RETIRED_KEY_PUBLISHED_MS = (MAX_TOKEN_TTL_SECONDS + CLOCK_TOLERANCE_SECONDS) * 1000 + KEY_CACHE_MS;
/** A token naming an unknown kid forces a re-read at most this often, so junk kids cannot hammer the database. */
const FORCED_RELOAD_MIN_MS = 1000;

export const JWT_ALG = 'EdDSA';

interface LoadedKey {
  readonly kid: string;
  readonly publicKey: KeyObject;
  readonly x: string;
  readonly createdAt: string;
  readonly retiredAt: string | null;
  readonly privateSealed: string;
}

interface Snapshot {
  readonly loadedAt: number;
  readonly keys: ReadonlyMap<string, LoadedKey>;
  /** Newest unretired key, if any. */
  readonly current: LoadedKey | undefined;
}

export interface SigningKeysDeps {
  readonly store: Store;
  readonly seal: SealKey;
  readonly clock?: () => Date;
}

const aadFor = (kid: string): string => `signing-key:${kid}`;

function keyError(message: string, kid: string): AirlockError {
  return new AirlockError('KEY_INVALID', message, { reason: 'signing_key_invalid', kid });
}

/** A fresh Ed25519 key as a table row; kid is the RFC 7638 thumbprint of the public key. */
async function newKeyRow(seal: SealKey, now: Date): Promise<Database['signing_keys']> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pub = publicKey.export({ format: 'jwk' });
  const kid = await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: pub.x ?? '' }, 'sha256');
  const privateJwk = JSON.stringify(privateKey.export({ format: 'jwk' }));
  return {
    kid,
    alg: JWT_ALG,
    public_jwk: JSON.stringify({ kty: 'OKP', crv: 'Ed25519', x: pub.x }),
    private_sealed: seal.seal(Buffer.from(privateJwk, 'utf8'), aadFor(kid)),
    created_at: now.toISOString(),
    retired_at: null,
  };
}

/**
 * Serialises key creation and rotation across replicas. On PostgreSQL a table lock in a mode that
 * conflicts with itself but not with readers; SQLite's BEGIN IMMEDIATE already serialises writers.
 */
async function lockKeys(tx: Tx): Promise<void> {
  if (tx.engine === 'postgres') await sql`lock table signing_keys in share row exclusive mode`.execute(tx.db);
}

async function currentRow(db: Kysely<Database>): Promise<{ kid: string } | undefined> {
  return db.selectFrom('signing_keys').select('kid').where('retired_at', 'is', null).orderBy('created_at', 'desc').orderBy('kid', 'desc').executeTakeFirst();
}

/** The signing keys: the current one for minting, every published one for verifying and the JWKS. */
export class SigningKeys {
  private readonly store: Store;
  private readonly sealKey: SealKey;
  private readonly clock: () => Date;
  private snapshot: Snapshot | undefined;
  private loading: Promise<Snapshot> | undefined;
  private lastForcedReload = Number.NEGATIVE_INFINITY;
  private readonly privateKeys = new Map<string, KeyObject>();

  constructor(deps: SigningKeysDeps) {
    this.store = deps.store;
    this.sealKey = deps.seal;
    this.clock = deps.clock ?? (() => new Date());
  }

  /** The key new tokens are signed with; creates the first key if there is none. */
  async current(): Promise<{ kid: string; key: KeyObject }> {
    let snap = await this.load();
    if (snap.current === undefined) {
      await this.store.transact(async (tx) => {
        await lockKeys(tx);
        // Insert only if still absent once we hold the lock: another replica may have won.
        if ((await currentRow(tx.db)) === undefined) await tx.db.insertInto('signing_keys').values(await newKeyRow(this.sealKey, this.clock())).execute();
      });
      snap = await this.load(true);
    }
    const cur = snap.current;
    if (cur === undefined) throw new AirlockError('STORAGE_FAILED', 'no current JWT signing key after creating one; check the signing_keys table');
    return { kid: cur.kid, key: this.privateKeyOf(cur) };
  }

  /**
   * Retires the current key (no new tokens from now; still published until its tokens have
   * expired) and creates its successor. Runs in `tx` if given, so the caller can audit it atomically.
   */
  async rotate(tx?: Tx): Promise<string> {
    const work = async (t: Tx): Promise<string> => {
      await lockKeys(t);
      const now = this.clock();
      await t.db.updateTable('signing_keys').set({ retired_at: now.toISOString() }).where('retired_at', 'is', null).execute();
      const row = await newKeyRow(this.sealKey, now);
      await t.db.insertInto('signing_keys').values(row).execute();
      return row.kid;
    };
    const kid = tx === undefined ? await this.store.transact(work) : await work(tx);
    this.snapshot = undefined;
    return kid;
  }

  /** The JWKS: public parts of every published key (RFC 7517 §5), never a private member. */
  async jwks(): Promise<{ keys: JWK[] }> {
    const snap = await this.load();
    const keys = this.published(snap).map((k) => ({ kty: 'OKP', crv: 'Ed25519', x: k.x, kid: k.kid, alg: JWT_ALG, use: 'sig' }));
    return { keys };
  }

  /** The public key for `kid` if it is published; an unknown kid re-reads once (another replica may have rotated). */
  async publicKey(kid: string): Promise<KeyObject | undefined> {
    const find = (snap: Snapshot): KeyObject | undefined => this.published(snap).find((k) => k.kid === kid)?.publicKey;
    const found = find(await this.load());
    if (found !== undefined) return found;
    const now = performance.now();
    if (now - this.lastForcedReload < FORCED_RELOAD_MIN_MS) return undefined;
    this.lastForcedReload = now;
    return find(await this.load(true));
  }

  /** Keys a verifier may use now: unretired, or retired recently enough that their tokens may be live. */
  private published(snap: Snapshot): LoadedKey[] {
    const cutoff = this.clock().getTime() - RETIRED_KEY_PUBLISHED_MS;
    return [...snap.keys.values()].filter((k) => k.retiredAt === null || Date.parse(k.retiredAt) > cutoff);
  }

  private privateKeyOf(key: LoadedKey): KeyObject {
    let priv = this.privateKeys.get(key.kid);
    if (priv === undefined) {
      const jwk = this.sealKey.open(key.privateSealed, aadFor(key.kid));
      try {
        priv = createPrivateKey({ key: JSON.parse(jwk.toString('utf8')) as JsonWebKey, format: 'jwk' });
      } catch {
        throw keyError(`the private half of JWT signing key ${key.kid} does not parse; rotate the signing key`, key.kid);
      } finally {
        jwk.fill(0);
      }
      if (priv.asymmetricKeyType !== 'ed25519' || createPublicKey(priv).export({ format: 'jwk' }).x !== key.x) {
        throw keyError(`the private half of JWT signing key ${key.kid} does not match its public key; rotate the signing key`, key.kid);
      }
      this.privateKeys.set(key.kid, priv);
    }
    return priv;
  }

  /** The cached snapshot, re-read if older than KEY_CACHE_MS or if `force`; concurrent loads share one query. */
  private async load(force = false): Promise<Snapshot> {
    const snap = this.snapshot;
    if (!force && snap !== undefined && performance.now() - snap.loadedAt < KEY_CACHE_MS) return snap;
    this.loading ??= this.read().finally(() => {
      this.loading = undefined;
    });
    const fresh = await this.loading;
    this.snapshot = fresh;
    return fresh;
  }

  private async read(): Promise<Snapshot> {
    const cutoff = new Date(this.clock().getTime() - RETIRED_KEY_PUBLISHED_MS).toISOString();
    const rows = await this.store.db
      .selectFrom('signing_keys')
      .selectAll()
      .where((eb) => eb.or([eb('retired_at', 'is', null), eb('retired_at', '>', cutoff)]))
      .orderBy('created_at', 'desc')
      .orderBy('kid', 'desc')
      .execute();
    const keys = new Map<string, LoadedKey>();
    let current: LoadedKey | undefined;
    for (const row of rows) {
      const key = parseRow(row);
      keys.set(key.kid, key);
      if (current === undefined && key.retiredAt === null) current = key;
    }
    for (const kid of this.privateKeys.keys()) if (!keys.has(kid)) this.privateKeys.delete(kid);
    return { loadedAt: performance.now(), keys, current };
  }
}

/** Fails closed on a row that is not an EdDSA key with an Ed25519 public JWK. */
function parseRow(row: Database['signing_keys']): LoadedKey {
  if (row.alg !== JWT_ALG) throw keyError(`JWT signing key ${row.kid} has algorithm ${row.alg}; only ${JWT_ALG} is supported`, row.kid);
  let publicKey: KeyObject;
  let x: string;
  try {
    const jwk = JSON.parse(row.public_jwk) as { kty?: unknown; crv?: unknown; x?: unknown; d?: unknown };
    if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string' || jwk.d !== undefined) throw new Error('not an Ed25519 public JWK');
    x = jwk.x;
    publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
  } catch {
    throw keyError(`the public key of JWT signing key ${row.kid} is not an Ed25519 public JWK; rotate the signing key`, row.kid);
  }
  return { kid: row.kid, publicKey, x, createdAt: row.created_at, retiredAt: row.retired_at, privateSealed: row.private_sealed };
}
