/**
 * Artifacts as the control plane knows them: every blob a run produced (by digest), immutable
 * published names (name@version -> one digest, forever), and releases (a named, pinned set of
 * one run's outputs). The bytes live in an {@link ObjectStore}; this domain re-hashes them on
 * every download and verification, and records refusals and integrity failures in the audit log.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { AuditEventInput, AuditLog, JsonValue, RequestContext } from '../audit/index.js';
import { AirlockError, ConflictError, NotFoundError, ValidationError, isAirlockError } from '../errors/index.js';
import type { Store, Tx } from '../storage/index.js';
import { assertSha256Digest } from './blob-store.js';
import type { ObjectStore } from './blob-store.js';

export type Actor = AuditEventInput['actor'];

export interface ArtifactsDeps {
  readonly store: Store;
  readonly audit: AuditLog;
  readonly objects: ObjectStore;
  readonly clock: () => Date;
}

/** One step output as the runs domain accepted it. */
export interface RunOutput {
  readonly path: string;
  readonly digest: string;
  readonly size: number;
}

/** A published name: `name@version` points at `digest` forever. */
export interface ArtifactName {
  readonly name: string;
  readonly version: string;
  readonly digest: string;
  readonly runId: string | null;
  readonly path: string | null;
  readonly createdAt: string;
  readonly createdBy: string;
}

export interface PublishResult extends ArtifactName {
  /** false: this exact name, version and digest were already published (idempotent repeat). */
  readonly created: boolean;
}

export interface ArtifactSummary {
  readonly digest: string;
  readonly size: number;
  readonly createdAt: string;
  readonly firstRunId: string | null;
  /** The output path, when listed by run. */
  readonly path?: string;
  /** `name@version` of every published name pointing here. */
  readonly names: readonly string[];
}

export interface ArtifactDetail {
  readonly digest: string;
  readonly size: number;
  readonly createdAt: string;
  /** The run that first produced it (null when no run is recorded). */
  readonly producedBy: { readonly runId: string; readonly project: string; readonly runNumber: number } | null;
  readonly names: readonly ArtifactName[];
  readonly releases: readonly { readonly project: string; readonly name: string; readonly path: string; readonly createdAt: string }[];
}

export interface ReleaseSummary {
  readonly id: string;
  readonly project: string;
  readonly name: string;
  readonly runId: string;
  readonly runNumber: number;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly artifactCount: number;
}

export interface ReleaseDetail extends Omit<ReleaseSummary, 'artifactCount'> {
  readonly artifacts: readonly { readonly path: string; readonly digest: string; readonly size: number }[];
}

export interface VerifyResult {
  readonly digest: string;
  readonly size: number;
  readonly ok: true;
  readonly verifiedAt: string;
}

/** A download: the recorded size and a stream that fails at its end unless the bytes match. */
export interface ArtifactDownload {
  readonly digest: string;
  readonly size: number;
  readonly stream: Readable;
}

export type IntegrityReason = 'blob_corrupt' | 'blob_missing';

const NAME_SEGMENT = '[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?';
const NAME_RE = new RegExp(`^${NAME_SEGMENT}(?:/${NAME_SEGMENT})*$`);
const VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
const PROJECT_RE = /^[a-z][a-z0-9-]{0,62}$/;
const MAX_NAME = 200;
const MAX_PATH = 1024;
export const MAX_LIST = 500;

function checkName(name: string, field = 'name'): string {
  if (name.length === 0 || name.length > MAX_NAME || !NAME_RE.test(name)) {
    throw new ValidationError(`invalid artifact name "${name.slice(0, MAX_NAME)}": use lower-case letters, digits, ".", "_" and "-", optionally in "/"-separated parts (like acme/web-app), at most ${MAX_NAME} characters, starting and ending with a letter or digit`, [
      { path: field, message: 'must match lower-case segments [a-z0-9._-] separated by "/"' },
    ]);
  }
  return name;
}

