/**
 * Runs: one project at one commit, from trigger to verdict. Every state change of a run, stage
 * or step is a row update plus an audit event in one transaction, carrying the run's trace id.
 * The scheduler (`advance`) is a pure function of the stored state, so any replica can drive
 * any run, and a restart loses nothing but in-flight work, which the lease reaper ends.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import { AirlockError, ConflictError, NotFoundError, ValidationError } from '../errors/index.js';
import { PipelineInvalidError, parsePipeline, scanForCredentials } from '../pipeline/index.js';
import type { PipelineDefinition, SecretUse, StepDefinition } from '../pipeline/index.js';
import type { JsonValue } from '../audit/index.js';
import { sql } from 'kysely';
import type { Tx } from '../storage/index.js';
import type { Actor, RunContext, RunsDeps } from './deps.js';
import { actorRecord, iso, newId } from './deps.js';
import type { CommitInfo } from './git.js';
import type { Projects } from './projects.js';

export type RunState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export type StepState = 'pending' | 'queued' | 'running' | 'succeeded' | 'failed' | 'timed_out' | 'refused' | 'cancelled' | 'skipped' | 'lost';

const TERMINAL_STEP: ReadonlySet<string> = new Set(['succeeded', 'failed', 'timed_out', 'refused', 'cancelled', 'skipped', 'lost']);
const FAILED_STEP: ReadonlySet<string> = new Set(['failed', 'timed_out', 'refused', 'lost']);

/** Default lease a runner must renew (heartbeat) while a step runs; past it the step is lost. */
export const LEASE_MS = 30_000;

/** Output kept per step attempt for `airlock logs` (the runner keeps its own capped copy too). */
export const MAX_STORED_LOG_BYTES = 16 * 1024 * 1024;

export interface StartRunInput {
  readonly project: string;
  readonly ref?: string | undefined;
  readonly reason?: string | undefined;
  readonly params?: Readonly<Record<string, string>> | undefined;
}

export interface StepOutput {
  readonly path: string;
  readonly digest: string;
  readonly size: number;
}

/** Everything a runner needs to execute one step attempt (and nothing of any other job). */
export interface Job {
  readonly stepId: string;
  readonly runId: string;
  readonly runNumber: number;
  readonly project: string;
  readonly pipeline: string;
  readonly stage: string;
  readonly step: string;
  readonly attempt: number;
  readonly commit: string;
  /** The ref the run was started from, as given (a branch name, tag or HEAD). */
  readonly ref: string;
  readonly traceId: string;
  readonly command: string;
  /** Declared variables only; the runner adds AIRLOCK_* (run, commit, token). */
  readonly env: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly inputs: readonly { readonly path: string; readonly digest: string }[];
  readonly outputs: readonly string[];
  readonly requires: Readonly<Record<string, string>>;
  readonly network: boolean;
  readonly environment: string | undefined;
  /** The secrets the step declared and how each is injected: released at the moment it starts, and nothing else. */
  readonly secrets: readonly SecretUse[];
}

/** A step attempt as a secret release sees it (see {@link Runs.releaseView}). */
export interface ReleaseView {
  readonly stepId: string;
  readonly runId: string;
  readonly project: string;
  readonly pipeline: string;
  readonly stage: string;
  readonly step: string;
  readonly state: StepState;
  readonly runner: string | null;
  readonly ref: string;
  readonly commit: string;
  readonly traceId: string;
  readonly environment: string | undefined;
  readonly environmentProtected: boolean;
  readonly secrets: readonly SecretUse[];
}

/** What a runner reports when a step attempt ends. */
export interface StepReport {
  readonly status: 'succeeded' | 'failed' | 'timed_out' | 'cancelled' | 'refused';
  readonly exitCode: number | null;
  readonly reason: string | undefined;
  readonly outputs: readonly StepOutput[];
  /** Fingerprint, log digests, the signed link record: kept as the step's evidence. */
  readonly evidence: JsonValue;
}

export interface RunSummary {
  readonly id: string;
  readonly number: number;
  readonly project: string;
  readonly pipeline: string;
  readonly ref: string;
  readonly commit: string;
  readonly state: RunState;
  readonly reason: string | null;
  readonly triggeredBy: string;
  readonly createdAt: string;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
}

export interface StepView {
  readonly id: string;
  readonly stage: string;
  readonly step: string;
  readonly attempt: number;
  readonly state: StepState;
  readonly runner: string | null;
  readonly reason: string | null;
  readonly exitCode: number | null;
  readonly queuedAt: string | null;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  readonly result: JsonValue | null;
}

export interface RunDetail extends RunSummary {
  readonly traceId: string;
  readonly commitInfo: CommitInfo;
  readonly trigger: JsonValue;
  readonly pipelineDigest: string;
  readonly stages: readonly { readonly name: string; readonly state: string; readonly startedAt: string | null; readonly finishedAt: string | null; readonly steps: readonly StepView[] }[];
}

