/**
 * The held keys through the composition root: a fresh install makes no key file and TOTP login,
 * JWTs and checkpoints work; an install from before issue 5 (key files, a TOTP seed and a JWT key
 * sealed with the file key, checkpoints signed with the file key) is migrated by openApp; a wrong
 * root key refuses and imports nothing; verifier-only readers get the key without the vault.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Secret } from 'otpauth';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { homeCheckpointVerifierKey, openApp } from '../../src/app/index.js';
import type { App } from '../../src/app/index.js';
import { AuditLog, Checkpointer, checkpointKeyPath, loadOrCreateCheckpointKey, openCheckpoint, parseVerifierKey, verifyLog } from '../../src/audit/index.js';
import { loadConfig } from '../../src/config/index.js';
import type { Config } from '../../src/config/index.js';
import { Identity, SigningKeys, TokenService, loadOrCreateSealKey, readSealKeyFile, sealKeyPath, totpAt } from '../../src/identity/index.js';
import { openStore } from '../../src/storage/index.js';
import { masterKeyPath } from '../../src/vault/index.js';
import { capturingLogger, TestClock } from '../server/support.js';
import { ENGINES, freshDatabase } from '../support/engines.js';
import { refusal } from '../support/refusal.js';

const ACTOR = { kind: 'system', id: 'test' } as const;
const PASSWORD = 'correct horse battery staple 42';
const WORKLOAD = { pipeline: 'build', runId: 'run-1', step: 'compile', audience: 'airlock-api', commit: 'a'.repeat(40), trigger: 'manual' } as const;

function noKeyFiles(home: string): void {
  expect(existsSync(sealKeyPath(home))).toBe(false);
  expect(existsSync(checkpointKeyPath(home))).toBe(false);
}

/** A user set up through the domain; returns the TOTP secret. */
async function setUpUser(identity: Identity, clock: TestClock, username: string): Promise<Buffer> {
  const made = await identity.users.create(ACTOR, { username, roles: ['operator'] });
  const enrolment = await identity.users.beginSetup({ username, setupToken: made.setupToken, password: PASSWORD });
  const secret = Buffer.from(Secret.fromBase32(enrolment.secret).bytes);
  await identity.users.confirmSetup({ username, setupToken: made.setupToken, code: totpAt(secret, clock.now()) });
  return secret;
}

async function logIn(app: App, clock: TestClock, username: string, secret: Buffer): Promise<void> {
  clock.advance(30_000);
  const session = await app.identity.sessions.login({ username, password: PASSWORD, code: totpAt(secret, clock.now()) });
  expect(session.token).toMatch(/\S{20,}/);
}

