/**
 * Segregation of duties, the configuration side: whoever last edited an environment's rules
 * (the run's airlock.yaml, or the environment's overrides file) may not approve a deploy under
 * them, even when the code being shipped was written by someone else. Real repository, real
 * app facts, both engines.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deliveryFacts } from '../../src/app/index.js';
import type { Deployments } from '../../src/delivery/index.js';
import { PolicyEngine, defaultPolicies, parsePolicyFiles, sodExceptionsFor } from '../../src/policy/index.js';
import { GitCli } from '../../src/runs/index.js';
import { ENGINES } from '../support/engines.js';
import { appDeployments, as, recordingDeployer, refusal } from './fixtures.js';
import { makeRepo, succeededRun as runToSuccess } from '../runs/support.js';
import { TestClock, openTestApp } from '../server/support.js';
import type { TestApp } from '../server/support.js';

const pipeline = (validFor: string): string => `version: 1
pipeline: shop
owners: [ada]
environments:
  production: { protected: true, approvals: { required: 1, validFor: ${validFor} } }
  staging: { protected: true, overrides: staging.yaml }
stages:
  build:
    steps:
      - { name: pack, run: "printf 'shop' > shop.tar", outputs: [shop.tar] }
`;
const WHY = 'checked the diff, tests and provenance';
const PEOPLE = ['ada', 'bob', 'carol', 'dave', 'erin', 'gina'].map((id) => ({ id, identities: [id, `${id}@example.com`] }));

function commitAs(dir: string, who: string, files: Record<string, string>): string {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const env = { ...process.env, GIT_AUTHOR_NAME: who, GIT_AUTHOR_EMAIL: `${who}@example.com`, GIT_COMMITTER_NAME: who, GIT_COMMITTER_EMAIL: `${who}@example.com` };
  execFileSync('git', ['-C', dir, 'add', '-A'], { env });
  execFileSync('git', ['-C', dir, 'commit', '-q', '-m', `change ${Object.keys(files).join(' ')}`], { env });
  return execFileSync('git', ['-C', dir, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
}

describe.each(ENGINES)('the last editor of an environment configuration on %s', (engine) => {
  let t: TestApp;
  const clock = new TestClock();
  let deployments: Deployments;
  let facts: ReturnType<typeof deliveryFacts>;
  let run: string;


  const succeededRun = (): Promise<string> => runToSuccess(t.app, as('ada'), 'shop');

  /** A deployment that already succeeded at `commit`: the next range starts after it. */
  async function shipped(environment: string, runId: string, commit: string): Promise<void> {
    const project = await t.app.store.db.selectFrom('projects').select('id').where('name', '=', 'shop').executeTakeFirstOrThrow();
    await t.app.store.transact(async (tx) => {
      await tx.db
        .insertInto('deployments')
        .values({ id: randomUUID(), project_id: project.id, environment, run_id: runId, artifacts_json: '[]', config_digest: `sha256:${'0'.repeat(64)}`, commit_from: null, commit_to: commit, binding_digest: `sha256:${'1'.repeat(64)}`, requested_by: 'ada', justification: 'an earlier release', ticket: null, state: 'succeeded', reason: null, rollback_of: null, breakglass: 0, record_envelope: null, record_digest: null, record_seq: null, created_at: new Date(clock.now().getTime() - 3_600_000).toISOString(), finished_at: null })
        .execute();
    });
  }

  beforeAll(async () => {
    t = await openTestApp(engine, { clock });
    await t.app.startRunner({ labels: ['embedded'], concurrency: 1, reap: false });
    // ada writes the first version; erin then changes production's rules, gina staging's
    // values; both are shipped. Then dave changes the code, and that is what is deployed now.
    const repo = makeRepo({ 'airlock.yaml': pipeline('4h'), 'staging.yaml': 'MODE: "a"\n', 'app.js': '1' });
    await t.app.projects.add(as('ada'), { name: 'shop', repo: repo.dir });
    commitAs(repo.dir, 'erin', { 'airlock.yaml': pipeline('8h') });
    const configured = commitAs(repo.dir, 'gina', { 'staging.yaml': 'MODE: "b"\n' });
    const before = await succeededRun();
    await shipped('production', before, configured);
    await shipped('staging', before, configured);
    commitAs(repo.dir, 'dave', { 'app.js': '2' });
    run = await succeededRun();
    const home = t.app.config.home;
    facts = deliveryFacts({ store: t.app.store, runs: t.app.runs, git: new GitCli(join(home, 'repos')), reposDir: join(home, 'repos'), people: () => Promise.resolve(PEOPLE), roles: () => Promise.resolve(['release-manager']) });
    deployments = appDeployments(t.app, facts);
  }, 60_000);

  afterAll(async () => {
    await t.cleanup();
  });

  it("refuses and records the approval of whoever last edited the environment's rules in airlock.yaml", async () => {
    const dep = await deployments.request(as('bob'), { run, environment: 'production', justification: 'ship the checkout fix' });
    // Only dave's commit is in the range: erin's conflict comes from the configuration alone.
    expect(dep.commitRange.from).not.toBeNull();
    const erin = await refusal(deployments.decide(as('erin'), dep.id, { decision: 'approve', justification: WHY }));
    expect(erin).toMatchObject({ code: 'FORBIDDEN', details: { code: 'last_config_editor' } });
    expect(erin.message).toContain("last edited the environment's configuration");
    const denied = (await t.app.audit.search({ action: 'deployments.approve', outcome: 'denied', limit: 10 })).at(-1)!;
    expect(denied.event).toMatchObject({ actor: { id: 'erin' }, resource: `deployments/${dep.id}`, details: { code: 'last_config_editor' }, reason: expect.stringMatching(/^last_config_editor: /) as string });
    // A denial from her does not count either (it would block the deploy).
    expect(await refusal(deployments.decide(as('erin'), dep.id, { decision: 'deny', justification: WHY }))).toMatchObject({ details: { code: 'last_config_editor' } });
    expect((await deployments.show(dep.id)).approvals.counted).toEqual([]);
    // The code's author is refused for that; gina edited only staging's file and may approve.
    expect(await refusal(deployments.decide(as('dave'), dep.id, { decision: 'approve', justification: WHY }))).toMatchObject({ details: { code: 'author_in_range' } });
    const ok = await deployments.decide(as('gina'), dep.id, { decision: 'approve', justification: WHY });
    expect(ok.state).toBe('approved');
    expect(ok.approvals.counted.map((c) => c.approver)).toEqual(['gina']);
  });

  it("counts an edit of the environment's overrides file as an edit of its configuration", async () => {
    const dep = await deployments.request(as('bob'), { run, environment: 'staging', justification: 'ship the checkout fix' });
    expect(await refusal(deployments.decide(as('gina'), dep.id, { decision: 'approve', justification: WHY }))).toMatchObject({ code: 'FORBIDDEN', details: { code: 'last_config_editor' } });
    const denied = (await t.app.audit.search({ action: 'deployments.approve', outcome: 'denied', limit: 10 })).at(-1)!;
    expect(denied.event).toMatchObject({ actor: { id: 'gina' }, resource: `deployments/${dep.id}`, reason: expect.stringMatching(/^last_config_editor: /) as string });
    expect((await deployments.decide(as('carol'), dep.id, { decision: 'approve', justification: WHY })).state).toBe('approved');
  });

  it('a named Cedar exception lifts the conflict, and its id is written into the approval record and the signed deployment record', async () => {
    // Config-only changes by the platform team, in staging: the editor may approve them.
    const policy = `@id("platform-config-staging")
permit (principal in Airlock::Role::"release-manager", action == Airlock::Action::"deployments.sod-exception", resource is Airlock::Environment)
when { context.code == "last_config_editor" && context.environment == "staging" && context.lastConfigEditor == "gina@example.com" };`;
    const engine = PolicyEngine.load({ ...defaultPolicies(), ...parsePolicyFiles([{ file: 'extra.cedar', text: policy }]) });
    const seen: unknown[] = [];
    const withExceptions = appDeployments(t.app, facts, {
      exceptions: (ctx) => {
        seen.push(ctx);
        return Promise.resolve(sodExceptionsFor(engine, ctx));
      },
      // A deployer that installs nothing: this test is about what the signed record says.
      deployer: recordingDeployer(t.app.clock),
    });
    const staging = await withExceptions.request(as('bob'), { run, environment: 'staging', justification: 'ship the checkout fix' });
    const ok = await withExceptions.decide(as('gina'), staging.id, { decision: 'approve', justification: WHY });
    expect(ok.state).toBe('approved');
    expect(ok.approvals.exceptionsUsed).toEqual([{ policyId: 'platform-config-staging', approver: 'gina', code: 'last_config_editor' }]);
    const allowed = (await t.app.audit.search({ action: 'deployments.approve', outcome: 'allowed', limit: 50 })).at(-1)!;
    expect(allowed.event).toMatchObject({ actor: { id: 'gina' }, resource: `deployments/${staging.id}`, details: { exceptions: ['platform-config-staging'] } });
    expect(seen.at(-1)).toMatchObject({ project: 'shop', environment: 'staging', requester: 'bob', triggeredBy: 'ada', authors: ['dave@example.com'], committers: ['dave@example.com'], lastConfigEditor: 'gina@example.com', approvers: [{ id: 'gina', roles: ['release-manager'] }] });
    // The exception used is written into the signed deployment record, with the approval it lifted.
    expect((await withExceptions.deploy(as('bob'), staging.id)).state).toBe('succeeded');
    const stored = await t.app.store.db.selectFrom('deployments').select('record_envelope').where('id', '=', staging.id).executeTakeFirstOrThrow();
    const signed = JSON.parse(stored.record_envelope!) as { payload: string };
    const record = (JSON.parse(Buffer.from(signed.payload, 'base64').toString('utf8')) as { predicate: { exceptions: string[]; approvals: { approver: string }[]; policyDecisions: { action: string; policies: string[] }[] } }).predicate;
    expect(record.exceptions).toEqual(['platform-config-staging:gina:last_config_editor']);
    expect(record.approvals.map((a) => a.approver)).toEqual(['gina']);
    expect(record.policyDecisions.find((d) => d.action === 'approvals')?.policies).toContain('sod-exception platform-config-staging: gina (last_config_editor)');
    // Only where the policy says: erin, production's editor, is still refused there.
    const production = await withExceptions.request(as('bob'), { run, environment: 'production', justification: 'ship the checkout fix' });
    expect(await refusal(withExceptions.decide(as('erin'), production.id, { decision: 'approve', justification: WHY }))).toMatchObject({ details: { code: 'last_config_editor' } });
  });
});
