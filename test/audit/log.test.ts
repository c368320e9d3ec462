import { afterEach, describe, expect, it } from 'vitest';
import { ENGINES, openTestStore } from '../support/engines.js';
import type { TestStore } from '../support/engines.js';
import { AuditLog, MerkleBuilder, canonicalEvent, leafHash, verifyConsistency, verifyInclusion } from '../../src/audit/index.js';
import type { AuditEventInput } from '../../src/audit/index.js';

const ev = (i: number, extra: Partial<AuditEventInput> = {}): AuditEventInput => ({
  actor: { kind: 'user', id: i % 2 === 0 ? 'alice' : 'bob' },
  action: i % 3 === 0 ? 'pipeline.run.start' : 'audit.entries.read',
  resource: `thing/${i}`,
  outcome: i % 5 === 0 ? 'denied' : 'allowed',
  ...(i % 5 === 0 ? { reason: 'not permitted' } : {}),
  context: { sourceAddress: '127.0.0.1', requestId: `r${i}` },
  details: { i },
  ...extra,
});

describe.each(ENGINES)('audit log on %s', (engine) => {
  let t: TestStore | undefined;
  afterEach(async () => {
    await t?.cleanup();
    t = undefined;
  });

  it('assigns gap-free sequence numbers to concurrent appends and keeps one tree', async () => {
    t = await openTestStore(engine);
    const log = new AuditLog(t.store);
    const events = await Promise.all(Array.from({ length: 300 }, (_, i) => log.append(ev(i))));
    expect(events.map((e) => e.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 300 }, (_, i) => i));
    // The stored root equals a tree rebuilt from the canonical text of every entry.
    const entries = await log.search({ limit: 1000 });
    const b = new MerkleBuilder();
    for (const e of entries) b.append(leafHash(Buffer.from(canonicalEvent(e.event))));
    const head = await log.head();
    expect(head.size).toBe(300);
    expect(head.rootHash.equals(b.root())).toBe(true);
  });

  it('serves inclusion and consistency proofs that verify for every size', async () => {
    t = await openTestStore(engine);
    const log = new AuditLog(t.store);
    for (let i = 0; i < 37; i++) await log.append(ev(i));
    for (const size of [1, 2, 3, 7, 8, 9, 16, 31, 37]) {
      const root = await log.rootAt(size);
      for (const idx of [0, Math.floor(size / 2), size - 1]) {
        const p = await log.inclusionProof(idx, size);
        expect(p.rootHash.equals(root)).toBe(true);
        expect(() => verifyInclusion(idx, size, p.leafHash, p.proof, p.rootHash)).not.toThrow();
      }
      for (const size1 of [0, 1, Math.floor(size / 2), size]) {
        const c = await log.consistencyProof(size1, size);
        expect(() => verifyConsistency(size1, size, c.root1, c.root2, c.proof)).not.toThrow();
      }
    }
  });

  it('rejects impossible proof requests with AUDIT_INVALID_RANGE naming the field', async () => {
    t = await openTestStore(engine);
    const log = new AuditLog(t.store);
    await log.append(ev(1));
    await expect(log.inclusionProof(1, 1)).rejects.toMatchObject({ code: 'AUDIT_INVALID_RANGE', details: { field: 'leafIndex' } });
    await expect(log.inclusionProof(0, 2)).rejects.toMatchObject({ code: 'AUDIT_INVALID_RANGE', details: { field: 'treeSize' } });
    await expect(log.inclusionProof(-1)).rejects.toMatchObject({ code: 'AUDIT_INVALID_RANGE' });
    await expect(log.consistencyProof(2, 1)).rejects.toMatchObject({ code: 'AUDIT_INVALID_RANGE', details: { field: 'size1' } });
    await expect(log.consistencyProof(0, 1.5)).rejects.toMatchObject({ code: 'AUDIT_INVALID_RANGE', details: { field: 'size2' } });
  });

  it('commits a state change and its event together, or neither (fail closed)', async () => {
    t = await openTestStore(engine);
    const store = t.store;
    const log = new AuditLog(store);
    const work = (key: string, fail: boolean) =>
      store.transact(async (tx) => {
        await tx.db.insertInto('airlock_meta').values({ key, value: 'x' }).execute();
        await log.record(tx, ev(0, { resource: `meta/${key}` }));
        if (fail) throw new Error('the action failed after recording');
        return key;
      });
    const results = await Promise.allSettled([work('a', false), work('b', true), work('c', false), work('d', true)]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected']);
    const resources = (await log.search()).map((e) => e.event.resource);
    expect(resources).toEqual(['meta/a', 'meta/c']);
    const keys = (await store.db.selectFrom('airlock_meta').select('key').orderBy('key').execute()).map((r) => r.key);
    expect(keys).toEqual(['a', 'c']);
    expect((await log.search()).map((e) => e.seq)).toEqual([0, 1]);
  });

  it('fails the action when the audit record cannot be written', async () => {
    t = await openTestStore(engine);
    const store = t.store;
    const log = new AuditLog(store);
    await log.append(ev(0));
    // Sabotage the events table so the deferred insert fails at commit.
    await t.raw('drop table audit_events');
    const attempt = store.transact(async (tx) => {
      await tx.db.insertInto('airlock_meta').values({ key: 'should-not-exist', value: 'x' }).execute();
      await log.record(tx, ev(1));
    });
    await expect(attempt).rejects.toMatchObject({ code: expect.stringMatching(/^STORAGE_/) as unknown });
    const meta = await store.db.selectFrom('airlock_meta').selectAll().execute();
    expect(meta).toEqual([]);
    expect((await log.head()).size).toBe(1);
  });

  it('rejects bad units inside a group-committed batch without disturbing the others', async () => {
    t = await openTestStore(engine);
    const log = new AuditLog(t.store);
    const inputs = Array.from({ length: 40 }, (_, i) =>
      i % 7 === 3 ? ev(i, { details: { blob: 'x'.repeat(30_000) } }) : i % 11 === 5 ? ev(i, { action: 'Not Valid' }) : ev(i),
    );
    const results = await Promise.allSettled(inputs.map((e) => log.append(e)));
    const ok = results.filter((r) => r.status === 'fulfilled').map((r) => r.value.seq);
    expect(results.filter((r) => r.status === 'rejected').every((r) => (r.reason as { code: string }).code === 'VALIDATION_FAILED')).toBe(true);
    expect(ok.sort((a, b) => a - b)).toEqual(Array.from({ length: ok.length }, (_, i) => i));
    expect(ok.length).toBe(40 - 6 - 3);
    const head = await log.head();
    const b = new MerkleBuilder();
    for (const e of await log.search({ limit: 100 })) b.append(leafHash(Buffer.from(canonicalEvent(e.event))));
    expect(head.size).toBe(ok.length);
    expect(head.rootHash.equals(b.root())).toBe(true);
  });

  it('validates event input and names every bad field', async () => {
    t = await openTestStore(engine);
    const log = new AuditLog(t.store);
    const bad = { actor: { kind: 'robot', id: '' }, action: 'Bad Action', resource: 'r', outcome: 'maybe', extra: 1 } as unknown as AuditEventInput;
    const err = (await log.append(bad).catch((e: unknown) => e)) as { code: string; issues: { path: string }[] };
    expect(err.code).toBe('VALIDATION_FAILED');
    expect(err.issues.map((i) => i.path).sort()).toEqual(expect.arrayContaining(['actor.kind', 'actor.id', 'action', 'outcome']));
    await expect(log.append(ev(1, { outcome: 'denied', reason: undefined }))).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    expect((await log.head()).size).toBe(0);
  });

  it('keeps time monotonic across batches and restarts even when the clock steps back', async () => {
    t = await openTestStore(engine);
    let now = Date.parse('2030-01-01T00:00:10Z');
    const clock = { now: () => new Date(now) };
    const first = await new AuditLog(t.store, clock).append(ev(1));
    now -= 5_000; // the clock steps back five seconds
    const second = await new AuditLog(t.store, clock).append(ev(2));
    expect(second.time >= first.time).toBe(true);
    expect(second.time).toBe('2030-01-01T00:00:10.000Z');
  });

  it('searches by actor, action prefix, resource, outcome and time', async () => {
    t = await openTestStore(engine);
    const log = new AuditLog(t.store);
    for (let i = 0; i < 30; i++) await log.append(ev(i));
    expect((await log.search({ actorId: 'alice' })).every((e) => e.event.actor.id === 'alice')).toBe(true);
    expect((await log.search({ action: 'pipeline.*' })).map((e) => e.seq)).toEqual([0, 3, 6, 9, 12, 15, 18, 21, 24, 27]);
    expect((await log.search({ action: 'pipeline' })).length).toBe(0);
    expect((await log.search({ outcome: 'denied' })).map((e) => e.seq)).toEqual([0, 5, 10, 15, 20, 25]);
    expect((await log.search({ resource: 'thing/7' })).map((e) => e.seq)).toEqual([7]);
    const all = await log.search({ limit: 100 });
    const mid = all[10]?.event.time ?? '';
    expect((await log.search({ since: mid })).every((e) => e.event.time >= mid)).toBe(true);
    expect((await log.search({ order: 'desc', limit: 3 })).map((e) => e.seq)).toEqual([29, 28, 27]);
    // Time never decreases along the sequence.
    for (let i = 1; i < all.length; i++) expect((all[i]?.event.time ?? '') >= (all[i - 1]?.event.time ?? '')).toBe(true);
  });
});
