/**
 * Composition root: the one place that turns a Config into the object graph (store, audit
 * log, key, checkpointer). Adapters (server, CLI) call this and nothing below it.
 */
import { createPublicKey } from 'node:crypto';
import { existsSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../config/index.js';
import type { AnchoredDocument, AuditEventInput, AuditLog as AuditLogType, CheckpointKey, Checkpointer as CheckpointerType, NoteVerifier, RequestContext, SignedCheckpoint } from '../audit/index.js';
import { AirlockError, ForbiddenError, NotFoundError, describeError } from '../errors/index.js';
import { AuditLog, Checkpointer, checkpointKeyFrom, encodeInclusionProof, parseVerifierKey } from '../audit/index.js';
import { MIGRATION_NAMES, openStore } from '../storage/index.js';
import type { MigrationState, Store } from '../storage/index.js';
import type { Logger } from '../observability/index.js';
import { Identity, OidcClient, SigningKeys, TokenService } from '../identity/index.js';
import type { SealKey } from '../identity/index.js';
import { sodExceptionsFor } from '../policy/index.js';
import { PolicyHolder } from './policy-holder.js';
import { Artifacts, BlobStore } from '../artifacts/index.js';
import { EmbeddedRunner, GitCli, Projects, Runs } from '../runs/index.js';
import type { Job } from '../runs/index.js';
import { executeStep } from '../runner/index.js';
import { loadOrCreateRunnerKey } from './runner-key.js';
import { legacyKeyFiles, logSealedKeyEvent, pendingKeys } from './keys.js';
import { Vault, loadRootKey } from '../vault/index.js';
import { Secrets } from '../secrets/index.js';
import { IN_TOTO_PAYLOAD_TYPE, PlatformKeys, signEnvelope, statementBytes } from '../attest/index.js';
import type { Envelope, Statement } from '../attest/index.js';
import { Provenance } from '../provenance/index.js';
import { ApprovalNotifier, Deployments, LocalDeployer, deploymentRecordAnchors, runHealthCheck } from '../delivery/index.js';
import { verifyArtifact, vsaFor } from '../verify/index.js';
import { deliveryFacts, deploymentSecrets, sbomRefs } from './delivery.js';
import type { InTotoRouteDeps } from '../intoto/index.js';

export { PolicyHolder } from './policy-holder.js';
export { deliveryFacts, deploymentSecrets, rulesOf, sbomRefs } from './delivery.js';
export { homeCheckpointVerifierKey } from './keys.js';
export type { ActivePolicy } from './policy-holder.js';

/** The wired application. */
export interface App {
  readonly config: Config;
  readonly store: Store;
  readonly audit: AuditLogType;
  readonly key: CheckpointKey;
  readonly checkpointer: CheckpointerType;
  readonly identity: Identity;
  readonly tokens: TokenService;
  readonly signingKeys: SigningKeys;
  readonly policy: PolicyHolder;
  readonly blobs: BlobStore;
  readonly projects: Projects;
  readonly runs: Runs;
  /** Platform signing keys (attestations, in-toto layouts), private halves sealed by the vault. */
  readonly platformKeys: PlatformKeys;
  /** Signed attestations of succeeded runs, written by the control plane. */
  readonly provenance: Provenance;
  /** Known blobs, immutable names and releases over the blob store. */
  readonly artifacts: Artifacts;
  /** Deployment requests, approvals, gates and deploys (issue 7, in progress). */
  readonly deployments: Deployments;
  /** What the in-toto export needs: a run's links, the runner keys allowed to make them, the layout key. */
  readonly intoto: InTotoRouteDeps;
  /**
   * The secrets vault, opened by openApp once the database is migrated (it holds the identity
   * and checkpoint keys). Opening checks the root key against the database: a wrong
   * AIRLOCK_MASTER_KEY fails with KEY_INVALID.
   */
  vault(): Promise<Vault>;
  readonly secrets: Secrets;
  /**
   * Release secrets to the step attempt a verified workload token names (the runner fetching
   * at step start, embedded or remote): only while the step runs, only what it declared
   * (`requested` narrows it), and only what policy allows. Refusals are recorded.
   */
  releaseSecrets(claims: Readonly<Record<string, string>>, requested?: readonly string[], sourceAddress?: string, requestRecord?: AuditEventInput): Promise<{ name: string; value: Buffer; version: number }[]>;
  /** The environment Airlock provides to a step besides its declared variables. */
  providedEnv(job: Job, runner: string): Promise<Record<string, string>>;
  /**
   * Run pipeline jobs in this process (the embedded runner) and reap lost leases until close.
   * Servers do (unless told not to); one-shot CLI commands do not.
   */
  startRunner(options: { readonly labels: readonly string[]; readonly concurrency: number; readonly reap: boolean }): Promise<void>;
  /** Time for identity decisions (session expiry, MFA age, token lifetimes). */
  readonly clock: () => Date;
  /**
   * Keys trusted for this log's checkpoints: the given verifier keys when there are any (an
   * auditor who does not trust this machine brings their own), otherwise this home's key.
   */
  verifiers(keys?: readonly string[]): NoteVerifier[];
  /**
   * Sign a checkpoint now on behalf of `actor`. The request is recorded first, so the new
   * checkpoint covers its own record; a refusal (tampering, or a bug) is recorded as failed.
   */
  signCheckpoint(actor: AuditEventInput['actor'], context?: RequestContext): Promise<SignedCheckpoint>;
  /**
   * Retire the current token-signing key and start signing with a new one, recorded in the
   * same transaction. The retired key stays in the JWKS until its last token has expired.
   */
  rotateSigningKey(actor: AuditEventInput['actor']): Promise<{ kid: string; retired: string[] }>;
  /**
   * Make a migrated database usable: the built-in roles, and the shipped policy set as version
   * 0 if none is stored (both idempotent). Runs after every migration.
   */
  seed(): Promise<void>;
  /** Stop signing, drain queued writes, close connections. */
  close(): Promise<void>;
}

/** Options for {@link openApp}. */
export interface OpenAppOptions {
  /** Apply pending migrations first (the embedded default does; managed installs may not). */
  readonly migrate?: boolean;
  readonly logger?: Logger | undefined;
  /** Start the checkpoint cadence (servers do; one-shot CLI commands do not). */
  readonly checkpointing?: boolean;
  /**
   * With migrate: also store the shipped policy set as version 0 if none is stored (default
   * true). Tests that need an empty log turn it off; the shipped defaults then apply unstored.
   */
  readonly seedPolicy?: boolean;
  /** Time source for identity (sessions, TOTP, tokens); tests move it to exercise expiry. */
  readonly clock?: () => Date;
}

/** Identity of the local operator for events the CLI itself records. */
export function localActor(): AuditEventInput['actor'] {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (containers): keep "unknown" rather than fail the command.
  }
  return { kind: 'system', id: `cli:${user}@${hostname()}` };
}

