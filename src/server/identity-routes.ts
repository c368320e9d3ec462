/**
 * Identity and access routes: login, setup, sessions, SSO, token exchange, users, roles,
 * service accounts, policies, and the OIDC discovery documents for workload tokens.
 * Parse, call the domain, shape JSON; authorization already happened at the enforcement point.
 */
import { parse as parseCookies, serialize as serializeCookie } from 'cookie';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { App } from '../app/index.js';
import { AirlockError, NotFoundError } from '../errors/index.js';
import { STEP_UP_WINDOW_MS, actorOf, csrfTokenFor } from '../identity/index.js';
import type { IssuedSession, Principal, UserPrincipal } from '../identity/index.js';
import { parsePolicyFiles } from '../policy/index.js';
import type { ResourceRef } from '../policy/index.js';
import { credentialOf, principalOf, setSessionCookie } from './auth.js';
import { emptyBody, noFields, parseInput } from './input.js';
import { traceIdOf } from './request-context.js';

const OIDC_COOKIE = 'airlock_oidc';
const name = z.string().min(1).max(64);
const secret = z.string().min(1).max(1024);
const roleList = z.array(name).max(50);

const loginBody = z.object({ username: name, password: secret, code: z.string().min(1).max(64), mode: z.enum(['bearer', 'cookie']).default('bearer') }).strict();
const setupBody = z.object({ username: name, setupToken: secret, password: secret }).strict();
const setupConfirmBody = z.object({ username: name, setupToken: secret, code: z.string().min(1).max(64) }).strict();
const stepUpBody = z.object({ code: z.string().min(1).max(64) }).strict();
const tokenBody = z.object({ apiKey: secret, ttlSeconds: z.number().int().optional() }).strict();
// The domain validates and canonicalises the address; this only bounds the input.
const email = z.string().min(1).max(320);
const userBody = z.object({ username: name, displayName: z.string().max(200).optional(), email: email.nullable().optional(), roles: roleList.default([]) }).strict();
const rolesBody = z.object({ roles: roleList }).strict();
const emailBody = z.object({ email: email.nullable() }).strict();
const roleBody = z.object({ name, description: z.string().min(1).max(500), requiresMfa: z.boolean().default(false) }).strict();
const serviceAccountBody = z.object({ name, description: z.string().max(500).optional(), roles: roleList.default([]) }).strict();
const keyBody = z.object({ description: z.string().max(500).optional(), expiresInDays: z.number().int().optional() }).strict().optional();
const policyBody = z
  .object({
    /** The whole new set as Cedar text (one or more policies, each with @id), or as id -> text. */
    cedar: z.string().min(1).max(512 * 1024).optional(),
    policies: z.record(z.string(), z.string()).optional(),
    reason: z.string().min(1).max(1000),
  })
  .strict()
  .refine((b) => (b.cedar === undefined) !== (b.policies === undefined), { message: 'give exactly one of cedar or policies', path: ['cedar'] });
const usernameParams = z.object({ username: name }).strict();
const saParams = z.object({ name }).strict();
const keyParams = z.object({ name, keyId: z.string().min(1).max(64) }).strict();
const oidcCallbackQuery = z.object({}).catchall(z.string());

const userResource = (p: Readonly<Record<string, string>>): ResourceRef => ({ type: 'User', id: p.username ?? '' });
const saResource = (p: Readonly<Record<string, string>>): ResourceRef => ({ type: 'ServiceAccount', id: p.name ?? '' });

function ctx(request: FastifyRequest) {
  const ua = request.headers['user-agent'];
  return { sourceAddress: request.ip, requestId: request.id, traceId: traceIdOf(request.raw), userAgent: typeof ua === 'string' ? ua.slice(0, 512) : undefined };
}

function asUser(p: Principal): UserPrincipal {
  if (p.kind !== 'user') throw new AirlockError('FORBIDDEN', 'this action is for people signed in with a session');
  return p;
}

/** Answer a login or step-up: cookie mode sets the cookie and keeps the token out of the body. */
function sessionReply(app: App, reply: FastifyReply, session: IssuedSession, cookie: boolean) {
  const base = { username: session.username, sessionId: session.sessionId, expiresAt: session.expiresAt, idleExpiresAt: session.idleExpiresAt, csrfToken: session.csrfToken };
  if (cookie) {
    setSessionCookie(app, reply, session);
    return base;
  }
  return { ...base, token: session.token };
}