/** A version or release name: it names something that never changes, so moving tags are refused. */
function checkVersion(version: string, field: string, what: string): string {
  if (!VERSION_RE.test(version)) {
    throw new ValidationError(`invalid ${what} "${version.slice(0, 130)}": use letters, digits, ".", "_", "+" and "-" (like 1.4.2 or 2025.01-rc1), at most 128 characters, starting with a letter or digit`, [{ path: field, message: 'must match ^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$' }]);
  }
  if (/^latest$/i.test(version)) {
    throw new ValidationError(`"${version}" cannot be a ${what}: published names never move, so a moving tag would be a lie; use a version such as 1.4.2`, [{ path: field, message: 'moving tags are not allowed' }]);
  }
  return version;
}

function checkPath(path: string, field: string): string {
  if (path.length === 0 || path.length > MAX_PATH) throw new ValidationError(`${field} must be 1-${MAX_PATH} characters`, [{ path: field, message: 'invalid length' }]);
  return path;
}

function checkLimit(limit: number | undefined): number {
  const n = limit ?? 50;
  if (!Number.isInteger(n) || n < 1 || n > MAX_LIST) throw new ValidationError(`limit must be 1-${MAX_LIST}`, [{ path: 'limit', message: 'out of range' }]);
  return n;
}

/** The coded integrity error: which artifact, what is wrong, never the content. */
export function integrityError(digest: string, reason: IntegrityReason, extra: { actual?: string; expectedSize?: number; actualSize?: number } = {}): AirlockError {
  const message =
    reason === 'blob_missing'
      ? `artifact ${digest} is missing from the artifact store; restore it from a backup (its digest is its name) or re-run the step that produced it`
      : `artifact ${digest} is corrupt: the stored bytes ${extra.actual === undefined ? `are ${String(extra.actualSize)} bytes, not ${String(extra.expectedSize)}` : `hash to ${extra.actual}`}; it is refused until restored from a backup or re-produced`;
  return new AirlockError('INTEGRITY_FAILED', message, { reason, digest, ...extra });
}

/** What a check of the stored bytes found. */
type Finding = { readonly ok: true } | { readonly ok: false; readonly reason: IntegrityReason; readonly actual?: string; readonly expectedSize?: number; readonly actualSize?: number };

function isCorruptionError(err: unknown): err is AirlockError {
  return isAirlockError(err) && err.details.reason === 'blob_corrupt';
}

/** The digest a store's corruption error reports having found, when it names one. */
function storeActual(err: AirlockError): { actual?: string } {
  const actual = err.details.actual;
  return typeof actual === 'string' && /^sha256:[0-9a-f]{64}$/.test(actual) ? { actual } : {};
}

/** Outputs of a run's succeeded step attempts, by path (a retried step's last success wins). */
async function runOutputs(db: Tx['db'], runId: string): Promise<Map<string, RunOutput>> {
  const rows = await db.selectFrom('run_steps').select(['result_json']).where('run_id', '=', runId).where('state', '=', 'succeeded').orderBy('position').orderBy('attempt').execute();
  const outputs = new Map<string, RunOutput>();
  for (const r of rows) {
    if (r.result_json === null) continue;
    const result = JSON.parse(r.result_json) as { outputs?: RunOutput[] };
    for (const o of result.outputs ?? []) outputs.set(o.path, { path: o.path, digest: o.digest, size: o.size });
  }
  return outputs;
}

export class Artifacts {
  constructor(private readonly deps: ArtifactsDeps) {}

  private now(): string {
    return this.deps.clock().toISOString();
  }

  /**
   * Register a run's accepted step outputs (inside the transaction that accepts them). A digest
   * seen before keeps its first run: the same bytes from a later run are the same artifact.
   */
  async recordOutputs(tx: Tx, runId: string, outputs: readonly RunOutput[]): Promise<void> {
    const now = this.now();
    for (const o of outputs) {
      assertSha256Digest(o.digest, `outputs.${o.path}`);
      if (!Number.isSafeInteger(o.size) || o.size < 0) throw new ValidationError(`output ${o.path}: size must be a non-negative integer`, [{ path: `outputs.${o.path}`, message: 'invalid size' }]);
      await tx.db
        .insertInto('artifacts')
        .values({ digest: o.digest, size: o.size, first_run_id: runId, created_at: now })
        .onConflict((oc) => oc.column('digest').doNothing())
        .execute();
    }
  }

