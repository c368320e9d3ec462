/**
 * Short-lived JWTs (RFC 7519) signed with EdDSA: service tokens (an API key exchanged for
 * minutes of access to the Airlock API) and workload tokens (a pipeline step's identity for OIDC
 * federation, with the claims GitHub Actions and GitLab issue). Verification follows RFC 8725
 * (JWT best current practice): one allowed algorithm, explicit issuer, audience and token kind.
 */
import { randomUUID } from 'node:crypto';
import { SignJWT, errors, jwtVerify } from 'jose';
import type { JWTHeaderParameters, JWTPayload } from 'jose';
import { AirlockError, ValidationError } from '../errors/index.js';
import type { FieldIssue } from '../errors/index.js';
import { CLOCK_TOLERANCE_SECONDS, JWT_ALG, MAX_TOKEN_TTL_SECONDS } from './signing-keys.js';
import type { SigningKeys } from './signing-keys.js';

/** The audience of service tokens: the Airlock API itself. */
export const SERVICE_TOKEN_AUDIENCE = 'airlock-api';
export const DEFAULT_TOKEN_TTL_SECONDS = 600;
export const MIN_TOKEN_TTL_SECONDS = 60;
export const MAX_SERVICE_TOKEN_TTL_SECONDS = MAX_TOKEN_TTL_SECONDS;
/** Workload tokens live minutes, as GitHub's and GitLab's do. */
export const MAX_WORKLOAD_TOKEN_TTL_SECONDS = 900;
/** Far above any token we issue; refusing larger input before parsing bounds the work. */
const MAX_TOKEN_LENGTH = 8192;

export type TokenUse = 'service' | 'workload';

/** Why a token was refused: non-secret, for the audit record only (the caller always sees one message). */
export type TokenRejection =
  | 'malformed'
  | 'algorithm'
  | 'kid'
  | 'unknown_kid'
  | 'signature'
  | 'expired'
  | 'not_yet_valid'
  | 'issued_at'
  | 'issuer'
  | 'audience'
  | 'missing_claim'
  | 'claims'
  | 'lifetime'
  | 'kind';

export interface MintedToken {
  readonly token: string;
  /** ISO 8601. */
  readonly expiresAt: string;
  readonly jti: string;
}

export interface ServiceTokenInput {
  readonly serviceAccountId: string;
  readonly name: string;
  readonly roles: readonly string[];
  readonly apiKeyId: string;
  readonly ttlSeconds?: number;
}

export interface WorkloadTokenInput {
  readonly pipeline: string;
  readonly runId: string;
  readonly step: string;
  /** The step attempt (run_steps.id) the token is for: what a secret release is bound to. */
  readonly stepId?: string;
  readonly audience: string;
  readonly commit: string;
  readonly environment?: string;
  readonly trigger: string;
  readonly ref?: string;
  readonly ttlSeconds?: number;
}

interface VerifiedCommon {
  readonly subject: string;
  readonly jti: string;
  readonly kid: string;
  readonly audience: string;
  /** ISO 8601. */
  readonly issuedAt: string;
  /** ISO 8601. */
  readonly expiresAt: string;
}

export interface VerifiedServiceToken extends VerifiedCommon {
  readonly kind: 'service';
  readonly serviceAccountId: string;
  readonly name: string;
  readonly roles: readonly string[];
  readonly apiKeyId: string;
}

export interface VerifiedWorkloadToken extends VerifiedCommon {
  readonly kind: 'workload';
  readonly pipeline: string;
  readonly runId: string;
  readonly step: string;
  readonly stepId: string | undefined;
  readonly commit: string;
  readonly environment: string | undefined;
  readonly trigger: string;
  readonly ref: string | undefined;
}

export type VerifiedToken = VerifiedServiceToken | VerifiedWorkloadToken;

export interface TokenServiceDeps {
  readonly keys: SigningKeys;
  /** The `iss` of every token: the control plane's public base URL. */
  readonly issuer: string;
  readonly clock?: () => Date;
}

