/**
 * Freezes over HTTP and from the CLI, on both engines, through the one enforcement point: set
 * one-off and recurring freezes, list them, lift one. Bad input is refused naming the field and
 * writes nothing; a developer may read but not freeze or lift (403, recorded); anonymous calls
 * are 401. The CLI's `freeze lift ID --reason R` must hand --reason to `lift`, not to `freeze`.
 */
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UNTIL_LIFTED } from '../../src/delivery/index.js';
import type { FreezeInfo } from '../../src/delivery/index.js';
import { parseDuration } from '../../src/cli/freeze-commands.js';
import { buildServer } from '../../src/server/index.js';
import { runCliInProcess } from '../support/cli-in-process.js';
import type { CliResult } from '../support/cli-in-process.js';
import { ENGINES } from '../support/engines.js';
import { TestClock, expectError, login, makeUser, openTestApp, recordOf, rid, silent } from '../server/support.js';
import type { TestApp } from '../server/support.js';

const HOUR = 3_600_000;
const ROLES: Readonly<Record<string, string[]>> = { rita: ['release-manager'], dev: ['developer'] };

describe.each(ENGINES)('freeze routes and commands on %s', (engine) => {
  let t: TestApp;
  let server: FastifyInstance;
  const clock = new TestClock();
  const tokens: Record<string, string> = {};
  let url = '';
  let dir = '';

  beforeAll(async () => {
    t = await openTestApp(engine, { clock });
    server = await buildServer(t.app, { logger: silent });
    await server.ready();
    for (const [name, roles] of Object.entries(ROLES)) tokens[name] = await login(server, clock, await makeUser(t.app, clock, name, roles));
    await server.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
    dir = mkdtempSync(join(tmpdir(), 'airlock-freeze-cli-'));
  }, 60_000);

  afterAll(async () => {
    await server.close();
    await t.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  async function call(who: string | undefined, method: 'GET' | 'POST', path: string, payload?: object): Promise<LightMyRequestResponse & { requestId: string }> {
    const requestId = rid('freeze');
    const res = await server.inject({ method, url: path, headers: { 'x-request-id': requestId, ...(who === undefined ? {} : { authorization: `Bearer ${tokens[who] ?? ''}` }) }, ...(payload === undefined ? {} : { payload }) });
    return Object.assign(res, { requestId });
  }
  const inHours = (h: number): string => new Date(clock.now().getTime() + h * HOUR).toISOString();
  const count = async (): Promise<number> => (await t.app.store.db.selectFrom('freezes').select('id').execute()).length;
  const paths = (err: { details?: unknown }): string[] => ((err.details as { issues?: { path: string }[] } | undefined)?.issues ?? []).map((i) => i.path).sort();

  /** Run `airlock ...args` in process as `who`. */
  function airlock(who: string, ...args: string[]): Promise<CliResult> {
    return airlockWith(who, url, args);
  }
  /** The same, with AIRLOCK_SERVER set to `server`. */
  function airlockWith(who: string, envServer: string, args: readonly string[]): Promise<CliResult> {
    return runCliInProcess(args, { env: { HOME: dir, AIRLOCK_HOME: join(dir, 'home'), AIRLOCK_SERVER: envServer, AIRLOCK_TOKEN: tokens[who] ?? '' }, cwd: dir });
  }

  it('sets one-off and recurring freezes, records them, and lists them with what applies now', async () => {
    const until = inHours(2);
    const one = await call('rita', 'POST', '/api/v1/environments/production/freezes', { until, reason: 'end of quarter freeze' });
    expect(one.statusCode, one.body).toBe(201);
    const f = one.json<FreezeInfo>();
    expect(f).toMatchObject({ environment: 'production', kind: 'one-off', until, reason: 'end of quarter freeze', createdBy: 'rita', activeNow: true });
    expect(await recordOf(t.app, one.requestId)).toMatchObject({ outcome: 'allowed', action: 'deployments.freeze', actor: { id: 'rita' } });
    const domain = (await t.app.audit.search({ action: 'deployments.freeze', order: 'desc', limit: 50 })).find((e) => e.event.details.id === f.id);
    expect(domain?.event).toMatchObject({ resource: 'environments/production', context: { requestId: one.requestId }, details: { kind: 'one-off', until } });

    clock.advance(1000);
    const weekly = await call('rita', 'POST', '/api/v1/environments/production/freezes', { reason: 'no weekend deploys', cron: '0 18 * * 5', timezone: 'Europe/Paris', durationSeconds: 62 * 3600 });
    expect(weekly.statusCode, weekly.body).toBe(201);
    const w = weekly.json<FreezeInfo>();
    expect(w).toMatchObject({ kind: 'recurring', until: UNTIL_LIFTED, cron: '0 18 * * 5', timezone: 'Europe/Paris', durationSeconds: 223_200 });
    expect(w.next).toEqual({ from: expect.any(String) as string, until: new Date(Date.parse(w.next?.from ?? '') + 223_200_000).toISOString() });

    const listed = await call('dev', 'GET', '/api/v1/freezes?environment=production');
    expect(listed.statusCode, listed.body).toBe(200);
    expect(listed.json<{ freezes: FreezeInfo[] }>().freezes.map((x) => x.id)).toEqual([w.id, f.id]);
    expect((await call('dev', 'GET', '/api/v1/freezes?environment=staging')).json<{ freezes: FreezeInfo[] }>().freezes).toEqual([]);
  });

  it('refuses bad freezes naming the field, writing nothing', async () => {
    const before = await count();
    const base = { reason: 'release week' };
    const weekly = { cron: '0 18 * * 5', timezone: 'Europe/Paris', durationSeconds: 3600 };
    for (const [body, fields] of [
      [{ ...base }, ['until']],
      [{ ...base, until: 'tomorrow' }, ['until']],
      [{ ...base, until: inHours(-1) }, ['until']],
      [{ ...base, from: inHours(3), until: inHours(2) }, ['until']],
      [{ ...base, ...weekly, cron: 'nope' }, ['cron']],
      [{ ...base, ...weekly, timezone: 'Mars/Olympus_Mons' }, ['timezone']],
      [{ ...base, ...weekly, durationSeconds: 0 }, ['durationSeconds']],
      [{ ...base, ...weekly, durationSeconds: 31 * 86_400 + 1 }, ['durationSeconds']],
      [{ ...base, ...weekly, durationSeconds: '3600' }, ['durationSeconds']],
      [{ ...base, cron: '0 18 * * 5' }, ['durationSeconds', 'timezone']],
      [{ reason: 'no', until: inHours(1) }, ['reason']],
      [{ ...base, until: inHours(1), project: 'shop' }, ['project']],
    ] as const) {
      const err = expectError(await call('rita', 'POST', '/api/v1/environments/production/freezes', body), 400, 'VALIDATION_FAILED');
      expect(paths(err), JSON.stringify(body)).toEqual([...fields].sort());
    }
    expect(paths(expectError(await call('rita', 'POST', '/api/v1/environments/Prod!/freezes', { ...base, until: inHours(1) }), 400, 'VALIDATION_FAILED'))).toEqual(['environment']);
    expect(await count()).toBe(before);
  });

  it('lets a developer read but not freeze or lift; anonymous calls are refused', async () => {
    const mine = (await call('rita', 'POST', '/api/v1/environments/staging/freezes', { until: inHours(1), reason: 'staging rebuild' })).json<FreezeInfo>();
    const before = await count();
    for (const [path, body] of [
      ['/api/v1/environments/staging/freezes', { until: inHours(1), reason: 'my own freeze' }],
      [`/api/v1/freezes/${mine.id}/lift`, { reason: 'I want to deploy' }],
    ] as const) {
      const res = await call('dev', 'POST', path, body);
      expectError(res, 403, 'FORBIDDEN');
      expect(await recordOf(t.app, res.requestId)).toMatchObject({ outcome: 'denied', actor: { id: 'dev' }, action: 'deployments.freeze' });
    }
    expect(await count()).toBe(before);
    expect((await t.app.store.db.selectFrom('freezes').select('lifted_at').where('id', '=', mine.id).executeTakeFirstOrThrow()).lifted_at).toBeNull();
    expectError(await call(undefined, 'GET', '/api/v1/freezes'), 401, 'UNAUTHENTICATED');
    expectError(await call(undefined, 'POST', `/api/v1/freezes/${mine.id}/lift`, { reason: 'anonymous lift' }), 401, 'UNAUTHENTICATED');
  });

  it('lifts a freeze once; lifting again is a conflict; unknown and malformed ids are refused', async () => {
    const f = (await call('rita', 'POST', '/api/v1/environments/canary/freezes', { until: inHours(1), reason: 'canary incident' })).json<FreezeInfo>();
    expectError(await call('rita', 'POST', `/api/v1/freezes/${f.id}/lift`, {}), 400, 'VALIDATION_FAILED');
    const lifted = await call('rita', 'POST', `/api/v1/freezes/${f.id}/lift`, { reason: 'incident resolved' });
    expect(lifted.statusCode, lifted.body).toBe(200);
    expect(lifted.json<FreezeInfo>()).toMatchObject({ id: f.id, liftedBy: 'rita', activeNow: false });
    expect((await t.app.audit.search({ action: 'deployments.freeze.lift', order: 'desc', limit: 50 })).find((e) => e.event.details.id === f.id)?.event).toMatchObject({ outcome: 'allowed', context: { requestId: lifted.requestId }, details: { reason: 'incident resolved' } });

    expectError(await call('rita', 'POST', `/api/v1/freezes/${f.id}/lift`, { reason: 'incident resolved again' }), 409, 'CONFLICT');
    expectError(await call('rita', 'POST', '/api/v1/freezes/00000000-0000-4000-8000-000000000000/lift', { reason: 'no such freeze' }), 404, 'NOT_FOUND');
    expectError(await call('rita', 'POST', '/api/v1/freezes/not-an-id/lift', { reason: 'no such freeze' }), 400, 'VALIDATION_FAILED');

    const active = (await call('rita', 'GET', '/api/v1/freezes?environment=canary')).json<{ freezes: FreezeInfo[] }>().freezes;
    expect(active).toEqual([]);
    const all = (await call('rita', 'GET', '/api/v1/freezes?environment=canary&all=true')).json<{ freezes: FreezeInfo[] }>().freezes;
    expect(all).toEqual([expect.objectContaining({ id: f.id, liftedBy: 'rita' })]);
    expectError(await call('rita', 'GET', '/api/v1/freezes?all=yes'), 400, 'VALIDATION_FAILED');
  });

  it('airlock freeze ENV, freeze list and freeze lift ID work from the command line, with usage errors naming the flag', async () => {
    const one = await airlock('rita', 'freeze', 'cli-env', '--until', inHours(3), '--reason', 'cli freeze', '--json');
    expect(one.code, one.stderr).toBe(0);
    const f = JSON.parse(one.stdout) as FreezeInfo;
    expect(f).toMatchObject({ environment: 'cli-env', kind: 'one-off', reason: 'cli freeze' });

    const weekly = await airlock('rita', 'freeze', 'cli-env', '--cron', '0 18 * * 5', '--timezone', 'Europe/Paris', '--duration', '2d', '--reason', 'weekend freeze');
    expect(weekly.code, weekly.stderr).toBe(0);
    expect(weekly.stdout).toMatch(/froze cli-env at 0 18 \* \* 5 \(Europe\/Paris\) for 2d, from .* until lifted \(weekend freeze\)/);

    const listed = await airlock('dev', 'freeze', 'list', '--env', 'cli-env');
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/^ID\s+ENVIRONMENT\s+SCHEDULE/);
    expect(listed.stdout).toContain('0 18 * * 5 (Europe/Paris) for 2d');
    expect(listed.stdout).toContain('FROZEN');

    // --reason and --json after the id belong to `lift`.
    const lifted = await airlock('rita', 'freeze', 'lift', f.id, '--reason', 'shipped early', '--json');
    expect(lifted.code, lifted.stderr).toBe(0);
    expect(JSON.parse(lifted.stdout)).toMatchObject({ id: f.id, liftedBy: 'rita' });
    const again = await airlock('rita', 'freeze', 'lift', f.id, '--reason', 'shipped early');
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already lifted.*CONFLICT/);
    // --server after the subcommand is the one used (commander parses it as freeze's option).
    const elsewhere = await airlockWith('dev', 'http://127.0.0.1:9', ['freeze', 'list', '--env', 'cli-env', '--server', url, '--json']);
    expect(elsewhere.code, elsewhere.stderr).toBe(0);
    expect((JSON.parse(elsewhere.stdout) as { freezes: FreezeInfo[] }).freezes).toHaveLength(1);
    const json = JSON.parse((await airlock('rita', 'freeze', 'list', '--env', 'cli-env', '--all', '--json')).stdout) as { freezes: FreezeInfo[] };
    expect(json.freezes).toHaveLength(2);

    const before = await count();
    for (const [args, message] of [
      [['freeze', 'cli-env', '--until', inHours(1)], /--reason/],
      [['freeze', 'cli-env', '--reason', 'why not'], /--until/],
      [['freeze', 'cli-env', '--until', 'tomorrow', '--reason', 'why not'], /--until/],
      [['freeze', 'cli-env', '--cron', '0 18 * * 5', '--reason', 'why not'], /missing --timezone, --duration/],
      [['freeze', 'cli-env', '--cron', '0 18 * * 5', '--timezone', 'UTC', '--duration', '2 days', '--reason', 'why not'], /--duration/],
      [['freeze', 'cli-env', '--cron', '0 18 * * 5', '--timezone', 'UTC', '--duration', '32d', '--reason', 'why not'], /--duration.*31d/],
      [['freeze', 'lift', f.id], /--reason/],
      [['freeze', 'lift', f.id, '--reason', 'shipped early', '--until', inHours(1)], /--until is not an option of `airlock freeze lift`/],
      [['freeze', 'list', '--cron', '0 18 * * 5', '--reason', 'why not'], /--cron, --reason are not options of `airlock freeze list`/],
    ] as const) {
      const r = await airlock('rita', ...args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    // The server's refusal of a bad cron names the field.
    const cron = await airlock('rita', 'freeze', 'cli-env', '--cron', 'nope', '--timezone', 'UTC', '--duration', '1h', '--reason', 'why not');
    expect(cron.code).toBe(1);
    expect(cron.stderr).toMatch(/cron.*nope/);
    expect(await count()).toBe(before);
  });

  it('has help with examples for each form', async () => {
    for (const [args, text] of [
      [['freeze', '--help'], /--cron <expr>[\s\S]*--duration <d>[\s\S]*Commands:[\s\S]*list[\s\S]*lift[\s\S]*\$ airlock freeze production --cron "0 18 \* \* 5" --timezone Europe\/Paris/],
      [['freeze', 'list', '--help'], /--env <environment>[\s\S]*--all[\s\S]*\$ airlock freeze list --env production --all --json/],
      [['freeze', 'lift', '--help'], /<id>[\s\S]*--reason <text>[\s\S]*\$ airlock freeze lift /],
    ] as const) {
      const r = await airlock('dev', ...args);
      expect(r.stdout, args.join(' ')).toMatch(text);
    }
  });

  it('parses durations with units and refuses the rest', () => {
    expect([parseDuration('2d'), parseDuration('48h'), parseDuration('90m'), parseDuration('3600s')]).toEqual([172_800, 172_800, 5400, 3600]);
    for (const bad of ['2', 'd', '1.5h', '-1h', '0s', '32d', '2w', '']) expect(() => parseDuration(bad), bad).toThrow();
  });
});
