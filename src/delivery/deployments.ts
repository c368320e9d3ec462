/**
 * Deployment requests and their approvals, stored and recorded. A request binds exactly what
 * ships (digests, config digest, commit range, run) into one digest; every approval is a signed
 * attestation of that digest, so it cannot be replayed for anything else. Whether a request is
 * approved is always recomputed from the stored approvals by the pure core (approvals.ts):
 * quorum of distinct people, expiry, roles, owners, and segregation of duties over the whole
 * change (requester, whoever triggered the run, every author and committer in the range).
 */
import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import canonicalize from 'canonicalize';
import type { AnchoredDocument, AuditEvent, AuditLog, InclusionProofDocument, RequestContext } from '../audit/index.js';
import { IN_TOTO_PAYLOAD_TYPE, signEnvelope, statement, statementBytes } from '../attest/index.js';
import type { AttestationSigner, Envelope } from '../attest/index.js';
import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from '../errors/index.js';
import type { Database, Store, Tx } from '../storage/index.js';
import type { Selectable } from 'kysely';
import { evaluateApprovals } from './approvals.js';
import type { Approval, ApprovalEvaluation, SodException } from './approvals.js';
import { bindingDigest, makeBinding } from './binding.js';
import type { ArtifactDigest } from './binding.js';
import { branchAllowed, configDiff } from '../pipeline/index.js';
import type { ConfigDiff } from '../pipeline/index.js';
import { evaluateBreakGlass } from './breakglass.js';
import { Freezes } from './freezes.js';
import { Incidents } from './incidents.js';
import { boundedMemo } from './memo.js';
import { isJustified } from './people.js';
import type { Person } from './people.js';
import type { ProtectionRules } from './rules.js';
import { deployAllowed } from './windows.js';
import type { DeployWindowDecision } from './windows.js';
import type { DeployResult } from './deployer.js';
import type { HealthCheck, HealthResult } from './health.js';
import { APPROVAL_V1, RECORD_FILE_FORMAT, recordDigest as recordDigestOf, signRecord } from './record.js';
import type { DeploymentRecord, RecordFile } from './record.js';

type Actor = Parameters<AuditLog['append']>[0]['actor'];


/** What the delivery domain needs to know about runs, projects, people and the repository. */
export interface DeliveryFacts {
  /** A succeeded run's facts, or NotFound/Conflict. */
  run(runRef: string): Promise<{ id: string; project: string; projectId: string; commit: string; triggeredBy: string; state: string; artifacts: readonly ArtifactDigest[]; ref?: string | undefined }>;
  /** The environment's rules and effective config for that run; undefined when the pipeline does not declare it. */
  environment(runId: string, environment: string): Promise<EnvironmentFacts | undefined>;
  /** Author and committer identities of every commit in from..to (all of to's history when from is undefined). */
  commits(projectId: string, from: string | undefined, to: string): Promise<{ authors: string[]; committers: string[] }>;
  /** Who is who: usernames with their other identities (commit emails). */
  people(): Promise<Person[]>;
  /** The roles a person holds now. */
  roles(username: string): Promise<string[]>;
}

/** An environment as a deployment sees it (from the run's airlock.yaml and override file). */
export interface EnvironmentFacts {
  readonly rules: ProtectionRules;
  readonly configDigest: string;
  /** The effective configuration (non-secret), given to the deployed service as its environment. */
  readonly config?: Readonly<Record<string, string>> | undefined;
  readonly lastConfigEditor?: string | undefined;
  /** Lower environments the same digests must have reached first. */
  readonly requires?: readonly string[] | undefined;
  /** A post-deploy health check; `{port}` in a URL is the port the service was started on. */
  readonly health?: HealthCheck | undefined;
  /** How long the check may keep retrying before it counts as failed (default 10 s). */
  readonly healthBudgetMs?: number | undefined;
  /** Secret names the deployed service receives as environment variables (`environments.<name>.secrets`). */
  readonly secrets?: readonly string[] | undefined;
}

/** Why a deployment's gates passed: said with each secret released to it. */
export type ReleaseBasis = 'approvals' | 'break-glass' | 'rollback';

/**
 * Releases an environment's declared secrets to a service being started (app: Secrets
 * .releaseToDeployment, which resolves scope, asks the Cedar release policy with the gate
 * passed, and records each read). Asked only after every gate passed. Values stay in memory:
 * they go to the service's environment and nowhere else (not the record, not the health check).
 */
export type DeploymentSecrets = (req: { deploymentId: string; runId: string; environment: string; declared: readonly string[]; basis: ReleaseBasis }, context?: RequestContext) => Promise<readonly { name: string; value: Buffer; version: number }[]>;

/** Puts releases in place and runs them (LocalDeployer). */
export interface DeployerPort {
  deploy(input: { deploymentId: string; environment: string; artifacts: readonly ArtifactDigest[]; env: Readonly<Record<string, string>> }): Promise<DeployResult>;
  rollback(environment: string, to: { deploymentId: string; artifacts: readonly ArtifactDigest[]; env?: Readonly<Record<string, string>> }): Promise<DeployResult>;
  /** Where and with what a release runs (host, platform, runtime): the record's environment fingerprint. */
  fingerprint?(environment: string): Readonly<Record<string, string>>;
}

/** What approvers are told (signed webhook); nothing secret. */
export interface DeploymentNotice {
  readonly type: 'deployment.requested' | 'deployment.approved' | 'deployment.denied' | 'deployment.breakglass';
  readonly deploymentId: string;
  readonly project: string;
  readonly environment: string;
  readonly requestedBy: string;
  readonly justification: string;
  readonly ticket?: string | undefined;
  readonly artifacts: readonly ArtifactDigest[];
  readonly commitRange: { readonly from: string | null; readonly to: string };
  readonly bindingDigest: string;
  readonly missing?: string | undefined;
}

/** One gate the deployment passed or failed, as the record states it. */
export type PolicyDecision = DeploymentRecord['policyDecisions'][number];

/** A granted break-glass, as `execute` needs it: who, why, what it bypassed, and the incident opener. */
interface BreakGlassGrant {
  readonly participants: string[];
  readonly justifications: { person: string; justification: string; at: string }[];
  readonly bypassed: readonly string[];
  /** Opens the incident inside the claiming transaction; returns its id. */
  open(tx: Tx): Promise<string>;
}

type DeploymentRow = Selectable<Database['deployments']>;

/** The gates a deployment must pass now, and why it may not. */
export interface Gate {
  readonly approvals: ApprovalEvaluation;
  readonly window: DeployWindowDecision;
  /** The environment's rules changed since its last deployment (an owner under the old ones must approve). */
  readonly rulesChanged: boolean;
  readonly allowed: boolean;
  readonly reasons: string[];
}

/** The columns of a request that has not run yet: no outcome, record or VSA, no break-glass. */
const NOT_YET_RUN = { reason: null, breakglass: 0, record_envelope: null, record_digest: null, record_seq: null, vsa_envelope: null, finished_at: null } as const;

/** A first break-glass request waits this long for a second person. */
const DEFAULT_BREAKGLASS_TTL_MS = 3_600_000;

