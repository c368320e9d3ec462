/**
 * OpenID Connect single sign-on, relying-party side: authorization code flow with PKCE (S256),
 * state and nonce (OIDC Core 1.0 §3.1, RFC 7636, RFC 9700 §2.1).
 *
 * Stateless between the two halves: `begin` returns what the caller must persist (sealed) and
 * `complete` receives it back with the callback URL. Every failure of `complete` is the same
 * generic UnauthenticatedError; only a non-secret `reason` tells operators what went wrong.
 * The authorization code, tokens and PKCE verifier never appear in errors.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import * as oidc from 'openid-client';
import { ConfigError, UnauthenticatedError, ValidationError, type FieldIssue } from '../errors/index.js';

/** Operator-supplied settings for one OpenID provider. */
export interface OidcSettings {
  /** Issuer identifier; https, or http only with `allowInsecure` (tests, localhost). */
  issuer: string;
  clientId: string;
  /** Confidential client (client_secret_basic); omit for a public client relying on PKCE. */
  clientSecret?: string;
  /** Where the IdP sends the browser back, e.g. https://airlock.example/api/v1/auth/oidc/callback */
  redirectUri: string;
  /** Default: openid, profile, email, groups (those the IdP advertises, when it advertises any). */
  scopes?: string[];
  /** Default 'groups'. */
  groupsClaim?: string;
  /** Default 'preferred_username', falling back to 'email' then 'sub'. */
  usernameClaim?: string;
  /** IdP group -> Airlock roles. */
  roleMapping: Record<string, string[]>;
  /** When true, an `amr` claim containing one of `mfaAmrValues` satisfies MFA. */
  trustAmr?: boolean;
  /** Default ['mfa', 'otp', 'hwk', 'swk', 'fpt', 'face'] (RFC 8176 §2). */
  mfaAmrValues?: string[];
  /** Allow an http issuer and redirect URI. Tests only. */
  allowInsecure?: boolean;
}

/** What `begin` hands back: the URL to send the browser to, and the secrets to persist until the callback. */
export interface OidcLoginStart {
  url: string;
  state: string;
  codeVerifier: string;
  nonce: string;
}

/** The per-login secrets saved by the caller between `begin` and `complete`. */
export interface OidcSavedLogin {
  state: string;
  codeVerifier: string;
  nonce: string;
}

/** A verified external identity. `roles` may be empty: the caller decides whether that may log in. */
export interface OidcIdentity {
  issuer: string;
  subject: string;
  username: string;
  email?: string;
  /** The IdP vouches that `email` is the person's (`email_verified` is the JSON boolean true, OIDC Core §5.1). */
  emailVerified: boolean;
  displayName?: string;
  groups: string[];
  roles: string[];
  mfa: boolean;
  amr: string[];
}

/** Non-secret failure categories put in `details.reason` of the UnauthenticatedError. */
export type OidcFailureReason =
  | 'state'
  | 'callback'
  | 'issuer'
  | 'idp_error'
  | 'token'
  | 'nonce'
  | 'id_token'
  | 'userinfo'
  | 'idp_unreachable';

const DEFAULT_SCOPES = ['openid', 'profile', 'email', 'groups'] as const;
const DEFAULT_MFA_AMR = ['mfa', 'otp', 'hwk', 'swk', 'fpt', 'face'] as const;
// Standard OAuth error codes are a closed ASCII vocabulary (RFC 6749 §4.1.2.1); anything else
// in the attacker-controllable `error` parameter is dropped rather than echoed.
const SAFE_ERROR_CODE = /^[a-z_]{1,64}$/;
const DISCOVERY_TIMEOUT_SECONDS = 10;

interface CompiledSettings {
  readonly issuer: URL;
  readonly clientId: string;
  readonly clientSecret: string | undefined;
  readonly redirectUri: URL;
  readonly scopes: readonly string[] | undefined;
  readonly groupsClaim: string;
  readonly usernameClaim: string;
  readonly roleMapping: Readonly<Record<string, readonly string[]>>;
  readonly trustAmr: boolean;
  readonly mfaAmrValues: ReadonlySet<string>;
  readonly allowInsecure: boolean;
}

/**
 * A relying party bound to one discovered OpenID provider.
 *
 * @example
 * const rp = await OidcClient.connect(settings);
 * const start = await rp.begin();            // persist start.state/codeVerifier/nonce, redirect to start.url
 * const who = await rp.complete(callbackUrl, saved);
 */