  /** A run id, `project#number`, or (with `project`) a bare run number. */
  private async runOf(db: Tx['db'], ref: string, project?: string): Promise<{ id: string; state: string; project: string; projectId: string; number: number }> {
    const m = /^(?:([a-z][a-z0-9-]*)#)?(\d+)$/.exec(ref);
    const base = db.selectFrom('runs').innerJoin('projects', 'projects.id', 'runs.project_id').select(['runs.id', 'runs.state', 'runs.number', 'projects.name as project', 'projects.id as projectId']);
    const projectName = m?.[1] ?? project;
    const row = m !== null && projectName !== undefined ? await base.where('projects.name', '=', projectName).where('runs.number', '=', Number(m[2])).executeTakeFirst() : await base.where('runs.id', '=', ref).executeTakeFirst();
    if (row === undefined) throw new NotFoundError(`no run ${ref}${m !== null && m[1] === undefined && project !== undefined ? ` in project ${project}` : ''}`, { run: ref });
    return row;
  }

  /** The digest a reference names: `sha256:<hex>` as is, `name@version` through its published name. */
  private async digestOf(ref: string): Promise<string> {
    if (ref.startsWith('sha256:')) {
      assertSha256Digest(ref, 'artifact');
      return ref;
    }
    const at = ref.lastIndexOf('@');
    if (at <= 0 || at === ref.length - 1) throw new ValidationError(`"${ref.slice(0, 300)}" is neither a digest (sha256:<64 hex>) nor NAME@VERSION`, [{ path: 'artifact', message: 'give sha256:<hex> or NAME@VERSION' }]);
    const name = checkName(ref.slice(0, at));
    const version = ref.slice(at + 1);
    const row = await this.deps.store.db.selectFrom('artifact_names').select('digest').where('name', '=', name).where('version', '=', version).executeTakeFirst();
    if (row === undefined) throw new NotFoundError(`no artifact published as ${name}@${version}`, { name, version });
    return row.digest;
  }

  private async artifactRow(db: Tx['db'], digest: string) {
    const row = await db.selectFrom('artifacts').selectAll().where('digest', '=', digest).executeTakeFirst();
    if (row === undefined) throw new NotFoundError(`no artifact ${digest}: only outputs of runs are artifacts`, { digest });
    return row;
  }

  /**
   * Give an artifact an immutable name. The same name, version and digest again is a no-op;
   * another digest under a published name@version is refused (CONFLICT) and recorded as denied.
   * With `runId` the digest must be an output of that run (and of `path`, when given).
   */
  async publish(actor: Actor, input: { name: string; version: string; digest: string; runId?: string | undefined; path?: string | undefined }, context?: RequestContext): Promise<PublishResult> {
    const name = checkName(input.name);
    const version = checkVersion(input.version, 'version', 'version');
    assertSha256Digest(input.digest, 'digest');
    const digest = input.digest;
    if (input.path !== undefined && input.runId === undefined) throw new ValidationError('path needs a run: give the run that produced the output too', [{ path: 'path', message: 'requires run' }]);
    const path = input.path === undefined ? undefined : checkPath(input.path, 'path');
    const resource = `artifacts/names/${name}@${version}`;
    // A name must never point at bytes the store cannot serve.
    if (!(await this.deps.objects.has(digest))) {
      const known = input.runId !== undefined || (await this.deps.store.db.selectFrom('artifacts').select('digest').where('digest', '=', digest).executeTakeFirst()) !== undefined;
      if (!known) throw new NotFoundError(`no artifact ${digest}: only outputs of runs are artifacts`, { digest });
      throw await this.recordFailure(actor, 'artifacts.publish', digest, { ok: false, reason: 'blob_missing' }, context);
    }
    type Outcome = { result: PublishResult } | { conflict: { reason: string; publishedDigest: string | null } };
    const outcome = await this.deps.store
      .transact(async (tx): Promise<Outcome> => {
        let runId: string | null = null;
        let outputPath: string | null = path ?? null;
        if (input.runId !== undefined) {
          const run = await this.runOf(tx.db, input.runId);
          runId = run.id;
          const outputs = [...(await runOutputs(tx.db, run.id)).values()];
          const match = outputs.filter((o) => o.digest === digest && (path === undefined || o.path === path));
          const first = match[0];
          if (first === undefined) {
            const at = path === undefined ? '' : ` at ${path}`;
            throw new ValidationError(`${digest} is not an output${at} of run ${run.project}#${run.number}`, [{ path: path === undefined ? 'digest' : 'path', message: 'not an output of the run' }]);
          }
          outputPath = match.length === 1 ? first.path : (path ?? null);
          await this.recordOutputs(tx, run.id, [first]);
        }
        await this.artifactRow(tx.db, digest);
        const existing = await tx.db.selectFrom('artifact_names').selectAll().where('name', '=', name).where('version', '=', version).executeTakeFirst();
        if (existing !== undefined) {
          if (existing.digest === digest) return { result: { ...toName(existing), created: false } };
          const reason = `${name}@${version} is already published as ${existing.digest}; published names never change (publish a new version)`;
          await this.deps.audit.record(tx, { actor, action: 'artifacts.publish', resource, outcome: 'denied', reason, context, details: { name, version, digest, publishedDigest: existing.digest } });
          return { conflict: { reason, publishedDigest: existing.digest } };
        }
        const row = { name, version, digest, run_id: runId, path: outputPath, created_at: this.now(), created_by: `${actor.kind}:${actor.id}` };
        await tx.db.insertInto('artifact_names').values(row).execute();
        await this.deps.audit.record(tx, { actor, action: 'artifacts.publish', resource, outcome: 'allowed', context, details: { name, version, digest, run: runId, path: outputPath } });
        return { result: { ...toName(row), created: true } };
      })
      .catch(async (err: unknown): Promise<Outcome> => {
        // Two publishers raced for the same name@version: the loser hits the primary key.
        if (!isAirlockError(err) || err.code !== 'CONFLICT') throw err;
        const won = await this.deps.store.db.selectFrom('artifact_names').selectAll().where('name', '=', name).where('version', '=', version).executeTakeFirst();
        if (won?.digest === digest) return { result: { ...toName(won), created: false } };
        const reason = `${name}@${version} was published concurrently as ${won?.digest ?? 'another digest'}; published names never change`;
        await this.deps.store.transact((tx) => this.deps.audit.record(tx, { actor, action: 'artifacts.publish', resource, outcome: 'denied', reason, context, details: { name, version, digest } }));
        return { conflict: { reason, publishedDigest: won?.digest ?? null } };
      });
    if ('conflict' in outcome) throw new ConflictError(outcome.conflict.reason, { name, version, digest, publishedDigest: outcome.conflict.publishedDigest });
    return outcome.result;
  }

  /**
   * Pin a run's outputs (all, or the listed paths) under a release name, unique per project.
   * Refused, and recorded as denied, when the run did not succeed, a path is not one of its
   * outputs, or the name is taken. Later runs never change a release: it holds digests.
   */
  async createRelease(actor: Actor, input: { project: string; name: string; runId: string; paths?: readonly string[] | undefined }, context?: RequestContext): Promise<ReleaseDetail> {
    if (!PROJECT_RE.test(input.project)) throw new ValidationError(`invalid project name "${input.project.slice(0, 64)}"`, [{ path: 'project', message: 'lower-case letters, digits and "-"' }]);
    const name = checkVersion(input.name, 'name', 'release name');
    const paths = input.paths?.map((p, i) => checkPath(p, `paths.${i}`));
    if (paths?.length === 0) throw new ValidationError('paths is empty: list the outputs to release, or omit it to release every output', [{ path: 'paths', message: 'empty' }]);
    const resource = `releases/${input.project}/${name}`;
    const refuse = (tx: Tx, reason: string, details: Record<string, JsonValue>) => this.deps.audit.record(tx, { actor, action: 'releases.create', resource, outcome: 'denied', reason, context, details: { project: input.project, name, run: input.runId, ...details } });
    const outcome = await this.deps.store
      .transact(async (tx): Promise<{ id: string } | { refused: AirlockError }> => {
        const project = await tx.db.selectFrom('projects').select(['id', 'name']).where('name', '=', input.project).executeTakeFirst();
        if (project === undefined) throw new NotFoundError(`no project ${input.project}`, { project: input.project });
        const run = await this.runOf(tx.db, input.runId, project.name);
        if (run.projectId !== project.id) {
          const reason = `run ${run.project}#${run.number} belongs to project ${run.project}, not ${project.name}`;
          await refuse(tx, reason, {});
          return { refused: new ValidationError(reason, [{ path: 'run', message: 'run of another project' }]) };
        }
        if (run.state !== 'succeeded') {
          const reason = `run ${run.project}#${run.number} is ${run.state}; only a succeeded run can be released`;
          await refuse(tx, reason, { state: run.state });
          return { refused: new ConflictError(reason, { run: run.id, state: run.state }) };
        }
        const outputs = await runOutputs(tx.db, run.id);
        const missing = (paths ?? []).filter((p) => !outputs.has(p));
        if (missing.length > 0) {
          const reason = `not an output of run ${run.project}#${run.number}: ${missing.join(', ')} (its outputs: ${[...outputs.keys()].join(', ') || 'none'})`;
          await refuse(tx, reason.slice(0, 1000), { missing });
          return { refused: new ValidationError(reason, missing.map((p) => ({ path: `paths.${String((paths ?? []).indexOf(p))}`, message: `${p} is not an output of the run` }))) };
        }
        const chosen = paths === undefined ? [...outputs.values()] : [...new Set(paths)].map((p) => outputs.get(p)).filter((o): o is RunOutput => o !== undefined);
        if (chosen.length === 0) {
          const reason = `run ${run.project}#${run.number} produced no outputs; there is nothing to release`;
          await refuse(tx, reason, {});
          return { refused: new ValidationError(reason, [{ path: 'run', message: 'no outputs' }]) };
        }
        const taken = await tx.db.selectFrom('releases').select('run_id').where('project_id', '=', project.id).where('name', '=', name).executeTakeFirst();
        if (taken !== undefined) {
          const reason = `project ${project.name} already has a release ${name}; release names are never reused`;
          await refuse(tx, reason, { existingRun: taken.run_id });
          return { refused: new ConflictError(reason, { project: project.name, name }) };
        }
        await this.recordOutputs(tx, run.id, chosen);
        const id = randomUUID();
        const now = this.now();
        await tx.db.insertInto('releases').values({ id, project_id: project.id, name, run_id: run.id, created_at: now, created_by: `${actor.kind}:${actor.id}` }).execute();
        await tx.db
          .insertInto('release_artifacts')
          .values(chosen.map((o) => ({ release_id: id, path: o.path, digest: o.digest })))
          .execute();
        await this.deps.audit.record(tx, {
          actor,
          action: 'releases.create',
          resource,
          outcome: 'allowed',
          context,
          details: { project: project.name, name, run: run.id, runNumber: run.number, artifacts: chosen.map((o) => ({ path: o.path, digest: o.digest })) },
        });
        return { id };
      })
      .catch(async (err: unknown): Promise<{ refused: AirlockError }> => {
        // Two creators raced for the same name: the loser hits the unique index.
        if (!isAirlockError(err) || err.code !== 'CONFLICT') throw err;
        const reason = `project ${input.project} already has a release ${name}; release names are never reused`;
        await this.deps.store.transact((tx) => refuse(tx, reason, {}));
        return { refused: new ConflictError(reason, { project: input.project, name }) };
      });
    if ('refused' in outcome) throw outcome.refused;
    return this.release(input.project, name);
  }

  /** Newest first: a run's outputs, a name's versions, or every artifact. */
  async list(query: { runId?: string | undefined; name?: string | undefined; limit?: number | undefined } = {}): Promise<ArtifactSummary[]> {
    const limit = checkLimit(query.limit);
    const db = this.deps.store.db;
    let rows: { digest: string; size: number; created_at: string; first_run_id: string | null; path?: string }[];
    if (query.runId !== undefined) {
      const run = await this.runOf(db, query.runId);
      const outputs = [...(await runOutputs(db, run.id)).values()].slice(0, limit);
      const known = outputs.length === 0 ? [] : await db.selectFrom('artifacts').selectAll().where('digest', 'in', outputs.map((o) => o.digest)).execute();
      rows = outputs.map((o) => {
        const k = known.find((r) => r.digest === o.digest);
        return { digest: o.digest, size: o.size, created_at: k?.created_at ?? '', first_run_id: k?.first_run_id ?? run.id, path: o.path };
      });
    } else if (query.name !== undefined) {
      const name = checkName(query.name);
      rows = await db.selectFrom('artifact_names').innerJoin('artifacts', 'artifacts.digest', 'artifact_names.digest').select(['artifacts.digest', 'artifacts.size', 'artifacts.created_at', 'artifacts.first_run_id']).where('artifact_names.name', '=', name).orderBy('artifact_names.created_at', 'desc').orderBy('artifact_names.version', 'desc').limit(limit).execute();
      rows = rows.filter((r, i) => rows.findIndex((x) => x.digest === r.digest) === i);
    } else {
      rows = await db.selectFrom('artifacts').selectAll().orderBy('created_at', 'desc').orderBy('digest').limit(limit).execute();
    }
    const digests = [...new Set(rows.map((r) => r.digest))];
    const names = digests.length === 0 ? [] : await db.selectFrom('artifact_names').select(['name', 'version', 'digest']).where('digest', 'in', digests).orderBy('name').orderBy('version').execute();
    return rows.map((r) => ({
      digest: r.digest,
      size: r.size,
      createdAt: r.created_at,
      firstRunId: r.first_run_id,
      ...(r.path === undefined ? {} : { path: r.path }),
      names: names.filter((n) => n.digest === r.digest).map((n) => `${n.name}@${n.version}`),
    }));
  }

  /** One artifact by digest or NAME@VERSION: size, names, producing run, releases holding it. */
  async show(ref: string): Promise<ArtifactDetail> {
    const digest = await this.digestOf(ref);
    const db = this.deps.store.db;
    const row = await this.artifactRow(db, digest);
    const run = row.first_run_id === null ? undefined : await db.selectFrom('runs').innerJoin('projects', 'projects.id', 'runs.project_id').select(['runs.id', 'runs.number', 'projects.name']).where('runs.id', '=', row.first_run_id).executeTakeFirst();
    const names = await db.selectFrom('artifact_names').selectAll().where('digest', '=', digest).orderBy('name').orderBy('version').execute();
    const releases = await db
      .selectFrom('release_artifacts')
      .innerJoin('releases', 'releases.id', 'release_artifacts.release_id')
      .innerJoin('projects', 'projects.id', 'releases.project_id')
      .select(['projects.name as project', 'releases.name', 'release_artifacts.path', 'releases.created_at'])
      .where('release_artifacts.digest', '=', digest)
      .orderBy('releases.created_at')
      .execute();
    return {
      digest,
      size: row.size,
      createdAt: row.created_at,
      producedBy: run === undefined ? null : { runId: run.id, project: run.name, runNumber: run.number },
      names: names.map(toName),
      releases: releases.map((r) => ({ project: r.project, name: r.name, path: r.path, createdAt: r.created_at })),
    };
  }

  async releases(project: string): Promise<ReleaseSummary[]> {
    const db = this.deps.store.db;
    const p = await db.selectFrom('projects').select(['id', 'name']).where('name', '=', project).executeTakeFirst();
    if (p === undefined) throw new NotFoundError(`no project ${project}`, { project });
    const rows = await db.selectFrom('releases').innerJoin('runs', 'runs.id', 'releases.run_id').select(['releases.id', 'releases.name', 'releases.run_id', 'runs.number', 'releases.created_at', 'releases.created_by']).where('releases.project_id', '=', p.id).orderBy('releases.created_at', 'desc').orderBy('releases.name').execute();
    const counts = rows.length === 0 ? [] : await db.selectFrom('release_artifacts').select(['release_id']).select((eb) => eb.fn.countAll<number>().as('n')).where('release_id', 'in', rows.map((r) => r.id)).groupBy('release_id').execute();
    return rows.map((r) => ({ id: r.id, project: p.name, name: r.name, runId: r.run_id, runNumber: r.number, createdAt: r.created_at, createdBy: r.created_by, artifactCount: counts.find((c) => c.release_id === r.id)?.n ?? 0 }));
  }

  async release(project: string, name: string): Promise<ReleaseDetail> {
    const db = this.deps.store.db;
    const r = await db
      .selectFrom('releases')
      .innerJoin('projects', 'projects.id', 'releases.project_id')
      .innerJoin('runs', 'runs.id', 'releases.run_id')
      .select(['releases.id', 'releases.name', 'releases.run_id', 'runs.number', 'releases.created_at', 'releases.created_by', 'projects.name as project'])
      .where('projects.name', '=', project)
      .where('releases.name', '=', name)
      .executeTakeFirst();
    if (r === undefined) throw new NotFoundError(`project ${project} has no release ${name}`, { project, name });
    const artifacts = await db.selectFrom('release_artifacts').innerJoin('artifacts', 'artifacts.digest', 'release_artifacts.digest').select(['release_artifacts.path', 'release_artifacts.digest', 'artifacts.size']).where('release_id', '=', r.id).orderBy('release_artifacts.path').execute();
    return { id: r.id, project: r.project, name: r.name, runId: r.run_id, runNumber: r.number, createdAt: r.created_at, createdBy: r.created_by, artifacts: artifacts.map((a) => ({ path: a.path, digest: a.digest, size: a.size })) };
  }

  /** Re-hash every stored byte. Never trusts the store's word: the hash is computed here. */
  private async check(digest: string, expectedSize: number): Promise<Finding> {
    const info = await this.deps.objects.stat(digest);
    if (info === undefined) return { ok: false, reason: 'blob_missing' };
    const hash = createHash('sha256');
    let size = 0;
    try {
      for await (const chunk of await this.deps.objects.open(digest)) {
        const b = chunk as Buffer;
        hash.update(b);
        size += b.length;
      }
    } catch (err) {
      if (isAirlockError(err) && err.code === 'NOT_FOUND') return { ok: false, reason: 'blob_missing' };
      // The store's own check fired; an erroring stream may drop its last buffered chunk, so
      // the store's figure (over every byte) is the one to report.
      if (!isCorruptionError(err)) throw err;
      return { ok: false, reason: 'blob_corrupt', ...storeActual(err), expectedSize, actualSize: info.size };
    }
    const actual = `sha256:${hash.digest('hex')}`;
    if (actual !== digest) return { ok: false, reason: 'blob_corrupt', actual, expectedSize, actualSize: size };
    return { ok: true };
  }

  private async recordFailure(actor: Actor, action: string, digest: string, finding: Exclude<Finding, { ok: true }>, context: RequestContext | undefined): Promise<AirlockError> {
    const err = integrityError(digest, finding.reason, { ...(finding.actual === undefined ? {} : { actual: finding.actual }), ...(finding.expectedSize === undefined ? {} : { expectedSize: finding.expectedSize }), ...(finding.actualSize === undefined ? {} : { actualSize: finding.actualSize }) });
    const details: Record<string, JsonValue> = { digest, reason: finding.reason };
    if (finding.actual !== undefined) details.actual = finding.actual;
    if (finding.expectedSize !== undefined) details.expectedSize = finding.expectedSize;
    if (finding.actualSize !== undefined) details.actualSize = finding.actualSize;
    await this.deps.store.transact((tx) => this.deps.audit.record(tx, { actor, action, resource: `artifacts/${digest}`, outcome: 'failed', reason: `${finding.reason}: ${err.message}`.slice(0, 1000), context, details }));
    return err;
  }

  /**
   * Re-hash the stored bytes of an artifact. A missing or corrupt blob is recorded as a failed
   * `artifacts.verify` and thrown as INTEGRITY_FAILED (`details.reason`: blob_missing | blob_corrupt).
   */
  async verify(actor: Actor, ref: string, context?: RequestContext): Promise<VerifyResult> {
    const digest = await this.digestOf(ref);
    const row = await this.artifactRow(this.deps.store.db, digest);
    const size = row.size;
    const finding = await this.check(digest, size);
    if (!finding.ok) throw await this.recordFailure(actor, 'artifacts.verify', digest, finding, context);
    const verifiedAt = this.now();
    await this.deps.store.transact((tx) => this.deps.audit.record(tx, { actor, action: 'artifacts.verify', resource: `artifacts/${digest}`, outcome: 'allowed', context, details: { digest, size } }));
    return { digest, size, ok: true, verifiedAt };
  }

  /**
   * Open an artifact for download; the read is recorded before any byte leaves. A missing blob,
   * or one whose size differs from the record, is refused at once (recorded as a failed
   * `artifacts.read`); otherwise the stream re-hashes as it goes and, if the bytes do not
   * match, errors at its end with INTEGRITY_FAILED after recording the failure. A consumer
   * must not act on the bytes before the stream has ended cleanly.
   */
  async open(actor: Actor, ref: string, context?: RequestContext): Promise<ArtifactDownload> {
    const digest = await this.digestOf(ref);
    const row = await this.artifactRow(this.deps.store.db, digest);
    const size = row.size;
    const info = await this.deps.objects.stat(digest);
    if (info === undefined) throw await this.recordFailure(actor, 'artifacts.read', digest, { ok: false, reason: 'blob_missing' }, context);
    if (info.size !== size) throw await this.recordFailure(actor, 'artifacts.read', digest, { ok: false, reason: 'blob_corrupt', expectedSize: size, actualSize: info.size }, context);
    let source: Readable;
    try {
      source = await this.deps.objects.open(digest);
    } catch (err) {
      if (isAirlockError(err) && err.code === 'NOT_FOUND') throw await this.recordFailure(actor, 'artifacts.read', digest, { ok: false, reason: 'blob_missing' }, context);
      throw err;
    }
    try {
      await this.deps.store.transact((tx) => this.deps.audit.record(tx, { actor, action: 'artifacts.read', resource: `artifacts/${digest}`, outcome: 'allowed', context, details: { digest, size } }));
    } catch (err) {
      source.destroy();
      throw err;
    }
    const guarded = async function* (this: Artifacts): AsyncGenerator<Buffer> {
      const hash = createHash('sha256');
      let read = 0;
      try {
        for await (const chunk of source) {
          const b = chunk as Buffer;
          hash.update(b);
          read += b.length;
          yield b;
        }
      } catch (err) {
        if (!isCorruptionError(err)) throw err;
        throw await this.recordFailure(actor, 'artifacts.read', digest, { ok: false, reason: 'blob_corrupt', ...storeActual(err), expectedSize: size }, context);
      }
      const actual = `sha256:${hash.digest('hex')}`;
      if (actual !== digest) throw await this.recordFailure(actor, 'artifacts.read', digest, { ok: false, reason: 'blob_corrupt', actual, expectedSize: size, actualSize: read }, context);
    }.call(this);
    return { digest, size, stream: Readable.from(guarded, { objectMode: false }) };
  }
}

function toName(r: { name: string; version: string; digest: string; run_id: string | null; path: string | null; created_at: string; created_by: string }): ArtifactName {
  return { name: r.name, version: r.version, digest: r.digest, runId: r.run_id, path: r.path, createdAt: r.created_at, createdBy: r.created_by };
}
