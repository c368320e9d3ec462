/**
 * Machines. A service account holds roles like a person but never a password: it holds API keys
 * (`alk_…`, shown once, stored as SHA-256) that it exchanges for a short-lived JWT. Revoking a key
 * stops its tokens at once, because every request re-checks the key behind the token.
 */
import { ConflictError, NotFoundError, UnauthenticatedError, ValidationError, isAirlockError } from '../errors/index.js';
import type { Actor, CallContext, IdentityDeps } from './common.js';
import { checkName, iso, newId, record } from './common.js';
import type { TokenService, VerifiedServiceToken } from './jwt.js';
import type { ServicePrincipal } from './principal.js';
import type { Roles } from './roles.js';
import { replaceRoles, rolesOf } from './roles.js';
import { newApiKey, parseApiKey, tokenHash } from './secret-tokens.js';

/** The audience of service tokens: this API and nothing else. */
export const API_AUDIENCE = 'airlock-api';

export interface ServiceAccountInfo {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  readonly roles: readonly string[];
  readonly createdAt: string;
  readonly createdBy: string;
  readonly disabledAt: string | null;
}

export interface ApiKeyInfo {
  readonly id: string;
  readonly serviceAccount: string;
  readonly description: string;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly expiresAt: string | null;
  readonly revokedAt: string | null;
  readonly lastUsedAt: string | null;
}

const MAX_KEY_DAYS = 366;

export class ServiceAccounts {
  constructor(
    private readonly deps: IdentityDeps,
    private readonly roles: Roles,
    private readonly tokens: TokenService,
  ) {}

  async create(actor: Actor, input: { name: string; description?: string | undefined; roles: readonly string[] }, context?: CallContext): Promise<ServiceAccountInfo> {
    const name = checkName('name', input.name);
    const description = (input.description ?? '').trim();
    if (description.length > 500) throw new ValidationError('description must be at most 500 characters', [{ path: 'description', message: 'too long' }]);
    return this.deps.store.transact(async (tx) => {
      const resolved = await this.roles.resolve(tx, 'roles', input.roles);
      this.refuseMfaRoles(resolved);
      const taken = await tx.db.selectFrom('service_accounts').select('id').where('name', '=', name).executeTakeFirst();
      if (taken !== undefined) throw new ConflictError(`service account ${name} already exists`, { name });
      const now = this.deps.clock();
      const id = newId();
      await tx.db.insertInto('service_accounts').values({ id, name, description, created_at: iso(now), created_by: actor.id, disabled_at: null }).execute();
      const roles = resolved.map((r) => r.name);
      await replaceRoles(tx, 'service', id, roles, actor.id, now);
      await record(this.deps, tx, { actor, action: 'service-accounts.create', resource: `service-accounts/${name}`, context, details: { roles } });
      return { id, name, description, roles, createdAt: iso(now), createdBy: actor.id, disabledAt: null };
    });
  }

  /** Machines cannot prove MFA, so roles that require it cannot be given to them. */
  private refuseMfaRoles(roles: readonly { name: string; requiresMfa: boolean }[]): void {
    const bad = roles.filter((r) => r.requiresMfa).map((r) => r.name);
    if (bad.length > 0) {
      throw new ValidationError(`role(s) ${bad.join(', ')} require MFA, which a service account cannot provide`, bad.map((b) => ({ path: 'roles', message: `"${b}" requires MFA` })));
    }
  }

