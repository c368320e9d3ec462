/**
 * JWT signing keys and tokens, on every storage engine. Each RFC 8725 attack is a test of its own:
 * the forged token is built, presented, and must be refused with the right audit reason.
 */
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { SignJWT, decodeJwt, decodeProtectedHeader, jwtVerify, createLocalJWKSet } from 'jose';
import type { JWTPayload } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { AirlockError, ValidationError } from '../../src/errors/index.js';
import { TokenService, SERVICE_TOKEN_AUDIENCE } from '../../src/identity/jwt.js';
import { RETIRED_KEY_PUBLISHED_MS, SigningKeys } from '../../src/identity/signing-keys.js';
import { sealKeyFromBytes } from '../../src/identity/seal.js';
import type { SealKey } from '../../src/identity/seal.js';
import { openStore } from '../../src/storage/index.js';
import type { Store } from '../../src/storage/index.js';
import { ENGINES, openTestStore } from '../support/engines.js';
import type { TestStore } from '../support/engines.js';
import { refusal } from '../support/refusal.js';

const ISSUER = 'https://airlock.example';
const T0 = new Date('2026-03-01T12:00:00Z');

const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');


/** The paths a ValidationError named (fails the test for any other error). */
function issuePaths(err: unknown): string[] {
  expect(err).toBeInstanceOf(ValidationError);
  return err instanceof ValidationError ? err.issues.map((i) => i.path) : [];
}

async function expectRefused(promise: Promise<unknown>, reason: string): Promise<void> {
  const err = await refusal(promise);
  expect(err.code).toBe('TOKEN_INVALID');
  expect(err.message).toBe('the token is invalid or expired');
  expect(err.details).toEqual({ reason });
}

const workloadInput = {
  pipeline: 'payments-api',
  runId: '42',
  step: 'deploy',
  audience: 'sts.amazonaws.com',
  commit: '0123456789abcdef0123456789abcdef01234567',
  environment: 'production',
  trigger: 'push',
  ref: 'refs/heads/main',
};

const serviceInput = { serviceAccountId: 'sa-1', name: 'ci-bot', roles: ['deployer', 'viewer'], apiKeyId: 'abcdefgh2345' };