export class OidcClient {
  readonly #settings: CompiledSettings;
  readonly #config: oidc.Configuration;
  readonly #scope: string;

  private constructor(settings: CompiledSettings, config: oidc.Configuration) {
    this.#settings = settings;
    this.#config = config;
    this.#scope = chooseScopes(settings.scopes, config.serverMetadata().scopes_supported).join(' ');
  }

  /** Validate settings and run discovery once; the discovered metadata is kept for the client's lifetime. */
  static async connect(settings: OidcSettings): Promise<OidcClient> {
    const compiled = compileSettings(settings);
    const auth = compiled.clientSecret === undefined ? oidc.None() : oidc.ClientSecretBasic(compiled.clientSecret);
    let config: oidc.Configuration;
    try {
      config = await oidc.discovery(compiled.issuer, compiled.clientId, compiled.clientSecret, auth, {
        // Deprecated only as a warning sign; validation confines it to allowInsecure (tests, localhost).
        // eslint-disable-next-line @typescript-eslint/no-deprecated
        execute: compiled.allowInsecure ? [oidc.allowInsecureRequests] : [],
        timeout: DISCOVERY_TIMEOUT_SECONDS,
      });
    } catch (err) {
      // The library's message names the failing step (HTTP status, issuer mismatch) and no secret.
      const why = err instanceof Error ? err.message : 'unknown error';
      throw new ConfigError('oidc.issuer', `OpenID discovery for ${compiled.issuer.href} failed: ${why}`);
    }
    return new OidcClient(compiled, config);
  }

