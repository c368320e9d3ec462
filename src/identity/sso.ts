/**
 * OpenID Connect SSO: the IdP proves who the person is; Airlock maps their groups to roles and
 * opens an ordinary session. The in-flight state (state, PKCE verifier, nonce) lives in the
 * database, sealed, so any replica can finish a login another one began.
 */
import { timingSafeEqual } from 'node:crypto';
import { ConflictError, UnauthenticatedError } from '../errors/index.js';
import type { Tx } from '../storage/index.js';
import type { CallContext, IdentityDeps } from './common.js';
import { checkName, iso, newId, record } from './common.js';
import { canonicalEmail, emailHolder } from './email.js';
import type { OidcClient, OidcIdentity } from './oidc.js';
import type { Roles } from './roles.js';
import { replaceRoles } from './roles.js';
import { tokenHash } from './secret-tokens.js';
import type { IssuedSession, Sessions } from './sessions.js';

const LOGIN_TTL_MS = 10 * 60_000;
const verifierAad = (stateHash: string): string => `oidc-login:${stateHash}`;

export class Sso {
  constructor(
    private readonly deps: IdentityDeps,
    /** Connected on first use: an IdP that is down at start-up must not stop the server. */
    private readonly client: () => Promise<OidcClient>,
    private readonly roles: Roles,
    private readonly sessions: Sessions,
  ) {}

  /** Start a login: the URL to send the browser to, and the state the browser must keep. */
  async begin(context: CallContext = {}): Promise<{ url: string; state: string }> {
    const start = await (await this.client()).begin();
    const now = this.deps.clock();
    const stateHash = tokenHash(start.state);
    await this.deps.store.transact(async (tx) => {
      await tx.db.deleteFrom('oidc_logins').where('expires_at', '<', iso(now)).execute();
      await tx.db
        .insertInto('oidc_logins')
        .values({ state_hash: stateHash, verifier_sealed: this.deps.seal.seal(Buffer.from(start.codeVerifier, 'utf8'), verifierAad(stateHash)), nonce: start.nonce, created_at: iso(now), expires_at: iso(new Date(now.getTime() + LOGIN_TTL_MS)) })
        .execute();
      await record(this.deps, tx, { actor: { kind: 'anonymous', id: 'anonymous' }, action: 'auth.oidc.start', resource: 'auth/oidc', context });
    });
    return { url: start.url, state: start.state };
  }

