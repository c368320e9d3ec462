/**
 * Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP): HMAC-SHA1, 6 digits, 30 s steps,
 * T0 = 0, as every authenticator app implements them. Codes come from `otpauth`; this module adds
 * the drift window, replay refusal and strict input checks.
 */
import { timingSafeEqual, randomBytes } from 'node:crypto';
import { HOTP, Secret, TOTP } from 'otpauth';

export const TOTP_PERIOD_SECONDS = 30;
export const TOTP_DIGITS = 6;
/** RFC 6238 §5.2: accept at most one step of clock drift either side. */
const DRIFT_STEPS = 1;
/** RFC 4226 §4 R6 recommends 160-bit shared secrets. */
const SECRET_BYTES = 20;

export type TotpAlgorithm = 'SHA1' | 'SHA256' | 'SHA512';

export type TotpResult = { ok: true; step: number } | { ok: false; reason: 'malformed' | 'wrong' | 'replayed' };

function secretOf(secret: Buffer): Secret {
  // Copy into a fresh ArrayBuffer: a Buffer may be a view into Node's shared pool.
  return new Secret({ buffer: Uint8Array.from(secret).buffer });
}

/** The RFC 6238 time step (counter) that `time` falls in. */
export function totpStep(time: Date): number {
  return Math.floor(time.getTime() / 1000 / TOTP_PERIOD_SECONDS);
}

/** A new random 160-bit TOTP seed. */
export function newTotpSecret(): Buffer {
  return randomBytes(SECRET_BYTES);
}

/** The otpauth:// key URI (Google Authenticator Key URI format) an authenticator app enrols from. */
export function totpUri(secret: Buffer, account: string, issuer: string): string {
  return new TOTP({ issuer, label: account, secret: secretOf(secret), algorithm: 'SHA1', digits: TOTP_DIGITS, period: TOTP_PERIOD_SECONDS }).toString();
}

/** The code for `time` (defaults: SHA1, 6 digits); for tests, the CLI and the RFC vectors. */
export function totpAt(secret: Buffer, time: Date, opts: { digits?: number; algorithm?: TotpAlgorithm } = {}): string {
  return TOTP.generate({
    secret: secretOf(secret),
    algorithm: opts.algorithm ?? 'SHA1',
    digits: opts.digits ?? TOTP_DIGITS,
    period: TOTP_PERIOD_SECONDS,
    timestamp: time.getTime(),
  });
}

/**
 * Checks a 6-digit code against the steps now-1, now, now+1. `lastStep` is the highest step this
 * seed has accepted: a code matching only a step at or below it is a replay (RFC 6238 §5.2: "the
 * verifier MUST NOT accept the second attempt of the OTP after the successful validation"), which
 * also refuses an older code once a newer one was used. On success store the returned `step`.
 */
export function verifyTotp(secret: Buffer, code: string, lastStep: number, now: Date): TotpResult {
  const candidate = code.replace(/\s+/g, '');
  if (!/^[0-9]{6}$/.test(candidate)) return { ok: false, reason: 'malformed' };
  const presented = Buffer.from(candidate, 'ascii');
  const key = secretOf(secret);
  const current = totpStep(now);
  // Every step in the window is computed and compared in constant time, with no early exit.
  const matched: number[] = [];
  for (let step = current - DRIFT_STEPS; step <= current + DRIFT_STEPS; step++) {
    const expected = Buffer.from(HOTP.generate({ secret: key, algorithm: 'SHA1', digits: TOTP_DIGITS, counter: step }), 'ascii');
    if (timingSafeEqual(presented, expected)) matched.push(step);
  }
  if (matched.length === 0) return { ok: false, reason: 'wrong' };
  // The lowest unused step: if a code happens to match two steps, the later one stays usable.
  const fresh = matched.find((step) => step > lastStep);
  if (fresh === undefined) return { ok: false, reason: 'replayed' };
  return { ok: true, step: fresh };
}
