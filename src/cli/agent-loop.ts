/**
 * The `airlock agent` process: a remote runner. It registers once with a one-time token (its
 * API key and Ed25519 key are kept in a 0600 state file), then loops: long-poll for a job, fetch
 * its source and inputs, run it with the same executor as the embedded runner, stream its
 * output, heartbeat, upload its outputs and report. It speaks only HTTP(S) to the server, keeps
 * going across server restarts (back-off 1 s doubling to 30 s), and on SIGTERM stops taking
 * jobs, cancels the running one, reports it and exits.
 */
import { spawn } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, open, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { BlobStore } from '../artifacts/index.js';
import { AirlockError } from '../errors/index.js';
import type { Logger } from '../observability/index.js';
import { ed25519LinkSigner, executeStep } from '../runner/index.js';
import type { LinkSigner, StepResult } from '../runner/index.js';
import { reportOf, stepJobOf } from '../runs/index.js';
import type { Job, StepReport } from '../runs/index.js';
import { sleepUnless } from './context.js';
import { packageVersion } from './version.js';

/** Seconds the server may hold a job request open. */
export const LONG_POLL_SECONDS = 25;
export const HEARTBEAT_MS = 10_000;
export const MIN_BACKOFF_MS = 1000;
export const MAX_BACKOFF_MS = 30_000;
/** How often output is shipped, and the most raw bytes in one batch. */
const LOG_FLUSH_MS = 250;
const LOG_BATCH_BYTES = 256 * 1024;
/** Renew the service token when this much of its life has passed. */
const RENEW_AT = 0.8;
const STATE_FILE = 'agent.json';
const OCTET = 'application/octet-stream';

// --- state ----------------------------------------------------------------------------------------

/** What the agent keeps between starts. `apiKey` and `privateKey` are secrets: the file is 0600. */
export interface AgentState {
  readonly version: 1;
  readonly server: string;
  readonly agentId: string;
  readonly name: string;
  readonly serviceAccount: string;
  readonly labels: readonly string[];
  readonly apiKey: string;
  /** PKCS#8 PEM of the Ed25519 key that signs this agent's link records. */
  readonly privateKey: string;
}

/** `$XDG_STATE_HOME/airlock-agent`, else `~/.local/state/airlock-agent`. */
export function defaultStateDir(env: NodeJS.ProcessEnv): string {
  const xdg = env.XDG_STATE_HOME;
  // XDG Base Directory spec: a relative value is invalid and must be ignored.
  if (xdg !== undefined && xdg !== '' && isAbsolute(xdg)) return join(xdg, 'airlock-agent');
  return join(env.HOME !== undefined && env.HOME !== '' ? env.HOME : homedir(), '.local', 'state', 'airlock-agent');
}

function isState(v: unknown): v is AgentState {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return o.version === 1 && ['server', 'agentId', 'name', 'serviceAccount', 'apiKey', 'privateKey'].every((k) => typeof o[k] === 'string' && o[k] !== '') && Array.isArray(o.labels);
}

/** The stored state, or undefined when the agent has not registered yet. Refuses a file others can read. */
export async function loadState(dir: string): Promise<AgentState | undefined> {
  const path = join(dir, STATE_FILE);
  let text: string;
  try {
    const info = await stat(path);
    if ((info.mode & 0o077) !== 0) throw new AirlockError('CONFIG_INVALID', `${path} is readable by group or others (it holds the agent's API key and signing key); run chmod 600 ${path}`, { path });
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!isState(parsed)) throw new AirlockError('CONFIG_INVALID', `${path} is not an agent state file; remove it and register again with a new token`, { path });
  return parsed;
}

/** Write the state atomically (temporary file, fsync, rename) with mode 0600 in a 0700 directory. */
export async function saveState(dir: string, state: AgentState): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const path = join(dir, STATE_FILE);
  const tmp = join(dir, `.${STATE_FILE}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(`${JSON.stringify(state, null, 2)}\n`);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  await rename(tmp, path);
}

/** A valid agent name from this machine's host name. */
export function nameFromHost(host: string): string {
  const cleaned = host.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 58);
  return cleaned === '' ? 'agent' : cleaned;
}

// --- HTTP ---------------------------------------------------------------------------------------

/** The server could not be reached or could not serve now (restart, 5xx, 503): try again later. */
export class TransientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransientError';
  }
}

type FetchInit = NonNullable<Parameters<typeof fetch>[1]>;

interface RequestOptions {
  readonly json?: unknown;
  /** A fresh body stream per attempt (a 401 is retried once after renewing the token). */
  readonly stream?: () => Readable;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal | undefined;
}

/** An error answer as an error: 5xx and 429 are transient, anything else carries the server's code. */
async function answerError(res: Response, what: string): Promise<Error> {
  let code = `HTTP_${res.status}`;
  let message = `the server answered ${what} with HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code === 'string' && typeof body.error.message === 'string') {
      code = body.error.code;
      message = `${what}: ${body.error.message.replace(/[\r\n]+/g, ' ').slice(0, 500)}`;
    }
  } catch {
    // Not an Airlock answer (a proxy page): keep the status.
  }
  if (res.status >= 500 || res.status === 429) return new TransientError(`${message} (${code})`);
  return new AirlockError(code as 'INTERNAL', message, { status: res.status });
}

