/**
 * Secrets for the deployed service, on both engines: an environment's declared secrets reach the
 * service a deployment starts, and only once every gate passed. A production-scoped secret
 * never reaches staging; an unapproved production deployment releases nothing; a secret that
 * would replace a configuration value fails the deployment. Each release is recorded with the
 * deployment as the reader and the value's HMAC; the value is in the service's environment and
 * nowhere else (not the signed record, the audit log, the release manifest or the database).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyRecordFile } from '../../src/delivery/index.js';
import type { Deployments } from '../../src/delivery/index.js';
import { ENGINES } from '../support/engines.js';
import { commit } from '../runs/support.js';
import type { TestApp } from '../server/support.js';
import { GUARDED, HEALTHZ, OPEN, as, openSampleHarness, refusal } from './sample-harness.js';
import type { SampleHarness } from './sample-harness.js';

const WHY = 'reviewed the change and its evidence';
const PROJECT_VALUE = 'svc-token-project-Hq83-unique';
const PRODUCTION_VALUE = 'svc-token-production-Lm27-unique';

/** The environment of the environment's running service process, read from /proc. */
async function serviceEnv(h: SampleHarness, env: string): Promise<Record<string, string>> {
  const cur = await h.deployer.current(env);
  if (cur === undefined || !cur.running) throw new Error(`nothing runs in ${env}`);
  const raw = readFileSync(`/proc/${cur.pid}/environ`, 'utf8');
  return Object.fromEntries(raw.split('\0').filter((kv) => kv.includes('=')).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

/** Every file under `dir`, as text (the release directories: manifest, logs, unpacked app). */
function treeText(dir: string): string {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => readFileSync(join(e.parentPath, e.name), 'latin1'))
    .join('\n');
}

describe.each(ENGINES)('secrets for the deployed service on %s', (engine) => {
  let h: SampleHarness;
  let t: TestApp;
  let deployments: Deployments;

  beforeAll(async () => {
    h = await openSampleHarness(engine, { people: [{ id: 'carol', identities: ['carol@example.com'], roles: ['release-manager'] }] });
    ({ t, deployments } = h);
    h.environments.staging = () => ({ rules: OPEN, configDigest: `sha256:${'1'.repeat(64)}`, config: { GREETING: 'staging' }, health: HEALTHZ, healthBudgetMs: 3000, secrets: ['SERVICE_TOKEN'] });
    h.environments.production = () => ({ rules: GUARDED, configDigest: `sha256:${'2'.repeat(64)}`, requires: ['staging'], health: HEALTHZ, secrets: ['SERVICE_TOKEN'] });
  }, 60_000);

  afterAll(async () => {
    await h.close();
  });

  it('refuses staging a production-scoped secret: the deployment fails, names it, and records the denial', async () => {
    await t.app.secrets.set(as('alice'), { name: 'SERVICE_TOKEN', scope: { project: 'sample', environment: 'production' }, value: Buffer.from(PRODUCTION_VALUE) });
    const run = await h.succeededRun();
    const staging = await deployments.request(as('alice'), { run, environment: 'staging', justification: 'staging without its own token' });
    const done = await deployments.deploy(as('alice'), staging.id);
    expect(done.state).toBe('failed');
    expect(done.reason).toMatch(/no secret SERVICE_TOKEN in scope of project sample, environment staging/);
    expect(await h.deployer.current('staging')).toBeUndefined();
    const denied = await t.app.audit.search({ action: 'secrets.release', actorId: `deployment:${staging.id}`, limit: 5 });
    expect(denied.map((e) => e.event.outcome)).toEqual(['denied']);
  });

  it('gives staging the project-scoped value after its gates pass, and records the read, never the value', async () => {
    await t.app.secrets.set(as('alice'), { name: 'SERVICE_TOKEN', scope: { project: 'sample' }, value: Buffer.from(PROJECT_VALUE) });
    const run = await h.succeededRun();
    const staging = await deployments.request(as('alice'), { run, environment: 'staging', justification: 'staging with the project token' });
    expect((await deployments.deploy(as('alice'), staging.id)).state).toBe('succeeded');
    const env = await serviceEnv(h, 'staging');
    expect(env.SERVICE_TOKEN).toBe(PROJECT_VALUE);
    expect(env.GREETING).toBe('staging');
    const reads = await t.app.audit.search({ action: 'secrets.release', actorId: `deployment:${staging.id}`, limit: 5 });
    expect(reads).toHaveLength(1);
    expect(reads[0]?.event).toMatchObject({ outcome: 'allowed', details: { name: 'SERVICE_TOKEN', version: 1, deployment: staging.id, environment: 'staging', basis: 'approvals', valueHmac: t.app.secrets.auditHash(Buffer.from(PROJECT_VALUE)) } });
    const file = await h.exported(staging.id);
    const verified = verifyRecordFile(JSON.parse(JSON.stringify(file)), await h.keys());
    expect(verified.ok).toBe(true);
    expect(verified.record?.policyDecisions.find((d) => d.action === 'secrets')).toEqual({ action: 'secrets', allowed: true, policies: ['released to the service (approvals): SERVICE_TOKEN v1'] });
  });

  it('releases the production value only to an approved production deployment', async () => {
    const run = (await deployments.list({ environment: 'staging', limit: 10 })).find((d) => d.state === 'succeeded')!.runId;
    const prod = await deployments.request(as('alice'), { run, environment: 'production', justification: 'promote what staging runs' });
    // Unapproved: refused at the gate, before any secret is asked for.
    expect(await refusal(deployments.deploy(as('alice'), prod.id))).toMatchObject({ code: 'FORBIDDEN' });
    expect(await t.app.audit.search({ action: 'secrets.release', actorId: `deployment:${prod.id}`, limit: 5 })).toEqual([]);
    await deployments.decide(as('carol'), prod.id, { decision: 'approve', justification: WHY });
    expect((await deployments.deploy(as('alice'), prod.id)).state).toBe('succeeded');
    // The most specific scope wins: production's own value, not the project's.
    expect((await serviceEnv(h, 'production')).SERVICE_TOKEN).toBe(PRODUCTION_VALUE);
    expect((await serviceEnv(h, 'staging')).SERVICE_TOKEN).toBe(PROJECT_VALUE);
  });

  it('an automatic rollback releases the restored release its secrets again; the health check never sees them', async () => {
    commit(h.repo.dir, { VERSION: '1.0.9\n' }, 'an unhealthy release');
    const run = await h.succeededRun();
    // Fails for 1.0.9 only, and for any release if the check itself were given the secret.
    const check = { command: `test -z "\${SERVICE_TOKEN:-}" && ! grep -q 1.0.9 app/VERSION && ${process.execPath} -e "fetch('http://127.0.0.1:'+process.env.PORT+'/healthz').then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))"` };
    h.environments.staging = () => ({ rules: OPEN, configDigest: `sha256:${'1'.repeat(64)}`, config: { GREETING: 'staging' }, health: check, healthBudgetMs: 3000, secrets: ['SERVICE_TOKEN'] });
    try {
      const staging = await deployments.request(as('alice'), { run, environment: 'staging', justification: 'a release whose health check fails' });
      expect((await deployments.deploy(as('alice'), staging.id)).state).toBe('rolled_back');
      expect(await h.version('staging')).toContain('1.0.0');
      expect((await serviceEnv(h, 'staging')).SERVICE_TOKEN).toBe(PROJECT_VALUE);
      const reads = await t.app.audit.search({ action: 'secrets.release', actorId: `deployment:${staging.id}`, limit: 5, order: 'asc' });
      expect(reads.map((e) => [e.event.outcome, e.event.details.basis])).toEqual([
        ['allowed', 'approvals'],
        ['allowed', 'rollback'],
      ]);
    } finally {
      h.environments.staging = () => ({ rules: OPEN, configDigest: `sha256:${'1'.repeat(64)}`, config: { GREETING: 'staging' }, health: HEALTHZ, healthBudgetMs: 3000, secrets: ['SERVICE_TOKEN'] });
    }
  }, 60_000);

  it('fails a deployment whose secret would replace a configuration value, releasing nothing', async () => {
    h.environments.staging = () => ({ rules: OPEN, configDigest: `sha256:${'3'.repeat(64)}`, config: { SERVICE_TOKEN: 'from-config' }, health: HEALTHZ, healthBudgetMs: 3000, secrets: ['SERVICE_TOKEN'] });
    try {
      const run = await h.succeededRun();
      const staging = await deployments.request(as('alice'), { run, environment: 'staging', justification: 'a config that clashes with a secret' });
      const done = await deployments.deploy(as('alice'), staging.id);
      expect(done.state).toBe('failed');
      expect(done.reason).toMatch(/sets SERVICE_TOKEN both in its configuration and as secret\(s\)/);
      expect(await t.app.audit.search({ action: 'secrets.release', actorId: `deployment:${staging.id}`, limit: 5 })).toEqual([]);
    } finally {
      h.environments.staging = () => ({ rules: OPEN, configDigest: `sha256:${'1'.repeat(64)}`, config: { GREETING: 'staging' }, health: HEALTHZ, healthBudgetMs: 3000, secrets: ['SERVICE_TOKEN'] });
    }
  });

  it('leaves the values in no record, audit entry, release directory or table', async () => {
    const audit = JSON.stringify(await t.app.audit.search({ limit: 10_000 }));
    const records = (await t.app.store.db.selectFrom('deployments').select(['record_envelope', 'config_json']).execute()).map((r) => `${r.record_envelope ?? ''}${r.config_json}`).join('\n');
    const releases = treeText(join(t.app.config.home, 'environments'));
    for (const value of [PROJECT_VALUE, PRODUCTION_VALUE]) {
      for (const form of [value, Buffer.from(value).toString('base64'), Buffer.from(value).toString('hex')]) {
        expect(audit).not.toContain(form);
        expect(records).not.toContain(Buffer.from(form).toString('base64'));
        expect(records).not.toContain(form);
        expect(releases).not.toContain(form);
      }
    }
  });
});
