/**
 * Shared helpers of the benchmark suite: the JSON-line format, latency statistics, realistic
 * audit events, and a closed-loop driver that keeps a fixed number of operations in flight.
 *
 * Every figure is one JSON line on stdout; everything else (progress) goes to stderr.
 * Figures run in child processes (see run.ts) so that each one's peak RSS and heap are its
 * own; a child hands its lines to the parent over IPC and the parent prints them.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { AuditEventInput } from '../src/audit/index.js';

/** A value allowed in a bench line. */
export type Field = string | number | boolean | null;

/** One figure: `{"bench","value","unit", ...context}`. */
export interface BenchLine {
  readonly bench: string;
  readonly value: number;
  readonly unit: string;
  readonly [key: string]: Field;
}

/** Messages a figure child sends to the orchestrator. */
export type ChildMessage = { readonly kind: 'line'; readonly line: BenchLine } | { readonly kind: 'state'; readonly state: Record<string, Field> };

// --- Figures -------------------------------------------------------------------------

/** Arguments every figure child receives (each uses what it needs). */
export interface FigureArgs {
  /** Scratch directory of this run (removed by run.ts). */
  readonly dir: string;
  /** SQLite log shared by figures 3, 5 and 6. */
  readonly logPath: string;
  /** Airlock home holding the checkpoint key. */
  readonly home: string;
  readonly seconds: number;
  readonly target: number;
  readonly concurrency: number;
  /** Measured window of each HTTP run, seconds. */
  readonly httpSeconds: number;
  /** Connections autocannon keeps open in the HTTP figure. */
  readonly httpConnections: number;
}

/** The figures, in the order run.ts runs them. */
export const FIGURES = ['reference', 'sequential', 'group', 'build', 'verify', 'proofs', 'pg', 'authz', 'http', 'pipeline', 'agent', 'vault', 'artifacts'] as const;
export type FigureName = (typeof FIGURES)[number];

/** BENCH_QUICK=1: everything scaled down for a smoke check (about a minute in total). */
export const QUICK = process.env.BENCH_QUICK === '1';

/** Round to `digits` decimals (for readable output; raw precision is meaningless here). */
export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

const unsent = new Set<Promise<void>>();

function sendToParent(msg: ChildMessage): void {
  const p = new Promise<void>((resolve) => {
    if (process.send === undefined) resolve();
    else
      process.send(msg, undefined, {}, () => {
        resolve();
      });
  });
  unsent.add(p);
  void p.then(() => unsent.delete(p));
}

/** Wait until every message to the parent has been handed over (call before process.exit). */
export async function flushMessages(): Promise<void> {
  await Promise.all([...unsent]);
}

/** Send a figure line: to the parent when running as a figure child, else to stdout. */
export function emit(line: BenchLine): void {
  // The 1-minute load average says whether the machine was shared while this was measured.
  const full: BenchLine = { ...line, quick: QUICK, loadAvg1: round(loadavg()[0] ?? 0, 2) };
  if (process.send !== undefined) sendToParent({ kind: 'line', line: full });
  else process.stdout.write(`${JSON.stringify(full)}\n`);
}

/** Hand state to the orchestrator (e.g. the concurrency a later figure should reuse). */
export function sendState(state: Record<string, Field>): void {
  sendToParent({ kind: 'state', state });
}

/** An error's message (stack for Error objects when `stack` is set), for progress output. */
export function describeError(err: unknown, stack = false): string {
  if (err instanceof Error) return stack ? (err.stack ?? err.message) : err.message;
  return typeof err === 'string' ? err : JSON.stringify(err);
}