/** One agent's conversation with its server: a service token renewed before it expires. */
export class AgentApi {
  private token: string | undefined;
  private renewAt = 0;

  constructor(
    readonly server: string,
    private readonly apiKey: string,
  ) {}

  private async raw(method: string, path: string, options: RequestOptions, bearer: string | undefined): Promise<Response> {
    const headers: Record<string, string> = { 'user-agent': `airlock-agent/${packageVersion()}` };
    if (bearer !== undefined) headers.authorization = `Bearer ${bearer}`;
    let body: string | WebReadableStream | undefined;
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.json);
    } else if (options.stream !== undefined) {
      headers['content-type'] = OCTET;
      body = Readable.toWeb(options.stream());
    }
    const timeout = AbortSignal.timeout(options.timeoutMs ?? 60_000);
    const signal = options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal]);
    try {
      // `duplex: 'half'` is required by fetch for a streamed body.
      return await fetch(`${this.server}${path}`, { method, headers, body: body as FetchInit['body'], redirect: 'error', signal, duplex: 'half' });
    } catch (err) {
      if (options.signal?.aborted === true) throw err;
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
      throw new TransientError(`cannot reach the Airlock server at ${this.server} (${cause})`);
    }
  }

  /** Exchange the API key for a fresh short-lived token. */
  private async renew(signal: AbortSignal | undefined): Promise<string> {
    const res = await this.raw('POST', '/api/v1/auth/token', { json: { apiKey: this.apiKey }, timeoutMs: 30_000, signal }, undefined);
    if (!res.ok) throw await answerError(res, 'exchanging the agent API key for a token');
    const body = (await res.json()) as { accessToken: string; expiresAt: string };
    const now = Date.now();
    this.token = body.accessToken;
    this.renewAt = now + Math.max(0, (Date.parse(body.expiresAt) - now) * RENEW_AT);
    return body.accessToken;
  }

  /** An authenticated request; a 401 renews the token and retries once. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const token = this.token !== undefined && Date.now() < this.renewAt ? this.token : await this.renew(options.signal);
      const res = await this.raw(method, path, options, token);
      if (res.status !== 401 || attempt > 0) return res;
      await res.body?.cancel();
      this.token = undefined;
    }
  }

  /** A request made with another bearer token (a step's workload token), not the agent's own. */
  async callAs<T>(bearer: string, method: string, path: string, what: string, options: RequestOptions = {}): Promise<T> {
    const res = await this.raw(method, path, options, bearer);
    if (!res.ok) throw await answerError(res, what);
    return (await res.json()) as T;
  }

  /** A request whose answer must be 2xx; the JSON body (undefined for 204). */
  async call<T>(method: string, path: string, what: string, options: RequestOptions = {}): Promise<T | undefined> {
    const res = await this.request(method, path, options);
    if (!res.ok) throw await answerError(res, what);
    if (res.status === 204) return undefined;
    return (await res.json()) as T;
  }
}

