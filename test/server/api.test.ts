import type { FastifyInstance } from 'fastify';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalEvent, leafHash, openCheckpoint, parseVerifierKey, verifyProofDocument } from '../../src/audit/index.js';
import type { AuditEvent, AuditEventInput, ConsistencyProofDocument, InclusionProofDocument } from '../../src/audit/index.js';
import { buildServer } from '../../src/server/index.js';
import type { ErrorBody } from '../../src/server/index.js';
import { ENGINES } from '../support/engines.js';
import { TestClock, authed, expectError, get, login, makeUser, openTestApp, recordOf, rid, silent } from './support.js';
import type { TestApp } from './support.js';

interface EntryJson {
  seq: number;
  leafHash: string;
  event: AuditEvent;
}
interface EntriesJson {
  entries: EntryJson[];
  next?: number;
}
interface CheckpointJson {
  size: number;
  rootHash: string;
  note: string;
  createdAt: string;
}

const seed = (i: number): AuditEventInput => ({
  actor: i % 2 === 0 ? { kind: 'user', id: 'alice' } : { kind: 'service', id: 'bob' },
  action: i % 3 === 0 ? 'pipeline.run.start' : 'repo.push',
  resource: `repo/${i}`,
  outcome: i % 4 === 0 ? 'denied' : 'allowed',
  ...(i % 4 === 0 ? { reason: 'not permitted' } : {}),
});

const SEEDED = 12;

