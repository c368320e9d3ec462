/**
 * Secrets: named, scoped, versioned values, stored only envelope-encrypted (src/vault). Every
 * read (reveal, release to a step) is recorded with the secret's id and version, the reader and
 * the outcome, and an HMAC of the value under the vault's own key; never the value.
 */
import { randomUUID } from 'node:crypto';
import type { AuditEventInput, AuditLog, RequestContext } from '../audit/index.js';
import { AirlockError, ForbiddenError, NotFoundError, ValidationError } from '../errors/index.js';
import type { Decision, ReleaseAuthzRequest } from '../policy/index.js';
import type { Database, Store, Tx } from '../storage/index.js';
import type { Selectable } from 'kysely';

export type Actor = AuditEventInput['actor'];

/** The envelope encryption the vault provides, as this domain needs it. */
export interface SecretCipher {
  encrypt(tx: Tx, ctx: { secretId: string; version: number; scope: string }, plaintext: Buffer): Promise<{ scheme: number; kek_id: string; wrapped_dek: Buffer; nonce: Buffer; ciphertext: Buffer; tag: Buffer }>;
  decrypt(row: { scheme: number; kek_id: string; wrapped_dek: Buffer; nonce: Buffer; ciphertext: Buffer; tag: Buffer }, ctx: { secretId: string; version: number; scope: string }): Promise<Buffer>;
  auditHash(value: Buffer): string;
}

export interface SecretScope {
  readonly project?: string | undefined;
  readonly environment?: string | undefined;
}

export interface SecretInfo {
  readonly id: string;
  readonly name: string;
  readonly scope: string;
  readonly owner: string;
  readonly description: string;
  readonly currentVersion: number;
  readonly rotationIntervalDays: number | null;
  readonly lastRotatedAt: string | null;
  readonly expiresAt: string | null;
  readonly lastReadAt: string | null;
  readonly createdAt: string;
  readonly createdBy: string;
}

export const MAX_SECRET_BYTES = 64 * 1024;
const NAME = /^[A-Z_][A-Z0-9_]{0,127}$/;
const OWNER = /^[a-z][a-z0-9._-]{1,63}$/;

/** The policy decision for one secret release (policies/secrets-release.cedar). */
export interface ReleasePolicy {
  decide(request: ReleaseAuthzRequest): Promise<Decision>;
}

/** A step attempt asking for its secrets, as the runs domain knows it. */
export interface StepRelease {
  readonly runId: string;
  readonly stepId: string;
  readonly project: string;
  readonly pipeline: string;
  readonly stage: string;
  readonly step: string;
  readonly environment: string | undefined;
  readonly environmentProtected: boolean;
  readonly ref: string;
  readonly commit: string;
  readonly trigger: string;
  /** Gate state: every approval the stage's environment requires was given for this run. */
  readonly approved: boolean;
  readonly traceId: string;
  readonly runner: string;
  /** Where the release was asked from: the agent's address, or "embedded". */
  readonly sourceAddress: string;
  /** The secret names the step declared in the pipeline file. */
  readonly declared: readonly string[];
}

/** A deployment starting its service, after every gate of its environment passed. */
export interface DeploymentRelease {
  readonly deploymentId: string;
  readonly runId: string;
  readonly project: string;
  readonly pipeline: string;
  readonly environment: string;
  readonly environmentProtected: boolean;
  readonly ref: string;
  readonly commit: string;
  /** Why the gates passed, recorded with each release. */
  readonly basis: 'approvals' | 'break-glass' | 'rollback';
  /** The secret names the environment declares (`environments.<name>.secrets`). */
  readonly declared: readonly string[];
}

/** One released secret: its value exists only in memory, on its way to the step or service. */
export interface Released {
  readonly name: string;
  readonly value: Buffer;
  readonly version: number;
}

/** Who a release is for: its audit actor and details, its scope, and its policy request. */
interface Releasee {
  readonly actor: Actor;
  readonly where: Record<string, unknown>;
  readonly context: RequestContext | undefined;
  readonly project: string;
  readonly environment: string | undefined;
  readonly declared: readonly string[];
  /** How refusals name the receiver. */
  readonly describe: string;
  /** Who declares its secrets ("the step", "environment production"), for a refused undeclared name. */
  readonly declarer: string;
  readonly policy: (secret: ReleaseAuthzRequest['secret']) => ReleaseAuthzRequest;
}

