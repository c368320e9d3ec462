/**
 * A real OpenID provider (panva's oidc-provider v8) running inside the test process on
 * 127.0.0.1 with an ephemeral port. One confidential client (client_secret_basic, code flow,
 * PKCE S256 required). Login and consent are driven over HTTP by `login()`, the way a browser
 * would: manual redirects, a cookie jar, and form POSTs to the provider's interaction pages.
 *
 * Its own keys, cookie keys, adapter and interaction pages are supplied so that the provider
 * prints none of its development-only warnings.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A test user: which groups and authentication methods the IdP reports. */
export interface TestOidcUser {
  groups: string[];
  amr?: string[];
  email?: string;
  /** The `email_verified` claim sent with `email` (default true); a string tests lax IdPs. */
  emailVerified?: boolean | string;
  name?: string;
}

export interface StartOidcProviderOptions {
  redirectUris: string[];
  users: Record<string, TestOidcUser>;
}

export interface TestOidcProvider {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Log in as `user` at the authorization URL and consent; returns the redirect to the redirect_uri (not followed). */
  login(authorizationUrl: string, user: string): Promise<string>;
  /** The user refuses at the login page; returns the error redirect (error=access_denied) to the redirect_uri. */
  deny(authorizationUrl: string): Promise<string>;
  close(): Promise<void>;
}

// ---- the slice of oidc-provider's (untyped) API this file uses --------------------------------

interface InteractionDetails {
  uid: string;
  prompt: { name: string; details: Record<string, unknown> };
  params: Record<string, unknown>;
  session?: { accountId?: string };
  grantId?: string;
}

interface GrantLike {
  addOIDCScope(scope: string): void;
  addOIDCClaims(claims: string[]): void;
  addResourceScope(indicator: string, scope: string): void;
  save(): Promise<string>;
}

interface GrantStatic {
  new (init: { accountId: string; clientId: string }): GrantLike;
  find(id: string): Promise<GrantLike | undefined>;
}

interface ProviderLike {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
  interactionFinished(req: IncomingMessage, res: ServerResponse, result: Record<string, unknown>, options?: { mergeWithLastSubmission?: boolean }): Promise<void>;
  Grant: GrantStatic;
}

type ProviderConstructor = new (issuer: string, configuration: Record<string, unknown>) => ProviderLike;

// A variable specifier keeps TypeScript from demanding type declarations the package does not ship.
const OIDC_PROVIDER_MODULE: string = 'oidc-provider';

async function loadProvider(): Promise<ProviderConstructor> {
  const mod = (await import(OIDC_PROVIDER_MODULE)) as { default: ProviderConstructor };
  return mod.default;
}

// ---- storage ------------------------------------------------------------------------------------

type Payload = Record<string, unknown>;

/**
 * Per-provider in-memory storage implementing oidc-provider's adapter contract. `consume` marks
 * authorization codes used, which is what makes code replay detectable (RFC 6749 §4.1.2).
 */
class MemoryAdapter {
  constructor(
    private readonly model: string,
    private readonly store: Map<string, { payload: Payload; expiresAt: number }>,
  ) {}

  private key(id: string): string {
    return `${this.model}:${id}`;
  }

  private read(key: string): Payload | undefined {
    const entry = this.store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.store.delete(key);
      return undefined;
    }
    return structuredClone(entry.payload);
  }

  upsert(id: string, payload: Payload, expiresIn: number): Promise<void> {
    const expiresAt = Date.now() + expiresIn * 1000;
    this.store.set(this.key(id), { payload: structuredClone(payload), expiresAt });
    if (this.model === 'Session' && typeof payload.uid === 'string') {
      this.store.set(`sessionUid:${payload.uid}`, { payload: { id }, expiresAt });
    }
    return Promise.resolve();
  }

  find(id: string): Promise<Payload | undefined> {
    return Promise.resolve(this.read(this.key(id)));
  }

  findByUid(uid: string): Promise<Payload | undefined> {
    const ref = this.read(`sessionUid:${uid}`);
    return Promise.resolve(typeof ref?.id === 'string' ? this.read(this.key(ref.id)) : undefined);
  }

  findByUserCode(): Promise<Payload | undefined> {
    return Promise.resolve(undefined);
  }

  consume(id: string): Promise<void> {
    const entry = this.store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
    return Promise.resolve();
  }

  destroy(id: string): Promise<void> {
    this.store.delete(this.key(id));
    return Promise.resolve();
  }

  revokeByGrantId(grantId: string): Promise<void> {
    for (const [key, entry] of this.store) {
      if (entry.payload.grantId === grantId) this.store.delete(key);
    }
    return Promise.resolve();
  }
}

