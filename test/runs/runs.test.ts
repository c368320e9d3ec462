/**
 * Runs through the HTTP API with the embedded runner, on both engines: a project from a git
 * repository, a multi-stage run from commit to verdict, every transition recorded.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../src/server/index.js';
import { ENGINES } from '../support/engines.js';
import { TestClock, authed, login, makeUser, openTestApp, silent } from '../server/support.js';
import type { TestApp } from '../server/support.js';
import { execFileSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { EXAMPLE, commit, makeRepo } from './support.js';

const HAS_BWRAP = (() => {
  try {
    execFileSync('bwrap', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

interface RunDetail {
  id: string;
  number: number;
  state: string;
  reason: string | null;
  commit: string;
  traceId: string;
  commitInfo: { author: { email: string }; committer: { email: string } };
  trigger: { actor: { id: string }; reason: string | null; params: Record<string, string> };
  stages: { name: string; state: string; steps: { id?: string; step: string; state: string; attempt: number; reason: string | null; exitCode: number | null; result: { outputs: { path: string; digest: string }[] } | null }[] }[];
}

describe.each(ENGINES)('runs on %s', (engine) => {
  let t: TestApp;
  let bare: FastifyInstance;
  let server: FastifyInstance;

  beforeAll(async () => {
    const clock = new TestClock();
    t = await openTestApp(engine, { clock });
    await t.app.startRunner({ labels: ['embedded', 'linux'], concurrency: 2, reap: false });
    const op = await makeUser(t.app, clock, 'olga', ['operator']);
    bare = await buildServer(t.app, { logger: silent });
    server = authed(bare, await login(bare, clock, op));
  }, 60_000);

  afterAll(async () => {
    await bare.close();
    await t.cleanup();
  });

  async function waitForRun(id: string): Promise<RunDetail> {
    for (let i = 0; i < 200; i++) {
      const r = (await server.inject({ url: `/api/v1/runs/${id}` })).json<RunDetail>();
      if (['succeeded', 'failed', 'cancelled'].includes(r.state)) return r;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error(`run ${id} did not finish`);
  }

  it('runs the example pipeline from a commit: build, test, package, with outputs passed by digest', async () => {
    const repo = makeRepo({}, EXAMPLE);
    const added = await server.inject({ method: 'POST', url: '/api/v1/projects', payload: { name: 'hello', repo: repo.dir } });
    expect(added.statusCode, added.body).toBe(201);
    const started = await server.inject({ method: 'POST', url: '/api/v1/runs', payload: { project: 'hello', reason: 'first run', params: { channel: 'beta' } } });
    expect(started.statusCode, started.body).toBe(201);
    const run = await waitForRun(started.json<RunDetail>().id);
    expect(run.state, JSON.stringify(run.stages)).toBe('succeeded');
    expect(run.commit).toBe(repo.head);
    expect(run.commitInfo.author.email).toBe('ada@example.com');
    expect(run.commitInfo.committer.email).toBe('cy@example.com');
    expect(run.trigger).toMatchObject({ actor: { id: 'olga' }, reason: 'first run', params: { channel: 'beta' } });
    expect(run.stages.map((s) => [s.name, s.state])).toEqual([
      ['build', 'succeeded'],
      ['test', 'succeeded'],
      ['package', 'succeeded'],
    ]);
    const built = run.stages[0]!.steps[0]!.result!.outputs.find((o) => o.path === 'dist/hello.txt');
    expect(built?.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await t.app.blobs.has(built!.digest)).toBe(true);
    // Every transition is an audit event carrying the run's trace id.
    const events = (await t.app.audit.search({ action: 'runs.*', limit: 1000 })).filter((e) => e.event.context.traceId === run.traceId).map((e) => e.event.action);
    expect(events).toEqual(expect.arrayContaining(['runs.create', 'runs.start', 'runs.stage.start', 'runs.step.queue', 'runs.step.start', 'runs.step.finish', 'runs.stage.finish', 'runs.finish']));
    expect(events.filter((a) => a === 'runs.step.finish')).toHaveLength(3);
    // Logs are stored.
    const logs = (await server.inject({ url: `/api/v1/runs/${run.id}/logs` })).json<{ chunks: { step: string; data: string }[]; finished: boolean }>();
    const text = logs.chunks.map((c) => Buffer.from(c.data, 'base64').toString('utf8')).join('');
    expect(text).toContain('1 test passed');
    expect(logs.finished).toBe(true);
  });

  it('fails a run whose step fails, skips what needs it, and says why', async () => {
    const repo = makeRepo({
      'airlock.yaml': 'version: 1\npipeline: broken\nowners: [olga]\nstages:\n  build:\n    steps:\n      - name: fail\n        run: echo about to fail; exit 3\n  after:\n    needs: [build]\n    steps:\n      - { name: never, run: "true" }\n',
    });
    await server.inject({ method: 'POST', url: '/api/v1/projects', payload: { name: 'broken', repo: repo.dir } });
    const started = await server.inject({ method: 'POST', url: '/api/v1/runs', payload: { project: 'broken' } });
    expect(started.statusCode, started.body).toBe(201);
    const run = await waitForRun(started.json<RunDetail>().id);
    expect(run.state).toBe('failed');
    expect(run.reason).toMatch(/build\/fail/);
    expect(run.stages.map((s) => s.state)).toEqual(['failed', 'skipped']);
    expect(run.stages[0]!.steps[0]).toMatchObject({ state: 'failed', exitCode: 3 });
    expect(run.stages[1]!.steps[0]!.state).toBe('skipped');
  });

  it('refuses a commit without a valid airlock.yaml, naming file:line:col', async () => {
    const repo = makeRepo({ 'airlock.yaml': 'version: 1\npipeline: bad\nowners: [olga]\nstages:\n  build:\n    stepz: []\n' });
    await server.inject({ method: 'POST', url: '/api/v1/projects', payload: { name: 'bad', repo: repo.dir } });
    const started = await server.inject({ method: 'POST', url: '/api/v1/runs', payload: { project: 'bad' } });
    expect(started.statusCode).toBe(400);
    const problems = started.json<{ error: { details: { problems: { file: string; line: number; col: number; code: string; hint: string }[] } } }>().error.details.problems;
    expect(problems).toContainEqual(expect.objectContaining({ file: `airlock.yaml@${repo.head.slice(0, 12)}`, line: 6, col: 5, code: 'unknown_key', hint: 'did you mean `steps`?' }));
    commit(repo.dir, { 'airlock.yaml': 'version: 1\npipeline: bad\nowners: [olga]\nstages:\n  build:\n    steps:\n      - { name: ok, run: "true" }\n' });
    const fixed = await server.inject({ method: 'POST', url: '/api/v1/runs', payload: { project: 'bad', ref: 'main' } });
    expect(fixed.statusCode, fixed.body).toBe(201);
    expect((await waitForRun(fixed.json<RunDetail>().id)).state).toBe('succeeded');
  });

  async function runSteps(name: string, steps: string, beforeLogs?: () => void): Promise<{ run: RunDetail; output: string }> {
    const repo = makeRepo({ 'airlock.yaml': `version: 1\npipeline: ${name}\nowners: [olga]\nstages:\n  only:\n    steps:\n${steps}` });
    await server.inject({ method: 'POST', url: '/api/v1/projects', payload: { name, repo: repo.dir } });
    const started = await server.inject({ method: 'POST', url: '/api/v1/runs', payload: { project: name } });
    expect(started.statusCode, started.body).toBe(201);
    const run = await waitForRun(started.json<RunDetail>().id);
    beforeLogs?.();
    const logs = (await server.inject({ url: `/api/v1/runs/${run.id}/logs` })).json<{ chunks: { data: string }[] }>();
    return { run, output: logs.chunks.map((c) => Buffer.from(c.data, 'base64').toString('utf8')).join('') };
  }

  it('gives a step only its declared variables and the ones Airlock provides, never the server environment', async () => {
    process.env.AIRLOCK_TEST_SERVER_SECRET = 'server-side-secret-value';
    try {
      const { run, output } = await runSteps('envcheck', '      - name: env\n        run: env | sort\n        env: { DECLARED: "yes" }\n');
      expect(run.state, output).toBe('succeeded');
      expect(output).toContain('DECLARED=yes');
      expect(output).toMatch(/^AIRLOCK_RUN_ID=/m);
      expect(output).toMatch(/^AIRLOCK_COMMIT=[0-9a-f]{40}$/m);
      // The workload token is a credential: present in the step, masked in its logs.
      expect(output).toMatch(/^AIRLOCK_TOKEN=\*\*\*$/m);
      expect(output).not.toContain('server-side-secret-value');
      expect(output).not.toMatch(/^AIRLOCK_HOME=/m);
      expect(output).not.toMatch(/^AIRLOCK_DATABASE_URL=/m);
      expect(output).not.toContain(t.app.config.home);
      const names = output.split('\n').filter((l) => /^[A-Z_][A-Z0-9_]*=/.test(l)).map((l) => l.split('=')[0]);
      for (const n of names) expect(['DECLARED', 'PATH', 'HOME', 'TMPDIR', 'LANG', 'PWD', 'SHLVL', '_', 'OLDPWD'].includes(n!) || n!.startsWith('AIRLOCK_'), n).toBe(true);
    } finally {
      delete process.env.AIRLOCK_TEST_SERVER_SECRET;
    }
  });

  it('stores binary output byte for byte, and caps a 200 MB flood with a marker while memory stays bounded', async () => {
    const bin = await runSteps('binary', "      - name: bytes\n        run: printf '\\377\\376\\000\\001\\n'\n");
    expect(bin.run.state).toBe('succeeded');
    const raw = (await server.inject({ url: `/api/v1/runs/${bin.run.id}/logs` })).json<{ chunks: { data: string }[] }>();
    expect(Buffer.concat(raw.chunks.map((c) => Buffer.from(c.data, 'base64')))).toEqual(Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x0a]));

    const before = process.memoryUsage().rss;
    let grown = 0;
    const flood = await runSteps('flood', "      - name: flood\n        run: head -c 200000000 /dev/zero | tr '\\000' a\n", () => (grown = process.memoryUsage().rss - before));
    expect(flood.run.state).toBe('succeeded');
    expect(flood.output.length).toBeLessThanOrEqual(16 * 1024 * 1024 + 200);
    expect(flood.output).toMatch(/\[airlock: stored output truncated after 16777216 bytes/);
    // What the server held while the step ran (reading the log back is the test's own cost).
    expect(grown).toBeLessThan(120 * 1024 * 1024);
  }, 60_000);

  if (HAS_BWRAP) {
    it('sandboxes steps (bubblewrap): AIRLOCK_HOME, its keys and the database are invisible; no network; system read-only', async () => {
      const home = t.app.config.home;
      const probe = [
        `ls ${home} && echo HOME_VISIBLE || echo home-hidden`,
        `cat ${home}/keys/master.key && echo KEY_READ || echo key-hidden`,
        'touch /usr/airlock-probe && echo SYSTEM_WRITABLE || echo system-read-only',
        "(exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && echo NETWORK_OPEN || echo no-network",
        'echo workspace > written.txt && cat written.txt',
      ].join('; ');
      const { run, output } = await runSteps('sandbox', `      - name: probe\n        run: bash -c '${probe.replace(/'/g, "'\\''")}'\n`);
      expect(run.state, output).toBe('succeeded');
      expect(output).toContain('home-hidden');
      expect(output).toContain('key-hidden');
      expect(output).toContain('system-read-only');
      expect(output).toContain('no-network');
      expect(output).toContain('workspace');
      expect(output).not.toMatch(/HOME_VISIBLE|KEY_READ|SYSTEM_WRITABLE|NETWORK_OPEN/);
      const evidence = run.stages[0]!.steps[0]!.result as unknown as { evidence: { fingerprint: { sandbox: string } } };
      expect(evidence.evidence.fingerprint.sandbox).toBe('bwrap');
    });
  }

  it('refuses a step whose input was tampered with after it was produced, fails the run and records what differed', async () => {
    const yaml = [
      'version: 1', 'pipeline: tamper', 'owners: [olga]', 'stages:',
      '  make:', '    steps:', '      - { name: out, run: "echo original > x.txt", outputs: [x.txt] }',
      '  pause:', '    needs: [make]', '    steps:', '      - { name: wait, run: "sleep 2" }',
      '  use:', '    needs: [pause]', '    steps:', '      - { name: in, run: "cat x.txt > used.txt", inputs: [x.txt] }', '',
    ].join('\n');
    const repo = makeRepo({ 'airlock.yaml': yaml });
    await server.inject({ method: 'POST', url: '/api/v1/projects', payload: { name: 'tamper', repo: repo.dir } });
    const id = (await server.inject({ method: 'POST', url: '/api/v1/runs', payload: { project: 'tamper' } })).json<RunDetail>().id;
    let digest: string | undefined;
    for (let i = 0; i < 100 && digest === undefined; i++) {
      const r = (await server.inject({ url: `/api/v1/runs/${id}` })).json<RunDetail>();
      digest = r.stages[0]?.steps[0]?.result?.outputs[0]?.digest;
      if (digest === undefined) await new Promise((res) => setTimeout(res, 50));
    }
    expect(digest).toBeDefined();
    // Someone with access to the artifact store swaps the bytes while `pause` runs.
    const path = t.app.blobs.pathFor(digest!);
    chmodSync(path, 0o644);
    writeFileSync(path, 'tampered\n');
    const run = await waitForRun(id);
    expect(run.state).toBe('failed');
    const used = run.stages[2]!.steps[0]!;
    expect(used.state).toBe('refused');
    expect(used.reason).toContain(digest!);
    const rec = (await t.app.audit.search({ action: 'runs.step.finish', limit: 1000 })).find((e) => e.event.resource.endsWith(used.id ?? ''));
    expect(rec?.event.outcome).toBe('failed');
    expect(rec?.event.reason).toContain('x.txt');
  }, 30_000);

  it('refuses to run a commit whose pipeline hard-codes a credential, naming where (value redacted)', async () => {
    const key = ['AKIA', 'Q3EGUTCN', 'PLZ7ROBW'].join('');
    const repo = makeRepo({ 'airlock.yaml': `version: 1\npipeline: leak\nowners: [olga]\nstages:\n  build:\n    steps:\n      - name: upload\n        run: aws s3 cp x s3://b/\n        env: { AWS_ACCESS_KEY_ID: "${key}" }\n` });
    await server.inject({ method: 'POST', url: '/api/v1/projects', payload: { name: 'leak', repo: repo.dir } });
    const refused = await server.inject({ method: 'POST', url: '/api/v1/runs', payload: { project: 'leak' } });
    expect(refused.statusCode).toBe(400);
    expect(refused.body).toContain('hardcoded_credential');
    expect(refused.body).not.toContain(key);
    const problems = refused.json<{ error: { details: { problems: { line: number }[] } } }>().error.details.problems;
    expect(problems[0]?.line).toBe(9);
  });

  it('retries an idempotent step that fails, and ends a step that overruns its timeout as timed_out', async () => {
    const flaky = await runSteps('flaky', '      - name: once\n        run: test "$AIRLOCK_ATTEMPT" -ge 2\n        retries: 2\n        idempotent: true\n');
    expect(flaky.run.state).toBe('succeeded');
    expect(flaky.run.stages[0]!.steps.map((x) => [x.attempt, x.state])).toEqual([
      [1, 'failed'],
      [2, 'succeeded'],
    ]);
    const slow = await runSteps('overrun', '      - name: slow\n        run: sleep 30\n        timeout: 1s\n');
    expect(slow.run.state).toBe('failed');
    expect(slow.run.stages[0]!.steps[0]).toMatchObject({ state: 'timed_out' });
  }, 30_000);

  it('cancels a running run: the step is stopped and the run ends cancelled', async () => {
    const repo = makeRepo({ 'airlock.yaml': 'version: 1\npipeline: slow\nowners: [olga]\nstages:\n  wait:\n    steps:\n      - { name: sleep, run: "sleep 30", timeout: 1m }\n' });
    await server.inject({ method: 'POST', url: '/api/v1/projects', payload: { name: 'slow', repo: repo.dir } });
    const id = (await server.inject({ method: 'POST', url: '/api/v1/runs', payload: { project: 'slow' } })).json<RunDetail>().id;
    for (let i = 0; i < 50; i++) {
      const r = (await server.inject({ url: `/api/v1/runs/${id}` })).json<RunDetail>();
      if (r.stages[0]?.steps[0]?.state === 'running') break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const cancelled = await server.inject({ method: 'POST', url: `/api/v1/runs/${id}/cancel`, payload: { reason: 'wrong branch' } });
    expect(cancelled.statusCode, cancelled.body).toBe(200);
    expect(cancelled.json<RunDetail>().state).toBe('cancelled');
  });
});