describe.each(ENGINES)('keys in the vault through openApp on %s', (engine) => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function fresh(): Promise<Config> {
    const db = await freshDatabase(engine);
    cleanups.push(db.drop);
    const base = loadConfig({ flags: { home: db.home }, env: {} });
    return engine === 'sqlite' ? base : { ...base, database: db.config };
  }

  async function open(config: Config, clock: TestClock, lines: string[] = []): Promise<App> {
    const app = await openApp(config, { migrate: true, clock: clock.now, logger: capturingLogger('info', lines) });
    let closed = false;
    cleanups.push(async () => {
      if (!closed) await app.close();
      closed = true;
    });
    return app;
  }

  it('a fresh install writes no key file; TOTP login, JWTs and checkpoints work, and survive a restart', async () => {
    const config = await fresh();
    const clock = new TestClock();
    const lines: string[] = [];
    const app = await open(config, clock, lines);
    noKeyFiles(config.home);
    expect(lines.join('')).toContain('generated a new identity sealing key');
    const secret = await setUpUser(app.identity, clock, 'alice');
    await logIn(app, clock, 'alice', secret);
    const token = await app.tokens.mintWorkloadToken(WORKLOAD);
    expect((await app.tokens.verify(token.token, { audience: 'airlock-api', kind: 'workload' })).step).toBe('compile');
    const cp = await app.signCheckpoint(ACTOR);
    expect(openCheckpoint(cp.note, [parseVerifierKey(app.key.verifierKey)], config.auditOrigin).checkpoint.size).toBe(cp.size);
    expect((await homeCheckpointVerifierKey(config)).verifierKey).toBe(app.key.verifierKey);
    const verifierKey = app.key.verifierKey;
    await app.close();

    const restarted = await openApp(config, { clock: clock.now });
    cleanups.push(() => restarted.close());
    expect(restarted.key.verifierKey).toBe(verifierKey);
    await logIn(restarted, clock, 'alice', secret);
    expect((await restarted.tokens.verify(token.token, { audience: 'airlock-api', kind: 'workload' })).runId).toBe('run-1');
    noKeyFiles(config.home);
  });

  it('migrates an install with the old key files: sealed seeds and JWT keys open, the verifier key is unchanged, the files are gone', async () => {
    const config = await fresh();
    const clock = new TestClock();
    // The install as it was before issue 5 wired it.
    const store = await openStore(config.database);
    await store.migrate();
    const audit = new AuditLog(store);
    const seal = await loadOrCreateSealKey(config.home);
    const sealBytes = (await readSealKeyFile(config.home))!;
    const ckey = await loadOrCreateCheckpointKey(config.home, config.auditOrigin);
    const signingKeys = new SigningKeys({ store, seal, clock: clock.now });
    const tokens = new TokenService({ keys: signingKeys, issuer: config.publicUrl, clock: clock.now });
    const identity = new Identity({ store, audit, seal, clock: clock.now }, tokens, { idleMs: 3_600_000, maxMs: 86_400_000, totpIssuer: 'Airlock (test)' }, undefined);
    await store.transact((tx) => identity.roles.ensureBuiltins(tx));
    const secret = await setUpUser(identity, clock, 'bob');
    const oldToken = await tokens.mintWorkloadToken(WORKLOAD);
    const oldCheckpoint = await new Checkpointer({ store, log: audit, signer: ckey.signer, origin: config.auditOrigin, intervalMs: 1000, statePath: join(config.home, 'state', 'last-checkpoint.json') }).checkpointNow();
    await store.close();

    const lines: string[] = [];
    const app = await open(config, clock, lines);
    noKeyFiles(config.home);
    const log = lines.join('');
    expect(log).toContain(`moved the identity sealing key (TOTP seeds, token signing keys, OIDC verifiers) from ${sealKeyPath(config.home)} into the vault`);
    expect(log).toContain(`moved the audit checkpoint signing key from ${checkpointKeyPath(config.home)} into the vault`);
    for (const form of [sealBytes.toString('base64'), sealBytes.toString('hex'), sealBytes.toString('base64url')]) expect(log).not.toContain(form);

    // The TOTP seed sealed with the file key opens: bob logs in.
    await logIn(app, clock, 'bob', secret);
    // The JWT signing key sealed with the file key opens: old tokens verify, new ones are signed with it.
    expect((await app.tokens.verify(oldToken.token, { audience: 'airlock-api', kind: 'workload' })).runId).toBe('run-1');
    const kidOf = (t: string): string => (JSON.parse(Buffer.from(t.split('.')[0]!, 'base64url').toString('utf8')) as { kid: string }).kid;
    const newToken = await app.tokens.mintWorkloadToken(WORKLOAD);
    expect(kidOf(newToken.token)).toBe(kidOf(oldToken.token));
    // Same checkpoint key: the published verifier key is unchanged and covers old and new checkpoints.
    expect(app.key.verifierKey).toBe(ckey.verifierKey);
    const cp = await app.signCheckpoint(ACTOR);
    expect(cp.size).toBeGreaterThan(oldCheckpoint.size);
    const report = await verifyLog({ db: app.store.db, verifiers: [parseVerifierKey(ckey.verifierKey)], origin: config.auditOrigin });
    expect(report).toMatchObject({ ok: true, findings: [] });
    expect(report.checkpointsChecked).toBeGreaterThanOrEqual(2);
    expect((await homeCheckpointVerifierKey(config)).verifierKey).toBe(ckey.verifierKey);
  });

  it('before the vault exists (`airlock db migrate` on a new database) keys refuse; seeding after the migration creates them in the vault', async () => {
    const config = await fresh();
    const app = await openApp(config, {});
    cleanups.push(() => app.close());
    const err = await refusal(Promise.resolve().then(() => app.key.verifierKey));
    expect(err.code).toBe('STORAGE_FAILED');
    expect(err.message).toContain('airlock db migrate');
    expect((await refusal(homeCheckpointVerifierKey(config))).details.reason).toBe('missing');
    await app.store.migrate();
    await app.seed();
    noKeyFiles(config.home);
    const vkey = await homeCheckpointVerifierKey(config);
    expect(vkey.path).toBeUndefined();
    const next = await openApp(config, {});
    cleanups.push(() => next.close());
    expect(next.key.verifierKey).toBe(vkey.verifierKey);
  });
});