// ---- a browser's cookie jar, enough for one host ------------------------------------------------

class CookieJar {
  private readonly cookies = new Map<string, string>();

  store(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attributes.some((a) => {
        const [k = '', v = ''] = a.split('=').map((x) => x.trim());
        if (k.toLowerCase() === 'max-age') return Number(v) <= 0;
        if (k.toLowerCase() === 'expires') return Date.parse(v) <= Date.now();
        return false;
      });
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

// ---- the provider ------------------------------------------------------------------------------

/** Start an in-process OpenID provider; call `close()` when done. */
export async function startOidcProvider(opts: StartOidcProviderOptions): Promise<TestOidcProvider> {
  const Provider = await loadProvider();
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;
  const clientId = 'airlock-test';
  const clientSecret = randomBytes(32).toString('base64url');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', alg: 'RS256', use: 'sig' };
  const storage = new Map<string, { payload: Payload; expiresAt: number }>();
  const users = opts.users;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: opts.redirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    adapter: (model: string) => new MemoryAdapter(model, storage),
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: {
      // Released with the openid scope so that every ID token carries the login's amr (RFC 8176).
      openid: ['sub', 'amr'],
      profile: ['preferred_username', 'name'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    // Put scope-requested claims (groups, preferred_username) in the ID token itself.
    conformIdTokenClaims: false,
    pkce: { methods: ['S256'], required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    findAccount: (_ctx: unknown, sub: string) => {
      if (!Object.hasOwn(users, sub)) return undefined;
      const user = users[sub]!;
      return {
        accountId: sub,
        claims: () => ({
          sub,
          preferred_username: sub,
          name: user.name ?? sub,
          groups: user.groups,
          ...(user.email === undefined ? {} : { email: user.email, email_verified: user.emailVerified ?? true }),
        }),
      };
    },
    ttl: {
      AccessToken: 600,
      AuthorizationCode: 60,
      IdToken: 600,
      Interaction: 600,
      Session: 600,
      Grant: 600,
    },
    renderError: (ctx: { type: string; body: unknown }, out: Record<string, unknown>) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });

  const providerHandler = provider.callback();
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.startsWith('/interaction/')) {
      handleInteraction(provider, users, req, res).catch((err: unknown) => {
        if (!res.headersSent) {
          res.statusCode = 500;
          res.setHeader('content-type', 'text/plain');
        }
        res.end(err instanceof Error ? err.message : 'interaction failed');
      });
    } else {
      providerHandler(req, res);
    }
  });

