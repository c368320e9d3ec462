/**
 * Secret release through the API on both engines: a step's runner fetches with the step's own
 * workload token (POST /api/v1/workload/secrets). Only while the step runs, only what it
 * declared, only what the Cedar release policy allows (which sees stage, environment, branch
 * and gate state). Every refusal is recorded; a corrupted or moved ciphertext is a clear,
 * recorded fault that never yields a value; bad input writes nothing.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPolicies, parsePolicyFiles } from '../../src/policy/index.js';
import type { Job } from '../../src/runs/index.js';
import { buildServer } from '../../src/server/index.js';
import { ENGINES } from '../support/engines.js';
import { git, makeRepo } from '../runs/support.js';
import { TestClock, expectError, login, makeUser, nextCode, openTestApp, recordOf, rid, silent } from '../server/support.js';
import type { TestApp, TestUser } from '../server/support.js';

const PIPELINE = `version: 1
pipeline: shop
owners: [alice]
environments:
  production: { protected: true }
stages:
  build:
    steps:
      - { name: compile, run: "true", secrets: [API_TOKEN] }
      - { name: lint, run: "true", secrets: [LINT_KEY] }
  deploy:
    needs: [build]
    environment: production
    steps:
      - { name: ship, run: "true", secrets: [DEPLOY_KEY] }
`;
const VALUES = { API_TOKEN: 'api-tok-7fQ2-unique-release-1', LINT_KEY: 'lint-key-Zz81-unique-release-2', DEPLOY_KEY: 'deploy-key-Pq44-unique-release-3' } as const;
const RUNNER = { name: 'test-runner', labels: ['embedded'] };

interface Fetched {
  secrets: { name: string; version: number; valueBase64: string }[];
}

describe.each(ENGINES)('secret release on %s', (engine) => {
  let t: TestApp;
  let server: FastifyInstance;
  const clock = new TestClock();
  let admin: TestUser;
  let session: string;
  let repoDir: string;

  beforeAll(async () => {
    t = await openTestApp(engine, { clock });
    admin = await makeUser(t.app, clock, 'alice', ['admin']);
    server = await buildServer(t.app, { logger: silent });
    session = await login(server, clock, admin);
    const repo = makeRepo({ 'airlock.yaml': PIPELINE });
    repoDir = repo.dir;
    git(repoDir, 'branch', 'feature');
    expect((await call(session, 'POST', '/api/v1/projects', { name: 'shop', repo: repoDir })).statusCode).toBe(201);
    for (const [name, value] of Object.entries(VALUES)) {
      const scope = name === 'DEPLOY_KEY' ? { project: 'shop', environment: 'production' } : { project: 'shop' };
      const res = await call(session, 'POST', '/api/v1/secrets', { name, ...scope, valueBase64: Buffer.from(value).toString('base64') });
      expect(res.statusCode, res.body).toBe(201);
    }
  }, 60_000);

  afterAll(async () => {
    await server.close();
    await t.cleanup();
  });

  function call(token: string, method: string, url: string, payload?: unknown, requestId = rid()) {
    return server.inject({ method: method as 'POST', url, headers: { authorization: `Bearer ${token}`, 'x-request-id': requestId }, ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }) });
  }

  /** Start a run and claim every queued step like a runner would; each with its workload token. */
  async function startAndClaim(ref = 'main'): Promise<Map<string, { job: Job; token: string }>> {
    await t.app.runs.start({ kind: 'user', id: 'alice' }, { project: 'shop', ref });
    return claimAll();
  }

  async function claimAll(): Promise<Map<string, { job: Job; token: string }>> {
    const out = new Map<string, { job: Job; token: string }>();
    for (let job = await t.app.runs.claim(RUNNER); job !== undefined; job = await t.app.runs.claim(RUNNER)) {
      const env = await t.app.providedEnv(job, RUNNER.name);
      out.set(job.step, { job, token: env.AIRLOCK_TOKEN! });
    }
    return out;
  }

  const done = (job: Job) => t.app.runs.complete(job.stepId, RUNNER.name, { status: 'succeeded', exitCode: 0, reason: undefined, outputs: [], evidence: null });
  const releases = async (outcome: 'allowed' | 'denied' | 'failed') => (await t.app.audit.search({ action: 'secrets.release', outcome, limit: 100 })).map((e) => e.event);

  it('gives a running step exactly its declared secret, not cached, recorded with version and HMAC but never the value', async () => {
    const steps = await startAndClaim();
    const compile = steps.get('compile')!;
    const id = rid();
    const res = await call(compile.token, 'POST', '/api/v1/workload/secrets', {}, id);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    // The request's own record committed with the release, once (recordOf asserts exactly one).
    expect(await recordOf(t.app, id)).toMatchObject({ action: 'secrets.fetch', outcome: 'allowed', details: { status: 200, method: 'POST' } });
    const body = res.json<Fetched>();
    expect(body.secrets.map((s) => [s.name, s.version, Buffer.from(s.valueBase64, 'base64').toString()])).toEqual([['API_TOKEN', 1, VALUES.API_TOKEN]]);
    const rec = (await releases('allowed')).at(-1)!;
    expect(rec.actor).toEqual({ kind: 'workload', id: `run:${compile.job.runId}:step:${compile.job.stepId}` });
    expect(rec.details).toMatchObject({ name: 'API_TOKEN', version: 1, stage: 'build', step: 'compile', runner: RUNNER.name });
    expect(rec.details.valueHmac).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
    expect(JSON.stringify(await t.app.audit.search({ limit: 500 }))).not.toContain(VALUES.API_TOKEN);
    for (const s of steps.values()) await done(s.job);
  });

  it('refuses a secret the step did not declare (another step\'s), releases nothing of the request, and records the denial', async () => {
    const steps = await startAndClaim();
    const compile = steps.get('compile')!;
    const allowedBefore = (await releases('allowed')).length;
    const id = rid();
    const err = expectError(await call(compile.token, 'POST', '/api/v1/workload/secrets', { names: ['API_TOKEN', 'LINT_KEY'] }, id), 403, 'FORBIDDEN');
    expect(err.message).toMatch(/compile.*did not declare secret LINT_KEY/);
    expect(JSON.stringify(err)).not.toContain(VALUES.LINT_KEY);
    expect(JSON.stringify(err)).not.toContain(VALUES.API_TOKEN);
    // Nothing of the refused request was released: not even the declared API_TOKEN.
    expect((await releases('allowed')).length).toBe(allowedBefore);
    const denied = (await releases('denied')).at(-1)!;
    expect(denied.reason).toMatch(/did not declare secret LINT_KEY/);
    expect(denied.details).toMatchObject({ name: 'LINT_KEY', stage: 'build', step: 'compile' });
    expect((await recordOf(t.app, id)).outcome).toBe('denied');
    for (const s of steps.values()) await done(s.job);
  });

  it('refuses people (only a workload token fetches), a finished step\'s token, and an expired token', async () => {
    expectError(await call(session, 'POST', '/api/v1/workload/secrets', {}), 403, 'FORBIDDEN');
    const steps = await startAndClaim();
    const compile = steps.get('compile')!;
    const lint = steps.get('lint')!;
    await done(compile.job);
    // A replay after the step ended: the token is still within its lifetime, the step is not.
    const replay = expectError(await call(compile.token, 'POST', '/api/v1/workload/secrets', {}), 403, 'FORBIDDEN');
    expect(replay.message).toMatch(/compile is succeeded: secrets are released only while it runs/);
    clock.advance(30 * 60_000);
    expectError(await call(lint.token, 'POST', '/api/v1/workload/secrets', {}), 401, 'UNAUTHENTICATED');
    await done(lint.job);
    session = await login(server, clock, admin);
  });

  it('keeps protected-environment secrets from a deploy stage whose approvals are not given (policy protected-secrets-need-approval)', async () => {
    const build = await startAndClaim();
    for (const s of build.values()) await done(s.job);
    const deploy = await claimAll();
    const ship = deploy.get('ship')!;
    expect(ship.job.environment).toBe('production');
    const err = expectError(await call(ship.token, 'POST', '/api/v1/workload/secrets', {}), 403, 'FORBIDDEN');
    expect(err.message).toMatch(/policy refused secret DEPLOY_KEY: policy protected-secrets-need-approval/);
    const denied = (await releases('denied')).at(-1)!;
    expect(denied.details).toMatchObject({ name: 'DEPLOY_KEY', stage: 'deploy', step: 'ship', policies: ['protected-secrets-need-approval'] });
    await done(ship.job);
  });

  it('lets policy see the branch: a custom forbid keeps API_TOKEN to runs of main', async () => {
    const extra = parsePolicyFiles([
      {
        file: 'main-only.cedar',
        text: '@id("api-token-main-only") forbid (principal, action == Airlock::Action::"secrets.release", resource is Airlock::Secret) when { resource.name == "API_TOKEN" && context.branch != "main" };',
      },
    ]);
    await t.app.policy.update({ kind: 'user', id: 'alice' }, { ...defaultPolicies(), ...extra }, 'API_TOKEN only for main');
    clock.advance(2000);
    const feature = await startAndClaim('feature');
    const err = expectError(await call(feature.get('compile')!.token, 'POST', '/api/v1/workload/secrets', {}), 403, 'FORBIDDEN');
    expect(err.message).toMatch(/policy api-token-main-only/);
    for (const s of feature.values()) await done(s.job);
    const main = await startAndClaim('main');
    expect((await call(main.get('compile')!.token, 'POST', '/api/v1/workload/secrets', {})).statusCode).toBe(200);
    for (const s of main.values()) await done(s.job);
    await t.app.policy.update({ kind: 'user', id: 'alice' }, defaultPolicies(), 'back to the defaults');
  });

  it('a corrupted ciphertext or one moved to another secret is a recorded fault, never a value, for steps and reveal alike', async () => {
    const db = t.app.store.db;
    const write = (fn: (w: typeof db) => Promise<unknown>) => t.app.store.transact((tx) => fn(tx.db));
    const rowOf = async (name: string) => {
      const s = await db.selectFrom('secrets').select('id').where('name', '=', name).executeTakeFirstOrThrow();
      return db.selectFrom('secret_versions').selectAll().where('secret_id', '=', s.id).where('version', '=', 1).executeTakeFirstOrThrow();
    };
    const api = await rowOf('API_TOKEN');
    const lint = await rowOf('LINT_KEY');
    const flipped = Buffer.from(api.ciphertext);
    flipped[0] = flipped[0]! ^ 1;
    await write((w) => w.updateTable('secret_versions').set({ ciphertext: flipped }).where('secret_id', '=', api.secret_id).where('version', '=', 1).execute());
    clock.advance(1000);
    let steps = await startAndClaim();
    const err = expectError(await call(steps.get('compile')!.token, 'POST', '/api/v1/workload/secrets', {}), 500, 'INTEGRITY_FAILED');
    expect(err.message).toMatch(/secret API_TOKEN version 1 cannot be decrypted/);
    const failed = (await releases('failed')).at(-1)!;
    expect(failed.reason).toMatch(/version 1 could not be decrypted/);
    expect(failed.details).toMatchObject({ name: 'API_TOKEN', step: 'compile' });
    for (const s of steps.values()) await done(s.job);

    // Reveal (a person, stepped up) meets the same fault and the same record.
    const up = await call(session, 'POST', '/api/v1/auth/step-up', { code: nextCode(clock, admin) });
    session = up.json<{ token: string }>().token;
    expectError(await call(session, 'POST', '/api/v1/secrets/API_TOKEN/reveal', { project: 'shop', justification: 'checking the corrupted value' }), 500, 'INTEGRITY_FAILED');
    expect((await t.app.audit.search({ action: 'secrets.reveal', outcome: 'failed', limit: 10 })).length).toBeGreaterThan(0);

    // Moving LINT_KEY's whole sealed version (data key and all) into API_TOKEN: the AAD binds
    // secret id and version, so it does not open there.
    await write((w) => w.updateTable('secret_versions').set({ kek_id: lint.kek_id, wrapped_dek: lint.wrapped_dek, nonce: lint.nonce, ciphertext: lint.ciphertext, tag: lint.tag })    .where('secret_id', '=', api.secret_id).where('version', '=', 1).execute());
    steps = await startAndClaim();
    const moved = await call(steps.get('compile')!.token, 'POST', '/api/v1/workload/secrets', {});
    expectError(moved, 500, 'INTEGRITY_FAILED');
    expect(moved.body).not.toContain(Buffer.from(VALUES.LINT_KEY).toString('base64'));
    for (const s of steps.values()) await done(s.job);
    // Restore for the engine's remaining tests.
    await write((w) => w.updateTable('secret_versions').set({ kek_id: api.kek_id, wrapped_dek: api.wrapped_dek, nonce: api.nonce, ciphertext: api.ciphertext, tag: api.tag }).where('secret_id', '=', api.secret_id).where('version', '=', 1).execute());
  });

  it('bad input (invalid name, value over the limit, unknown scope) gets a clear error naming the field, a record, and no write', async () => {
    const count = async () => (await t.app.store.db.selectFrom('secret_versions').select((eb) => eb.fn.countAll<string | number>().as('n')).executeTakeFirstOrThrow()).n;
    const before = Number(await count());
    const cases: { payload: Record<string, unknown>; field: string; message: RegExp }[] = [
      { payload: { name: 'db-password', valueBase64: 'eA==' }, field: 'name', message: /upper-case letters, digits and "_"/ },
      { payload: { name: 'BIG', valueBase64: Buffer.alloc(64 * 1024 + 1, 1).toString('base64') }, field: 'value', message: /65537 bytes; at most 65536/ },
      { payload: { name: 'NOWHERE', project: 'no-such-project', valueBase64: 'eA==' }, field: 'project', message: /unknown scope: there is no project named no-such-project/ },
      { payload: { name: 'ENV_ONLY', environment: 'production', valueBase64: 'eA==' }, field: 'environment', message: /an environment scope needs a project/ },
    ];
    for (const c of cases) {
      const id = rid();
      const err = expectError(await call(session, 'POST', '/api/v1/secrets', c.payload, id), 400, 'VALIDATION_FAILED');
      expect(err.message).toMatch(c.message);
      expect(JSON.stringify(err.details)).toContain(`"path":"${c.field}"`);
      const rec = await recordOf(t.app, id);
      expect(rec).toMatchObject({ action: 'secrets.write', outcome: 'failed', reason: 'VALIDATION_FAILED' });
    }
    expect(Number(await count())).toBe(before);
  });
});
