import { once } from 'node:events';
import { connect } from 'node:net';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../src/app/index.js';
import type { AuditEvent, AuditEventInput } from '../../src/audit/index.js';
import { buildServer, registeredRoutes, startServer } from '../../src/server/index.js';
import type { ErrorBody } from '../../src/server/index.js';
import { ENGINES } from '../support/engines.js';
import { ACTIONS, PUBLIC_ACTIONS } from '../../src/policy/index.js';
import { TestClock, authed, capturingLogger, expectError, get, openTestApp, recordOf, rid, signIn, silent } from './support.js';
import type { TestApp } from './support.js';

const ACTION = /^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)+$/;

describe.each(ENGINES)('HTTP server on %s', (engine) => {
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.cleanup();
    t = undefined;
  });

  it('declares a known action on every route, and refuses every non-public route to anonymous callers with 401, recorded', async () => {
    t = await openTestApp(engine);
    const server = await buildServer(t.app, { logger: silent });
    try {
      await server.ready();
      const routes = registeredRoutes(server);
      expect(routes.length).toBeGreaterThan(30);
      for (const route of routes) {
        expect(route.action, `${route.method} ${route.url} declares an action`).toMatch(ACTION);
        expect(ACTIONS as readonly string[], `${route.method} ${route.url}: ${route.action ?? ''} is an action the policy schema knows`).toContain(route.action);
      }
      // Public on purpose, and only these: adding one must be a visible decision.
      const publicRoutes = routes.filter((r) => r.method !== 'HEAD' && (PUBLIC_ACTIONS as readonly string[]).includes(r.action ?? '')).map((r) => `${r.method} ${r.url}`).sort();
      expect(publicRoutes).toEqual(
        [
          'GET /.well-known/jwks.json',
          'GET /.well-known/openid-configuration',
          'GET /api/v1/auth/oidc/callback',
          'GET /api/v1/auth/oidc/start',
          'GET /healthz',
          'GET /readyz',
          'POST /api/v1/auth/login',
          'POST /api/v1/auth/setup',
          'POST /api/v1/auth/setup/confirm',
          'POST /api/v1/auth/token',
          'POST /api/v1/agents/register',
          // The verification keys: anyone may verify (promise 5).
          'GET /api/v1/keys',
        ].sort(),
      );
      let checked = 0;
      for (const route of routes) {
        if ((PUBLIC_ACTIONS as readonly string[]).includes(route.action ?? '')) continue;
        const url = route.url.replace(/:([a-zA-Z]+)/g, (_m, name: string) => (name === 'seq' ? '0' : `x-${name}`));
        const id = rid('anon');
        const res = await server.inject({ method: route.method as 'GET', url, headers: { 'x-request-id': id } });
        expect(res.statusCode, `${route.method} ${url} anonymous`).toBe(401);
        if (route.method !== 'HEAD') expect(res.json<ErrorBody>().error.code).toBe('UNAUTHENTICATED');
        const ev = await recordOf(t.app, id);
        expect(ev, `${route.method} ${url} recorded`).toMatchObject({ actor: { kind: 'anonymous' }, action: route.action, outcome: 'denied', reason: 'UNAUTHENTICATED' });
        expect(ev.details).toMatchObject({ decision: 'deny' });
        checked += 1;
      }
      expect(checked).toBeGreaterThan(25);
    } finally {
      await server.close();
    }
  });

  it('refuses to serve a route that declares no action (500 INTERNAL, still recorded)', async () => {
    t = await openTestApp(engine);
    const server = await buildServer(t.app, { logger: silent });
    server.get('/undeclared', () => ({ secret: 'served' }));
    try {
      await server.ready();
      expect(registeredRoutes(server).find((r) => r.method === 'GET' && r.url === '/undeclared')).toEqual({ method: 'GET', url: '/undeclared', action: undefined });
      const { res, id } = await get(server, '/undeclared');
      const err = expectError(res, 500, 'INTERNAL');
      expect(err.details).toBeUndefined();
      expect(res.body).not.toContain('served');
      expect(await recordOf(t.app, id)).toMatchObject({ action: 'http.request', outcome: 'failed', reason: 'INTERNAL', details: { status: 500 } });
    } finally {
      await server.close();
    }
  });

  it('serves nothing without its audit record: a broken audit table turns every response into 503', async () => {
    const clock = new TestClock();
    t = await openTestApp(engine, { clock });
    const app = t.app;
    await app.audit.append({ actor: { kind: 'user', id: 'alice' }, action: 'repo.push', resource: 'repo/1', outcome: 'allowed' });
    const server = authed(await buildServer(app, { logger: silent }), await signIn(app, clock));
    try {
      expect((await get(server, '/api/v1/audit/tree')).res.statusCode).toBe(200);
      await app.store.transact((tx) => sql`drop table audit_events`.execute(tx.db));
      for (const url of ['/api/v1/audit/tree', '/api/v1/audit/key', '/healthz', '/readyz', '/api/v1/audit/entries', '/api/v1/audit/proofs/inclusion?seq=-1', '/nope']) {
        const { res, id } = await get(server, url);
        const err = expectError(res, 503, 'STORAGE_UNAVAILABLE');
        expect(err.details).toBeUndefined();
        expect(res.headers['x-request-id']).toBe(id);
        // No data leaves: not the tree, not the key.
        expect(res.body).not.toMatch(/rootHash|verifierKey|"status":"ok"/);
      }
      const post = await server.inject({ method: 'POST', url: '/api/v1/audit/checkpoints' });
      expectError(post, 503, 'STORAGE_UNAVAILABLE');
      // The state change failed with its record: nothing was signed.
      expect(await app.store.db.selectFrom('audit_checkpoints').select('size').execute()).toEqual([]);
    } finally {
      await server.close();
    }
  });

  it('reports not ready (503) when the checkpointer refuses to sign a rewritten history', async () => {
    const clock = new TestClock();
    t = await openTestApp(engine, { clock });
    const app = t.app;
    for (let i = 0; i < 5; i++) await app.audit.append({ actor: { kind: 'user', id: 'alice' }, action: 'repo.push', resource: `repo/${i}`, outcome: 'allowed' });
    const server = authed(await buildServer(app, { logger: silent }), await signIn(app, clock));
    try {
      expect((await server.inject({ method: 'POST', url: '/api/v1/audit/checkpoints' })).statusCode).toBe(201);
      // Someone with database access rewrites what the published checkpoint committed to.
      await app.store.transact((tx) => sql`update audit_checkpoints set root = ${Buffer.alloc(32, 7)}`.execute(tx.db));
      const refused = await server.inject({ method: 'POST', url: '/api/v1/audit/checkpoints' });
      const err = expectError(refused, 500, 'CHECKPOINT_INCONSISTENT');
      expect(err.message).toMatch(/refusing to sign/);

      const { res, id } = await get(server, '/readyz');
      const ready = expectError(res, 503, 'CHECKPOINT_INCONSISTENT');
      expect(ready.message).toMatch(/refusing to sign/);
      expect(await recordOf(app, id)).toMatchObject({ action: 'system.health.read', outcome: 'failed', reason: 'CHECKPOINT_INCONSISTENT', details: { status: 503 } });
      // Liveness is a different question: the process is up.
      expect((await get(server, '/healthz')).res.statusCode).toBe(200);
    } finally {
      await server.close();
    }
  });

  it('listens on a real socket (port 0) and answers fetch', async () => {
    const clock = new TestClock();
    t = await openTestApp(engine, { clock });
    const authorization = `Bearer ${await signIn(t.app, clock)}`;
    const running = await startServer(t.app, { logger: silent, host: '127.0.0.1', port: 0 });
    try {
      expect(running.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(running.url).not.toMatch(/:0$/);
      const id = rid();
      const res = await fetch(`${running.url}/api/v1/audit/key`, { headers: { 'x-request-id': id, 'user-agent': 'fetch-test', authorization } });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-request-id')).toBe(id);
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(((await res.json()) as { algorithm: string }).algorithm).toBe('Ed25519');
      expect(await recordOf(t.app, id)).toMatchObject({ action: 'audit.key.read', context: { sourceAddress: '127.0.0.1', userAgent: 'fetch-test' } });

      const bad = await fetch(`${running.url}/api/v1/audit/entries/%zz`, { headers: { authorization } });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as ErrorBody).error.code).toBe('VALIDATION_FAILED');
    } finally {
      await running.close();
    }
  });

  it('closes gracefully: in-flight requests finish with their audit records, then new connections are refused', async () => {
    const clock = new TestClock();
    t = await openTestApp(engine, { clock });
    const app = t.app;
    const authorization = `Bearer ${await signIn(app, clock)}`;
    // Hold every audit append until all 50 requests are in flight, so close() starts while
    // each of them still waits for its record.
    let arrived = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let allIn!: () => void;
    const allArrived = new Promise<void>((resolve) => (allIn = resolve));
    const gated: App = {
      ...app,
      audit: Object.assign(Object.create(app.audit) as App['audit'], {
        append: async (input: AuditEventInput): Promise<AuditEvent> => {
          arrived += 1;
          if (arrived === 50) allIn();
          await gate;
          return app.audit.append(input);
        },
      }),
    };
    await Promise.all(Array.from({ length: 50 }, (_, i) => app.audit.append({ actor: { kind: 'user', id: 'alice' }, action: 'repo.push', resource: `repo/${i}`, outcome: 'allowed' })));
    const before = (await app.audit.head()).size;
    const running = await startServer(gated, { logger: silent, host: '127.0.0.1', port: 0 });
    const responses = Array.from({ length: 50 }, (_, i) => fetch(`${running.url}/api/v1/audit/entries/${i}`, { headers: { authorization } }).then(async (r) => ({ status: r.status, body: await r.text() })));
    await allArrived;
    let closed = false;
    const closing = running.close().then(() => {
      closed = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(closed).toBe(false);
    release();
    const results = await Promise.all(responses);
    await closing;
    expect(results).toHaveLength(50);
    // Every answer is complete and is what was asked for.
    results.forEach((r, i) => {
      expect(r.status).toBe(200);
      expect((JSON.parse(r.body) as { seq: number }).seq).toBe(i);
    });
    expect((await app.audit.head()).size).toBeGreaterThanOrEqual(before + 50);
    const recorded = await app.audit.search({ action: 'audit.entries.read', limit: 1000 });
    expect(recorded).toHaveLength(50);
    await expect(fetch(`${running.url}/healthz`)).rejects.toThrow();
  });

  it('refuses requests that arrive on an open connection while draining with an audited 503 SHUTTING_DOWN', async () => {
    t = await openTestApp(engine);
    const running = await startServer(t.app, { logger: silent, host: '127.0.0.1', port: 0 });
    const { hostname, port } = new URL(running.url);
    const socket = connect({ host: hostname, port: Number(port) });
    await once(socket, 'connect');
    let response = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (response += chunk));
    const ended = once(socket, 'end');
    // The request has begun (so its connection is not idle) but is not complete when close() starts.
    socket.write('GET /readyz HTTP/1.1\r\nHost: localhost\r\nx-request-id: drain-1\r\n');
    await new Promise((r) => setTimeout(r, 50));
    const closing = running.close();
    await new Promise((r) => setTimeout(r, 50));
    socket.write('\r\n');
    await ended;
    await closing;
    expect(response).toMatch(/^HTTP\/1\.1 503 /);
    expect(response.toLowerCase()).toContain('connection: close');
    expect(response).toContain('"code":"SHUTTING_DOWN"');
    expect(await recordOf(t.app, 'drain-1')).toMatchObject({ action: 'system.health.read', outcome: 'failed', reason: 'SHUTTING_DOWN', details: { status: 503 } });
  });

  it('logs through the given logger without request bodies or credentials', async () => {
    t = await openTestApp(engine);
    const lines: string[] = [];
    const server = await buildServer(t.app, { logger: capturingLogger('trace', lines) });
    try {
      const id = rid();
      const res = await server.inject({
        method: 'POST',
        url: '/api/v1/audit/checkpoints',
        headers: { 'x-request-id': id, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', authorization: 'Bearer sekrit-bearer', cookie: 'session=sekrit-cookie', 'x-airlock-token': 'sekrit-token' },
        payload: { password: 'sekrit-body' },
      });
      // The bearer is not a valid credential: refused before the body is looked at.
      expectError(res, 401, 'UNAUTHENTICATED');
      const log = lines.join('');
      expect(log).toContain(id);
      expect(log).toContain('"traceId":"0af7651916cd43dd8448eb211c80319c"');
      expect(log).toContain('UNAUTHENTICATED');
      expect(log).not.toContain('sekrit');
    } finally {
      await server.close();
    }
  });
});
