/**
 * Real `airlock agent` processes against a listening server (both engines): enrolment through
 * the CLI, a remote step end to end, pickup latency, a server restart, SIGTERM, and kill -9.
 */
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Secret } from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openApp } from '../../src/app/index.js';
import type { App } from '../../src/app/index.js';
import { loadConfig } from '../../src/config/index.js';
import { totpAt } from '../../src/identity/index.js';
import { verifyLink } from '../../src/runner/index.js';
import type { RunDetail } from '../../src/runs/index.js';
import { startServer } from '../../src/server/index.js';
import type { RunningServer } from '../../src/server/index.js';
import { json, requireBuilt, run, start } from '../cli/helpers.js';
import { ENGINES, freshDatabase } from '../support/engines.js';
import { silent } from '../server/support.js';
import { makeRepo, pipeline, until } from './support.js';
import type { Repo } from './support.js';

const ALICE = { kind: 'user' as const, id: 'alice' };
const LEASE_SECONDS = 3;

interface AgentChild {
  readonly child: ChildProcessWithoutNullStreams;
  readonly stateDir: string;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

describe.each(ENGINES)('airlock agent processes on %s', (engine) => {
  let app: App;
  let server: RunningServer;
  let port: number;
  let offset = 0;
  let admin: string;
  let repo: Repo;
  let drop: () => Promise<void>;
  let scratch: string;
  const agents: AgentChild[] = [];

  const url = (): string => `http://127.0.0.1:${port}`;
  const listen = async (p: number): Promise<RunningServer> => startServer(app, { logger: silent, host: '127.0.0.1', port: p });

  beforeAll(async () => {
    requireBuilt();
    const db = await freshDatabase(engine);
    drop = db.drop;
    const base = loadConfig({ flags: { home: db.home }, env: {} });
    // A short lease, so a killed agent's step lapses within seconds (agents heartbeat at a third of it).
    const config = { ...(engine === 'sqlite' ? base : { ...base, database: db.config }), runnerLeaseSeconds: LEASE_SECONDS };
    // Real time plus an offset: the administrator's second TOTP code needs the next 30 s step.
    app = await openApp(config, { migrate: true, clock: () => new Date(Date.now() + offset) });
    // The embedded runner takes [embedded] steps only; the reaper is called by the test itself.
    await app.startRunner({ labels: ['embedded'], concurrency: 1, reap: false });
    server = await listen(0);
    port = Number(new URL(server.url).port);
    // An administrator with MFA, through the real setup flow.
    const made = await app.identity.users.create({ kind: 'system', id: 'test' }, { username: 'alice', roles: ['admin'] });
    const password = 'pw-alice-correct horse battery';
    const enrolment = await app.identity.users.beginSetup({ username: 'alice', setupToken: made.setupToken, password });
    const secret = Buffer.from(Secret.fromBase32(enrolment.secret).bytes);
    await app.identity.users.confirmSetup({ username: 'alice', setupToken: made.setupToken, code: totpAt(secret, app.clock()) });
    offset += 30_000; // a TOTP code is good once per 30 s step
    admin = (await app.identity.sessions.login({ username: 'alice', password, code: totpAt(secret, app.clock()) })).token;
    repo = makeRepo();
    repo.commit('hello', { 'airlock.yaml': pipeline('hello', { run: 'echo hi | tee out.txt', outputs: ['out.txt'] }) });
    repo.commit('sleepy', { 'airlock.yaml': pipeline('sleepy', { run: 'echo started; sleep 30' }) });
    await app.projects.add(ALICE, { name: 'web', repo: repo.dir });
    scratch = mkdtempSync(join(tmpdir(), 'airlock-agent-proc-'));
  });

  afterAll(async () => {
    for (const a of agents) a.child.kill('SIGKILL');
    await Promise.all(agents.map((a) => a.exited));
    await server.close();
    await app.close();
    await drop();
    repo.remove();
    rmSync(scratch, { recursive: true, force: true });
  });

  async function registrationToken(label: string): Promise<string> {
    const r = await run(['agent', 'token', 'create', '--server', url(), '--label', label, '--json'], { env: { AIRLOCK_TOKEN: admin } });
    expect(r.code, r.stderr).toBe(0);
    const made = json<{ token: string; labels: string[] }>(r);
    expect(made.labels).toEqual([label]);
    return made.token;
  }

  async function startAgent(name: string): Promise<AgentChild> {
    const token = await registrationToken('remote');
    const stateDir = join(scratch, name);
    const child = start(['agent', '--server', url(), '--token', token, '--name', name, '--state', stateDir], {});
    child.stdin.end();
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const agent: AgentChild = { child, stateDir, stdout: () => out, stderr: () => err, exited };
    agents.push(agent);
    await until(`agent ${name} to start`, () => {
      if (out.includes(`airlock agent ${name} waiting for jobs from ${url()}`)) return true;
      if (child.exitCode !== null) throw new Error(`agent exited (${child.exitCode}): ${err}`);
      return undefined;
    }, 20_000);
    return agent;
  }

  async function startRun(ref: string): Promise<RunDetail> {
    const res = await fetch(`${url()}/api/v1/runs`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ project: 'web', ref }) });
    expect(res.status, await res.clone().text()).toBe(201);
    return (await res.json()) as RunDetail;
  }

  const ended = (id: string, timeoutMs = 30_000): Promise<RunDetail> =>
    until(`run ${id} to end`, async () => {
      const r = await app.runs.show(id);
      return r.state === 'queued' || r.state === 'running' ? undefined : r;
    }, timeoutMs);

  const stepOf = (r: RunDetail) => r.stages[0]!.steps.at(-1)!;

  it('enrols through the CLI, takes a remote step within a second of it being queued, and the run succeeds with its output and logs', async () => {
    const a1 = await startAgent('a1');
    const state = JSON.parse(readFileSync(join(a1.stateDir, 'agent.json'), 'utf8')) as { apiKey: string; privateKey: string };
    expect(statSync(join(a1.stateDir, 'agent.json')).mode & 0o777).toBe(0o600);
    expect(statSync(a1.stateDir).mode & 0o777).toBe(0o700);
    expect(a1.stdout() + a1.stderr()).not.toContain(state.apiKey);

    const started = await startRun('hello');
    const done = await ended(started.id);
    expect(done.state, JSON.stringify(done)).toBe('succeeded');
    const step = stepOf(done);
    // The embedded runner (labels [embedded]) never took it.
    expect(step.runner).toBe('agent:a1');
    expect(Date.parse(step.startedAt!) - Date.parse(step.queuedAt!)).toBeLessThanOrEqual(1000);
    const result = step.result as { outputs: { path: string; digest: string; size: number }[]; evidence: { link: unknown; fingerprint: { sandbox: string } } };
    expect(result.outputs).toHaveLength(1);
    expect(result.outputs[0]).toMatchObject({ path: 'out.txt', size: 3 });
    expect(result.outputs[0]!.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect((await app.blobs.readVerified(result.outputs[0]!.digest)).toString()).toBe('hi\n');
    // Signed by the key the agent registered (and keeps in its state file).
    const row = await app.store.db.selectFrom('agents').selectAll().where('name', '=', 'a1').executeTakeFirstOrThrow();
    expect(createPublicKey(state.privateKey).export({ type: 'spki', format: 'pem' })).toBe(row.public_key);
    expect(verifyLink(result.evidence.link, createPublicKey(row.public_key))).toMatchObject({ ok: true, link: { runId: started.id, products: { 'out.txt': result.outputs[0]!.digest } } });
    expect(row.last_seen_at).not.toBeNull();
    const logs = await app.runs.logs(started.id, undefined);
    expect(Buffer.concat(logs.chunks.map((c) => c.data)).toString()).toContain('hi');
  });

  it('keeps going across a server restart and takes the next job', async () => {
    const a1 = agents[0]!;
    await server.close();
    await until('the agent to notice', () => (/cannot reach|HTTP 503|SHUTTING_DOWN/.test(a1.stderr()) ? true : undefined), 20_000);
    await new Promise((r) => setTimeout(r, 1500));
    server = await listen(port);
    const started = await startRun('hello');
    const done = await ended(started.id, 45_000);
    expect(done.state).toBe('succeeded');
    expect(stepOf(done).runner).toBe('agent:a1');
    expect(a1.stderr()).toContain('the server is reachable again');
    expect(a1.child.exitCode).toBeNull();
  }, 60_000);

  it('on SIGTERM cancels the running step, reports it and exits 0', async () => {
    const a1 = agents[0]!;
    const started = await startRun('sleepy');
    await until('the step to run', async () => (stepOf(await app.runs.show(started.id)).state === 'running' ? true : undefined));
    // Let it get as far as running the command.
    await until('output', async () => ((await app.runs.logs(started.id, undefined)).chunks.length > 0 ? true : undefined), 20_000);
    a1.child.kill('SIGTERM');
    const exit = await a1.exited;
    expect(exit.code, a1.stderr()).toBe(0);
    const done = await ended(started.id, 5000);
    expect(stepOf(done)).toMatchObject({ state: 'cancelled', runner: 'agent:a1' });
    expect(done.state).toBe('cancelled');
  }, 60_000);

  it('kill -9 mid-job: the step stays running until its lease lapses, then the reaper makes it lost and the run fails', async () => {
    const a2 = await startAgent('a2');
    const started = await startRun('sleepy');
    await until('the step to run', async () => (stepOf(await app.runs.show(started.id)).state === 'running' ? true : undefined));
    a2.child.kill('SIGKILL');
    expect((await a2.exited).signal).toBe('SIGKILL');
    const killedAt = Date.now();
    // Nothing ends it before the lease runs out.
    expect(await app.runs.reapLost()).toBe(0);
    expect(stepOf(await app.runs.show(started.id))).toMatchObject({ state: 'running', runner: 'agent:a2' });
    await until('the lease to lapse', async () => ((await app.runs.reapLost()) > 0 ? true : undefined), 15_000, 200);
    expect(Date.now() - killedAt).toBeGreaterThan(LEASE_SECONDS * 1000 - 1500);
    const done = await ended(started.id, 5000);
    expect(stepOf(done)).toMatchObject({ state: 'lost', runner: 'agent:a2' });
    expect(stepOf(done).reason).toMatch(/agent:a2 stopped renewing its lease/);
    expect(done.state).toBe('failed');
  }, 60_000);
});