  const drive = async (authorizationUrl: string, action: { user: string } | 'deny'): Promise<string> => {
    const jar = new CookieJar();
    const issuerOrigin = new URL(issuer).origin;
    const isRedirectUri = (url: URL): boolean => opts.redirectUris.some((r) => {
      const target = new URL(r);
      return target.origin === url.origin && target.pathname === url.pathname;
    });
    let next = new URL(authorizationUrl);
    for (let hop = 0; hop < 20; hop++) {
      if (isRedirectUri(next)) return next.href;
      if (next.origin !== issuerOrigin) throw new Error(`test IdP: unexpected redirect to ${next.origin}${next.pathname}`);
      const page = await fetch(next, { redirect: 'manual', headers: { cookie: jar.header() } });
      jar.store(page);
      const location = page.headers.get('location');
      if (page.status >= 300 && page.status < 400 && location) {
        await page.body?.cancel();
        next = new URL(location, next);
        continue;
      }
      if (page.status !== 200 || !next.pathname.startsWith('/interaction/')) {
        throw new Error(`test IdP: ${page.status} at ${next.pathname}: ${await page.text()}`);
      }
      const { prompt } = (await page.json()) as { prompt: string };
      let form: URLSearchParams;
      let step: string;
      if (action === 'deny') {
        step = 'abort';
        form = new URLSearchParams();
      } else if (prompt === 'login') {
        step = 'login';
        form = new URLSearchParams({ login: action.user, password: 'any' });
      } else if (prompt === 'consent') {
        step = 'confirm';
        form = new URLSearchParams();
      } else {
        throw new Error(`test IdP: unexpected prompt ${prompt}`);
      }
      const submitted = await fetch(new URL(`${next.pathname}/${step}`, next), {
        method: 'POST',
        redirect: 'manual',
        headers: { cookie: jar.header(), 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
      });
      jar.store(submitted);
      const after = submitted.headers.get('location');
      if (submitted.status !== 303 || !after) {
        throw new Error(`test IdP: ${step} answered ${submitted.status}: ${await submitted.text()}`);
      }
      await submitted.body?.cancel();
      next = new URL(after, next);
    }
    throw new Error('test IdP: too many redirects');
  };

  return {
    issuer,
    clientId,
    clientSecret,
    login: (authorizationUrl, user) => drive(authorizationUrl, { user }),
    deny: (authorizationUrl) => drive(authorizationUrl, 'deny'),
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** The provider's login and consent pages: GET describes the prompt, POST answers it. */
async function handleInteraction(
  provider: ProviderLike,
  users: Record<string, TestOidcUser>,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  const [, , uid, step] = path.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');

  if (req.method === 'GET' && step === undefined) {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ uid: details.uid, prompt: details.prompt.name, client_id: details.params.client_id }));
    return;
  }
  if (req.method !== 'POST') {
    res.statusCode = 405;
    res.end();
    return;
  }
  const form = new URLSearchParams(await readBody(req));

  switch (step) {
    case 'login': {
      const login = form.get('login') ?? '';
      if (details.prompt.name !== 'login' || !Object.hasOwn(users, login)) {
        res.statusCode = 400;
        res.end('unknown user or no login prompt');
        return;
      }
      const amr = users[login]!.amr;
      await provider.interactionFinished(req, res, { login: { accountId: login, ...(amr ? { amr } : {}) } }, { mergeWithLastSubmission: false });
      return;
    }
    case 'confirm': {
      const accountId = details.session?.accountId;
      const clientId = details.params.client_id;
      if (details.prompt.name !== 'consent' || accountId === undefined || typeof clientId !== 'string') {
        res.statusCode = 400;
        res.end('no consent prompt');
        return;
      }
      const grant = (details.grantId ? await provider.Grant.find(details.grantId) : undefined) ?? new provider.Grant({ accountId, clientId });
      const missing = details.prompt.details;
      if (Array.isArray(missing.missingOIDCScope)) grant.addOIDCScope((missing.missingOIDCScope as string[]).join(' '));
      if (Array.isArray(missing.missingOIDCClaims)) grant.addOIDCClaims(missing.missingOIDCClaims as string[]);
      const resourceScopes = missing.missingResourceScopes;
      if (typeof resourceScopes === 'object' && resourceScopes !== null) {
        for (const [indicator, scopes] of Object.entries(resourceScopes as Record<string, string[]>)) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
      }
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { consent: details.grantId ? {} : { grantId } }, { mergeWithLastSubmission: true });
      return;
    }
    case 'abort':
      await provider.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: 'End-User aborted interaction' },
        { mergeWithLastSubmission: false },
      );
      return;
    default:
      res.statusCode = 404;
      res.end();
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