describe.each(ENGINES)('HTTP API on %s', (engine) => {
  let t: TestApp;
  let bare: FastifyInstance;
  /** Every request signed in as a security auditor who is also an operator. */
  let server: FastifyInstance;

  beforeAll(async () => {
    const clock = new TestClock();
    t = await openTestApp(engine, { clock, seedPolicy: false });
    for (let i = 0; i < SEEDED; i++) await t.app.audit.append(seed(i));
    const auditor = await makeUser(t.app, clock, 'auditor', ['security-auditor', 'operator']);
    bare = await buildServer(t.app, { logger: silent });
    server = authed(bare, await login(bare, clock, auditor));
  });

  afterAll(async () => {
    await bare.close();
    await t.cleanup();
  });

  it('answers health probes and records them like any other request', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const { res, id } = await get(server, '/healthz', { traceparent: `00-${traceId}-00f067aa0ba902b7-01`, 'user-agent': 'probe/1.0' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'ok' });
    expect(res.headers['x-request-id']).toBe(id);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['x-powered-by']).toBeUndefined();
    const ev = await recordOf(t.app, id);
    expect(ev).toMatchObject({
      actor: { kind: 'user', id: 'auditor' },
      action: 'system.health.read',
      resource: '/healthz',
      outcome: 'allowed',
      reason: '',
      context: { sourceAddress: '127.0.0.1', userAgent: 'probe/1.0', requestId: id, traceId },
      details: { method: 'GET', status: 200, route: '/healthz' },
    });

    const ready = await get(server, '/readyz');
    expect(ready.res.statusCode).toBe(200);
    expect(ready.res.json()).toEqual({ status: 'ready' });
    expect((await recordOf(t.app, ready.id)).action).toBe('system.health.read');
  });

  it('serves the tree head, and each request grows the tree by its own record', async () => {
    const first = await get(server, '/api/v1/audit/tree');
    expect(first.res.statusCode).toBe(200);
    const head = first.res.json<{ size: number; rootHash: string }>();
    expect(head.size).toBeGreaterThanOrEqual(SEEDED);
    // The head was read before this request's record was appended.
    expect(Buffer.from(head.rootHash, 'base64').equals(await t.app.audit.rootAt(head.size))).toBe(true);
    const rec = await recordOf(t.app, first.id);
    expect(rec.seq).toBe(head.size);
    expect(rec).toMatchObject({ action: 'audit.tree.read', details: { route: '/api/v1/audit/tree', status: 200 } });
  });

  it('searches entries with every filter and pages with next', async () => {
    const all = (await get(server, '/api/v1/audit/entries?limit=1000')).res.json<EntriesJson>();
    expect(all.next).toBeUndefined();
    const e0 = all.entries[0]!;
    expect(e0.seq).toBe(0);
    expect(Buffer.from(e0.leafHash, 'base64').equals(leafHash(Buffer.from(canonicalEvent(e0.event))))).toBe(true);

    const alice = (await get(server, '/api/v1/audit/entries?actor=user:alice')).res.json<EntriesJson>();
    expect(alice.entries.map((e) => e.seq)).toEqual([0, 2, 4, 6, 8, 10]);
    const bob = (await get(server, '/api/v1/audit/entries?actor=bob')).res.json<EntriesJson>();
    expect(bob.entries.map((e) => e.seq)).toEqual([1, 3, 5, 7, 9, 11]);
    const runs = (await get(server, '/api/v1/audit/entries?action=pipeline.*&outcome=denied')).res.json<EntriesJson>();
    expect(runs.entries.map((e) => e.seq)).toEqual([0]);
    const exact = (await get(server, '/api/v1/audit/entries?resource=repo/7')).res.json<EntriesJson>();
    expect(exact.entries.map((e) => e.seq)).toEqual([7]);
    const range = (await get(server, '/api/v1/audit/entries?after=2&before=6&order=desc')).res.json<EntriesJson>();
    expect(range.entries.map((e) => e.seq)).toEqual([5, 4, 3]);

    // Paging: next is the cursor for `after`; the last page has none.
    const seen: number[] = [];
    let url = '/api/v1/audit/entries?actor=user:alice&limit=4';
    for (;;) {
      const page = (await get(server, url)).res.json<EntriesJson>();
      seen.push(...page.entries.map((e) => e.seq));
      if (page.next === undefined) break;
      url = `/api/v1/audit/entries?actor=user:alice&limit=4&after=${page.next}`;
    }
    expect(seen).toEqual([0, 2, 4, 6, 8, 10]);

    // Time filters accept any zone and compare instants, not strings: half an hour before the
    // first entry, written in +01:00, reads as half an hour after it.
    const t0 = e0.event.time;
    const inZone = (ms: number) => new Date(ms + 3_600_000).toISOString().replace('Z', '+01:00');
    const before = inZone(Date.parse(t0) - 1_800_000);
    const since = (await get(server, `/api/v1/audit/entries?since=${encodeURIComponent(before)}&limit=2`)).res.json<EntriesJson>();
    expect(since.entries.map((e) => e.seq)).toEqual([0, 1]);
    const until = (await get(server, `/api/v1/audit/entries?until=${encodeURIComponent(before)}`)).res.json<EntriesJson>();
    expect(until.entries).toEqual([]);
    const some = (await get(server, `/api/v1/audit/entries?since=${encodeURIComponent(t0)}&until=2999-01-01T00:00:00Z&limit=3`)).res.json<EntriesJson>();
    expect(some.entries).toHaveLength(3);
    expect(some.next).toBe(2);
  });

  it('serves one entry by sequence number and 404s past the end', async () => {
    const { res, id } = await get(server, '/api/v1/audit/entries/3');
    expect(res.statusCode).toBe(200);
    const entry = res.json<EntryJson>();
    expect(entry.seq).toBe(3);
    expect(entry.event.resource).toBe('repo/3');
    expect((await recordOf(t.app, id)).details).toMatchObject({ method: 'GET', status: 200, route: '/api/v1/audit/entries/:seq', decision: 'allow', policies: ['role-security-auditor'] });

    const missing = await get(server, '/api/v1/audit/entries/999999');
    expectError(missing.res, 404, 'NOT_FOUND');
    expect(await recordOf(t.app, missing.id)).toMatchObject({ outcome: 'failed', reason: 'NOT_FOUND', action: 'audit.entries.read', details: { status: 404 } });
  });

  it('issues checkpoints on demand and serves the latest as JSON and as a C2SP note', async () => {
    // A fresh app has none yet: 404.
    const empty = await get(server, '/api/v1/audit/checkpoints/latest');
    expectError(empty.res, 404, 'NOT_FOUND');

    const id = rid();
    const created = await server.inject({ method: 'POST', url: '/api/v1/audit/checkpoints', headers: { 'x-request-id': id } });
    expect(created.statusCode).toBe(201);
    const cp = created.json<CheckpointJson>();
    const opened = openCheckpoint(cp.note, t.app.verifiers(), t.app.config.auditOrigin);
    expect(opened.checkpoint.size).toBe(cp.size);
    expect(opened.checkpoint.rootHash.toString('base64')).toBe(cp.rootHash);
    // Two records carry this request id: the state change, written before signing (so the
    // checkpoint covers it), then the access record written as the response leaves.
    const records = (await t.app.audit.search({ order: 'asc', limit: 1000 })).filter((e) => e.event.context.requestId === id);
    expect(records.map((e) => e.event.action)).toEqual(['audit.checkpoint.sign', 'audit.checkpoints.create']);
    expect(records[0]!.seq).toBeLessThan(cp.size);
    expect(records[1]!.seq).toBeGreaterThanOrEqual(cp.size);

    // `{}` with a JSON content type, and an empty JSON body, are both "no arguments".
    const withBody = await server.inject({ method: 'POST', url: '/api/v1/audit/checkpoints', payload: {} });
    expect(withBody.statusCode).toBe(201);
    const emptyJson = await server.inject({ method: 'POST', url: '/api/v1/audit/checkpoints', headers: { 'content-type': 'application/json' }, payload: '' });
    expect(emptyJson.statusCode).toBe(201);
    const latestCp = emptyJson.json<CheckpointJson>();

    const json = await get(server, '/api/v1/audit/checkpoints/latest');
    expect(json.res.statusCode).toBe(200);
    expect(json.res.json<CheckpointJson>()).toEqual(latestCp);

    const text = await get(server, '/api/v1/audit/checkpoints/latest', { accept: 'text/plain' });
    expect(text.res.statusCode).toBe(200);
    expect(text.res.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(text.res.body).toBe(latestCp.note);
    expect(openCheckpoint(text.res.body, t.app.verifiers()).checkpoint.size).toBe(latestCp.size);
    // JSON wins when the client prefers it or does not say.
    const pref = await get(server, '/api/v1/audit/checkpoints/latest', { accept: 'text/plain;q=0.5, application/json' });
    expect(pref.res.headers['content-type']).toMatch(/^application\/json/);
  });

  it('serves inclusion and consistency proofs that verify', async () => {
    const head = (await get(server, '/api/v1/audit/tree')).res.json<{ size: number; rootHash: string }>();
    for (const [seq, size] of [[0, 1], [5, SEEDED], [SEEDED - 1, SEEDED], [3, undefined]] as const) {
      const url = `/api/v1/audit/proofs/inclusion?seq=${seq}${size === undefined ? '' : `&size=${size}`}`;
      const { res } = await get(server, url);
      expect(res.statusCode, res.body).toBe(200);
      const doc = res.json<InclusionProofDocument>();
      expect(doc).toMatchObject({ type: 'inclusion', leafIndex: seq });
      expect(() => verifyProofDocument(doc)).not.toThrow();
      if (size === undefined) expect(doc.treeSize).toBeGreaterThan(head.size);
      else expect(Buffer.from(doc.rootHash, 'base64').equals(await t.app.audit.rootAt(size))).toBe(true);
    }
    for (const [from, to] of [[0, 5], [1, SEEDED], [7, SEEDED], [SEEDED, undefined]] as const) {
      const { res, id } = await get(server, `/api/v1/audit/proofs/consistency?from=${from}${to === undefined ? '' : `&to=${to}`}`);
      expect(res.statusCode, res.body).toBe(200);
      const doc = res.json<ConsistencyProofDocument>();
      expect(doc).toMatchObject({ type: 'consistency', size1: from });
      expect(() => verifyProofDocument(doc)).not.toThrow();
      expect((await recordOf(t.app, id)).action).toBe('audit.proofs.read');
    }
  });

  it('publishes the verifier key', async () => {
    const { res } = await get(server, '/api/v1/audit/key');
    expect(res.statusCode).toBe(200);
    const body = res.json<{ verifierKey: string; keyName: string; algorithm: string }>();
    expect(body).toEqual({ verifierKey: t.app.key.verifierKey, keyName: t.app.config.auditOrigin, algorithm: 'Ed25519' });
    expect(parseVerifierKey(body.verifierKey).name).toBe(body.keyName);
  });

  it('refuses bad numbers, unknown fields and bad values with 400 naming the field', async () => {
    const BAD_NUMBERS = ['-1', '1.5', '1e3', '0x10', '9007199254740993', '', 'abc', ' 1', '+1', '１'];
    const cases: [string, string][] = [];
    for (const v of BAD_NUMBERS) {
      const q = encodeURIComponent(v);
      cases.push([`/api/v1/audit/proofs/inclusion?seq=${q}`, 'seq']);
      cases.push([`/api/v1/audit/proofs/inclusion?seq=0&size=${q}`, 'size']);
      cases.push([`/api/v1/audit/proofs/consistency?from=${q}`, 'from']);
      cases.push([`/api/v1/audit/proofs/consistency?from=0&to=${q}`, 'to']);
      cases.push([`/api/v1/audit/entries?after=${q}`, 'after']);
      cases.push([`/api/v1/audit/entries?limit=${q}`, 'limit']);
      if (v !== '') cases.push([`/api/v1/audit/entries/${q}`, 'seq']);
    }
    cases.push(
      ['/api/v1/audit/entries?limit=0', 'limit'],
      ['/api/v1/audit/entries?limit=1001', 'limit'],
      ['/api/v1/audit/entries?before=1&before=2', 'before'],
      ['/api/v1/audit/entries?outcome=maybe', 'outcome'],
      ['/api/v1/audit/entries?order=up', 'order'],
      ['/api/v1/audit/entries?since=yesterday', 'since'],
      ['/api/v1/audit/entries?until=2025-02-30T00:00:00Z', 'until'],
      ['/api/v1/audit/entries?since=2025-01-01T00:00:00', 'since'],
      ['/api/v1/audit/entries?action=', 'action'],
      [`/api/v1/audit/entries?resource=${'x'.repeat(600)}`, 'resource'],
      ['/api/v1/audit/entries?sort=seq', 'sort'],
      ['/api/v1/audit/proofs/inclusion', 'seq'],
      ['/api/v1/audit/proofs/inclusion?seq=0&token=secret', 'token'],
      ['/api/v1/audit/proofs/consistency', 'from'],
      ['/api/v1/audit/tree?x=1', 'x'],
      ['/healthz?verbose=1', 'verbose'],
      ['/api/v1/audit/entries/1?x=1', 'x'],
    );
    for (const [url, field] of cases) {
      const { res, id } = await get(server, url);
      const err = expectError(res, 400, 'VALIDATION_FAILED');
      expect(err.message, url).toContain(field);
      expect(err.details, url).toMatchObject({ issues: expect.arrayContaining([expect.objectContaining({ path: field })]) as unknown });
      // Refusals are recorded too, with the code as the reason.
      if (url.includes('inclusion?seq=-1')) expect(await recordOf(t.app, id)).toMatchObject({ outcome: 'failed', reason: 'VALIDATION_FAILED', details: { status: 400 } });
    }
  });

  it('never answers arbitrary query strings and path values with a 500', async () => {
    const field = fc.constantFrom('seq', 'size', 'from', 'to', 'after', 'before', 'limit', 'order', 'since', 'until', 'actor', 'action', 'resource', 'outcome', '__proto__', 'constructor', 'x');
    const value = fc.oneof(
      fc.string(),
      fc.string({ unit: 'grapheme' }),
      fc.integer().map(String),
      fc.double().map(String),
      fc.constantFrom('', '-0', '00', '1e309', 'NaN', 'Infinity', '%', '*', 'user:', ':x', '2024-02-29T24:00:00Z', '0000-01-01T00:00:00Z', '9999-12-31T23:59:59.999-23:59'),
    );
    const path = fc.constantFrom('/api/v1/audit/entries', '/api/v1/audit/proofs/inclusion', '/api/v1/audit/proofs/consistency', '/api/v1/audit/entries/', '/api/v1/audit/tree', '/readyz');
    await fc.assert(
      fc.asyncProperty(path, value, fc.array(fc.tuple(field, value), { maxLength: 4 }), async (p, segment, pairs) => {
        const qs = pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
        const url = `${p.endsWith('/') ? p + encodeURIComponent(segment) : p}?${qs}`;
        const res = await server.inject({ url });
        expect(res.statusCode, url).toBeLessThan(500);
        if (res.statusCode >= 400) expect(['VALIDATION_FAILED', 'AUDIT_INVALID_RANGE', 'NOT_FOUND'], url).toContain(res.json<ErrorBody>().error.code);
      }),
      { numRuns: 150 },
    );
  });

  it('refuses sizes and sequence numbers beyond the tree with AUDIT_INVALID_RANGE naming the field', async () => {
    const cases: [string, string][] = [
      ['/api/v1/audit/proofs/inclusion?seq=5000', 'seq'],
      ['/api/v1/audit/proofs/inclusion?seq=0&size=5000', 'size'],
      ['/api/v1/audit/proofs/inclusion?seq=3&size=3', 'seq'],
      ['/api/v1/audit/proofs/consistency?from=5000', 'from'],
      ['/api/v1/audit/proofs/consistency?from=0&to=5000', 'to'],
      ['/api/v1/audit/proofs/consistency?from=5&to=4', 'from'],
    ];
    for (const [url, field] of cases) {
      const { res, id } = await get(server, url);
      const err = expectError(res, 400, 'AUDIT_INVALID_RANGE');
      expect(err.message, url).toContain(field);
      expect(err.details, url).toMatchObject({ field, issues: [{ path: field }] });
      expect(await recordOf(t.app, id)).toMatchObject({ outcome: 'failed', reason: 'AUDIT_INVALID_RANGE', action: 'audit.proofs.read' });
    }
  });

  it('refuses bad bodies: malformed JSON 400, unknown field 400, too large 413, wrong type 415', async () => {
    const post = async (payload: string, contentType: string | undefined) => {
      const id = rid();
      const headers: Record<string, string> = { 'x-request-id': id, ...(contentType === undefined ? {} : { 'content-type': contentType }) };
      const res = await server.inject({ method: 'POST', url: '/api/v1/audit/checkpoints', headers, payload });
      return { res, rec: await recordOf(t.app, id) };
    };
    const malformed = await post('{"a":', 'application/json');
    expect(expectError(malformed.res, 400, 'VALIDATION_FAILED').message).toContain('(body)');
    expect(malformed.rec).toMatchObject({ outcome: 'failed', reason: 'VALIDATION_FAILED', action: 'audit.checkpoints.create', details: { status: 400 } });

    const unknown = await post('{"size":3}', 'application/json');
    expect(expectError(unknown.res, 400, 'VALIDATION_FAILED').details).toEqual({ issues: [{ path: 'size', message: 'is not a recognised field' }] });
    for (const notObject of ['[]', 'null', '"x"', '7']) expectError((await post(notObject, 'application/json')).res, 400, 'VALIDATION_FAILED');

    const huge = await post(JSON.stringify({ pad: 'x'.repeat(70_000) }), 'application/json');
    expectError(huge.res, 413, 'PAYLOAD_TOO_LARGE');
    expect(huge.rec).toMatchObject({ outcome: 'failed', reason: 'PAYLOAD_TOO_LARGE', details: { status: 413 } });

    const text = await post('{}', 'text/plain');
    expectError(text.res, 415, 'UNSUPPORTED_MEDIA_TYPE');
    expect(text.rec).toMatchObject({ outcome: 'failed', reason: 'UNSUPPORTED_MEDIA_TYPE', details: { status: 415 } });
    expectError((await post('a=1', 'application/x-www-form-urlencoded')).res, 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError((await post('{}', 'not a media type')).res, 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError((await post('{}', undefined)).res, 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('404s unknown routes and wrong methods, and records them as http.request', async () => {
    const { res, id } = await get(server, '/api/v1/nope?secret=1');
    expectError(res, 404, 'NOT_FOUND');
    expect(res.headers['x-request-id']).toBe(id);
    expect(await recordOf(t.app, id)).toMatchObject({
      action: 'http.request',
      resource: '/api/v1/nope',
      outcome: 'failed',
      reason: 'NOT_FOUND',
      details: { method: 'GET', status: 404, route: null },
    });
    for (const [method, url] of [['DELETE', '/api/v1/audit/tree'], ['PUT', '/api/v1/audit/checkpoints'], ['POST', '/healthz']] as const) {
      const wid = rid();
      const wrong = await server.inject({ method, url, headers: { 'x-request-id': wid } });
      expect([404, 405]).toContain(wrong.statusCode);
      expect(await recordOf(t.app, wid)).toMatchObject({ action: 'http.request', outcome: 'failed', details: { method, route: null } });
    }
    // A URL fastify cannot decode never reaches a route, but is answered and recorded all the same.
    const bad = await get(server, '/api/v1/audit/entries/%zz');
    expectError(bad.res, 400, 'VALIDATION_FAILED');
    expect(bad.res.headers['x-request-id']).toBe(bad.id);
    expect(await recordOf(t.app, bad.id)).toMatchObject({ action: 'http.request', reason: 'VALIDATION_FAILED', details: { status: 400, route: null } });
    // The resource is capped at 512 characters.
    const long = await get(server, `/${'a'.repeat(2000)}`);
    expectError(long.res, 404, 'NOT_FOUND');
    expect((await recordOf(t.app, long.id)).resource).toHaveLength(512);
  });

  it('echoes a well-formed x-request-id and replaces anything else; takes the trace id from traceparent', async () => {
    for (const good of ['abc', 'A.b_c-1', 'x'.repeat(64)]) {
      const res = await server.inject({ url: '/healthz', headers: { 'x-request-id': good } });
      expect(res.headers['x-request-id']).toBe(good);
    }
    const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
    for (const bad of ['', 'has space', 'x'.repeat(65), 'semi;colon', 'ünï']) {
      const res = await server.inject({ url: '/healthz', headers: { 'x-request-id': bad } });
      expect(res.headers['x-request-id']).toMatch(UUID);
    }
    const none = await server.inject({ url: '/healthz' });
    const generated = String(none.headers['x-request-id']);
    expect(generated).toMatch(UUID);
    const rec = await recordOf(t.app, generated);
    expect(rec.context.traceId).toMatch(/^[0-9a-f]{32}$/);

    // Invalid traceparents (all-zero ids, upper case, version ff) get a fresh trace id.
    for (const tp of ['00-00000000000000000000000000000000-00f067aa0ba902b7-01', '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'garbage']) {
      const { id } = await get(server, '/healthz', { traceparent: tp });
      const traceId = (await recordOf(t.app, id)).context.traceId;
      expect(traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(tp.toLowerCase()).not.toContain(traceId);
    }
  });
});
