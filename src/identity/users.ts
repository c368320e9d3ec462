/**
 * People: created by an admin (or by `airlock init` for the first admin), never with a default
 * password. A new user gets a one-time setup token; with it they choose their own password and
 * enrol TOTP, and only then can they log in.
 */
import { Secret } from 'otpauth';
import { AirlockError, ConflictError, ForbiddenError, NotFoundError, UnauthenticatedError, ValidationError } from '../errors/index.js';
import type { Tx } from '../storage/index.js';
import type { Actor, CallContext, IdentityDeps } from './common.js';
import { checkName, iso, newId, record } from './common.js';
import { checkEmail, emailHolder } from './email.js';
import { checkPasswordPolicy, hashPassword } from './passwords.js';
import { hashRecoveryCode, newRecoveryCodes } from './recovery-codes.js';
import type { Roles } from './roles.js';
import { replaceRoles, rolesOf } from './roles.js';
import { newSetupToken, tokenHash } from './secret-tokens.js';
import { newTotpSecret, totpUri, verifyTotp } from './totp.js';

export const SETUP_TOKEN_TTL_MS = 24 * 60 * 60_000;

export interface UserInfo {
  readonly id: string;
  readonly username: string;
  readonly displayName: string | null;
  /** The address this person commits with (lower case), unique among users; null when unknown. */
  readonly email: string | null;
  readonly kind: 'local' | 'sso';
  readonly roles: readonly string[];
  readonly mfaEnrolled: boolean;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly disabledAt: string | null;
}

/** A person as segregation of duties sees them: their username and the git identities that are theirs. */
export interface Person {
  readonly id: string;
  /** Lower-case e-mail addresses (commit author and committer identities). */
  readonly identities: readonly string[];
}

export interface NewUser {
  readonly user: UserInfo;
  /** Shown once; only its hash is stored. */
  readonly setupToken: string;
  readonly setupExpiresAt: string;
}

export interface TotpEnrolment {
  readonly otpauthUri: string;
  /** The seed in base32 for manual entry (shown once, during enrolment only). */
  readonly secret: string;
}

/** AAD binding a sealed TOTP seed to its user: a sealed seed copied to another row will not open. */
export const totpAad = (userId: string): string => `totp:${userId}`;

/** What setup refuses, with the same answer for every reason (a setup token is a credential). */
const badSetup = (): UnauthenticatedError => new UnauthenticatedError('the username or setup token is invalid, used or expired');

export class Users {
  constructor(
    private readonly deps: IdentityDeps,
    private readonly roles: Roles,
    private readonly totpIssuer: string,
  ) {}

  /**
   * First admin of a fresh installation. Refused once any admin exists, so `init` cannot be
   * used to mint a second admin later.
   */
  async init(actor: Actor, input: { username: string; displayName?: string | undefined }, context?: CallContext): Promise<NewUser> {
    return this.deps.store.transact(async (tx) => {
      await this.roles.ensureBuiltins(tx);
      if (await this.hasAdmin(tx.db)) throw new ConflictError('this installation is already initialised (an admin exists); ask an admin to create your account');
      const made = await this.insertUser(tx, actor, { username: input.username, displayName: input.displayName, roles: ['admin'] });
      await record(this.deps, tx, { actor, action: 'identity.init', resource: `users/${made.user.username}`, context, details: { roles: ['admin'] } });
      return made;
    });
  }

  async create(actor: Actor, input: { username: string; displayName?: string | undefined; email?: string | null | undefined; roles: readonly string[] }, context?: CallContext): Promise<NewUser> {
    const email = input.email === undefined || input.email === null ? null : checkEmail('email', input.email);
    return this.deps.store.transact(async (tx) => {
      const made = await this.insertUser(tx, actor, { ...input, email });
      await record(this.deps, tx, { actor, action: 'users.create', resource: `users/${made.user.username}`, context, details: { roles: [...made.user.roles], email } });
      // After the record: see emailHolder. A refusal here undoes the insert and its record.
      if (email !== null) await this.refuseTakenEmail(tx, email, made.user.id);
      return made;
    });
  }