export interface SecretsDeps {
  readonly store: Store;
  readonly audit: AuditLog;
  readonly cipher: SecretCipher;
  readonly releasePolicy: ReleasePolicy;
  readonly clock: () => Date;
}

interface PendingFailure {
  readonly actor: Actor;
  readonly action: string;
  readonly context: RequestContext | undefined;
  readonly details: Record<string, unknown>;
}

/** Carries a decrypt failure out of a transaction so it can be recorded after the rollback. */
class OpenFailed extends Error {
  constructor(
    readonly failure: PendingFailure & { readonly resource: string; readonly version: number },
    cause: unknown,
  ) {
    super('decrypt failed', { cause });
  }
}

function checkName(name: string): string {
  if (!NAME.test(name)) throw new ValidationError('secret names are upper-case letters, digits and "_" (like an environment variable), at most 128 characters', [{ path: 'name', message: 'must match ^[A-Z_][A-Z0-9_]{0,127}$' }]);
  return name;
}

export class Secrets {
  constructor(private readonly deps: SecretsDeps) {}

  /** The scope key bound into every version's AAD; resolves a project name to its id. */
  private async scopeOf(db: Tx['db'], scope: SecretScope): Promise<{ kind: string; projectId: string | null; environment: string | null; key: string; label: string }> {
    if (scope.environment !== undefined && scope.project === undefined) throw new ValidationError('an environment scope needs a project', [{ path: 'environment', message: 'give --project too' }]);
    if (scope.project === undefined) return { kind: 'global', projectId: null, environment: null, key: 'global', label: 'global' };
    const project = await db.selectFrom('projects').select(['id', 'name']).where('name', '=', scope.project).executeTakeFirst();
    if (project === undefined) throw new ValidationError(`unknown scope: there is no project named ${scope.project}`, [{ path: 'project', message: 'unknown project' }]);
    if (scope.environment === undefined) return { kind: 'project', projectId: project.id, environment: null, key: `project:${project.id}`, label: `project ${project.name}` };
    if (!/^[a-z][a-z0-9-]{0,62}$/.test(scope.environment)) throw new ValidationError('environment names are lower-case letters, digits and "-"', [{ path: 'environment', message: 'invalid' }]);
    return { kind: 'environment', projectId: project.id, environment: scope.environment, key: `project:${project.id}/env:${scope.environment}`, label: `project ${project.name}, environment ${scope.environment}` };
  }

