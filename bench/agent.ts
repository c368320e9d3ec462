/**
 * Figure `agent`: job pickup by a remote agent. A real `airlock agent` process (its own event
 * loop, over HTTP) long-polls the server; each of N one-step runs is started only after the
 * previous one ended, so every pickup is measured from an idle agent: step queued -> claimed.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agents } from '../src/agents/index.js';
import { openApp } from '../src/app/index.js';
import { loadConfig } from '../src/config/index.js';
import { startServer } from '../src/server/index.js';
import { createLogger } from '../src/observability/index.js';
import { QUICK, Samples, emit, progress } from './lib.js';

const RUNS = QUICK ? 5 : 30;
const BIN = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../bin/airlock.js');

export async function benchAgent(scratch: string): Promise<void> {
  const dir = mkdtempSync(join(scratch, 'agent-'));
  const repo = join(dir, 'repo');
  mkdirSync(repo);
  writeFileSync(join(repo, 'airlock.yaml'), 'version: 1\npipeline: pickup\nowners: [bench]\nstages:\n  one:\n    steps:\n      - { name: t, run: "true", runs-on: [remote] }\n');
  const env = { ...process.env, GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@b', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@b' };
  for (const args of [['init', '-q'], ['add', '-A'], ['commit', '-q', '-m', 'bench']]) execFileSync('git', ['-C', repo, ...args], { env });

  const config = { ...loadConfig({ flags: { home: join(dir, 'home'), listen: '127.0.0.1:0' }, env: {} }), workDir: join(dir, 'work') };
  const app = await openApp(config, { migrate: true });
  const server = await startServer(app, { logger: createLogger('silent'), host: '127.0.0.1', port: 0 });
  let stopAgent = (): void => undefined;
  try {
    await app.startRunner({ labels: ['embedded'], concurrency: 0, reap: true });
    const actor = { kind: 'system' as const, id: 'bench' };
    const agents = new Agents({ store: app.store, audit: app.audit, clock: app.clock, runs: app.runs, blobs: app.blobs, provided: (job, runner) => app.providedEnv(job, runner) });
    const { token } = await agents.createRegistrationToken(actor, { labels: ['remote'] });
    const child = spawn(process.execPath, [BIN, 'agent', '--server', server.url, '--token', token, '--name', 'bench-agent', '--state', join(dir, 'agent-state')], { stdio: ['ignore', 'pipe', 'pipe'] });
    stopAgent = () => {
      child.kill('SIGTERM');
    };
    await new Promise<void>((ok, fail) => {
      let seen = '';
      child.stdout.on('data', (d: Buffer) => {
        seen += d.toString();
        if (seen.includes('waiting for jobs')) ok();
      });
      child.on('exit', (code) => fail(new Error(`the agent exited (${String(code)}) before it was ready`)));
    });
    await app.projects.add(actor, { name: 'pickup', repo });
    progress(`agent: ${RUNS} runs, one at a time, each picked up by an idle agent`);
    const pickup = new Samples();
    for (let i = 0; i < RUNS; i++) {
      const run = await app.runs.start(actor, { project: 'pickup' });
      let detail = await app.runs.show(run.id);
      while (detail.state === 'queued' || detail.state === 'running') {
        await new Promise((r) => setTimeout(r, 10));
        detail = await app.runs.show(run.id);
      }
      const step = detail.stages[0]?.steps[0];
      if (detail.state !== 'succeeded' || step?.queuedAt == null || step.startedAt == null) throw new Error(`pickup run ${String(i)} ${detail.state}: ${detail.reason ?? ''}`);
      pickup.push(Date.parse(step.startedAt) - Date.parse(step.queuedAt));
    }
    const s = pickup.summary();
    emit({ bench: 'agent_pickup', value: s.p50, unit: 'ms', p50: s.p50, p99: s.p99, max: s.max, runs: RUNS, transport: 'HTTP long poll (25 s)', goal: 'p50 <= 1000 ms', pass: s.p50 <= 1000 });
  } finally {
    stopAgent();
    await server.close();
    await app.close();
  }
}
