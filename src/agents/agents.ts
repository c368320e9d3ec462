/**
 * Remote runners. An agent is enrolled with a one-time registration token (labels chosen by the
 * operator who made it), becomes a service account `agent-<name>` with the machine role
 * `runner`, and then takes jobs exactly as the embedded runner does (claim, heartbeat,
 * complete) under the runner name `agent:<name>`.
 *
 * Agents are not trusted: every job operation is allowed only for a step currently running on
 * the calling agent, refusals are recorded, inputs are handed out only if the job declares
 * them, and a reported success counts only with a link record signed by the agent's key.
 */
import { createPublicKey, randomUUID } from 'node:crypto';
import type { AuditEventInput, AuditLog, RequestContext } from '../audit/index.js';
import type { BlobStoreLike } from '../artifacts/index.js';
import { AirlockError, ConflictError, ForbiddenError, NotFoundError, UnauthenticatedError, ValidationError } from '../errors/index.js';
import type { Principal } from '../identity/index.js';
import type { Job, Runs, StepReport } from '../runs/index.js';
import type { Store } from '../storage/index.js';
import { linkKeyId } from '../runner/index.js';
import { reportProblem } from './report.js';
import { checkAgentName, checkLabels, isRegistrationToken, newAgentApiKey, newRegistrationToken, parseAgentPublicKey, registrationTokenId, tokenHash } from './tokens.js';

type Actor = AuditEventInput['actor'];

/** The part of the scheduler agents use. */
export type AgentRunsPort = Pick<Runs, 'claim' | 'job' | 'heartbeat' | 'complete' | 'appendLog' | 'onWork' | 'sourceDir' | 'leaseMs'>;

/** What the agents domain needs; wired once (src/app, or the agent routes until then). */
export interface AgentsDeps {
  readonly store: Store;
  readonly audit: AuditLog;
  readonly clock: () => Date;
  readonly runs: AgentRunsPort;
  /** The server's artifact store: outputs must be uploaded before a result names them. */
  readonly blobs: Pick<BlobStoreLike, 'has'>;
  /** The AIRLOCK_* environment the server provides to a job (run id, commit, workload token). */
  readonly provided: (job: Job, runner: string) => Promise<Record<string, string>>;
  /** How often a waiting claim re-checks for work queued on another replica (default 250 ms). */
  readonly recheckMs?: number;
}

/** The machine role every agent's service account holds. */
export const RUNNER_ROLE = 'runner';
/** Registration tokens live 60 minutes unless asked otherwise, at most 7 days. */
export const DEFAULT_TOKEN_MINUTES = 60;
export const MAX_TOKEN_MINUTES = 7 * 24 * 60;
/** Longest long poll for a job. */
export const MAX_WAIT_SECONDS = 60;

export interface AgentInfo {
  readonly id: string;
  readonly name: string;
  /** How the scheduler knows it: `agent:<name>` (run_steps.runner). */
  readonly runner: string;
  readonly serviceAccount: string;
  readonly serviceAccountId: string;
  readonly labels: readonly string[];
  /** Ed25519 public key (SPKI PEM) its link records must verify with. */
  readonly publicKey: string;
  readonly createdAt: string;
  /** Id of the registration token it spent (a prefix of the token's hash). */
  readonly registeredWith: string;
  readonly lastSeenAt: string | null;
  readonly disabledAt: string | null;
}

export interface IssuedRegistrationToken {
  /** The secret: shown once, stored only as its SHA-256. */
  readonly token: string;
  readonly tokenId: string;
  readonly labels: readonly string[];
  readonly expiresAt: string;
}

export interface Registration {
  readonly agentId: string;
  readonly name: string;
  readonly serviceAccount: string;
  readonly labels: readonly string[];
  /** The agent's credential (`alk_…`): shown once, exchanged at /api/v1/auth/token. */
  readonly apiKey: string;
  readonly keyId: string;
}

/** A job as an agent receives it: the job, the environment the server provides, and how often to heartbeat. */
export interface AgentJob {
  readonly job: Job;
  readonly env: Readonly<Record<string, string>>;
  /** A third of the lease (at most 10 s): two heartbeats may be lost before the step is. */
  readonly heartbeatMs: number;
}

export interface LogChunk {
  readonly stream: 'stdout' | 'stderr';
  readonly data: Buffer;
}