/** Register with a one-time token: a new Ed25519 key, then the server's API key. */
export async function register(server: string, token: string, name: string): Promise<AgentState> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  let res: Response;
  try {
    res = await fetch(`${server}/api/v1/agents/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': `airlock-agent/${packageVersion()}` },
      body: JSON.stringify({ token, name, publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString() }),
      redirect: 'error',
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
    throw new TransientError(`cannot reach the Airlock server at ${server} (${cause})`);
  }
  if (!res.ok) throw await answerError(res, 'registering the agent');
  const made = (await res.json()) as { agentId: string; name: string; serviceAccount: string; labels: string[]; apiKey: string };
  return { version: 1, server, agentId: made.agentId, name: made.name, serviceAccount: made.serviceAccount, labels: made.labels, apiKey: made.apiKey, privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

// --- one job --------------------------------------------------------------------------------------

interface JobContext {
  readonly api: AgentApi;
  readonly signer: LinkSigner;
  readonly log: Logger;
  /** Per-job scratch space (source, blob cache, workspaces); removed after the job. */
  readonly cacheDir: string;
  /** Aborted on SIGTERM. */
  readonly stop: AbortSignal;
  readonly sandbox: 'auto' | 'off';
}

const jobPath = (stepId: string, rest = ''): string => `/api/v1/agents/jobs/${encodeURIComponent(stepId)}${rest}`;

/** A job as the server hands it out (GET /api/v1/agents/jobs/next). */
export interface JobOffer {
  readonly job: Job;
  readonly env: Readonly<Record<string, string>>;
  /** How often to heartbeat: the server derives it from its lease (default 10 s). */
  readonly heartbeatMs?: number;
}

/** Retry transient failures (server restarting) with back-off; anything else is thrown at once. */
async function retrying<T>(log: Logger, what: string, fn: () => Promise<T>, attempts = 6): Promise<T> {
  let delay = MIN_BACKOFF_MS;
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof TransientError) || i >= attempts) throw err;
      log.warn({ retryInMs: delay }, `${what}: ${err.message}; retrying`);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, MAX_BACKOFF_MS);
    }
  }
}

/**
 * Download the job's source tree to a file, then unpack it with tar into `dir`. Spooling first
 * (rather than piping into tar's stdin) avoids a race: tar may exit as soon as it has read the
 * end-of-archive blocks, closing its stdin before the pipe has finished, which failed good
 * downloads with "Premature close". It also means a truncated download is seen as a transfer
 * error before anything is unpacked.
 */
async function fetchSource(ctx: JobContext, stepId: string, dir: string, signal: AbortSignal): Promise<void> {
  const res = await ctx.api.request('GET', jobPath(stepId, '/source'), { timeoutMs: 30 * 60_000, signal });
  if (!res.ok || res.body === null) throw await answerError(res, 'downloading the source');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const archive = `${dir}.tar`;
  try {
    await pipeline(Readable.fromWeb(res.body), createWriteStream(archive, { mode: 0o600 }));
    const tar = spawn('tar', ['--extract', `--file=${archive}`, '--directory', dir, '--no-same-owner'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    tar.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 1000) stderr += d.toString('utf8');
    });
    const code = await new Promise<number | null>((resolve, reject) => {
      tar.once('error', reject);
      tar.once('close', resolve);
    });
    if (code !== 0) throw new Error(`unpacking the source failed (tar exit ${String(code)}: ${stderr.trim().split('\n')[0] ?? ''})`);
  } finally {
    await rm(archive, { force: true });
  }
}

/** Fetch each declared input into the local blob store, checking its digest. */
async function fetchInputs(ctx: JobContext, job: Job, blobs: BlobStore, signal: AbortSignal): Promise<void> {
  for (const input of job.inputs) {
    if (await blobs.has(input.digest)) continue;
    const res = await ctx.api.request('GET', jobPath(job.stepId, `/inputs/${encodeURIComponent(input.digest)}`), { timeoutMs: 30 * 60_000, signal });
    if (!res.ok || res.body === null) throw await answerError(res, `downloading input ${input.path}`);
    const stored = await blobs.put(Readable.fromWeb(res.body));
    if (stored.digest !== input.digest) throw new Error(`input ${input.path}: the server sent bytes that hash to ${stored.digest}, not ${input.digest}`);
  }
}

/** Output chunks, shipped in order in batches of at most LOG_BATCH_BYTES. Best effort: the link holds the digests. */
class LogShipper {
  private pending: { stream: 'stdout' | 'stderr'; data: Buffer }[] = [];
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly ctx: JobContext,
    private readonly stepId: string,
  ) {}

  push(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    // Split big chunks so no batch exceeds the limit.
    for (let at = 0; at < chunk.length; at += LOG_BATCH_BYTES) this.pending.push({ stream, data: Buffer.from(chunk.subarray(at, at + LOG_BATCH_BYTES)) });
  }

  flush(): Promise<void> {
    const batches: { stream: 'stdout' | 'stderr'; data: Buffer }[][] = [];
    let current: { stream: 'stdout' | 'stderr'; data: Buffer }[] = [];
    let size = 0;
    for (const c of this.pending) {
      if (size + c.data.length > LOG_BATCH_BYTES && current.length > 0) {
        batches.push(current);
        current = [];
        size = 0;
      }
      current.push(c);
      size += c.data.length;
    }
    if (current.length > 0) batches.push(current);
    this.pending = [];
    for (const batch of batches) {
      const chunks = batch.map((c) => ({ stream: c.stream, data: c.data.toString('base64') }));
      this.chain = this.chain
        .then(() => retrying(this.ctx.log, 'sending output', () => this.ctx.api.call('POST', jobPath(this.stepId, '/logs'), 'sending output', { json: { chunks } }), 3))
        .then(
          () => undefined,
          (err: unknown) => {
            this.ctx.log.warn({ err: (err as Error).message, stepId: this.stepId }, 'output could not be sent to the server');
          },
        );
    }
    return this.chain;
  }
}

/** Upload a blob from the local store (the server checks its hash against the digest). */
async function upload(ctx: JobContext, stepId: string, blobs: BlobStore, digest: string): Promise<void> {
  const path = blobs.pathFor(digest);
  await retrying(ctx.log, `uploading ${digest}`, () => ctx.api.call('PUT', jobPath(stepId, `/outputs/${encodeURIComponent(digest)}`), `uploading ${digest}`, { stream: () => createReadStream(path), timeoutMs: 60 * 60_000 }));
}

function failure(status: 'failed' | 'cancelled', reason: string): StepReport {
  return { status, exitCode: null, reason: reason.slice(0, 1000), outputs: [], evidence: null };
}

/**
 * The step's declared secrets, fetched as it starts with the step's own workload token: the
 * agent's credential cannot read any secret, so a compromised agent gets only what the jobs
 * it is given declare, while they run. A refusal becomes the step's `refused` report.
 */
async function fetchSecrets(ctx: JobContext, job: Job, env: Readonly<Record<string, string>>, signal: AbortSignal): Promise<{ name: string; value: Buffer }[]> {
  if (job.secrets.length === 0) return [];
  const token = env.AIRLOCK_TOKEN;
  if (token === undefined) throw new SecretsRefused('the server sent no workload token with the job, so its secrets cannot be fetched');
  try {
    const answer = await retrying(ctx.log, 'fetching the step\'s secrets', () => ctx.api.callAs<{ secrets: { name: string; valueBase64: string }[] }>(token, 'POST', '/api/v1/workload/secrets', 'fetching the step\'s secrets', { json: {}, signal }));
    return answer.secrets.map((s) => ({ name: s.name, value: Buffer.from(s.valueBase64, 'base64') }));
  } catch (err) {
    if (err instanceof AirlockError && (err.code === 'FORBIDDEN' || err.code === 'NOT_FOUND' || err.code === 'TOKEN_INVALID' || err.code === 'UNAUTHENTICATED')) throw new SecretsRefused(err.message);
    throw err;
  }
}

/** The server refused the step's secrets: the step is refused, its command never runs. */
class SecretsRefused extends Error {}

/** Run one job from download to report. Never throws: every failure becomes the step's report. */
export async function runJob(ctx: JobContext, next: JobOffer): Promise<StepReport['status']> {
  const { job } = next;
  const dir = join(ctx.cacheDir, job.stepId);
  const blobs = new BlobStore(join(dir, 'blobs'));
  const abort = new AbortController();
  const onStop = (): void => {
    abort.abort();
  };
  ctx.stop.addEventListener('abort', onStop, { once: true });
  const logs = new LogShipper(ctx, job.stepId);
  const flusher = setInterval(() => void logs.flush(), LOG_FLUSH_MS);
  const beat = setInterval(() => {
    ctx.api
      .call<{ cancel: boolean }>('POST', jobPath(job.stepId, '/heartbeat'), 'heartbeat', { json: {}, timeoutMs: 8000 })
      .then((h) => {
        if (h?.cancel === true) {
          ctx.log.info({ stepId: job.stepId }, 'the server cancelled the step');
          abort.abort();
        }
      })
      .catch((err: unknown) => {
        // A step that is no longer ours (lost, taken over) must stop; anything else may pass.
        if (err instanceof AirlockError && (err.code === 'FORBIDDEN' || err.code === 'CONFLICT' || err.code === 'NOT_FOUND')) abort.abort();
        ctx.log.warn({ err: (err as Error).message, stepId: job.stepId }, 'heartbeat failed');
      });
  }, Math.max(500, Math.min(HEARTBEAT_MS, next.heartbeatMs ?? HEARTBEAT_MS)));
  ctx.log.info({ stepId: job.stepId, run: job.runId, stage: job.stage, step: job.step, attempt: job.attempt }, `running ${job.project}#${job.runNumber} ${job.stage}/${job.step}`);
  let report: StepReport;
  let result: StepResult | undefined;
  try {
    const source = join(dir, 'source');
    await fetchSource(ctx, job.stepId, source, abort.signal);
    await fetchInputs(ctx, job, blobs, abort.signal);
    const secrets = await fetchSecrets(ctx, job, next.env, abort.signal);
    result = await executeStep(stepJobOf(job, { ...next.env }, source, secrets), {
      blobs,
      workRoot: join(dir, 'work'),
      signer: ctx.signer,
      onOutput: (stream, chunk) => {
        logs.push(stream, chunk);
      },
      signal: abort.signal,
      sandbox: ctx.sandbox,
    });
    clearInterval(flusher);
    await logs.flush();
    // Outputs first (the server refuses a result naming blobs it does not have), then the stored logs.
    const digests = new Set<string>(result.outputs.map((o) => o.digest));
    for (const l of [result.logs.stdout.digest, result.logs.stderr.digest]) if (l !== null) digests.add(l);
    for (const d of digests) await upload(ctx, job.stepId, blobs, d);
    report = reportOf(result);
  } catch (err) {
    clearInterval(flusher);
    await logs.flush();
    const message = err instanceof Error ? err.message : String(err);
    report = err instanceof SecretsRefused ? { status: 'refused', exitCode: null, reason: message.slice(0, 1000), outputs: [], evidence: null } : abort.signal.aborted ? failure('cancelled', `the agent stopped before the step finished (${message})`) : failure('failed', `the agent could not run the step: ${message}`);
  } finally {
    clearInterval(beat);
    ctx.stop.removeEventListener('abort', onStop);
  }
  try {
    await retrying(ctx.log, 'reporting the result', () => ctx.api.call('POST', jobPath(job.stepId, '/result'), 'reporting the result', { json: report }));
    ctx.log.info({ stepId: job.stepId, status: report.status, reason: report.reason }, `step ${job.stage}/${job.step} ${report.status}`);
  } catch (err) {
    ctx.log.error({ err: (err as Error).message, stepId: job.stepId }, 'the result could not be reported; the server will end the step when its lease lapses');
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  return report.status;
}

// --- the loop -----------------------------------------------------------------------------------

export interface AgentLoopOptions {
  readonly state: AgentState;
  readonly stateDir: string;
  readonly log: Logger;
  /** Aborted on SIGTERM/SIGINT: stop taking jobs, cancel the running one, return. */
  readonly stop: AbortSignal;
  /** `off` runs steps as plain processes even where bubblewrap exists (default auto). */
  readonly sandbox?: 'auto' | 'off';
}

/** Take jobs until `stop` aborts. Throws only when the server refuses the agent (revoked, disabled). */
export async function agentLoop(options: AgentLoopOptions): Promise<void> {
  const { state, log, stop } = options;
  const api = new AgentApi(state.server, state.apiKey);
  const signer = ed25519LinkSigner(createPrivateKey(state.privateKey));
  const ctx: JobContext = { api, signer, log, cacheDir: join(options.stateDir, 'jobs'), stop, sandbox: options.sandbox ?? 'auto' };
  await rm(ctx.cacheDir, { recursive: true, force: true });
  const stopped = new Promise<void>((resolve) => {
    if (stop.aborted) resolve();
    stop.addEventListener(
      'abort',
      () => {
        resolve();
      },
      { once: true },
    );
  });
  // A function, not the property: it changes while we wait (the compiler would narrow it away).
  const stopping = (): boolean => stop.aborted;
  let backoff = MIN_BACKOFF_MS;
  let down = false;
  while (!stopping()) {
    let next: JobOffer | undefined;
    try {
      next = await api.call<JobOffer>('GET', `/api/v1/agents/jobs/next?wait=${LONG_POLL_SECONDS}`, 'waiting for a job', { timeoutMs: (LONG_POLL_SECONDS + 15) * 1000, signal: stop });
      if (down) log.info({ server: state.server }, 'the server is reachable again');
      down = false;
      backoff = MIN_BACKOFF_MS;
    } catch (err) {
      if (stopping()) break;
      if (!(err instanceof TransientError)) throw err;
      log.warn({ retryInMs: backoff }, err.message);
      down = true;
      await sleepUnless(backoff, stopped);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      continue;
    }
    if (next !== undefined) await runJob(ctx, next);
  }
}
