/**
 * Figure `pipeline`: control-plane overhead per step. A 50-step pipeline of `true` (50 stages,
 * each needing the one before, so steps run one at a time) on the embedded runner, against the
 * same 50 commands run by a plain shell script in the same process run. For each step:
 *   wall      previous step finished -> this step finished (what a user waits)
 *   executor  the runner's own time (workspace, process start, command, hashing)
 *   overhead  wall - executor: dispatch, claim, state transitions, audit records, log flush
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openApp } from '../src/app/index.js';
import { loadConfig } from '../src/config/index.js';
import { QUICK, Samples, emit, now, progress, round } from './lib.js';

const STEPS = QUICK ? 10 : 50;

function repoWith(dir: string, yaml: string): string {
  const repo = join(dir, 'repo');
  mkdirSync(repo, { recursive: true });
  writeFileSync(join(repo, 'airlock.yaml'), yaml);
  const env = { ...process.env, GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@b', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@b' };
  execFileSync('git', ['-C', repo, 'init', '-q'], { env });
  execFileSync('git', ['-C', repo, 'add', '-A'], { env });
  execFileSync('git', ['-C', repo, 'commit', '-q', '-m', 'bench'], { env });
  return repo;
}

export async function benchPipeline(scratch: string): Promise<void> {
  const dir = mkdtempSync(join(scratch, 'pipeline-'));
  const stages = Array.from({ length: STEPS }, (_, i) => `  s${i}:\n${i === 0 ? '' : `    needs: [s${i - 1}]\n`}    steps:\n      - { name: t, run: "true" }\n`).join('');
  const repo = repoWith(dir, `version: 1\npipeline: bench\nowners: [bench]\nstages:\n${stages}`);

  // The same commands in a plain shell script, as sh would run them one after another.
  progress(`pipeline: ${STEPS} x sh -c true in a shell script`);
  const script = join(dir, 'plain.sh');
  writeFileSync(script, `#!/bin/sh\n${Array.from({ length: STEPS }, () => "sh -c 'true'").join('\n')}\n`);
  const t0 = now();
  spawnSync('sh', [script], { stdio: 'ignore' });
  const plainPerStep = (now() - t0) / STEPS;

  const config = { ...loadConfig({ flags: { home: join(dir, 'home') }, env: {} }), workDir: join(dir, 'work') };
  const app = await openApp(config, { migrate: true });
  try {
    await app.startRunner({ labels: ['embedded'], concurrency: 1, reap: false });
    const actor = { kind: 'system' as const, id: 'bench' };
    await app.projects.add(actor, { name: 'bench', repo });
    progress(`pipeline: ${STEPS}-step run on the embedded runner (sandbox ${config.stepSandbox})`);
    const started = now();
    const run = await app.runs.start(actor, { project: 'bench' });
    let detail = await app.runs.show(run.id);
    while (detail.state === 'queued' || detail.state === 'running') {
      await new Promise((r) => setTimeout(r, 20));
      detail = await app.runs.show(run.id);
    }
    const totalMs = now() - started;
    if (detail.state !== 'succeeded') throw new Error(`the benchmark run ${detail.state}: ${detail.reason ?? ''}`);
    const steps = detail.stages.flatMap((s) => s.steps).sort((a, b) => Date.parse(a.finishedAt ?? '') - Date.parse(b.finishedAt ?? ''));
    const wall = new Samples();
    const overhead = new Samples();
    const executor = new Samples();
    let previous = Date.parse(detail.startedAt ?? detail.createdAt);
    for (const s of steps) {
      const finished = Date.parse(s.finishedAt ?? '');
      const ran = (s.result as { evidence?: { durationMs?: number } } | null)?.evidence?.durationMs ?? 0;
      wall.push(finished - previous);
      executor.push(ran);
      overhead.push(Math.max(0, finished - previous - ran));
      previous = finished;
    }
    const o = overhead.summary();
    const w = wall.summary();
    const e = executor.summary();
    emit({
      bench: 'pipeline_step_overhead',
      value: o.p50,
      unit: 'ms',
      p50: o.p50,
      p99: o.p99,
      max: o.max,
      steps: STEPS,
      wallPerStepP50: w.p50,
      wallPerStepP99: w.p99,
      executorPerStepP50: e.p50,
      plainShellPerStepMs: round(plainPerStep, 3),
      ratioWallToShell: round(w.p50 / plainPerStep, 1),
      runTotalMs: round(totalMs, 0),
      sandbox: config.stepSandbox,
      goal: 'overhead p50 <= 50 ms, p99 <= 250 ms',
      pass: o.p50 <= 50 && o.p99 <= 250,
    });
  } finally {
    await app.close();
  }
}
