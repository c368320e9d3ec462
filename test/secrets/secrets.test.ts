/**
 * Secrets end to end on both engines: stored only encrypted, revealed only with step-up and a
 * justification, released only to steps that declare them, masked in their logs, and never
 * found in plaintext (plain, base64, hex) in the database, its WAL, logs, API answers or the
 * audit log.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, sep } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../src/server/index.js';
import { ENGINES } from '../support/engines.js';
import { TestClock, capturingLogger, expectError, login, makeUser, nextCode, openTestApp } from '../server/support.js';
import type { TestApp, TestUser } from '../server/support.js';
import { makeRepo } from '../runs/support.js';

// Characters that make every encoding differ from the plain value (/, +, quotes, &, ?, space).
const VALUE = 'pg-Pa55w0rd/K+x9q "unique" & 7731?';
const FORMS = [
  VALUE,
  Buffer.from(VALUE).toString('base64'),
  Buffer.from(VALUE).toString('base64url'),
  Buffer.from(VALUE).toString('hex'),
  encodeURIComponent(VALUE),
  JSON.stringify(VALUE).slice(1, -1),
];

interface RunDetail {
  id: string;
  state: string;
  stages: { steps: { state: string; reason: string | null }[] }[];
}

describe.each(ENGINES)('secrets on %s', (engine) => {
  let t: TestApp;
  let server: FastifyInstance;
  const clock = new TestClock();
  let admin: TestUser;
  let token: string;
  const responses: string[] = [];
  const logLines: string[] = [];

  beforeAll(async () => {
    t = await openTestApp(engine, { clock });
    await t.app.startRunner({ labels: ['embedded'], concurrency: 2, reap: false });
    admin = await makeUser(t.app, clock, 'alice', ['admin']);
    server = await buildServer(t.app, { logger: capturingLogger('debug', logLines) });
    token = await login(server, clock, admin);
  }, 60_000);

  afterAll(async () => {
    await server.close();
    await t.cleanup();
  });

  async function call(method: string, url: string, payload?: unknown) {
    const res = await server.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${token}` }, ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }) });
    responses.push(res.body);
    return res;
  }

  async function waitForRun(id: string): Promise<RunDetail> {
    for (let i = 0; i < 200; i++) {
      const r = (await call('GET', `/api/v1/runs/${id}`)).json<RunDetail>();
      if (['succeeded', 'failed', 'cancelled'].includes(r.state)) return r;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error('run did not finish');
  }

  it('stores a secret encrypted, lists metadata only, and reveals it only with step-up and a justification', async () => {
    const repo = makeRepo({ 'airlock.yaml': 'version: 1\npipeline: app\nowners: [alice]\nstages:\n  deploy:\n    steps:\n      - name: migrate\n        run: echo "connecting with $DB_PASSWORD"; printf %s "$DB_PASSWORD" | base64\n        secrets: [DB_PASSWORD]\n      - name: nosy\n        run: echo "value=${DB_PASSWORD:-unset}"\n' });
    expect((await call('POST', '/api/v1/projects', { name: 'app', repo: repo.dir })).statusCode).toBe(201);
    const set = await call('POST', '/api/v1/secrets', { name: 'DB_PASSWORD', project: 'app', valueBase64: Buffer.from(VALUE).toString('base64'), description: 'database' });
    expect(set.statusCode, set.body).toBe(201);
    expect(set.json()).toMatchObject({ name: 'DB_PASSWORD', currentVersion: 1 });
    const listed = await call('GET', '/api/v1/secrets');
    expect(listed.json<{ secrets: unknown[] }>().secrets).toHaveLength(1);

    clock.advance(6 * 60_000);
    expectError(await call('POST', '/api/v1/secrets/DB_PASSWORD/reveal', { project: 'app', justification: 'incident 42: verify rotation' }), 403, 'STEP_UP_REQUIRED');
    const up = await call('POST', '/api/v1/auth/step-up', { code: nextCode(clock, admin) });
    token = up.json<{ token: string }>().token;
    expectError(await call('POST', '/api/v1/secrets/DB_PASSWORD/reveal', { project: 'app', justification: 'x' }), 400, 'VALIDATION_FAILED');
    const revealed = await server.inject({ method: 'POST', url: '/api/v1/secrets/DB_PASSWORD/reveal', headers: { authorization: `Bearer ${token}` }, payload: { project: 'app', justification: 'incident 42: verify rotation' } });
    expect(revealed.statusCode, revealed.body).toBe(200);
    expect(Buffer.from(revealed.json<{ valueBase64: string }>().valueBase64, 'base64').toString()).toBe(VALUE);
    const rec = (await t.app.audit.search({ action: 'secrets.reveal', limit: 10 })).find((e) => e.event.details.method === undefined);
    expect(rec?.event.details).toMatchObject({ name: 'DB_PASSWORD', version: 1, justification: 'incident 42: verify rotation' });
    expect(rec?.event.details.valueHmac).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
  });

  it('releases the secret only to the step that declares it, masked in its logs', async () => {
    const id = (await call('POST', '/api/v1/runs', { project: 'app' })).json<RunDetail>().id;
    const run = await waitForRun(id);
    expect(run.state, JSON.stringify(run.stages)).toBe('succeeded');
    const logs = (await call('GET', `/api/v1/runs/${id}/logs`)).json<{ chunks: { step: string; data: string }[] }>();
    const text = (step: string) => logs.chunks.filter((c) => c.step === step).map((c) => Buffer.from(c.data, 'base64').toString()).join('');
    expect(text('migrate')).toContain('connecting with ***');
    expect(text('nosy')).toContain('value=unset');
    const release = await t.app.audit.search({ action: 'secrets.release', limit: 10 });
    expect(release.map((e) => e.event.outcome)).toEqual(['allowed']);
  });

  it('keeps the metadata: owner (the creator unless named), description, rotation, expiry and last read', async () => {
    const listed = () => call('GET', '/api/v1/secrets').then((r) => r.json<{ secrets: { name: string; owner: string; description: string; lastReadAt: string | null; rotationIntervalDays: number | null; expiresAt: string | null; currentVersion: number }[] }>().secrets);
    const db = (await listed()).find((x) => x.name === 'DB_PASSWORD')!;
    // Created by alice, read by the migrate step in the run above.
    expect(db).toMatchObject({ owner: 'user:alice', description: 'database', currentVersion: 1 });
    expect(Date.parse(db.lastReadAt ?? '')).not.toBeNaN();
    const expires = new Date(clock.now().getTime() + 400 * 86_400_000).toISOString();
    const made = await call('POST', '/api/v1/secrets', { name: 'PAYMENTS_KEY', project: 'app', owner: 'payments-team', description: 'card processor', rotationIntervalDays: 90, expiresAt: expires, valueBase64: Buffer.from('pk-live-0001-unique').toString('base64') });
    expect(made.statusCode, made.body).toBe(201);
    expect(made.json()).toMatchObject({ owner: 'payments-team', description: 'card processor', rotationIntervalDays: 90, expiresAt: expires, lastReadAt: null, lastRotatedAt: null });
    // A new version may hand the secret to another owner; the change is on the record.
    const handed = await call('POST', '/api/v1/secrets', { name: 'PAYMENTS_KEY', project: 'app', owner: 'release-managers', valueBase64: Buffer.from('pk-live-0002-unique').toString('base64') });
    expect(handed.json()).toMatchObject({ owner: 'release-managers', currentVersion: 2, description: 'card processor' });
    expect(Date.parse(handed.json<{ lastRotatedAt: string }>().lastRotatedAt)).not.toBeNaN();
    const write = (await t.app.audit.search({ action: 'secrets.write', outcome: 'allowed', limit: 10, order: 'desc' })).find((e) => e.event.details.method === undefined);
    expect(write?.event.details).toMatchObject({ name: 'PAYMENTS_KEY', version: 2, owner: 'release-managers' });
    const bad = await call('POST', '/api/v1/secrets', { name: 'PAYMENTS_KEY', project: 'app', owner: 'Payments Team', valueBase64: Buffer.from('pk-live-0003-unique').toString('base64') });
    expectError(bad, 400, 'VALIDATION_FAILED');
    expect(bad.body).toContain('owner');
    expect((await listed()).find((x) => x.name === 'PAYMENTS_KEY')).toMatchObject({ owner: 'release-managers', currentVersion: 2 });
  });

  it('refuses a step that declares a secret that does not exist in its scope, and records the denial', async () => {
    const repo = makeRepo({ 'airlock.yaml': 'version: 1\npipeline: other\nowners: [alice]\nstages:\n  s:\n    steps:\n      - { name: wants, run: "true", secrets: [DB_PASSWORD] }\n' });
    await call('POST', '/api/v1/projects', { name: 'other', repo: repo.dir });
    const run = await waitForRun((await call('POST', '/api/v1/runs', { project: 'other' })).json<RunDetail>().id);
    expect(run.state).toBe('failed');
    expect(run.stages[0]!.steps[0]).toMatchObject({ state: 'refused' });
    expect(run.stages[0]!.steps[0]!.reason).toMatch(/DB_PASSWORD/);
    const denied = (await t.app.audit.search({ action: 'secrets.release', outcome: 'denied', limit: 10 })).map((e) => e.event.reason);
    expect(denied.join(' ')).toMatch(/no secret DB_PASSWORD in scope of project other/);
  });

  it('records a rotation that yielded no value, keeping the current version; bad input and unknown secrets write nothing', async () => {
    const before = (await t.app.audit.search({ action: 'secrets.rotate', limit: 10 })).length;
    expectError(await call('POST', '/api/v1/secrets/DB_PASSWORD/rotation-failures', { project: 'app', reason: '' }), 400, 'VALIDATION_FAILED');
    expectError(await call('POST', '/api/v1/secrets/DB_PASSWORD/rotation-failures', { project: 'app', reason: 'x'.repeat(301) }), 400, 'VALIDATION_FAILED');
    expectError(await call('POST', '/api/v1/secrets/NO_SUCH/rotation-failures', { project: 'app', reason: 'the rotation command exited 1' }), 404, 'NOT_FOUND');
    expectError(await call('POST', '/api/v1/secrets/DB_PASSWORD/rotation-failures', { project: 'nope', reason: 'the rotation command exited 1' }), 400, 'VALIDATION_FAILED');
    expect((await t.app.audit.search({ action: 'secrets.rotate', limit: 10 })).length).toBe(before);
    const ok = await call('POST', '/api/v1/secrets/DB_PASSWORD/rotation-failures', { project: 'app', reason: 'the rotation command exited 3' });
    expect(ok.statusCode, ok.body).toBe(201);
    expect(ok.json()).toEqual({ currentVersion: 1 });
    const [rec] = await t.app.audit.search({ action: 'secrets.rotate', limit: 1, order: 'desc' });
    expect(rec?.event).toMatchObject({ outcome: 'failed', reason: 'rotation failed, version 1 stays current: the rotation command exited 3', actor: { id: 'alice' }, details: { name: 'DB_PASSWORD', version: 1 } });
    expect((await call('GET', '/api/v1/secrets/DB_PASSWORD/versions?project=app')).json<{ versions: unknown[] }>().versions).toHaveLength(1);
  });

  it('flags overdue rotations, expired and unused secrets in the scheduled check, one audit event each', async () => {
    const ask = (name: string, extra: Record<string, unknown>) => call('POST', '/api/v1/secrets', { name, valueBase64: Buffer.from(`${name}-value-0001`).toString('base64'), ...extra });
    expect((await ask('ROTATE_ME', { rotationIntervalDays: 30 })).statusCode).toBe(201);
    expect((await ask('SHORT_LIVED', { expiresAt: new Date(clock.now().getTime() + 86_400_000).toISOString() })).statusCode).toBe(201);
    expect(await t.app.secrets.hygiene(90)).toEqual([]);
    clock.advance(31 * 86_400_000);
    const findings = await t.app.secrets.hygiene(90);
    expect(findings.map((f) => `${f.name}:${f.finding}`).sort()).toEqual(['ROTATE_ME:rotation_overdue', 'SHORT_LIVED:expired']);
    clock.advance(60 * 86_400_000);
    const later = (await t.app.secrets.hygiene(90)).map((f) => `${f.name}:${f.finding}`);
    expect(later).toEqual(expect.arrayContaining(['ROTATE_ME:unused', 'SHORT_LIVED:unused', 'DB_PASSWORD:unused']));
    const events = await t.app.audit.search({ action: 'secrets.hygiene', limit: 100 });
    expect(events.length).toBe(2 + later.length);
    expect(events.every((e) => e.event.outcome === 'failed' && e.event.reason !== '')).toBe(true);
  });

  it('never leaves the value in any encoding: database (and WAL), audit log, server log, API answers and errors', async () => {
    expect(new Set(FORMS).size).toBe(FORMS.length);
    const revealAnswer = responses.findIndex((r) => r.includes('valueBase64'));
    const others = responses.filter((_, i) => i !== revealAnswer);
    const auditText = (await t.app.audit.search({ limit: 10_000 })).map((e) => JSON.stringify(e.event)).join('\n');
    const haystacks: [string, string][] = [
      ['audit', auditText],
      ['server log', logLines.join('')],
      ['api answers', others.join('\n')],
    ];
    if (engine === 'sqlite') {
      const path = t.app.config.database.kind === 'sqlite' ? t.app.config.database.path : '';
      for (const file of [path, `${path}-wal`]) if (existsSync(file)) haystacks.push([file, readFileSync(file).toString('latin1')]);
    } else {
      const tables = await sql<{ table_name: string }>`select table_name from information_schema.tables where table_schema = current_schema()`.execute(t.app.store.db);
      for (const { table_name } of tables.rows) {
        const rows = await sql<{ row: string }>`select t::text as row from ${sql.table(table_name)} t`.execute(t.app.store.db);
        haystacks.push([table_name, rows.rows.map((r) => r.row).join('\n')]);
      }
    }
    // Every file under the home: the artifact store (the steps' stored logs, masked before they
    // were hashed), keys, workspaces left behind, and on SQLite the database files again.
    const files = readdirSync(t.app.config.home, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
    expect(files.some((f) => join(f.parentPath, f.name).includes(`${sep}artifacts${sep}`))).toBe(true);
    for (const f of files) haystacks.push([join(f.parentPath, f.name), readFileSync(join(f.parentPath, f.name)).toString('latin1')]);
    expect(haystacks.length).toBeGreaterThan(3);
    for (const [where, text] of haystacks) {
      for (const form of FORMS) expect(text.includes(form), `${form} in ${where}`).toBe(false);
    }
  });
});