type StepRow = Awaited<ReturnType<typeof loadSteps>>[number];

function loadSteps(tx: Pick<Tx, 'db'>, runId: string) {
  return tx.db.selectFrom('run_steps').selectAll().where('run_id', '=', runId).orderBy('position').orderBy('attempt').execute();
}

/**
 * A step's declared secrets as stored in a run's pipeline JSON. Runs started before secrets
 * could be files stored bare names: those were, and stay, environment variables.
 */
function secretUsesOf(stored: readonly (SecretUse | string)[]): SecretUse[] {
  return stored.map((s) => (typeof s === 'string' ? { name: s, as: 'env' } : { name: s.name, as: s.as === 'file' ? 'file' : 'env' }));
}

/** Latest attempt of each step. */
function latest(rows: readonly StepRow[]): Map<string, StepRow> {
  const m = new Map<string, StepRow>();
  for (const r of rows) {
    const key = `${r.stage}\u0000${r.step}`;
    const seen = m.get(key);
    if (seen === undefined || seen.attempt < r.attempt) m.set(key, r);
  }
  return m;
}

const PARAM_KEY = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;

export class Runs {
  /** Called after a commit that queued work (wakes the embedded runner and waiting agents). */
  private readonly listeners: (() => void)[] = [];
  private readonly succeededHooks: { prepare(): Promise<void>; attest(tx: Tx, runId: string): Promise<void> }[] = [];
  /** Bytes of output stored per running step attempt (dropped when the step completes). */
  private readonly storedBytes = new Map<string, number>();

  constructor(
    private readonly deps: RunsDeps,
    private readonly projects: Projects,
    /** How long a runner may go without a heartbeat before its step is lost. */
    readonly leaseMs: number = LEASE_MS,
  ) {}

  onWork(listener: () => void): void {
    this.listeners.push(listener);
  }

  /**
   * Attestation of a run that succeeds, in the transaction that ends it: the run and its
   * evidence become visible together (the control plane writes it, never a step). `prepare`
   * runs before that transaction (it may need its own, e.g. to create a signing key); `attest`
   * must not throw for anything but a storage failure.
   */
  onSucceeded(hook: { prepare(): Promise<void>; attest(tx: Tx, runId: string): Promise<void> }): void {
    this.succeededHooks.push(hook);
  }

  /** What provenance needs about a run: its record, its pipeline, its repository and source tree. */
  async evidenceView(runId: string, via: Pick<Tx, 'db'> = this.deps.store): Promise<{ run: RunDetail; pipeline: PipelineDefinition; repository: string; sourceDir: string }> {
    const run = await this.show(runId, via);
    const row = await via.db.selectFrom('runs').innerJoin('projects', 'projects.id', 'runs.project_id').select(['runs.pipeline_json', 'projects.repo']).where('runs.id', '=', runId).executeTakeFirstOrThrow();
    return { run, pipeline: JSON.parse(row.pipeline_json) as PipelineDefinition, repository: row.repo, sourceDir: this.sourceDir(runId) };
  }

  private notify(): void {
    for (const l of this.listeners) l();
  }

