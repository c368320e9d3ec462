/**
 * Sessions for people. Login is password + TOTP (or a one-time recovery code). The token is 256
 * random bits, stored only as its SHA-256; it is rotated at login and at step-up and revoked at
 * logout. Every attempt, good or bad, is recorded with its reason; the caller always gets the
 * same answer for an unknown user, a wrong password and a wrong code (no enumeration).
 */
import { TooManyAttemptsError, UnauthenticatedError } from '../errors/index.js';
import type { Tx } from '../storage/index.js';
import type { CallContext, IdentityDeps } from './common.js';
import { iso, newId, record, recordableName } from './common.js';
import { verifyAgainstDummy, verifyPassword } from './passwords.js';
import type { UserPrincipal } from './principal.js';
import { hashRecoveryCode } from './recovery-codes.js';
import { ACCOUNT_RULE, SOURCE_RULE, accountKey, clearFailures, lockedFor, recordFailure, sourceKey } from './throttle.js';
import { csrfTokenFor, newSessionToken, tokenHash } from './secret-tokens.js';
import { verifyTotp } from './totp.js';
import { totpAad } from './users.js';

export interface SessionSettings {
  readonly idleMs: number;
  readonly maxMs: number;
}

/** How long a step-up (or login) MFA proof counts as fresh for sensitive actions. */
export const STEP_UP_WINDOW_MS = 5 * 60_000;

/** Touch last_seen_at at most this often: idle expiry is coarse, and a write per request is not free. */
const TOUCH_EVERY_MS = 60_000;

export interface IssuedSession {
  /** Shown to the client once (cookie or bearer); only its hash is stored. */
  readonly token: string;
  readonly csrfToken: string;
  readonly sessionId: string;
  readonly username: string;
  readonly expiresAt: string;
  readonly idleExpiresAt: string;
}

export interface LoginInput {
  readonly username: unknown;
  readonly password: unknown;
  /** A TOTP code, or a recovery code. */
  readonly code: unknown;
}

const GENERIC = (): UnauthenticatedError => new UnauthenticatedError('invalid username, password or code');

export class Sessions {
  constructor(
    private readonly deps: IdentityDeps,
    private readonly settings: SessionSettings,
  ) {}

  async login(input: LoginInput, context: CallContext = {}): Promise<IssuedSession> {
    const now = this.deps.clock();
    const username = typeof input.username === 'string' ? input.username.trim().toLowerCase() : '';
    const password = typeof input.password === 'string' ? input.password : '';
    const code = typeof input.code === 'string' ? input.code.trim() : '';
    const keys = [accountKey(username), ...(context.sourceAddress === undefined ? [] : [sourceKey(context.sourceAddress)])];
    const actorName = recordableName(username);
    const actor = { kind: 'anonymous' as const, id: 'anonymous' };
    const resource = `users/${actorName}`;

    const wait = await lockedFor(this.deps.store.db, keys, now);
    if (wait > 0) {
      // Recorded, and not even checked: a locked account does not become an oracle.
      await this.deps.audit.append({ actor, action: 'auth.login', resource, outcome: 'denied', reason: 'throttled', context, details: { username: actorName, retryAfterSeconds: wait } });
      throw new TooManyAttemptsError(wait);
    }

    // The expensive hash runs outside the write transaction, and for unknown users too.
    const user = await this.deps.store.db.selectFrom('users').selectAll().where('username', '=', username).executeTakeFirst();
    const passwordOk = user?.password_hash != null ? await verifyPassword(user.password_hash, password) : await verifyAgainstDummy(password);

    const result = await this.deps.store.transact(async (tx): Promise<{ reason: string } | IssuedSession> => {
      const fail = async (reason: string) => {
        await recordFailure(tx, keys[0] ?? accountKey(username), ACCOUNT_RULE, now);
        if (keys[1] !== undefined) await recordFailure(tx, keys[1], SOURCE_RULE, now);
        await record(this.deps, tx, { actor, action: 'auth.login', resource, outcome: 'denied', reason, context, details: { username: actorName } });
        return { reason };
      };
      if (user === undefined) return fail('unknown_user');
      if (!passwordOk) return fail('bad_password');
      if (user.disabled_at !== null) return fail('user_disabled');
      if (user.kind !== 'local') return fail('not_a_local_user');
      const mfa = await this.checkSecondFactor(tx, user.id, code, now);
      if (mfa !== 'ok') return fail(mfa);
      await clearFailures(tx, keys[0] ?? accountKey(username));
      const issued = await this.insertSession(tx, user.id, user.username, 'password', now, now, context);
      await record(this.deps, tx, { actor: { kind: 'user', id: user.username }, action: 'auth.login', resource, context, details: { sessionId: issued.sessionId, via: 'password+totp' } });
      return issued;
    });
    if ('reason' in result) throw GENERIC();
    return result;
  }