const iso = (d: Date): string => d.toISOString();
const ANONYMOUS: Actor = { kind: 'anonymous', id: 'anonymous' };

type AgentRow = { id: string; name: string; service_account_id: string; labels: string; public_key: string; created_at: string; registered_with: string; last_seen_at: string | null; disabled_at: string | null; sa_name: string };

function info(r: AgentRow): AgentInfo {
  return {
    id: r.id,
    name: r.name,
    runner: `agent:${r.name}`,
    serviceAccount: r.sa_name,
    serviceAccountId: r.service_account_id,
    labels: JSON.parse(r.labels) as string[],
    publicKey: r.public_key,
    createdAt: r.created_at,
    registeredWith: r.registered_with,
    lastSeenAt: r.last_seen_at,
    disabledAt: r.disabled_at,
  };
}

/** Thrown inside the registration transaction when another request spent the token first. */
class TokenRaceLost extends Error {}

export class Agents {
  private readonly waiters = new Set<() => void>();
  private readonly recheckMs: number;

  constructor(private readonly deps: AgentsDeps) {
    this.recheckMs = deps.recheckMs ?? 250;
    if (!Number.isInteger(this.recheckMs) || this.recheckMs < 10 || this.recheckMs > 10_000) throw new AirlockError('CONFIG_INVALID', 'recheckMs must be a whole number of milliseconds from 10 to 10000');
    // One listener for every waiting claim: new work wakes them all, and they race to claim it.
    deps.runs.onWork(() => {
      for (const w of [...this.waiters]) w();
    });
  }

  private agentsQuery() {
    return this.deps.store.db
      .selectFrom('agents')
      .innerJoin('service_accounts', 'service_accounts.id', 'agents.service_account_id')
      .select(['agents.id', 'agents.name', 'agents.service_account_id', 'agents.labels', 'agents.public_key', 'agents.created_at', 'agents.registered_with', 'agents.last_seen_at', 'agents.disabled_at', 'service_accounts.name as sa_name']);
  }

  /** A one-time registration token for an agent that will have `labels`. */
  async createRegistrationToken(actor: Actor, input: { labels: readonly string[]; expiresInMinutes?: number | undefined }, context: RequestContext = {}): Promise<IssuedRegistrationToken> {
    const labels = checkLabels(input.labels);
    const minutes = input.expiresInMinutes ?? DEFAULT_TOKEN_MINUTES;
    if (!Number.isInteger(minutes) || minutes < 1 || minutes > MAX_TOKEN_MINUTES) {
      throw new ValidationError(`expiresInMinutes must be a whole number from 1 to ${MAX_TOKEN_MINUTES} (7 days)`, [{ path: 'expiresInMinutes', message: `1-${MAX_TOKEN_MINUTES}` }]);
    }
    const token = newRegistrationToken();
    const hash = tokenHash(token);
    const now = this.deps.clock();
    const expiresAt = iso(new Date(now.getTime() + minutes * 60_000));
    const tokenId = registrationTokenId(hash);
    await this.deps.store.transact(async (tx) => {
      await tx.db.insertInto('agent_registration_tokens').values({ token_hash: hash, labels: JSON.stringify(labels), created_at: iso(now), created_by: actor.id, expires_at: expiresAt, used_at: null }).execute();
      await this.deps.audit.record(tx, { actor, action: 'agents.tokens.create', resource: `agents/registration-tokens/${tokenId}`, outcome: 'allowed', context, details: { tokenId, labels, expiresAt } });
    });
    return { token, tokenId, labels, expiresAt };
  }