  /** Resolve the ref, read airlock.yaml from that commit, export the tree, record the run. */
  async start(actor: Actor, input: StartRunInput, context: RunContext = {}): Promise<RunDetail> {
    const project = await this.projects.get(input.project);
    const params = input.params ?? {};
    for (const [k, v] of Object.entries(params)) {
      if (!PARAM_KEY.test(k) || v.length > 1000) throw new ValidationError(`parameter "${k.slice(0, 64)}" is invalid: names are letters, digits, "_", ".", "-"; values at most 1000 characters`, [{ path: `params.${k.slice(0, 64)}`, message: 'invalid' }]);
    }
    const reason = input.reason?.trim();
    if (reason !== undefined && reason.length > 1000) throw new ValidationError('reason must be at most 1000 characters', [{ path: 'reason', message: 'too long' }]);
    const ref = input.ref ?? 'HEAD';
    const mirror = await this.deps.git.sync(project.id, project.repo);
    const sha = await this.deps.git.resolve(mirror, ref);
    const file = await this.deps.git.readFile(mirror, sha, 'airlock.yaml');
    if (file === undefined) throw new ValidationError(`commit ${sha.slice(0, 12)} of ${project.name} has no airlock.yaml at its root`, [{ path: 'airlock.yaml', message: 'missing' }]);
    const where = `airlock.yaml@${sha.slice(0, 12)}`;
    const pipeline: PipelineDefinition = parsePipeline(file, where);
    // A credential written into the pipeline is refused at run time too, not only by `airlock lint`.
    const leaks = scanForCredentials(file, where);
    if (leaks.length > 0) throw new PipelineInvalidError(where, leaks);
    const commitInfo = await this.deps.git.commit(mirror, sha);
    const runId = newId();
    await this.deps.git.exportTree(mirror, sha, this.sourceDir(runId));
    const traceId = context.traceId ?? randomBytes(16).toString('hex');
    const ctx = { ...context, traceId };
    const trigger = { actor: { kind: actor.kind, id: actor.id }, kind: 'manual', reason: reason ?? null, params, requestId: context.requestId ?? null };
    try {
      await this.deps.store.transact(async (tx) => {
        const last = await tx.db.selectFrom('runs').select((eb) => eb.fn.max('number').as('n')).where('project_id', '=', project.id).executeTakeFirst();
        const number = (last?.n ?? 0) + 1;
        const now = iso(this.deps.clock());
        await tx.db
          .insertInto('runs')
          .values({
            id: runId,
            project_id: project.id,
            number,
            ref,
            commit_sha: sha,
            commit_json: JSON.stringify(commitInfo),
            pipeline_name: pipeline.name,
            pipeline_digest: pipeline.digest,
            pipeline_json: JSON.stringify(pipeline),
            trigger_json: JSON.stringify(trigger),
            trace_id: traceId,
            state: 'queued',
            reason: null,
            created_at: now,
            started_at: null,
            finished_at: null,
          })
          .execute();
        let position = 0;
        for (const [i, stage] of pipeline.stages.entries()) {
          await tx.db.insertInto('run_stages').values({ run_id: runId, stage: stage.name, position: i, state: 'pending', started_at: null, finished_at: null }).execute();
          for (const step of stage.steps) {
            await tx.db.insertInto('run_steps').values(this.stepRow(runId, stage.name, step, position++, 1, 'pending')).execute();
          }
        }
        await actorRecord(this.deps, tx, {
          actor,
          action: 'runs.create',
          resource: `runs/${runId}`,
          context: ctx,
          details: { project: project.name, number, ref, commit: sha, author: commitInfo.author.email, committer: commitInfo.committer.email, pipeline: pipeline.name, pipelineDigest: pipeline.digest, reason: reason ?? null, params },
        });
        await this.advance(tx, runId);
      });
    } catch (err) {
      await rm(this.sourceDir(runId), { recursive: true, force: true });
      throw err;
    }
    this.notify();
    return this.show(runId);
  }

  private stepRow(runId: string, stage: string, step: StepDefinition, position: number, attempt: number, state: StepState) {
    return {
      id: newId(),
      run_id: runId,
      stage,
      step: step.name,
      position,
      attempt,
      state,
      labels: JSON.stringify([...step.runsOn].sort()),
      runner: null,
      lease_expires_at: null,
      reason: null,
      exit_code: null,
      result_json: null,
      queued_at: state === 'queued' ? iso(this.deps.clock()) : null,
      started_at: null,
      finished_at: null,
    };
  }

  /** The exported tree of the run's commit (read-only source for every step). */
  sourceDir(runId: string): string {
    return join(this.deps.runsDir, runId, 'source');
  }