export function identityRoutes(app: App): (server: FastifyInstance) => Promise<void> {
  const id = app.identity;
  return async (server) => {
    // --- sessions -----------------------------------------------------------------------------
    server.post('/api/v1/auth/login', { config: { action: 'auth.login' } }, async (request, reply) => {
      const body = parseInput(loginBody, request.body, 'body');
      const session = await id.sessions.login(body, ctx(request));
      return reply.code(201).send(sessionReply(app, reply, session, body.mode === 'cookie'));
    });

    server.post('/api/v1/auth/logout', { config: { action: 'auth.logout' } }, async (request, reply) => {
      parseInput(emptyBody, request.body, 'body');
      await id.sessions.logout(asUser(principalOf(request)), ctx(request));
      if (credentialOf(request)?.source === 'cookie') setSessionCookie(app, reply, undefined);
      return reply.code(204).send();
    });

    server.get('/api/v1/auth/whoami', { config: { action: 'auth.whoami' } }, (request, reply) => {
      parseInput(noFields, request.query, 'query');
      const p = principalOf(request);
      const base = { kind: p.kind, name: p.name, roles: p.roles, authMethod: p.authMethod };
      if (p.kind !== 'user') return reply.send(base);
      // A cookie session (an SSO login ends in one) learns its CSRF token here.
      const credential = credentialOf(request);
      const csrf = credential?.source === 'cookie' ? { csrfToken: csrfTokenFor(credential.token) } : {};
      const fresh = p.mfaAt === undefined ? undefined : new Date(p.mfaAt.getTime() + STEP_UP_WINDOW_MS);
      return reply.send({ ...base, sessionId: p.sessionId, loginMethod: p.loginMethod, mfa: p.mfaAt !== undefined, mfaAt: p.mfaAt?.toISOString() ?? null, stepUpValidUntil: fresh !== undefined && fresh.getTime() > app.clock().getTime() ? fresh.toISOString() : null, ...csrf });
    });

    server.post('/api/v1/auth/step-up', { config: { action: 'auth.stepup' } }, async (request, reply) => {
      const body = parseInput(stepUpBody, request.body, 'body');
      const session = await id.sessions.stepUp(asUser(principalOf(request)), body.code, ctx(request));
      return reply.code(201).send(sessionReply(app, reply, session, credentialOf(request)?.source === 'cookie'));
    });

    server.post('/api/v1/auth/setup', { config: { action: 'auth.setup' } }, async (request) => {
      const body = parseInput(setupBody, request.body, 'body');
      return id.users.beginSetup(body, ctx(request));
    });

    server.post('/api/v1/auth/setup/confirm', { config: { action: 'auth.setup' } }, async (request) => {
      const body = parseInput(setupConfirmBody, request.body, 'body');
      return id.users.confirmSetup(body, ctx(request));
    });

    server.post('/api/v1/auth/token', { config: { action: 'auth.token.exchange' } }, async (request, reply) => {
      const body = parseInput(tokenBody, request.body, 'body');
      const t = await id.serviceAccounts.exchange(body.apiKey, body.ttlSeconds, ctx(request));
      return reply.code(201).send({ accessToken: t.token, tokenType: t.tokenType, expiresAt: t.expiresAt, serviceAccount: t.serviceAccount });
    });

    // --- SSO (browser redirects) ----------------------------------------------------------------
    server.get('/api/v1/auth/oidc/start', { config: { action: 'auth.oidc.start' } }, async (request, reply) => {
      parseInput(noFields, request.query, 'query');
      if (id.sso === undefined) throw new NotFoundError('single sign-on is not configured (set oidc in the config file)');
      const { url, state } = await id.sso.begin(ctx(request));
      // Binds the login to this browser. Lax, not Strict: it must ride the IdP's cross-site redirect back.
      void reply.header('set-cookie', serializeCookie(OIDC_COOKIE, state, { httpOnly: true, sameSite: 'lax', secure: app.config.publicUrl.startsWith('https:'), path: '/api/v1/auth/oidc', maxAge: 600 }));
      return reply.redirect(url, 302);
    });

    server.get('/api/v1/auth/oidc/callback', { config: { action: 'auth.oidc.callback' } }, async (request, reply) => {
      parseInput(oidcCallbackQuery, request.query, 'query');
      if (id.sso === undefined) throw new NotFoundError('single sign-on is not configured (set oidc in the config file)');
      const url = new URL(request.url, app.config.publicUrl);
      const raw = request.headers.cookie;
      const browserState = typeof raw === 'string' ? parseCookies(raw)[OIDC_COOKIE] : undefined;
      const session = await id.sso.complete(url, browserState, ctx(request));
      setSessionCookie(app, reply, session);
      void reply.header('set-cookie', serializeCookie(OIDC_COOKIE, '', { httpOnly: true, sameSite: 'lax', path: '/api/v1/auth/oidc', maxAge: 0 }));
      return reply.redirect('/', 302);
    });

    // --- workload identity federation --------------------------------------------------------------
    server.get('/.well-known/openid-configuration', { config: { action: 'oidc.discovery.read', resource: 'auth' } }, (request, reply) => {
      parseInput(noFields, request.query, 'query');
      return reply.send(app.tokens.discovery(app.config.publicUrl));
    });

    server.get('/.well-known/jwks.json', { config: { action: 'oidc.discovery.read', resource: 'auth' } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      return app.signingKeys.jwks();
    });

    // --- users ------------------------------------------------------------------------------------
    server.get('/api/v1/users', { config: { action: 'users.read' } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      return { users: await id.users.list() };
    });

    server.post('/api/v1/users', { config: { action: 'users.create' } }, async (request, reply) => {
      const body = parseInput(userBody, request.body, 'body');
      const made = await id.users.create(actorOf(principalOf(request)), body, ctx(request));
      return reply.code(201).send(made);
    });

    server.get('/api/v1/users/:username', { config: { action: 'users.read', resource: userResource } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      return id.users.get(parseInput(usernameParams, request.params, 'path').username);
    });

    server.post('/api/v1/users/:username/disable', { config: { action: 'users.disable', resource: userResource } }, async (request) => {
      parseInput(emptyBody, request.body, 'body');
      const { username } = parseInput(usernameParams, request.params, 'path');
      return id.users.disable(actorOf(principalOf(request)), username, ctx(request));
    });

    server.put('/api/v1/users/:username/roles', { config: { action: 'users.roles.update', resource: userResource } }, async (request) => {
      const body = parseInput(rolesBody, request.body, 'body');
      const { username } = parseInput(usernameParams, request.params, 'path');
      return id.users.setRoles(actorOf(principalOf(request)), username, body.roles, ctx(request));
    });

    server.put('/api/v1/users/:username/email', { config: { action: 'users.email.update', resource: userResource } }, async (request) => {
      const body = parseInput(emailBody, request.body, 'body');
      const { username } = parseInput(usernameParams, request.params, 'path');
      return id.users.setEmail(actorOf(principalOf(request)), username, body.email, ctx(request));
    });

    server.post('/api/v1/users/:username/reset', { config: { action: 'users.credentials.reset', resource: userResource } }, async (request, reply) => {
      parseInput(emptyBody, request.body, 'body');
      const { username } = parseInput(usernameParams, request.params, 'path');
      return reply.code(201).send(await id.users.resetSetup(actorOf(principalOf(request)), username, ctx(request)));
    });

    // --- roles ------------------------------------------------------------------------------------
    server.get('/api/v1/roles', { config: { action: 'roles.read' } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      return { roles: await id.roles.list() };
    });

    server.post('/api/v1/roles', { config: { action: 'roles.create' } }, async (request, reply) => {
      const body = parseInput(roleBody, request.body, 'body');
      return reply.code(201).send(await id.roles.create(actorOf(principalOf(request)), body, ctx(request)));
    });

    // --- service accounts -----------------------------------------------------------------------
    server.get('/api/v1/service-accounts', { config: { action: 'service-accounts.read' } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      return { serviceAccounts: await id.serviceAccounts.list() };
    });

    server.post('/api/v1/service-accounts', { config: { action: 'service-accounts.create' } }, async (request, reply) => {
      const body = parseInput(serviceAccountBody, request.body, 'body');
      return reply.code(201).send(await id.serviceAccounts.create(actorOf(principalOf(request)), body, ctx(request)));
    });

    server.post('/api/v1/service-accounts/:name/disable', { config: { action: 'service-accounts.disable', resource: saResource } }, async (request) => {
      parseInput(emptyBody, request.body, 'body');
      const p = parseInput(saParams, request.params, 'path');
      return id.serviceAccounts.disable(actorOf(principalOf(request)), p.name, ctx(request));
    });

    server.get('/api/v1/service-accounts/:name/keys', { config: { action: 'service-accounts.keys.read', resource: saResource } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      return { keys: await id.serviceAccounts.listKeys(parseInput(saParams, request.params, 'path').name) };
    });

    server.post('/api/v1/service-accounts/:name/keys', { config: { action: 'service-accounts.keys.create', resource: saResource } }, async (request, reply) => {
      const body = parseInput(keyBody, request.body, 'body') ?? {};
      const p = parseInput(saParams, request.params, 'path');
      const made = await id.serviceAccounts.createKey(actorOf(principalOf(request)), p.name, body, ctx(request));
      return reply.code(201).send({ apiKey: made.key, key: made.info });
    });

    server.delete('/api/v1/service-accounts/:name/keys/:keyId', { config: { action: 'service-accounts.keys.revoke', resource: saResource } }, async (request) => {
      const p = parseInput(keyParams, request.params, 'path');
      return id.serviceAccounts.revokeKey(actorOf(principalOf(request)), p.name, p.keyId, ctx(request));
    });

    // --- policies ---------------------------------------------------------------------------------
    server.get('/api/v1/policies', { config: { action: 'policies.read' } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      const active = await app.policy.activeVersion();
      if (active === undefined) throw new NotFoundError('no policy version is stored yet (run airlock db migrate)');
      return active;
    });

    server.get('/api/v1/policies/versions', { config: { action: 'policies.read' } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      return { versions: await app.policy.versions() };
    });

    server.put('/api/v1/policies', { config: { action: 'policies.update' } }, async (request) => {
      const body = parseInput(policyBody, request.body, 'body');
      const policies = body.policies ?? parsePolicyFiles([{ file: 'request', text: body.cedar ?? '' }]);
      return app.policy.update(actorOf(principalOf(request)), policies, body.reason, ctx(request));
    });

    return Promise.resolve();
  };
}