/** The OpenID discovery document that lets relying parties find the JWKS. */
export interface DiscoveryDocument {
  readonly issuer: string;
  readonly jwks_uri: string;
  readonly subject_types_supported: readonly string[];
  readonly response_types_supported: readonly string[];
  readonly id_token_signing_alg_values_supported: readonly string[];
  readonly scopes_supported: readonly string[];
  readonly claims_supported: readonly string[];
}

const WORKLOAD_CLAIMS = ['iss', 'sub', 'aud', 'iat', 'nbf', 'exp', 'jti', 'token_use', 'pipeline', 'run_id', 'step', 'commit', 'environment', 'trigger', 'ref'] as const;

/** A segment of `sub`: a colon would let a crafted name impersonate another subject in a trust policy. */
const SEGMENT = /^[^\s:\p{Cc}]{1,128}$/u;
/** A printable claim value. */
const VALUE = /^[^\p{Cc}]{1,256}$/u;

function refuse(reason: TokenRejection, cause?: unknown): AirlockError {
  return new AirlockError('TOKEN_INVALID', 'the token is invalid or expired', { reason }, cause === undefined ? undefined : { cause });
}

class KeyLookupFailed extends Error {
  constructor(readonly reason: 'kid' | 'unknown_kid') {
    super(reason);
  }
}

/** Maps a jose failure to a rejection reason; anything unrecognised is 'malformed' (fail closed). */
function reasonOf(err: unknown): TokenRejection {
  if (err instanceof KeyLookupFailed) return err.reason;
  if (err instanceof errors.JWTExpired) return 'expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.reason === 'missing') return 'missing_claim';
    switch (err.claim) {
      case 'aud':
        return 'audience';
      case 'iss':
        return 'issuer';
      case 'nbf':
        return 'not_yet_valid';
      case 'iat':
        return 'issued_at';
      default:
        return 'claims';
    }
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'signature';
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) return 'algorithm';
  return 'malformed';
}

function checkTtl(issues: FieldIssue[], ttl: number | undefined, max: number): number {
  const value = ttl ?? DEFAULT_TOKEN_TTL_SECONDS;
  if (!Number.isInteger(value) || value < MIN_TOKEN_TTL_SECONDS || value > max) {
    issues.push({ path: 'ttlSeconds', message: `must be a whole number of seconds from ${MIN_TOKEN_TTL_SECONDS} to ${max}` });
  }
  return value;
}

function checkPattern(issues: FieldIssue[], path: string, value: unknown, pattern: RegExp, rule: string): void {
  if (typeof value !== 'string' || !pattern.test(value)) issues.push({ path, message: rule });
}

function throwIfAny(issues: FieldIssue[], what: string): void {
  if (issues.length > 0) throw new ValidationError(`invalid ${what}: ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`, issues);
}

const SEGMENT_RULE = 'must be 1-128 characters with no colon, whitespace or control character';
const VALUE_RULE = 'must be 1-256 printable characters';

const isString = (v: unknown): v is string => typeof v === 'string' && v !== '';
const optionalString = (v: unknown): v is string | undefined => v === undefined || isString(v);

/** Mints and verifies Airlock's JWTs. */
export class TokenService {
  private readonly keys: SigningKeys;
  private readonly issuer: string;
  private readonly clock: () => Date;

  constructor(deps: TokenServiceDeps) {
    this.keys = deps.keys;
    this.issuer = deps.issuer;
    this.clock = deps.clock ?? (() => new Date());
  }

