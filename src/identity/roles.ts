/** Roles: the five built-in job functions, the machine role `runner`, and custom ones. Permissions live in Cedar policies. */
import { ConflictError, ValidationError } from '../errors/index.js';
import type { Tx } from '../storage/index.js';
import type { Actor, CallContext, IdentityDeps } from './common.js';
import { checkName, iso, record } from './common.js';

export interface RoleInfo {
  readonly name: string;
  readonly description: string;
  readonly builtin: boolean;
  readonly requiresMfa: boolean;
}

/**
 * Built-in roles. requiresMfa: the role can approve or deploy to a protected environment, read
 * secret values, or change roles or policies, so its holders must have MFA (issue 3).
 */
export const BUILTIN_ROLE_INFO: readonly RoleInfo[] = [
  { name: 'developer', description: 'pushes changes: runs pipelines, reads runs and artifacts', builtin: true, requiresMfa: false },
  { name: 'release-manager', description: 'approves and deploys releases to protected environments', builtin: true, requiresMfa: true },
  { name: 'operator', description: 'runs the platform: pipelines, runs, deployments, checkpoints', builtin: true, requiresMfa: true },
  { name: 'security-auditor', description: 'reads the audit log, identities and policies; changes nothing', builtin: true, requiresMfa: false },
  { name: 'admin', description: 'manages users, service accounts, roles and policies', builtin: true, requiresMfa: true },
  // A machine role: held by the service account of a registered remote agent (docs/agents.md).
  { name: 'runner', description: 'remote agent: takes pipeline jobs and reports their results', builtin: true, requiresMfa: false },
];

export class Roles {
  constructor(private readonly deps: IdentityDeps) {}

  /** Insert any missing built-in role (idempotent; run at init and at server start). */
  async ensureBuiltins(tx: Tx): Promise<void> {
    const now = iso(this.deps.clock());
    for (const r of BUILTIN_ROLE_INFO) {
      await tx.db
        .insertInto('roles')
        .values({ name: r.name, description: r.description, builtin: 1, requires_mfa: r.requiresMfa ? 1 : 0, created_at: now, created_by: 'system' })
        .onConflict((oc) => oc.column('name').doNothing())
        .execute();
    }
  }

  async list(): Promise<RoleInfo[]> {
    const rows = await this.deps.store.db.selectFrom('roles').selectAll().orderBy('name').execute();
    return rows.map((r) => ({ name: r.name, description: r.description, builtin: r.builtin === 1, requiresMfa: r.requires_mfa === 1 }));
  }

  async create(actor: Actor, input: { name: string; description: string; requiresMfa: boolean }, context?: CallContext): Promise<RoleInfo> {
    const name = checkName('name', input.name);
    if (input.description.trim() === '' || input.description.length > 500) {
      throw new ValidationError('description must be 1-500 characters', [{ path: 'description', message: 'must be 1-500 characters' }]);
    }
    return this.deps.store.transact(async (tx) => {
      const exists = await tx.db.selectFrom('roles').select('name').where('name', '=', name).executeTakeFirst();
      if (exists !== undefined) throw new ConflictError(`role ${name} already exists`, { role: name });
      await tx.db
        .insertInto('roles')
        .values({ name, description: input.description, builtin: 0, requires_mfa: input.requiresMfa ? 1 : 0, created_at: iso(this.deps.clock()), created_by: actor.id })
        .execute();
      await record(this.deps, tx, { actor, action: 'roles.create', resource: `roles/${name}`, context, details: { requiresMfa: input.requiresMfa } });
      return { name, description: input.description, builtin: false, requiresMfa: input.requiresMfa };
    });
  }

  /** Refuse unknown roles, naming them; returns the rows for the known ones. */
  async resolve(tx: Tx, field: string, names: readonly string[]): Promise<RoleInfo[]> {
    const unique = [...new Set(names)].sort();
    for (const n of unique) checkName(field, n);
    if (unique.length === 0) return [];
    const rows = await tx.db.selectFrom('roles').selectAll().where('name', 'in', unique).execute();
    const missing = unique.filter((n) => !rows.some((r) => r.name === n));
    if (missing.length > 0) {
      throw new ValidationError(`unknown role(s): ${missing.join(', ')}`, missing.map((m) => ({ path: field, message: `unknown role "${m}" (see airlock role list)` })));
    }
    return rows.map((r) => ({ name: r.name, description: r.description, builtin: r.builtin === 1, requiresMfa: r.requires_mfa === 1 }));
  }
}

/** Roles held by a principal (reads through the given executor). */
export async function rolesOf(db: Tx['db'], kind: 'user' | 'service', id: string): Promise<string[]> {
  const rows = await db.selectFrom('principal_roles').select('role').where('principal_kind', '=', kind).where('principal_id', '=', id).orderBy('role').execute();
  return rows.map((r) => r.role);
}

/** Replace a principal's roles; returns [added, removed]. */
export async function replaceRoles(tx: Tx, kind: 'user' | 'service', id: string, roles: readonly string[], by: string, now: Date): Promise<[string[], string[]]> {
  const before = await rolesOf(tx.db, kind, id);
  const added = roles.filter((r) => !before.includes(r));
  const removed = before.filter((r) => !roles.includes(r));
  if (removed.length > 0) {
    await tx.db.deleteFrom('principal_roles').where('principal_kind', '=', kind).where('principal_id', '=', id).where('role', 'in', removed).execute();
  }
  for (const role of added) {
    await tx.db.insertInto('principal_roles').values({ principal_kind: kind, principal_id: id, role, granted_at: now.toISOString(), granted_by: by }).execute();
  }
  return [added, removed];
}