  /** Store a new version (creating the secret on first use). The value never leaves this call. */
  async set(actor: Actor, input: { name: string; scope: SecretScope; value: Buffer; description?: string | undefined; owner?: string | undefined; rotationIntervalDays?: number | undefined; expiresAt?: string | undefined }, context?: RequestContext): Promise<SecretInfo> {
    const name = checkName(input.name);
    if (input.value.length === 0) throw new ValidationError('the value is empty', [{ path: 'value', message: 'empty' }]);
    if (input.value.length > MAX_SECRET_BYTES) throw new ValidationError(`the value is ${input.value.length} bytes; at most ${MAX_SECRET_BYTES} are allowed`, [{ path: 'value', message: 'too large' }]);
    const days = input.rotationIntervalDays;
    if (days !== undefined && (!Number.isInteger(days) || days < 1 || days > 3650)) throw new ValidationError('rotationIntervalDays must be 1-3650', [{ path: 'rotationIntervalDays', message: 'out of range' }]);
    if (input.expiresAt !== undefined && Number.isNaN(Date.parse(input.expiresAt))) throw new ValidationError('expiresAt must be an ISO 8601 time', [{ path: 'expiresAt', message: 'invalid' }]);
    // The same rule as owners in airlock.yaml: a user, service account or role name.
    if (input.owner !== undefined && !OWNER.test(input.owner)) throw new ValidationError('owner must be a user, service account or role name: a lower-case letter, then lower-case letters, digits, ".", "_" or "-" (2 to 64 characters)', [{ path: 'owner', message: 'must match ^[a-z][a-z0-9._-]{1,63}$' }]);
    const id = await this.deps.store.transact(async (tx) => {
      const scope = await this.scopeOf(tx.db, input.scope);
      const now = this.deps.clock().toISOString();
      let row = await tx.db.selectFrom('secrets').selectAll().where('name', '=', name).where('scope_key', '=', scope.key).where('deleted_at', 'is', null).executeTakeFirst();
      if (row === undefined) {
        const secretId = randomUUID();
        await tx.db
          .insertInto('secrets')
          .values({
            id: secretId,
            name,
            scope_kind: scope.kind,
            project_id: scope.projectId,
            environment: scope.environment,
            scope_key: scope.key,
            owner: input.owner ?? `${actor.kind}:${actor.id}`,
            description: input.description ?? '',
            rotation_interval_s: days === undefined ? null : days * 86_400,
            last_rotated_at: null,
            expires_at: input.expiresAt ?? null,
            last_read_at: null,
            current_version: 0,
            created_at: now,
            created_by: actor.id,
            updated_at: now,
            deleted_at: null,
            deleted_by: null,
          })
          .execute();
        row = await tx.db.selectFrom('secrets').selectAll().where('id', '=', secretId).executeTakeFirstOrThrow();
      }
      const version = row.current_version + 1;
      const sealed = await this.deps.cipher.encrypt(tx, { secretId: row.id, version, scope: scope.key }, input.value);
      await tx.db.insertInto('secret_versions').values({ secret_id: row.id, version, ...sealed, value_size: input.value.length, created_at: now, created_by: actor.id }).execute();
      await tx.db
        .updateTable('secrets')
        .set({ current_version: version, last_rotated_at: version > 1 ? now : row.last_rotated_at, updated_at: now, ...(input.owner === undefined ? {} : { owner: input.owner }), ...(input.description === undefined ? {} : { description: input.description }), ...(days === undefined ? {} : { rotation_interval_s: days * 86_400 }), ...(input.expiresAt === undefined ? {} : { expires_at: input.expiresAt }) })
        .where('id', '=', row.id)
        .execute();
      await this.deps.audit.record(tx, {
        actor,
        action: 'secrets.write',
        resource: `secrets/${row.id}`,
        outcome: 'allowed',
        context,
        details: { name, scope: scope.label, version, ...(input.owner === undefined ? {} : { owner: input.owner }), valueHmac: this.deps.cipher.auditHash(input.value), size: input.value.length },
      });
      return row.id;
    });
    return this.info(id);
  }

  async info(id: string): Promise<SecretInfo> {
    const r = await this.deps.store.db.selectFrom('secrets').selectAll().where('id', '=', id).executeTakeFirst();
    if (r === undefined) throw new NotFoundError(`no secret ${id}`);
    return toInfo(r);
  }

  async list(): Promise<SecretInfo[]> {
    const rows = await this.deps.store.db.selectFrom('secrets').selectAll().where('deleted_at', 'is', null).orderBy('name').orderBy('scope_key').execute();
    return rows.map(toInfo);
  }

  private async find(db: Tx['db'], name: string, scope: SecretScope) {
    const s = await this.scopeOf(db, scope);
    const row = await db.selectFrom('secrets').selectAll().where('name', '=', checkName(name)).where('scope_key', '=', s.key).where('deleted_at', 'is', null).executeTakeFirst();
    if (row === undefined) throw new NotFoundError(`no secret ${name} in scope ${s.label}`, { name });
    return row;
  }

  async versions(name: string, scope: SecretScope): Promise<{ version: number; size: number; createdAt: string; createdBy: string; kekId: string }[]> {
    const row = await this.find(this.deps.store.db, name, scope);
    const rows = await this.deps.store.db.selectFrom('secret_versions').select(['version', 'value_size', 'created_at', 'created_by', 'kek_id']).where('secret_id', '=', row.id).orderBy('version', 'desc').execute();
    return rows.map((v) => ({ version: v.version, size: v.value_size, createdAt: v.created_at, createdBy: v.created_by, kekId: v.kek_id }));
  }

