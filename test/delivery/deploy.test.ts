/**
 * Deploying for real, on both engines: the sample service built and tested by a run, deployed to
 * staging, promoted to production with the same digests and an approval, verified from its signed
 * record offline. A promotion of other digests, one without test evidence, and a failing health
 * check (rolled back to the last good release) are each refused or undone, and recorded.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeInclusionProof } from '../../src/audit/index.js';
import { deliveryFacts } from '../../src/app/index.js';
import { Deployments, LocalDeployer, runHealthCheck, verifyRecordFile } from '../../src/delivery/index.js';
import type { DeliveryFacts, EnvironmentFacts, ProtectionRules, RecordFile } from '../../src/delivery/index.js';
import { GitCli } from '../../src/runs/index.js';
import { verifyArtifact } from '../../src/verify/index.js';
import { createPublicKey } from 'node:crypto';
import { ENGINES } from '../support/engines.js';
import { commit, makeRepo } from '../runs/support.js';
import { TestClock, openTestApp } from '../server/support.js';
import type { TestApp } from '../server/support.js';

const SAMPLE = resolve(import.meta.dirname, '../../examples/sample-service');
const OPEN: ProtectionRules = { required: 0, roles: [], ownersRequired: false, owners: [], validForMs: 3_600_000, justificationRequired: true, branches: [], windows: [], freezes: [] };
const GUARDED: ProtectionRules = { ...OPEN, required: 1, roles: ['release-manager'] };
const WHY = 'reviewed the change and its evidence';

describe.each(ENGINES)('deploying the sample service on %s', (engine) => {
  let t: TestApp;
  const clock = new TestClock();
  let deployments: Deployments;
  let deployer: LocalDeployer;
  let repo: { dir: string };
  /** The health check staging uses; a test swaps in one that only some releases pass. */
  let stagingHealth: EnvironmentFacts['health'] = { url: 'http://127.0.0.1:{port}/healthz', status: 200, timeoutMs: 2000 };

  beforeAll(async () => {
    t = await openTestApp(engine, { clock });
    await t.app.startRunner({ labels: ['embedded'], concurrency: 2, reap: false });
    const files = Object.fromEntries(readdirSync(SAMPLE).map((f) => [f, readFileSync(join(SAMPLE, f), 'utf8')]));
    repo = makeRepo(files);
    await t.app.projects.add({ kind: 'user', id: 'alice' }, { name: 'sample', repo: repo.dir });
    const home = t.app.config.home;
    deployer = new LocalDeployer({ objects: t.app.blobs, root: join(home, 'environments'), killGraceMs: 1000 });
    const environments: Record<string, () => EnvironmentFacts> = {
      staging: () => ({ rules: OPEN, configDigest: `sha256:${'1'.repeat(64)}`, config: { GREETING: 'staging' }, health: stagingHealth, healthBudgetMs: 3000 }),
      production: () => ({ rules: GUARDED, configDigest: `sha256:${'2'.repeat(64)}`, requires: ['staging'], health: { url: 'http://127.0.0.1:{port}/healthz', status: 200, timeoutMs: 2000 } }),
    };
    const real = deliveryFacts({ store: t.app.store, runs: t.app.runs, git: new GitCli(join(home, 'repos')), reposDir: join(home, 'repos'), people: () => Promise.resolve([]), roles: () => Promise.resolve([]) });
    const facts: DeliveryFacts = {
      ...real,
      environment: (_runId, name) => Promise.resolve(environments[name]?.()),
      people: () => Promise.resolve([{ id: 'carol', identities: ['carol@example.com'] }]),
      roles: (username) => Promise.resolve(username === 'carol' ? ['release-manager'] : ['developer']),
    };
    deployments = new Deployments({
      store: t.app.store,
      audit: t.app.audit,
      clock: t.app.clock,
      facts,
      signer: () => t.app.platformKeys.signer('attestation'),
      deployer,
      health: runHealthCheck,
      // The real evidence: signed provenance and PASSED tests for every artifact.
      evidence: async (_runId, artifacts) => {
        const keys = (await t.app.platformKeys.publicKeys()).filter((k) => k.purpose === 'attestation').map((k) => ({ kid: k.kid, key: createPublicKey(k.publicKeyPem), retiredAt: k.retiredAt }));
        const reasons: string[] = [];
        for (const a of artifacts) {
          const v = verifyArtifact(a.digest, (await t.app.provenance.list({ subject: a.digest })).map((x) => x.envelope), keys);
          reasons.push(...v.reasons.map((r) => `${a.path}: ${r}`));
        }
        return { ok: reasons.length === 0, reasons };
      },
    });
  }, 60_000);

  afterAll(async () => {
    for (const env of ['staging', 'production']) await deployer.stop(env).catch(() => undefined);
    await t.cleanup();
  });

  async function succeededRun(): Promise<string> {
    const started = await t.app.runs.start({ kind: 'user', id: 'alice' }, { project: 'sample' });
    for (let i = 0; i < 600; i++) {
      const r = await t.app.runs.show(started.id);
      if (r.state === 'succeeded') return r.id;
      if (r.state !== 'queued' && r.state !== 'running') throw new Error(`run ${r.state}: ${JSON.stringify(r.stages)}`);
      await new Promise((res) => setTimeout(res, 25));
    }
    throw new Error('run did not finish');
  }

  const as = (id: string) => ({ kind: 'user' as const, id });
  const version = async (env: string): Promise<string> => {
    const cur = await deployer.current(env);
    return (await fetch(`http://127.0.0.1:${cur!.port}/`)).text();
  };

  const refusal = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (err) {
      return err as { code: string; message: string };
    }
    throw new Error('expected a refusal');
  };

  async function exported(id: string): Promise<RecordFile> {
    const dep = await t.app.store.db.selectFrom('deployments').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    const checkpoint = await t.app.signCheckpoint({ kind: 'system', id: 'test' });
    const entry = await t.app.audit.entry(dep.record_seq!);
    return { format: 'airlock-deployment-record/v1', envelope: JSON.parse(dep.record_envelope!) as RecordFile['envelope'], audit: { event: entry.event, inclusion: encodeInclusionProof(await t.app.audit.inclusionProof(dep.record_seq!, checkpoint.size)), checkpoint: checkpoint.note } };
  }

  it('deploys to staging, promotes the same digests to production with an approval, and the record verifies offline', async () => {
    const run = await succeededRun();
    const staging = await deployments.request(as('alice'), { run, environment: 'staging', justification: 'first staging deploy' });
    const done = await deployments.deploy(as('alice'), staging.id);
    expect(done.state).toBe('succeeded');
    expect(await version('staging')).toContain('1.0.0');
    // Two deploys of one request at once: exactly one proceeds, the other is refused.
    const again = await deployments.request(as('alice'), { run, environment: 'staging', justification: 'redeploy the same build' });
    const both = await Promise.allSettled([deployments.deploy(as('alice'), again.id), deployments.deploy(as('alice'), again.id)]);
    expect(both.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect(both.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'CONFLICT' } });

    const prod = await deployments.request(as('alice'), { run, environment: 'production', justification: 'promote what staging runs' });
    expect(await refusal(deployments.deploy(as('alice'), prod.id))).toMatchObject({ code: 'FORBIDDEN' });
    await deployments.decide(as('carol'), prod.id, { decision: 'approve', justification: WHY });
    expect((await deployments.deploy(as('alice'), prod.id)).state).toBe('succeeded');

    const keys = { attestation: new Map((await t.app.platformKeys.publicKeys()).map((k) => [k.kid, createPublicKey(k.publicKeyPem)])), log: t.app.verifiers() };
    const file = await exported(prod.id);
    const v = verifyRecordFile(JSON.parse(JSON.stringify(file)), keys);
    expect(v.checks.filter((c) => !c.ok)).toEqual([]);
    expect(v.record).toMatchObject({ environment: 'production', outcome: 'succeeded', approvals: [{ approver: 'carol', justification: WHY }] });
    // A record edited in the database no longer matches the audit event that named it.
    await t.app.store.transact((tx) => tx.db.updateTable('deployments').set({ record_envelope: JSON.stringify({ ...file.envelope, payload: Buffer.from('{"edited":true}').toString('base64') }) }).where('id', '=', prod.id).execute());
    const edited = verifyRecordFile(JSON.parse(JSON.stringify(await exported(prod.id))), keys);
    expect(edited.ok).toBe(false);
    expect(edited.checks.filter((c) => !c.ok).map((c) => c.check)).toEqual(expect.arrayContaining(['signature', 'audit event']));
  });

  it('refuses to promote digests that production\'s lower environment never ran', async () => {
    commit(repo.dir, { VERSION: '1.0.1\n' }, 'bump');
    const run = await succeededRun();
    const prod = await deployments.request(as('alice'), { run, environment: 'production', justification: 'skip staging this once?' });
    await deployments.decide(as('carol'), prod.id, { decision: 'approve', justification: WHY });
    const err = await refusal(deployments.deploy(as('alice'), prod.id));
    expect(err.message).toMatch(/never deployed successfully to staging/);
    expect((await t.app.audit.search({ action: 'deployments.deploy', outcome: 'denied', limit: 5 })).length).toBeGreaterThan(0);
    expect(await version('production')).toContain('1.0.0');
  });

  it('refuses a promotion without test evidence, naming what is missing', async () => {
    // New bytes (evidence follows the digest: the same bytes tested by another run would count).
    commit(repo.dir, { 'airlock.yaml': readFileSync(join(SAMPLE, 'airlock.yaml'), 'utf8').replace('        evidence: test\n', '').replace(/^ {4}evidence: \{ tests: \[test\], environments: \[staging\] \}\n/m, ''), VERSION: '1.0.1-untested\n' }, 'no test evidence');
    const run = await succeededRun();
    const staging = await deployments.request(as('alice'), { run, environment: 'staging', justification: 'untested build to staging' });
    const err = await refusal(deployments.deploy(as('alice'), staging.id));
    expect(err.message).toMatch(/tests: no signed test-result attestation/);
  });

  it('a failed health check rolls back to the last good release, recorded as rolled back', async () => {
    commit(repo.dir, { 'airlock.yaml': readFileSync(join(SAMPLE, 'airlock.yaml'), 'utf8'), VERSION: '1.0.2\n' }, 'tests again, 1.0.2');
    const run = await succeededRun();
    // Release 1.0.2 is unhealthy (the check fails for it, and only for it).
    const healthy = stagingHealth;
    // It also waits for the service to answer, as a real check would (PORT is the deployed port).
    stagingHealth = { command: `! grep -q 1.0.2 app/VERSION && ${process.execPath} -e "fetch('http://127.0.0.1:'+process.env.PORT+'/healthz').then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))"` };
    try {
      const staging = await deployments.request(as('alice'), { run, environment: 'staging', justification: 'a release whose health check fails' });
      const after = await deployments.deploy(as('alice'), staging.id);
      expect(after.state).toBe('rolled_back');
      expect(await version('staging')).toContain('1.0.0');
      const rec = (await t.app.audit.search({ action: 'deployments.record', resource: `deployments/${staging.id}`, limit: 1 }))[0]!;
      expect(rec.event).toMatchObject({ outcome: 'failed', reason: expect.stringMatching(/^health check failed/) as string, details: { outcome: 'rolled_back' } });
    } finally {
      stagingHealth = healthy;
    }
  }, 60_000);
});
