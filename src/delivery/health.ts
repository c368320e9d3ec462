/**
 * Post-deploy health checks: an HTTP URL that must answer an expected status, or a command
 * that must exit 0. A freshly started service needs a moment, so a check is retried until it
 * passes, its attempts run out or the overall timeout expires.
 *
 * The command runs with exactly the environment the caller passes (nothing of Airlock's own)
 * in its own process group, which is killed when it times out and swept when it exits. Output
 * is kept bounded for the deployment record, with the values in `secrets` masked.
 */
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { ValidationError } from '../errors/index.js';
import { FIXED_PATH, SecretMasker, groupAlive, killGroup } from '../runner/index.js';

/** The check a deployment declares. `timeoutMs` of a URL check bounds each request. */
export type HealthCheck = { readonly command: string } | { readonly url: string; readonly status: number; readonly timeoutMs: number };

export interface HealthCheckOptions {
  /** The command's whole environment (PATH defaults to a fixed system path). */
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  /** Overall budget for every attempt together. */
  readonly timeoutMs: number;
  /** Extra attempts after the first failure; default: as many as fit in `timeoutMs`. */
  readonly retries?: number;
  /** Pause between attempts (default 250 ms). */
  readonly intervalMs?: number;
  /** Values to mask in captured output (the secrets in `env`). */
  readonly secrets?: readonly string[];
  /** SIGTERM → SIGKILL grace for a command's process group (default 1 s). */
  readonly killGraceMs?: number;
}

export interface HealthResult {
  readonly ok: boolean;
  /** What the last attempt saw; bounded, secrets masked. */
  readonly detail: string;
  readonly attempts: number;
  readonly durationMs: number;
}

/** Bytes of command output (or response body) kept for the detail. */
export const MAX_HEALTH_OUTPUT = 2048;
const DEFAULT_INTERVAL_MS = 250;
const DEFAULT_KILL_GRACE_MS = 1_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function positiveMs(value: unknown): boolean {
  return Number.isSafeInteger(value) && (value as number) > 0 && (value as number) <= 2 ** 31 - 1;
}

function validate(check: HealthCheck, opts: HealthCheckOptions): void {
  const issues: { path: string; message: string }[] = [];
  if ('command' in check) {
    if (typeof check.command !== 'string' || check.command.trim() === '' || check.command.includes('\0')) issues.push({ path: 'check.command', message: 'must be a non-empty string without NUL' });
  } else {
    let url: URL | undefined;
    try {
      url = new URL(check.url);
    } catch {
      issues.push({ path: 'check.url', message: 'must be an absolute URL' });
    }
    if (url !== undefined && url.protocol !== 'http:' && url.protocol !== 'https:') issues.push({ path: 'check.url', message: 'must be http or https' });
    if (!Number.isInteger(check.status) || check.status < 100 || check.status > 599) issues.push({ path: 'check.status', message: 'must be an HTTP status from 100 to 599' });
    if (!positiveMs(check.timeoutMs)) issues.push({ path: 'check.timeoutMs', message: 'must be a positive number of milliseconds' });
  }
  if (!positiveMs(opts.timeoutMs)) issues.push({ path: 'timeoutMs', message: 'must be a positive number of milliseconds' });
  if (opts.retries !== undefined && (!Number.isInteger(opts.retries) || opts.retries < 0)) issues.push({ path: 'retries', message: 'must be a non-negative integer' });
  if (opts.intervalMs !== undefined && (!Number.isInteger(opts.intervalMs) || opts.intervalMs < 0)) issues.push({ path: 'intervalMs', message: 'must be a non-negative integer' });
  if (issues.length > 0) throw new ValidationError('invalid health check', issues);
}

/** Keeps the last `max` bytes of a stream, masked as they arrive. */
class BoundedOutput {
  private readonly masker: SecretMasker;
  private chunks: Buffer[] = [];
  private size = 0;
  private dropped = false;

  constructor(secrets: readonly string[], private readonly max = MAX_HEALTH_OUTPUT) {
    this.masker = new SecretMasker(secrets);
  }

  push(chunk: Buffer): void {
    this.keep(this.masker.push(chunk));
  }

  text(): string {
    this.keep(this.masker.flush());
    const all = Buffer.concat(this.chunks).toString('utf8').trim();
    return this.dropped ? `…${all}` : all;
  }

  private keep(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.max && this.chunks.length > 0) {
      const first = this.chunks[0] as Buffer;
      const excess = this.size - this.max;
      if (first.length <= excess) {
        this.chunks.shift();
        this.size -= first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.size -= excess;
      }
      this.dropped = true;
    }
  }
}

interface Attempt {
  readonly ok: boolean;
  readonly detail: string;
}