  private async insertUser(tx: Tx, actor: Actor, input: { username: string; displayName?: string | undefined; email?: string | null; roles: readonly string[] }): Promise<NewUser> {
    const username = checkName('username', input.username);
    const email = input.email ?? null;
    const displayName = input.displayName?.trim() ?? null;
    if (displayName !== null && (displayName === '' || displayName.length > 200)) {
      throw new ValidationError('displayName must be 1-200 characters', [{ path: 'displayName', message: 'must be 1-200 characters' }]);
    }
    const roles = (await this.roles.resolve(tx, 'roles', input.roles)).map((r) => r.name);
    const taken = await tx.db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirst();
    if (taken !== undefined) throw new ConflictError(`user ${username} already exists`, { username });
    const now = this.deps.clock();
    const id = newId();
    await tx.db
      .insertInto('users')
      .values({ id, username, display_name: displayName, email, kind: 'local', password_hash: null, sso_issuer: null, sso_subject: null, created_at: iso(now), created_by: actor.id, disabled_at: null })
      .execute();
    await replaceRoles(tx, 'user', id, roles, actor.id, now);
    const setupToken = newSetupToken();
    const expires = new Date(now.getTime() + SETUP_TOKEN_TTL_MS);
    await tx.db.insertInto('setup_tokens').values({ token_hash: tokenHash(setupToken), user_id: id, created_at: iso(now), expires_at: iso(expires), used_at: null }).execute();
    return {
      user: { id, username, displayName, email, kind: 'local', roles, mfaEnrolled: false, createdAt: iso(now), createdBy: actor.id, disabledAt: null },
      setupToken,
      setupExpiresAt: iso(expires),
    };
  }

  /** Whether any user holds the admin role (the server hints at `airlock init` otherwise). */
  async hasAdmin(db: Tx['db'] = this.deps.store.db): Promise<boolean> {
    const row = await db.selectFrom('principal_roles').select('principal_id').where('role', '=', 'admin').where('principal_kind', '=', 'user').executeTakeFirst();
    return row !== undefined;
  }

  async list(): Promise<UserInfo[]> {
    const rows = await this.deps.store.db.selectFrom('users').leftJoin('mfa_totp', 'mfa_totp.user_id', 'users.id').selectAll('users').select('mfa_totp.confirmed_at').orderBy('username').execute();
    const roleRows = await this.deps.store.db.selectFrom('principal_roles').select(['principal_id', 'role']).where('principal_kind', '=', 'user').orderBy('role').execute();
    return rows.map((r) => ({
      id: r.id,
      username: r.username,
      displayName: r.display_name,
      email: r.email,
      kind: r.kind === 'sso' ? 'sso' : 'local',
      roles: roleRows.filter((x) => x.principal_id === r.id).map((x) => x.role),
      mfaEnrolled: r.confirmed_at !== null,
      createdAt: r.created_at,
      createdBy: r.created_by,
      disabledAt: r.disabled_at,
    }));
  }

  async get(username: string): Promise<UserInfo> {
    const found = (await this.list()).find((u) => u.username === username);
    if (found === undefined) throw new NotFoundError(`no user named ${username}`, { username });
    return found;
  }

  /** Disable a user and revoke every session they hold, in one transaction. */
  async disable(actor: Actor, username: string, context?: CallContext): Promise<UserInfo> {
    await this.deps.store.transact(async (tx) => {
      const user = await tx.db.selectFrom('users').select(['id', 'disabled_at']).where('username', '=', username).executeTakeFirst();
      if (user === undefined) throw new NotFoundError(`no user named ${username}`, { username });
      if (user.disabled_at !== null) throw new ConflictError(`user ${username} is already disabled`, { username });
      const now = iso(this.deps.clock());
      await tx.db.updateTable('users').set({ disabled_at: now }).where('id', '=', user.id).execute();
      const revoked = await tx.db.updateTable('sessions').set({ revoked_at: now, revoked_reason: 'user_disabled' }).where('user_id', '=', user.id).where('revoked_at', 'is', null).executeTakeFirst();
      await record(this.deps, tx, { actor, action: 'users.disable', resource: `users/${username}`, context, details: { sessionsRevoked: Number(revoked.numUpdatedRows) } });
    });
    return this.get(username);
  }

  /** Replace a user's roles (the policy forbids doing it to yourself; admin + step-up). */
  async setRoles(actor: Actor, username: string, roles: readonly string[], context?: CallContext): Promise<UserInfo> {
    await this.deps.store.transact(async (tx) => {
      const user = await tx.db.selectFrom('users').select(['id']).where('username', '=', username).executeTakeFirst();
      if (user === undefined) throw new NotFoundError(`no user named ${username}`, { username });
      const resolved = await this.roles.resolve(tx, 'roles', roles);
      const [added, removed] = await replaceRoles(tx, 'user', user.id, resolved.map((r) => r.name), actor.id, this.deps.clock());
      await record(this.deps, tx, { actor, action: 'users.roles.update', resource: `users/${username}`, context, details: { added, removed } });
    });
    return this.get(username);
  }

