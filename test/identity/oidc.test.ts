/**
 * OpenID Connect login against a real oidc-provider: the happy path, MFA from `amr` (RFC 8176),
 * and the attacks the flow exists to stop (CSRF on the callback, code replay, PKCE and nonce
 * substitution, an IdP error response).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAirlockError, type AirlockError } from '../../src/errors/index.js';
import { OidcClient, mapGroupsToRoles, type OidcSettings } from '../../src/identity/oidc.js';
import { startOidcProvider, type TestOidcProvider } from '../support/oidc-provider.js';

const REDIRECT_URI = 'http://127.0.0.1:9/api/v1/auth/oidc/callback';
const ROLE_MAPPING = { 'release-managers': ['release-manager', 'viewer'], developers: ['developer', 'viewer'] };

let idp: TestOidcProvider;

beforeAll(async () => {
  idp = await startOidcProvider({
    redirectUris: [REDIRECT_URI],
    users: {
      alice: { groups: ['release-managers', 'staff'], amr: ['pwd', 'otp'], email: 'alice@example.test' },
      bob: { groups: ['developers'], amr: ['pwd'] },
      carol: { groups: ['unmapped'] },
    },
  });
});

afterAll(async () => {
  await idp.close();
});

function settings(overrides: Partial<OidcSettings> = {}): OidcSettings {
  return {
    issuer: idp.issuer,
    clientId: idp.clientId,
    clientSecret: idp.clientSecret,
    redirectUri: REDIRECT_URI,
    roleMapping: ROLE_MAPPING,
    allowInsecure: true,
    ...overrides,
  };
}

/** Await a rejection and return the coded error, failing the test if anything else happened. */
async function rejection(p: Promise<unknown>): Promise<AirlockError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isAirlockError(err)) throw new Error(`expected an AirlockError, got ${String(err)}`);
  return err;
}

function expectNoSecrets(err: AirlockError, ...secrets: string[]): void {
  const text = `${err.message} ${JSON.stringify(err.details)} ${err.stack ?? ''}`;
  for (const secret of secrets) expect(text).not.toContain(secret);
}

