/**
 * The single enforcement point (promise 2). For every request: find the credential (bearer
 * header, else session cookie), authenticate it, apply CSRF protection to cookie-authenticated
 * state changes, then ask the Cedar policy in force whether this principal may perform the
 * route's declared action on its resource. Deny by default; the decision and its deciding
 * policies go into the request's audit record.
 */
import type { IncomingMessage } from 'node:http';
import { parse as parseCookies, serialize as serializeCookie } from 'cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { App } from '../app/index.js';
import type { JsonValue } from '../audit/index.js';
import { AirlockError, ForbiddenError, MfaRequiredError, UnauthenticatedError } from '../errors/index.js';
import { ANONYMOUS, checkCsrf, mfaAgeSeconds } from '../identity/index.js';
import type { IssuedSession, Principal } from '../identity/index.js';
import type { AuthzRequest, PrincipalRef, ResourceRef } from '../policy/index.js';

export const SESSION_COOKIE = 'airlock_session';
export const CSRF_HEADER = 'x-csrf-token';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** How a route names what it acts on: a collection id, or a function of its path parameters. */
export type ResourceSpec = string | ((params: Readonly<Record<string, string>>) => ResourceRef);

interface AuthState {
  principal: Principal;
  /** Where the credential came from, and the credential itself (never logged or recorded). */
  credential: { source: 'bearer' | 'cookie'; token: string } | undefined;
  /** Why a presented credential was not accepted (recorded; never sent to the client). */
  authnFailure: string | undefined;
  decision: { allowed: boolean; policies: readonly string[]; errors: readonly string[] } | undefined;
}

const states = new WeakMap<IncomingMessage, AuthState>();

/** The authenticated principal of a request that passed the enforcement point. */
export function principalOf(request: FastifyRequest): Principal {
  return states.get(request.raw)?.principal ?? ANONYMOUS;
}

/** Session token of a cookie-authenticated request (to rotate the cookie at step-up). */
export function credentialOf(request: FastifyRequest): AuthState['credential'] {
  return states.get(request.raw)?.credential;
}

/** What the audit record says about authentication and authorization. */
export function authRecord(req: IncomingMessage): { actor: Principal; details: Record<string, JsonValue> } {
  const s = states.get(req);
  if (s === undefined) return { actor: ANONYMOUS, details: {} };
  const details: Record<string, JsonValue> = { authMethod: s.principal.authMethod };
  if (s.credential !== undefined) details.credential = s.credential.source;
  if (s.authnFailure !== undefined) details.authnFailure = s.authnFailure;
  if (s.decision !== undefined) {
    details.decision = s.decision.allowed ? 'allow' : 'deny';
    details.policies = [...s.decision.policies];
    if (s.decision.errors.length > 0) details.policyErrors = s.decision.errors.map((e) => e.slice(0, 200));
  }
  return { actor: s.principal, details };
}

function credentialFrom(request: FastifyRequest): AuthState['credential'] {
  const header = request.headers.authorization;
  if (typeof header === 'string' && header !== '') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return { source: 'bearer', token: m?.[1] ?? '' };
  }
  const raw = request.headers.cookie;
  if (typeof raw === 'string') {
    const token = parseCookies(raw)[SESSION_COOKIE];
    if (token !== undefined && token !== '') return { source: 'cookie', token };
  }
  return undefined;
}

function principalRef(p: Principal): PrincipalRef {
  switch (p.kind) {
    case 'anonymous':
      return { type: 'Anonymous', id: 'anonymous' };
    case 'user':
      return { type: 'User', id: p.name, roles: p.roles };
    case 'service':
      return { type: 'ServiceAccount', id: p.name, roles: p.roles };
    case 'workload':
      return { type: 'Workload', id: p.name, attrs: { pipeline: p.claims.pipeline ?? '', run: p.claims.run_id ?? '', step: p.claims.step ?? '' } };
  }
}

