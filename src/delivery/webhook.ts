/**
 * Signed webhooks for approval notifications. The signature header is
 * `x-airlock-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." || body)>`, the
 * scheme Stripe and others use: the timestamp is covered by the MAC, so a receiver that refuses
 * old timestamps bounds how long a captured request can be replayed; within the tolerance a
 * receiver should also drop a signature it has already seen (`VerifyResult.signature`).
 * Several `v1=` entries may be present (a secret being rotated); one match is enough.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { AirlockError, ValidationError } from '../errors/index.js';

export const SIGNATURE_HEADER = 'x-airlock-signature';
export const DEFAULT_TOLERANCE_SEC = 300;
const MAX_HEADER = 4096;
const MIN_SECRET_BYTES = 16;

export type WebhookHeaders = Readonly<Record<string, string | readonly string[] | undefined>>;

export type VerifyResult =
  | { readonly ok: true; readonly timestamp: number; readonly signature: string }
  | { readonly ok: false; readonly reason: 'missing' | 'malformed' | 'stale' | 'mismatch' };

function mac(body: Buffer, secret: Buffer, timestamp: number): Buffer {
  return createHmac('sha256', secret).update(`${timestamp}.`, 'latin1').update(body).digest();
}

function assertTimestamp(timestamp: number, field: string): void {
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) throw new ValidationError('invalid webhook timestamp', [{ path: field, message: 'must be a non-negative integer of Unix seconds' }]);
}

function assertSecret(secret: Buffer): void {
  // A short key makes the MAC guessable offline from one captured request.
  if (!Buffer.isBuffer(secret) || secret.length < MIN_SECRET_BYTES) throw new ValidationError('invalid webhook secret', [{ path: 'secret', message: `must be at least ${MIN_SECRET_BYTES} bytes` }]);
}

/** The headers that sign `body` at `timestamp` (Unix seconds). */
export function signWebhook(body: Buffer, secret: Buffer, timestamp: number): { 'x-airlock-signature': string } {
  assertSecret(secret);
  assertTimestamp(timestamp, 'timestamp');
  return { [SIGNATURE_HEADER]: `t=${timestamp},v1=${mac(body, secret, timestamp).toString('hex')}` };
}

/**
 * Check a received webhook. `now` is Unix seconds; a timestamp more than `toleranceSec` away
 * from it (either way) is refused even when the MAC is right.
 */
export function verifyWebhook(headers: WebhookHeaders, body: Buffer, secret: Buffer, now: number, toleranceSec = DEFAULT_TOLERANCE_SEC): VerifyResult {
  assertSecret(secret);
  if (!Number.isFinite(now) || now < 0) throw new ValidationError('invalid webhook time', [{ path: 'now', message: 'must be non-negative Unix seconds' }]);
  let raw: string | readonly string[] | undefined;
  for (const [name, value] of Object.entries(headers)) if (name.toLowerCase() === SIGNATURE_HEADER) raw = value;
  if (raw === undefined) return { ok: false, reason: 'missing' };
  // Two signature headers: ambiguous which one an intermediary added.
  if (typeof raw !== 'string') return { ok: false, reason: 'malformed' };
  if (raw.length > MAX_HEADER) return { ok: false, reason: 'malformed' };
  let timestamp: number | undefined;
  const candidates: string[] = [];
  for (const part of raw.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return { ok: false, reason: 'malformed' };
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') {
      if (timestamp !== undefined || !/^\d{1,15}$/.test(value)) return { ok: false, reason: 'malformed' };
      timestamp = Number(value);
    } else if (key === 'v1') {
      if (!/^[0-9a-f]{64}$/.test(value)) return { ok: false, reason: 'malformed' };
      candidates.push(value);
    }
    // Other schemes (v0, future versions) are ignored, as receivers of this format do.
  }
  if (timestamp === undefined || candidates.length === 0) return { ok: false, reason: 'malformed' };
  if (Math.abs(now - timestamp) > toleranceSec) return { ok: false, reason: 'stale' };
  const expected = mac(body, secret, timestamp);
  let match: string | undefined;
  // Compare every candidate in constant time; no early exit reveals which one matched.
  for (const candidate of candidates) if (timingSafeEqual(expected, Buffer.from(candidate, 'hex'))) match ??= candidate;
  return match === undefined ? { ok: false, reason: 'mismatch' } : { ok: true, timestamp, signature: match };
}

export interface SendWebhookOptions {
  readonly timeoutMs: number;
  readonly fetch?: typeof fetch;
  /** Unix seconds; default the system clock. */
  readonly now?: () => number;
}

/**
 * POST `payload` as JSON with a signature header; resolves with the response status.
 * Redirects are not followed (a 3xx is returned as is): following one would send the signed
 * notification to a host nobody configured. Errors name only the URL's origin, since webhook
 * URLs often carry a token in their path or query.
 */
export async function sendWebhook(url: string, payload: unknown, secret: Buffer, opts: SendWebhookOptions): Promise<number> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new ValidationError('invalid webhook URL', [{ path: 'url', message: 'must be an absolute http or https URL' }]);
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new ValidationError('invalid webhook URL', [{ path: 'url', message: 'must be an absolute http or https URL' }]);
  if (!Number.isSafeInteger(opts.timeoutMs) || opts.timeoutMs <= 0) throw new ValidationError('invalid webhook timeout', [{ path: 'timeoutMs', message: 'must be a positive number of milliseconds' }]);
  const body = Buffer.from(JSON.stringify(payload), 'utf8');
  const timestamp = opts.now?.() ?? Math.floor(Date.now() / 1000);
  const headers = { 'content-type': 'application/json', 'user-agent': 'airlock-webhook', ...signWebhook(body, secret, timestamp) };
  const doFetch = opts.fetch ?? fetch;
  let res: Response;
  try {
    res = await doFetch(target, { method: 'POST', body, headers, redirect: 'manual', signal: AbortSignal.timeout(opts.timeoutMs) });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    const timedOut = e.name === 'TimeoutError' || e.name === 'AbortError';
    throw new AirlockError(
      'SERVER_UNREACHABLE',
      timedOut ? `webhook ${target.origin} did not answer within ${opts.timeoutMs} ms` : `webhook ${target.origin} could not be reached (${e.cause?.code ?? 'request failed'})`,
      { reason: timedOut ? 'timeout' : 'unreachable', origin: target.origin },
    );
  }
  // Drain the body so the connection is released; its content is not ours to log.
  await res.body?.cancel().catch(() => undefined);
  return res.status;
}