  /**
   * Move a run forward from its stored state: start stages whose needs succeeded, skip those
   * whose needs did not, retry idempotent steps, finish stages and the run. Idempotent.
   */
  async advance(tx: Tx, runId: string): Promise<void> {
    const run = await tx.db.selectFrom('runs').selectAll().where('id', '=', runId).executeTakeFirstOrThrow();
    if (run.state === 'succeeded' || run.state === 'failed' || run.state === 'cancelled') return;
    const pipeline = JSON.parse(run.pipeline_json) as PipelineDefinition;
    const system: Actor = { kind: 'system', id: 'scheduler' };
    const ctx = { traceId: run.trace_id };
    const now = iso(this.deps.clock());
    if (run.state === 'queued') {
      await tx.db.updateTable('runs').set({ state: 'running', started_at: now }).where('id', '=', runId).execute();
      await actorRecord(this.deps, tx, { actor: system, action: 'runs.start', resource: `runs/${runId}`, context: ctx });
    }
    const stages = await tx.db.selectFrom('run_stages').selectAll().where('run_id', '=', runId).execute();
    const stageState = new Map(stages.map((s) => [s.stage, s.state]));
    let steps = latest(await loadSteps(tx, runId));

    for (let changed = true; changed; ) {
      changed = false;
      for (const stage of pipeline.stages) {
        const state = stageState.get(stage.name);
        const mine = stage.steps.map((s) => steps.get(`${stage.name}\u0000${s.name}`)).filter((r): r is StepRow => r !== undefined);
        if (state === 'pending') {
          const needs = stage.needs.map((n) => stageState.get(n));
          if (needs.every((n) => n === 'succeeded')) {
            await tx.db.updateTable('run_stages').set({ state: 'running', started_at: now }).where('run_id', '=', runId).where('stage', '=', stage.name).execute();
            await actorRecord(this.deps, tx, { actor: system, action: 'runs.stage.start', resource: `runs/${runId}/stages/${stage.name}`, context: ctx });
            for (const r of mine) {
              await tx.db.updateTable('run_steps').set({ state: 'queued', queued_at: now }).where('id', '=', r.id).execute();
              await actorRecord(this.deps, tx, { actor: system, action: 'runs.step.queue', resource: `runs/${runId}/steps/${r.id}`, context: ctx, details: { stage: stage.name, step: r.step, attempt: r.attempt } });
            }
            stageState.set(stage.name, 'running');
            changed = true;
          } else if (needs.some((n) => n !== undefined && n !== 'pending' && n !== 'running' && n !== 'succeeded')) {
            await tx.db.updateTable('run_stages').set({ state: 'skipped', finished_at: now }).where('run_id', '=', runId).where('stage', '=', stage.name).execute();
            await tx.db.updateTable('run_steps').set({ state: 'skipped', finished_at: now }).where('run_id', '=', runId).where('stage', '=', stage.name).where('state', '=', 'pending').execute();
            await actorRecord(this.deps, tx, { actor: system, action: 'runs.stage.finish', resource: `runs/${runId}/stages/${stage.name}`, context: ctx, details: { state: 'skipped', because: 'a stage it needs did not succeed' } });
            stageState.set(stage.name, 'skipped');
            changed = true;
          }
        } else if (state === 'running') {
          // Retry failed idempotent steps while retries remain.
          for (const r of mine) {
            const def = stage.steps.find((s) => s.name === r.step);
            if (def !== undefined && FAILED_STEP.has(r.state) && def.idempotent && r.attempt <= def.retries) {
              const row = this.stepRow(runId, stage.name, def, r.position, r.attempt + 1, 'queued');
              await tx.db.insertInto('run_steps').values(row).execute();
              await actorRecord(this.deps, tx, { actor: system, action: 'runs.step.queue', resource: `runs/${runId}/steps/${row.id}`, context: ctx, details: { stage: stage.name, step: r.step, attempt: row.attempt, retryOf: r.id, previous: r.state } });
              changed = true;
            }
          }
          if (changed) {
            steps = latest(await loadSteps(tx, runId));
            continue;
          }
          if (mine.every((r) => TERMINAL_STEP.has(r.state))) {
            const verdict = mine.every((r) => r.state === 'succeeded') ? 'succeeded' : mine.some((r) => r.state === 'cancelled') && !mine.some((r) => FAILED_STEP.has(r.state)) ? 'cancelled' : 'failed';
            await tx.db.updateTable('run_stages').set({ state: verdict, finished_at: now }).where('run_id', '=', runId).where('stage', '=', stage.name).execute();
            await actorRecord(this.deps, tx, { actor: system, action: 'runs.stage.finish', resource: `runs/${runId}/stages/${stage.name}`, context: ctx, details: { state: verdict } });
            stageState.set(stage.name, verdict);
            changed = true;
          }
        }
      }
    }
    const all = [...stageState.values()];
    if (all.every((s) => s !== 'pending' && s !== 'running')) {
      const verdict: RunState = all.every((s) => s === 'succeeded') ? 'succeeded' : all.includes('cancelled') && !all.includes('failed') ? 'cancelled' : 'failed';
      const failedSteps = [...steps.values()].filter((r) => FAILED_STEP.has(r.state)).map((r) => `${r.stage}/${r.step}: ${r.reason ?? r.state}`);
      const reason = verdict === 'failed' ? failedSteps.join('; ').slice(0, 1000) || 'a stage failed' : null;
      await tx.db.updateTable('runs').set({ state: verdict, finished_at: now, reason }).where('id', '=', runId).execute();
      await actorRecord(this.deps, tx, { actor: system, action: 'runs.finish', resource: `runs/${runId}`, context: ctx, details: { state: verdict, reason } });
    }
  }