  /**
   * Enrol an agent: spend the token, create its service account (role `runner`) and API key,
   * store its public key, all in one transaction with its records. A wrong, used or expired
   * token is refused with one answer (the reason goes only into the audit log).
   */
  async register(input: { token: unknown; name: unknown; publicKey: unknown }, context: RequestContext = {}): Promise<Registration> {
    const name = checkAgentName(input.name);
    const publicKey = parseAgentPublicKey(input.publicKey);
    const hash = isRegistrationToken(input.token) ? tokenHash(input.token) : undefined;
    const tokenId = hash === undefined ? null : registrationTokenId(hash);
    const now = this.deps.clock();
    const row = hash === undefined ? undefined : await this.deps.store.db.selectFrom('agent_registration_tokens').selectAll().where('token_hash', '=', hash).executeTakeFirst();
    const refuse = async (reason: string): Promise<never> => {
      await this.deps.audit.append({ actor: ANONYMOUS, action: 'agents.register', resource: `agents/${name}`, outcome: 'denied', reason, context, details: { tokenId } });
      throw new UnauthenticatedError('the registration token is invalid, already used or expired: ask an operator for a new one (airlock agent token create)');
    };
    if (hash === undefined) return refuse('token_malformed');
    if (row === undefined) return refuse('token_unknown');
    if (row.used_at !== null) return refuse('token_used');
    if (Date.parse(row.expires_at) <= now.getTime()) return refuse('token_expired');
    const labels = JSON.parse(row.labels) as string[];
    const serviceAccount = `agent-${name}`;
    try {
      return await this.deps.store.transact(async (tx) => {
        // Spend first, conditionally: of two registrations racing with one token, one wins.
        const spent = await tx.db.updateTable('agent_registration_tokens').set({ used_at: iso(now) }).where('token_hash', '=', hash).where('used_at', 'is', null).where('expires_at', '>', iso(now)).executeTakeFirst();
        if (Number(spent.numUpdatedRows) !== 1) throw new TokenRaceLost();
        // A conflict below rolls the spend back: the token stays usable with another name.
        if ((await tx.db.selectFrom('agents').select('id').where('name', '=', name).executeTakeFirst()) !== undefined || (await tx.db.selectFrom('service_accounts').select('id').where('name', '=', serviceAccount).executeTakeFirst()) !== undefined) {
          throw new ConflictError(`an agent named ${name} is already registered (names are never reused): choose another --name`, { name });
        }
        const role = await tx.db.selectFrom('roles').select('name').where('name', '=', RUNNER_ROLE).executeTakeFirst();
        if (role === undefined) throw new AirlockError('INTERNAL', `the built-in role ${RUNNER_ROLE} is missing; restart the server so it seeds its built-in roles`);
        const saId = randomUUID();
        const agentId = randomUUID();
        const key = newAgentApiKey();
        const at = iso(now);
        const by = `registration:${tokenId ?? ''}`;
        await tx.db.insertInto('service_accounts').values({ id: saId, name: serviceAccount, description: `remote agent ${name}`, created_at: at, created_by: row.created_by, disabled_at: null }).execute();
        await tx.db.insertInto('principal_roles').values({ principal_kind: 'service', principal_id: saId, role: RUNNER_ROLE, granted_at: at, granted_by: by }).execute();
        await tx.db.insertInto('api_keys').values({ id: key.id, service_account_id: saId, key_hash: tokenHash(key.key), description: `agent ${name}`, created_at: at, created_by: by, expires_at: null, revoked_at: null, revoked_by: null, last_used_at: null }).execute();
        await tx.db.insertInto('agents').values({ id: agentId, name, service_account_id: saId, labels: JSON.stringify(labels), public_key: publicKey.pem, created_at: at, registered_with: tokenId ?? '', last_seen_at: at, disabled_at: null }).execute();
        const actor: Actor = { kind: 'service', id: serviceAccount };
        const authorisedBy = row.created_by;
        await this.deps.audit.record(tx, { actor, action: 'service-accounts.create', resource: `service-accounts/${serviceAccount}`, outcome: 'allowed', context, details: { roles: [RUNNER_ROLE], agent: name, authorisedBy } });
        await this.deps.audit.record(tx, { actor, action: 'service-accounts.keys.create', resource: `service-accounts/${serviceAccount}/keys/${key.id}`, outcome: 'allowed', context, details: { keyId: key.id, expiresAt: null } });
        await this.deps.audit.record(tx, { actor, action: 'agents.register', resource: `agents/${name}`, outcome: 'allowed', context, details: { agentId, tokenId, labels, serviceAccount, keyId: key.id, authorisedBy, publicKeyId: linkKeyId(publicKey.key) } });
        return { agentId, name, serviceAccount, labels, apiKey: key.key, keyId: key.id };
      });
    } catch (err) {
      if (err instanceof TokenRaceLost) return refuse('token_used');
      throw err;
    }
  }

  async list(): Promise<AgentInfo[]> {
    return (await this.agentsQuery().orderBy('agents.name').execute()).map(info);
  }