  /** A token for the Airlock API on behalf of a service account (after its API key was checked). */
  async mintServiceToken(input: ServiceTokenInput): Promise<MintedToken> {
    const issues: FieldIssue[] = [];
    const ttl = checkTtl(issues, input.ttlSeconds, MAX_SERVICE_TOKEN_TTL_SECONDS);
    checkPattern(issues, 'name', input.name, SEGMENT, SEGMENT_RULE);
    checkPattern(issues, 'serviceAccountId', input.serviceAccountId, VALUE, VALUE_RULE);
    checkPattern(issues, 'apiKeyId', input.apiKeyId, VALUE, VALUE_RULE);
    if (!Array.isArray(input.roles) || !input.roles.every((r) => typeof r === 'string' && VALUE.test(r))) {
      issues.push({ path: 'roles', message: 'must be a list of role names' });
    }
    throwIfAny(issues, 'service token request');
    return this.sign(
      { token_use: 'service', sa_id: input.serviceAccountId, roles: [...input.roles], key_id: input.apiKeyId },
      `service-account:${input.name}`,
      SERVICE_TOKEN_AUDIENCE,
      ttl,
    );
  }

  /** A pipeline step's identity token, audience-bound, for OIDC federation with clouds and Vault. */
  async mintWorkloadToken(input: WorkloadTokenInput): Promise<MintedToken> {
    const issues: FieldIssue[] = [];
    const ttl = checkTtl(issues, input.ttlSeconds, MAX_WORKLOAD_TOKEN_TTL_SECONDS);
    checkPattern(issues, 'pipeline', input.pipeline, SEGMENT, SEGMENT_RULE);
    checkPattern(issues, 'runId', input.runId, SEGMENT, SEGMENT_RULE);
    checkPattern(issues, 'step', input.step, SEGMENT, SEGMENT_RULE);
    checkPattern(issues, 'audience', input.audience, VALUE, VALUE_RULE);
    checkPattern(issues, 'commit', input.commit, VALUE, VALUE_RULE);
    checkPattern(issues, 'trigger', input.trigger, VALUE, VALUE_RULE);
    if (input.environment !== undefined) checkPattern(issues, 'environment', input.environment, VALUE, VALUE_RULE);
    if (input.ref !== undefined) checkPattern(issues, 'ref', input.ref, VALUE, VALUE_RULE);
    if (input.stepId !== undefined) checkPattern(issues, 'stepId', input.stepId, SEGMENT, SEGMENT_RULE);
    throwIfAny(issues, 'workload token request');
    const claims: JWTPayload = {
      token_use: 'workload',
      pipeline: input.pipeline,
      run_id: input.runId,
      step: input.step,
      commit: input.commit,
      trigger: input.trigger,
    };
    if (input.environment !== undefined) claims.environment = input.environment;
    if (input.ref !== undefined) claims.ref = input.ref;
    if (input.stepId !== undefined) claims.step_id = input.stepId;
    return this.sign(claims, `pipeline:${input.pipeline}:run:${input.runId}:step:${input.step}`, input.audience, ttl);
  }

