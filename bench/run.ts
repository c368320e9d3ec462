/**
 * `npm run bench`: every figure of docs/benchmarks.md, one JSON line each on stdout, progress
 * on stderr. Each figure runs in its own child process (figure.ts); this process only
 * sequences them, passes state between them, prints their lines and cleans up.
 *
 * Environment:
 *   BENCH_QUICK=1      everything scaled down (about a minute): smoke check, not a measurement
 *   BENCH_SECONDS=N    length of the sustained SQLite group-commit run (default 60; quick 5)
 *   BENCH_PG_SECONDS=N length of each PostgreSQL run (default 20; quick 3)
 *   BENCH_HTTP_SECONDS=N  measured window of each HTTP run (default 10; quick 3)
 *   BENCH_HTTP_CONNECTIONS=N  connections autocannon keeps open (default 32)
 *   BENCH_HTTP_LOG_LEVEL=L    log level of the Airlock server under load (default info, the shipped default)
 *   BENCH_ONLY=a,b     run only these figures (reference, sequential, group, build, verify, proofs, pg, authz, http)
 *   BENCH_CPU_PROF=1   write V8 CPU profiles of the verify figure and of the HTTP server's
 *                      measured window into ./bench-profiles/
 *   BENCH_BUILD_CONCURRENCY=N  appends in flight while building the large log (default 1000)
 *   AIRLOCK_BENCH_DATABASE_URL  PostgreSQL server (default postgres://postgres@127.0.0.1:5432/test)
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchLine, ChildMessage, Field, FigureArgs, FigureName } from './lib.js';
import { FIGURES, QUICK, describeError, progress } from './lib.js';

const FIGURE_ENTRY = fileURLToPath(new URL('./figure.js', import.meta.url));

function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${raw}`);
  return n;
}

function selectedFigures(): readonly FigureName[] {
  const raw = process.env.BENCH_ONLY;
  if (raw === undefined || raw === '') return FIGURES;
  const want = raw.split(',').map((s) => s.trim());
  const unknown = want.filter((w) => !(FIGURES as readonly string[]).includes(w));
  if (unknown.length > 0) throw new Error(`BENCH_ONLY: unknown figure(s) ${unknown.join(', ')}; known: ${FIGURES.join(', ')}`);
  return FIGURES.filter((f) => want.includes(f));
}

/** Run one figure child; print its lines as they arrive; resolve with the state it handed back. */
function runFigure(name: FigureName, args: FigureArgs, lines: BenchLine[]): Promise<Record<string, Field>> {
  const execArgv = [...process.execArgv];
  if (name === 'verify' && process.env.BENCH_CPU_PROF === '1') execArgv.push('--cpu-prof', `--cpu-prof-dir=${resolve('bench-profiles')}`);
  const child = fork(FIGURE_ENTRY, [name, JSON.stringify(args)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
  const state: Record<string, Field> = {};
  return new Promise((resolvePromise, reject) => {
    child.on('message', (message) => {
      const m = message as ChildMessage;
      if (m.kind === 'line') {
        lines.push(m.line);
        process.stdout.write(`${JSON.stringify(m.line)}\n`);
      } else {
        Object.assign(state, m.state);
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code === 0) resolvePromise(state);
      else reject(new Error(`figure ${name} exited with ${signal ?? String(code)}`));
    });
  });
}

async function main(): Promise<number> {
  const figures = selectedFigures();
  const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-'));
  const cleanup = (): void => {
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    // The children get the same SIGINT and clean up their own schemas; the scratch dir is ours.
    setTimeout(() => {
      cleanup();
      process.exit(130);
    }, 2000);
  });
  const args: FigureArgs = {
    dir,
    logPath: join(dir, 'log.db'),
    home: join(dir, 'home'),
    seconds: positiveInt('BENCH_SECONDS', QUICK ? 5 : 60),
    target: QUICK ? 100_000 : 1_000_000,
    concurrency: positiveInt('BENCH_BUILD_CONCURRENCY', 1000),
    httpSeconds: positiveInt('BENCH_HTTP_SECONDS', QUICK ? 3 : 10),
    httpConnections: positiveInt('BENCH_HTTP_CONNECTIONS', 32),
  };
  progress(
    `airlock bench: ${QUICK ? 'QUICK mode (scaled down; smoke check only)' : 'full run'}, ${cpus().length} CPUs, node ${process.version}, scratch ${dir}`,
  );
  const lines: BenchLine[] = [];
  let failed = 0;
  const t0 = Date.now();
  try {
    for (const name of figures) {
      progress(`--- figure: ${name}`);
      try {
        await runFigure(name, args, lines);
      } catch (err) {
        failed++;
        progress(`figure ${name} failed: ${describeError(err)}`);
      }
    }
  } finally {
    cleanup();
  }
  const goals = lines.filter((l) => typeof l.pass === 'boolean');
  const missed = goals.filter((l) => l.pass === false).map((l) => l.bench);
  progress(
    `done in ${Math.round((Date.now() - t0) / 1000)} s: ${lines.length} figures, goals met ${goals.length - missed.length}/${goals.length}` +
      (missed.length > 0 ? ` (missed: ${missed.join(', ')})` : '') +
      (failed > 0 ? `, ${failed} figure(s) FAILED to run` : ''),
  );
  return failed > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    progress(`bench failed: ${describeError(err)}`);
    process.exit(1);
  },
);