  /**
   * Give the oldest queued step whose labels the runner has to `runner`. Conditional update,
   * so two runners (or replicas) never take the same job.
   */
  async claim(runner: { name: string; labels: readonly string[] }): Promise<Job | undefined> {
    const candidates = await this.deps.store.db.selectFrom('run_steps').select(['id', 'labels']).where('state', '=', 'queued').orderBy('queued_at').limit(50).execute();
    const have = new Set(runner.labels);
    for (const c of candidates) {
      const want = JSON.parse(c.labels) as string[];
      if (!want.every((l) => have.has(l))) continue;
      const job = await this.deps.store.transact(async (tx) => {
        const now = this.deps.clock();
        const taken = await tx.db
          .updateTable('run_steps')
          .set({ state: 'running', runner: runner.name, started_at: iso(now), lease_expires_at: iso(new Date(now.getTime() + this.leaseMs)) })
          .where('id', '=', c.id)
          .where('state', '=', 'queued')
          .executeTakeFirst();
        if (Number(taken.numUpdatedRows) !== 1) return undefined;
        const built = await this.jobFor(tx, c.id);
        await actorRecord(this.deps, tx, { actor: { kind: 'system', id: runner.name }, action: 'runs.step.start', resource: `runs/${built.runId}/steps/${c.id}`, context: { traceId: built.traceId }, details: { stage: built.stage, step: built.step, attempt: built.attempt, runner: runner.name, inputs: built.inputs.map((i) => ({ path: i.path, digest: i.digest })) } });
        return built;
      });
      if (job !== undefined) return job;
    }
    return undefined;
  }

  /** The job of a step as its runner was given it (remote-runner routes check inputs and reports against it). */
  async job(stepId: string): Promise<Job> {
    const row = await this.deps.store.db.selectFrom('run_steps').select('id').where('id', '=', stepId).executeTakeFirst();
    if (row === undefined) throw new NotFoundError(`no step ${stepId}`);
    return this.deps.store.transact((tx) => this.jobFor(tx, stepId));
  }

  private async jobFor(tx: Pick<Tx, 'db'>, stepId: string): Promise<Job> {
    const row = await tx.db.selectFrom('run_steps').selectAll().where('id', '=', stepId).executeTakeFirstOrThrow();
    const run = await tx.db.selectFrom('runs').innerJoin('projects', 'projects.id', 'runs.project_id').selectAll('runs').select('projects.name as project').where('runs.id', '=', row.run_id).executeTakeFirstOrThrow();
    const pipeline = JSON.parse(run.pipeline_json) as PipelineDefinition;
    const stage = pipeline.stages.find((s) => s.name === row.stage);
    const def = stage?.steps.find((s) => s.name === row.step);
    if (stage === undefined || def === undefined) throw new AirlockError('INTERNAL', `step ${row.stage}/${row.step} is not in the run's pipeline`);
    // Inputs: the digests recorded when the producing step output them.
    const produced = new Map<string, string>();
    for (const r of await loadSteps(tx, row.run_id)) {
      if (r.state !== 'succeeded' || r.result_json === null) continue;
      const result = JSON.parse(r.result_json) as { outputs?: StepOutput[] };
      for (const o of result.outputs ?? []) produced.set(o.path, o.digest);
    }
    const inputs = def.inputs.map((path) => {
      const digest = produced.get(path);
      if (digest === undefined) throw new AirlockError('INTERNAL', `input ${path} of ${row.stage}/${row.step} was not produced`);
      return { path, digest };
    });
    return {
      stepId,
      runId: run.id,
      runNumber: run.number,
      project: run.project,
      pipeline: pipeline.name,
      stage: row.stage,
      step: row.step,
      attempt: row.attempt,
      commit: run.commit_sha,
      ref: run.ref,
      traceId: run.trace_id,
      command: def.run,
      env: { ...def.env },
      timeoutMs: def.timeoutSeconds * 1000,
      inputs,
      outputs: [...def.outputs],
      requires: { ...def.requires },
      network: def.network,
      environment: stage.environment,
      secrets: secretUsesOf(def.secrets),
    };
  }

  /**
   * What a secret release must know about a step attempt: who holds it and in what state, what
   * it declared, and where its stage deploys. One read on the read connection: a release must
   * not wait for a commit of its own here.
   */
  async releaseView(stepId: string): Promise<ReleaseView> {
    const row = await this.deps.store.db
      .selectFrom('run_steps')
      .innerJoin('runs', 'runs.id', 'run_steps.run_id')
      .innerJoin('projects', 'projects.id', 'runs.project_id')
      .select(['run_steps.state', 'run_steps.runner', 'run_steps.stage', 'run_steps.step', 'runs.id as runId', 'runs.ref', 'runs.commit_sha', 'runs.trace_id', 'runs.pipeline_json', 'projects.name as project'])
      .where('run_steps.id', '=', stepId)
      .executeTakeFirst();
    if (row === undefined) throw new NotFoundError(`no step ${stepId}`);
    const pipeline = JSON.parse(row.pipeline_json) as PipelineDefinition;
    const stage = pipeline.stages.find((s) => s.name === row.stage);
    const def = stage?.steps.find((s) => s.name === row.step);
    if (stage === undefined || def === undefined) throw new AirlockError('INTERNAL', `step ${row.stage}/${row.step} is not in the run's pipeline`);
    const environment = stage.environment;
    return {
      stepId,
      runId: row.runId,
      project: row.project,
      pipeline: pipeline.name,
      stage: row.stage,
      step: row.step,
      state: row.state as StepState,
      runner: row.runner,
      ref: row.ref,
      commit: row.commit_sha,
      traceId: row.trace_id,
      environment,
      environmentProtected: environment !== undefined && pipeline.environments[environment]?.protected === true,
      secrets: secretUsesOf(def.secrets),
    };
  }