  private async sign(claims: JWTPayload, subject: string, audience: string, ttl: number): Promise<MintedToken> {
    const { kid, key } = await this.keys.current();
    const iat = Math.floor(this.clock().getTime() / 1000);
    const jti = randomUUID();
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: JWT_ALG, typ: 'JWT', kid })
      .setIssuer(this.issuer)
      .setSubject(subject)
      .setAudience(audience)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + ttl)
      .setJti(jti)
      .sign(key);
    return { token, expiresAt: new Date((iat + ttl) * 1000).toISOString(), jti };
  }

  /**
   * Verifies signature (EdDSA only, key by kid), issuer, audience, exp/nbf (30 s tolerance) and
   * the token kind. Every failure is TOKEN_INVALID with one message; `details.reason` says why.
   */
  async verify(token: string, opts: { audience: string; kind: 'service' }): Promise<VerifiedServiceToken>;
  async verify(token: string, opts: { audience: string; kind: 'workload' }): Promise<VerifiedWorkloadToken>;
  async verify(token: string, opts: { audience: string; kind: TokenUse | 'any' }): Promise<VerifiedToken>;
  /** `kind: 'any'` accepts either kind, as its token_use says (one signature check, not one per kind). */
  async verify(token: string, opts: { audience: string; kind: TokenUse | 'any' }): Promise<VerifiedToken> {
    if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) throw refuse('malformed');
    let payload: JWTPayload;
    let header: JWTHeaderParameters;
    try {
      ({ payload, protectedHeader: header } = await jwtVerify(
        token,
        async (h) => {
          if (typeof h.kid !== 'string' || h.kid === '') throw new KeyLookupFailed('kid');
          const key = await this.keys.publicKey(h.kid);
          if (key === undefined) throw new KeyLookupFailed('unknown_kid');
          return key;
        },
        {
          // RFC 8725 §3.1: an allowlist of one, so `none`, HS256-with-the-public-key and friends never reach a key.
          algorithms: [JWT_ALG],
          issuer: this.issuer,
          audience: opts.audience,
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
          currentDate: this.clock(),
          requiredClaims: ['iss', 'sub', 'aud', 'iat', 'nbf', 'exp', 'jti', 'token_use'],
        },
      ));
    } catch (err) {
      if (err instanceof AirlockError) throw err; // a storage or key failure is ours, not the token's
      throw refuse(reasonOf(err), err instanceof errors.JOSEError || err instanceof KeyLookupFailed ? undefined : err);
    }
    const kind = opts.kind !== 'any' ? opts.kind : payload.token_use === 'service' ? 'service' : 'workload';
    return this.claimsOf(payload, header, kind);
  }

  /** Checks the shape of every claim we rely on; jose has checked the signature and times. */
  private claimsOf(p: JWTPayload, header: JWTHeaderParameters, kind: TokenUse): VerifiedToken {
    // RFC 8725 §3.11: distinct token kinds are not interchangeable, even under one key and audience.
    if (p.token_use !== kind) throw refuse('kind');
    const { sub, jti, iat, exp, aud } = p;
    if (!isString(sub) || !isString(jti) || typeof iat !== 'number' || typeof exp !== 'number') throw refuse('claims');
    const max = kind === 'service' ? MAX_SERVICE_TOKEN_TTL_SECONDS : MAX_WORKLOAD_TOKEN_TTL_SECONDS;
    if (exp - iat > max) throw refuse('lifetime');
    if (typeof aud !== 'string') throw refuse('audience'); // we only ever issue a single audience
    const common = {
      subject: sub,
      jti,
      kid: header.kid ?? '',
      audience: aud,
      issuedAt: new Date(iat * 1000).toISOString(),
      expiresAt: new Date(exp * 1000).toISOString(),
    };
    if (kind === 'service') {
      const { sa_id, roles, key_id } = p;
      if (!sub.startsWith('service-account:') || !isString(sa_id) || !isString(key_id) || !Array.isArray(roles) || !roles.every(isString)) {
        throw refuse('claims');
      }
      // Readonly by type; not frozen on this per-request path (see deny() in src/policy/engine.ts).
      return { ...common, kind, serviceAccountId: sa_id, name: sub.slice('service-account:'.length), roles: [...roles], apiKeyId: key_id };
    }
    const { pipeline, run_id, step, step_id, commit, environment, trigger, ref } = p;
    if (!isString(pipeline) || !isString(run_id) || !isString(step) || !isString(commit) || !isString(trigger) || !optionalString(environment) || !optionalString(ref) || !optionalString(step_id)) {
      throw refuse('claims');
    }
    if (sub !== `pipeline:${pipeline}:run:${run_id}:step:${step}`) throw refuse('claims');
    return { ...common, kind, pipeline, runId: run_id, step, stepId: step_id, commit, environment, trigger, ref };
  }

  /** The `/.well-known/openid-configuration` document, shaped as GitHub Actions publishes its own. */
  discovery(baseUrl: string): DiscoveryDocument {
    const base = baseUrl.replace(/\/+$/, '');
    return {
      issuer: this.issuer,
      jwks_uri: `${base}/.well-known/jwks.json`,
      subject_types_supported: ['public'],
      response_types_supported: ['id_token'],
      id_token_signing_alg_values_supported: [JWT_ALG],
      scopes_supported: ['openid'],
      claims_supported: [...WORKLOAD_CLAIMS],
    };
  }
}
