/**
 * Break-glass, incidents, rollback and what the record says, deploying the sample service for
 * real on both engines. Attacks tried and refused: break-glass by one person (asking twice), a
 * break-glass after the first person's request expired, break-glass of a request that is not
 * blocked, a rollback to another environment's deployment, a postmortem too short to mean
 * anything, closing an incident twice. A change to production's rules needs an owner.
 */
import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordDigest, verifyRecordFile } from '../../src/delivery/index.js';
import type { DeploymentRecord, Deployments } from '../../src/delivery/index.js';
import { ENGINES } from '../support/engines.js';
import { commit } from '../runs/support.js';
import type { TestApp } from '../server/support.js';
import { GUARDED, HEALTHZ, as, openSampleHarness, refusal } from './sample-harness.js';
import type { SampleHarness } from './sample-harness.js';

const WHY = 'reviewed the change and its evidence';
const URGENT = 'payments are down and the fix cannot wait';
const POSTMORTEM = 'The payment outage needed the fix during the freeze; approvals were skipped with two people. Follow-up: OPS-12.';

describe.each(ENGINES)('break-glass, incidents and rollback on %s', (engine) => {
  let h: SampleHarness;
  let t: TestApp;
  let deployments: Deployments;
  let rollbackNeedsApproval = false;
  let productionOwners: string[] = ['carol'];
  let stagingGreeting = 'hello';

  beforeAll(async () => {
    h = await openSampleHarness(engine, {
      people: [
        { id: 'alice', identities: ['alice@example.com'], roles: ['developer'] },
        { id: 'carol', identities: ['carol@example.com'], roles: ['release-manager'] },
        { id: 'dave', identities: ['dave@example.com'], roles: ['release-manager'] },
        { id: 'olga', identities: ['olga@example.com'], roles: ['operator'] },
      ],
    });
    ({ t, deployments } = h);
    h.environments.staging = () => ({ rules: { ...GUARDED, required: 0 }, configDigest: `sha256:${'1'.repeat(64)}`, config: { GREETING: stagingGreeting }, health: HEALTHZ });
    h.environments.production = () => ({ rules: { ...GUARDED, owners: productionOwners, rollbackNeedsApproval }, configDigest: `sha256:${'2'.repeat(64)}`, requires: ['staging'], health: HEALTHZ });
  }, 60_000);

  afterAll(async () => {
    await h.close();
  });

  /** A run of the repository as it is now, deployed to staging (what production needs first). */
  async function inStaging(): Promise<string> {
    const run = await h.succeededRun();
    const staging = await deployments.request(as('alice'), { run, environment: 'staging', justification: 'staging first, as always' });
    expect((await deployments.deploy(as('alice'), staging.id)).state).toBe('succeeded');
    return run;
  }

  it('break-glass by one person is refused, however often they ask; a second person deploys, opening an incident', async () => {
    const run = await inStaging();
    const prod = await deployments.request(as('alice'), { run, environment: 'production', justification: 'hotfix for the payment outage' });
    expect(prod.gate.allowed).toBe(false);

    const first = await deployments.breakGlass(as('carol'), prod.id, { justification: URGENT });
    expect(first).toMatchObject({ granted: false, participants: ['carol'] });
    expect(first.deployment.state).toBe('requested');
    // Asking again alone does not make two people.
    const twice = await refusal(deployments.breakGlass(as('carol'), prod.id, { justification: URGENT }));
    expect(twice).toMatchObject({ code: 'FORBIDDEN' });
    expect(twice.message).toMatch(/two distinct people/);
    const denied = await t.app.audit.search({ action: 'deployments.breakglass', outcome: 'denied', limit: 5 });
    expect(denied.at(-1)?.event).toMatchObject({ actor: { id: 'carol' }, reason: expect.stringMatching(/^one_person/) as string, details: { severity: 'high' } });
    expect((await deployments.show(prod.id)).state).toBe('requested');

    const second = await deployments.breakGlass(as('olga'), prod.id, { justification: 'confirmed the outage with the on-call lead' });
    expect(second).toMatchObject({ granted: true, participants: ['carol', 'olga'] });
    expect(second.deployment).toMatchObject({ state: 'succeeded', breakGlass: true });
    expect(second.incident).toMatch(/^[0-9a-f-]{36}$/);

    const incident = await deployments.incidents.show(second.incident!);
    expect(incident).toMatchObject({ kind: 'breakglass', deploymentId: prod.id, state: 'open', openedBy: 'olga' });
    expect(incident.summary).toMatch(/carol and olga/);
    expect((await deployments.incidents.list({ open: true })).map((i) => i.id)).toContain(incident.id);
    const granted = await t.app.audit.search({ action: 'deployments.breakglass', outcome: 'allowed', limit: 10 });
    expect(granted.map((e) => (e.event.details as { stage?: string }).stage)).toEqual(expect.arrayContaining(['requested', 'confirmed', 'granted']));
    expect(granted.every((e) => (e.event.details as { severity?: string }).severity === 'high')).toBe(true);

    // The signed record says who broke the glass, why, and what they bypassed.
    const file = await h.exported(prod.id);
    const v = verifyRecordFile(JSON.parse(JSON.stringify(file)), await h.keys());
    expect(v.checks.filter((c) => !c.ok)).toEqual([]);
    expect(v.record?.breakGlass).toMatchObject({ participants: ['carol', 'olga'], incident: incident.id });
    expect(v.record?.breakGlass?.justifications.map((j) => j.justification)).toEqual([URGENT, 'confirmed the outage with the on-call lead']);
    expect(v.record?.breakGlass?.bypassed.join(' ')).toMatch(/approval/);
    expect(v.record?.policyDecisions.find((d) => d.action === 'approvals')).toMatchObject({ allowed: true, policies: ['break-glass by carol and olga'] });
    expect(v.record?.approvals).toEqual([]);
  }, 90_000);

  it('a postmortem closes the incident, once; a token postmortem is refused', async () => {
    const [open] = await deployments.incidents.list({ open: true });
    expect(open).toBeDefined();
    expect(await refusal(deployments.incidents.close(as('carol'), open!.id, 'fixed'))).toMatchObject({ code: 'VALIDATION_FAILED' });
    const closed = await deployments.incidents.close(as('carol'), open!.id, POSTMORTEM);
    expect(closed).toMatchObject({ state: 'closed', closedBy: 'carol', postmortem: POSTMORTEM });
    expect(await refusal(deployments.incidents.close(as('dave'), open!.id, POSTMORTEM))).toMatchObject({ code: 'CONFLICT' });
    expect(await deployments.incidents.list({ open: true })).toEqual([]);
    const events = await t.app.audit.search({ action: 'incidents.close', limit: 5 });
    expect(events).toHaveLength(1);
    // The record keeps the length, not the text: postmortems may name people and systems.
    expect(events[0]?.event.details).toEqual({ postmortemLength: POSTMORTEM.length });
  });

  it('a first break-glass request expires: the second person alone is one person', async () => {
    commit(h.repo.dir, { VERSION: '1.1.0\n' }, '1.1.0');
    const run = await inStaging();
    const prod = await deployments.request(as('alice'), { run, environment: 'production', justification: 'ship 1.1.0 without waiting' });
    await deployments.breakGlass(as('carol'), prod.id, { justification: URGENT });
    h.clock.advance(2 * 3_600_000);
    const late = await deployments.breakGlass(as('dave'), prod.id, { justification: 'joining the break-glass two hours later' });
    expect(late).toMatchObject({ granted: false, participants: ['dave'] });
    expect((await deployments.show(prod.id)).state).toBe('requested');
    // Not blocked once approved: break-glass is for blocked requests only.
    await deployments.decide(as('dave'), prod.id, { decision: 'approve', justification: WHY });
    expect(await refusal(deployments.breakGlass(as('carol'), prod.id, { justification: URGENT }))).toMatchObject({ code: 'CONFLICT' });
    expect((await deployments.deploy(as('alice'), prod.id)).state).toBe('succeeded');
  }, 90_000);

  it('rolls production back to the release before, without a new approval, recorded as a rollback', async () => {
    expect(await h.version('production')).toContain('1.1.0');
    const back = await deployments.rollback(as('alice'), { project: 'sample', environment: 'production', justification: 'checkout errors since the last release' });
    expect(back).toMatchObject({ state: 'succeeded', rollbackOf: expect.any(String) as string });
    expect(await h.version('production')).toContain('1.0.0');
    const v = verifyRecordFile(JSON.parse(JSON.stringify(await h.exported(back.id))), await h.keys());
    expect(v.ok).toBe(true);
    expect(v.record).toMatchObject({ rollbackOf: back.rollbackOf, outcome: 'succeeded', initiator: 'alice' });
    expect(v.record?.policyDecisions.find((d) => d.action === 'approvals')?.policies[0]).toMatch(/^rollback to a release this environment ran/);
    expect((await t.app.audit.search({ action: 'deployments.rollback', limit: 5 })).at(-1)?.event.details).toMatchObject({ environment: 'production', needsApproval: false });
  }, 90_000);

  it('rollback --to another environment\'s deployment is refused; with `rollback: true` it waits for approval', async () => {
    const [staging] = await deployments.list({ environment: 'staging', limit: 1 });
    const err = await refusal(deployments.rollback(as('alice'), { project: 'sample', environment: 'production', to: staging!.id, justification: 'return to what staging runs' }));
    expect(err).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(err.message).toMatch(/--to must name a successful deployment of sample to production/);

    rollbackNeedsApproval = true;
    try {
      const back = await deployments.rollback(as('alice'), { project: 'sample', environment: 'production', justification: 'back to 1.1.0 after all' });
      expect(back.state).toBe('requested');
      expect(back.gate.allowed).toBe(false);
      expect(await refusal(deployments.deploy(as('alice'), back.id))).toMatchObject({ code: 'FORBIDDEN' });
    } finally {
      rollbackNeedsApproval = false;
    }
  }, 60_000);

  it("the record carries the config diff, SBOM references, the host's fingerprint and a signed VSA per artifact", async () => {
    stagingGreeting = 'hello, world';
    commit(h.repo.dir, { VERSION: '1.2.0\n' }, '1.2.0');
    const run = await h.succeededRun();
    const staging = await deployments.request(as('alice'), { run, environment: 'staging', justification: 'new greeting in staging' });
    // Approvers see the config diff in the request, before anything ships.
    const greeting = { added: [], removed: [], changed: [{ key: 'GREETING', before: 'hello', after: 'hello, world' }] };
    expect(staging.configDiff).toEqual(greeting);
    expect((await deployments.deploy(as('alice'), staging.id)).state).toBe('succeeded');
    // Once it has shipped, its diff is still against what ran before it.
    expect((await deployments.show(staging.id)).configDiff).toEqual(greeting);
    const file = await h.exported(staging.id);
    const v = verifyRecordFile(JSON.parse(JSON.stringify(file)), await h.keys());
    expect(v.checks.filter((c) => !c.ok)).toEqual([]);
    expect(v.checks.map((c) => c.check)).toContain('verification summaries');
    const record = v.record as DeploymentRecord;
    expect(record.config.diff).toEqual({ added: [], removed: [], changed: ['GREETING: hello -> hello, world'] });
    expect(record.fingerprint).toMatchObject({ deployer: 'local', host: hostname(), runtime: `node ${process.version}` });
    // Each artifact names its signed SBOM attestation by digest; the range ends at the run's commit.
    const tarball = record.artifacts.find((a) => a.path === 'dist/service.tar')!;
    const sbom = (await t.app.provenance.list({ subject: tarball.digest })).find((x) => x.predicateType === 'https://cyclonedx.org/bom');
    expect(sbom).toBeDefined();
    expect(tarball.sbom).toBe(recordDigest(sbom!.envelope));
    expect(record.commitRange.to).toBe((await t.app.runs.show(run)).commit);
    expect(record.commitRange.from).toMatch(/^[0-9a-f]{40}$/);
    // The steps the deployer took, each timed, with its exit code and the digests it handled.
    expect(record.steps.length).toBeGreaterThan(1);
    for (const step of record.steps) {
      expect(Date.parse(step.finishedAt)).toBeGreaterThanOrEqual(Date.parse(step.startedAt));
      // null: a step that ran no process (fetch, extract); a process that ran exited 0.
      expect([0, null]).toContain(step.exitCode);
    }
    expect(record.steps.find((st) => st.name === 'health')?.exitCode).toBe(0);
    expect(record.steps.flatMap((st) => st.digests)).toEqual(expect.arrayContaining([tarball.digest]));
    expect(record.steps.map((st) => st.name)).toContain('health');
    expect(file.verificationSummaries).toHaveLength(record.artifacts.length);
    expect(record.verificationSummaries).toHaveLength(record.artifacts.length);
    // A VSA swapped for another one (here: from an earlier deployment) is caught.
    const shipped = (await deployments.list({ environment: 'production', limit: 50 })).find((d) => d.state === 'succeeded');
    const earlier = (await h.exported(shipped!.id)).verificationSummaries ?? [];
    expect(earlier.length).toBeGreaterThan(0);
    const swapped = verifyRecordFile(JSON.parse(JSON.stringify({ ...file, verificationSummaries: earlier })), await h.keys());
    expect(swapped.checks.find((c) => c.check === 'verification summaries')?.ok).toBe(false);
  }, 90_000);

  it("a change to production's rules needs an approval from one of its previous owners", async () => {
    const run = await h.succeededRun();
    productionOwners = ['dave'];
    try {
      const prod = await deployments.request(as('alice'), { run, environment: 'production', justification: 'same release, new owners' });
      expect(prod.rulesChanged).toBe(true);
      // carol is a release manager, but the rules in force before named carol as the owner:
      // dave, named only by the new rules, cannot approve the change that names him.
      await deployments.decide(as('dave'), prod.id, { decision: 'approve', justification: WHY });
      const shown = await deployments.show(prod.id);
      expect(shown.approvals.satisfied).toBe(false);
      expect(shown.approvals.missing).toMatch(/owner \(one of carol\)/);
      await deployments.decide(as('carol'), prod.id, { decision: 'approve', justification: WHY });
      expect((await deployments.show(prod.id)).approvals.satisfied).toBe(true);
    } finally {
      productionOwners = ['carol'];
    }
  }, 60_000);

  it('break-glass by two people deploys through a freeze, and the record says the freeze was bypassed', async () => {
    const run = await inStaging();
    const freeze = await deployments.freezes.add(as('olga'), { environment: 'production', until: new Date(t.app.clock().getTime() + 3_600_000).toISOString(), reason: 'quarter-end freeze' });
    try {
      const prod = await deployments.request(as('alice'), { run, environment: 'production', justification: 'security fix during the freeze' });
      await deployments.decide(as('carol'), prod.id, { decision: 'approve', justification: WHY });
      // Approved, but frozen: the approval alone does not ship it.
      const frozen = await refusal(deployments.deploy(as('alice'), prod.id));
      expect(frozen).toMatchObject({ code: 'FORBIDDEN' });
      expect(frozen.message).toMatch(/quarter-end freeze/);
      expect((await deployments.breakGlass(as('carol'), prod.id, { justification: URGENT })).granted).toBe(false);
      const second = await deployments.breakGlass(as('olga'), prod.id, { justification: 'the fix closes an exploited hole' });
      expect(second).toMatchObject({ granted: true, deployment: { state: 'succeeded', breakGlass: true } });
      const v = verifyRecordFile(JSON.parse(JSON.stringify(await h.exported(prod.id))), await h.keys());
      expect(v.ok).toBe(true);
      expect(v.record?.policyDecisions.find((d) => d.action === 'window')).toMatchObject({ allowed: true, policies: [expect.stringMatching(/quarter-end freeze.*\(bypassed by break-glass\)/) as string] });
      expect(v.record?.breakGlass?.bypassed.join(' ')).toMatch(/freeze/);
      expect(second.incident).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      await deployments.freezes.lift(as('olga'), freeze.id, 'the test is over, thaw production');
    }
  }, 90_000);

  it('a recurring freeze set at run time refuses a deploy inside an occurrence', async () => {
    const run = await h.succeededRun();
    const dep = await deployments.request(as('alice'), { run, environment: 'staging', justification: 'deploy during the weekly freeze?' });
    await deployments.freezes.add(as('olga'), { environment: 'staging', cron: '* * * * *', timezone: 'UTC', durationSeconds: 120, reason: 'always frozen for this test' });
    const err = await refusal(deployments.deploy(as('alice'), dep.id));
    expect(err).toMatchObject({ code: 'FORBIDDEN' });
    expect(err.message).toMatch(/always frozen for this test/);
  }, 60_000);
});