describe('OidcClient against a real OpenID provider', () => {
  let rp: OidcClient;
  beforeAll(async () => {
    rp = await OidcClient.connect(settings({ trustAmr: true }));
  });

  it('begins with an authorization URL carrying PKCE S256, state and nonce but not the verifier', async () => {
    const start = await rp.begin();
    const url = new URL(start.url);
    expect(url.origin).toBe(idp.issuer);
    expect(url.searchParams.get('response_type')).toBe('code');
    expect(url.searchParams.get('client_id')).toBe(idp.clientId);
    expect(url.searchParams.get('redirect_uri')).toBe(REDIRECT_URI);
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(url.searchParams.get('state')).toBe(start.state);
    expect(url.searchParams.get('nonce')).toBe(start.nonce);
    expect(url.searchParams.get('scope')?.split(' ').sort()).toEqual(['email', 'groups', 'openid', 'profile']);
    expect(start.url).not.toContain(start.codeVerifier);
    const other = await rp.begin();
    expect(other.state).not.toBe(start.state);
    expect(other.nonce).not.toBe(start.nonce);
    expect(other.codeVerifier).not.toBe(start.codeVerifier);
  });

  it('logs a release manager in with mapped roles, username, email and groups', async () => {
    const start = await rp.begin();
    const callback = await idp.login(start.url, 'alice');
    expect(new URL(callback).searchParams.get('code')).toBeTruthy();
    const who = await rp.complete(callback, start);
    expect(who).toMatchObject({
      issuer: idp.issuer,
      subject: 'alice',
      username: 'alice',
      email: 'alice@example.test',
      emailVerified: true,
      groups: ['release-managers', 'staff'],
      roles: ['release-manager', 'viewer'],
    });
  });

  it('accepts the callback as path and query relative to the redirect URI', async () => {
    const start = await rp.begin();
    const callback = new URL(await idp.login(start.url, 'bob'));
    const who = await rp.complete(`${callback.pathname}${callback.search}`, start);
    expect(who.username).toBe('bob');
    expect(who.roles).toEqual(['developer', 'viewer']);
  });

  it('returns a user with no mapped group with no roles, leaving the decision to the caller', async () => {
    const start = await rp.begin();
    const who = await rp.complete(await idp.login(start.url, 'carol'), start);
    expect(who.groups).toEqual(['unmapped']);
    expect(who.email).toBeUndefined();
    expect(who.emailVerified).toBe(false);
    expect(who.roles).toEqual([]);
    expect(who.mfa).toBe(false);
    expect(who.amr).toEqual([]);
  });

  it('falls back to userinfo when the groups claim is not in the ID token, granting nothing if it is absent there too', async () => {
    const custom = await OidcClient.connect(settings({ groupsClaim: 'departments', usernameClaim: 'email' }));
    const start = await custom.begin();
    const who = await custom.complete(await idp.login(start.url, 'alice'), start);
    expect(who.groups).toEqual([]);
    expect(who.roles).toEqual([]);
    expect(who.username).toBe('alice@example.test');
  });

  it('reports MFA when amr includes otp and amr is trusted', async () => {
    const start = await rp.begin();
    const who = await rp.complete(await idp.login(start.url, 'alice'), start);
    expect(who.amr).toEqual(['pwd', 'otp']);
    expect(who.mfa).toBe(true);
  });

  it('does not report MFA for a password-only amr', async () => {
    const start = await rp.begin();
    const who = await rp.complete(await idp.login(start.url, 'bob'), start);
    expect(who.amr).toEqual(['pwd']);
    expect(who.mfa).toBe(false);
  });

  it('does not report MFA from amr unless trustAmr is set', async () => {
    const untrusting = await OidcClient.connect(settings());
    const start = await untrusting.begin();
    const who = await untrusting.complete(await idp.login(start.url, 'alice'), start);
    expect(who.amr).toContain('otp');
    expect(who.mfa).toBe(false);
  });

  it('honours a custom mfaAmrValues list', async () => {
    const strict = await OidcClient.connect(settings({ trustAmr: true, mfaAmrValues: ['hwk'] }));
    const start = await strict.begin();
    const who = await strict.complete(await idp.login(start.url, 'alice'), start);
    expect(who.mfa).toBe(false);
  });

  describe('attacks are refused with UNAUTHENTICATED', () => {
    it('a callback whose state is not the one saved (login CSRF)', async () => {
      const victim = await rp.begin();
      const attacker = await rp.begin();
      const attackerCallback = await idp.login(attacker.url, 'bob');
      const err = await rejection(rp.complete(attackerCallback, victim));
      expect(err.code).toBe('UNAUTHENTICATED');
      expect(err.details.reason).toBe('state');
      // The attacker's own login still works: refusal was due to the state, not a broken code.
      await expect(rp.complete(attackerCallback, attacker)).resolves.toMatchObject({ subject: 'bob' });
    });

    it('a callback with the state parameter removed', async () => {
      const start = await rp.begin();
      const callback = new URL(await idp.login(start.url, 'alice'));
      callback.searchParams.delete('state');
      const err = await rejection(rp.complete(callback, start));
      expect(err.code).toBe('UNAUTHENTICATED');
      expect(err.details.reason).toBe('state');
    });

    it('a replayed authorization code', async () => {
      const start = await rp.begin();
      const callback = await idp.login(start.url, 'alice');
      await rp.complete(callback, start);
      const err = await rejection(rp.complete(callback, start));
      expect(err.code).toBe('UNAUTHENTICATED');
      expect(err.details.reason).toBe('token');
      expect(err.details.idpError).toBe('invalid_grant');
      expectNoSecrets(err, new URL(callback).searchParams.get('code')!, start.codeVerifier);
    });

    it('a code redeemed with the wrong PKCE verifier (stolen code)', async () => {
      const start = await rp.begin();
      const other = await rp.begin();
      const callback = await idp.login(start.url, 'alice');
      const err = await rejection(rp.complete(callback, { ...start, codeVerifier: other.codeVerifier }));
      expect(err.code).toBe('UNAUTHENTICATED');
      expect(err.details.reason).toBe('token');
      expectNoSecrets(err, new URL(callback).searchParams.get('code')!, start.codeVerifier, other.codeVerifier);
    });

    it('an ID token whose nonce is not the one saved (token injection)', async () => {
      const start = await rp.begin();
      const other = await rp.begin();
      const callback = await idp.login(start.url, 'alice');
      const err = await rejection(rp.complete(callback, { ...start, nonce: other.nonce }));
      expect(err.code).toBe('UNAUTHENTICATED');
      expect(err.details.reason).toBe('nonce');
    });

    it('a callback carrying error=access_denied from the IdP', async () => {
      const start = await rp.begin();
      const callback = await idp.deny(start.url);
      expect(new URL(callback).searchParams.get('error')).toBe('access_denied');
      const err = await rejection(rp.complete(callback, start));
      expect(err.code).toBe('UNAUTHENTICATED');
      expect(err.details.reason).toBe('idp_error');
      expect(err.details.idpError).toBe('access_denied');
    });

    it('a forged error callback without the right state is a state failure, and odd error text is not echoed', async () => {
      const start = await rp.begin();
      const forged = `${REDIRECT_URI}?error=<script>&state=${start.state}`;
      const err = await rejection(rp.complete(forged, start));
      expect(err.details).toEqual({ reason: 'idp_error' });
      const wrongState = await rejection(rp.complete(`${REDIRECT_URI}?error=access_denied&state=nope`, start));
      expect(wrongState.details.reason).toBe('state');
    });

    it('a callback from a different issuer (mix-up, RFC 9207)', async () => {
      const start = await rp.begin();
      const callback = new URL(await idp.login(start.url, 'alice'));
      callback.searchParams.set('iss', 'https://evil.example');
      const err = await rejection(rp.complete(callback, start));
      expect(err.details.reason).toBe('issuer');
    });

    it('a callback without a code', async () => {
      const start = await rp.begin();
      const err = await rejection(rp.complete(`${REDIRECT_URI}?state=${start.state}&iss=${encodeURIComponent(idp.issuer)}`, start));
      expect(err.code).toBe('UNAUTHENTICATED');
      expect(err.details.reason).toBe('callback');
    });

    it('a client whose secret is wrong cannot redeem the code', async () => {
      const impostor = await OidcClient.connect(settings({ clientSecret: 'not-the-secret' }));
      const start = await impostor.begin();
      const callback = await idp.login(start.url, 'alice');
      const err = await rejection(impostor.complete(callback, start));
      expect(err.details.reason).toBe('token');
      expectNoSecrets(err, 'not-the-secret');
    });
  });
});