/** Default resource: the collection named by the action's first segment (users.create -> users). */
function resourceOf(action: string, spec: ResourceSpec | undefined, params: unknown): ResourceRef {
  if (typeof spec === 'function') {
    const p: Record<string, string> = {};
    if (typeof params === 'object' && params !== null) for (const [k, v] of Object.entries(params)) if (typeof v === 'string') p[k] = v;
    return spec(p);
  }
  const id = spec ?? action.split('.')[0] ?? 'system';
  return { type: 'Resource', id: id === 'oidc' ? 'auth' : id };
}

/**
 * Authenticate and authorize `request` for `action`. Throws the coded error the client gets:
 * UNAUTHENTICATED (401) for anyone not signed in, CSRF_FAILED, STEP_UP_REQUIRED, MFA_REQUIRED or
 * FORBIDDEN (403) otherwise.
 */
export async function enforce(app: App, request: FastifyRequest, action: string, spec: ResourceSpec | undefined): Promise<void> {
  const state: AuthState = { principal: ANONYMOUS, credential: credentialFrom(request), authnFailure: undefined, decision: undefined };
  states.set(request.raw, state);
  if (state.credential !== undefined) {
    const result = state.credential.token === '' ? { reason: 'authorization_header_malformed' } : await app.identity.authenticate(state.credential.token);
    if ('principal' in result) state.principal = result.principal;
    else state.authnFailure = result.reason;
  }

  // CSRF: a browser attaches the cookie to cross-site requests; a bearer header it never does.
  if (state.credential?.source === 'cookie' && state.principal.kind !== 'anonymous' && !SAFE_METHODS.has(request.method)) {
    const origin = request.headers.origin;
    const expected = new URL(app.config.publicUrl).origin;
    const headerToken = request.headers[CSRF_HEADER];
    const presented = typeof headerToken === 'string' ? headerToken : undefined;
    if ((typeof origin === 'string' && origin !== expected) || !checkCsrf(state.credential.token, presented)) {
      throw new AirlockError('CSRF_FAILED', `cookie-authenticated changes need the ${CSRF_HEADER} header from login and a same-origin request`);
    }
  }

  const now = app.clock();
  const { engine } = await app.policy.current();
  const p = state.principal;
  const request_: AuthzRequest = {
    principal: principalRef(p),
    action,
    resource: resourceOf(action, spec, request.params),
    context: { authMethod: p.authMethod, mfa: p.kind === 'user' && p.mfaAt !== undefined, mfaAgeSeconds: mfaAgeSeconds(p, now), sourceAddress: request.ip },
  };
  const decision = engine.authorize(request_);
  state.decision = decision;
  if (decision.allowed) return;
  if (p.kind === 'anonymous') throw new UnauthenticatedError();
  const refusal = engine.refusal(request_);
  if (refusal === 'STEP_UP_REQUIRED') {
    throw new MfaRequiredError('STEP_UP_REQUIRED', `${action} needs a fresh MFA proof: run \`airlock step-up\` (or POST /api/v1/auth/step-up) and retry within 5 minutes`, { action });
  }
  if (refusal === 'MFA_REQUIRED') {
    throw new MfaRequiredError('MFA_REQUIRED', `${action} needs a session with MFA: log in with a TOTP code (SSO sessions: enable MFA at your identity provider)`, { action });
  }
  const roles = p.roles.length === 0 ? 'no roles' : `roles ${p.roles.join(', ')}`;
  throw new ForbiddenError(`${p.name} (${roles}) may not ${action}`, { action, policies: [...decision.policies] });
}

/** Set the session cookie (HttpOnly, SameSite=Strict; Secure when served over https). */
export function setSessionCookie(app: App, reply: FastifyReply, session: IssuedSession | undefined): void {
  const secure = app.config.publicUrl.startsWith('https:');
  const value =
    session === undefined
      ? serializeCookie(SESSION_COOKIE, '', { httpOnly: true, sameSite: 'strict', secure, path: '/', maxAge: 0 })
      : serializeCookie(SESSION_COOKIE, session.token, { httpOnly: true, sameSite: 'strict', secure, path: '/', expires: new Date(session.expiresAt) });
  void reply.header('set-cookie', value);
}
