/**
 * The agent protocol over HTTP (in-process server, both engines): enrolment with one-time
 * tokens, and an untrusted agent confined to the jobs it was given.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobStore, sha256Digest } from '../../src/artifacts/index.js';
import { ed25519LinkSigner, executeStep, verifyLink } from '../../src/runner/index.js';
import type { StepResult } from '../../src/runner/index.js';
import { reportOf, stepJobOf } from '../../src/runs/index.js';
import type { Job } from '../../src/runs/index.js';
import { buildServer } from '../../src/server/index.js';
import { ENGINES } from '../support/engines.js';
import { TestClock, expectError, openTestApp, recordOf, rid, signIn, silent } from '../server/support.js';
import type { TestApp } from '../server/support.js';
import { agentKeys, makeRepo, pipeline } from './support.js';
import type { Repo } from './support.js';

interface Registered {
  readonly name: string;
  readonly apiKey: string;
  readonly jwt: string;
  readonly keys: ReturnType<typeof agentKeys>;
}

interface Claimed {
  readonly job: Job;
  readonly env: Record<string, string>;
}

const ALICE = { kind: 'user' as const, id: 'alice' };

describe.each(ENGINES)('agents over HTTP on %s', (engine) => {
  let t: TestApp;
  let server: FastifyInstance;
  let clock: TestClock;
  let admin: string;
  let repo: Repo;
  let scratch: string;

  beforeEach(async () => {
    clock = new TestClock();
    t = await openTestApp(engine, { clock });
    server = await buildServer(t.app, { logger: silent });
    await server.ready();
    admin = await signIn(t.app, clock, 'alice', ['admin']);
    repo = makeRepo();
    scratch = mkdtempSync(join(tmpdir(), 'airlock-agent-api-'));
  });
  afterEach(async () => {
    await server.close();
    await t.cleanup();
    repo.remove();
    rmSync(scratch, { recursive: true, force: true });
  });

  const call = (method: 'GET' | 'POST' | 'PUT', url: string, opts: { token?: string; json?: unknown; body?: Buffer; id?: string } = {}) => {
    const id = opts.id ?? rid('agents');
    const headers: Record<string, string> = { 'x-request-id': id };
    if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/octet-stream';
    return server.inject({ method, url, headers, ...(opts.json !== undefined ? { payload: opts.json as object } : opts.body !== undefined ? { payload: opts.body } : {}) }).then((res) => ({ res, id }));
  };

  async function newToken(labels: string[] = ['remote'], expiresInMinutes?: number): Promise<string> {
    const { res } = await call('POST', '/api/v1/agents/registration-tokens', { token: admin, json: { labels, ...(expiresInMinutes === undefined ? {} : { expiresInMinutes }) } });
    expect(res.statusCode, res.body).toBe(201);
    return res.json<{ token: string }>().token;
  }

  async function register(name: string, labels: string[] = ['remote']): Promise<Registered> {
    const keys = agentKeys();
    const { res } = await call('POST', '/api/v1/agents/register', { json: { token: await newToken(labels), name, publicKey: keys.publicPem } });
    expect(res.statusCode, res.body).toBe(201);
    const { apiKey } = res.json<{ apiKey: string }>();
    const ex = await call('POST', '/api/v1/auth/token', { json: { apiKey } });
    expect(ex.res.statusCode, ex.res.body).toBe(201);
    return { name, apiKey, jwt: ex.res.json<{ accessToken: string }>().accessToken, keys };
  }

  async function claim(agent: Registered): Promise<Claimed> {
    const { res } = await call('GET', '/api/v1/agents/jobs/next?wait=0', { token: agent.jwt });
    expect(res.statusCode, res.body).toBe(200);
    return res.json<Claimed>();
  }

  /** Run a claimed job as the agent would: source from the server, inputs from the server, executeStep signing with its key. */
  async function execute(agent: Registered, claimed: Claimed, signWith: KeyObject = agent.keys.privateKey): Promise<{ result: StepResult; blobs: BlobStore }> {
    const dir = mkdtempSync(join(scratch, 'job-'));
    const src = await call('GET', `/api/v1/agents/jobs/${claimed.job.stepId}/source`, { token: agent.jwt });
    expect(src.res.statusCode, src.res.body).toBe(200);
    expect(src.res.headers['content-type']).toBe('application/x-tar');
    writeFileSync(join(dir, 'source.tar'), src.res.rawPayload);
    execFileSync('mkdir', ['-p', join(dir, 'source')]);
    execFileSync('tar', ['-xf', join(dir, 'source.tar'), '-C', join(dir, 'source')]);
    const blobs = new BlobStore(join(dir, 'blobs'));
    for (const input of claimed.job.inputs) {
      const got = await call('GET', `/api/v1/agents/jobs/${claimed.job.stepId}/inputs/${input.digest}`, { token: agent.jwt });
      expect(got.res.statusCode, got.res.body).toBe(200);
      await blobs.put(got.res.rawPayload);
    }
    const result = await executeStep(stepJobOf(claimed.job, claimed.env, join(dir, 'source')), { blobs, workRoot: join(dir, 'work'), signer: ed25519LinkSigner(signWith), onOutput: () => undefined, sandbox: 'off' });
    return { result, blobs };
  }

  async function upload(agent: Registered, stepId: string, blobs: BlobStore, digest: string) {
    return call('PUT', `/api/v1/agents/jobs/${stepId}/outputs/${digest}`, { token: agent.jwt, body: await blobs.readVerified(digest) });
  }

  async function step(stepId: string) {
    const row = await t.app.store.db.selectFrom('run_steps').selectAll().where('id', '=', stepId).executeTakeFirstOrThrow();
    return row;
  }

  async function eventsFor(action: string) {
    return (await t.app.audit.search({ action, order: 'asc', limit: 1000 })).map((e) => e.event);
  }

  it('enrols an agent with a one-time token: spent once; wrong, reused and expired tokens are 401 and recorded; no secret is recorded', async () => {
    // Only privileged people make tokens.
    expect((await call('POST', '/api/v1/agents/registration-tokens', { json: { labels: ['x'] } })).res.statusCode).toBe(401);
    const dev = await signIn(t.app, clock, 'dave', ['developer']);
    expectError((await call('POST', '/api/v1/agents/registration-tokens', { token: dev, json: { labels: ['x'] } })).res, 403, 'FORBIDDEN');
    expectError((await call('POST', '/api/v1/agents/registration-tokens', { token: admin, json: { labels: ['Bad Label'] } })).res, 400, 'VALIDATION_FAILED');

    const made = await call('POST', '/api/v1/agents/registration-tokens', { token: admin, json: { labels: ['remote', 'linux', 'remote'] } });
    expect(made.res.statusCode, made.res.body).toBe(201);
    const issued = made.res.json<{ token: string; tokenId: string; labels: string[]; expiresAt: string }>();
    expect(issued.token).toMatch(/^alrt_[A-Za-z0-9_-]{43}$/);
    expect(issued.labels).toEqual(['linux', 'remote']);
    expect(Date.parse(issued.expiresAt) - clock.now().getTime()).toBe(60 * 60_000);

    const keys = agentKeys();
    const ok = await call('POST', '/api/v1/agents/register', { json: { token: issued.token, name: 'build-1', publicKey: keys.publicPem } });
    expect(ok.res.statusCode, ok.res.body).toBe(201);
    const reg = ok.res.json<{ agentId: string; name: string; serviceAccount: string; labels: string[]; apiKey: string }>();
    expect(reg).toMatchObject({ name: 'build-1', serviceAccount: 'agent-build-1', labels: ['linux', 'remote'] });
    expect(reg.apiKey).toMatch(/^alk_[a-z2-7]{12}_/);
    // The key works, and the principal is a service account with exactly the runner role.
    const ex = await call('POST', '/api/v1/auth/token', { json: { apiKey: reg.apiKey } });
    expect(ex.res.statusCode, ex.res.body).toBe(201);
    const who = await call('GET', '/api/v1/auth/whoami', { token: ex.res.json<{ accessToken: string }>().accessToken });
    expect(who.res.json()).toMatchObject({ kind: 'service', name: 'agent-build-1', roles: ['runner'] });
    const row = await t.app.store.db.selectFrom('agents').selectAll().where('name', '=', 'build-1').executeTakeFirstOrThrow();
    expect(row.public_key).toBe(keys.publicPem);
    expect(row.registered_with).toBe(issued.tokenId);

    // Spent: the same token again (another name) is refused, as are a wrong and a malformed one.
    const again = await call('POST', '/api/v1/agents/register', { json: { token: issued.token, name: 'build-2', publicKey: keys.publicPem } });
    expectError(again.res, 401, 'UNAUTHENTICATED');
    const wrong = await call('POST', '/api/v1/agents/register', { json: { token: `alrt_${'A'.repeat(43)}`, name: 'build-2', publicKey: keys.publicPem } });
    expectError(wrong.res, 401, 'UNAUTHENTICATED');
    const garbage = await call('POST', '/api/v1/agents/register', { json: { token: 'let-me-in', name: 'build-2', publicKey: keys.publicPem } });
    expectError(garbage.res, 401, 'UNAUTHENTICATED');
    // The same answer for every reason; the reason is in the audit log only.
    expect(again.res.json()).toEqual(wrong.res.json());
    // Expired.
    const shortLived = await newToken(['remote'], 1);
    clock.advance(61_000);
    const late = await call('POST', '/api/v1/agents/register', { json: { token: shortLived, name: 'build-3', publicKey: keys.publicPem } });
    expectError(late.res, 401, 'UNAUTHENTICATED');

    for (const { id } of [again, wrong, garbage, late]) expect(await recordOf(t.app, id)).toMatchObject({ action: 'agents.register', outcome: 'denied', reason: 'UNAUTHENTICATED', actor: { kind: 'anonymous' } });
    const refusals = (await eventsFor('agents.register')).filter((e) => e.outcome === 'denied' && e.details.method === undefined);
    expect(refusals.map((e) => e.reason)).toEqual(['token_used', 'token_unknown', 'token_malformed', 'token_expired']);
    expect((await eventsFor('agents.register')).filter((e) => e.outcome === 'allowed' && e.details.method === undefined)).toHaveLength(1);
    expect(await t.app.store.db.selectFrom('agents').select('name').execute()).toEqual([{ name: 'build-1' }]);

    // Neither the registration token nor the API key is stored or recorded anywhere.
    const everything = JSON.stringify(await t.app.audit.search({ order: 'asc', limit: 1000 }));
    const tokens = JSON.stringify(await t.app.store.db.selectFrom('agent_registration_tokens').selectAll().execute());
    for (const secret of [issued.token, reg.apiKey, issued.token.slice(5), reg.apiKey.slice(18)]) {
      expect(everything).not.toContain(secret);
      expect(tokens).not.toContain(secret);
    }
  });

  it('refuses a taken name without spending the token, and a key that is not Ed25519', async () => {
    await register('build-1');
    const token = await newToken();
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expectError((await call('POST', '/api/v1/agents/register', { json: { token, name: 'build-2', publicKey: rsa } })).res, 400, 'VALIDATION_FAILED');
    expectError((await call('POST', '/api/v1/agents/register', { json: { token, name: 'Build 2', publicKey: agentKeys().publicPem } })).res, 400, 'VALIDATION_FAILED');
    expectError((await call('POST', '/api/v1/agents/register', { json: { token, name: 'build-1', publicKey: agentKeys().publicPem } })).res, 409, 'CONFLICT');
    // Still unspent after the refusals.
    const ok = await call('POST', '/api/v1/agents/register', { json: { token, name: 'build-2', publicKey: agentKeys().publicPem } });
    expect(ok.res.statusCode, ok.res.body).toBe(201);
  });

  it('runs a job through the protocol; a second agent can touch none of it, and every attempt is recorded', async () => {
    repo.commit('two', {
      'airlock.yaml': pipeline('two', { run: 'echo hi > out.txt && echo built', outputs: ['out.txt'] }, ['  use:', '    needs: [build]', '    steps:', '      - name: consume', '        run: cat out.txt', '        runs-on: [remote]', '        inputs: [out.txt]', ''].join('\n')),
    });
    await t.app.projects.add(ALICE, { name: 'web', repo: repo.dir });
    const a = await register('alpha');
    const b = await register('bravo');
    const other = await register('other', ['gpu']);
    const run = await t.app.runs.start(ALICE, { project: 'web', ref: 'two' });

    // Labels: only an agent with every runs-on label gets the job; one claim wins.
    expect((await call('GET', '/api/v1/agents/jobs/next?wait=0', { token: other.jwt })).res.statusCode).toBe(204);
    const claimed = await claim(a);
    expect(claimed.job).toMatchObject({ runId: run.id, stage: 'build', step: 'make', attempt: 1, outputs: ['out.txt'] });
    expect(claimed.env).toMatchObject({ AIRLOCK_RUN_ID: run.id, AIRLOCK_COMMIT: run.commit, AIRLOCK_RUNNER: 'agent:alpha' });
    expect(claimed.env.AIRLOCK_TOKEN).toMatch(/^eyJ[\w-]*\.[\w-]*\.[\w-]*$/);
    expect((await call('GET', '/api/v1/agents/jobs/next?wait=0', { token: b.jwt })).res.statusCode).toBe(204);
    const stepId = claimed.job.stepId;
    expect(await step(stepId)).toMatchObject({ state: 'running', runner: 'agent:alpha' });

    // People (even an admin) are not agents.
    expectError((await call('GET', '/api/v1/agents/jobs/next?wait=0', { token: admin })).res, 403, 'FORBIDDEN');
    // The offer carries no secret values; an agent's own credential fetches none (only the
    // step's workload token can, while the step runs).
    expect(Object.keys(claimed).sort()).toEqual(['env', 'heartbeatMs', 'job']);
    const asAgent = await call('POST', '/api/v1/workload/secrets', { token: a.jwt, json: {} });
    expectError(asAgent.res, 403, 'FORBIDDEN');
    expect(await recordOf(t.app, asAgent.id)).toMatchObject({ actor: { kind: 'service', id: 'agent-alpha' }, action: 'secrets.fetch', outcome: 'denied' });

    // bravo tries everything on alpha's job: refused, recorded with who holds it.
    const { result, blobs } = await execute(a, claimed);
    expect(result.status).toBe('succeeded');
    const out = result.outputs[0]!;
    const attempts = [
      await call('GET', `/api/v1/agents/jobs/${stepId}/source`, { token: b.jwt }),
      await call('GET', `/api/v1/agents/jobs/${stepId}/inputs/${out.digest}`, { token: b.jwt }),
      await call('PUT', `/api/v1/agents/jobs/${stepId}/outputs/${out.digest}`, { token: b.jwt, body: Buffer.from('hi\n') }),
      await call('POST', `/api/v1/agents/jobs/${stepId}/logs`, { token: b.jwt, json: { chunks: [{ stream: 'stdout', data: Buffer.from('forged').toString('base64') }] } }),
      await call('POST', `/api/v1/agents/jobs/${stepId}/heartbeat`, { token: b.jwt, json: {} }),
      await call('POST', `/api/v1/agents/jobs/${stepId}/result`, { token: b.jwt, json: reportOf(result) }),
    ];
    for (const { res, id } of attempts) {
      expectError(res, 403, 'FORBIDDEN');
      expect(await recordOf(t.app, id)).toMatchObject({ actor: { kind: 'service', id: 'agent-bravo' }, outcome: 'denied', reason: 'FORBIDDEN' });
    }
    const refused = await eventsFor('agents.jobs.refused');
    expect(refused.map((e) => e.details.attempted)).toEqual(['source', 'input', 'output', 'logs', 'heartbeat', 'result']);
    for (const e of refused) expect(e).toMatchObject({ actor: { id: 'agent-bravo' }, resource: `runs/${run.id}/steps/${stepId}`, details: { heldBy: 'agent:alpha' } });
    // The scheduler refuses bravo too, whatever the routes do.
    await expect(t.app.runs.complete(stepId, 'agent:bravo', reportOf(result))).rejects.toMatchObject({ code: 'CONFLICT' });
    expect(await t.app.blobs.has(out.digest)).toBe(false);
    expect(await step(stepId)).toMatchObject({ state: 'running', runner: 'agent:alpha' });

    // alpha: logs, heartbeat, a result before the upload is refused, a mismatched upload stores nothing.
    expect((await call('POST', `/api/v1/agents/jobs/${stepId}/logs`, { token: a.jwt, json: { chunks: [{ stream: 'stdout', data: Buffer.from('hi\n').toString('base64') }] } })).res.statusCode).toBe(204);
    expect((await call('POST', `/api/v1/agents/jobs/${stepId}/heartbeat`, { token: a.jwt, json: {} })).res.json()).toEqual({ cancel: false });
    expectError((await call('POST', `/api/v1/agents/jobs/${stepId}/result`, { token: a.jwt, json: reportOf(result) })).res, 400, 'VALIDATION_FAILED');
    const evil = Buffer.from('not what was built\n');
    expectError((await call('PUT', `/api/v1/agents/jobs/${stepId}/outputs/${out.digest}`, { token: a.jwt, body: evil })).res, 400, 'VALIDATION_FAILED');
    expect(await t.app.blobs.has(out.digest)).toBe(false);
    expect(await t.app.blobs.has(sha256Digest(evil))).toBe(false);
    // An input that is not the job's is not handed out (the job has none).
    expectError((await call('GET', `/api/v1/agents/jobs/${stepId}/inputs/${sha256Digest('x')}`, { token: a.jwt })).res, 403, 'FORBIDDEN');

    for (const d of [out.digest, result.logs.stdout.digest!, result.logs.stderr.digest!]) {
      const up = await upload(a, stepId, blobs, d);
      expect(up.res.statusCode, up.res.body).toBe(201);
    }
    expect((await t.app.blobs.readVerified(out.digest)).toString()).toBe('hi\n');
    const done = await call('POST', `/api/v1/agents/jobs/${stepId}/result`, { token: a.jwt, json: reportOf(result) });
    expect(done.res.statusCode, done.res.body).toBe(204);
    expect(await step(stepId)).toMatchObject({ state: 'succeeded', runner: 'agent:alpha', exit_code: 0 });
    // A second report for the ended step: 409, not a second completion.
    expectError((await call('POST', `/api/v1/agents/jobs/${stepId}/result`, { token: a.jwt, json: reportOf(result) })).res, 409, 'CONFLICT');
    expect((await call('POST', `/api/v1/agents/jobs/${stepId}/heartbeat`, { token: a.jwt, json: {} })).res.json()).toEqual({ cancel: true });
    const stored = JSON.parse((await step(stepId)).result_json ?? '{}') as { evidence: { link: unknown } };
    expect(verifyLink(stored.evidence.link, a.keys.publicKey)).toMatchObject({ ok: true });
    const logs = await t.app.runs.logs(run.id, undefined);
    expect(Buffer.concat(logs.chunks.map((c) => c.data)).toString()).toContain('hi');

    // Stage two: the declared input is handed out, to this job's agent only.
    const second = await claim(b);
    expect(second.job).toMatchObject({ stage: 'use', step: 'consume', inputs: [{ path: 'out.txt', digest: out.digest }] });
    const input = await call('GET', `/api/v1/agents/jobs/${second.job.stepId}/inputs/${out.digest}`, { token: b.jwt });
    expect(input.res.statusCode).toBe(200);
    expect(input.res.rawPayload.toString()).toBe('hi\n');
    expectError((await call('GET', `/api/v1/agents/jobs/${second.job.stepId}/inputs/${out.digest}`, { token: a.jwt })).res, 403, 'FORBIDDEN');
    expectError((await call('GET', `/api/v1/agents/jobs/${second.job.stepId}/inputs/${result.logs.stdout.digest!}`, { token: b.jwt })).res, 403, 'FORBIDDEN');
    const consumed = await execute(b, second);
    expect(consumed.result.status).toBe('succeeded');
    for (const d of [consumed.result.logs.stdout.digest!, consumed.result.logs.stderr.digest!]) expect((await upload(b, second.job.stepId, consumed.blobs, d)).res.statusCode).toBe(201);
    expect((await call('POST', `/api/v1/agents/jobs/${second.job.stepId}/result`, { token: b.jwt, json: reportOf(consumed.result) })).res.statusCode).toBe(204);
    expect((await t.app.runs.show(run.id)).state).toBe('succeeded');
  });

  it('fails the step when the report is not backed by a link signed with the registered key', async () => {
    repo.commit('one', { 'airlock.yaml': pipeline('one', { run: 'echo hi > out.txt', outputs: ['out.txt'] }) });
    await t.app.projects.add(ALICE, { name: 'web', repo: repo.dir });
    const a = await register('alpha');

    // A success with no link at all.
    let run = await t.app.runs.start(ALICE, { project: 'web', ref: 'one' });
    let claimed = await claim(a);
    const bare = await call('POST', `/api/v1/agents/jobs/${claimed.job.stepId}/result`, { token: a.jwt, json: { status: 'succeeded', exitCode: 0, reason: null, outputs: [], evidence: null } });
    expectError(bare.res, 400, 'VALIDATION_FAILED');
    expect(await step(claimed.job.stepId)).toMatchObject({ state: 'failed' });
    expect((await step(claimed.job.stepId)).reason).toMatch(/report was refused: a successful report must carry the signed link record/);
    expect((await t.app.runs.show(run.id)).state).toBe('failed');

    // A real execution, signed by a key that is not the agent's.
    run = await t.app.runs.start(ALICE, { project: 'web', ref: 'one' });
    claimed = await claim(a);
    const { result, blobs } = await execute(a, claimed, generateKeyPairSync('ed25519').privateKey);
    for (const d of [result.outputs[0]!.digest]) expect((await upload(a, claimed.job.stepId, blobs, d)).res.statusCode).toBe(201);
    const forged = await call('POST', `/api/v1/agents/jobs/${claimed.job.stepId}/result`, { token: a.jwt, json: reportOf(result) });
    expectError(forged.res, 400, 'VALIDATION_FAILED');
    expect((await step(claimed.job.stepId)).reason).toMatch(/does not verify with the agent's registered key/);
    expect((await t.app.runs.show(run.id)).state).toBe('failed');
    const refusals = await eventsFor('agents.jobs.report.refused');
    expect(refusals).toHaveLength(2);
    expect(refusals.every((e) => e.outcome === 'denied' && e.actor.id === 'agent-alpha')).toBe(true);
    // A failure without a link (the agent could not even start) is accepted as a failure.
    const third = await t.app.runs.start(ALICE, { project: 'web', ref: 'one' });
    claimed = await claim(a);
    expect(claimed.job.runId).toBe(third.id);
    const plain = await call('POST', `/api/v1/agents/jobs/${claimed.job.stepId}/result`, { token: a.jwt, json: { status: 'failed', exitCode: null, reason: 'the agent could not run the step: disk full', outputs: [], evidence: null } });
    expect(plain.res.statusCode, plain.res.body).toBe(204);
    expect(await step(claimed.job.stepId)).toMatchObject({ state: 'failed', reason: 'the agent could not run the step: disk full' });
  });

  it('long-polls: a job queued while an agent waits is handed out within a second; an idle wait ends with 204', async () => {
    repo.commit('one', { 'airlock.yaml': pipeline('one', { run: 'true' }) });
    await t.app.projects.add(ALICE, { name: 'web', repo: repo.dir });
    const a = await register('alpha');
    const t0 = Date.now();
    const idle = await call('GET', '/api/v1/agents/jobs/next?wait=1', { token: a.jwt });
    expect(idle.res.statusCode).toBe(204);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    const waiting = call('GET', '/api/v1/agents/jobs/next?wait=20', { token: a.jwt });
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    await t.app.runs.start(ALICE, { project: 'web', ref: 'one' });
    const { res } = await waiting;
    expect(res.statusCode, res.body).toBe(200);
    expect(Date.now() - started).toBeLessThan(1000);
    expect((await t.app.store.db.selectFrom('agents').select('last_seen_at').where('name', '=', 'alpha').executeTakeFirstOrThrow()).last_seen_at).not.toBeNull();
  });

  it('a disabled agent is refused at once; agents are listed for auditors', async () => {
    const a = await register('alpha');
    const auditor = await signIn(t.app, clock, 'audrey', ['security-auditor']);
    const list = await call('GET', '/api/v1/agents', { token: auditor });
    expect(list.res.json<{ agents: { name: string; runner: string; labels: string[] }[] }>().agents).toMatchObject([{ name: 'alpha', runner: 'agent:alpha', labels: ['remote'] }]);
    expectError((await call('POST', '/api/v1/agents/alpha/disable', { token: auditor, json: {} })).res, 403, 'FORBIDDEN');
    expect((await call('POST', '/api/v1/agents/alpha/disable', { token: admin, json: {} })).res.statusCode).toBe(200);
    expectError((await call('GET', '/api/v1/agents/jobs/next?wait=0', { token: a.jwt })).res, 401, 'UNAUTHENTICATED');
    expectError((await call('POST', '/api/v1/auth/token', { json: { apiKey: a.apiKey } })).res, 401, 'UNAUTHENTICATED');
  });

  it('refuses malformed step ids and digests before any lookup or file path', async () => {
    const a = await register('alpha');
    for (const url of [`/api/v1/agents/jobs/${'0'.repeat(8)}/source`, `/api/v1/agents/jobs/00000000-0000-4000-8000-000000000000/inputs/sha256:..%2F..%2Fetc%2Fpasswd`, `/api/v1/agents/jobs/00000000-0000-4000-8000-000000000000/inputs/md5:abc`]) {
      expectError((await call('GET', url, { token: a.jwt })).res, 400, 'VALIDATION_FAILED');
    }
    expectError((await call('GET', '/api/v1/agents/jobs/00000000-0000-4000-8000-000000000000/source', { token: a.jwt })).res, 404, 'NOT_FOUND');
  });
});