describe('keys in the vault through openApp on sqlite: wrong root key, verifier-only readers', () => {
  const cleanups: (() => Promise<void>)[] = [];
  // The embedded root key file in the home (the PostgreSQL suites above set AIRLOCK_MASTER_KEY).
  let savedEnvKey: string | undefined;
  beforeEach(() => {
    savedEnvKey = process.env.AIRLOCK_MASTER_KEY;
    delete process.env.AIRLOCK_MASTER_KEY;
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    if (savedEnvKey !== undefined) process.env.AIRLOCK_MASTER_KEY = savedEnvKey;
  });

  it('refuses a wrong root key at open, importing nothing; the right key then imports', async () => {
    const db = await freshDatabase('sqlite');
    cleanups.push(db.drop);
    const config = loadConfig({ flags: { home: db.home }, env: {} });
    const clock = new TestClock();
    // A vault made before migration 0005 (it holds no other keys), beside the old key files.
    const first = await openApp(config, { migrate: true, clock: clock.now });
    await first.close();
    const raw = await openStore(config.database);
    await raw.transact((tx) => tx.db.deleteFrom('vault_sealed_keys').execute());
    await raw.close();
    const ckey = await loadOrCreateCheckpointKey(config.home, config.auditOrigin);
    await loadOrCreateSealKey(config.home);
    const rightKey = readFileSync(masterKeyPath(config.home), 'utf8');
    writeFileSync(masterKeyPath(config.home), `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });

    const err = await refusal(openApp(config, { clock: clock.now }));
    expect(err.code).toBe('KEY_INVALID');
    expect(err.details.reason).toBe('root_key_mismatch');
    expect(existsSync(sealKeyPath(config.home))).toBe(true);
    expect(existsSync(checkpointKeyPath(config.home))).toBe(true);
    const check = await openStore(config.database);
    expect(await check.db.selectFrom('vault_sealed_keys').selectAll().execute()).toEqual([]);
    await check.close();

    writeFileSync(masterKeyPath(config.home), rightKey, { mode: 0o600 });
    const app = await openApp(config, { clock: clock.now });
    cleanups.push(() => app.close());
    expect(app.key.verifierKey).toBe(ckey.verifierKey);
    noKeyFiles(config.home);
  });

  it('verifier-only readers: an unmigrated home’s key file; a public key swapped in the database is refused with the root key at hand', async () => {
    const db = await freshDatabase('sqlite');
    cleanups.push(db.drop);
    const config = loadConfig({ flags: { home: db.home }, env: {} });
    // No database, no file: missing (and nothing is created).
    expect((await refusal(homeCheckpointVerifierKey(config, {}))).details.reason).toBe('missing');
    expect(existsSync(config.database.kind === 'sqlite' ? config.database.path : '')).toBe(false);
    // A home from before issue 5 that was not migrated yet: its file is the anchor.
    const ckey = await loadOrCreateCheckpointKey(config.home, config.auditOrigin);
    const legacy = await homeCheckpointVerifierKey(config, {});
    expect(legacy.verifierKey).toBe(ckey.verifierKey);
    expect(legacy.path).toBe(checkpointKeyPath(config.home));

    const app = await openApp(config, { migrate: true });
    await app.close();
    noKeyFiles(config.home);
    expect((await homeCheckpointVerifierKey(config, {})).verifierKey).toBe(ckey.verifierKey);
    const store = await openStore(config.database);
    await store.transact((tx) => tx.db.updateTable('vault_sealed_keys').set({ public_key: randomBytes(32) }).where('name', '=', 'audit-checkpoint').execute());
    await store.close();
    const err = await refusal(homeCheckpointVerifierKey(config, {}));
    expect(err.code).toBe('KEY_INVALID');
    expect(err.details).toEqual({ reason: 'sealed_key_invalid', key: 'audit-checkpoint' });
  });
});