  async get(name: string): Promise<AgentInfo> {
    const row = await this.agentsQuery().where('agents.name', '=', name).executeTakeFirst();
    if (row === undefined) throw new NotFoundError(`no agent named ${name} (see GET /api/v1/agents)`, { name });
    return info(row);
  }

  /**
   * The agent a request comes from. Only the service account of a registered, enabled agent
   * qualifies: holding the `runner` role alone does not make anyone an agent.
   */
  async forPrincipal(principal: Principal): Promise<AgentInfo> {
    const row = principal.kind === 'service' ? await this.agentsQuery().where('agents.service_account_id', '=', principal.id).executeTakeFirst() : undefined;
    if (row === undefined) throw new ForbiddenError(`${principal.name} is not a registered agent; only agents take jobs (airlock agent)`);
    if (row.disabled_at !== null) throw new ForbiddenError(`agent ${row.name} is disabled`);
    return info(row);
  }

  /** Take an agent out of service: its API key and tokens stop working at once. */
  async disable(actor: Actor, name: string, context: RequestContext = {}): Promise<AgentInfo> {
    const agent = await this.get(name);
    if (agent.disabledAt !== null) throw new ConflictError(`agent ${name} is already disabled`, { name });
    await this.deps.store.transact(async (tx) => {
      const at = iso(this.deps.clock());
      await tx.db.updateTable('agents').set({ disabled_at: at }).where('id', '=', agent.id).execute();
      await tx.db.updateTable('service_accounts').set({ disabled_at: at }).where('id', '=', agent.serviceAccountId).where('disabled_at', 'is', null).execute();
      await this.deps.audit.record(tx, { actor, action: 'agents.disable', resource: `agents/${name}`, outcome: 'allowed', context, details: { serviceAccount: agent.serviceAccount } });
    });
    return this.get(name);
  }

  /** Note that the agent was heard from (jobs/next, heartbeats). */
  async seen(agent: AgentInfo): Promise<void> {
    await this.deps.store.transact(async (tx) => {
      await tx.db.updateTable('agents').set({ last_seen_at: iso(this.deps.clock()) }).where('id', '=', agent.id).execute();
    });
  }

  /**
   * Claim the next job this agent's labels allow, waiting up to `waitMs` for one. Woken by work
   * queued in this process at once; work queued by another replica is found by re-checking
   * every `recheckMs`. Undefined when none came, or when `signal` aborts (client gone, server
   * closing).
   */
  async nextJob(agent: AgentInfo, waitMs: number, signal: AbortSignal): Promise<AgentJob | undefined> {
    const deadline = Date.now() + Math.max(0, Math.min(waitMs, MAX_WAIT_SECONDS * 1000));
    for (;;) {
      if (signal.aborted) return undefined;
      const job = await this.deps.runs.claim({ name: agent.runner, labels: agent.labels });
      if (job !== undefined) return { job, env: await this.providedFor(agent, job), heartbeatMs: Math.max(500, Math.min(10_000, Math.floor(this.deps.runs.leaseMs / 3))) };
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await this.waitForWork(Math.min(left, this.recheckMs), signal);
    }
  }

  private async providedFor(agent: AgentInfo, job: Job): Promise<Record<string, string>> {
    try {
      return await this.deps.provided(job, agent.runner);
    } catch (err) {
      // The job is claimed; do not leave it to lapse unseen.
      await this.deps.runs.complete(job.stepId, agent.runner, { status: 'failed', exitCode: null, reason: 'the server could not prepare the job for the agent (workload token)', outputs: [], evidence: null }).catch(() => undefined);
      throw err;
    }
  }

