/**
 * Delivery over HTTP, on both engines, through the one enforcement point: request, approve with
 * step-up, deploy, freeze, and the exported record verified offline. Attacks are tried and
 * refused with their codes: self-approval, approval by a developer, a deploy during a freeze,
 * anonymous calls (401, each recorded).
 */
import { createPublicKey } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyRecordFile } from '../../src/delivery/index.js';
import type { DeploymentSummary, DeploymentView, RecordFile } from '../../src/delivery/index.js';
import { ENGINES } from '../support/engines.js';
import { expectError, login, nextCode, recordOf, rid } from '../server/support.js';
import type { TestApp, TestClock } from '../server/support.js';
import { openDeliveryServer } from './http-fixture.js';
import type { DeliveryServer } from './http-fixture.js';

const WHY = 'checked the diff, tests and provenance';

describe.each(ENGINES)('delivery routes on %s', (engine) => {
  let d: DeliveryServer;
  let t: TestApp;
  let clock: TestClock;
  let runId: string;

  beforeAll(async () => {
    d = await openDeliveryServer(engine);
    ({ t, clock, runId } = d);
  }, 60_000);

  afterAll(async () => {
    await d.close();
  });

  async function call(who: string | undefined, method: 'GET' | 'POST', url: string, payload?: object): Promise<LightMyRequestResponse & { requestId: string }> {
    const requestId = rid('delivery');
    const res = await d.server.inject({ method, url, headers: { 'x-request-id': requestId, ...(who === undefined ? {} : { authorization: `Bearer ${d.tokens[who] ?? ''}` }) }, ...(payload === undefined ? {} : { payload }) });
    return Object.assign(res, { requestId });
  }
  async function stepUp(who: string): Promise<void> {
    const up = await call(who, 'POST', '/api/v1/auth/step-up', { code: nextCode(clock, d.users[who]!) });
    expect(up.statusCode, up.body).toBe(201);
    d.tokens[who] = up.json<{ token: string }>().token;
  }
  async function requestDeployment(who: string, environment: string, justification = 'ship the checkout fix'): Promise<DeploymentView> {
    const res = await call(who, 'POST', '/api/v1/deployments', { run: runId, environment, justification, ticket: 'OPS-7' });
    expect(res.statusCode, res.body).toBe(201);
    return res.json<DeploymentView>();
  }

  it('requests and deploys where no approval is needed; asks, approves with step-up and deploys where one is', async () => {
    const staging = await requestDeployment('rita', 'staging');
    expect(staging).toMatchObject({ environment: 'staging', project: 'shop', state: 'requested', requestedBy: 'rita', ticket: 'OPS-7', gate: { allowed: true, reasons: [] } });
    // No record before the deploy has finished.
    expectError(await call('rita', 'GET', `/api/v1/deployments/${staging.id}/record`), 409, 'CONFLICT');
    const done = await call('rita', 'POST', `/api/v1/deployments/${staging.id}/deploy`);
    expect(done.statusCode, done.body).toBe(200);
    expect(done.json<DeploymentView>()).toMatchObject({ state: 'succeeded', recordDigest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) as string });
    expect(d.deployed.at(-1)).toEqual({ environment: 'staging', deploymentId: staging.id });

    clock.advance(1000);
    const prod = await requestDeployment('rita', 'production');
    expect(prod.gate.allowed).toBe(false);
    expect(prod.approvals.satisfied).toBe(false);
    expect(prod.gate.reasons.join()).toMatch(/approval/);
    // Deploying before the approval is refused by the gate, and recorded.
    expect(expectError(await call('rita', 'POST', `/api/v1/deployments/${prod.id}/deploy`), 403, 'FORBIDDEN').message).toMatch(/refused/);

    clock.advance(6 * 60_000);
    const stale = await call('bob', 'POST', `/api/v1/deployments/${prod.id}/approve`, { justification: WHY });
    expectError(stale, 403, 'STEP_UP_REQUIRED');
    expect(await recordOf(t.app, stale.requestId)).toMatchObject({ outcome: 'denied', actor: { id: 'bob' }, action: 'deployments.approve' });
    await stepUp('bob');
    const approved = await call('bob', 'POST', `/api/v1/deployments/${prod.id}/approve`, { justification: WHY });
    expect(approved.statusCode, approved.body).toBe(200);
    expect(approved.json<DeploymentView>()).toMatchObject({ state: 'approved', gate: { allowed: true }, approvals: { satisfied: true, counted: [{ approver: 'bob' }] } });
    const shipped = await call('rita', 'POST', `/api/v1/deployments/${prod.id}/deploy`);
    expect(shipped.statusCode, shipped.body).toBe(200);
    expect(shipped.json<DeploymentView>().state).toBe('succeeded');

    const listed = await call('dev', 'GET', '/api/v1/deployments?project=shop');
    expect(listed.statusCode, listed.body).toBe(200);
    const rows = listed.json<{ deployments: DeploymentSummary[] }>().deployments;
    expect(rows.slice(0, 2).map((d) => d.id)).toEqual([prod.id, staging.id]);
    const onlyProd = (await call('dev', 'GET', '/api/v1/deployments?environment=production&limit=1')).json<{ deployments: DeploymentSummary[] }>().deployments;
    expect(onlyProd).toEqual([expect.objectContaining({ id: prod.id, environment: 'production', state: 'succeeded' })]);
    expectError(await call('dev', 'GET', '/api/v1/deployments?limit=0'), 400, 'VALIDATION_FAILED');
    expectError(await call('dev', 'GET', '/api/v1/deployments?project=nope'), 404, 'NOT_FOUND');

    // The record verifies offline with the published attestation keys and the log's key.
    const record = await call('dev', 'GET', `/api/v1/deployments/${prod.id}/record`);
    expect(record.statusCode, record.body).toBe(200);
    const file = record.json<RecordFile>();
    const keys = (await call(undefined, 'GET', '/api/v1/keys')).json<{ keys: { kid: string; publicKeyPem: string }[] }>().keys;
    const trust = { attestation: new Map(keys.map((k) => [k.kid, createPublicKey(k.publicKeyPem)])), log: t.app.verifiers() };
    const verified = verifyRecordFile(file, trust);
    expect(verified.checks.filter((c) => !c.ok)).toEqual([]);
    expect(verified.record).toMatchObject({ deploymentId: prod.id, environment: 'production', initiator: 'rita', outcome: 'succeeded', approvals: [{ approver: 'bob', justification: WHY }] });
    // An edited file does not verify: the record names another approver.
    const payload = JSON.parse(Buffer.from(file.envelope.payload, 'base64').toString('utf8')) as { predicate: { approvals: { approver: string }[] } };
    payload.predicate.approvals[0]!.approver = 'mallory';
    const forged = verifyRecordFile({ ...file, envelope: { ...file.envelope, payload: Buffer.from(JSON.stringify(payload)).toString('base64') } }, trust);
    expect(forged.ok).toBe(false);
    expect(forged.checks.filter((c) => !c.ok).map((c) => c.check)).toEqual(expect.arrayContaining(['signature', 'audit event']));
  });

  it('refuses self-approval with its code, and records it', async () => {
    const dep = await requestDeployment('rita', 'production', 'ship the search change');
    await stepUp('rita');
    const self = await call('rita', 'POST', `/api/v1/deployments/${dep.id}/approve`, { justification: WHY });
    expect(expectError(self, 403, 'FORBIDDEN').details).toMatchObject({ code: 'self_approval' });
    expect(await recordOf(t.app, self.requestId)).toMatchObject({ outcome: 'denied', actor: { id: 'rita' } });
    const domain = (await t.app.audit.search({ action: 'deployments.approve', outcome: 'denied', order: 'desc', limit: 20 })).find((e) => e.event.details.method === undefined && e.event.context.requestId === self.requestId);
    expect(domain?.event.reason).toMatch(/^self_approval: /);
    expect((await call('rita', 'GET', `/api/v1/deployments/${dep.id}`)).json<DeploymentView>().state).toBe('requested');
  });

  it('a developer can read and ask for deployments, but cannot approve, deny, deploy what is not approved, or freeze', async () => {
    const dep = await requestDeployment('rita', 'production', 'ship the cart change');
    expect((await call('dev', 'GET', `/api/v1/deployments/${dep.id}`)).statusCode).toBe(200);
    await stepUp('dev');
    for (const [url, body] of [
      [`/api/v1/deployments/${dep.id}/approve`, { justification: WHY }],
      [`/api/v1/deployments/${dep.id}/deny`, { justification: WHY }],
      // Allowed to try, refused by the gate: production needs approvals by others.
      [`/api/v1/deployments/${dep.id}/deploy`, undefined],
      ['/api/v1/environments/production/freezes', { until: new Date(clock.now().getTime() + 3_600_000).toISOString(), reason: 'my freeze' }],
    ] as const) {
      const res = await call('dev', 'POST', url, body);
      expectError(res, 403, 'FORBIDDEN');
      expect(await recordOf(t.app, res.requestId)).toMatchObject({ outcome: 'denied', actor: { id: 'dev' } });
    }
    const approvals = await t.app.store.db.selectFrom('deployment_approvals').select('approver').where('deployment_id', '=', dep.id).execute();
    expect(approvals).toEqual([]);
    // Asking is not shipping: the environment's rules decide what happens next.
    expect((await call('dev', 'POST', '/api/v1/deployments', { run: runId, environment: 'production', justification: 'please ship the cart change' })).statusCode).toBe(201);
  });

  it('a freeze refuses a deploy until it ends, naming it; a bad freeze is refused naming the field', async () => {
    expectError(await call('rita', 'POST', '/api/v1/environments/staging/freezes', { until: 'tomorrow', reason: 'release week' }), 400, 'VALIDATION_FAILED');
    const past = expectError(await call('rita', 'POST', '/api/v1/environments/staging/freezes', { until: new Date(clock.now().getTime() - 60_000).toISOString(), reason: 'release week' }), 400, 'VALIDATION_FAILED');
    expect(JSON.stringify(past.details)).toContain('until');
    expectError(await call('rita', 'POST', '/api/v1/environments/Staging!/freezes', { until: new Date(clock.now().getTime() + 60_000).toISOString(), reason: 'release week' }), 400, 'VALIDATION_FAILED');
    const until = new Date(clock.now().getTime() + 3_600_000).toISOString();
    const frozen = await call('rita', 'POST', '/api/v1/environments/staging/freezes', { until, reason: 'end of quarter freeze' });
    expect(frozen.statusCode, frozen.body).toBe(201);
    expect(frozen.json()).toMatchObject({ environment: 'staging', until, reason: 'end of quarter freeze' });

    const dep = await requestDeployment('rita', 'staging', 'ship during the freeze?');
    expect(dep.gate.allowed).toBe(false);
    expect(dep.gate.reasons.join()).toMatch(/frozen|freeze/i);
    const count = d.deployed.length;
    const refused = await call('rita', 'POST', `/api/v1/deployments/${dep.id}/deploy`);
    expect(expectError(refused, 403, 'FORBIDDEN').message).toMatch(/frozen|freeze/i);
    expect(d.deployed).toHaveLength(count);
    expect((await t.app.audit.search({ action: 'deployments.deploy', outcome: 'denied', resource: `deployments/${dep.id}`, limit: 5 })).length).toBe(1);

    clock.advance(3_600_000 + 1000);
    // An hour idle ends the session: sign in again.
    d.tokens.rita = await login(d.server, clock, d.users.rita!);
    const late = await call('rita', 'POST', `/api/v1/deployments/${dep.id}/deploy`);
    expect(late.statusCode, late.body).toBe(200);
    expect(late.json<DeploymentView>().state).toBe('succeeded');
  });

  it('break-glass over HTTP: a developer is refused, step-up is required, one person is not enough, two deploy and open an incident', async () => {
    // Earlier tests moved the clock past the sessions' lifetime: sign in afresh.
    for (const who of ['dev', 'bob', 'rita']) d.tokens[who] = await login(d.server, clock, d.users[who]!);
    const dep = await requestDeployment('dev', 'production', 'hotfix the outage right now');
    const why = { justification: 'payments are down, see INC-77' };
    const devTry = await call('dev', 'POST', `/api/v1/deployments/${dep.id}/break-glass`, why);
    expectError(devTry, 403, 'FORBIDDEN');
    expect(await recordOf(t.app, devTry.requestId)).toMatchObject({ outcome: 'denied', action: 'breakglass.use', actor: { id: 'dev' } });
    clock.advance(6 * 60_000);
    expectError(await call('bob', 'POST', `/api/v1/deployments/${dep.id}/break-glass`, why), 403, 'STEP_UP_REQUIRED');
    await stepUp('bob');
    const first = await call('bob', 'POST', `/api/v1/deployments/${dep.id}/break-glass`, why);
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json()).toMatchObject({ granted: false, participants: ['bob'] });
    expect(expectError(await call('bob', 'POST', `/api/v1/deployments/${dep.id}/break-glass`, why), 403, 'FORBIDDEN').details).toMatchObject({ code: 'one_person' });
    await stepUp('rita');
    const second = await call('rita', 'POST', `/api/v1/deployments/${dep.id}/break-glass`, { justification: 'confirmed with the incident lead' });
    expect(second.statusCode, second.body).toBe(200);
    const granted = second.json<{ granted: boolean; incident: string; deployment: DeploymentView }>();
    expect(granted).toMatchObject({ granted: true, deployment: { state: 'succeeded', breakGlass: true } });

    // Incidents: readable by release managers, not by developers; a postmortem closes one.
    expectError(await call('dev', 'GET', '/api/v1/incidents'), 403, 'FORBIDDEN');
    const open = await call('bob', 'GET', '/api/v1/incidents?open=true');
    expect(open.json<{ incidents: { id: string }[] }>().incidents.map((i) => i.id)).toContain(granted.incident);
    expectError(await call('bob', 'POST', `/api/v1/incidents/${granted.incident}/postmortem`, { postmortem: 'done' }), 400, 'VALIDATION_FAILED');
    const closed = await call('bob', 'POST', `/api/v1/incidents/${granted.incident}/postmortem`, { postmortem: 'Outage from a bad config push; two people broke the glass; OPS-9 adds a canary.' });
    expect(closed.statusCode, closed.body).toBe(200);
    expect(closed.json()).toMatchObject({ state: 'closed', closedBy: 'bob' });
    expectError(await call('bob', 'POST', `/api/v1/incidents/${granted.incident}/postmortem`, { postmortem: 'Outage from a bad config push; two people broke the glass; OPS-9 adds a canary.' }), 409, 'CONFLICT');
    expectError(await call('bob', 'GET', '/api/v1/incidents/not-an-id'), 400, 'VALIDATION_FAILED');
  });

  it('rollback over HTTP names what is wrong: unknown project, no earlier release, a bad --to', async () => {
    expectError(await call('rita', 'POST', '/api/v1/environments/staging/rollback', { project: 'nope', justification: 'roll back the bad release' }), 404, 'NOT_FOUND');
    expect(expectError(await call('rita', 'POST', '/api/v1/environments/staging/rollback', { project: 'shop', justification: 'roll back the bad release' }), 409, 'CONFLICT').message).toMatch(/no earlier one/);
    expect(expectError(await call('rita', 'POST', '/api/v1/environments/staging/rollback', { project: 'shop', to: 'x', justification: 'roll back the bad release' }), 400, 'VALIDATION_FAILED').message).toMatch(/to/);
    expectError(await call(undefined, 'POST', '/api/v1/environments/staging/rollback', { project: 'shop', justification: 'roll back the bad release' }), 401, 'UNAUTHENTICATED');
  });

  it('validates input, naming the field', async () => {
    const missing = expectError(await call('rita', 'POST', '/api/v1/deployments', { run: runId, environment: 'staging' }), 400, 'VALIDATION_FAILED');
    expect(JSON.stringify(missing.details)).toContain('justification');
    const extra = expectError(await call('rita', 'POST', '/api/v1/deployments', { run: runId, environment: 'staging', justification: 'ship the checkout fix', approver: 'bob' }), 400, 'VALIDATION_FAILED');
    expect(JSON.stringify(extra.details)).toContain('approver');
    expectError(await call('rita', 'POST', '/api/v1/deployments', { run: runId, environment: 'nowhere', justification: 'ship the checkout fix' }), 400, 'VALIDATION_FAILED');
    expectError(await call('rita', 'GET', '/api/v1/deployments/not-an-id'), 400, 'VALIDATION_FAILED');
    expectError(await call('rita', 'GET', '/api/v1/deployments/00000000-0000-4000-8000-000000000000'), 404, 'NOT_FOUND');
  });

  it('refuses anonymous callers on every delivery route with 401, each recorded', async () => {
    const id = '00000000-0000-4000-8000-000000000000';
    const routes: ['GET' | 'POST', string][] = [
      ['POST', '/api/v1/deployments'],
      ['GET', '/api/v1/deployments'],
      ['GET', `/api/v1/deployments/${id}`],
      ['GET', `/api/v1/deployments/${id}/record`],
      ['POST', `/api/v1/deployments/${id}/approve`],
      ['POST', `/api/v1/deployments/${id}/deny`],
      ['POST', `/api/v1/deployments/${id}/deploy`],
      ['POST', '/api/v1/environments/staging/freezes'],
    ];
    for (const [method, url] of routes) {
      const res = await call(undefined, method, url, method === 'POST' ? { justification: WHY } : undefined);
      expectError(res, 401, 'UNAUTHENTICATED');
      expect(await recordOf(t.app, res.requestId), `${method} ${url}`).toMatchObject({ outcome: 'denied', actor: { kind: 'anonymous' } });
    }
  });
});