  /** 'ok' or the (recordable) reason the code was refused. A code is used at most once. */
  private async checkSecondFactor(tx: Tx, userId: string, code: string, now: Date): Promise<string> {
    const totp = await tx.db.selectFrom('mfa_totp').selectAll().where('user_id', '=', userId).executeTakeFirst();
    if (totp?.confirmed_at == null) return 'mfa_not_enrolled';
    if (/^\d{6}$/.test(code.replace(/\s/g, ''))) {
      const check = verifyTotp(this.deps.seal.open(totp.seed_sealed, totpAad(userId)), code, totp.last_step, now);
      if (!check.ok) return `totp_${check.reason}`;
      // Conditional update: two concurrent logins with one code cannot both win (replay, RFC 6238 5.2).
      const moved = await tx.db.updateTable('mfa_totp').set({ last_step: check.step }).where('user_id', '=', userId).where('last_step', '<', check.step).executeTakeFirst();
      return Number(moved.numUpdatedRows) === 1 ? 'ok' : 'totp_replayed';
    }
    if (code === '') return 'totp_missing';
    const used = await tx.db.updateTable('recovery_codes').set({ used_at: iso(now) }).where('user_id', '=', userId).where('code_hash', '=', hashRecoveryCode(code)).where('used_at', 'is', null).executeTakeFirst();
    return Number(used.numUpdatedRows) === 1 ? 'ok' : 'recovery_code_invalid';
  }

  /** A new session row; `mfaAt` is when MFA was last proved (undefined: never in this session). */
  async insertSession(tx: Tx, userId: string, username: string, method: string, now: Date, mfaAt: Date | undefined, context: CallContext): Promise<IssuedSession> {
    const token = newSessionToken();
    const sessionId = newId();
    const expires = new Date(now.getTime() + this.settings.maxMs);
    await tx.db
      .insertInto('sessions')
      .values({
        id: sessionId,
        token_hash: tokenHash(token),
        user_id: userId,
        auth_method: method,
        created_at: iso(now),
        last_seen_at: iso(now),
        expires_at: iso(expires),
        mfa_at: mfaAt === undefined ? null : iso(mfaAt),
        source_address: context.sourceAddress ?? null,
        revoked_at: null,
        revoked_reason: null,
      })
      .execute();
    return { token, csrfToken: csrfTokenFor(token), sessionId, username, expiresAt: iso(expires), idleExpiresAt: iso(new Date(Math.min(expires.getTime(), now.getTime() + this.settings.idleMs))) };
  }