export interface DeploymentsDeps {
  readonly store: Store;
  readonly audit: AuditLog;
  readonly clock: () => Date;
  readonly facts: DeliveryFacts;
  /** The platform attestation key: approvals are signed statements. */
  readonly signer: () => Promise<AttestationSigner>;
  /**
   * Named exceptions to segregation of duties (from Cedar policies: policy sodExceptionsFor),
   * for one deployment: its facts, and each approver with the roles they held when deciding.
   */
  readonly exceptions?:
    | ((ctx: { project: string; environment: string; requester: string; triggeredBy: string; authors: readonly string[]; committers: readonly string[]; lastConfigEditor?: string | undefined; approvers: readonly { id: string; roles: readonly string[] }[] }) => Promise<readonly SodException[]>)
    | undefined;
  readonly deployer?: DeployerPort | undefined;
  readonly health?: ((check: HealthCheck, opts: { env: Record<string, string>; cwd: string; timeoutMs: number }) => Promise<HealthResult>) | undefined;
  /**
   * Whether what ships has the evidence to ship: provenance that verifies and PASSED tests for
   * each artifact. Reasons name what is missing.
   */
  readonly evidence?: ((runId: string, artifacts: readonly ArtifactDigest[]) => Promise<{ ok: boolean; reasons: string[]; vsas?: readonly Envelope[] | undefined }>) | undefined;
  /** Per artifact digest, the digest of its signed SBOM attestation (for the record). */
  readonly sbomRefs?: ((digests: readonly string[]) => Promise<ReadonlyMap<string, string>>) | undefined;
  /** How long a first break-glass request waits for a second person (default 1 hour). */
  readonly breakGlassTtlMs?: number | undefined;
  readonly secrets?: DeploymentSecrets | undefined;
  /** Tells approvers (signed webhooks); must not throw. Awaited only by tests (see `notified`). */
  readonly notify?: ((notice: DeploymentNotice) => Promise<void>) | undefined;
  /** The audit log's proofs, for exported records: the event at a seq, its inclusion in a signed checkpoint. */
  readonly proofs?: RecordProofs | undefined;
}

/** What an exported record needs from the audit log (app: audit.entry, signCheckpoint, inclusionProof). */
export interface RecordProofs {
  entry(seq: number): Promise<AuditEvent>;
  /** An inclusion proof of `seq` to a signed checkpoint that covers it, and that checkpoint's note. */
  inclusion(seq: number): Promise<{ inclusion: InclusionProofDocument; checkpoint: string }>;
}

export interface DeploymentView {
  readonly id: string;
  readonly project: string;
  readonly environment: string;
  readonly runId: string;
  readonly state: string;
  readonly requestedBy: string;
  readonly justification: string;
  readonly ticket: string | null;
  readonly artifacts: readonly ArtifactDigest[];
  readonly configDigest: string;
  /** What the effective configuration changes from the environment's last successful deployment (non-secret values). */
  readonly configDiff: ConfigDiff;
  readonly commitRange: { from: string | null; to: string };
  readonly bindingDigest: string;
  readonly createdAt: string;
  /** Why it ended as it did (a denial, a failed health check); null while none applies. */
  readonly reason: string | null;
  readonly finishedAt: string | null;
  /** sha256 of the signed record's envelope, once the deploy finished. */
  readonly recordDigest: string | null;
  /** The deployment this one rolled back from (a rollback returns to a release the environment ran). */
  readonly rollbackOf: string | null;
  /** Deployed by break-glass (two people bypassing approvals or a freeze). */
  readonly breakGlass: boolean;
  /** The environment's protection rules differ from those of its last deployment: an owner must approve. */
  readonly rulesChanged: boolean;
  readonly approvals: ApprovalEvaluation;
  /** Whether a deploy may go ahead now, and if not why (approvals, windows, freezes). */
  readonly gate: { readonly allowed: boolean; readonly reasons: readonly string[] };
}

/** One line of `deployments list`: no approval evaluation (that is per deployment, in show). */
export type DeploymentSummary = Pick<DeploymentView, 'id' | 'project' | 'environment' | 'runId' | 'state' | 'requestedBy' | 'ticket' | 'bindingDigest' | 'createdAt' | 'finishedAt' | 'reason' | 'recordDigest' | 'rollbackOf' | 'breakGlass'>;

const ENV = /^[a-z][a-z0-9-]{0,62}$/;

export class Deployments {
  /**
   * Authors and committers by (project, from, to): a range of commit ids never changes, and
   * every show, decision and gate needs it (one `git log` each otherwise).
   */
  private readonly ranges = boundedMemo(256, (key) => {
    const [projectId = '', from = '', to = ''] = JSON.parse(key) as string[];
    return this.deps.facts.commits(projectId, from === '' ? undefined : from, to);
  });

  /** Incidents opened by break-glass, closed by a postmortem. */
  readonly incidents: Incidents;
  /** One-off and recurring freezes set at run time (`airlock freeze`), beside those in airlock.yaml. */
  readonly freezes: Freezes;
  /** Notifications in flight (tests await them; the server does not). */
  private readonly sending = new Set<Promise<void>>();

  constructor(private readonly deps: DeploymentsDeps) {
    this.incidents = new Incidents({ store: deps.store, audit: deps.audit, clock: deps.clock });
    this.freezes = new Freezes({ store: deps.store, audit: deps.audit, clock: deps.clock });
  }

  /** Resolves when every notification sent so far has been delivered or given up. */
  async notified(): Promise<void> {
    await Promise.all([...this.sending]);
  }

  private tell(type: DeploymentNotice['type'], view: DeploymentView): void {
    const { notify } = this.deps;
    if (notify === undefined) return;
    const notice: DeploymentNotice = { type, deploymentId: view.id, project: view.project, environment: view.environment, requestedBy: view.requestedBy, justification: view.justification, ticket: view.ticket ?? undefined, artifacts: view.artifacts, commitRange: view.commitRange, bindingDigest: view.bindingDigest, missing: view.approvals.missing || undefined };
    // A notification never blocks or fails the request it reports.
    const p = notify(notice).catch(() => undefined);
    this.sending.add(p);
    void p.finally(() => this.sending.delete(p));
  }

