/**
 * A small JSON client for the Airlock HTTP API. Every error answer (`{error:{code,message,details}}`)
 * becomes an AirlockError carrying the server's code and message, so the CLI prints it as
 * `airlock: <message> (<CODE>)` like any local failure. Credentials travel only in the
 * Authorization header and never appear in an error, a log line or a message.
 */
import { AirlockError, ValidationError } from '../errors/index.js';
import type { ErrorCode, FieldIssue } from '../errors/index.js';
import { UsageError } from './cli.js';
import { packageVersion } from './version.js';

/**
 * Codes only the client produces: the server could not be reached, or its answer was not an
 * Airlock answer (a proxy's HTML page, a truncated body).
 */
export type ClientErrorCode = 'SERVER_UNREACHABLE' | 'BAD_RESPONSE';

/** An error answered by the server (or raised by the client about the exchange). */
export class ApiError extends AirlockError {
  /** HTTP status, or 0 when no answer arrived. */
  readonly status: number;

  constructor(status: number, code: string, message: string, details: Record<string, unknown> = {}) {
    // The server's own code, passed through verbatim (it may be newer than this CLI), or a
    // ClientErrorCode: main prints any code as given.
    super(code as ErrorCode, message, details);
    this.status = status;
  }
}

/** How long one request may take before the CLI gives up. */
const TIMEOUT_MS = 30_000;
const CODE_RE = /^[A-Z][A-Z0-9_]{1,63}$/;

/** Check and normalise a server base URL (`https://airlock.example.com`, no trailing slash). */
export function normaliseServerUrl(raw: string, source: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new UsageError(`${source}: "${raw}" is not a URL (for example https://airlock.example.com)`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new UsageError(`${source}: the server URL must start with https:// or http://`);
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    throw new UsageError(`${source}: the server URL must not carry credentials, a query or a fragment`);
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** True for a URL whose traffic never leaves this machine. */
export function isLoopback(server: string): boolean {
  const host = new URL(server).hostname;
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export interface ApiClientOptions {
  /** Normalised base URL (see {@link normaliseServerUrl}). */
  readonly server: string;
  /** Bearer token (session token or service JWT), if any. */
  readonly token?: string | undefined;
  /** Injected for tests; defaults to the global fetch. */
  readonly fetch?: typeof fetch;
}

/** JSON over HTTP to one Airlock server. */
export class ApiClient {
  readonly server: string;
  private token: string | undefined;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ApiClientOptions) {
    this.server = options.server;
    this.token = options.token;
    this.fetchImpl = options.fetch ?? fetch;
  }

  /** Use another bearer token from now on (after a step-up rotated the session). */
  setToken(token: string | undefined): void {
    this.token = token;
  }

  /** True when requests carry a bearer token. */
  get authenticated(): boolean {
    return this.token !== undefined;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  put<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PUT', path, body);
  }

  delete<T>(path: string): Promise<T> {
    return this.request<T>('DELETE', path);
  }

  /** Send one request; resolves with the parsed JSON body (undefined for 204). */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = `${this.server}${path}`;
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': `airlock-cli/${packageVersion()}` };
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await this.fetchImpl(url, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        // A redirect could carry the bearer token to another host: refuse to follow one.
        redirect: 'error',
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (err) {
      throw unreachable(this.server, err);
    }
    let text: string;
    try {
      text = await response.text();
    } catch (err) {
      throw unreachable(this.server, err);
    }
    if (response.ok) {
      if (text === '') return undefined as T;
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new ApiError(response.status, 'BAD_RESPONSE', `the server at ${this.server} answered ${method} ${path} with something other than JSON (is this an Airlock server?)`);
      }
    }
    throw errorFrom(this.server, response, text);
  }

  /**
   * GET a byte stream (an artifact's content). Only the wait for the response head is timed:
   * a large body may take longer than any JSON call. Error answers become errors as for JSON.
   */
  async download(path: string): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/octet-stream', 'user-agent': `airlock-cli/${packageVersion()}` };
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    const abort = new AbortController();
    const timer = setTimeout(() => {
      abort.abort(Object.assign(new Error('timeout'), { name: 'TimeoutError' }));
    }, TIMEOUT_MS);
    let response: Response;
    try {
      response = await this.fetchImpl(`${this.server}${path}`, { method: 'GET', headers, redirect: 'error', signal: abort.signal });
    } catch (err) {
      throw unreachable(this.server, err);
    } finally {
      clearTimeout(timer);
    }
    if (response.ok) return response;
    const text = await response.text().catch(() => '');
    throw errorFrom(this.server, response, text);
  }
}

function unreachable(server: string, err: unknown): ApiError {
  const e = err as { name?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError') return new ApiError(0, 'SERVER_UNREACHABLE', `no answer from the Airlock server at ${server} within ${TIMEOUT_MS / 1000} s`);
  const cause = e.cause?.code ?? (typeof e.cause?.message === 'string' && e.cause.message.includes('redirect') ? 'redirected' : undefined);
  if (cause === 'redirected') return new ApiError(0, 'BAD_RESPONSE', `the server at ${server} answered with a redirect, which is not followed (check --server: https instead of http, or a missing path?)`);
  return new ApiError(0, 'SERVER_UNREACHABLE', `cannot reach the Airlock server at ${server}${cause === undefined ? '' : ` (${cause})`}; check --server or AIRLOCK_SERVER, and that the server is running`);
}

function issuesOf(details: Record<string, unknown>): FieldIssue[] | undefined {
  const raw = details.issues;
  if (!Array.isArray(raw)) return undefined;
  const issues = raw.filter((i): i is FieldIssue => typeof i === 'object' && i !== null && typeof (i as FieldIssue).path === 'string' && typeof (i as FieldIssue).message === 'string');
  return issues.length === raw.length ? issues : undefined;
}

/** Map an error answer to an error carrying the server's code and message. */
function errorFrom(server: string, response: Response, text: string): AirlockError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const error = (parsed as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)?.error;
  if (typeof error?.code !== 'string' || !CODE_RE.test(error.code) || typeof error.message !== 'string') {
    return new ApiError(response.status, 'BAD_RESPONSE', `the server at ${server} answered HTTP ${response.status} without an Airlock error body (is this an Airlock server, or a proxy in front of it?)`);
  }
  const details = typeof error.details === 'object' && error.details !== null && !Array.isArray(error.details) ? (error.details as Record<string, unknown>) : {};
  // Keep the message to one line of bounded length: it is printed as is.
  let message = error.message.replace(/[\r\n]+/g, ' ').slice(0, 1000);
  if (error.code === 'VALIDATION_FAILED') {
    // A ValidationError lets main list every bad field under the message.
    const issues = issuesOf(details);
    if (issues !== undefined) return new ValidationError(message, issues);
  }
  if (error.code === 'TOO_MANY_ATTEMPTS') {
    const header = Number(response.headers.get('retry-after'));
    const seconds = typeof details.retryAfterSeconds === 'number' ? details.retryAfterSeconds : Number.isFinite(header) && header > 0 ? header : undefined;
    if (seconds !== undefined) message = `${message} (at ${new Date(Date.now() + seconds * 1000).toISOString()})`;
  }
  return new ApiError(response.status, error.code, message, details);
}