  /**
   * Set (or with null clear) the address a person commits with. Never on yourself: the address
   * decides which commits are yours, and unmapping it would let an author approve their own
   * change (segregation of duties). The policy refuses it too (`no-self-role-change`); this
   * check holds whatever policy set is in force, and the refusal is recorded.
   */
  async setEmail(actor: Actor, username: string, email: string | null, context?: CallContext): Promise<UserInfo> {
    const next = email === null ? null : checkEmail('email', email);
    const selfChange = await this.deps.store.transact(async (tx) => {
      const user = await tx.db.selectFrom('users').select(['id', 'email']).where('username', '=', username).executeTakeFirst();
      if (user === undefined) throw new NotFoundError(`no user named ${username}`, { username });
      const entry = { actor, action: 'users.email.update', resource: `users/${username}`, context, details: { from: user.email, to: next } };
      if (actor.kind === 'user' && actor.id === username) {
        await record(this.deps, tx, { ...entry, outcome: 'denied', reason: 'self_change' });
        return true;
      }
      await record(this.deps, tx, entry);
      // Read again under the lock the record took: `from` must be what this change replaced.
      const current = await tx.db.selectFrom('users').select('email').where('id', '=', user.id).executeTakeFirstOrThrow();
      if (current.email !== user.email) throw new ConflictError(`the e-mail address of ${username} changed meanwhile; read it again and retry`, { username });
      if (next !== null) await this.refuseTakenEmail(tx, next, user.id);
      await tx.db.updateTable('users').set({ email: next }).where('id', '=', user.id).execute();
      return false;
    });
    if (selfChange) throw new ForbiddenError('nobody changes their own e-mail address (it decides which commits are theirs); another admin must', { username });
    return this.get(username);
  }

  /**
   * Every enabled user and the git identities (e-mail addresses) that are theirs, for
   * segregation of duties. `db` lets a caller read inside its own transaction.
   */
  async people(db: Tx['db'] = this.deps.store.db): Promise<Person[]> {
    const rows = await db.selectFrom('users').select(['username', 'email']).where('disabled_at', 'is', null).orderBy('username').execute();
    return rows.map((r) => ({ id: r.username, identities: r.email === null ? [] : [r.email] }));
  }

  private async refuseTakenEmail(tx: Tx, email: string, userId: string): Promise<void> {
    if ((await emailHolder(tx, email, userId)) !== undefined) {
      throw new ConflictError('email is already the address of another user (one address identifies one person)', { field: 'email' });
    }
  }

  /**
   * Setup, step 1: prove the setup token, choose a password, receive a TOTP seed to enrol.
   * Repeatable until confirmed (a lost phone during setup just starts again).
   */
  async beginSetup(input: { username: string; setupToken: string; password: string }, context?: CallContext): Promise<TotpEnrolment> {
    checkPasswordPolicy(input.password);
    const passwordHash = await hashPassword(input.password);
    const secret = newTotpSecret();
    const outcome = await this.deps.store.transact(async (tx) => {
      const user = await this.checkSetupToken(tx, input.username, input.setupToken);
      if (user === undefined) {
        await record(this.deps, tx, { actor: { kind: 'anonymous', id: 'anonymous' }, action: 'auth.setup', resource: 'auth/setup', outcome: 'denied', reason: 'setup_token_invalid', context });
        return undefined;
      }
      const now = iso(this.deps.clock());
      await tx.db.updateTable('users').set({ password_hash: passwordHash }).where('id', '=', user.id).execute();
      await tx.db.deleteFrom('mfa_totp').where('user_id', '=', user.id).execute();
      await tx.db.insertInto('mfa_totp').values({ user_id: user.id, seed_sealed: this.deps.seal.seal(secret, totpAad(user.id)), confirmed_at: null, last_step: 0, created_at: now }).execute();
      await record(this.deps, tx, { actor: { kind: 'user', id: user.username }, action: 'auth.setup.password', resource: `users/${user.username}`, context });
      return user;
    });
    if (outcome === undefined) throw badSetup();
    return { otpauthUri: totpUri(secret, outcome.username, this.totpIssuer), secret: base32(secret) };
  }