  async list(): Promise<ServiceAccountInfo[]> {
    const rows = await this.deps.store.db.selectFrom('service_accounts').selectAll().orderBy('name').execute();
    const roleRows = await this.deps.store.db.selectFrom('principal_roles').select(['principal_id', 'role']).where('principal_kind', '=', 'service').orderBy('role').execute();
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      description: r.description,
      roles: roleRows.filter((x) => x.principal_id === r.id).map((x) => x.role),
      createdAt: r.created_at,
      createdBy: r.created_by,
      disabledAt: r.disabled_at,
    }));
  }

  private async byName(name: string): Promise<ServiceAccountInfo> {
    const found = (await this.list()).find((s) => s.name === name);
    if (found === undefined) throw new NotFoundError(`no service account named ${name}`, { name });
    return found;
  }

  async disable(actor: Actor, name: string, context?: CallContext): Promise<ServiceAccountInfo> {
    const sa = await this.byName(name);
    if (sa.disabledAt !== null) throw new ConflictError(`service account ${name} is already disabled`, { name });
    await this.deps.store.transact(async (tx) => {
      await tx.db.updateTable('service_accounts').set({ disabled_at: iso(this.deps.clock()) }).where('id', '=', sa.id).execute();
      await record(this.deps, tx, { actor, action: 'service-accounts.disable', resource: `service-accounts/${name}`, context });
    });
    return this.byName(name);
  }

  /** A new API key: the full text is returned once and never again. */
  async createKey(actor: Actor, name: string, input: { description?: string | undefined; expiresInDays?: number | undefined }, context?: CallContext): Promise<{ key: string; info: ApiKeyInfo }> {
    const sa = await this.byName(name);
    if (sa.disabledAt !== null) throw new ConflictError(`service account ${name} is disabled`, { name });
    const days = input.expiresInDays;
    if (days !== undefined && (!Number.isInteger(days) || days < 1 || days > MAX_KEY_DAYS)) {
      throw new ValidationError(`expiresInDays must be a whole number of days from 1 to ${MAX_KEY_DAYS}`, [{ path: 'expiresInDays', message: `1-${MAX_KEY_DAYS}` }]);
    }
    const description = (input.description ?? '').trim();
    if (description.length > 500) throw new ValidationError('description must be at most 500 characters', [{ path: 'description', message: 'too long' }]);
    const { id, key } = newApiKey();
    const now = this.deps.clock();
    const expiresAt = days === undefined ? null : iso(new Date(now.getTime() + days * 86_400_000));
    await this.deps.store.transact(async (tx) => {
      await tx.db
        .insertInto('api_keys')
        .values({ id, service_account_id: sa.id, key_hash: tokenHash(key), description, created_at: iso(now), created_by: actor.id, expires_at: expiresAt, revoked_at: null, revoked_by: null, last_used_at: null })
        .execute();
      await record(this.deps, tx, { actor, action: 'service-accounts.keys.create', resource: `service-accounts/${name}/keys/${id}`, context, details: { keyId: id, expiresAt } });
    });
    return { key, info: { id, serviceAccount: name, description, createdAt: iso(now), createdBy: actor.id, expiresAt, revokedAt: null, lastUsedAt: null } };
  }

  async listKeys(name: string): Promise<ApiKeyInfo[]> {
    const sa = await this.byName(name);
    const rows = await this.deps.store.db.selectFrom('api_keys').selectAll().where('service_account_id', '=', sa.id).orderBy('created_at').execute();
    return rows.map((r) => ({ id: r.id, serviceAccount: name, description: r.description, createdAt: r.created_at, createdBy: r.created_by, expiresAt: r.expires_at, revokedAt: r.revoked_at, lastUsedAt: r.last_used_at }));
  }

  async revokeKey(actor: Actor, name: string, keyId: string, context?: CallContext): Promise<ApiKeyInfo> {
    const sa = await this.byName(name);
    await this.deps.store.transact(async (tx) => {
      const row = await tx.db.selectFrom('api_keys').select(['id', 'revoked_at']).where('id', '=', keyId).where('service_account_id', '=', sa.id).executeTakeFirst();
      if (row === undefined) throw new NotFoundError(`service account ${name} has no key ${keyId}`, { keyId });
      if (row.revoked_at !== null) throw new ConflictError(`key ${keyId} is already revoked`, { keyId });
      await tx.db.updateTable('api_keys').set({ revoked_at: iso(this.deps.clock()), revoked_by: actor.id }).where('id', '=', keyId).execute();
      await record(this.deps, tx, { actor, action: 'service-accounts.keys.revoke', resource: `service-accounts/${name}/keys/${keyId}`, context, details: { keyId } });
    });
    const key = (await this.listKeys(name)).find((k) => k.id === keyId);
    if (key === undefined) throw new NotFoundError(`service account ${name} has no key ${keyId}`, { keyId });
    return key;
  }

  /**
   * Exchange an API key for a short-lived JWT. Every attempt is recorded; the answer for an
   * unknown, revoked or expired key is the same.
   */
  async exchange(apiKey: unknown, ttlSeconds: number | undefined, context: CallContext = {}): Promise<{ token: string; expiresAt: string; tokenType: 'Bearer'; serviceAccount: string }> {
    const parsed = typeof apiKey === 'string' ? parseApiKey(apiKey.trim()) : undefined;
    const now = this.deps.clock();
    const row =
      parsed === undefined
        ? undefined
        : await this.deps.store.db
            .selectFrom('api_keys')
            .innerJoin('service_accounts', 'service_accounts.id', 'api_keys.service_account_id')
            .select(['api_keys.id', 'api_keys.expires_at', 'api_keys.revoked_at', 'api_keys.service_account_id', 'service_accounts.name', 'service_accounts.disabled_at'])
            .where('api_keys.key_hash', '=', tokenHash(parsed.key))
            .executeTakeFirst();
    const reason =
      parsed === undefined ? 'key_malformed'
      : row === undefined ? 'key_unknown'
      : row.revoked_at !== null ? 'key_revoked'
      : row.expires_at !== null && Date.parse(row.expires_at) <= now.getTime() ? 'key_expired'
      : row.disabled_at !== null ? 'service_account_disabled'
      : undefined;
    const resource = `service-accounts/${row?.name ?? 'unknown'}`;
    if (reason !== undefined || row === undefined) {
      await this.deps.audit.append({ actor: { kind: 'anonymous', id: 'anonymous' }, action: 'auth.token.exchange', resource, outcome: 'denied', reason: reason ?? 'key_unknown', context, details: { keyId: parsed?.id ?? null } });
      throw new UnauthenticatedError('the API key is invalid, revoked or expired');
    }
    const roles = await rolesOf(this.deps.store.db, 'service', row.service_account_id);
    let minted: Awaited<ReturnType<TokenService['mintServiceToken']>>;
    try {
      minted = await this.tokens.mintServiceToken({ serviceAccountId: row.service_account_id, name: row.name, roles, apiKeyId: row.id, ttlSeconds });
    } catch (err) {
      if (isAirlockError(err) && err.code === 'VALIDATION_FAILED') {
        await this.deps.audit.append({ actor: { kind: 'service', id: row.name }, action: 'auth.token.exchange', resource, outcome: 'failed', reason: 'ttl_invalid', context, details: { keyId: row.id } });
      }
      throw err;
    }
    await this.deps.store.transact(async (tx) => {
      await tx.db.updateTable('api_keys').set({ last_used_at: iso(now) }).where('id', '=', row.id).execute();
      await record(this.deps, tx, { actor: { kind: 'service', id: row.name }, action: 'auth.token.exchange', resource, context, details: { keyId: row.id, tokenId: minted.jti, expiresAt: minted.expiresAt } });
    });
    return { token: minted.token, expiresAt: minted.expiresAt, tokenType: 'Bearer', serviceAccount: row.name };
  }

  /** The principal behind a service JWT, re-checking its key and account (revocation is immediate). */
  async authenticate(token: string): Promise<{ principal: ServicePrincipal } | { reason: string }> {
    let claims: VerifiedServiceToken;
    try {
      claims = await this.tokens.verify(token, { audience: API_AUDIENCE, kind: 'service' });
    } catch (err) {
      const reason = isAirlockError(err) && typeof err.details.reason === 'string' ? `token_${err.details.reason}` : 'token_invalid';
      return { reason };
    }
    return this.principalOf(claims);
  }

  /** The principal of a verified service token: its key and account must still be live. */
  async principalOf(claims: VerifiedServiceToken): Promise<{ principal: ServicePrincipal } | { reason: string }> {
    const keyId = claims.apiKeyId;
    const row = await this.deps.store.db
      .selectFrom('api_keys')
      .innerJoin('service_accounts', 'service_accounts.id', 'api_keys.service_account_id')
      .select(['api_keys.revoked_at', 'api_keys.expires_at', 'service_accounts.id', 'service_accounts.name', 'service_accounts.disabled_at'])
      .where('api_keys.id', '=', keyId)
      .executeTakeFirst();
    if (row === undefined) return { reason: 'key_unknown' };
    if (row.revoked_at !== null) return { reason: 'key_revoked' };
    if (row.disabled_at !== null) return { reason: 'service_account_disabled' };
    if (row.expires_at !== null && Date.parse(row.expires_at) <= this.deps.clock().getTime()) return { reason: 'key_expired' };
    // Roles are read now, not trusted from the token: a role removed takes effect at once.
    const roles = await rolesOf(this.deps.store.db, 'service', row.id);
    return { principal: { kind: 'service', id: row.id, name: row.name, roles, authMethod: 'service-token', apiKeyId: keyId, tokenId: claims.jti } };
  }
}