  /** Start a login: fresh state, nonce and PKCE verifier, and the authorization URL carrying their public halves. */
  async begin(): Promise<OidcLoginStart> {
    const codeVerifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const url = oidc.buildAuthorizationUrl(this.#config, {
      response_type: 'code',
      redirect_uri: this.#settings.redirectUri.href,
      scope: this.#scope,
      state,
      nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
    });
    return { url: url.href, state, codeVerifier, nonce };
  }

  /**
   * Finish a login from the callback URL (absolute, or path+query relative to the redirect URI) and
   * the values saved by `begin`. Throws UnauthenticatedError with `details.reason` on any failure.
   */
  async complete(callbackUrl: URL | string, saved: OidcSavedLogin): Promise<OidcIdentity> {
    let received: URL;
    try {
      received = new URL(callbackUrl, this.#settings.redirectUri);
    } catch {
      throw fail('callback');
    }
    const params = received.searchParams;
    if (!isNonEmpty(saved.state) || !isNonEmpty(saved.codeVerifier) || !isNonEmpty(saved.nonce)) throw fail('state');

    // CSRF on the callback (RFC 6749 §10.12): checked first, before trusting anything else in it.
    const state = params.get('state');
    if (state === null || !constantTimeEqual(state, saved.state)) throw fail('state');

    const error = params.get('error');
    if (error !== null) throw fail('idp_error', error);
    if (!params.get('code')) throw fail('callback');
    // Mix-up defence (RFC 9207): the response must come from the issuer we sent the user to.
    const iss = params.get('iss');
    const server = this.#config.serverMetadata();
    if (iss === null ? server.authorization_response_iss_parameter_supported === true : iss !== server.issuer) throw fail('issuer');

    // Rebuild the URL on the configured redirect URI: the token request must repeat it exactly
    // (RFC 6749 §4.1.3), whatever host or scheme a proxy showed the server.
    const current = new URL(this.#settings.redirectUri);
    current.search = params.toString();
    current.hash = '';

    let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
    try {
      tokens = await oidc.authorizationCodeGrant(this.#config, current, {
        expectedState: saved.state,
        expectedNonce: saved.nonce,
        pkceCodeVerifier: saved.codeVerifier,
        idTokenExpected: true,
      });
    } catch (err) {
      throw classify(err);
    }

    const claims = tokens.claims();
    if (!claims) throw fail('id_token');

    let groupsSource: unknown = claims[this.#settings.groupsClaim];
    if (groupsSource === undefined && this.#config.serverMetadata().userinfo_endpoint !== undefined) {
      // Some IdPs only release groups at the userinfo endpoint (OIDC Core §5.4). The library
      // checks that the userinfo `sub` matches the ID token's (§5.3.2).
      try {
        const info = await oidc.fetchUserInfo(this.#config, tokens.access_token, claims.sub);
        groupsSource = info[this.#settings.groupsClaim];
      } catch (err) {
        throw classify(err, 'userinfo');
      }
    }

    const groups = stringList(groupsSource);
    const amr = stringList(claims.amr);
    const email = nonEmptyString(claims.email);
    const displayName = nonEmptyString(claims.name);
    const username = nonEmptyString(claims[this.#settings.usernameClaim]) ?? email ?? claims.sub;
    const identity: OidcIdentity = {
      issuer: claims.iss,
      subject: claims.sub,
      username,
      groups,
      roles: mapGroupsToRoles(groups, this.#settings.roleMapping),
      mfa: this.#settings.trustAmr && amr.some((v) => this.#settings.mfaAmrValues.has(v)),
      amr,
      // Strictly true: a string "true" or a missing claim is not the IdP's word.
      emailVerified: email !== undefined && claims.email_verified === true,
    };
    if (email !== undefined) identity.email = email;
    if (displayName !== undefined) identity.displayName = displayName;
    return identity;
  }
}

/** Airlock roles granted by a set of IdP groups: sorted, unique; unmapped groups grant nothing. */
export function mapGroupsToRoles(groups: readonly string[], mapping: Readonly<Record<string, readonly string[]>>): string[] {
  const roles = new Set<string>();
  for (const group of groups) {
    // Own properties only: a group named "constructor" or "__proto__" must not reach Object.prototype.
    if (!Object.hasOwn(mapping, group)) continue;
    // Settings may come straight from a parsed file: tolerate, but never trust, their shape.
    const mapped: unknown = mapping[group];
    if (!Array.isArray(mapped)) continue;
    for (const role of mapped as unknown[]) if (isNonEmpty(role)) roles.add(role);
  }
  return [...roles].sort();
}

function compileSettings(s: OidcSettings): CompiledSettings {
  const issues: FieldIssue[] = [];
  const allowInsecure = s.allowInsecure === true;
  const issuer = checkUrl(s.issuer, 'oidc.issuer', allowInsecure, issues);
  if (issuer && (issuer.search !== '' || issuer.hash !== '')) {
    issues.push({ path: 'oidc.issuer', message: 'must not contain a query or fragment (OpenID Discovery §2)' });
  }
  const redirectUri = checkUrl(s.redirectUri, 'oidc.redirectUri', allowInsecure, issues);
  if (redirectUri && redirectUri.hash !== '') {
    issues.push({ path: 'oidc.redirectUri', message: 'must not contain a fragment (RFC 6749 §3.1.2)' });
  }
  if (!isNonEmpty(s.clientId)) issues.push({ path: 'oidc.clientId', message: 'is required' });
  if (s.clientSecret !== undefined && !isNonEmpty(s.clientSecret)) {
    issues.push({ path: 'oidc.clientSecret', message: 'must be a non-empty string, or omitted for a public client' });
  }
  if (s.scopes !== undefined) {
    if (!Array.isArray(s.scopes) || !s.scopes.every((v) => isNonEmpty(v) && !/\s/.test(v))) {
      issues.push({ path: 'oidc.scopes', message: 'must be a list of scope names without spaces' });
    } else if (!s.scopes.includes('openid')) {
      issues.push({ path: 'oidc.scopes', message: "must include 'openid'" });
    }
  }
  if (s.groupsClaim !== undefined && !isNonEmpty(s.groupsClaim)) issues.push({ path: 'oidc.groupsClaim', message: 'must be a non-empty claim name' });
  if (s.usernameClaim !== undefined && !isNonEmpty(s.usernameClaim)) {
    issues.push({ path: 'oidc.usernameClaim', message: 'must be a non-empty claim name' });
  }
  const roleMapping: Record<string, readonly string[]> = Object.create(null) as Record<string, readonly string[]>;
  const rawMapping: unknown = s.roleMapping;
  if (typeof rawMapping !== 'object' || rawMapping === null || Array.isArray(rawMapping)) {
    issues.push({ path: 'oidc.roleMapping', message: 'must map IdP group names to lists of Airlock roles' });
  } else {
    for (const [group, roles] of Object.entries(rawMapping as Record<string, unknown>)) {
      if (!Array.isArray(roles) || !roles.every(isNonEmpty)) {
        issues.push({ path: `oidc.roleMapping.${group}`, message: 'must be a list of role names' });
      } else {
        roleMapping[group] = Object.freeze([...roles]);
      }
    }
  }
  if (s.mfaAmrValues !== undefined && (!Array.isArray(s.mfaAmrValues) || s.mfaAmrValues.length === 0 || !s.mfaAmrValues.every(isNonEmpty))) {
    issues.push({ path: 'oidc.mfaAmrValues', message: 'must be a non-empty list of amr values (RFC 8176)' });
  }
  if (issues.length > 0 || !issuer || !redirectUri) {
    throw new ValidationError(`invalid OIDC settings: ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`, issues);
  }
  return {
    issuer,
    clientId: s.clientId,
    clientSecret: s.clientSecret,
    redirectUri,
    scopes: s.scopes ? Object.freeze([...s.scopes]) : undefined,
    groupsClaim: s.groupsClaim ?? 'groups',
    usernameClaim: s.usernameClaim ?? 'preferred_username',
    roleMapping: Object.freeze(roleMapping),
    trustAmr: s.trustAmr === true,
    mfaAmrValues: new Set(s.mfaAmrValues ?? DEFAULT_MFA_AMR),
    allowInsecure,
  };
}

function checkUrl(value: unknown, path: string, allowInsecure: boolean, issues: FieldIssue[]): URL | undefined {
  if (!isNonEmpty(value)) {
    issues.push({ path, message: 'is required' });
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    issues.push({ path, message: 'must be an absolute URL' });
    return undefined;
  }
  if (url.protocol === 'https:') return url;
  if (url.protocol === 'http:' && allowInsecure) return url;
  issues.push({
    path,
    message: url.protocol === 'http:' ? 'must use https (http is accepted only with allowInsecure, for tests)' : 'must use https',
  });
  return undefined;
}

/** Explicit scopes are sent as given; the defaults are trimmed to what the IdP advertises. */
function chooseScopes(configured: readonly string[] | undefined, supported: readonly string[] | undefined): string[] {
  if (configured) return [...configured];
  if (!supported || supported.length === 0) return [...DEFAULT_SCOPES];
  return DEFAULT_SCOPES.filter((s) => s === 'openid' || supported.includes(s));
}

function fail(reason: OidcFailureReason, idpError?: string): UnauthenticatedError {
  const details: Record<string, unknown> = { reason };
  if (idpError !== undefined && SAFE_ERROR_CODE.test(idpError)) details.idpError = idpError;
  return new UnauthenticatedError('single sign-on failed: start the login again', details);
}

/** Map a library error to a reason without carrying its message or cause (they can quote the response). */
function classify(err: unknown, stage: 'token' | 'userinfo' = 'token'): UnauthenticatedError {
  if (err instanceof oidc.ResponseBodyError) return fail(stage, err.error);
  if (err instanceof oidc.AuthorizationResponseError) return fail('idp_error', err.error);
  if (err instanceof oidc.ClientError) {
    if (err.code === 'OAUTH_JWT_CLAIM_COMPARISON_FAILED' && claimOf(err) === 'nonce') return fail('nonce');
    if (stage === 'userinfo') return fail('userinfo');
    if (err.code === 'OAUTH_RESPONSE_IS_NOT_CONFORM' || err.code === 'OAUTH_RESPONSE_IS_NOT_JSON') return fail('token');
    return fail('id_token');
  }
  // fetch() rejects with a TypeError when the IdP cannot be reached.
  if (err instanceof TypeError) return fail('idp_unreachable');
  return fail(stage);
}

function claimOf(err: oidc.ClientError): unknown {
  const inner: unknown = err.cause;
  if (!(inner instanceof Error)) return undefined;
  const detail: unknown = inner.cause;
  return typeof detail === 'object' && detail !== null && 'claim' in detail ? detail.claim : undefined;
}

/** Equal-time comparison of two strings of any length (hashing first hides the length). */
function constantTimeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a, 'utf8').digest();
  const hb = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(ha, hb);
}

function isNonEmpty(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0;
}

function nonEmptyString(value: unknown): string | undefined {
  return isNonEmpty(value) ? value : undefined;
}

/** A claim that should be a list of strings: a single string counts as one; other shapes grant nothing. */
function stringList(value: unknown): string[] {
  if (typeof value === 'string') return value.length > 0 ? [value] : [];
  if (!Array.isArray(value)) return [];
  return value.filter(isNonEmpty);
}
