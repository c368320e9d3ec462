/**
 * The control plane's evidence about a run, written when the run succeeds and never by a step
 * (SLSA Build L3 intent: every field but the subject digest comes from stored state the
 * control plane recorded itself). For each run output: a SLSA Provenance v1 statement, a
 * test-result statement when the run has `evidence: test` steps, and a CycloneDX SBOM
 * statement when the source tree has a package-lock.json. Each is a DSSE envelope signed
 * with the platform attestation key (held by the vault; no step can reach it).
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditLog, JsonValue, RequestContext } from '../audit/index.js';
import { AIRLOCK_PIPELINE_BUILD_TYPE, CYCLONEDX_BOM, IN_TOTO_PAYLOAD_TYPE, SLSA_PROVENANCE_V1, TEST_RESULT_V01, linkByproduct, provenancePredicate, signEnvelope, statement, statementBytes, testResultPredicate, toSigstoreBundle } from '../attest/index.js';
import type { AttestationSigner, Envelope } from '../attest/index.js';
import { AirlockError } from '../errors/index.js';
import { parseJUnit, testResultFromExit } from '../evidence/index.js';
import type { PipelineDefinition } from '../pipeline/index.js';
import type { RunDetail } from '../runs/index.js';
import { lockfilePackages, sbomFromLockfile } from '../sbom/index.js';
import type { Store, Tx } from '../storage/index.js';

type Actor = Parameters<AuditLog['append']>[0]['actor'];

/** The build type every Airlock provenance names (docs/attestations.md). */
export const BUILD_TYPE = AIRLOCK_PIPELINE_BUILD_TYPE;
/** JUnit reports larger than this are not parsed (the exit code decides). */
const MAX_JUNIT_BYTES = 10 * 1024 * 1024;

export interface ProvenanceDeps {
  readonly store: Store;
  readonly audit: AuditLog;
  readonly clock: () => Date;
  /** The active platform attestation key. */
  readonly signer: () => Promise<AttestationSigner>;
  /** This control plane's builder id (its public URL + /builder). */
  readonly builderId: string;
  readonly runs: { evidenceView(runId: string, via?: Pick<Tx, 'db'>): Promise<{ run: RunDetail; pipeline: PipelineDefinition; repository: string; sourceDir: string }> };
  /** Bytes of a stored blob (JUnit reports); re-hashed by the store. */
  readonly readBlob: (digest: string) => Promise<Buffer>;
  /** Record the run's outputs as artifacts in the attestation's transaction. */
  readonly recordOutputs?: ((tx: Tx, runId: string, outputs: readonly { path: string; digest: string; size: number }[]) => Promise<void>) | undefined;
}

export interface StoredAttestation {
  readonly id: string;
  readonly runId: string | null;
  readonly subjectDigest: string;
  readonly predicateType: string;
  readonly kid: string;
  readonly createdAt: string;
  readonly envelope: Envelope;
  /** The same signature as a Sigstore bundle v0.3 (key hint, no transparency log). */
  readonly bundle: unknown;
}

interface StepResultJson {
  readonly outputs?: { path: string; digest: string; size: number }[];
  readonly evidence?: { link?: unknown } | null;
}

const hexOf = (digest: string): string => (digest.startsWith('sha256:') ? digest.slice(7) : digest);

type EvidenceView = Awaited<ReturnType<ProvenanceDeps['runs']['evidenceView']>>;
type Row = { id: string; run_id: string; subject_digest: string; predicate_type: string; kid: string; envelope: string; created_at: string };

/** What attesting a run will write: built outside or inside the run's last transaction. */
interface Plan {
  readonly rows: readonly Row[];
  readonly outputs: readonly { path: string; digest: string; size: number }[];
  readonly traceId: string;
  readonly details: { readonly [key: string]: JsonValue };
}

const ACTOR = { kind: 'system', id: 'provenance' } as const;

export class Provenance {
  private prepared: AttestationSigner | undefined;
  private unprepared: string | undefined;

  constructor(private readonly deps: ProvenanceDeps) {}

  /**
   * Write the run's attestations (idempotent: a second call adds nothing). Recorded as one
   * `provenance.attest` event naming every attestation written.
   */
  async attestRun(runId: string): Promise<{ written: number }> {
    const signer = await this.deps.signer();
    const plan = await this.build(await this.deps.runs.evidenceView(runId), signer);
    return this.deps.store.transact((tx) => this.write(tx, runId, plan));
  }

  /** Get the signing key ready (its first use may need a transaction of its own). */
  async prepare(): Promise<void> {
    // Never blocks the run: without a key (vault unavailable, say) the run still finishes, and
    // attestInTx records why it is unattested.
    try {
      this.prepared = await this.deps.signer();
      this.unprepared = undefined;
    } catch (err) {
      this.prepared = undefined;
      this.unprepared = err instanceof Error ? err.message : 'the attestation key is unavailable';
    }
  }