describe('mapGroupsToRoles', () => {
  const mapping = { ops: ['deployer', 'viewer'], dev: ['developer', 'viewer'], admins: ['admin'] };

  it('ignores unknown groups', () => {
    expect(mapGroupsToRoles(['nobody', 'strangers'], mapping)).toEqual([]);
    expect(mapGroupsToRoles(['nobody', 'admins'], mapping)).toEqual(['admin']);
  });

  it('merges duplicates and sorts', () => {
    expect(mapGroupsToRoles(['ops', 'dev', 'ops'], mapping)).toEqual(['deployer', 'developer', 'viewer']);
  });

  it('does not read inherited properties for groups named like Object.prototype members', () => {
    expect(mapGroupsToRoles(['constructor', '__proto__', 'toString', 'hasOwnProperty'], mapping)).toEqual([]);
  });
});

describe('OidcClient settings', () => {
  it('refuses an http issuer without allowInsecure, naming oidc.issuer', async () => {
    const err = await rejection(OidcClient.connect(settings({ allowInsecure: false, redirectUri: 'https://airlock.example/cb' })));
    expect(err.code).toBe('VALIDATION_FAILED');
    expect(err.message).toContain('oidc.issuer');
    expect(err.details.issues).toEqual([expect.objectContaining({ path: 'oidc.issuer' })]);
  });

  it('reports every bad field at once', async () => {
    const err = await rejection(
      OidcClient.connect({
        issuer: 'not a url',
        clientId: '',
        redirectUri: 'ftp://x/cb',
        scopes: ['profile'],
        roleMapping: { ops: 'admin' as unknown as string[] },
      }),
    );
    const paths = (err.details.issues as { path: string }[]).map((i) => i.path).sort();
    expect(paths).toEqual(['oidc.clientId', 'oidc.issuer', 'oidc.redirectUri', 'oidc.roleMapping.ops', 'oidc.scopes']);
  });

  it('fails to start, naming oidc.issuer, when discovery fails', async () => {
    const err = await rejection(OidcClient.connect(settings({ issuer: 'http://127.0.0.1:9/' })));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.details.setting).toBe('oidc.issuer');
  });
});