  /**
   * The principal for a session token, or undefined with the reason (expired, revoked, ...).
   * Never throws for a bad token: the enforcement point answers 401 and records the reason.
   */
  async authenticate(token: string): Promise<{ principal: UserPrincipal } | { reason: string }> {
    const now = this.deps.clock();
    // One query for the session, its user and the user's roles: this runs on every request.
    const rows = await this.deps.store.db
      .selectFrom('sessions')
      .innerJoin('users', 'users.id', 'sessions.user_id')
      .leftJoin('principal_roles', (j) => j.onRef('principal_roles.principal_id', '=', 'sessions.user_id').on('principal_roles.principal_kind', '=', 'user'))
      .select(['sessions.id', 'sessions.user_id', 'sessions.auth_method', 'sessions.last_seen_at', 'sessions.expires_at', 'sessions.mfa_at', 'sessions.revoked_at', 'users.username', 'users.disabled_at', 'principal_roles.role'])
      .where('sessions.token_hash', '=', tokenHash(token))
      .execute();
    const row = rows[0];
    if (row === undefined) return { reason: 'session_unknown' };
    if (row.revoked_at !== null) return { reason: 'session_revoked' };
    if (row.disabled_at !== null) return { reason: 'user_disabled' };
    if (Date.parse(row.expires_at) <= now.getTime()) return { reason: 'session_expired' };
    const lastSeen = Date.parse(row.last_seen_at);
    if (lastSeen + this.settings.idleMs <= now.getTime()) return { reason: 'session_idle_expired' };
    if (now.getTime() - lastSeen >= TOUCH_EVERY_MS) {
      await this.deps.store.transact(async (tx) => {
        await tx.db.updateTable('sessions').set({ last_seen_at: iso(now) }).where('id', '=', row.id).execute();
      });
    }
    const roles = rows.flatMap((r) => (r.role === null ? [] : [r.role])).sort();
    return {
      principal: {
        kind: 'user',
        id: row.user_id,
        name: row.username,
        roles,
        authMethod: 'session',
        sessionId: row.id,
        mfaAt: row.mfa_at === null ? undefined : new Date(row.mfa_at),
        loginMethod: row.auth_method,
      },
    };
  }

  /**
   * Step-up: a fresh TOTP (or recovery) code inside a valid session. The old token is revoked and
   * a new one issued (session fixation defence), carrying the new MFA time.
   */
  async stepUp(principal: UserPrincipal, code: unknown, context: CallContext = {}): Promise<IssuedSession> {
    const now = this.deps.clock();
    const text = typeof code === 'string' ? code.trim() : '';
    const result = await this.deps.store.transact(async (tx): Promise<{ reason: string } | IssuedSession> => {
      const actor = { kind: 'user' as const, id: principal.name };
      const check = await this.checkSecondFactor(tx, principal.id, text, now);
      if (check !== 'ok') {
        await recordFailure(tx, accountKey(principal.name), ACCOUNT_RULE, now);
        await record(this.deps, tx, { actor, action: 'auth.stepup', resource: `users/${principal.name}`, outcome: 'denied', reason: check, context, details: { sessionId: principal.sessionId } });
        return { reason: check };
      }
      const old = await tx.db.selectFrom('sessions').select(['auth_method']).where('id', '=', principal.sessionId).executeTakeFirstOrThrow();
      await tx.db.updateTable('sessions').set({ revoked_at: iso(now), revoked_reason: 'rotated_at_step_up' }).where('id', '=', principal.sessionId).execute();
      const issued = await this.insertSession(tx, principal.id, principal.name, old.auth_method, now, now, context);
      await record(this.deps, tx, { actor, action: 'auth.stepup', resource: `users/${principal.name}`, context, details: { previousSessionId: principal.sessionId, sessionId: issued.sessionId } });
      return issued;
    });
    if ('reason' in result) throw new UnauthenticatedError('the code is invalid or was already used');
    return result;
  }

  /** Revoke the session (idempotent). */
  async logout(principal: UserPrincipal, context: CallContext = {}): Promise<void> {
    await this.deps.store.transact(async (tx) => {
      await tx.db.updateTable('sessions').set({ revoked_at: iso(this.deps.clock()), revoked_reason: 'logout' }).where('id', '=', principal.sessionId).where('revoked_at', 'is', null).execute();
      await record(this.deps, tx, { actor: { kind: 'user', id: principal.name }, action: 'auth.logout', resource: `users/${principal.name}`, context, details: { sessionId: principal.sessionId } });
    });
  }
}
