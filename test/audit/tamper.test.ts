/**
 * The attacker has write access to the database. Each test tampers by raw SQL, as such an
 * attacker would, and asserts the exact finding `airlock audit verify` reports.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ENGINES } from '../support/engines.js';
import { auditFixture, ORIGIN, rewriteHistory, sampleEvent } from '../support/audit-fixture.js';
import type { AuditFixture } from '../support/audit-fixture.js';
import { ed25519Signer, formatCheckpoint, leafHash, signNote } from '../../src/audit/index.js';

const SIZE = 20;

/** Shift seq of rows matching `where` by `delta` without tripping the primary key mid-statement. */
async function shift(f: AuditFixture, where: string, delta: number): Promise<void> {
  await f.raw(`update audit_events set seq = -seq - 1000 where ${where}`);
  await f.raw(`update audit_events set seq = -seq - 1000 + (${delta}) where seq < 0`);
}

describe.each(ENGINES)('audit verify on %s detects tampering', (engine) => {
  let f: AuditFixture | undefined;
  afterEach(async () => {
    await f?.cleanup();
    f = undefined;
  });

  it('passes an untouched log', async () => {
    f = await auditFixture(engine, SIZE);
    const r = await f.verify();
    expect(r.findings).toEqual([]);
    expect(r).toMatchObject({ ok: true, treeSize: SIZE, firstBadSeq: null, unsignedTail: 0, latestCheckpoint: { size: SIZE } });
  });

  it('passes entries with non-ASCII text and escapes (leaf bytes are UTF-8 of the JCS text)', async () => {
    f = await auditFixture(engine, 3);
    await f.log.append({ ...sampleEvent(3), resource: 'pipelines/zoë', details: { emoji: '🚀', nul: '\u0000', rtl: 'שלום', esc: '"\\' } });
    await f.checkpointer.checkpointNow();
    const r = await f.verify();
    expect(r.findings).toEqual([]);
  });

  it('an edited event', async () => {
    f = await auditFixture(engine, SIZE);
    await f.raw(`update audit_events set event = replace(event, '"alice"', '"mallory"') where seq = 6`);
    const r = await f.verify();
    expect(r.ok).toBe(false);
    expect(r.firstBadSeq).toBe(6);
    expect(r.findings[0]).toMatchObject({ kind: 'event_modified', seq: 6 });
    expect(r.findings.map((x) => x.kind)).toContain('checkpoint_root_mismatch');
  });

  it('an edited search column (which could hide an entry from searches)', async () => {
    f = await auditFixture(engine, SIZE);
    await f.raw(`update audit_events set actor_id = 'nobody' where seq = 4`);
    const r = await f.verify();
    expect(r.findings).toEqual([expect.objectContaining({ kind: 'index_modified', seq: 4 })]);
  });

  it('a deleted event (gap)', async () => {
    f = await auditFixture(engine, SIZE);
    await f.raw('delete from audit_events where seq = 7');
    const r = await f.verify();
    expect(r.firstBadSeq).toBe(7);
    expect(r.findings[0]).toMatchObject({ kind: 'event_deleted', seq: 7 });
  });

  it('a deleted event with the later ones renumbered to close the gap', async () => {
    f = await auditFixture(engine, SIZE);
    await f.raw('delete from audit_events where seq = 7');
    await shift(f, 'seq > 7', -1);
    const r = await f.verify();
    expect(r.firstBadSeq).toBe(7);
    expect(r.findings[0]).toMatchObject({ kind: 'event_deleted', seq: 7 });
  });

  it('reordered events', async () => {
    f = await auditFixture(engine, SIZE);
    await f.raw('update audit_events set seq = -1 where seq = 3');
    await f.raw('update audit_events set seq = 3 where seq = 9');
    await f.raw('update audit_events set seq = 9 where seq = -1');
    const r = await f.verify();
    expect(r.firstBadSeq).toBe(3);
    expect(r.findings[0]).toMatchObject({ kind: 'event_reordered', seq: 3 });
    expect(r.findings[1]).toMatchObject({ kind: 'event_reordered', seq: 9 });
  });

  it('an inserted event with the later ones renumbered', async () => {
    f = await auditFixture(engine, SIZE);
    const original = await f.log.entry(10);
    await shift(f, 'seq >= 10', 1);
    const forged = JSON.stringify({ ...original.event, actor: { kind: 'user', id: 'mallory' } });
    await f.store.transact((tx) =>
      tx.db
        .insertInto('audit_events')
        .values({ seq: 10, time: original.event.time, actor_kind: 'user', actor_id: 'mallory', action: original.event.action, resource: original.event.resource, outcome: 'allowed', event: forged })
        .execute(),
    );
    const r = await f.verify();
    expect(r.firstBadSeq).toBe(10);
    expect(r.findings[0]).toMatchObject({ kind: 'event_inserted', seq: 10 });
  });

  it('an event appended behind the tree head', async () => {
    f = await auditFixture(engine, SIZE);
    await f.raw(`insert into audit_events (seq, time, actor_kind, actor_id, action, resource, outcome, event) select ${SIZE}, time, actor_kind, actor_id, action, resource, outcome, event from audit_events where seq = 0`);
    const r = await f.verify();
    expect(r.findings).toEqual([expect.objectContaining({ kind: 'event_inserted', seq: SIZE })]);
  });

  it('an edited interior node hash', async () => {
    f = await auditFixture(engine, SIZE);
    await f.raw('update audit_nodes set hash = (select hash from audit_nodes where level = 0 and idx = 0) where level = 2 and idx = 1');
    const r = await f.verify();
    expect(r.findings).toEqual([expect.objectContaining({ kind: 'node_modified', seq: 4 })]);
  });

  it('an edited leaf hash (the entry itself intact)', async () => {
    f = await auditFixture(engine, SIZE);
    await f.raw('update audit_nodes set hash = (select hash from audit_nodes where level = 0 and idx = 0) where level = 0 and idx = 6');
    const r = await f.verify();
    expect(r.findings).toEqual([expect.objectContaining({ kind: 'node_modified', seq: 6 })]);
  });

  it('a truncated log (rows removed)', async () => {
    f = await auditFixture(engine, SIZE);
    await f.raw('delete from audit_events where seq >= 15');
    const r = await f.verify();
    expect(r.firstBadSeq).toBe(15);
    expect(r.findings[0]).toMatchObject({ kind: 'log_truncated', seq: 15 });
  });

  it('a truncated log with a consistent smaller tree and head', async () => {
    f = await auditFixture(engine, SIZE);
    const root15 = await f.log.rootAt(15);
    await f.raw('delete from audit_events where seq >= 15');
    await f.raw('delete from audit_nodes where level = 0 and idx >= 15');
    await f.raw('delete from audit_nodes where level = 1 and idx >= 7');
    await f.raw('delete from audit_nodes where level = 2 and idx >= 3');
    await f.raw('delete from audit_nodes where level = 3 and idx >= 1');
    await f.raw('delete from audit_nodes where level = 4 and idx >= 0');
    await f.store.transact((tx) => tx.db.updateTable('audit_head').set({ size: 15, root: root15 }).where('id', '=', 1).execute());
    const r = await f.verify();
    expect(r.findings).toEqual([expect.objectContaining({ kind: 'log_truncated', seq: 15 })]);
  });

  it('a checkpoint re-signed with another key', async () => {
    f = await auditFixture(engine, SIZE);
    const { privateKey } = generateKeyPairSync('ed25519');
    const head = await f.log.head();
    const note = signNote(formatCheckpoint({ origin: ORIGIN, size: head.size, rootHash: head.rootHash, extensions: [] }), [ed25519Signer(ORIGIN, privateKey)]);
    await f.store.transact((tx) => tx.db.updateTable('audit_checkpoints').set({ note }).where('size', '=', SIZE).execute());
    const r = await f.verify();
    expect(r.findings).toEqual([expect.objectContaining({ kind: 'checkpoint_invalid', seq: SIZE })]);
    expect(r.findings[0]?.message).toMatch(/no_known_signature|no signature/i);
  });

  it('a checkpoint with a bad signature', async () => {
    f = await auditFixture(engine, SIZE);
    const row = await f.store.db.selectFrom('audit_checkpoints').select('note').where('size', '=', SIZE).executeTakeFirstOrThrow();
    const lines = row.note.split('\n');
    const sigLine = lines.findIndex((l) => l.startsWith('\u2014 '));
    const sig = Buffer.from(lines[sigLine]!.split(' ')[2]!, 'base64');
    sig[10] = (sig[10] ?? 0) ^ 0x01;
    lines[sigLine] = `\u2014 ${ORIGIN} ${sig.toString('base64')}`;
    await f.store.transact((tx) => tx.db.updateTable('audit_checkpoints').set({ note: lines.join('\n') }).where('size', '=', SIZE).execute());
    const r = await f.verify();
    expect(r.findings).toEqual([expect.objectContaining({ kind: 'checkpoint_invalid', seq: SIZE })]);
  });

  it('a forked history: the same size signed with another root', async () => {
    f = await auditFixture(engine, SIZE);
    const forkRoot = leafHash(Buffer.from('another history'));
    const external = signNote(formatCheckpoint({ origin: ORIGIN, size: SIZE, rootHash: forkRoot, extensions: [] }), [f.key.signer]);
    const r = await f.verify(external);
    expect(r.findings.map((x) => [x.kind, x.seq])).toContainEqual(['fork', SIZE]);
    expect(r.findings[0]).toMatchObject({ kind: 'fork', seq: SIZE });
  });

  it('a whole history rewritten consistently (events, nodes, head) is caught by signed checkpoints', async () => {
    f = await auditFixture(engine, SIZE);
    const older = (await f.store.db.selectFrom('audit_checkpoints').select('note').where('size', '=', SIZE).executeTakeFirstOrThrow()).note;
    await rewriteHistory(f, 6);
    const r = await f.verify(older);
    expect(r.ok).toBe(false);
    expect(r.findings.map((x) => x.kind)).toEqual(expect.arrayContaining(['checkpoint_root_mismatch', 'fork']));
    // The stored tree itself is self-consistent, so no row-level fault is visible: only the
    // signature layer exposes the rewrite, which is why checkpoints must be kept elsewhere.
    expect(r.findings.some((x) => x.kind === 'event_modified' || x.kind === 'node_modified')).toBe(false);
  });
});