/** Open storage, load keys and wire the audit domain. */
export async function openApp(config: Config, options: OpenAppOptions = {}): Promise<App> {
  const store = await openStore(config.database);
  try {
    if (options.migrate === true) await store.migrate();
    const audit = new AuditLog(store);
    const clock = options.clock ?? ((): Date => new Date());
    // The checkpoint key and the identity sealing key (TOTP seeds, JWT keys, OIDC verifiers) live
    // in the vault, sealed by the root key; opening it imports an old install's key files once.
    const openVault = async (): Promise<Vault> => {
      // Embedded (SQLite) installs may generate their root key; a PostgreSQL install serves
      // replicas, which must all be given the same key.
      const root = await loadRootKey({ env: process.env, home: config.home, generate: config.database.kind === 'sqlite' });
      if (root.created) options.logger?.warn({ path: join(config.home, 'keys') }, 'generated a new vault root key in AIRLOCK_HOME (set AIRLOCK_MASTER_KEY to keep it elsewhere); back it up: without it no secret can be read');
      return Vault.open({ store, root: root.key, clock, legacyKeys: legacyKeyFiles(config.home), onSealedKey: logSealedKeyEvent(options.logger) });
    };
    // Opened now (a wrong root key stops here), unless migrations are pending: `airlock db
    // migrate` opens the app to apply them and needs neither key.
    const migrated = options.migrate === true || (await store.migrationStatus()).every((m) => m.executedAt !== null);
    const keyVault = migrated ? await openVault() : undefined;
    const { seal, key }: { seal: SealKey; key: CheckpointKey } =
      keyVault === undefined ? pendingKeys(config.auditOrigin) : { seal: keyVault.identitySealKey(), key: checkpointKeyFrom(config.auditOrigin, keyVault.checkpointKey().privateKey) };
    let vaultOpening: Promise<Vault> | undefined = keyVault === undefined ? undefined : Promise.resolve(keyVault);
    const vault = (): Promise<Vault> =>
      (vaultOpening ??= openVault().catch((err: unknown) => {
        vaultOpening = undefined;
        throw err;
      }));
    let openedVault: Vault | undefined = keyVault;
    const vaultReady = async (): Promise<Vault> => (openedVault = await vault());
    const signingKeys = new SigningKeys({ store, seal, clock });
    const tokens = new TokenService({ keys: signingKeys, issuer: config.publicUrl, clock });
    const oidcSettings = config.oidc;
    let oidc: Promise<OidcClient> | undefined;
    const connectOidc =
      oidcSettings === undefined
        ? undefined
        : () =>
            (oidc ??= OidcClient.connect({
              issuer: oidcSettings.issuer,
              clientId: oidcSettings.clientId,
              clientSecret: oidcSettings.clientSecret,
              redirectUri: `${config.publicUrl}/api/v1/auth/oidc/callback`,
              roleMapping: Object.fromEntries(Object.entries(oidcSettings.roleMapping).map(([k, v]) => [k, [...v]])),
              groupsClaim: oidcSettings.groupsClaim,
              trustAmr: oidcSettings.trustAmr,
              allowInsecure: oidcSettings.allowInsecure,
            }).catch((err: unknown) => {
              oidc = undefined;
              throw err;
            }));
    const identity = new Identity(
      { store, audit, seal, clock },
      tokens,
      { idleMs: config.sessionIdleMinutes * 60_000, maxMs: config.sessionMaxHours * 3_600_000, totpIssuer: `Airlock (${new URL(config.publicUrl).hostname})` },
      connectOidc,
    );
    const policy = new PolicyHolder(store, audit, clock);
    const seed = async (): Promise<void> => {
      await vaultReady(); // creates (or imports) the held keys of a database just migrated
      await store.transact((tx) => identity.roles.ensureBuiltins(tx));
      if (options.seedPolicy !== false) await policy.seed({ kind: 'system', id: 'airlock' });
    };
    // A migrated database always has the built-in roles and a policy version in force.
    if (options.migrate === true) await seed();
    const secrets = new Secrets({
      store,
      audit,
      clock,
      cipher: {
        encrypt: async (tx, ctx, plaintext) => {
          const { value_size: _size, ...sealed } = await (await vaultReady()).encrypt(tx, ctx, plaintext);
          return sealed;
        },
        decrypt: async (row, ctx) => (await vaultReady()).decrypt(row, ctx),
        auditHash: (value) => {
          if (openedVault === undefined) throw new AirlockError('INTERNAL', 'the vault is not open');
          return openedVault.auditHash(value);
        },
      },
      releasePolicy: { decide: async (request) => (await policy.current()).engine.authorizeRelease(request) },
    });
    const blobs = new BlobStore(join(config.home, 'artifacts'));
    const runsDeps = { store, audit, git: new GitCli(join(config.home, 'repos')), clock, runsDir: join(config.home, 'runs') };
    const projects = new Projects(runsDeps);
    const runs = new Runs(runsDeps, projects, config.runnerLeaseSeconds * 1000);
    const platformKeys = new PlatformKeys({
      store,
      audit,
      clock,
      sealer: { sealBlob: async (purpose, plain) => (await vaultReady()).sealBlob(purpose, plain), openBlob: async (purpose, sealed) => (await vaultReady()).openBlob(purpose, sealed) },
    });
    const artifacts = new Artifacts({ store, audit, objects: blobs, clock });
    const provenance = new Provenance({
      store,
      audit,
      clock,
      signer: () => platformKeys.signer('attestation'),
      builderId: `${config.publicUrl}/builders/airlock`,
      runs,
      readBlob: (digest) => blobs.readVerified(digest),
      recordOutputs: (tx, runId, outputs) => artifacts.recordOutputs(tx, runId, outputs),
    });
    let embeddedLabels: readonly string[] = ['embedded', 'linux'];
    const intoto: InTotoRouteDeps = {
      resolveRun: (run) => runs.resolveId(run),
      runEvidence: async (runId) => {
        const view = await runs.evidenceView(runId);
        // Per step, its last attempt; steps that never ran (pending, skipped) are not in the export.
        const last = new Map<string, (typeof view.run.stages)[number]['steps'][number]>();
        for (const st of view.run.stages) for (const s of st.steps) if (s.state !== 'pending' && s.state !== 'skipped') last.set(`${s.stage}\u0000${s.step}`, s);
        return {
          pipeline: view.pipeline,
          steps: [...last.values()].map((s) => ({ stage: s.stage, step: s.step, runner: s.runner ?? undefined, link: (s.result as { evidence?: { intotoLink?: unknown } | null } | null)?.evidence?.intotoLink ?? null })),
        };
      },
      functionaryKeys: async () => {
        const embeddedKey = await loadOrCreateRunnerKey(config.home);
        const agentRows = await store.db.selectFrom('agents').select(['public_key', 'labels']).execute();
        return [{ key: embeddedKey.publicKey, labels: embeddedLabels }, ...agentRows.map((a) => ({ key: createPublicKey(a.public_key), labels: JSON.parse(a.labels) as string[] }))];
      },
      // Each project's layouts are signed by its own key: one key vouches for one project's chains.
      layoutSigner: async (runId) => platformKeys.signer('layout', `project:${(await runs.show(runId)).project}`),
      publishedKeys: () => platformKeys.publicKeys(),
    };
    // Approvers hear about requests through signed webhooks (AIRLOCK_APPROVAL_WEBHOOK_URL).
    const notifier = new ApprovalNotifier({ audit, targets: config.approvalWebhooks, ...(options.logger === undefined ? {} : { logger: options.logger }), clock: { now: clock } });
    const deployments = new Deployments({
      store,
      audit,
      clock,
      facts: deliveryFacts({
        store,
        runs,
        git: runsDeps.git,
        reposDir: join(config.home, 'repos'),
        // Who is who: each enabled user's name and the address they commit with.
        people: async () => (await store.db.selectFrom('users').select(['username', 'email']).where('disabled_at', 'is', null).execute()).map((u) => ({ id: u.username, identities: u.email === null ? [u.username] : [u.username, u.email] })),
        roles: async (username) => (await store.db.selectFrom('principal_roles').innerJoin('users', 'users.id', 'principal_roles.principal_id').select('principal_roles.role').where('principal_roles.principal_kind', '=', 'user').where('users.username', '=', username).execute()).map((r) => r.role),
      }),
      signer: () => platformKeys.signer('attestation'),
      // A record file's audit event, and an inclusion proof to a checkpoint signed for it.
      proofs: {
        entry: async (seq) => (await audit.entry(seq)).event,
        inclusion: async (seq) => {
          const cp = await checkpointer.checkpointNow();
          return { inclusion: encodeInclusionProof(await audit.inclusionProof(seq, cp.size)), checkpoint: cp.note };
        },
      },
      deployer: new LocalDeployer({ objects: blobs, root: join(config.home, 'environments'), ...(options.logger === undefined ? {} : { logger: options.logger }), clock }),
      health: runHealthCheck,
      // The service's declared secrets, asked for only after every gate passed (policy sees approved: true).
      secrets: deploymentSecrets({ runs, secrets, ready: vaultReady }),
      // Segregation-of-duties exceptions exist only as named Cedar permits (policies/sod-exceptions.cedar).
      exceptions: async (ctx) => sodExceptionsFor((await policy.current()).engine, ctx),
      notify: (n) => notifier.notify({ ...n, url: `${config.publicUrl}/api/v1/deployments/${n.deploymentId}` }),
      // What ships must carry evidence that verifies: provenance from this builder and PASSED tests.
      // Each promotion emits a signed SLSA VSA per artifact: what was verified, against which attestations.
      evidence: async (_runId, shipped) => {
        const keys = (await platformKeys.publicKeys()).filter((k) => k.purpose === 'attestation').map((k) => ({ kid: k.kid, key: createPublicKey(k.publicKeyPem), retiredAt: k.retiredAt }));
        const reasons: string[] = [];
        const vsas: Envelope[] = [];
        const signer = await platformKeys.signer('attestation');
        for (const a of shipped) {
          const verdict = verifyArtifact(a.digest, (await provenance.list({ subject: a.digest })).map((x) => x.envelope), keys, { builderId: `${config.publicUrl}/builders/airlock` });
          reasons.push(...verdict.reasons.map((r) => `${a.path}: ${r}`));
          vsas.push(signEnvelope(IN_TOTO_PAYLOAD_TYPE, statementBytes(vsaFor(verdict, { name: a.path, verifierId: `${config.publicUrl}/verifiers/airlock-delivery`, now: clock() }) as Statement), signer));
        }
        return { ok: reasons.length === 0, reasons, vsas };
      },
      sbomRefs: sbomRefs(provenance),
    });
    // A succeeded run is attested by the control plane in the transaction that ends it.
    runs.onSucceeded({ prepare: () => provenance.prepare(), attest: (tx, runId) => provenance.attestInTx(tx, runId) });
    const releaseSecrets = async (claims: Readonly<Record<string, string>>, requested?: readonly string[], sourceAddress = 'embedded', requestRecord?: AuditEventInput): Promise<{ name: string; value: Buffer; version: number }[]> => {
      const stepId = claims.step_id;
      if (stepId === undefined) throw new ForbiddenError('this workload token is not bound to a step attempt, so no secret can be released with it');
      const job = await runs.releaseView(stepId);
      // The claims come from a verified token; a mismatch means it was minted for another step.
      if (job.runId !== claims.run_id || job.step !== claims.step) throw new ForbiddenError('the workload token does not belong to this step');
      if (job.state !== 'running' || job.runner === null) throw new ForbiddenError(`step ${job.stage}/${job.step} is ${job.state}: secrets are released only while it runs`, { state: job.state });
      await vaultReady();
      return secrets.releaseToStep(
        {
          runId: job.runId,
          stepId: job.stepId,
          project: job.project,
          pipeline: job.pipeline,
          stage: job.stage,
          step: job.step,
          environment: job.environment,
          environmentProtected: job.environmentProtected,
          ref: job.ref,
          commit: job.commit,
          trigger: claims.trigger ?? 'manual',
          // Gate state: a pipeline stage does not wait for deployment approvals, so a step never
          // has them and protected-environment secrets stay locked for steps (policy
          // protected-secrets-need-approval); the deployed service gets them after its gates.
          approved: false,
          traceId: job.traceId,
          runner: job.runner,
          sourceAddress,
          declared: job.secrets.map((s) => s.name),
        },
        requested,
        requestRecord,
      );
    };
    const providedEnv = async (job: Job, runner: string): Promise<Record<string, string>> => {
      const token = await tokens.mintWorkloadToken({
        pipeline: job.pipeline,
        runId: job.runId,
        step: job.step,
        stepId: job.stepId,
        audience: 'airlock-api',
        commit: job.commit,
        trigger: 'manual',
        ...(job.environment === undefined ? {} : { environment: job.environment }),
        ttlSeconds: Math.min(900, Math.max(60, Math.ceil(job.timeoutMs / 1000) + 60)),
      });
      return {
        AIRLOCK_RUN_ID: job.runId,
        AIRLOCK_RUN_NUMBER: String(job.runNumber),
        AIRLOCK_PROJECT: job.project,
        AIRLOCK_PIPELINE: job.pipeline,
        AIRLOCK_STAGE: job.stage,
        AIRLOCK_STEP: job.step,
        AIRLOCK_ATTEMPT: String(job.attempt),
        AIRLOCK_COMMIT: job.commit,
        AIRLOCK_TRACE_ID: job.traceId,
        AIRLOCK_RUNNER: runner,
        AIRLOCK_SERVER: config.publicUrl,
        AIRLOCK_TOKEN: token.token,
      };
    };
    let embedded: EmbeddedRunner | undefined;
    let reaper: NodeJS.Timeout | undefined;
    let hygiene: NodeJS.Timeout | undefined;
    const startRunner = async (opts: { readonly labels: readonly string[]; readonly concurrency: number; readonly reap: boolean }): Promise<void> => {
      if (opts.reap && reaper === undefined) {
        // Steps whose runner died (this process before a restart, or an agent) end when their lease lapses.
        const reap = () => void runs.reapLost().catch((err: unknown) => options.logger?.error({ err }, 'reaping lost steps failed'));
        reaper = setInterval(reap, Math.min(5000, config.runnerLeaseSeconds * 500));
        reap();
        // The secrets hygiene check (overdue rotation, expiry, unused), at start and daily.
        const check = () => void secrets.hygiene(config.secretUnusedDays).catch((err: unknown) => options.logger?.error({ err }, 'the secrets hygiene check failed'));
        hygiene = setInterval(check, 24 * 3_600_000);
        hygiene.unref();
        check();
      }
      if (opts.concurrency === 0 || embedded !== undefined) return;
      embeddedLabels = [...opts.labels];
      const runnerKey = await loadOrCreateRunnerKey(config.home);
      const name = `embedded@${hostname()}`;
      embedded = new EmbeddedRunner(runs, {
        name,
        labels: opts.labels,
        concurrency: opts.concurrency,
        execute: (job, io) => executeStep(job, { blobs, workRoot: config.workDir, signer: runnerKey, sandbox: config.stepSandbox, ...io }),
        provided: (job) => providedEnv(job, name),
        // The same path as a remote agent's: the step's own workload token names what to release.
        release: async (_job, provided) => {
          const token = provided.AIRLOCK_TOKEN;
          if (token === undefined) throw new ForbiddenError('the step has no workload token');
          const v = await tokens.verify(token, { audience: 'airlock-api', kind: 'workload' });
          return releaseSecrets({ run_id: v.runId, step: v.step, trigger: v.trigger, ...(v.stepId === undefined ? {} : { step_id: v.stepId }) });
        },
        sourceDir: (runId) => runs.sourceDir(runId),
        logger: options.logger,
      });
      embedded.start();
    };
    const checkpointer = new Checkpointer({
      store,
      log: audit,
      signer: key.signer,
      origin: config.auditOrigin,
      intervalMs: config.checkpointIntervalMs,
      statePath: join(config.home, 'state', 'last-checkpoint.json'),
      onError: (err) => options.logger?.error({ err }, 'checkpoint signing refused or failed'),
    });
    if (options.checkpointing === true) checkpointer.start();
    return {
      config,
      store,
      audit,
      key,
      checkpointer,
      identity,
      tokens,
      signingKeys,
      policy,
      blobs,
      projects,
      runs,
      platformKeys,
      provenance,
      artifacts,
      deployments,
      intoto,
      vault: vaultReady,
      secrets,
      releaseSecrets,
      providedEnv,
      startRunner,
      clock,
      seed,
      rotateSigningKey: (actor) =>
        store.transact(async (tx) => {
          const before = await tx.db.selectFrom('signing_keys').select('kid').where('retired_at', 'is', null).execute();
          const kid = await signingKeys.rotate(tx);
          const retired = before.map((r) => r.kid);
          await audit.record(tx, { actor, action: 'tokens.signing-key.rotate', resource: `signing-keys/${kid}`, outcome: 'allowed', details: { kid, retired } });
          return { kid, retired };
        }),
      signCheckpoint: async (actor, context) => {
        const base = { actor, action: 'audit.checkpoint.sign', resource: 'audit/checkpoints', context } as const;
        await audit.append({ ...base, outcome: 'allowed' });
        try {
          return await checkpointer.checkpointNow();
        } catch (err) {
          await audit.append({ ...base, outcome: 'failed', reason: describeError(err) }).catch(() => undefined);
          throw err;
        }
      },
      verifiers: (keys = []) => (keys.length > 0 ? keys.map(parseVerifierKey) : [parseVerifierKey(key.verifierKey)]),
      close: async () => {
        try {
          if (reaper !== undefined) clearInterval(reaper);
          if (hygiene !== undefined) clearInterval(hygiene);
          await embedded?.stop();
          // Outcomes of notifications in flight are recorded before the store closes.
          await notifier.close();
          if (options.checkpointing === true) await checkpointer.stop();
        } finally {
          await store.close();
        }
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}

/** Read access to the log, without a signing key and without writing anything. */
export interface Reader {
  readonly store: Store;
  readonly audit: AuditLog;
  close(): Promise<void>;
}

/**
 * Open the database for reading. Read commands are out-of-band reads by whoever holds the
 * database: they never migrate, never create a key and never append an audit event. A missing
 * SQLite file is reported rather than created.
 */
export async function openReader(config: Config): Promise<Reader> {
  if (config.database.kind === 'sqlite' && !existsSync(config.database.path)) {
    throw new NotFoundError(`there is no database at ${config.database.path}; run \`airlock db migrate\` or start \`airlock server\` first (or check --home)`, {
      path: config.database.path,
    });
  }
  const store = await openStore(config.database);
  try {
    const pending = (await store.migrationStatus()).filter((m) => m.executedAt === null);
    if (pending.length > 0) {
      throw new AirlockError('STORAGE_FAILED', `the database is not migrated (${pending.length} pending migration(s)); run \`airlock db migrate\``, {
        pending: pending.map((m) => m.name),
      });
    }
    return { store, audit: new AuditLog(store), close: () => store.close() };
  } catch (err) {
    await store.close();
    throw err;
  }
}

/**
 * The documents other domains keep outside the audit log but name in it by digest, for
 * `audit verify` (one list, so a new kind of anchored record is checked everywhere at once).
 */
export async function auditAnchors(db: Store['db']): Promise<AnchoredDocument[]> {
  return deploymentRecordAnchors(db);
}

/**
 * Migration state without side effects: a missing SQLite file is reported as all pending,
 * never created.
 */
export async function migrationStatus(config: Config): Promise<readonly MigrationState[]> {
  if (config.database.kind === 'sqlite' && !existsSync(config.database.path)) {
    return MIGRATION_NAMES.map((name) => ({ name, executedAt: null }));
  }
  const store = await openStore(config.database);
  try {
    return await store.migrationStatus();
  } finally {
    await store.close();
  }
}
