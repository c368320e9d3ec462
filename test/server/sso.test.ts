/**
 * Single sign-on end to end, on both engines: Airlock's HTTP routes against a real OpenID
 * provider (oidc-provider on 127.0.0.1). The IdP's groups become roles and its `amr` becomes MFA
 * (RFC 8176) only when trusted; the attacks the flow exists to stop are tried and refused:
 * forged or replayed state (RFC 6749 §10.12), an IdP error response, and account takeover by
 * username.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/index.js';
import type { OidcConfig } from '../../src/config/index.js';
import { csrfTokenFor } from '../../src/identity/index.js';
import { buildServer } from '../../src/server/index.js';
import { ENGINES } from '../support/engines.js';
import { startOidcProvider, type TestOidcProvider, type TestOidcUser } from '../support/oidc-provider.js';
import { TestClock, capturingLogger, expectError, makeUser, openTestApp, recordOf, rid, silent } from './support.js';
import type { TestApp } from './support.js';

// Only ever used as a string: Airlock is driven with inject and never listens.
const PUBLIC_URL = 'http://127.0.0.1:7399';
const CALLBACK_URL = `${PUBLIC_URL}/api/v1/auth/oidc/callback`;
const ROLE_MAPPING = { 'release-managers': ['release-manager'], devs: ['developer'], 'platform-admins': ['admin'] };

interface Whoami {
  kind: string;
  name: string;
  roles: string[];
  mfa: boolean;
  loginMethod: string;
  sessionId: string;
  csrfToken?: string;
}

describe.each(ENGINES)('single sign-on on %s', (engine) => {
  const clock = new TestClock();
  // The provider reads this object at every login, so a test may change a user's groups.
  const idpUsers: Record<string, TestOidcUser> = {
    rita: { groups: ['release-managers'], amr: ['pwd', 'otp'], name: 'Rita Release' },
    sam: { groups: ['devs'], amr: ['pwd'] },
    zed: { groups: ['contractors'], amr: ['pwd', 'otp'] },
    pat: { groups: ['platform-admins'], amr: ['pwd'] },
    rita2: { groups: ['release-managers'], amr: ['pwd', 'otp'] },
  };
  const logLines: string[] = [];
  let idp: TestOidcProvider;
  let t: TestApp;
  let server: FastifyInstance;

  function oidcConfig(trustAmr: boolean): OidcConfig {
    return { issuer: idp.issuer, clientId: idp.clientId, clientSecret: idp.clientSecret, roleMapping: ROLE_MAPPING, groupsClaim: 'groups', trustAmr, allowInsecure: true };
  }

  beforeAll(async () => {
    idp = await startOidcProvider({ redirectUris: [CALLBACK_URL], users: idpUsers });
    t = await openTestApp(engine, { clock, config: { publicUrl: PUBLIC_URL, oidc: oidcConfig(true) } });
    server = await buildServer(t.app, { logger: capturingLogger('debug', logLines) });
  });

  afterAll(async () => {
    await server.close();
    await t.cleanup();
    await idp.close();
  });

  async function inject(srv: FastifyInstance, method: 'GET' | 'POST', url: string, headers: Record<string, string> = {}, payload?: Record<string, unknown>): Promise<{ res: LightMyRequestResponse; id: string }> {
    const id = rid('sso');
    const res = await srv.inject({ method, url, headers: { 'x-request-id': id, ...headers }, ...(payload === undefined ? {} : { payload }) });
    return { res, id };
  }

  /** What the browser that started each login keeps: the `airlock_oidc` cookie, by state. */
  const browser = new Map<string, string>();
  function keepBrowserCookie(res: LightMyRequestResponse): void {
    const line = [res.headers['set-cookie'] ?? []].flat().find((l) => l.startsWith('airlock_oidc='));
    expect(line, 'Set-Cookie airlock_oidc').toBeDefined();
    expect(line).toMatch(/;\s*HttpOnly/i);
    expect(line).toMatch(/;\s*SameSite=Lax/i);
    const state = new URL(String(res.headers.location)).searchParams.get('state') ?? '';
    browser.set(state, line!.split(';')[0]!);
  }

  /** GET /start and return the IdP authorization URL it redirects to. */
  async function start(srv: FastifyInstance = server): Promise<string> {
    const { res } = await inject(srv, 'GET', '/api/v1/auth/oidc/start');
    keepBrowserCookie(res);
    expect(res.statusCode, res.body).toBe(302);
    const location = String(res.headers.location);
    expect(new URL(location).origin).toBe(idp.issuer);
    expect(new URL(location).searchParams.get('redirect_uri')).toBe(CALLBACK_URL);
    return location;
  }

  /** Deliver the IdP's redirect to the callback route, as the browser would. */
  async function callback(url: string, srv: FastifyInstance = server, inBrowser = true): Promise<{ res: LightMyRequestResponse; id: string }> {
    const u = new URL(url);
    expect(`${u.origin}${u.pathname}`).toBe(CALLBACK_URL);
    const cookie = inBrowser ? browser.get(u.searchParams.get('state') ?? '') : undefined;
    return inject(srv, 'GET', `${u.pathname}${u.search}`, cookie === undefined ? {} : { cookie });
  }

  /** The `name=value` pair of the session cookie a response set; asserts its attributes. */
  function sessionCookie(res: LightMyRequestResponse): { cookie: string; token: string } {
    const setCookie = res.headers['set-cookie'];
    const line = [setCookie ?? []].flat().find((l) => l.startsWith('airlock_session='));
    expect(line, 'Set-Cookie airlock_session').toBeDefined();
    expect(line).toMatch(/;\s*HttpOnly/i);
    expect(line).toMatch(/;\s*SameSite=Strict/i);
    expect(line).toMatch(/;\s*Path=\//i);
    const cookie = line!.split(';')[0]!;
    const token = cookie.slice('airlock_session='.length);
    expect(token).toMatch(/^als_/);
    return { cookie, token };
  }

  /** The full flow for `user`: start, IdP login, callback; returns the session cookie. */
  async function ssoLogin(user: string, srv: FastifyInstance = server): Promise<{ cookie: string; token: string; callbackId: string }> {
    const cb = await callback(await idp.login(await start(srv), user), srv);
    expect(cb.res.statusCode, cb.res.body).toBe(302);
    expect(cb.res.headers.location).toBe('/');
    expect(cb.res.body).not.toContain('als_');
    return { ...sessionCookie(cb.res), callbackId: cb.id };
  }

  async function whoami(cookie: string, srv: FastifyInstance = server): Promise<Whoami> {
    const { res } = await inject(srv, 'GET', '/api/v1/auth/whoami', { cookie });
    expect(res.statusCode, res.body).toBe(200);
    return res.json<Whoami>();
  }

  /** The domain's own auth.oidc.callback record for a request (the one without an HTTP method). */
  async function callbackRecord(srvApp: TestApp, requestId: string): Promise<AuditEvent> {
    const recent = await srvApp.app.audit.search({ action: 'auth.oidc.callback', order: 'desc', limit: 100 });
    const found = recent.filter((e) => e.event.context.requestId === requestId && e.event.details.method === undefined);
    expect(found, `auth.oidc.callback record for ${requestId}`).toHaveLength(1);
    return found[0]!.event;
  }

  async function userRow(username: string) {
    return t.app.store.db.selectFrom('users').selectAll().where('username', '=', username).executeTakeFirst();
  }

  it('signs rita in: a Strict HttpOnly cookie session with her mapped role and MFA from a trusted amr, recorded', async () => {
    const startRes = await inject(server, 'GET', '/api/v1/auth/oidc/start');
    expect(startRes.res.statusCode).toBe(302);
    keepBrowserCookie(startRes.res);
    const authUrl = new URL(String(startRes.res.headers.location));
    expect(authUrl.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authUrl.searchParams.get('state')).toBeTruthy();
    // Only the hash of the state is stored (a database reader cannot finish someone's login).
    const pending = await t.app.store.db.selectFrom('oidc_logins').selectAll().execute();
    expect(pending.some((r) => r.state_hash === authUrl.searchParams.get('state'))).toBe(false);
    expect((await recordOf(t.app, startRes.id)).outcome).toBe('allowed');

    const cb = await callback(await idp.login(authUrl.href, 'rita'));
    expect(cb.res.statusCode, cb.res.body).toBe(302);
    expect(cb.res.headers.location).toBe('/');
    const { cookie, token } = sessionCookie(cb.res);
    expect(String(cb.res.headers['set-cookie'])).not.toMatch(/;\s*Secure/i); // http public URL

    const who = await whoami(cookie);
    expect(who).toMatchObject({ kind: 'user', name: 'rita', roles: ['release-manager'], mfa: true, loginMethod: 'sso' });

    const ev = await callbackRecord(t, cb.id);
    expect(ev.outcome).toBe('allowed');
    expect(ev.actor).toEqual({ kind: 'user', id: 'rita' });
    expect(ev.details).toMatchObject({ mfa: true, amr: ['pwd', 'otp'], rolesAdded: ['release-manager'], rolesRemoved: [], created: true, issuer: idp.issuer, sessionId: who.sessionId });
    expect((await recordOf(t.app, cb.id)).outcome).toBe('allowed');

    const row = await userRow('rita');
    expect(row).toMatchObject({ kind: 'sso', password_hash: null, sso_issuer: idp.issuer, sso_subject: 'rita', display_name: 'Rita Release', created_by: 'sso' });
    // The state was spent; the token is stored only as a hash.
    expect(await t.app.store.db.selectFrom('oidc_logins').selectAll().where('state_hash', '=', authUrl.searchParams.get('state')!).execute()).toEqual([]);
    const sessions = await t.app.store.db.selectFrom('sessions').selectAll().where('user_id', '=', row!.id).execute();
    expect(sessions).toHaveLength(1);
    expect(sessions[0]!.auth_method).toBe('sso');
    expect(sessions[0]!.mfa_at).not.toBeNull();
    expect(sessions[0]!.token_hash).not.toContain(token);
  });

  it('signs sam in without MFA (amr pwd only) and zed, in an unmapped group, with no roles', async () => {
    const sam = await ssoLogin('sam');
    expect(await whoami(sam.cookie)).toMatchObject({ name: 'sam', roles: ['developer'], mfa: false, loginMethod: 'sso' });
    expect((await callbackRecord(t, sam.callbackId)).details).toMatchObject({ mfa: false, amr: ['pwd'] });
    const zed = await ssoLogin('zed');
    expect(await whoami(zed.cookie)).toMatchObject({ name: 'zed', roles: [], mfa: true });
  });

  it('refuses a privileged action to an SSO admin whose IdP login had no MFA (403 MFA_REQUIRED), recorded', async () => {
    const pat = await ssoLogin('pat');
    const who = await whoami(pat.cookie);
    expect(who).toMatchObject({ name: 'pat', roles: ['admin'], mfa: false });
    // The callback sets only the HttpOnly cookie; derive the CSRF token the way the server does
    // (and if whoami hands it to the page, it must be that one).
    const csrf = csrfTokenFor(pat.token);
    if (who.csrfToken !== undefined) expect(who.csrfToken).toBe(csrf);

    const noCsrf = await inject(server, 'POST', '/api/v1/users', { cookie: pat.cookie }, { username: 'mallory' });
    expectError(noCsrf.res, 403, 'CSRF_FAILED');

    const refused = await inject(server, 'POST', '/api/v1/users', { cookie: pat.cookie, 'x-csrf-token': csrf }, { username: 'mallory' });
    const err = expectError(refused.res, 403, 'MFA_REQUIRED');
    expect(err.details).toMatchObject({ action: 'users.create' });
    const ev = await recordOf(t.app, refused.id);
    expect(ev.outcome).toBe('denied');
    expect(ev.reason).toBe('MFA_REQUIRED');
    expect(ev.actor).toEqual({ kind: 'user', id: 'pat' });
    expect(ev.details).toMatchObject({ decision: 'deny', credential: 'cookie' });
    expect(ev.details.policies).toEqual(expect.arrayContaining(['mfa-required']));
    expect(await userRow('mallory')).toBeUndefined();

    // The same role with MFA from the IdP passes the guardrail: the refusal was about MFA alone.
    idpUsers.pat!.amr = ['pwd', 'hwk'];
    try {
      const patMfa = await ssoLogin('pat');
      const made = await inject(server, 'POST', '/api/v1/users', { cookie: patMfa.cookie, 'x-csrf-token': csrfTokenFor(patMfa.token) }, { username: 'mallory' });
      expect(made.res.statusCode, made.res.body).toBe(201);
    } finally {
      idpUsers.pat!.amr = ['pwd'];
    }
  });

  it('does not take MFA from amr when trustAmr is off', async () => {
    const other = await openTestApp(engine, { clock, config: { publicUrl: PUBLIC_URL, oidc: oidcConfig(false) } });
    const otherServer = await buildServer(other.app, { logger: silent });
    try {
      const rita = await ssoLogin('rita', otherServer);
      expect(await whoami(rita.cookie, otherServer)).toMatchObject({ name: 'rita', roles: ['release-manager'], mfa: false, loginMethod: 'sso' });
      expect((await callbackRecord(other, rita.callbackId)).details).toMatchObject({ mfa: false, amr: ['pwd', 'otp'] });
    } finally {
      await otherServer.close();
      await other.cleanup();
    }
  });

  describe('attacks on the callback are refused and recorded', () => {
    it('a tampered state (login CSRF): 401, no session, and the real login still works once', async () => {
      const good = new URL(await idp.login(await start(), 'rita'));
      const tampered = new URL(good);
      tampered.searchParams.set('state', `${good.searchParams.get('state')!.slice(0, -2)}xx`);
      const forged = await callback(tampered.href);
      expectError(forged.res, 401, 'UNAUTHENTICATED');
      expect(forged.res.headers['set-cookie']).toBeUndefined();
      const ev = await callbackRecord(t, forged.id);
      expect(ev.outcome).toBe('denied');
      expect(ev.actor).toEqual({ kind: 'anonymous', id: 'anonymous' });
      expect(ev.reason).toMatch(/^state/);
      expect((await recordOf(t.app, forged.id)).outcome).toBe('denied');

      const missing = new URL(good);
      missing.searchParams.delete('state');
      const noState = await callback(missing.href);
      expectError(noState.res, 401, 'UNAUTHENTICATED');
      expect((await callbackRecord(t, noState.id)).reason).toMatch(/^state/);

      // An unknown state does not spend the real one: the refusal was the state, not the code.
      const real = await callback(good.href);
      expect(real.res.statusCode, real.res.body).toBe(302);
      sessionCookie(real.res);

      // Replaying the same callback: the stored state was spent.
      const replay = await callback(good.href);
      const err = expectError(replay.res, 401, 'UNAUTHENTICATED');
      expect(replay.res.headers['set-cookie']).toBeUndefined();
      expect(err.message).not.toContain(good.searchParams.get('code')!);
      const replayEv = await callbackRecord(t, replay.id);
      expect(replayEv.outcome).toBe('denied');
      expect(replayEv.reason).toBe('state_unknown');
    });

    it('a callback link finished in another browser (login CSRF, RFC 6749 10.12): 401, and the state is spent', async () => {
      const cbUrl = await idp.login(await start(), 'rita');
      const elsewhere = await callback(cbUrl, server, false);
      expectError(elsewhere.res, 401, 'UNAUTHENTICATED');
      expect([elsewhere.res.headers['set-cookie'] ?? []].flat().some((l) => l.startsWith('airlock_session='))).toBe(false);
      expect((await callbackRecord(t, elsewhere.id)).reason).toBe('state_not_from_this_browser');
      expect((await callbackRecord(t, (await callback(cbUrl)).id)).reason).toBe('state_unknown');
    });

    it('an IdP error response (access_denied): 401 recorded with the IdP reason', async () => {
      const denied = await idp.deny(await start());
      expect(new URL(denied).searchParams.get('error')).toBe('access_denied');
      const cb = await callback(denied);
      expectError(cb.res, 401, 'UNAUTHENTICATED');
      expect(cb.res.headers['set-cookie']).toBeUndefined();
      const ev = await callbackRecord(t, cb.id);
      expect(ev.outcome).toBe('denied');
      expect(ev.reason).toBe('oidc_idp_error');
      expect((await recordOf(t.app, cb.id)).outcome).toBe('denied');
    });

    it('a login finished after the state expired (10 minutes): 401 state_expired', async () => {
      const authUrl = await start();
      const cbUrl = await idp.login(authUrl, 'rita');
      clock.advance(11 * 60_000);
      const cb = await callback(cbUrl);
      expectError(cb.res, 401, 'UNAUTHENTICATED');
      expect((await callbackRecord(t, cb.id)).reason).toBe('state_expired');
    });

    it('a local account is never taken over by an IdP user with the same username: 409, no session', async () => {
      await makeUser(t.app, clock, 'rita2', ['developer']);
      const before = await userRow('rita2');
      const cb = await callback(await idp.login(await start(), 'rita2'));
      const err = expectError(cb.res, 409, 'CONFLICT');
      expect(err.message).toContain('rita2');
      expect(cb.res.headers['set-cookie']).toBeUndefined();
      expect(await userRow('rita2')).toEqual(before);
      expect(before).toMatchObject({ kind: 'local', sso_issuer: null, sso_subject: null });
      expect(await t.app.store.db.selectFrom('sessions').selectAll().where('user_id', '=', before!.id).execute()).toEqual([]);
      const roles = await t.app.store.db.selectFrom('principal_roles').select('role').where('principal_kind', '=', 'user').where('principal_id', '=', before!.id).execute();
      expect(roles.map((r) => r.role)).toEqual(['developer']);
      const ev = await recordOf(t.app, cb.id);
      expect(ev.outcome).toBe('failed');
      expect(ev.reason).toBe('CONFLICT');
    });
  });

  it('refuses a disabled SSO user at the callback, whatever the IdP says', async () => {
    await ssoLogin('zed');
    await t.app.identity.users.disable({ kind: 'system', id: 'test' }, 'zed');
    const cb = await callback(await idp.login(await start(), 'zed'));
    expectError(cb.res, 401, 'UNAUTHENTICATED');
    expect(cb.res.headers['set-cookie']).toBeUndefined();
    expect((await recordOf(t.app, cb.id)).outcome).toBe('denied');
  });

  it('re-applies the IdP groups at every login: a removed group drops its role', async () => {
    const first = await ssoLogin('rita');
    expect((await whoami(first.cookie)).roles).toEqual(['release-manager']);
    idpUsers.rita!.groups = ['devs'];
    try {
      const second = await ssoLogin('rita');
      expect((await whoami(second.cookie)).roles).toEqual(['developer']);
      const ev = await callbackRecord(t, second.callbackId);
      expect(ev.details).toMatchObject({ rolesAdded: ['developer'], rolesRemoved: ['release-manager'], created: false });
      // Roles belong to the user, not the session: the earlier session lost the role too.
      expect((await whoami(first.cookie)).roles).toEqual(['developer']);
      // Still one account, linked by issuer and subject.
      expect(await t.app.store.db.selectFrom('users').select('id').where('sso_subject', '=', 'rita').execute()).toHaveLength(1);
    } finally {
      idpUsers.rita!.groups = ['release-managers'];
    }
  });

  it('keeps session tokens, authorization codes, states and the client secret out of the log', () => {
    const text = logLines.join('');
    expect(text.length).toBeGreaterThan(0);
    expect(text).toContain('/api/v1/auth/oidc/callback');
    expect(text).not.toMatch(/[?&](code|state)=/);
    expect(text).not.toMatch(/als_[A-Za-z0-9_-]{20,}/);
    expect(text).not.toContain(idp.clientSecret);
  });
});