/** Progress for humans, on stderr. */
export function progress(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** Peak resident set size of this process so far, in MiB. */
export function peakRssMiB(): number {
  // maxRSS is in kilobytes (getrusage ru_maxrss on Linux).
  return round(process.resourceUsage().maxRSS / 1024, 1);
}

export const now = (): number => performance.now();

/** A growable list of latency samples in milliseconds. */
export class Samples {
  private buf = new Float64Array(1 << 16);
  private n = 0;

  get count(): number {
    return this.n;
  }

  push(ms: number): void {
    if (this.n === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.n++] = ms;
  }

  pushAll(values: readonly number[]): void {
    for (const v of values) this.push(v);
  }

  values(): number[] {
    return Array.from(this.buf.subarray(0, this.n));
  }

  /** Nearest-rank percentiles in ms, rounded to µs. */
  summary(): LatencySummary {
    const sorted = this.buf.slice(0, this.n).sort();
    const at = (q: number): number => {
      if (sorted.length === 0) return 0;
      const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
      return round(sorted[i] ?? 0, 3);
    };
    let sum = 0;
    for (const v of sorted) sum += v;
    return {
      p50: at(0.5),
      p99: at(0.99),
      p999: at(0.999),
      max: at(1),
      mean: sorted.length === 0 ? 0 : round(sum / sorted.length, 3),
    };
  }
}

export interface LatencySummary {
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly mean: number;
}

// --- Realistic events -------------------------------------------------------------------

const ACTIONS = [
  'deploy.request',
  'deploy.approve',
  'deploy.execute',
  'artifact.sign',
  'artifact.verify',
  'secret.read',
  'policy.evaluate',
  'session.create',
  'audit.proof.read',
] as const;
const COMMITS = Array.from({ length: 256 }, () => randomBytes(20).toString('hex'));
const USER_AGENTS = ['airlock-cli/0.1.0 (linux; x64)', 'Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0', 'github-actions-runner/2.317.0'];

/**
 * The `i`-th event a client would record: an actor, a dotted action, a resource, an
 * outcome (one in 16 denied, with a reason), request context with a fresh request id, and a
 * details object of about 150 bytes. Canonical size is about 550 bytes.
 */
export function makeEvent(i: number, writer = 0): AuditEventInput {
  const denied = i % 16 === 15;
  const project = `p-${(i * 7) % 61}`;
  return {
    actor: { kind: i % 5 === 0 ? 'service' : 'user', id: i % 5 === 0 ? `svc-ci-${writer}` : `user${i % 997}@example.com` },
    action: ACTIONS[i % ACTIONS.length] ?? 'deploy.request',
    resource: `projects/${project}/releases/r-${i}`,
    outcome: denied ? 'denied' : 'allowed',
    reason: denied ? 'policy require-two-approvers: 1 of 2 approvals' : undefined,
    context: {
      requestId: randomUUID(),
      sourceAddress: `10.${writer}.${(i >> 8) & 255}.${i & 255}`,
      userAgent: USER_AGENTS[i % USER_AGENTS.length],
    },
    details: {
      commit: COMMITS[i & 255] ?? '',
      pipeline: `build-${i % 97}`,
      environment: i % 3 === 0 ? 'production' : 'staging',
      approvals: i % 3,
      durationMs: (i * 37) % 5000,
    },
  };
}

// --- Closed-loop driver -------------------------------------------------------------------

export interface LoopOptions {
  /** Operations kept in flight at all times. */
  readonly concurrency: number;
  /** Measured window, after warm-up. */
  readonly durationMs: number;
  /** Run but do not record this long first (JIT, caches, page cache). */
  readonly warmupMs?: number;
  /** Stop issuing after this many operations in total (warm-up included). */
  readonly maxOps?: number;
  readonly op: (i: number) => Promise<unknown>;
  /** Also count completions per window of this length (for throughput over time). */
  readonly windowMs?: number;
  /** Called about once a second. */
  readonly onTick?: (done: number, elapsedMs: number) => void;
}

export interface LoopResult {
  /** Operations started in the measured window (all completed). */
  readonly count: number;
  /** From the start of the measured window to the last completion, seconds. */
  readonly elapsedS: number;
  readonly latency: Samples;
  /** All operations, warm-up included. */
  readonly total: number;
  readonly failures: number;
  /** Operations per second in each full window of `windowMs` (empty without windowMs). */
  readonly windowRates: number[];
}

/**
 * Keep `concurrency` operations in flight: each completion immediately starts the next one.
 * Latency is from calling `op` to its promise settling. Throughput counts the operations
 * started in the measured window over the time until the last of them completed.
 */
export async function closedLoop(options: LoopOptions): Promise<LoopResult> {
  const start = now();
  const measureFrom = start + (options.warmupMs ?? 0);
  const end = measureFrom + options.durationMs;
  const maxOps = options.maxOps ?? Number.POSITIVE_INFINITY;
  const latency = new Samples();
  let issued = 0;
  let failures = 0;
  let lastDone = measureFrom;
  let firstError: unknown;
  let nextTick = start + 1000;
  const windowMs = options.windowMs ?? 0;
  const windows: number[] = [];

  const lane = async (): Promise<void> => {
    for (;;) {
      const t0 = now();
      if (t0 >= end || issued >= maxOps) return;
      const i = issued++;
      try {
        await options.op(i);
      } catch (err) {
        failures++;
        firstError ??= err;
      }
      const t1 = now();
      if (t0 >= measureFrom) {
        latency.push(t1 - t0);
        lastDone = t1;
        if (windowMs > 0 && t1 < end) {
          const w = Math.floor((t1 - measureFrom) / windowMs);
          windows[w] = (windows[w] ?? 0) + 1;
        }
      }
      if (t1 >= nextTick) {
        nextTick = t1 + 1000;
        options.onTick?.(issued, t1 - start);
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, lane));
  if (failures > 0) progress(`${failures} operations failed; first: ${describeError(firstError)}`);
  const fullWindows = windowMs > 0 ? Math.floor(options.durationMs / windowMs) : 0;
  const windowRates = Array.from({ length: fullWindows }, (_, w) => Math.round(((windows[w] ?? 0) * 1000) / windowMs));
  return { count: latency.count, elapsedS: (lastDone - measureFrom) / 1000, latency, total: issued, failures, windowRates };
}

/** Run `fn` repeatedly for about `ms`; returns iterations and elapsed seconds. */
export function timeLoop(ms: number, fn: () => void, batch = 1): { iterations: number; elapsedS: number } {
  const start = now();
  let iterations = 0;
  let t = start;
  while (t - start < ms) {
    for (let i = 0; i < batch; i++) fn();
    iterations += batch;
    t = now();
  }
  return { iterations, elapsedS: (t - start) / 1000 };
}

// --- Clean-up on Ctrl-C -------------------------------------------------------------------

const interruptHandlers = new Set<() => Promise<void>>();

/** Run `op` back to back for `ms`, timing every run: the loop behind the commit-rate references. */
export async function timedCommits(ms: number, op: () => unknown): Promise<{ latency: Samples; seconds: number }> {
  const latency = new Samples();
  const start = now();
  let t = start;
  while (t - start < ms) {
    await op();
    const t1 = now();
    latency.push(t1 - t);
    t = t1;
  }
  return { latency, seconds: (t - start) / 1000 };
}

/** Run `cleanup` if the process is interrupted (SIGINT/SIGTERM); returns a function to unregister it. */
export function onInterrupt(cleanup: () => Promise<void>): () => void {
  interruptHandlers.add(cleanup);
  return () => interruptHandlers.delete(cleanup);
}

/** Install the SIGINT/SIGTERM handler that runs the registered clean-ups, then exits. */
export function installInterruptHandler(): void {
  const handler = (signal: NodeJS.Signals): void => {
    progress(`${signal}: cleaning up`);
    void Promise.allSettled([...interruptHandlers].map((h) => h())).then(() => process.exit(130));
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
}
