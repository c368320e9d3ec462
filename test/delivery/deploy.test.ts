/**
 * Deploying for real, on both engines: the sample service built and tested by a run, deployed to
 * staging, promoted to production with the same digests and an approval, verified from its signed
 * record offline. A promotion of other digests, one without test evidence, and a failing health
 * check (rolled back to the last good release) are each refused or undone, and recorded.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyRecordFile } from '../../src/delivery/index.js';
import type { Deployments } from '../../src/delivery/index.js';
import { ENGINES } from '../support/engines.js';
import { runCliInProcess } from '../support/cli-in-process.js';
import { commit } from '../runs/support.js';
import type { TestApp } from '../server/support.js';
import { HEALTHZ, OPEN, SAMPLE, as, openSampleHarness, refusal } from './sample-harness.js';
import type { SampleHarness } from './sample-harness.js';

const WHY = 'reviewed the change and its evidence';

describe.each(ENGINES)('deploying the sample service on %s', (engine) => {
  let h: SampleHarness;
  let t: TestApp;
  let deployments: Deployments;
  let repo: { dir: string };
  /** The health check staging uses; a test swaps in one that only some releases pass. */
  let stagingHealth = HEALTHZ;

  beforeAll(async () => {
    h = await openSampleHarness(engine, { people: [{ id: 'carol', identities: ['carol@example.com'], roles: ['release-manager'] }] });
    ({ t, deployments, repo } = h);
    h.environments.staging = () => ({ rules: OPEN, configDigest: `sha256:${'1'.repeat(64)}`, config: { GREETING: 'staging' }, health: stagingHealth, healthBudgetMs: 3000 });
  }, 60_000);

  afterAll(async () => {
    await h.close();
  });

  const succeededRun = () => h.succeededRun();
  const version = (env: string) => h.version(env);
  const exported = (id: string) => h.exported(id);

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

    const keys = await h.keys();
    const file = await exported(prod.id);
    const v = verifyRecordFile(JSON.parse(JSON.stringify(file)), keys);
    expect(v.checks.filter((c) => !c.ok)).toEqual([]);
    expect(v.record).toMatchObject({ environment: 'production', outcome: 'succeeded', approvals: [{ approver: 'carol', justification: WHY }], bindingDigest: prod.bindingDigest });
    // carol's signed approval travels with the record, for this binding; without it, or edited, the file fails.
    expect(v.checks.find((c) => c.check === 'approvals')).toMatchObject({ ok: true, detail: `1 signed approval(s) of binding ${prod.bindingDigest}` });
    const bare = verifyRecordFile(JSON.parse(JSON.stringify({ ...file, approvals: [] })), keys);
    expect(bare.checks.find((c) => c.check === 'approvals')?.detail).toMatch(/carol's approval \(sha256:[0-9a-f]{64}\) is not in the file/);
    const approval = file.approvals![0]!;
    const other = { ...approval, payload: Buffer.from(Buffer.from(approval.payload, 'base64').toString('utf8').replace(prod.bindingDigest, `sha256:${'0'.repeat(64)}`)).toString('base64') };
    expect(verifyRecordFile(JSON.parse(JSON.stringify({ ...file, approvals: [other] })), keys).ok).toBe(false);
    // A record edited in the database no longer matches the audit event that named it.
    await t.app.store.transact((tx) => tx.db.updateTable('deployments').set({ record_envelope: JSON.stringify({ ...file.envelope, payload: Buffer.from('{"edited":true}').toString('base64') }) }).where('id', '=', prod.id).execute());
    const edited = verifyRecordFile(JSON.parse(JSON.stringify(await exported(prod.id))), keys);
    expect(edited.ok).toBe(false);
    expect(edited.checks.filter((c) => !c.ok).map((c) => c.check)).toEqual(expect.arrayContaining(['signature', 'audit event']));
    // `airlock audit verify` on the same database: the log is intact, the record it named is not.
    const config = t.app.config;
    const cliEnv = { HOME: config.home, AIRLOCK_HOME: config.home, ...(config.database.kind === 'postgres' ? { AIRLOCK_DATABASE_URL: config.database.url, AIRLOCK_DATABASE_SCHEMA: config.database.schema ?? '', AIRLOCK_MASTER_KEY: process.env.AIRLOCK_MASTER_KEY ?? '' } : {}) };
    const audit = await runCliInProcess(['audit', 'verify'], { env: cliEnv, cwd: config.home });
    expect(audit.code, audit.stdout + audit.stderr).toBe(1);
    const recordSeq = (await t.app.store.db.selectFrom('deployments').select('record_seq').where('id', '=', prod.id).executeTakeFirstOrThrow()).record_seq;
    expect(audit.stdout).toContain(`FAIL: document_modified at seq ${String(recordSeq)}: deployment record ${prod.id} was modified`);
    expect(audit.stdout).toMatch(/1 finding\(s\)/);
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