async function httpAttempt(check: { readonly url: string; readonly status: number; readonly timeoutMs: number }, budgetMs: number, secrets: readonly string[]): Promise<Attempt> {
  const timeoutMs = Math.max(1, Math.min(check.timeoutMs, budgetMs));
  // Only the origin and path in details: a query string may carry a token.
  const shown = (() => {
    const u = new URL(check.url);
    return `${u.origin}${u.pathname}`;
  })();
  let res: Response;
  try {
    res = await fetch(check.url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual', headers: { 'user-agent': 'airlock-health-check' } });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    if (e.name === 'TimeoutError' || e.name === 'AbortError') return { ok: false, detail: `GET ${shown}: no answer within ${timeoutMs} ms` };
    return { ok: false, detail: `GET ${shown}: ${e.cause?.code ?? 'request failed'}` };
  }
  const body = new BoundedOutput(secrets, 256);
  if (res.body !== null) {
    const stream = Readable.fromWeb(res.body);
    try {
      let read = 0;
      for await (const chunk of stream) {
        body.push(chunk as Buffer);
        read += (chunk as Buffer).length;
        if (read >= 256) break;
      }
    } catch {
      // the status decides; a body cut short is not a failure of its own
    } finally {
      stream.destroy();
    }
  }
  const text = body.text();
  const excerpt = text === '' ? '' : `: ${text.slice(0, 256)}`;
  if (res.status === check.status) return { ok: true, detail: `GET ${shown} answered ${res.status}${excerpt}` };
  return { ok: false, detail: `GET ${shown} answered ${res.status}, expected ${check.status}${excerpt}` };
}

async function commandAttempt(command: string, opts: HealthCheckOptions, budgetMs: number): Promise<Attempt> {
  const output = new BoundedOutput(opts.secrets ?? []);
  const child = spawn('/bin/sh', ['-c', command], {
    cwd: opts.cwd,
    env: { PATH: FIXED_PATH, ...opts.env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const spawnError = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    child.once('spawn', () => {
      resolve(undefined);
    });
    child.once('error', resolve);
  });
  if (spawnError !== undefined || child.pid === undefined) return { ok: false, detail: `the command could not be started (${spawnError?.code ?? 'no pid'})` };
  const pgid = child.pid;
  child.stdout.on('data', (c: Buffer) => {
    output.push(c);
  });
  child.stderr.on('data', (c: Buffer) => {
    output.push(c);
  });
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => {
      resolve({ code, signal });
    });
  });
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      resolve();
    });
  });
  const grace = opts.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
  const state = { timedOut: false };
  const timer = setTimeout(() => {
    state.timedOut = true;
    void killGroup(pgid, grace);
  }, budgetMs);
  await exited;
  clearTimeout(timer);
  // Whatever it left in the background dies with it (and stops holding the pipes open).
  if (await groupAlive(pgid)) await killGroup(pgid, grace);
  const { code, signal } = await Promise.race([closed, sleep(grace).then(() => ({ code: child.exitCode, signal: child.signalCode }))]);
  child.stdout.destroy();
  child.stderr.destroy();
  const out = output.text();
  const suffix = out === '' ? '' : `: ${out}`;
  if (state.timedOut) return { ok: false, detail: `the command was still running when the health check's ${opts.timeoutMs} ms ran out${suffix}` };
  if (code === 0) return { ok: true, detail: `the command exited 0${suffix}` };
  return { ok: false, detail: `the command ${code === null ? `was killed by ${signal ?? 'a signal'}` : `exited ${code}`}${suffix}` };
}

/**
 * Run a health check until it passes or the budget is spent.
 *
 * @example
 * const health = await runHealthCheck({ url: `http://127.0.0.1:${port}/healthz`, status: 200, timeoutMs: 2000 }, { env: {}, cwd: dir, timeoutMs: 15_000 });
 * if (!health.ok) await deployer.rollback('staging', lastGood);
 */
export async function runHealthCheck(check: HealthCheck, opts: HealthCheckOptions): Promise<HealthResult> {
  validate(check, opts);
  const started = Date.now();
  const deadline = started + opts.timeoutMs;
  const maxAttempts = opts.retries === undefined ? Number.POSITIVE_INFINITY : opts.retries + 1;
  const interval = opts.intervalMs ?? DEFAULT_INTERVAL_MS;
  let attempts = 0;
  let last: Attempt = { ok: false, detail: 'not attempted' };
  for (;;) {
    const budget = deadline - Date.now();
    if (budget <= 0) break;
    attempts++;
    last = 'command' in check ? await commandAttempt(check.command, opts, budget) : await httpAttempt(check, budget, opts.secrets ?? []);
    if (last.ok || attempts >= maxAttempts) break;
    const pause = Math.min(interval, deadline - Date.now());
    if (pause <= 0) break;
    await sleep(pause);
  }
  const durationMs = Date.now() - started;
  const detail = last.ok || attempts <= 1 ? last.detail : `${last.detail} (after ${attempts} attempts in ${durationMs} ms)`;
  return { ok: last.ok, detail, attempts, durationMs };
}
