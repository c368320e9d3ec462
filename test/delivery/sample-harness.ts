/**
 * The sample service in a real app, for delivery tests that deploy: runs built and tested by the
 * embedded runner, a LocalDeployer, the app's own facts about runs and commits, the real evidence
 * check (signed provenance, PASSED tests, a signed VSA per artifact), and environments and
 * people the test chooses. Shared by deploy.test.ts and breakglass-rollback.test.ts.
 */
import { createPublicKey } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { IN_TOTO_PAYLOAD_TYPE, signEnvelope, statementBytes } from '../../src/attest/index.js';
import type { Envelope, Statement } from '../../src/attest/index.js';
import { encodeInclusionProof } from '../../src/audit/index.js';
import { deliveryFacts, deploymentSecrets, sbomRefs } from '../../src/app/index.js';
import { LocalDeployer, runHealthCheck } from '../../src/delivery/index.js';
import type { DeliveryFacts, DeploymentsDeps, EnvironmentFacts, ProtectionRules, RecordFile, RecordProofs , Deployments} from '../../src/delivery/index.js';
import { GitCli } from '../../src/runs/index.js';
import type { Engine } from '../../src/storage/index.js';
import { verifyArtifact, vsaFor } from '../../src/verify/index.js';
import { makeRepo, succeededRun as runToSuccess } from '../runs/support.js';
import { TestClock, openTestApp } from '../server/support.js';
import type { TestApp } from '../server/support.js';

export { as, refusal } from './fixtures.js';
import { appDeployments, as } from './fixtures.js';

export const SAMPLE = resolve(import.meta.dirname, '../../examples/sample-service');
export const OPEN: ProtectionRules = { required: 0, roles: [], ownersRequired: false, owners: [], validForMs: 3_600_000, justificationRequired: true, branches: [], windows: [], freezes: [] };
export const GUARDED: ProtectionRules = { ...OPEN, required: 1, roles: ['release-manager'] };
export const HEALTHZ: EnvironmentFacts['health'] = { url: 'http://127.0.0.1:{port}/healthz', status: 200, timeoutMs: 2000 };

export interface SampleHarness {
  readonly t: TestApp;
  readonly clock: TestClock;
  readonly deployments: Deployments;
  readonly deployer: LocalDeployer;
  readonly repo: { dir: string };
  /** The environments the facts report; tests replace entries. */
  readonly environments: Record<string, () => EnvironmentFacts>;
  succeededRun(): Promise<string>;
  /** What the environment's running service answers on `/`. */
  version(env: string): Promise<string>;
  /** The record file as `deployments export` writes it, with a fresh signed checkpoint. */
  exported(id: string): Promise<RecordFile>;
  keys(): Promise<{ attestation: Map<string, ReturnType<typeof createPublicKey>>; log: ReturnType<TestApp['app']['verifiers']> }>;
  close(): Promise<void>;
}


/** Exported record files as `deployments export` writes them: a checkpoint signed for each. */
export function recordProofs(t: TestApp): RecordProofs {
  return {
    entry: async (seq) => (await t.app.audit.entry(seq)).event,
    inclusion: async (seq) => {
      const checkpoint = await t.app.signCheckpoint({ kind: 'system', id: 'test' });
      return { inclusion: encodeInclusionProof(await t.app.audit.inclusionProof(seq, checkpoint.size)), checkpoint: checkpoint.note };
    },
  };
}

export async function openSampleHarness(engine: Engine, opts: { people: { id: string; identities: string[]; roles: string[] }[]; deps?: Partial<DeploymentsDeps> }): Promise<SampleHarness> {
  const clock = new TestClock();
  const t = await openTestApp(engine, { clock });
  await t.app.startRunner({ labels: ['embedded'], concurrency: 2, reap: false });
  const files = Object.fromEntries(readdirSync(SAMPLE).map((f) => [f, readFileSync(join(SAMPLE, f), 'utf8')]));
  const repo = makeRepo(files);
  await t.app.projects.add(as('alice'), { name: 'sample', repo: repo.dir });
  const home = t.app.config.home;
  const deployer = new LocalDeployer({ objects: t.app.blobs, root: join(home, 'environments'), killGraceMs: 1000 });
  const environments: Record<string, () => EnvironmentFacts> = {
    staging: () => ({ rules: OPEN, configDigest: `sha256:${'1'.repeat(64)}`, config: { GREETING: 'staging' }, health: HEALTHZ, healthBudgetMs: 3000 }),
    production: () => ({ rules: GUARDED, configDigest: `sha256:${'2'.repeat(64)}`, requires: ['staging'], health: HEALTHZ }),
  };
  const real = deliveryFacts({ store: t.app.store, runs: t.app.runs, git: new GitCli(join(home, 'repos')), reposDir: join(home, 'repos'), people: () => Promise.resolve([]), roles: () => Promise.resolve([]) });
  const facts: DeliveryFacts = {
    ...real,
    environment: (_runId, name) => Promise.resolve(environments[name]?.()),
    people: () => Promise.resolve(opts.people.map((p) => ({ id: p.id, identities: p.identities }))),
    roles: (username) => Promise.resolve(opts.people.find((p) => p.id === username)?.roles ?? []),
  };
  const attestationKeys = async () => (await t.app.platformKeys.publicKeys()).filter((k) => k.purpose === 'attestation').map((k) => ({ kid: k.kid, key: createPublicKey(k.publicKeyPem), retiredAt: k.retiredAt }));
  const deployments = appDeployments(t.app, facts, {
    deployer,
    health: runHealthCheck,
    // The real evidence: signed provenance and PASSED tests for every artifact, and a VSA for each.
    evidence: async (_runId, artifacts) => {
      const keys = await attestationKeys();
      const reasons: string[] = [];
      const vsas: Envelope[] = [];
      const signer = await t.app.platformKeys.signer('attestation');
      for (const a of artifacts) {
        const v = verifyArtifact(a.digest, (await t.app.provenance.list({ subject: a.digest })).map((x) => x.envelope), keys);
        reasons.push(...v.reasons.map((r) => `${a.path}: ${r}`));
        vsas.push(signEnvelope(IN_TOTO_PAYLOAD_TYPE, statementBytes(vsaFor(v, { name: a.path, verifierId: 'https://airlock.test/verifier', now: clock.now() }) as Statement), signer));
      }
      return { ok: reasons.length === 0, reasons, vsas };
    },
    proofs: recordProofs(t),
    // As the app wires it: the environment's declared secrets, released after the gates pass.
    secrets: deploymentSecrets({ runs: t.app.runs, secrets: t.app.secrets, ready: () => Promise.resolve() }),
    sbomRefs: sbomRefs(t.app.provenance),
    ...opts.deps,
  });

  const succeededRun = (): Promise<string> => runToSuccess(t.app, as('alice'), 'sample');

  return {
    t,
    clock,
    deployments,
    deployer,
    repo,
    environments,
    succeededRun,
    version: async (env) => {
      const cur = await deployer.current(env);
      return (await fetch(`http://127.0.0.1:${cur!.port}/`)).text();
    },
    exported: (id) => deployments.recordFile(id),
    keys: async () => ({ attestation: new Map((await t.app.platformKeys.publicKeys()).map((k) => [k.kid, createPublicKey(k.publicKeyPem)])), log: t.app.verifiers() }),
    close: async () => {
      for (const env of Object.keys(environments)) await deployer.stop(env).catch(() => undefined);
      await t.cleanup();
    },
  };
}