  /** Setup, step 2: prove a first TOTP code; the setup token is spent and recovery codes issued. */
  async confirmSetup(input: { username: string; setupToken: string; code: string }, context?: CallContext): Promise<{ recoveryCodes: string[] }> {
    const codes = newRecoveryCodes();
    const outcome = await this.deps.store.transact(async (tx): Promise<string | undefined> => {
      const user = await this.checkSetupToken(tx, input.username, input.setupToken);
      const deny = async (reason: string) => {
        await record(this.deps, tx, { actor: { kind: 'anonymous', id: 'anonymous' }, action: 'auth.setup', resource: 'auth/setup', outcome: 'denied', reason, context });
        return reason;
      };
      if (user === undefined) return deny('setup_token_invalid');
      const totp = await tx.db.selectFrom('mfa_totp').selectAll().where('user_id', '=', user.id).executeTakeFirst();
      if (totp === undefined || user.password_hash === null) return deny('setup_not_started');
      const check = verifyTotp(this.deps.seal.open(totp.seed_sealed, totpAad(user.id)), input.code, totp.last_step, this.deps.clock());
      if (!check.ok) return deny(`totp_${check.reason}`);
      const now = iso(this.deps.clock());
      const spent = await tx.db.updateTable('setup_tokens').set({ used_at: now }).where('token_hash', '=', tokenHash(input.setupToken)).where('used_at', 'is', null).executeTakeFirst();
      if (Number(spent.numUpdatedRows) !== 1) return deny('setup_token_invalid');
      await tx.db.updateTable('mfa_totp').set({ confirmed_at: now, last_step: check.step }).where('user_id', '=', user.id).execute();
      await tx.db.deleteFrom('recovery_codes').where('user_id', '=', user.id).execute();
      for (const c of codes) await tx.db.insertInto('recovery_codes').values({ user_id: user.id, code_hash: hashRecoveryCode(c), used_at: null }).execute();
      await record(this.deps, tx, { actor: { kind: 'user', id: user.username }, action: 'auth.setup.mfa', resource: `users/${user.username}`, context, details: { recoveryCodes: codes.length } });
      return undefined;
    });
    if (outcome === 'setup_not_started') throw new AirlockError('VALIDATION_FAILED', 'choose a password first (setup step 1), then confirm a TOTP code', { issues: [{ path: 'code', message: 'setup not started' }] });
    if (outcome === 'totp_wrong' || outcome === 'totp_malformed' || outcome === 'totp_replayed') {
      throw new ValidationError('the TOTP code is not valid for this enrolment; check the device clock and enter the current code', [{ path: 'code', message: 'not valid now' }]);
    }
    if (outcome !== undefined) throw badSetup();
    return { recoveryCodes: codes };
  }

  private async checkSetupToken(tx: Tx, username: string, token: string): Promise<{ id: string; username: string; password_hash: string | null } | undefined> {
    if (typeof token !== 'string' || token === '') return undefined;
    const row = await tx.db
      .selectFrom('setup_tokens')
      .innerJoin('users', 'users.id', 'setup_tokens.user_id')
      .select(['users.id', 'users.username', 'users.password_hash', 'users.disabled_at', 'setup_tokens.expires_at', 'setup_tokens.used_at'])
      .where('setup_tokens.token_hash', '=', tokenHash(token))
      .executeTakeFirst();
    if (row?.username !== username || row.used_at !== null || row.disabled_at !== null) return undefined;
    if (Date.parse(row.expires_at) <= this.deps.clock().getTime()) return undefined;
    return { id: row.id, username: row.username, password_hash: row.password_hash };
  }

  /** Issue a new setup token for a user (admin reset: lost device or forgotten password). */
  async resetSetup(actor: Actor, username: string, context?: CallContext): Promise<{ setupToken: string; setupExpiresAt: string }> {
    return this.deps.store.transact(async (tx) => {
      const user = await tx.db.selectFrom('users').select(['id', 'kind']).where('username', '=', username).executeTakeFirst();
      if (user === undefined) throw new NotFoundError(`no user named ${username}`, { username });
      const now = this.deps.clock();
      // A reset revokes what the old credentials could do: sessions, TOTP, recovery codes.
      await tx.db.updateTable('sessions').set({ revoked_at: iso(now), revoked_reason: 'credentials_reset' }).where('user_id', '=', user.id).where('revoked_at', 'is', null).execute();
      await tx.db.deleteFrom('mfa_totp').where('user_id', '=', user.id).execute();
      await tx.db.deleteFrom('recovery_codes').where('user_id', '=', user.id).execute();
      await tx.db.updateTable('users').set({ password_hash: null }).where('id', '=', user.id).execute();
      const setupToken = newSetupToken();
      const expires = new Date(now.getTime() + SETUP_TOKEN_TTL_MS);
      await tx.db.insertInto('setup_tokens').values({ token_hash: tokenHash(setupToken), user_id: user.id, created_at: iso(now), expires_at: iso(expires), used_at: null }).execute();
      await record(this.deps, tx, { actor, action: 'users.credentials.reset', resource: `users/${username}`, context });
      return { setupToken, setupExpiresAt: iso(expires) };
    });
  }

  /** Roles of a user by id (for building the principal). */
  rolesOf(tx: Tx, userId: string): Promise<string[]> {
    return rolesOf(tx.db, 'user', userId);
  }
}

/** RFC 4648 base32, as authenticator apps expect for manual entry. */
export function base32(bytes: Buffer): string {
  return new Secret({ buffer: Uint8Array.from(bytes).buffer }).base32;
}