  /** A person reads a value: permission and step-up are checked by policy; the justification is recorded. */
  async reveal(actor: Actor, input: { name: string; scope: SecretScope; justification: string; version?: number | undefined }, context?: RequestContext): Promise<{ value: Buffer; version: number }> {
    const justification = input.justification.trim();
    if (justification.length < 10) throw new ValidationError('a justification of at least 10 characters is required to reveal a secret', [{ path: 'justification', message: 'too short' }]);
    return this.deps.store.transact(async (tx) => {
      const row = await this.find(tx.db, input.name, input.scope);
      const version = input.version ?? row.current_version;
      const v = await tx.db.selectFrom('secret_versions').selectAll().where('secret_id', '=', row.id).where('version', '=', version).executeTakeFirst();
      if (v === undefined) throw new NotFoundError(`secret ${input.name} has no version ${version}`);
      const value = await this.open(v, row, { actor, action: 'secrets.reveal', context, details: { name: row.name, justification: justification.slice(0, 1000) } });
      const now = this.deps.clock().toISOString();
      await tx.db.updateTable('secrets').set({ last_read_at: now }).where('id', '=', row.id).execute();
      await this.deps.audit.record(tx, { actor, action: 'secrets.reveal', resource: `secrets/${row.id}`, outcome: 'allowed', context, details: { name: row.name, version, justification: justification.slice(0, 1000), valueHmac: this.deps.cipher.auditHash(value) } });
      return { value, version };
    }).catch(async (err: unknown) => this.recordOpenFailure(err));
  }

  async delete(actor: Actor, name: string, scope: SecretScope, context?: RequestContext): Promise<void> {
    await this.deps.store.transact(async (tx) => {
      const row = await this.find(tx.db, name, scope);
      const now = this.deps.clock().toISOString();
      await tx.db.updateTable('secrets').set({ deleted_at: now, deleted_by: actor.id, updated_at: now }).where('id', '=', row.id).execute();
      await this.deps.audit.record(tx, { actor, action: 'secrets.delete', resource: `secrets/${row.id}`, outcome: 'allowed', context, details: { name } });
    });
  }

  /**
   * Record a rotation that produced no value (its command failed or printed nothing): the
   * current version stays, and the failure is on the secret's record for `usage` and for
   * whoever watches rotations. The reason is the caller's account of the command, never output.
   */
  async rotationFailed(actor: Actor, name: string, scope: SecretScope, reason: string, context?: RequestContext): Promise<{ currentVersion: number }> {
    const why = reason.trim();
    if (why.length === 0 || why.length > 300) throw new ValidationError('reason must be 1 to 300 characters', [{ path: 'reason', message: 'required, at most 300 characters' }]);
    return this.deps.store.transact(async (tx) => {
      const row = await this.find(tx.db, name, scope);
      await this.deps.audit.record(tx, { actor, action: 'secrets.rotate', resource: `secrets/${row.id}`, outcome: 'failed', reason: `rotation failed, version ${row.current_version} stays current: ${why}`, context, details: { name, version: row.current_version } });
      return { currentVersion: row.current_version };
    });
  }

