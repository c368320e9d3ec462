/**
 * Deployment requests and approvals over real runs, on both engines: what ships is bound into
 * one digest; approvals are signed, counted per distinct person, expire, and are refused for
 * anyone with a stake in the change. Each attack of the delivery issue that these cover is
 * tried and refused with its reason, and recorded.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deliveryFacts } from '../../src/app/index.js';
import type { Deployments } from '../../src/delivery/index.js';
import type { DeliveryFacts, DeploymentNotice, ProtectionRules } from '../../src/delivery/index.js';
import { GitCli } from '../../src/runs/index.js';
import { ENGINES } from '../support/engines.js';
import { appDeployments, as, refusal } from './fixtures.js';
import { commit, makeRepo, succeededRun as runToSuccess } from '../runs/support.js';
import { TestClock, openTestApp } from '../server/support.js';
import type { TestApp } from '../server/support.js';

const PIPELINE = `version: 1
pipeline: shop
owners: [alice]
environments:
  production: { protected: true }
stages:
  build:
    steps:
      - { name: pack, run: "printf 'shop v1' > shop.tar", outputs: [shop.tar] }
`;
const RULES: ProtectionRules = { required: 2, roles: ['release-manager'], ownersRequired: false, owners: [], validForMs: 4 * 3_600_000, justificationRequired: true, branches: [], windows: [], freezes: [] };
const ROLES: Record<string, string[]> = { alice: ['developer'], bob: ['release-manager'], carol: ['release-manager'], dave: ['release-manager'], ada: ['release-manager'] };
const WHY = 'checked the diff, tests and provenance';

describe.each(ENGINES)('deployment approvals on %s', (engine) => {
  let t: TestApp;
  const clock = new TestClock();
  let deployments: Deployments;
  let repo: { dir: string };

  beforeAll(async () => {
    t = await openTestApp(engine, { clock });
    await t.app.startRunner({ labels: ['embedded'], concurrency: 1, reap: false });
    repo = makeRepo({ 'airlock.yaml': PIPELINE });
    await t.app.projects.add({ kind: 'user', id: 'alice' }, { name: 'shop', repo: repo.dir });
    const home = t.app.config.home;
    // The app's own facts (runs, the project's mirror); the environments and people are the test's.
    const real = deliveryFacts({ store: t.app.store, runs: t.app.runs, git: new GitCli(join(home, 'repos')), reposDir: join(home, 'repos'), people: () => Promise.resolve([]), roles: () => Promise.resolve([]) });
    const facts: DeliveryFacts = {
      ...real,
      environment: (_runId, environment) =>
        Promise.resolve(
          environment === 'production' ? { rules: RULES, configDigest: `sha256:${'e'.repeat(64)}` } : environment === 'windowed' ? { rules: { ...RULES, windows: [windowIn2h] }, configDigest: `sha256:${'d'.repeat(64)}` } : environment === 'canary' ? { rules: { ...RULES, branches: ['release/*'] }, configDigest: `sha256:${'f'.repeat(64)}` } : undefined,
        ),
      people: () =>
        Promise.resolve([
          { id: 'ada', identities: ['ada@example.com'] },
          { id: 'bob', identities: ['bob@example.com'] },
          { id: 'carol', identities: ['carol@example.com'] },
          { id: 'dave', identities: ['dave@example.com'] },
          { id: 'alice', identities: ['alice@example.com'] },
        ]),
      roles: (username) => Promise.resolve(ROLES[username] ?? []),
    };
    deployments = appDeployments(t.app, facts, {
      notify: (n) => {
        notices.push(n);
        return Promise.resolve();
      },
    });
  }, 60_000);

  afterAll(async () => {
    await t.cleanup();
  });

  const notices: DeploymentNotice[] = [];
  // The 'windowed' environment's daily 30-minute change window (UTC); its test sets the time.
  let windowIn2h = { cron: '0 0 * * *', timezone: 'UTC', durationMs: 30 * 60_000 };
  const succeededRun = (): Promise<string> => runToSuccess(t.app, { kind: 'user', id: 'alice' }, 'shop');


  it('self-approval is refused and recorded; two distinct release managers approve', async () => {
    const dep = await deployments.request(as('bob'), { run: await succeededRun(), environment: 'production', justification: 'ship the checkout fix' });
    expect(dep.state).toBe('requested');
    expect(dep.bindingDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const self = await refusal(deployments.decide(as('bob'), dep.id, { decision: 'approve', justification: WHY }));
    expect(self).toMatchObject({ code: 'FORBIDDEN', details: { code: 'self_approval' } });
    const denied = (await t.app.audit.search({ action: 'deployments.approve', outcome: 'denied', limit: 10 })).at(-1)!;
    expect(denied.event).toMatchObject({ actor: { id: 'bob' }, reason: expect.stringMatching(/^self_approval: /) as string });
    expect((await deployments.decide(as('carol'), dep.id, { decision: 'approve', justification: WHY })).state).toBe('requested');
    // The person who triggered the run (alice) may not approve either, and lacks the role anyway.
    expect(await refusal(deployments.decide(as('alice'), dep.id, { decision: 'approve', justification: WHY }))).toMatchObject({ code: 'FORBIDDEN' });
    const after = await deployments.decide(as('dave'), dep.id, { decision: 'approve', justification: WHY });
    expect(after.state).toBe('approved');
    expect(after.approvals.counted.map((c) => c.approver).sort()).toEqual(['carol', 'dave']);
    // Each accepted decision is a signed attestation of the binding.
    const rows = await t.app.store.db.selectFrom('deployment_approvals').select('envelope').where('deployment_id', '=', dep.id).execute();
    expect(rows).toHaveLength(2);
    for (const r of rows) expect(JSON.parse(Buffer.from((JSON.parse(r.envelope) as { payload: string }).payload, 'base64').toString())).toMatchObject({ predicateType: 'https://airlock.dev/deployment-approval/v1', predicate: { bindingDigest: dep.bindingDigest } });
    // Approvers were told: the request (what ships, what is missing), then each accepted decision; a refused one tells nobody.
    await deployments.notified();
    const told = notices.filter((n) => n.deploymentId === dep.id);
    expect(told.map((n) => n.type)).toEqual(['deployment.requested', 'deployment.approved', 'deployment.approved']);
    expect(told[0]).toMatchObject({ requestedBy: 'bob', environment: 'production', justification: 'ship the checkout fix', bindingDigest: dep.bindingDigest, artifacts: dep.artifacts, missing: expect.stringMatching(/0 of 2/) as string });
  });

  it('one person approving twice does not make a quorum of two', async () => {
    const dep = await deployments.request(as('alice'), { run: await succeededRun(), environment: 'production', justification: 'ship the search change' });
    await deployments.decide(as('carol'), dep.id, { decision: 'approve', justification: WHY });
    clock.advance(60_000);
    const twice = await deployments.decide(as('carol'), dep.id, { decision: 'approve', justification: `${WHY}, again` });
    expect(twice.state).toBe('requested');
    expect(twice.approvals.counted.map((c) => c.approver)).toEqual(['carol']);
  });

  it('an author of a commit in the range may not approve it', async () => {
    // ada (ada@example.com, the author of the test repository's commits) writes a change.
    commit(repo.dir, { 'airlock.yaml': PIPELINE.replace('shop v1', 'shop v2') }, 'v2');
    const dep = await deployments.request(as('alice'), { run: await succeededRun(), environment: 'production', justification: 'ship v2 of the shop' });
    const byAuthor = await refusal(deployments.decide(as('ada'), dep.id, { decision: 'approve', justification: WHY }));
    expect(byAuthor).toMatchObject({ code: 'FORBIDDEN', details: { code: 'author_in_range' } });
  });

  it('approvals expire: past the validity the gate is closed again', async () => {
    const dep = await deployments.request(as('alice'), { run: await succeededRun(), environment: 'production', justification: 'ship the expiry test' });
    await deployments.decide(as('carol'), dep.id, { decision: 'approve', justification: WHY });
    await deployments.decide(as('bob'), dep.id, { decision: 'approve', justification: WHY });
    expect((await deployments.gate(dep.id)).allowed).toBe(true);
    clock.advance(4 * 3_600_000 + 1000);
    const gate = await deployments.gate(dep.id);
    expect(gate.allowed).toBe(false);
    expect(gate.approvals.satisfied).toBe(false);
    expect(gate.approvals.refused.map((r) => r.reason.code)).toEqual(expect.arrayContaining(['expired']));
  });

  it('an approval replayed onto another digest set does not count', async () => {
    const first = await deployments.request(as('alice'), { run: await succeededRun(), environment: 'production', justification: 'first request of two' });
    await deployments.decide(as('carol'), first.id, { decision: 'approve', justification: WHY });
    commit(repo.dir, { 'airlock.yaml': PIPELINE.replace('shop v1', 'shop v3') }, 'v3');
    const second = await deployments.request(as('alice'), { run: await succeededRun(), environment: 'production', justification: 'second request, other bytes' });
    expect(second.bindingDigest).not.toBe(first.bindingDigest);
    // Copy carol's stored approval (signed for the first binding) onto the second request.
    await t.app.store.transact(async (tx) => {
      const row = await tx.db.selectFrom('deployment_approvals').selectAll().where('deployment_id', '=', first.id).where('approver', '=', 'carol').executeTakeFirstOrThrow();
      await tx.db.insertInto('deployment_approvals').values({ ...row, id: `${row.id}-replayed`, deployment_id: second.id }).execute();
    });
    const shown = await deployments.show(second.id);
    expect(shown.approvals.counted).toEqual([]);
    expect(shown.approvals.refused.map((r) => r.reason.code)).toEqual(['wrong_binding']);
  });

  it('a deploy during a freeze is refused by the gate, naming the freeze', async () => {
    const dep = await deployments.request(as('alice'), { run: await succeededRun(), environment: 'production', justification: 'ship during the freeze?' });
    await deployments.decide(as('carol'), dep.id, { decision: 'approve', justification: WHY });
    await deployments.decide(as('bob'), dep.id, { decision: 'approve', justification: WHY });
    await deployments.freezes.add(as('bob'), { environment: 'production', until: new Date(clock.now().getTime() + 3_600_000).toISOString(), reason: 'end-of-year freeze' });
    const gate = await deployments.gate(dep.id);
    expect(gate.allowed).toBe(false);
    expect(gate.window.reason.code).toBe('frozen');
    expect(gate.reasons.join(' ')).toMatch(/end-of-year freeze/);
    expect((await t.app.audit.search({ action: 'deployments.freeze', limit: 5 })).length).toBe(1);
  });

  it('refuses a run of a branch the environment does not accept, and records it', async () => {
    const run = await succeededRun();
    const err = await refusal(deployments.request(as('alice'), { run, environment: 'canary', justification: 'canary from main?' }));
    expect(err).toMatchObject({ code: 'FORBIDDEN' });
    // Started without a ref: HEAD is no branch, so a branch rule refuses it (fail closed).
    expect(err.message).toMatch(/built from HEAD; canary accepts only release\/\*/);
    expect((await t.app.audit.search({ action: 'deployments.request', outcome: 'denied', limit: 5 })).at(-1)?.event.reason).toMatch(/branch HEAD may not deploy to canary/);
  });

  it('bad input names the field and writes nothing', async () => {
    const run = await succeededRun();
    const count = async () => (await t.app.store.db.selectFrom('deployments').select('id').execute()).length;
    const before = await count();
    expect(await refusal(deployments.request(as('alice'), { run, environment: 'staging', justification: 'no such environment here' }))).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(await refusal(deployments.request(as('alice'), { run, environment: 'production', justification: 'short' }))).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(await refusal(deployments.request(as('alice'), { run, environment: 'Prod!', justification: 'a fine justification' }))).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(await count()).toBe(before);
  });

  it('a change window keeps an approved deployment closed until it opens, and closes it again after', async () => {
    const run = await succeededRun();
    const opensAt = new Date(clock.now().getTime() + 2 * 3_600_000);
    windowIn2h = { ...windowIn2h, cron: `${opensAt.getUTCMinutes()} ${opensAt.getUTCHours()} * * *` };
    const dep = await deployments.request(as('alice'), { run, environment: 'windowed', justification: 'ship inside the change window' });
    await deployments.decide(as('carol'), dep.id, { decision: 'approve', justification: WHY });
    const approved = await deployments.decide(as('dave'), dep.id, { decision: 'approve', justification: WHY });
    expect(approved.approvals.satisfied).toBe(true);
    expect(approved.gate.allowed).toBe(false);
    expect(approved.gate.reasons.join(' ')).toMatch(/outside every change window; the next opens at /);
    clock.advance(2 * 3_600_000 + 60_000);
    const open = await deployments.show(dep.id);
    expect(open.gate, open.gate.reasons.join('; ')).toMatchObject({ allowed: true });
    clock.advance(45 * 60_000);
    expect((await deployments.show(dep.id)).gate.allowed).toBe(false);
  });
});