  /** Renew the lease of a running step; false if it is no longer this runner's (lost, cancelled). */
  async heartbeat(stepId: string, runner: string): Promise<{ ok: boolean; cancel: boolean }> {
    const row = await this.deps.store.db.selectFrom('run_steps').innerJoin('runs', 'runs.id', 'run_steps.run_id').select(['run_steps.state', 'run_steps.runner', 'runs.state as runState']).where('run_steps.id', '=', stepId).executeTakeFirst();
    if (row === undefined || row.runner !== runner || row.state !== 'running') return { ok: false, cancel: true };
    await this.deps.store.transact(async (tx) => {
      await tx.db.updateTable('run_steps').set({ lease_expires_at: iso(new Date(this.deps.clock().getTime() + this.leaseMs)) }).where('id', '=', stepId).where('state', '=', 'running').execute();
    });
    return { ok: true, cancel: row.runState === 'cancelled' };
  }

  /**
   * A runner reports the end of a step it holds. Refused when the step is not running on this
   * runner (an untrusted agent reporting someone else's job), or when an output is undeclared.
   */
  async complete(stepId: string, runner: string, report: StepReport): Promise<void> {
    this.storedBytes.delete(stepId);
    const row = await this.deps.store.db.selectFrom('run_steps').selectAll().where('id', '=', stepId).executeTakeFirst();
    if (row === undefined) throw new NotFoundError(`no step ${stepId}`);
    if (row.runner !== runner || row.state !== 'running') throw new ConflictError(`step ${stepId} is not running on ${runner}`, { stepId });
    const job = await this.deps.store.transact((tx) => this.jobFor(tx, stepId));
    for (const o of report.outputs) {
      if (!job.outputs.includes(o.path)) throw new ValidationError(`output ${o.path} is not declared by ${job.stage}/${job.step}`, [{ path: 'outputs', message: `undeclared ${o.path}` }]);
    }
    for (const h of this.succeededHooks) await h.prepare();
    await this.deps.store.transact(async (tx) => {
      const now = iso(this.deps.clock());
      const done = await tx.db
        .updateTable('run_steps')
        .set({ state: report.status, finished_at: now, exit_code: report.exitCode, reason: report.reason ?? null, lease_expires_at: null, result_json: JSON.stringify({ outputs: report.outputs, evidence: report.evidence }) })
        .where('id', '=', stepId)
        .where('state', '=', 'running')
        .where('runner', '=', runner)
        .executeTakeFirst();
      if (Number(done.numUpdatedRows) !== 1) throw new ConflictError(`step ${stepId} is no longer running on ${runner}`, { stepId });
      await actorRecord(this.deps, tx, {
        actor: { kind: 'system', id: runner },
        action: 'runs.step.finish',
        resource: `runs/${job.runId}/steps/${stepId}`,
        outcome: report.status === 'succeeded' ? 'allowed' : 'failed',
        reason: report.status === 'succeeded' ? undefined : `${report.status}: ${report.reason ?? ''}`.slice(0, 1000),
        context: { traceId: job.traceId },
        details: { stage: job.stage, step: job.step, attempt: job.attempt, status: report.status, exitCode: report.exitCode, outputs: report.outputs.map((o) => ({ path: o.path, digest: o.digest })) },
      });
      await this.advance(tx, job.runId);
      const run = await tx.db.selectFrom('runs').select('state').where('id', '=', job.runId).executeTakeFirst();
      if (run?.state === 'succeeded') for (const h of this.succeededHooks) await h.attest(tx, job.runId);
    });
    this.notify();
  }

  /** End steps whose runner stopped renewing its lease (agent killed, server restarted). */
  async reapLost(): Promise<number> {
    const now = this.deps.clock();
    const expired = await this.deps.store.db.selectFrom('run_steps').select(['id', 'run_id', 'runner']).where('state', '=', 'running').where('lease_expires_at', '<', iso(now)).execute();
    for (const e of expired) {
      await this.deps.store.transact(async (tx) => {
        const lost = await tx.db
          .updateTable('run_steps')
          .set({ state: 'lost', finished_at: iso(now), lease_expires_at: null, reason: `runner ${e.runner ?? '?'} stopped renewing its lease` })
          .where('id', '=', e.id)
          .where('state', '=', 'running')
          .executeTakeFirst();
        if (Number(lost.numUpdatedRows) !== 1) return;
        const run = await tx.db.selectFrom('runs').select('trace_id').where('id', '=', e.run_id).executeTakeFirstOrThrow();
        await actorRecord(this.deps, tx, { actor: { kind: 'system', id: 'scheduler' }, action: 'runs.step.finish', resource: `runs/${e.run_id}/steps/${e.id}`, outcome: 'failed', reason: `lost: runner ${e.runner ?? '?'} stopped renewing its lease`, context: { traceId: run.trace_id }, details: { status: 'lost', runner: e.runner } });
        await this.advance(tx, e.run_id);
      });
    }
    if (expired.length > 0) this.notify();
    return expired.length;
  }