  /**
   * Release secrets to a step attempt at the moment it starts. `requested` defaults to what the
   * step declared; a name it did not declare is refused. Each name resolves to the most
   * specific scope (project + environment, then project, then global) and is then put to the
   * policy (`secrets.release`, which sees the pipeline, stage, environment, branch and gate
   * state). Any refusal refuses the whole release: every refused name is recorded as denied
   * and nothing is decrypted.
   */
  releaseToStep(step: StepRelease, requested?: readonly string[], requestRecord?: AuditEventInput): Promise<Released[]> {
    const actor: Actor = { kind: 'workload', id: `run:${step.runId}:step:${step.stepId}` };
    return this.release(
      {
        actor,
        where: { stage: step.stage, step: step.step, runner: step.runner },
        context: { traceId: step.traceId },
        project: step.project,
        environment: step.environment,
        declared: step.declared,
        describe: `${step.stage}/${step.step}`,
        declarer: 'the step',
        policy: (secret) => ({
          workload: { id: actor.id, pipeline: step.pipeline, run: step.runId, step: step.step },
          secret,
          context: {
            sourceAddress: step.sourceAddress,
            project: step.project,
            pipeline: step.pipeline,
            stage: step.stage,
            step: step.step,
            environment: step.environment ?? '',
            environmentProtected: step.environmentProtected,
            branch: step.ref.replace(/^refs\/heads\//, ''),
            commit: step.commit,
            trigger: step.trigger,
            approved: step.approved,
          },
        }),
      },
      requested ?? step.declared,
      requestRecord,
    );
  }

  /**
   * Release the secrets an environment declares to the service a deployment starts. The caller
   * (delivery) asks only after every gate passed, so the policy sees `approved: true`; the basis
   * (approvals, break-glass, a rollback to an approved release) is recorded with each release.
   * Resolution, policy and refusal are as for a step: all or nothing, each read recorded.
   */
  releaseToDeployment(d: DeploymentRelease, context?: RequestContext): Promise<Released[]> {
    const actor: Actor = { kind: 'workload', id: `deployment:${d.deploymentId}` };
    return this.release(
      {
        actor,
        where: { deployment: d.deploymentId, environment: d.environment, basis: d.basis },
        context,
        project: d.project,
        environment: d.environment,
        declared: d.declared,
        describe: `deployment ${d.deploymentId} (${d.environment})`,
        declarer: `environment ${d.environment}`,
        policy: (secret) => ({
          workload: { id: actor.id, pipeline: d.pipeline, run: d.runId, step: '' },
          secret,
          context: {
            sourceAddress: 'deployer',
            project: d.project,
            pipeline: d.pipeline,
            stage: '',
            step: '',
            environment: d.environment,
            environmentProtected: d.environmentProtected,
            branch: d.ref.replace(/^refs\/heads\//, ''),
            commit: d.commit,
            trigger: 'deployment',
            approved: true,
          },
        }),
      },
      d.declared,
    );
  }

  private async release(who: Releasee, names: readonly string[], requestRecord?: AuditEventInput): Promise<Released[]> {
    if (names.length === 0) return [];
    const { actor, where, context: trace } = who;
    const outcome = await this.deps.store.transact(async (tx) => {
      const project = await tx.db.selectFrom('projects').select('id').where('name', '=', who.project).executeTakeFirst();
      const keys = ['global', ...(project === undefined ? [] : [`project:${project.id}`, ...(who.environment === undefined ? [] : [`project:${project.id}/env:${who.environment}`])])];
      const refusals: { name: string; resource: string; reason: string; policies?: readonly string[] }[] = [];
      const chosen: { name: string; row: Selectable<Database['secrets']> }[] = [];
      const now = this.deps.clock();
      const wanted = [...new Set(names)];
      const declaredWanted = wanted.filter((n) => who.declared.includes(n));
      // One query for every candidate of every name (a fetch is on each step's start path).
      const rows = declaredWanted.length === 0 ? [] : await tx.db.selectFrom('secrets').selectAll().where('name', 'in', declaredWanted).where('scope_key', 'in', keys).where('deleted_at', 'is', null).execute();
      for (const name of wanted) {
        if (!who.declared.includes(name)) {
          refusals.push({ name, resource: `secrets/${NAME.test(name) ? name : 'invalid-name'}`, reason: `${who.declarer} did not declare secret ${NAME.test(name) ? name : '(an invalid name)'}` });
          continue;
        }
        const row = rows.filter((r) => r.name === name).sort((a, b) => keys.indexOf(b.scope_key) - keys.indexOf(a.scope_key))[0];
        if (row === undefined || row.current_version === 0) {
          refusals.push({ name, resource: `secrets/${name}`, reason: `no secret ${name} in scope of project ${who.project}${who.environment === undefined ? '' : `, environment ${who.environment}`} (set it with airlock secret set)` });
          continue;
        }
        if (row.expires_at !== null && Date.parse(row.expires_at) <= now.getTime()) {
          refusals.push({ name, resource: `secrets/${row.id}`, reason: `secret ${name} expired at ${row.expires_at}` });
          continue;
        }
        const decision = await this.deps.releasePolicy.decide(who.policy({ id: row.id, name, project: row.project_id === null ? '' : who.project, environment: row.environment ?? '' }));
        if (!decision.allowed) {
          const by = decision.policies.length > 0 ? `policy ${decision.policies.join(', ')}` : 'no policy permits it';
          refusals.push({ name, resource: `secrets/${row.id}`, reason: `policy refused secret ${name}: ${by}`, policies: decision.policies });
          continue;
        }
        chosen.push({ name, row });
      }
      if (refusals.length > 0) {
        for (const r of refusals) {
          await this.deps.audit.record(tx, { actor, action: 'secrets.release', resource: r.resource, outcome: 'denied', reason: r.reason, context: trace, details: { name: r.name, ...where, ...(r.policies === undefined ? {} : { policies: [...r.policies] }) } });
        }
        return { released: [], refused: refusals };
      }
      const released: Released[] = [];
      const ids = chosen.map((c) => c.row.id);
      const versions = ids.length === 0 ? [] : await tx.db.selectFrom('secret_versions').innerJoin('secrets', (j) => j.onRef('secrets.id', '=', 'secret_versions.secret_id').onRef('secrets.current_version', '=', 'secret_versions.version')).selectAll('secret_versions').where('secrets.id', 'in', ids).execute();
      if (ids.length > 0) await tx.db.updateTable('secrets').set({ last_read_at: now.toISOString() }).where('id', 'in', ids).execute();
      for (const { name, row } of chosen) {
        const v = versions.find((x) => x.secret_id === row.id);
        if (v === undefined) throw new AirlockError('INTERNAL', `secret ${name} has no stored version ${row.current_version}`);
        const value = await this.open(v, row, { actor, action: 'secrets.release', context: trace, details: { name, ...where } });
        await this.deps.audit.record(tx, { actor, action: 'secrets.release', resource: `secrets/${row.id}`, outcome: 'allowed', context: trace, details: { name, version: row.current_version, ...where, valueHmac: this.deps.cipher.auditHash(value) } });
        released.push({ name, value, version: row.current_version });
      }
      // The HTTP request's own record, when the caller wants it in this transaction (success only).
      if (requestRecord !== undefined) await this.deps.audit.record(tx, requestRecord);
      return { released, refused: undefined };
    }).catch(async (err: unknown) => this.recordOpenFailure(err));
    if (outcome.refused !== undefined) {
      const first = outcome.refused[0];
      const others = outcome.refused.length > 1 ? ` (and ${outcome.refused.length - 1} more refused)` : '';
      throw new ForbiddenError(`secrets cannot be released to ${who.describe}: ${first?.reason ?? 'refused'}${others}`, { secrets: outcome.refused.map((r) => r.name), reasons: outcome.refused.map((r) => r.reason) });
    }
    return outcome.released;
  }

  /**
   * Decrypt one version. A failure (altered ciphertext, wrong binding, a KEK that will not
   * open) is a fault, not a refusal: it aborts the transaction and is recorded afterwards.
   */
  private async open(v: Selectable<Database['secret_versions']>, row: Selectable<Database['secrets']>, event: PendingFailure): Promise<Buffer> {
    try {
      return await this.deps.cipher.decrypt(v, { secretId: row.id, version: v.version, scope: row.scope_key });
    } catch (err) {
      throw new OpenFailed({ ...event, resource: `secrets/${row.id}`, version: v.version }, err);
    }
  }

  /** Record a failed decrypt in its own transaction (the one that failed rolled back), then rethrow. */
  private async recordOpenFailure(err: unknown): Promise<never> {
    if (!(err instanceof OpenFailed)) throw err;
    const f = err.failure;
    await this.deps.store.transact((tx) =>
      this.deps.audit.record(tx, { actor: f.actor, action: f.action, resource: f.resource, outcome: 'failed', reason: `version ${f.version} could not be decrypted: its stored ciphertext, data key or bindings were altered`, context: f.context, details: { ...f.details, version: f.version } }),
    );
    throw new AirlockError('INTEGRITY_FAILED', `secret ${typeof f.details.name === 'string' ? f.details.name : ''} version ${f.version} cannot be decrypted: the stored value was altered or belongs to another secret; restore it from a backup or set a new version`, { reason: 'secret_corrupt', resource: f.resource, version: f.version });
  }

  /** Who and what read or changed a secret, and when (from the audit log). */
  async usage(name: string, scope: SecretScope): Promise<{ seq: number; time: string; action: string; actor: string; outcome: string; version: unknown; reason: string }[]> {
    const row = await this.find(this.deps.store.db, name, scope);
    const entries = await this.deps.audit.search({ resource: `secrets/${row.id}`, limit: 1000, order: 'desc' });
    return entries
      .filter((e) => e.event.details.method === undefined)
      .map((e) => ({ seq: e.seq, time: e.event.time, action: e.event.action, actor: `${e.event.actor.kind}:${e.event.actor.id}`, outcome: e.event.outcome, version: e.event.details.version ?? null, reason: e.event.reason }));
  }

  /**
   * The scheduled check: secrets overdue for rotation, expired, or unused for `unusedDays`.
   * Each finding is recorded as an audit event (`secrets.hygiene`, outcome failed) and returned.
   */
  async hygiene(unusedDays = 90): Promise<{ name: string; scope: string; finding: 'rotation_overdue' | 'expired' | 'unused'; detail: string }[]> {
    const now = this.deps.clock();
    const rows = await this.deps.store.db.selectFrom('secrets').selectAll().where('deleted_at', 'is', null).execute();
    const findings: { id: string; name: string; scope: string; finding: 'rotation_overdue' | 'expired' | 'unused'; detail: string }[] = [];
    for (const r of rows) {
      const rotated = Date.parse(r.last_rotated_at ?? r.created_at);
      if (r.rotation_interval_s !== null && rotated + r.rotation_interval_s * 1000 < now.getTime()) {
        findings.push({ id: r.id, name: r.name, scope: r.scope_key, finding: 'rotation_overdue', detail: `last rotated ${r.last_rotated_at ?? r.created_at}; due every ${Math.round(r.rotation_interval_s / 86_400)} day(s)` });
      }
      if (r.expires_at !== null && Date.parse(r.expires_at) <= now.getTime()) {
        findings.push({ id: r.id, name: r.name, scope: r.scope_key, finding: 'expired', detail: `expired at ${r.expires_at}` });
      }
      const used = Date.parse(r.last_read_at ?? r.created_at);
      if (used + unusedDays * 86_400_000 < now.getTime()) {
        findings.push({ id: r.id, name: r.name, scope: r.scope_key, finding: 'unused', detail: `not read since ${r.last_read_at ?? `it was created (${r.created_at})`}` });
      }
    }
    if (findings.length > 0) {
      await this.deps.store.transact(async (tx) => {
        for (const f of findings) {
          await this.deps.audit.record(tx, { actor: { kind: 'system', id: 'secrets-hygiene' }, action: 'secrets.hygiene', resource: `secrets/${f.id}`, outcome: 'failed', reason: `${f.finding}: ${f.detail}`, details: { name: f.name, finding: f.finding } });
        }
      });
    }
    return findings.map(({ id: _id, ...rest }) => rest);
  }

  auditHash(value: Buffer): string {
    return this.deps.cipher.auditHash(value);
  }
}

function toInfo(r: { id: string; name: string; scope_key: string; owner: string; description: string; current_version: number; rotation_interval_s: number | null; last_rotated_at: string | null; expires_at: string | null; last_read_at: string | null; created_at: string; created_by: string }): SecretInfo {
  return {
    id: r.id,
    name: r.name,
    scope: r.scope_key,
    owner: r.owner,
    description: r.description,
    currentVersion: r.current_version,
    rotationIntervalDays: r.rotation_interval_s === null ? null : Math.round(r.rotation_interval_s / 86_400),
    lastRotatedAt: r.last_rotated_at,
    expiresAt: r.expires_at,
    lastReadAt: r.last_read_at,
    createdAt: r.created_at,
    createdBy: r.created_by,
  };
}