  private waitForWork(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /**
   * Refuse unless step `stepId` is held by this agent (and, with `running`, still running).
   * Unknown step: 404; another runner's step: 403, recorded with who holds it; this agent's
   * step that has ended: 409.
   */
  async access(agent: AgentInfo, stepId: string, what: string, context: RequestContext = {}, options: { running: boolean } = { running: true }): Promise<{ runId: string; state: string }> {
    const row = await this.deps.store.db.selectFrom('run_steps').select(['run_id', 'runner', 'state']).where('id', '=', stepId).executeTakeFirst();
    if (row === undefined) throw new NotFoundError(`no step ${stepId}`, { stepId });
    if (row.runner !== agent.runner) {
      await this.deps.audit.append({
        actor: { kind: 'service', id: agent.serviceAccount },
        action: 'agents.jobs.refused',
        resource: `runs/${row.run_id}/steps/${stepId}`,
        outcome: 'denied',
        reason: 'not_this_agents_job',
        context,
        details: { agent: agent.name, attempted: what, heldBy: row.runner, state: row.state },
      });
      throw new ForbiddenError(`step ${stepId} is not running on agent ${agent.name}`, { stepId });
    }
    if (options.running && row.state !== 'running') throw new ConflictError(`step ${stepId} is no longer running on agent ${agent.name} (it is ${row.state})`, { stepId, state: row.state });
    return { runId: row.run_id, state: row.state };
  }

  /** The source tree directory of a job this agent holds. */
  async sourceDir(agent: AgentInfo, stepId: string, context: RequestContext = {}): Promise<string> {
    const { runId } = await this.access(agent, stepId, 'source', context);
    return this.deps.runs.sourceDir(runId);
  }

  /** Refuse unless `digest` is one of the inputs declared by the job this agent holds. */
  async checkInput(agent: AgentInfo, stepId: string, digest: string, context: RequestContext = {}): Promise<void> {
    await this.access(agent, stepId, 'input', context);
    const job = await this.deps.runs.job(stepId);
    if (!job.inputs.some((i) => i.digest === digest)) {
      await this.deps.audit.append({ actor: { kind: 'service', id: agent.serviceAccount }, action: 'agents.jobs.refused', resource: `runs/${job.runId}/steps/${stepId}`, outcome: 'denied', reason: 'not_an_input_of_the_job', context, details: { agent: agent.name, attempted: 'input', digest } });
      throw new ForbiddenError(`blob ${digest} is not an input of step ${stepId}`, { stepId });
    }
  }

  /** Renew the lease of a step this agent holds; `cancel` tells it to stop (run cancelled, step lost). */
  async heartbeat(agent: AgentInfo, stepId: string, context: RequestContext = {}): Promise<{ cancel: boolean }> {
    await this.access(agent, stepId, 'heartbeat', context, { running: false });
    const [beat] = await Promise.all([this.deps.runs.heartbeat(stepId, agent.runner), this.seen(agent)]);
    return { cancel: beat.cancel || !beat.ok };
  }

  async appendLog(agent: AgentInfo, stepId: string, chunks: readonly LogChunk[], context: RequestContext = {}): Promise<void> {
    await this.access(agent, stepId, 'logs', context);
    await this.deps.runs.appendLog(stepId, chunks);
  }

  /**
   * Finish a step this agent holds. Outputs must already be in the artifact store. A report
   * whose signed link record does not back it ends the step as failed (recorded) and is
   * refused: an agent cannot make a success out of what it did not sign.
   */
  async report(agent: AgentInfo, stepId: string, report: StepReport, context: RequestContext = {}): Promise<void> {
    await this.access(agent, stepId, 'result', context);
    const job = await this.deps.runs.job(stepId);
    const missing: string[] = [];
    for (const o of report.outputs) if (!(await this.deps.blobs.has(o.digest))) missing.push(o.path);
    if (missing.length > 0) {
      throw new ValidationError(`output(s) ${missing.join(', ')} have not been uploaded: PUT each to /api/v1/agents/jobs/${stepId}/outputs/<digest> first`, missing.map((m) => ({ path: 'outputs', message: `${m} not uploaded` })));
    }
    const problem = reportProblem(job, report, createPublicKey(agent.publicKey));
    if (problem !== undefined) {
      await this.deps.audit.append({ actor: { kind: 'service', id: agent.serviceAccount }, action: 'agents.jobs.report.refused', resource: `runs/${job.runId}/steps/${stepId}`, outcome: 'denied', reason: problem.slice(0, 500), context, details: { agent: agent.name, status: report.status } });
      await this.deps.runs.complete(stepId, agent.runner, { status: 'failed', exitCode: report.exitCode, reason: `the agent's report was refused: ${problem}`, outputs: [], evidence: report.evidence });
      throw new ValidationError(`report refused, the step was failed: ${problem}`, [{ path: 'evidence.link', message: problem }]);
    }
    await this.deps.runs.complete(stepId, agent.runner, report);
  }
}