  /**
   * Attest inside the transaction that ends the run, so the run and its evidence become
   * visible together. A problem with the evidence (not storage) is recorded as a failed
   * `provenance.attest` in the same transaction; the run still succeeds, unattested.
   */
  async attestInTx(tx: Tx, runId: string): Promise<void> {
    let plan: Plan;
    try {
      if (this.prepared === undefined) throw new AirlockError('INTERNAL', `no attestation key: ${this.unprepared ?? 'it was not prepared'}`);
      plan = await this.build(await this.deps.runs.evidenceView(runId, tx), this.prepared);
    } catch (err) {
      await this.deps.audit.record(tx, { actor: ACTOR, action: 'provenance.attest', resource: `runs/${runId}`, outcome: 'failed', reason: (err instanceof Error ? err.message : 'attestation failed').slice(0, 1000) });
      return;
    }
    await this.write(tx, runId, plan);
  }

  private async build(view: EvidenceView, signer: AttestationSigner): Promise<Plan> {
    const runId = view.run.id;
    const { run, pipeline } = view;
    if (run.state !== 'succeeded') throw new AirlockError('CONFLICT', `run ${runId} is ${run.state}: only a succeeded run is attested`);
    const steps = run.stages.flatMap((s) => s.steps.filter((x) => x.state === 'succeeded').map((x) => ({ ...x, result: x.result as StepResultJson | null })));
    const outputs = new Map<string, { path: string; digest: string; size: number }>();
    for (const s of steps) for (const o of s.result?.outputs ?? []) outputs.set(o.path, o);
    if (outputs.size === 0) return { rows: [], outputs: [], traceId: run.traceId, details: { kid: signer.kid, attestations: [], tests: null, sbom: false, notes: [] } };

    const notes: string[] = [];
    let lockfile = await readFile(join(view.sourceDir, 'package-lock.json'), 'utf8').catch(() => undefined);
    let packages: ReturnType<typeof lockfilePackages> = [];
    if (lockfile !== undefined) {
      try {
        packages = lockfilePackages(lockfile);
      } catch (err) {
        // An unreadable lockfile costs the SBOM and the package list, not the provenance.
        notes.push(`package-lock.json not used: ${err instanceof Error ? err.message : 'unreadable'}`);
        lockfile = undefined;
      }
    }
    const pipelineFileDigest = hexOf(run.pipelineDigest);
    const trigger = (run.trigger ?? {}) as { kind?: string; actor?: { kind?: string; id?: string }; params?: Record<string, string>; reason?: string | null };
    const byproducts = steps.flatMap((s) => {
      const link = s.result?.evidence?.link;
      return typeof link === 'object' && link !== null ? [linkByproduct(`${s.stage}/${s.step}.link.json`, link)] : [];
    });
    const producedBy = new Map<string, string>();
    for (const s of steps) for (const o of s.result?.outputs ?? []) producedBy.set(o.path, `${s.stage}/${s.step}`);

    // Test evidence: every `evidence: test` step; JUnit XML among its outputs when present.
    const testSteps = pipeline.stages.flatMap((st) => st.steps.filter((d) => d.evidence === 'test').map((d) => ({ stage: st.name, def: d })));
    let tests: ReturnType<typeof testResultPredicate> | undefined;
    if (testSteps.length > 0) {
      const passed: string[] = [];
      const warned: string[] = [];
      const failed: string[] = [];
      const configuration: { name: string; digest: { sha256: string } }[] = [];
      let worst: 'PASSED' | 'WARNED' | 'FAILED' = 'PASSED';
      for (const t of testSteps) {
        const ran = steps.find((s) => s.stage === t.stage && s.step === t.def.name);
        const xml = (ran?.result?.outputs ?? []).filter((o) => o.path.endsWith('.xml') && o.size <= MAX_JUNIT_BYTES);
        let result: 'PASSED' | 'WARNED' | 'FAILED';
        if (ran === undefined) {
          result = 'FAILED';
          failed.push(`${t.stage}/${t.def.name}`);
        } else if (xml.length > 0) {
          const parsed = [];
          for (const o of xml) {
            try {
              parsed.push(parseJUnit((await this.deps.readBlob(o.digest)).toString('utf8')));
            } catch (err) {
              // A report that cannot be read proves nothing passed.
              notes.push(`${o.path}: ${err instanceof Error ? err.message : 'unreadable JUnit report'}`);
              parsed.push({ result: 'FAILED' as const, passedTests: [], warnedTests: [], failedTests: [`${t.stage}/${t.def.name}: ${o.path} unreadable`] });
            }
            configuration.push({ name: o.path, digest: { sha256: hexOf(o.digest) } });
          }
          result = parsed.some((p) => p.result === 'FAILED') ? 'FAILED' : parsed.some((p) => p.result === 'WARNED') ? 'WARNED' : 'PASSED';
          for (const p of parsed) {
            passed.push(...p.passedTests);
            warned.push(...p.warnedTests);
            failed.push(...p.failedTests);
          }
        } else {
          result = testResultFromExit(ran.exitCode ?? 1).result;
          (result === 'PASSED' ? passed : failed).push(`${t.stage}/${t.def.name}`);
        }
        if (result === 'FAILED' || (result === 'WARNED' && worst === 'PASSED')) worst = result;
      }
      tests = testResultPredicate({ result: worst, configuration, passedTests: passed, warnedTests: warned, failedTests: failed });
    }
    const sbom = lockfile === undefined ? undefined : sbomFromLockfile(lockfile, { name: run.project, version: run.commit });

    const now = this.deps.clock().toISOString();
    const rows: Row[] = [];
    for (const o of outputs.values()) {
      const subject = [{ name: o.path, digest: { sha256: hexOf(o.digest) } }];
      const predicates: [string, object][] = [
        [
          SLSA_PROVENANCE_V1,
          provenancePredicate({
            buildType: BUILD_TYPE,
            repository: view.repository,
            ref: run.ref,
            commit: run.commit,
            pipelineFile: { path: 'airlock.yaml', digest: { sha256: pipelineFileDigest } },
            parameters: trigger.params ?? {},
            trigger: { kind: trigger.kind ?? 'manual', actor: `${trigger.actor?.kind ?? 'unknown'}:${trigger.actor?.id ?? 'unknown'}` },
            internalParameters: { project: run.project, pipeline: pipeline.name, runNumber: run.number, producedBy: producedBy.get(o.path) ?? null },
            dependencies: packages.map((p) => ({ name: p.name, uri: p.purl, ...(p.integrity === undefined ? {} : { digest: p.integrity }) })),
            builderId: this.deps.builderId,
            invocationId: run.id,
            startedOn: run.startedAt ?? run.createdAt,
            finishedOn: run.finishedAt ?? now,
            byproducts,
          }),
        ],
      ];
      if (tests !== undefined) predicates.push([TEST_RESULT_V01, tests]);
      if (sbom !== undefined) predicates.push([CYCLONEDX_BOM, sbom]);
      for (const [type, predicate] of predicates) {
        const envelope = signEnvelope(IN_TOTO_PAYLOAD_TYPE, statementBytes(statement(subject, type, predicate)), signer);
        rows.push({ id: randomUUID(), run_id: runId, subject_digest: o.digest, predicate_type: type, kid: signer.kid, envelope: JSON.stringify(envelope), created_at: now });
      }
    }

    return {
      rows,
      outputs: [...outputs.values()],
      traceId: run.traceId,
      details: { kid: signer.kid, attestations: rows.map((r) => ({ id: r.id, subject: r.subject_digest, predicateType: r.predicate_type })), tests: tests === undefined ? null : (tests as { result?: string }).result ?? null, sbom: sbom !== undefined, notes },
    };
  }

