/**
 * Opaque bearer secrets. Each kind has a recognisable prefix so secret scanners (GitHub push
 * protection, gitleaks, trufflehog) can find a leaked one: `als_` session tokens, `alsu_` setup
 * tokens, `alk_<id>_` API keys. The secret part is 256 random bits, base64url.
 */
import { createHash, createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';

const SECRET_BYTES = 32;
/** base64url of 32 bytes: 43 characters, the last carrying only 2 bits (so one of 16 letters). */
const SECRET = '[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]';
const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const ID_LENGTH = 12;

const SESSION = new RegExp(`^als_${SECRET}$`);
const SETUP = new RegExp(`^alsu_${SECRET}$`);
const API_KEY = new RegExp(`^alk_([a-z2-7]{${ID_LENGTH}})_${SECRET}$`);
const JWT = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;

const randomSecret = (): string => randomBytes(SECRET_BYTES).toString('base64url');

/** A new session token (`als_` + 256 random bits); the cookie value. */
export function newSessionToken(): string {
  return `als_${randomSecret()}`;
}

/** A new one-time account setup token (`alsu_` + 256 random bits). */
export function newSetupToken(): string {
  return `alsu_${randomSecret()}`;
}

/** A new API key `alk_<id>_<secret>`; `id` (12 base32 characters, 60 bits) is public, for listing and revocation. */
export function newApiKey(): { id: string; key: string } {
  let id = '';
  for (let i = 0; i < ID_LENGTH; i++) id += ID_ALPHABET[randomInt(ID_ALPHABET.length)] ?? '';
  return { id, key: `alk_${id}_${randomSecret()}` };
}

/**
 * SHA-256 (hex): how every token is stored and looked up. A slow hash (argon2) is not needed:
 * the tokens are 256-bit random, so a stolen table cannot be brute-forced, and a fast hash lets
 * each request find its row by index (as GitHub stores its tokens).
 */
export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The id and the whole key text if `text` is exactly an API key, else undefined. */
export function parseApiKey(text: string): { id: string; key: string } | undefined {
  const m = API_KEY.exec(text);
  if (m?.[1] === undefined) return undefined;
  return { id: m[1], key: text };
}

const CSRF_LABEL = 'airlock-csrf-v1';

/**
 * The CSRF token of a session: HMAC-SHA256 keyed with the session token. Derived rather than
 * stored, and unguessable without the HttpOnly cookie, so a cross-site page cannot forge it.
 */
export function csrfTokenFor(sessionToken: string): string {
  return createHmac('sha256', sessionToken).update(CSRF_LABEL, 'utf8').digest('base64url');
}

/** True only if `presented` is the CSRF token of `sessionToken`; compared in constant time. */
export function checkCsrf(sessionToken: string, presented: string | undefined): boolean {
  if (presented === undefined || sessionToken === '') return false;
  const expected = Buffer.from(csrfTokenFor(sessionToken), 'utf8');
  const given = Buffer.from(presented, 'utf8');
  // The length is public (always 43); only the content needs a constant-time comparison.
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export type TokenKind = 'session' | 'api-key' | 'setup' | 'jwt' | 'unknown';

/** Which kind of credential `token` looks like (format only: nothing is verified). */
export function tokenKind(token: string): TokenKind {
  if (SESSION.test(token)) return 'session';
  if (SETUP.test(token)) return 'setup';
  if (API_KEY.test(token)) return 'api-key';
  if (JWT.test(token)) return 'jwt';
  return 'unknown';
}