describe.each(ENGINES)('signing keys and tokens on %s', (engine) => {
  let t: TestStore;
  let seal: SealKey;
  let now: Date;
  const clock = (): Date => now;
  let keys: SigningKeys;
  let tokens: TokenService;
  const extraStores: Store[] = [];

  beforeEach(async () => {
    t = await openTestStore(engine);
    seal = sealKeyFromBytes(randomBytes(32));
    now = T0;
    keys = new SigningKeys({ store: t.store, seal, clock });
    tokens = new TokenService({ keys, issuer: ISSUER, clock });
  });

  afterEach(async () => {
    for (const s of extraStores.splice(0)) await s.close();
    await t.cleanup();
  });

  /**
   * Another replica: its own key cache over the same database and, on PostgreSQL, its own
   * connections. SQLite serves one process (better-sqlite3 blocks the thread while it waits for
   * the file lock), so there the replica shares the store and differs only in its cache.
   */
  async function replica(): Promise<{ keys: SigningKeys; tokens: TokenService }> {
    let store = t.store;
    if (engine === 'postgres') {
      store = await openStore(t.config);
      extraStores.push(store);
    }
    const k = new SigningKeys({ store, seal, clock });
    return { keys: k, tokens: new TokenService({ keys: k, issuer: ISSUER, clock }) };
  }

  /** Signs `payload` with the real current key (or `key`) under a chosen header: for crafted tokens. */
  async function craft(payload: JWTPayload, header: { alg?: string; kid?: string | undefined } = {}, key?: KeyObject): Promise<string> {
    const cur = await keys.current();
    const h: { alg: string; typ: string; kid?: string } = { alg: header.alg ?? 'EdDSA', typ: 'JWT' };
    const kid = 'kid' in header ? header.kid : cur.kid;
    if (kid !== undefined) h.kid = kid;
    return new SignJWT(payload).setProtectedHeader(h).sign(key ?? cur.key);
  }

  function validServicePayload(): JWTPayload {
    const iat = Math.floor(now.getTime() / 1000);
    return {
      iss: ISSUER,
      sub: 'service-account:ci-bot',
      aud: SERVICE_TOKEN_AUDIENCE,
      iat,
      nbf: iat,
      exp: iat + 600,
      jti: 'b9a4a2b6-8f1e-4a57-9b3f-2d8f4c5e6a7b',
      token_use: 'service',
      sa_id: 'sa-1',
      roles: ['viewer'],
      key_id: 'abcdefgh2345',
    };
  }

  describe('SigningKeys', () => {
    it('creates one Ed25519 key on first use and keeps returning it', async () => {
      const a = await keys.current();
      expect(a.key.asymmetricKeyType).toBe('ed25519');
      expect(a.key.type).toBe('private');
      expect(a.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect((await keys.current()).kid).toBe(a.kid);
      expect(await t.raw('select kid from signing_keys')).toHaveLength(1);
      // A fresh instance (another process) reads the same key back from the database.
      const again = await new SigningKeys({ store: t.store, seal, clock }).current();
      expect(again.kid).toBe(a.kid);
      expect(createPublicKey(again.key).export({ format: 'jwk' }).x).toBe(createPublicKey(a.key).export({ format: 'jwk' }).x);
    });

    it('creates exactly one first key when two replicas race', async () => {
      const [r1, r2] = await Promise.all([replica(), replica()]);
      const got = await Promise.all([r1.keys.current(), r2.keys.current(), keys.current(), r1.keys.current()]);
      expect(new Set(got.map((g) => g.kid)).size).toBe(1);
      expect(await t.raw('select kid from signing_keys')).toHaveLength(1);
    });

    it('leaves exactly one current key when two replicas rotate at once', async () => {
      const [r1, r2] = await Promise.all([replica(), replica()]);
      const first = (await keys.current()).kid;
      const [k1, k2] = await Promise.all([r1.keys.rotate(), r2.keys.rotate()]);
      expect(k1).not.toBe(k2);
      const rows = (await t.raw('select kid, retired_at from signing_keys')) as { kid: string; retired_at: string | null }[];
      expect(rows).toHaveLength(3);
      expect(rows.filter((r) => r.retired_at === null)).toHaveLength(1);
      expect(rows.find((r) => r.kid === first)?.retired_at).not.toBeNull();
    });

    it('never stores the private key unsealed', async () => {
      const { kid, key } = await keys.current();
      const d = key.export({ format: 'jwk' }).d!;
      const raw = Buffer.from(d, 'base64url');
      const rows = (await t.raw('select * from signing_keys')) as Record<string, unknown>[];
      const text = JSON.stringify(rows);
      for (const form of [d, raw.toString('base64'), raw.toString('hex'), raw.toString('latin1')]) expect(text).not.toContain(form);
      expect(text).not.toContain('"d"');
      const row = rows[0] as { private_sealed: string; public_jwk: string };
      expect(row.private_sealed.startsWith('v1.')).toBe(true);
      expect(Object.keys(JSON.parse(row.public_jwk) as object).sort()).toEqual(['crv', 'kty', 'x']);
      // It is sealed to this kid: it opens under its own AAD only.
      expect((JSON.parse(seal.open(row.private_sealed, `signing-key:${kid}`).toString()) as { d: string }).d).toBe(d);
      expect(() => seal.open(row.private_sealed, 'signing-key:other')).toThrow(AirlockError);
    });

    it('refuses a private key moved from another row (sealed to another kid)', async () => {
      const old = (await keys.current()).kid;
      const fresh = await keys.rotate();
      await t.raw(`update signing_keys set private_sealed = (select private_sealed from signing_keys where kid = '${old}') where kid = '${fresh}'`);
      const err = await refusal(new SigningKeys({ store: t.store, seal, clock }).current());
      expect(err.code).toBe('KEY_INVALID');
    });

    it('refuses to sign with a key sealed under another seal key', async () => {
      await keys.current();
      const stranger = new SigningKeys({ store: t.store, seal: sealKeyFromBytes(randomBytes(32)), clock });
      expect((await refusal(stranger.current())).code).toBe('KEY_INVALID');
    });

    it('publishes public parts only, with kid, alg EdDSA and use sig', async () => {
      const { kid } = await keys.current();
      const jwks = await keys.jwks();
      expect(jwks.keys).toHaveLength(1);
      expect(jwks.keys[0]).toEqual({ kty: 'OKP', crv: 'Ed25519', x: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) as unknown, kid, alg: 'EdDSA', use: 'sig' });
      expect(JSON.stringify(jwks)).not.toMatch(/"d"/);
    });

    it('returns undefined for an unknown kid', async () => {
      await keys.current();
      expect(await keys.publicKey('no-such-kid')).toBeUndefined();
    });
  });

  describe('minting', () => {
    it('mints a service token with the documented claims', async () => {
      const minted = await tokens.mintServiceToken(serviceInput);
      const header = decodeProtectedHeader(minted.token);
      expect(header).toEqual({ alg: 'EdDSA', typ: 'JWT', kid: (await keys.current()).kid });
      const p = decodeJwt(minted.token);
      const iat = T0.getTime() / 1000;
      expect(p).toEqual({
        iss: ISSUER,
        sub: 'service-account:ci-bot',
        aud: 'airlock-api',
        iat,
        nbf: iat,
        exp: iat + 600,
        jti: minted.jti,
        token_use: 'service',
        sa_id: 'sa-1',
        roles: ['deployer', 'viewer'],
        key_id: 'abcdefgh2345',
      });
      expect(minted.jti).toMatch(/^[0-9a-f-]{36}$/);
      expect(minted.expiresAt).toBe(new Date(T0.getTime() + 600_000).toISOString());
      const v = await tokens.verify(minted.token, { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' });
      expect(v).toMatchObject({ kind: 'service', serviceAccountId: 'sa-1', name: 'ci-bot', roles: ['deployer', 'viewer'], apiKeyId: 'abcdefgh2345', jti: minted.jti });
    });

    it('mints a workload token with the GitHub-style claims, verifiable from the JWKS alone', async () => {
      const minted = await tokens.mintWorkloadToken({ ...workloadInput, ttlSeconds: 300 });
      const p = decodeJwt(minted.token);
      const iat = T0.getTime() / 1000;
      expect(p).toEqual({
        iss: ISSUER,
        sub: 'pipeline:payments-api:run:42:step:deploy',
        aud: 'sts.amazonaws.com',
        iat,
        nbf: iat,
        exp: iat + 300,
        jti: minted.jti,
        token_use: 'workload',
        pipeline: 'payments-api',
        run_id: '42',
        step: 'deploy',
        commit: workloadInput.commit,
        environment: 'production',
        trigger: 'push',
        ref: 'refs/heads/main',
      });
      // A relying party (cloud STS, Vault) needs nothing but the published JWKS.
      const { payload } = await jwtVerify(minted.token, createLocalJWKSet(await keys.jwks()), { issuer: ISSUER, audience: 'sts.amazonaws.com', currentDate: now });
      expect(payload.sub).toBe('pipeline:payments-api:run:42:step:deploy');
      const v = await tokens.verify(minted.token, { audience: 'sts.amazonaws.com', kind: 'workload' });
      expect(v).toMatchObject({ kind: 'workload', pipeline: 'payments-api', runId: '42', step: 'deploy', environment: 'production', ref: 'refs/heads/main' });
    });

    it('omits environment and ref when absent', async () => {
      const { environment: _e, ref: _r, ...rest } = workloadInput;
      const minted = await tokens.mintWorkloadToken(rest);
      const p = decodeJwt(minted.token);
      expect('environment' in p || 'ref' in p).toBe(false);
      expect(p.exp! - p.iat!).toBe(600);
      const v = await tokens.verify(minted.token, { audience: 'sts.amazonaws.com', kind: 'workload' });
      expect(v.environment).toBeUndefined();
    });

    it('bounds ttlSeconds: service 60..3600, workload 60..900', async () => {
      for (const ttl of [59, 3601, 1.5, Number.NaN]) {
        expect(issuePaths(await refusal(tokens.mintServiceToken({ ...serviceInput, ttlSeconds: ttl })))).toEqual(['ttlSeconds']);
      }
      await expect(tokens.mintServiceToken({ ...serviceInput, ttlSeconds: 3600 })).resolves.toBeDefined();
      await expect(tokens.mintServiceToken({ ...serviceInput, ttlSeconds: 60 })).resolves.toBeDefined();
      expect(issuePaths(await refusal(tokens.mintWorkloadToken({ ...workloadInput, ttlSeconds: 901 })))).toEqual(['ttlSeconds']);
      await expect(tokens.mintWorkloadToken({ ...workloadInput, ttlSeconds: 900 })).resolves.toBeDefined();
    });

    it('refuses subject parts that could impersonate another subject, naming every bad field', async () => {
      const err = await refusal(tokens.mintWorkloadToken({ ...workloadInput, pipeline: 'payments-api:run:1:step:deploy', step: '', runId: 'a b' }));
      expect(issuePaths(err).sort()).toEqual(['pipeline', 'runId', 'step']);
      expect(issuePaths(await refusal(tokens.mintServiceToken({ ...serviceInput, name: 'x:y' })))).toEqual(['name']);
    });
  });

  describe('verification refuses attacks', () => {
    it('a forged signature: another Ed25519 key with the same kid', async () => {
      const attacker = generateKeyPairSync('ed25519').privateKey;
      await expectRefused(tokens.verify(await craft(validServicePayload(), {}, attacker), { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }), 'signature');
      // The same payload under the real key verifies: the refusal is the signature's doing.
      await expect(tokens.verify(await craft(validServicePayload()), { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' })).resolves.toBeDefined();
    });

    it('an unsigned token (alg: none)', async () => {
      const { kid } = await keys.current();
      for (const alg of ['none', 'None', 'NONE']) {
        const token = `${b64url({ alg, typ: 'JWT', kid })}.${b64url(validServicePayload())}.`;
        await expectRefused(tokens.verify(token, { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }), 'algorithm');
      }
    });

    it('HS256 signed with the public key bytes as the HMAC secret (algorithm confusion)', async () => {
      const { kid, key } = await keys.current();
      const pub = createPublicKey(key);
      const secrets = [
        Buffer.from(pub.export({ format: 'jwk' }).x!, 'base64url'),
        Buffer.from(pub.export({ format: 'pem', type: 'spki' })),
        Buffer.from(JSON.stringify((await keys.jwks()).keys[0])),
      ];
      for (const secret of secrets) {
        const token = await new SignJWT(validServicePayload()).setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid }).sign(secret);
        await expectRefused(tokens.verify(token, { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }), 'algorithm');
      }
    });

    it('another asymmetric algorithm with a key of its own (ES256)', async () => {
      const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
      await expectRefused(tokens.verify(await craft(validServicePayload(), { alg: 'ES256' }, ec), { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }), 'algorithm');
    });

    it('the wrong audience', async () => {
      const { token } = await tokens.mintWorkloadToken(workloadInput);
      await expectRefused(tokens.verify(token, { audience: 'vault.example', kind: 'workload' }), 'audience');
      const svc = await tokens.mintServiceToken(serviceInput);
      await expectRefused(tokens.verify(svc.token, { audience: 'other-api', kind: 'service' }), 'audience');
    });

    it('the wrong issuer', async () => {
      const foreign = new TokenService({ keys, issuer: 'https://evil.example', clock });
      const { token } = await foreign.mintServiceToken(serviceInput);
      await expectRefused(tokens.verify(token, { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }), 'issuer');
    });

    it('an expired token (30 s of tolerance, no more)', async () => {
      const { token } = await tokens.mintServiceToken({ ...serviceInput, ttlSeconds: 60 });
      now = new Date(T0.getTime() + 89_000);
      await expect(tokens.verify(token, { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' })).resolves.toBeDefined();
      now = new Date(T0.getTime() + 91_000);
      await expectRefused(tokens.verify(token, { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }), 'expired');
    });

    it('a token not yet valid', async () => {
      now = new Date(T0.getTime() + 120_000);
      const { token } = await tokens.mintServiceToken(serviceInput);
      now = T0;
      await expectRefused(tokens.verify(token, { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }), 'not_yet_valid');
    });

    it('a token missing jti, exp or token_use', async () => {
      for (const claim of ['jti', 'exp', 'token_use', 'nbf']) {
        const payload = Object.fromEntries(Object.entries(validServicePayload()).filter(([k]) => k !== claim));
        await expectRefused(tokens.verify(await craft(payload), { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }), 'missing_claim');
      }
    });

    it('an unknown kid, and no kid at all', async () => {
      await expectRefused(tokens.verify(await craft(validServicePayload(), { kid: 'not-a-key-of-ours' }), { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }), 'unknown_kid');
      await expectRefused(tokens.verify(await craft(validServicePayload(), { kid: undefined }), { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }), 'kid');
    });

    it('a workload token presented as a service token, and the reverse', async () => {
      // Same key, same issuer, even the same audience: only the kind tells them apart.
      const workload = await tokens.mintWorkloadToken({ ...workloadInput, audience: SERVICE_TOKEN_AUDIENCE });
      await expectRefused(tokens.verify(workload.token, { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }), 'kind');
      const service = await tokens.mintServiceToken(serviceInput);
      await expectRefused(tokens.verify(service.token, { audience: SERVICE_TOKEN_AUDIENCE, kind: 'workload' }), 'kind');
    });

    it('a tampered payload (roles raised, signature kept)', async () => {
      const { token } = await tokens.mintServiceToken({ ...serviceInput, roles: ['viewer'] });
      const [h, p, s] = token.split('.') as [string, string, string];
      const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as JWTPayload;
      payload.roles = ['admin'];
      await expectRefused(tokens.verify(`${h}.${b64url(payload)}.${s}`, { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }), 'signature');
      // A header swap (kid of nothing, same signature) is refused too.
      await expectRefused(tokens.verify(`${b64url({ alg: 'EdDSA', kid: 'x' })}.${p}.${s}`, { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }), 'unknown_kid');
    });

    it('a correctly signed token whose lifetime exceeds the maximum', async () => {
      const payload = { ...validServicePayload(), exp: Math.floor(now.getTime() / 1000) + 7200 };
      await expectRefused(tokens.verify(await craft(payload), { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }), 'lifetime');
    });

    it('a correctly signed token with claims of the wrong shape', async () => {
      await expectRefused(tokens.verify(await craft({ ...validServicePayload(), roles: 'admin' }), { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }), 'claims');
      await expectRefused(tokens.verify(await craft({ ...validServicePayload(), aud: [SERVICE_TOKEN_AUDIENCE, 'x'] }), { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }), 'audience');
    });

    it('garbage and oversized input', async () => {
      for (const junk of ['', 'a.b.c', 'not a token', `${'a'.repeat(9000)}.b.c`, newJunkJws()]) {
        const err = await refusal(tokens.verify(junk, { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }));
        expect(err.code).toBe('TOKEN_INVALID');
        expect(err.details.reason).toBe('malformed');
      }
    });
  });

  describe('rotation', () => {
    it('keeps old tokens valid while the retired key is published, then drops the key', async () => {
      const old = await tokens.mintServiceToken({ ...serviceInput, ttlSeconds: 3600 });
      const oldKid = decodeProtectedHeader(old.token).kid!;
      const newKid = await keys.rotate();
      expect(newKid).not.toBe(oldKid);
      const fresh = await tokens.mintServiceToken(serviceInput);
      expect(decodeProtectedHeader(fresh.token).kid).toBe(newKid);
      expect((await keys.jwks()).keys.map((k) => k.kid).sort()).toEqual([oldKid, newKid].sort());
      await expect(tokens.verify(old.token, { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' })).resolves.toMatchObject({ kid: oldKid });

      // The old key's last token can live until rotation + 1 h (+ tolerance): still published then.
      now = new Date(T0.getTime() + 3600_000 + 20_000);
      expect((await keys.jwks()).keys.map((k) => k.kid)).toContain(oldKid);
      await expect(tokens.verify(old.token, { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' })).resolves.toBeDefined();

      // Once every token it signed must have expired, the key leaves the JWKS and verification.
      now = new Date(T0.getTime() + RETIRED_KEY_PUBLISHED_MS + 1000);
      expect((await keys.jwks()).keys.map((k) => k.kid)).toEqual([newKid]);
      expect(await keys.publicKey(oldKid)).toBeUndefined();
      expect(JSON.stringify(await keys.jwks())).not.toMatch(/"d"/);
    });

    it('accepts a token signed after another replica rotated (unknown kid re-reads once)', async () => {
      await tokens.verify((await tokens.mintServiceToken(serviceInput)).token, { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' }); // warm the cache
      const other = await replica();
      const newKid = await other.keys.rotate();
      const minted = await other.tokens.mintServiceToken(serviceInput);
      expect(decodeProtectedHeader(minted.token).kid).toBe(newKid);
      await expect(tokens.verify(minted.token, { audience: SERVICE_TOKEN_AUDIENCE, kind: 'service' })).resolves.toMatchObject({ kid: newKid });
    });

    it('rotate(tx) joins the caller transaction and rolls back with it', async () => {
      const before = (await keys.current()).kid;
      await expect(
        t.store.transact(async (tx) => {
          await keys.rotate(tx);
          throw new Error('caller failed');
        }),
      ).rejects.toThrow('caller failed');
      expect(await t.raw('select kid from signing_keys')).toHaveLength(1);
      expect((await new SigningKeys({ store: t.store, seal, clock }).current()).kid).toBe(before);
    });
  });

  it('publishes a discovery document like GitHub Actions does', () => {
    const doc = tokens.discovery('https://airlock.example/');
    expect(doc).toMatchObject({
      issuer: ISSUER,
      jwks_uri: 'https://airlock.example/.well-known/jwks.json',
      id_token_signing_alg_values_supported: ['EdDSA'],
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
    });
    for (const claim of ['sub', 'aud', 'exp', 'iat', 'iss', 'jti', 'nbf', 'run_id', 'commit', 'environment', 'trigger', 'ref']) expect(doc.claims_supported).toContain(claim);
  });
});

/** A syntactically valid JWS whose header is not JSON. */
function newJunkJws(): string {
  return `${Buffer.from('not json').toString('base64url')}.${b64url({ a: 1 })}.${randomBytes(64).toString('base64url')}`;
}