  /**
   * Finish a login from the IdP's redirect. The stored state is spent whatever the outcome.
   * `browserState` is the state the starting browser kept (a cookie set at begin): a callback
   * link finished in another browser is refused (login CSRF, RFC 6749 section 10.12).
   */
  async complete(callbackUrl: URL, browserState: string | undefined, context: CallContext = {}): Promise<IssuedSession> {
    const state = callbackUrl.searchParams.get('state') ?? '';
    const stateHash = tokenHash(state);
    const now = this.deps.clock();
    const deny = async (reason: string): Promise<never> => {
      await this.deps.audit.append({ actor: { kind: 'anonymous', id: 'anonymous' }, action: 'auth.oidc.callback', resource: 'auth/oidc', outcome: 'denied', reason, context });
      throw new UnauthenticatedError('single sign-on failed; start the login again');
    };
    const saved = await this.deps.store.transact(async (tx) => {
      const row = await tx.db.selectFrom('oidc_logins').selectAll().where('state_hash', '=', stateHash).executeTakeFirst();
      if (row !== undefined) await tx.db.deleteFrom('oidc_logins').where('state_hash', '=', stateHash).execute();
      return row;
    });
    if (saved === undefined || state === '') return deny('state_unknown');
    if (browserState === undefined || !sameText(browserState, state)) return deny('state_not_from_this_browser');
    if (Date.parse(saved.expires_at) <= now.getTime()) return deny('state_expired');
    let identity: Awaited<ReturnType<OidcClient['complete']>>;
    try {
      identity = await (await this.client()).complete(callbackUrl, { state, nonce: saved.nonce, codeVerifier: this.deps.seal.open(saved.verifier_sealed, verifierAad(stateHash)).toString('utf8') });
    } catch (err) {
      const reason = err instanceof UnauthenticatedError && typeof err.details.reason === 'string' ? err.details.reason : 'idp_rejected';
      return deny(`oidc_${reason}`);
    }
    let username: string;
    try {
      username = checkName('username', identity.username.toLowerCase());
    } catch {
      return deny('username_invalid');
    }
    const outcome = await this.deps.store.transact(async (tx) => {
      const known = await tx.db.selectFrom('users').selectAll().where('sso_issuer', '=', identity.issuer).where('sso_subject', '=', identity.subject).executeTakeFirst();
      let userId: string;
      if (known === undefined) {
        const clash = await tx.db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirst();
        // Never attach an IdP identity to an existing local account by name: that is account takeover.
        if (clash !== undefined) return { refused: 'username_taken' as const };
        userId = newId();
        await tx.db
          .insertInto('users')
          .values({ id: userId, username, display_name: identity.displayName ?? null, kind: 'sso', password_hash: null, sso_issuer: identity.issuer, sso_subject: identity.subject, created_at: iso(now), created_by: 'sso', disabled_at: null })
          .execute();
      } else {
        if (known.disabled_at !== null) return { refused: 'user_disabled' as const };
        userId = known.id;
      }
      // The IdP's groups are the source of truth for SSO users' roles, at every login.
      const roles = (await this.roles.resolve(tx, 'roles', identity.roles)).map((r) => r.name);
      const [added, removed] = await replaceRoles(tx, 'user', userId, roles, 'sso', now);
      const issued = await this.sessions.insertSession(tx, userId, known?.username ?? username, 'sso', now, identity.mfa ? now : undefined, context);
      await record(this.deps, tx, {
        actor: { kind: 'user', id: known?.username ?? username },
        action: 'auth.oidc.callback',
        resource: `users/${known?.username ?? username}`,
        context,
        details: { sessionId: issued.sessionId, issuer: identity.issuer, mfa: identity.mfa, amr: identity.amr, rolesAdded: added, rolesRemoved: removed, created: known === undefined },
      });
      // After the record (see emailHolder): the address that ties commits to this person.
      await this.adoptEmail(tx, userId, known?.username ?? username, identity, context);
      return issued;
    });
    if ('refused' in outcome) {
      if (outcome.refused === 'username_taken') {
        await this.deps.audit.append({ actor: { kind: 'anonymous', id: 'anonymous' }, action: 'auth.oidc.callback', resource: `users/${username}`, outcome: 'denied', reason: 'username_taken', context });
        throw new ConflictError(`a user named ${username} already exists and is not linked to this identity provider`);
      }
      return deny(outcome.refused);
    }
    return outcome;
  }

  /**
   * Take the IdP's address when it vouches for it, at every login. An unverified one is ignored:
   * anyone could claim another person's address and so own their commits. One that belongs to
   * another user is refused without failing the login (the stored address stays) and recorded.
   */
  private async adoptEmail(tx: Tx, userId: string, username: string, identity: OidcIdentity, context: CallContext): Promise<void> {
    const email = identity.emailVerified ? canonicalEmail(identity.email) : undefined;
    if (email === undefined) return;
    const { email: stored } = await tx.db.selectFrom('users').select('email').where('id', '=', userId).executeTakeFirstOrThrow();
    if (email === stored) return;
    const entry = { actor: { kind: 'system' as const, id: 'sso' }, action: 'users.email.update', resource: `users/${username}`, context, details: { from: stored, to: email, issuer: identity.issuer } };
    if ((await emailHolder(tx, email, userId)) !== undefined) {
      await record(this.deps, tx, { ...entry, outcome: 'denied', reason: 'email_in_use' });
      return;
    }
    await tx.db.updateTable('users').set({ email }).where('id', '=', userId).execute();
    await record(this.deps, tx, entry);
  }
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}