  async cancel(actor: Actor, runId: string, reason: string | undefined, context: RunContext = {}): Promise<RunDetail> {
    await this.deps.store.transact(async (tx) => {
      const run = await tx.db.selectFrom('runs').select(['state', 'trace_id']).where('id', '=', runId).executeTakeFirst();
      if (run === undefined) throw new NotFoundError(`no run ${runId}`);
      if (run.state !== 'queued' && run.state !== 'running') throw new ConflictError(`run ${runId} has already ended (${run.state})`);
      const now = iso(this.deps.clock());
      await tx.db.updateTable('run_steps').set({ state: 'cancelled', finished_at: now }).where('run_id', '=', runId).where('state', 'in', ['pending', 'queued']).execute();
      await tx.db.updateTable('run_stages').set({ state: 'cancelled', finished_at: now }).where('run_id', '=', runId).where('state', 'in', ['pending', 'running']).execute();
      await tx.db.updateTable('runs').set({ state: 'cancelled', finished_at: now, reason: `cancelled by ${actor.id}${reason === undefined ? '' : `: ${reason}`}`.slice(0, 1000) }).where('id', '=', runId).execute();
      await actorRecord(this.deps, tx, { actor, action: 'runs.cancel', resource: `runs/${runId}`, context: { ...context, traceId: run.trace_id }, details: { reason: reason ?? null } });
    });
    this.notify();
    return this.show(runId);
  }

  /**
   * Append chunks of a step's output (stored for `airlock logs`). At most MAX_STORED_LOG_BYTES
   * per step attempt are kept; then one marker line says how much was dropped, so a step
   * printing gigabytes cannot fill the database. (The full stream's digest is in the link.)
   */
  async appendLog(stepId: string, chunks: readonly { stream: 'stdout' | 'stderr'; data: Buffer }[]): Promise<void> {
    if (chunks.length === 0) return;
    try {
      await this.appendLogUnit(stepId, chunks);
    } catch (err) {
      this.storedBytes.delete(stepId);
      throw err;
    }
  }

  private appendLogUnit(stepId: string, chunks: readonly { stream: 'stdout' | 'stderr'; data: Buffer }[]): Promise<void> {
    return this.deps.store.transact(async (tx) => {
      const agg = await tx.db
        .selectFrom('run_logs')
        .select((eb) => eb.fn.max('seq').as('s'))
        .where('step_id', '=', stepId)
        .executeTakeFirst();
      // The byte count is read once per step and then kept here: summing every stored chunk on
      // each append made a long log quadratic. seq still comes from the (indexed) table, so
      // appends through several replicas never collide; the cap may then overshoot slightly.
      const stored = this.storedBytes.get(stepId) ?? (await this.storedLogBytes(tx, stepId));
      let seq = agg?.s ?? -1;
      let room = MAX_STORED_LOG_BYTES - stored;
      if (room <= 0) {
        this.storedBytes.set(stepId, stored);
        return;
      }
      const at = iso(this.deps.clock());
      let dropped = 0;
      for (const c of chunks) {
        if (room <= 0) {
          dropped += c.data.length;
          continue;
        }
        const data = c.data.length > room ? c.data.subarray(0, room) : c.data;
        dropped += c.data.length - data.length;
        room -= data.length;
        seq += 1;
        await tx.db.insertInto('run_logs').values({ step_id: stepId, seq, stream: c.stream, data, at }).execute();
      }
      if (room <= 0) {
        seq += 1;
        const marker = Buffer.from(`\n[airlock: stored output truncated after ${MAX_STORED_LOG_BYTES} bytes; ${dropped > 0 ? `at least ${dropped} more bytes dropped` : 'further output dropped'}]\n`);
        await tx.db.insertInto('run_logs').values({ step_id: stepId, seq, stream: 'stderr', data: marker, at }).execute();
      }
      this.storedBytes.set(stepId, MAX_STORED_LOG_BYTES - room);
    });
  }

  private async storedLogBytes(tx: Tx, stepId: string): Promise<number> {
    const row = await tx.db
      .selectFrom('run_logs')
      .select(sql<number>`coalesce(sum(length(data)), 0)`.as('bytes'))
      .where('step_id', '=', stepId)
      .executeTakeFirst();
    return row?.bytes ?? 0;
  }