  /**
   * Ask to deploy a succeeded run's outputs to an environment. The commit range starts at what
   * the environment last ran successfully. Recorded (`deployments.request`).
   */
  async request(actor: Actor, input: { run: string; environment: string; justification: string; ticket?: string | undefined }, context?: RequestContext): Promise<DeploymentView> {
    if (!ENV.test(input.environment)) throw new ValidationError('environment names are lower-case letters, digits and "-"', [{ path: 'environment', message: 'invalid' }]);
    if (!isJustified(input.justification)) throw new ValidationError('a justification of at least 10 characters is required', [{ path: 'justification', message: 'too short' }]);
    const run = await this.deps.facts.run(input.run);
    if (run.state !== 'succeeded') throw new ConflictError(`run ${run.id} is ${run.state}: only a succeeded run can be deployed`, { runId: run.id });
    if (run.artifacts.length === 0) throw new ConflictError(`run ${run.id} produced no outputs: there is nothing to deploy`, { runId: run.id });
    const env = await this.deps.facts.environment(run.id, input.environment);
    if (env === undefined) throw new ValidationError(`the run's pipeline declares no environment ${input.environment}`, [{ path: 'environment', message: 'not declared in airlock.yaml' }]);
    // Only the branches the environment allows may ship there (the run's ref, without refs/heads/).
    const branch = (run.ref ?? '').replace(/^refs\/heads\//, '');
    if (!branchAllowed(env.rules.branches, branch)) {
      await this.deps.audit.append({ actor, action: 'deployments.request', resource: `environments/${input.environment}`, outcome: 'denied', reason: `branch ${branch || '(unknown)'} may not deploy to ${input.environment}`, context, details: { runId: run.id, allowed: [...env.rules.branches] } });
      throw new ForbiddenError(`run ${run.id} was built from ${branch || 'an unknown ref'}; ${input.environment} accepts only ${env.rules.branches.join(', ')}`, { branch, allowed: [...env.rules.branches] });
    }
    const last = await this.deps.store.db.selectFrom('deployments').select('commit_to').where('project_id', '=', run.projectId).where('environment', '=', input.environment).where('state', '=', 'succeeded').orderBy('created_at', 'desc').limit(1).executeTakeFirst();
    const from = last?.commit_to ?? undefined;
    const binding = makeBinding({ environment: input.environment, digests: [...run.artifacts], configDigest: env.configDigest, commitRange: { ...(from === undefined ? {} : { from }), to: run.commit }, runId: run.id });
    const digest = bindingDigest(binding);
    const id = randomUUID();
    const now = this.deps.clock().toISOString();
    await this.deps.store.transact(async (tx) => {
      await tx.db
        .insertInto('deployments')
        .values({
          id,
          project_id: run.projectId,
          environment: input.environment,
          run_id: run.id,
          artifacts_json: JSON.stringify(binding.digests),
          config_digest: env.configDigest,
          commit_from: from ?? null,
          commit_to: run.commit,
          binding_digest: digest,
          requested_by: actor.id,
          justification: input.justification.trim().slice(0, 2000),
          ticket: input.ticket ?? null,
          state: 'requested',
          rollback_of: null,
          config_json: JSON.stringify(env.config ?? {}),
          rules_json: canonicalize(env.rules) ?? '',
          created_at: now,
          ...NOT_YET_RUN,
        })
        .execute();
      await this.deps.audit.record(tx, { actor, action: 'deployments.request', resource: `deployments/${id}`, outcome: 'allowed', context, details: { project: run.project, environment: input.environment, runId: run.id, bindingDigest: digest, artifacts: binding.digests.map((d) => ({ path: d.path, digest: d.digest })), commitRange: { from: from ?? null, to: run.commit } } });
    });
    const view = await this.show(id);
    if (!view.gate.allowed) this.tell('deployment.requested', view);
    return view;
  }

  /**
   * Approve or deny, with a justification. The decision is refused (and recorded as denied)
   * when the core would not count it: the approver asked, triggered the run, wrote or
   * committed a change in the range, lacks the role, gave no justification. An accepted
   * decision is stored as a signed attestation of the request's binding digest.
   */
  async decide(actor: Actor, deploymentId: string, input: { decision: 'approve' | 'deny'; justification: string }, context?: RequestContext): Promise<DeploymentView> {
    const dep = await this.row(deploymentId);
    if (dep.state !== 'requested' && dep.state !== 'approved') throw new ConflictError(`deployment ${deploymentId} is ${dep.state}: it can no longer be approved or denied`, { state: dep.state });
    const now = this.deps.clock();
    const mine: Approval = { approver: actor.id, decision: input.decision, justification: input.justification.trim(), bindingDigest: dep.binding_digest, at: now.getTime(), roles: await this.deps.facts.roles(actor.id) };
    const { evaluation } = await this.evaluate(dep, [...(await this.approvals(dep.id)), mine], now.getTime());
    const refusal = evaluation.refused.find((r) => r.approver === actor.id && r.at === mine.at);
    if (refusal !== undefined) {
      await this.deps.audit.append({ actor, action: 'deployments.approve', resource: `deployments/${deploymentId}`, outcome: 'denied', reason: `${refusal.reason.code}: ${refusal.reason.message}`.slice(0, 1000), context, details: { decision: input.decision, code: refusal.reason.code } });
      throw new ForbiddenError(`your ${input.decision === 'approve' ? 'approval' : 'denial'} of deployment ${deploymentId} does not count: ${refusal.reason.message}`, { code: refusal.reason.code });
    }
    const signer = await this.deps.signer();
    const subjects = (JSON.parse(dep.artifacts_json) as ArtifactDigest[]).map((a) => ({ name: a.path, digest: { sha256: a.digest.slice(7) } }));
    const envelope = signEnvelope(IN_TOTO_PAYLOAD_TYPE, statementBytes(statement(subjects, APPROVAL_V1, { deploymentId, environment: dep.environment, bindingDigest: dep.binding_digest, approver: actor.id, decision: input.decision, justification: mine.justification, at: now.toISOString(), roles: [...mine.roles] })), signer);
    await this.deps.store.transact(async (tx) => {
      await tx.db.insertInto('deployment_approvals').values({ id: randomUUID(), deployment_id: deploymentId, approver: actor.id, decision: input.decision, justification: mine.justification, binding_digest: dep.binding_digest, roles_json: JSON.stringify(mine.roles), envelope: JSON.stringify(envelope), created_at: now.toISOString() }).execute();
      const state = evaluation.denials.length > 0 ? 'refused' : evaluation.satisfied ? 'approved' : 'requested';
      await tx.db.updateTable('deployments').set({ state, reason: state === 'refused' ? `denied by ${actor.id}` : null }).where('id', '=', deploymentId).execute();
      await this.deps.audit.record(tx, { actor, action: 'deployments.approve', resource: `deployments/${deploymentId}`, outcome: 'allowed', context, details: { decision: input.decision, justification: mine.justification.slice(0, 1000), bindingDigest: dep.binding_digest, satisfied: evaluation.satisfied, exceptions: evaluation.exceptionsUsed.map((e) => e.policyId) } });
    });
    const view = await this.show(deploymentId);
    this.tell(input.decision === 'deny' ? 'deployment.denied' : 'deployment.approved', view);
    return view;
  }

  /** The gates a deployment must pass now: approvals (re-evaluated: they expire), change windows and freezes. */
  async gate(deploymentId: string): Promise<Gate> {
    return this.gateOf(await this.row(deploymentId));
  }

  private async gateOf(dep: DeploymentRow): Promise<Gate> {
    const now = this.deps.clock().getTime();
    const { evaluation: approvals, rulesChanged } = await this.evaluate(dep, await this.approvals(dep.id), now);
    const window = await this.window(dep, now);
    const reasons: string[] = [];
    if (!approvals.satisfied) reasons.push(approvals.missing || 'approvals are missing');
    if (!window.allowed) reasons.push(window.reason.message);
    return { approvals, window, rulesChanged, allowed: reasons.length === 0, reasons };
  }

  /**
   * Deploy an approved request: the gates again (approvals expire, freezes start), the
   * evidence (provenance and tests), the same digests already in every lower environment the
   * rules name; then install and start it, health-check it, and on failure roll back to the
   * environment's last successful release. One signed record per deployment, named by an audit
   * event in the transaction that stores the outcome.
   */
  async deploy(actor: Actor, deploymentId: string, context?: RequestContext): Promise<DeploymentView> {
    return this.execute(actor, await this.row(deploymentId), {}, context);
  }

  /**
   * Break-glass: deploy a request that approvals or a freeze block, with two distinct people
   * who each hold `breakglass.use` and a fresh step-up (decided by the enforcement point before
   * this is called) and each give a justification. The first request waits (for the ttl) for a
   * second person; the second deploys. Evidence and same-digest promotion still apply: break-glass
   * bypasses people and calendars, never what proves the artifacts. Every request is a
   * high-severity event; a granted one opens an incident that stays open until a postmortem.
   */
  async breakGlass(actor: Actor, deploymentId: string, input: { justification: string }, context?: RequestContext): Promise<{ deployment: DeploymentView; granted: boolean; participants: string[]; incident?: string | undefined }> {
    const dep = await this.row(deploymentId);
    const resource = `deployments/${deploymentId}`;
    if (dep.state !== 'requested' && dep.state !== 'approved') throw new ConflictError(`deployment ${deploymentId} is ${dep.state}: break-glass applies only to a request that has not been deployed`, { state: dep.state });
    const justification = input.justification.trim();
    if (!isJustified(justification)) throw new ValidationError('break-glass needs a justification of at least 10 characters', [{ path: 'justification', message: 'too short' }]);
    const gate = await this.gate(deploymentId);
    if (gate.allowed) throw new ConflictError(`deployment ${deploymentId} is not blocked: deploy it normally (airlock deployments deploy ${deploymentId})`);
    const now = this.deps.clock();
    const ttlMs = this.deps.breakGlassTtlMs ?? DEFAULT_BREAKGLASS_TTL_MS;
    const earlier = await this.deps.store.db.selectFrom('breakglass_requests').selectAll().where('deployment_id', '=', deploymentId).where('binding_digest', '=', dep.binding_digest).orderBy('created_at').execute();
    // The enforcement point allowed `breakglass.use` (a permission and a step-up within its
    // window) for every stored request and for this one: both hold by construction here.
    const asked = (person: string, why: string, at: number) => ({ person, justification: why, at, mfaFresh: true, hasPermission: true });
    const decision = evaluateBreakGlass({ requests: [...earlier.map((r) => asked(r.person, r.justification, Date.parse(r.created_at))), asked(actor.id, justification, now.getTime())], now: now.getTime(), ttlMs, people: await this.deps.facts.people() });
    // A one_person refusal naming the caller means they already hold a valid request: asking again is still one person.
    const mineRefused = decision.refused.find((r) => r.person === actor.id && r.reason.code === 'one_person');
    if (!decision.allowed && mineRefused !== undefined) {
      await this.deps.audit.append({ actor, action: 'deployments.breakglass', resource, outcome: 'denied', reason: `one_person: ${decision.reason.message}`, context, details: { severity: 'high', environment: dep.environment } });
      throw new ForbiddenError(`break-glass of deployment ${deploymentId} refused: ${decision.reason.message}. A second person with the break-glass permission must ask too`, { code: 'one_person' });
    }
    const requestRow = { id: randomUUID(), deployment_id: deploymentId, person: actor.id, justification: justification.slice(0, 2000), binding_digest: dep.binding_digest, created_at: now.toISOString() };
    if (!decision.allowed) {
      await this.deps.store.transact(async (tx) => {
        await tx.db.insertInto('breakglass_requests').values(requestRow).execute();
        await this.deps.audit.record(tx, { actor, action: 'deployments.breakglass', resource, outcome: 'allowed', context, details: { severity: 'high', stage: 'requested', environment: dep.environment, justification: justification.slice(0, 1000), blockedBy: gate.reasons, expiresAt: new Date(now.getTime() + ttlMs).toISOString() } });
      });
      const view = await this.show(deploymentId);
      this.tell('deployment.breakglass', view);
      return { deployment: view, granted: false, participants: [actor.id] };
    }
    await this.deps.store.transact(async (tx) => {
      await tx.db.insertInto('breakglass_requests').values(requestRow).execute();
      await this.deps.audit.record(tx, { actor, action: 'deployments.breakglass', resource, outcome: 'allowed', context, details: { severity: 'high', stage: 'confirmed', environment: dep.environment, justification: justification.slice(0, 1000), participants: [...decision.participants] } });
    });
    // The requests that count: the participants', still within the ttl.
    const all = [...earlier.map((r) => ({ person: r.person, justification: r.justification, at: r.created_at })), { person: actor.id, justification, at: now.toISOString() }].filter((r) => decision.participants.includes(r.person) && now.getTime() - Date.parse(r.at) < ttlMs);
    let incident: string | undefined;
    const view = await this.execute(
      actor,
      dep,
      {
        breakGlass: {
          participants: [...decision.participants],
          justifications: all,
          bypassed: gate.reasons,
          open: async (tx) => {
            incident = await this.incidents.openInTx(tx, actor, { kind: 'breakglass', deploymentId, summary: `break-glass deployment to ${dep.environment} by ${decision.participants.join(' and ')}, bypassing: ${gate.reasons.join('; ')}` }, context);
            return incident;
          },
        },
      },
      context,
    );
    return { deployment: view, granted: true, participants: [...decision.participants], incident };
  }

  /**
   * Roll an environment back to a release it ran before (default: the last successful one
   * before the current). The digest set was approved for this environment when it first
   * shipped, so no new approval is needed unless the environment's rules say `rollback: true`;
   * freezes and evidence still apply. Recorded as a rollback (`rollbackOf` in the record).
   */
  async rollback(actor: Actor, input: { project: string; environment: string; to?: string | undefined; justification: string }, context?: RequestContext): Promise<DeploymentView> {
    if (!ENV.test(input.environment)) throw new ValidationError('environment names are lower-case letters, digits and "-"', [{ path: 'environment', message: 'invalid' }]);
    if (!isJustified(input.justification)) throw new ValidationError('a rollback needs a justification of at least 10 characters', [{ path: 'justification', message: 'too short' }]);
    const project = await this.deps.store.db.selectFrom('projects').select('id').where('name', '=', input.project).executeTakeFirst();
    if (project === undefined) throw new NotFoundError(`no project ${input.project} (see airlock project list)`, { project: input.project });
    const ran = await this.deps.store.db.selectFrom('deployments').selectAll().where('project_id', '=', project.id).where('environment', '=', input.environment).where('state', '=', 'succeeded').orderBy('finished_at', 'desc').orderBy('created_at', 'desc').execute();
    const current = ran[0];
    if (current === undefined) throw new ConflictError(`${input.project} has never been deployed to ${input.environment}: there is nothing to roll back`);
    let target: (typeof ran)[number] | undefined;
    if (input.to !== undefined) {
      target = ran.find((d) => d.id === input.to);
      if (target === undefined) throw new ValidationError(`--to must name a successful deployment of ${input.project} to ${input.environment} (see airlock deployments list --env ${input.environment})`, [{ path: 'to', message: 'not a successful deployment of this environment' }]);
      if (target.artifacts_json === current.artifacts_json) throw new ConflictError(`deployment ${target.id} shipped the digests ${input.environment} runs now: nothing to roll back to`);
    } else {
      target = ran.find((d) => d.artifacts_json !== current.artifacts_json);
      if (target === undefined) throw new ConflictError(`${input.environment} has run only the current release: there is no earlier one to roll back to`);
    }
    const env = await this.deps.facts.environment(target.run_id, input.environment);
    if (env === undefined) throw new ConflictError(`environment ${input.environment} is no longer declared by the pipeline of run ${target.run_id}`);
    const needsApproval = env.rules.rollbackNeedsApproval === true;
    const binding = makeBinding({ environment: input.environment, digests: JSON.parse(target.artifacts_json) as ArtifactDigest[], configDigest: target.config_digest, commitRange: { from: current.commit_to, to: target.commit_to }, runId: target.run_id });
    const id = randomUUID();
    const now = this.deps.clock().toISOString();
    await this.deps.store.transact(async (tx) => {
      await tx.db
        .insertInto('deployments')
        .values({
          ...target,
          id,
          commit_from: current.commit_to,
          binding_digest: bindingDigest(binding),
          requested_by: actor.id,
          justification: input.justification.trim().slice(0, 2000),
          ticket: null,
          state: needsApproval ? 'requested' : 'approved',
          rollback_of: current.id,
          created_at: now,
          ...NOT_YET_RUN,
        })
        .execute();
      await this.deps.audit.record(tx, { actor, action: 'deployments.rollback', resource: `deployments/${id}`, outcome: 'allowed', context, details: { project: input.project, environment: input.environment, from: current.id, to: target.id, needsApproval, justification: input.justification.trim().slice(0, 1000) } });
    });
    if (needsApproval) {
      const view = await this.show(id);
      this.tell('deployment.requested', view);
      return view;
    }
    return this.execute(actor, await this.row(id), {}, context);
  }

  /** Carry out a deployment: the gates, evidence and promotion checks, the deployer, health, rollback, the signed record. */
  private async execute(actor: Actor, dep: DeploymentRow, how: { breakGlass?: BreakGlassGrant }, context?: RequestContext): Promise<DeploymentView> {
    const { deployer } = this.deps;
    if (deployer === undefined) throw new ConflictError('this server has no deployer configured');
    const deploymentId = dep.id;
    if (dep.state !== 'approved' && dep.state !== 'requested') throw new ConflictError(`deployment ${deploymentId} is ${dep.state}`, { state: dep.state });
    const env = await this.deps.facts.environment(dep.run_id, dep.environment);
    if (env === undefined) throw new ConflictError(`environment ${dep.environment} is no longer declared by the run's pipeline`);
    const artifacts = JSON.parse(dep.artifacts_json) as ArtifactDigest[];
    const refuse = async (reasons: string[]): Promise<never> => {
      await this.deps.audit.append({ actor, action: 'deployments.deploy', resource: `deployments/${deploymentId}`, outcome: 'denied', reason: reasons.join('; ').slice(0, 1000), context, details: { environment: dep.environment } });
      throw new ForbiddenError(`deployment ${deploymentId} to ${dep.environment} is refused: ${reasons.join('; ')}`, { reasons });
    };
    const bg = how.breakGlass;
    const rollbackFree = dep.rollback_of !== null && env.rules.rollbackNeedsApproval !== true;
    const gate = await this.gate(deploymentId);
    const decisions: PolicyDecision[] = [];
    const blocked: string[] = [];
    const approvalsOk = gate.approvals.satisfied || bg !== undefined || rollbackFree;
    const approvalBasis = gate.approvals.satisfied
      ? [`${gate.approvals.counted.length} of ${env.rules.required} distinct eligible approvers`, ...(gate.rulesChanged ? ["the environment's rules changed: one of its previous owners approved"] : [])]
      : bg !== undefined
        ? [`break-glass by ${bg.participants.join(' and ')}`]
        : rollbackFree
          ? ['rollback to a release this environment ran: approved when it first shipped (rules: rollback: false)']
          : [gate.approvals.missing || 'approvals are missing'];
    decisions.push({ action: 'approvals', allowed: approvalsOk, policies: [...approvalBasis, ...gate.approvals.exceptionsUsed.map((e) => `sod-exception ${e.policyId}: ${e.approver} (${e.code})`)] });
    if (!approvalsOk) blocked.push(gate.approvals.missing || 'approvals are missing');
    const windowOk = gate.window.allowed || bg !== undefined;
    decisions.push({ action: 'window', allowed: windowOk, policies: [gate.window.allowed ? 'no freeze, inside the change windows' : `${gate.window.reason.message}${bg === undefined ? '' : ' (bypassed by break-glass)'}`] });
    if (!windowOk) blocked.push(gate.window.reason.message);
    if (blocked.length > 0) await refuse(blocked);
    const evidence = (await this.deps.evidence?.(dep.run_id, artifacts)) ?? { ok: true, reasons: [] };
    decisions.push({ action: 'evidence', allowed: evidence.ok, policies: evidence.ok ? ['provenance from this builder verifies; tests PASSED'] : evidence.reasons });
    if (!evidence.ok) await refuse(evidence.reasons.length > 0 ? evidence.reasons : ['the artifacts have no evidence']);
    // Build once, deploy many: every lower environment must already run exactly these digests.
    // A rollback returns to digests this environment itself ran: no lower environment to ask.
    if (dep.rollback_of === null) {
      for (const lower of env.requires ?? []) {
        const there = await this.deps.store.db.selectFrom('deployments').select('id').where('project_id', '=', dep.project_id).where('environment', '=', lower).where('state', '=', 'succeeded').where('artifacts_json', '=', dep.artifacts_json).limit(1).execute();
        if (there.length === 0) await refuse([`these digests were never deployed successfully to ${lower}: promote what was tested there, not something else`]);
      }
      if ((env.requires ?? []).length > 0) decisions.push({ action: 'promotion', allowed: true, policies: (env.requires ?? []).map((l) => `the same digests run in ${l}`) });
    }
    const startedAt = this.deps.clock().toISOString();
    let incident: string | undefined;
    await this.deps.store.transact(async (tx) => {
      // Claimed with a conditional update: two concurrent deploys of one request cannot both proceed.
      const claimed = await tx.db
        .updateTable('deployments')
        .set({ state: 'deploying', breakglass: bg === undefined ? dep.breakglass : 1 })
        .where('id', '=', deploymentId)
        .where('state', 'in', ['approved', 'requested'])
        .executeTakeFirst();
      if (Number(claimed.numUpdatedRows) !== 1) throw new ConflictError(`deployment ${deploymentId} is already being deployed or has ended`, { deploymentId });
      await this.deps.audit.record(tx, { actor, action: 'deployments.deploy', resource: `deployments/${deploymentId}`, outcome: 'allowed', context, details: { environment: dep.environment, bindingDigest: dep.binding_digest, approvals: gate.approvals.counted.map((c) => c.approver), ...(dep.rollback_of === null ? {} : { rollbackOf: dep.rollback_of }) } });
      if (bg !== undefined) {
        await this.deps.audit.record(tx, { actor, action: 'deployments.breakglass', resource: `deployments/${deploymentId}`, outcome: 'allowed', context, details: { severity: 'high', stage: 'granted', environment: dep.environment, participants: bg.participants, bypassed: bg.bypassed } });
        incident = await bg.open(tx);
      }
    });
    const config = JSON.parse(dep.config_json) as Record<string, string>;
    const basis: ReleaseBasis = gate.approvals.satisfied ? 'approvals' : bg !== undefined ? 'break-glass' : 'rollback';
    let outcome: DeploymentRecord['outcome'] = 'failed';
    let reason: string | null = null;
    let steps: DeploymentRecord['steps'] = [];
    try {
      const secretEnv = await this.serviceSecrets({ deploymentId, runId: dep.run_id, environment: dep.environment, declared: env.secrets ?? [], basis, config }, decisions, context);
      const result = await deployer.deploy({ deploymentId, environment: dep.environment, artifacts, env: { ...config, ...secretEnv } });
      steps = result.steps;
      outcome = 'succeeded';
      if (env.health !== undefined && this.deps.health !== undefined) {
        const check: HealthCheck = 'url' in env.health ? { ...env.health, url: env.health.url.replaceAll('{port}', String(result.port)) } : env.health;
        const budget = env.healthBudgetMs ?? 10_000;
        const health = await this.deps.health(check, { env: { ...config, PORT: String(result.port) }, cwd: result.dir, timeoutMs: budget });
        const at = this.deps.clock().toISOString();
        steps = [...steps, { name: 'health', startedAt: at, finishedAt: at, exitCode: health.ok ? 0 : 1, digests: [] }];
        decisions.push({ action: 'health', allowed: health.ok, policies: [health.detail.slice(0, 300)] });
        if (!health.ok) {
          reason = `health check failed: ${health.detail}`.slice(0, 1000);
          const previous = await this.lastSucceeded(dep);
          if (previous !== undefined) {
            // The release being restored gets its own environment's secrets again, as declared by its run.
            const previousConfig = JSON.parse(previous.config_json) as Record<string, string>;
            const previousSecrets = (await this.deps.facts.environment(previous.run_id, dep.environment))?.secrets ?? [];
            const previousEnv = await this.serviceSecrets({ deploymentId, runId: previous.run_id, environment: dep.environment, declared: previousSecrets, basis: 'rollback', config: previousConfig }, decisions, context);
            const back = await deployer.rollback(dep.environment, { deploymentId: previous.id, artifacts: JSON.parse(previous.artifacts_json) as ArtifactDigest[], env: { ...previousConfig, ...previousEnv } });
            steps = [...steps, ...back.steps.map((s) => ({ ...s, name: `rollback:${s.name}` }))];
            // The restored release is checked like any other: a rollback that does not come up is a failure.
            const again = 'url' in env.health ? { ...env.health, url: env.health.url.replaceAll('{port}', String(back.port)) } : env.health;
            const restored = await this.deps.health(again, { env: { ...config, PORT: String(back.port) }, cwd: back.dir, timeoutMs: budget });
            const at2 = this.deps.clock().toISOString();
            steps = [...steps, { name: 'rollback:health', startedAt: at2, finishedAt: at2, exitCode: restored.ok ? 0 : 1, digests: [] }];
            outcome = restored.ok ? 'rolled_back' : 'failed';
            decisions.push({ action: 'rollback', allowed: restored.ok, policies: [`automatic rollback to ${previous.id} (already approved for ${dep.environment})`] });
            if (!restored.ok) reason = `${reason}; the rollback to ${previous.id} failed its health check too: ${restored.detail}`.slice(0, 1000);
          } else outcome = 'failed';
        }
      }
    } catch (err) {
      reason = `the deploy failed: ${err instanceof Error ? err.message : 'unknown error'}`.slice(0, 1000);
    }
    const finishedAt = this.deps.clock().toISOString();
    const view = await this.show(deploymentId);
    const previous = await this.lastSucceeded(dep);
    const diff = configDiff(previous === undefined ? undefined : (JSON.parse(previous.config_json) as Record<string, string>), config);
    const sboms = (await this.deps.sbomRefs?.(artifacts.map((a) => a.digest))) ?? new Map<string, string>();
    const approvalRows = await this.deps.store.db.selectFrom('deployment_approvals').select(['approver', 'envelope', 'created_at']).where('deployment_id', '=', deploymentId).execute();
    const attestationOf = (approver: string, at: number): string | undefined => {
      const row = approvalRows.find((r) => r.approver === approver && Date.parse(r.created_at) === at);
      return row === undefined ? undefined : recordDigestOf(JSON.parse(row.envelope) as Envelope);
    };
    const vsas = evidence.vsas ?? [];
    const record: DeploymentRecord = {
      deploymentId,
      project: view.project,
      environment: dep.environment,
      initiator: dep.requested_by,
      deployedBy: actor.id,
      justification: dep.justification,
      ticket: dep.ticket ?? undefined,
      approvals: gate.approvals.counted.map((c) => ({ approver: c.approver, justification: c.justification, at: new Date(c.at).toISOString(), attestation: attestationOf(c.approver, c.at) })),
      commitRange: { from: dep.commit_from, to: dep.commit_to },
      bindingDigest: dep.binding_digest,
      artifacts: artifacts.map((a) => ({ path: a.path, digest: a.digest, sbom: sboms.get(a.digest) })),
      config: { digest: dep.config_digest, previous: previous?.config_digest ?? null, diff: { added: diff.added.map((d) => `${d.key}=${d.value}`), removed: diff.removed.map((d) => d.key), changed: diff.changed.map((d) => `${d.key}: ${d.before} -> ${d.after}`) } },
      fingerprint: { deployer: 'local', ...(deployer.fingerprint?.(dep.environment) ?? {}) },
      steps,
      policyDecisions: decisions,
      exceptions: gate.approvals.exceptionsUsed.map((e) => `${e.policyId}:${e.approver}:${e.code}`),
      outcome,
      rollbackOf: dep.rollback_of ?? undefined,
      breakGlass: bg === undefined ? undefined : { participants: bg.participants, justifications: bg.justifications, bypassed: bg.bypassed, incident },
      verificationSummaries: vsas.map((v) => recordDigestOf(v)),
      reason: reason ?? undefined,
      startedAt,
      finishedAt,
    };
    const envelope = signRecord(record, await this.deps.signer());
    const digest = recordDigestOf(envelope);
    await this.deps.store.transact(async (tx) => {
      const event = await this.deps.audit.record(tx, { actor, action: 'deployments.record', resource: `deployments/${deploymentId}`, outcome: outcome === 'succeeded' ? 'allowed' : 'failed', ...(reason === null ? {} : { reason }), context, details: { recordDigest: digest, outcome, environment: dep.environment, ...(bg === undefined ? {} : { severity: 'high', breakGlass: true }) } });
      await tx.db
        .updateTable('deployments')
        .set({ state: outcome, reason, finished_at: finishedAt, record_envelope: JSON.stringify(envelope), record_digest: digest, record_seq: event.seq, vsa_envelope: vsas.length === 0 ? null : JSON.stringify(vsas) })
        .where('id', '=', deploymentId)
        .execute();
    });
    return this.show(deploymentId);
  }

  /**
   * The declared secrets for the service, as environment variables, with the release noted in
   * the record's policy decisions (names and versions, never values). A secret that would
   * replace a configuration value is refused: which one the service sees must not be a guess.
   */
  private async serviceSecrets(req: { deploymentId: string; runId: string; environment: string; declared: readonly string[]; basis: ReleaseBasis; config: Readonly<Record<string, string>> }, decisions: PolicyDecision[], context?: RequestContext): Promise<Record<string, string>> {
    if (req.declared.length === 0) return {};
    const clash = req.declared.filter((n) => Object.hasOwn(req.config, n));
    if (clash.length > 0) throw new ConflictError(`environment ${req.environment} sets ${clash.join(', ')} both in its configuration and as secret(s): rename one`, { names: clash });
    if (this.deps.secrets === undefined) throw new ConflictError(`environment ${req.environment} declares secrets, but this server cannot release secrets to deployments`);
    try {
      const released = await this.deps.secrets({ deploymentId: req.deploymentId, runId: req.runId, environment: req.environment, declared: req.declared, basis: req.basis }, context);
      decisions.push({ action: 'secrets', allowed: true, policies: [`released to the service (${req.basis}): ${released.map((r) => `${r.name} v${r.version}`).join(', ')}`] });
      // An environment variable is text without NUL; anything else would be cut or garbled silently.
      const unfit = released.filter((r) => r.value.includes(0) || !isUtf8(r.value)).map((r) => r.name);
      if (unfit.length > 0) throw new ConflictError(`secret(s) ${unfit.join(', ')} cannot be an environment variable: the value is not UTF-8 text without NUL bytes`, { names: unfit });
      return Object.fromEntries(released.map((r) => [r.name, r.value.toString('utf8')]));
    } catch (err) {
      decisions.push({ action: 'secrets', allowed: false, policies: [err instanceof Error ? err.message.slice(0, 300) : 'refused'] });
      throw err;
    }
  }

  /** The environment's last successful deployment other than `dep` (finished before `before`, if given): what runs there now. */
  private lastSucceeded(dep: { id: string; project_id: string; environment: string }, before?: string) {
    let q = this.deps.store.db
      .selectFrom('deployments')
      .select(['id', 'run_id', 'artifacts_json', 'config_json', 'config_digest'])
      .where('project_id', '=', dep.project_id)
      .where('environment', '=', dep.environment)
      .where('state', '=', 'succeeded')
      .where('id', '!=', dep.id);
    if (before !== undefined) q = q.where('finished_at', '<', before);
    return q
      .orderBy('finished_at', 'desc')
      .orderBy('created_at', 'desc')
      .limit(1)
      .executeTakeFirst();
  }

  /** The VSAs a deployment's promotion produced (one per artifact), for export. */
  async verificationSummaries(deploymentId: string): Promise<Envelope[]> {
    const dep = await this.row(deploymentId);
    return dep.vsa_envelope === null ? [] : (JSON.parse(dep.vsa_envelope) as Envelope[]);
  }

  /** Deployments, newest first, optionally of one project (by name) and one environment. */
  async list(query: { project?: string | undefined; environment?: string | undefined; limit: number }): Promise<DeploymentSummary[]> {
    let q = this.deps.store.db
      .selectFrom('deployments')
      .innerJoin('projects', 'projects.id', 'deployments.project_id')
      .select(['deployments.id', 'projects.name as project', 'deployments.environment', 'deployments.run_id', 'deployments.state', 'deployments.requested_by', 'deployments.ticket', 'deployments.binding_digest', 'deployments.created_at', 'deployments.finished_at', 'deployments.reason', 'deployments.record_digest', 'deployments.rollback_of', 'deployments.breakglass']);
    if (query.project !== undefined) {
      const project = await this.deps.store.db.selectFrom('projects').select('id').where('name', '=', query.project).executeTakeFirst();
      if (project === undefined) throw new NotFoundError(`no project ${query.project} (see airlock project list)`, { project: query.project });
      q = q.where('deployments.project_id', '=', project.id);
    }
    if (query.environment !== undefined) q = q.where('deployments.environment', '=', query.environment);
    const rows = await q.orderBy('deployments.created_at', 'desc').orderBy('deployments.id', 'desc').limit(Math.max(1, Math.min(query.limit, 500))).execute();
    return rows.map((r) => ({ id: r.id, project: r.project, environment: r.environment, runId: r.run_id, state: r.state, requestedBy: r.requested_by, ticket: r.ticket, bindingDigest: r.binding_digest, createdAt: r.created_at, finishedAt: r.finished_at, reason: r.reason, recordDigest: r.record_digest, rollbackOf: r.rollback_of, breakGlass: r.breakglass === 1 }));
  }

  /**
   * The offline-verifiable file of a finished deployment: its signed record, the audit event
   * that named the record's digest, and that event's inclusion proof to a signed checkpoint.
   * Exported as stored: a record edited in the database fails verification, as it should.
   */
  async recordFile(deploymentId: string): Promise<RecordFile> {
    const dep = await this.row(deploymentId);
    if (dep.record_envelope === null || dep.record_seq === null) throw new ConflictError(`deployment ${deploymentId} is ${dep.state}: it has no record yet (one is written when a deploy finishes)`, { state: dep.state });
    const { proofs } = this.deps;
    if (proofs === undefined) throw new ConflictError('this server cannot prove deployment records (no audit proofs configured)');
    const [event, proof] = await Promise.all([proofs.entry(dep.record_seq), proofs.inclusion(dep.record_seq)]);
    const vsas = dep.vsa_envelope === null ? [] : (JSON.parse(dep.vsa_envelope) as Envelope[]);
    const envelope = JSON.parse(dep.record_envelope) as Envelope;
    // The approvals the signed record counted, by the digests it names.
    const named = new Set(recordApprovalDigests(envelope));
    const approvals = (await this.deps.store.db.selectFrom('deployment_approvals').select('envelope').where('deployment_id', '=', deploymentId).execute()).map((r) => JSON.parse(r.envelope) as Envelope).filter((e) => named.has(recordDigestOf(e)));
    return { format: RECORD_FILE_FORMAT, envelope, audit: { event, inclusion: proof.inclusion, checkpoint: proof.checkpoint }, ...(approvals.length === 0 ? {} : { approvals }), ...(vsas.length === 0 ? {} : { verificationSummaries: vsas }) };
  }

  async show(deploymentId: string): Promise<DeploymentView> {
    const dep = await this.row(deploymentId);
    const { approvals, rulesChanged, reasons: gateReasons } = await this.gateOf(dep);
    const reasons = [...(dep.state !== 'requested' && dep.state !== 'approved' ? [`the deployment is ${dep.state}`] : []), ...gateReasons];
    const project = await this.deps.store.db.selectFrom('projects').select('name').where('id', '=', dep.project_id).executeTakeFirstOrThrow();
    // A finished deployment's diff is against what ran before it, not against what ran since.
    const previous = await this.lastSucceeded(dep, dep.finished_at ?? undefined);
    return {
      id: dep.id,
      project: project.name,
      environment: dep.environment,
      runId: dep.run_id,
      state: dep.state,
      requestedBy: dep.requested_by,
      justification: dep.justification,
      ticket: dep.ticket,
      artifacts: JSON.parse(dep.artifacts_json) as ArtifactDigest[],
      configDigest: dep.config_digest,
      configDiff: configDiff(previous === undefined ? undefined : (JSON.parse(previous.config_json) as Record<string, string>), JSON.parse(dep.config_json) as Record<string, string>),
      commitRange: { from: dep.commit_from, to: dep.commit_to },
      bindingDigest: dep.binding_digest,
      createdAt: dep.created_at,
      reason: dep.reason,
      finishedAt: dep.finished_at,
      recordDigest: dep.record_digest,
      rollbackOf: dep.rollback_of,
      breakGlass: dep.breakglass === 1,
      rulesChanged,
      approvals,
      gate: { allowed: reasons.length === 0, reasons },
    };
  }

  /** Change windows and freezes (recurring from the pipeline, one-off from `freeze`) at `now`. */
  private async window(dep: { run_id: string; environment: string }, now: number): Promise<DeployWindowDecision> {
    const env = await this.deps.facts.environment(dep.run_id, dep.environment);
    const active = await this.freezes.active(dep.environment, now);
    return deployAllowed({ windows: env?.rules.windows ?? [], freezes: [...(env?.rules.freezes ?? []), ...active.recurring], oneOffFreezes: active.oneOff, now });
  }

  /**
   * The rules in force before this request, when this request's rules differ from them and the
   * environment is protected (needs approvals either way); otherwise undefined.
   */
  private async previousRules(dep: DeploymentRow): Promise<ProtectionRules | undefined> {
    if (dep.rules_json === '') return undefined;
    const mine = JSON.parse(dep.rules_json) as ProtectionRules;
    const last = await this.deps.store.db
      .selectFrom('deployments')
      .select('rules_json')
      .where('project_id', '=', dep.project_id)
      .where('environment', '=', dep.environment)
      .where('state', '=', 'succeeded')
      .where('rules_json', '!=', '')
      .where('created_at', '<', dep.created_at)
      .orderBy('created_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    if (last === undefined || last.rules_json === dep.rules_json) return undefined;
    const before = JSON.parse(last.rules_json) as ProtectionRules;
    return before.required > 0 || mine.required > 0 ? before : undefined;
  }

  private async row(id: string): Promise<DeploymentRow> {
    const dep = await this.deps.store.db.selectFrom('deployments').selectAll().where('id', '=', id).executeTakeFirst();
    if (dep === undefined) throw new NotFoundError(`no deployment ${id} (see airlock deployments list)`, { id });
    return dep;
  }

  private async approvals(deploymentId: string): Promise<Approval[]> {
    const rows = await this.deps.store.db.selectFrom('deployment_approvals').selectAll().where('deployment_id', '=', deploymentId).orderBy('created_at').execute();
    return rows.map((r) => ({ approver: r.approver, decision: r.decision as 'approve' | 'deny', justification: r.justification, bindingDigest: r.binding_digest, at: Date.parse(r.created_at), roles: JSON.parse(r.roles_json) as string[] }));
  }

  private commits(projectId: string, from: string | undefined, to: string): Promise<{ authors: string[]; committers: string[] }> {
    return this.ranges(JSON.stringify([projectId, from ?? '', to]));
  }

  /** The core's verdict over stored facts: who asked, who triggered, who wrote the change. */
  private async evaluate(dep: DeploymentRow, approvals: readonly Approval[], now: number): Promise<{ evaluation: ApprovalEvaluation; rulesChanged: boolean }> {
    const run = await this.deps.facts.run(dep.run_id);
    const env = await this.deps.facts.environment(dep.run_id, dep.environment);
    if (env === undefined) throw new ConflictError(`environment ${dep.environment} is no longer declared by the run's pipeline`);
    // A change to a protected environment's rules is itself a change to approve: one of the
    // owners under the rules in force (not the new ones, which could name anyone) must approve.
    const before = await this.previousRules(dep);
    const rules = before === undefined ? env.rules : { ...env.rules, ownersRequired: true, owners: [...before.owners] };
    const commits = await this.commits(dep.project_id, dep.commit_from ?? undefined, dep.commit_to);
    const evaluation = evaluateApprovals({
      request: { requester: dep.requested_by, triggeredBy: run.triggeredBy, authors: commits.authors, committers: commits.committers, ...(env.lastConfigEditor === undefined ? {} : { lastConfigEditor: env.lastConfigEditor }), bindingDigest: dep.binding_digest },
      rules,
      approvals,
      now,
      people: await this.deps.facts.people(),
      exceptions: (await this.deps.exceptions?.({ project: run.project, environment: dep.environment, requester: dep.requested_by, triggeredBy: run.triggeredBy, authors: commits.authors, committers: commits.committers, lastConfigEditor: env.lastConfigEditor, approvers: approvals.map((a) => ({ id: a.approver, roles: a.roles })) })) ?? [],
    });
    return { evaluation, rulesChanged: before !== undefined };
  }
}

/** The approval digests a signed record names (read from its own payload, as stored). */
function recordApprovalDigests(envelope: Envelope): string[] {
  try {
    const stmt = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as { predicate?: { approvals?: { attestation?: string }[] } };
    return (stmt.predicate?.approvals ?? []).flatMap((a) => (a.attestation === undefined ? [] : [a.attestation]));
  } catch {
    return [];
  }
}

/**
 * Every stored deployment record with the audit event that named its digest, so that
 * `airlock audit verify` sees a record edited in its table (the log itself stays intact).
 */
export async function deploymentRecordAnchors(db: Store['db']): Promise<AnchoredDocument[]> {
  const rows = await db.selectFrom('deployments').select(['id', 'record_envelope', 'record_seq']).where('record_seq', 'is not', null).orderBy('record_seq').execute();
  return rows.flatMap((r) => {
    if (r.record_seq === null) return [];
    let digest = 'an unreadable record';
    try {
      if (r.record_envelope !== null) digest = recordDigestOf(JSON.parse(r.record_envelope) as Envelope);
    } catch {
      // Not JSON any more: reported as modified below, with this placeholder as its digest.
    }
    return [{ seq: r.record_seq, action: 'deployments.record', resource: `deployments/${r.id}`, field: 'recordDigest', digest, what: `deployment record ${r.id}` }];
  });
}