  /** Insert a plan's attestations and their record, unless the run is already attested. */
  private async write(tx: Tx, runId: string, plan: Plan): Promise<{ written: number }> {
    if (plan.rows.length === 0) return { written: 0 };
    const existing = await tx.db.selectFrom('attestations').select('id').where('run_id', '=', runId).limit(1).execute();
    if (existing.length > 0) return { written: 0 };
    await this.deps.recordOutputs?.(tx, runId, plan.outputs);
    await tx.db.insertInto('attestations').values(plan.rows).execute();
    await this.deps.audit.record(tx, { actor: ACTOR, action: 'provenance.attest', resource: `runs/${runId}`, outcome: 'allowed', context: { traceId: plan.traceId }, details: plan.details });
    return { written: plan.rows.length };
  }

  /** Record that attesting a run failed (the run stays succeeded; verification will say why). */
  async recordFailure(runId: string, reason: string): Promise<void> {
    await this.deps.audit.append({ actor: ACTOR, action: 'provenance.attest', resource: `runs/${runId}`, outcome: 'failed', reason: reason.slice(0, 1000) });
  }

  /** Attestations of a subject digest or a run, newest first. */
  async list(filter: { subject?: string | undefined; runId?: string | undefined }): Promise<StoredAttestation[]> {
    let q = this.deps.store.db.selectFrom('attestations').selectAll();
    if (filter.subject !== undefined) q = q.where('subject_digest', '=', filter.subject);
    if (filter.runId !== undefined) q = q.where('run_id', '=', filter.runId);
    const rows = await q.orderBy('created_at', 'desc').limit(1000).execute();
    return rows.map((r) => {
      const envelope = JSON.parse(r.envelope) as Envelope;
      return { id: r.id, runId: r.run_id, subjectDigest: r.subject_digest, predicateType: r.predicate_type, kid: r.kid, createdAt: r.created_at, envelope, bundle: toSigstoreBundle(envelope) };
    });
  }

  /** A client's verification verdict, on the record (who checked what, and why it failed). */
  async recordVerification(actor: Actor, input: { digest: string; name: string; result: 'PASSED' | 'FAILED'; reasons: readonly string[] }, context?: RequestContext): Promise<void> {
    await this.deps.audit.append({
      actor,
      action: 'artifacts.verify',
      resource: `artifacts/${input.digest}`,
      outcome: input.result === 'PASSED' ? 'allowed' : 'failed',
      ...(input.result === 'PASSED' ? {} : { reason: input.reasons.join('; ').slice(0, 1000) || 'verification failed' }),
      context,
      details: { name: input.name, result: input.result, reasons: [...input.reasons] },
    });
  }
}