  /** Log chunks of a run after `afterId` (the last chunk id seen), in the order they were written. */
  async logs(runId: string, afterId: number | undefined): Promise<{ chunks: { id: number; stepId: string; stage: string; step: string; attempt: number; seq: number; stream: string; data: Buffer }[]; finished: boolean }> {
    const run = await this.deps.store.db.selectFrom('runs').select('state').where('id', '=', runId).executeTakeFirst();
    if (run === undefined) throw new NotFoundError(`no run ${runId}`);
    let q = this.deps.store.db
      .selectFrom('run_logs')
      .innerJoin('run_steps', 'run_steps.id', 'run_logs.step_id')
      .select(['run_logs.id', 'run_logs.step_id', 'run_logs.seq', 'run_logs.stream', 'run_logs.data', 'run_steps.stage', 'run_steps.step', 'run_steps.attempt'])
      .where('run_steps.run_id', '=', runId);
    if (afterId !== undefined) q = q.where('run_logs.id', '>', afterId);
    const rows = await q.orderBy('run_logs.id').limit(2000).execute();
    const chunks = rows.map((r) => ({ id: r.id, stepId: r.step_id, stage: r.stage, step: r.step, attempt: r.attempt, seq: r.seq, stream: r.stream, data: r.data }));
    // "finished" only once every chunk has been handed out.
    return { chunks, finished: run.state !== 'queued' && run.state !== 'running' && rows.length < 2000 };
  }

  async list(filter: { project?: string | undefined; limit?: number | undefined } = {}): Promise<RunSummary[]> {
    let q = this.deps.store.db.selectFrom('runs').innerJoin('projects', 'projects.id', 'runs.project_id').selectAll('runs').select('projects.name as project');
    if (filter.project !== undefined) q = q.where('projects.name', '=', filter.project);
    const rows = await q.orderBy('runs.created_at', 'desc').limit(filter.limit ?? 50).execute();
    return rows.map((r) => summary(r, r.project));
  }

  async show(runId: string, via: Pick<Tx, 'db'> = this.deps.store): Promise<RunDetail> {
    const r = await via.db.selectFrom('runs').innerJoin('projects', 'projects.id', 'runs.project_id').selectAll('runs').select('projects.name as project').where('runs.id', '=', runId).executeTakeFirst();
    if (r === undefined) throw new NotFoundError(`no run ${runId} (see airlock runs list)`, { runId });
    const stages = await via.db.selectFrom('run_stages').selectAll().where('run_id', '=', runId).orderBy('position').execute();
    const steps = await loadSteps(via, runId);
    return {
      ...summary(r, r.project),
      traceId: r.trace_id,
      commitInfo: JSON.parse(r.commit_json) as CommitInfo,
      trigger: JSON.parse(r.trigger_json) as JsonValue,
      pipelineDigest: r.pipeline_digest,
      stages: stages.map((s) => ({
        name: s.stage,
        state: s.state,
        startedAt: s.started_at,
        finishedAt: s.finished_at,
        steps: steps
          .filter((x) => x.stage === s.stage)
          .map((x) => ({
            id: x.id,
            stage: x.stage,
            step: x.step,
            attempt: x.attempt,
            state: x.state as StepState,
            runner: x.runner,
            reason: x.reason,
            exitCode: x.exit_code,
            queuedAt: x.queued_at,
            startedAt: x.started_at,
            finishedAt: x.finished_at,
            result: x.result_json === null ? null : (JSON.parse(x.result_json) as JsonValue),
          })),
      })),
    };
  }

  /** Resolve `RUN` as given on a command line: a run id, or `<project>#<number>`. */
  async resolveId(text: string): Promise<string> {
    const m = /^([a-z][a-z0-9-]*)#(\d+)$/.exec(text);
    if (m === null) return text;
    const row = await this.deps.store.db.selectFrom('runs').innerJoin('projects', 'projects.id', 'runs.project_id').select('runs.id').where('projects.name', '=', m[1] ?? '').where('runs.number', '=', Number(m[2])).executeTakeFirst();
    if (row === undefined) throw new NotFoundError(`no run ${text}`);
    return row.id;
  }
}

function summary(r: { id: string; number: number; pipeline_name: string; ref: string; commit_sha: string; state: string; reason: string | null; trigger_json: string; created_at: string; started_at: string | null; finished_at: string | null }, project: string): RunSummary {
  const trigger = JSON.parse(r.trigger_json) as { actor?: { id?: string } };
  return {
    id: r.id,
    number: r.number,
    project,
    pipeline: r.pipeline_name,
    ref: r.ref,
    commit: r.commit_sha,
    state: r.state as RunState,
    reason: r.reason,
    triggeredBy: trigger.actor?.id ?? 'unknown',
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
  };
}
