/**
 * The log must never sign two inconsistent checkpoints. The attacker can rewrite the
 * database; the signer must refuse to put its key to the rewritten history.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ENGINES, openTestStore } from '../support/engines.js';
import { auditFixture, ORIGIN, rewriteHistory, sampleEvent } from '../support/audit-fixture.js';
import type { AuditFixture } from '../support/audit-fixture.js';
import { AuditLog, Checkpointer, loadOrCreateCheckpointKey, openCheckpoint, parseVerifierKey, verifyConsistency } from '../../src/audit/index.js';
import { openStore } from '../../src/storage/index.js';

describe.each(ENGINES)('checkpointer on %s', (engine) => {
  let f: AuditFixture | undefined;
  afterEach(async () => {
    await f?.cleanup();
    f = undefined;
  });

  it('signs a C2SP checkpoint of the current head that opens with the published key', async () => {
    f = await auditFixture(engine, 5);
    const cp = await f.checkpointer.checkpointNow();
    const opened = openCheckpoint(cp.note, [parseVerifierKey(f.key.verifierKey)], ORIGIN);
    const head = await f.log.head();
    expect(opened.checkpoint.size).toBe(5);
    expect(opened.checkpoint.rootHash.equals(head.rootHash)).toBe(true);
    expect(cp.note).toMatch(/^airlock\.test\/audit\n5\n[A-Za-z0-9+/]{43}=\n\n\u2014 airlock\.test\/audit [A-Za-z0-9+/]+=*\n$/);
    // Nothing new appended: the same checkpoint, not a second signature.
    const again = await f.checkpointer.checkpointNow();
    expect(again.note).toBe(cp.note);
    expect(await f.store.db.selectFrom('audit_checkpoints').select('size').execute()).toHaveLength(1);
  });

  it('issues a checkpoint within 1 s of a commit on its cadence', async () => {
    f = await auditFixture(engine, 0);
    f.checkpointer.start();
    const before = Date.now();
    await f.log.append(sampleEvent(1));
    let latest = await f.checkpointer.latest();
    while ((latest?.size ?? 0) < 1 && Date.now() - before < 2000) {
      await new Promise((r) => setTimeout(r, 20));
      latest = await f.checkpointer.latest();
    }
    expect(latest?.size).toBe(1);
    expect(Date.now() - before).toBeLessThan(1000);
    await f.checkpointer.stop();
  });

  it('refuses to sign after the history was rewritten consistently', async () => {
    f = await auditFixture(engine, 12);
    await rewriteHistory(f, 4);
    await f.log.append(sampleEvent(99)).catch(() => undefined);
    await expect(f.checkpointer.checkpointNow()).rejects.toMatchObject({ code: 'CHECKPOINT_INCONSISTENT' });
    expect(f.checkpointer.lastError?.code).toBe('CHECKPOINT_INCONSISTENT');
    expect((await f.store.db.selectFrom('audit_checkpoints').select('size').execute()).map((r) => r.size)).toEqual([12]);
  });

  it('still refuses when the attacker also deleted the stored checkpoints (local record)', async () => {
    f = await auditFixture(engine, 12);
    await rewriteHistory(f, 4);
    await f.raw('delete from audit_checkpoints');
    await expect(f.checkpointer.checkpointNow()).rejects.toMatchObject({ code: 'CHECKPOINT_INCONSISTENT' });
    expect(await f.store.db.selectFrom('audit_checkpoints').select('size').execute()).toEqual([]);
  });

  it('refuses to sign a truncated log', async () => {
    f = await auditFixture(engine, 12);
    const root8 = await f.log.rootAt(8);
    await f.raw('delete from audit_events where seq >= 8');
    await f.store.transact((tx) => tx.db.updateTable('audit_head').set({ size: 8, root: root8 }).where('id', '=', 1).execute());
    await expect(f.checkpointer.checkpointNow()).rejects.toMatchObject({ code: 'CHECKPOINT_INCONSISTENT' });
  });

  it('refuses when the head does not match the stored tree', async () => {
    f = await auditFixture(engine, 6);
    await f.log.append(sampleEvent(7));
    await f.raw('update audit_nodes set hash = (select hash from audit_nodes where level = 0 and idx = 0) where level = 0 and idx = 6');
    await expect(f.checkpointer.checkpointNow()).rejects.toMatchObject({ code: 'CHECKPOINT_INCONSISTENT' });
  });

  it('accepts a fresh local state file (new replica) as long as the log extends the published checkpoint', async () => {
    f = await auditFixture(engine, 4);
    rmSync(join(f.home, 'state'), { recursive: true, force: true });
    await f.log.append(sampleEvent(5));
    await expect(f.checkpointer.checkpointNow()).resolves.toMatchObject({ size: 5 });
  });
});

describe('checkpoints from several replicas on postgres stay mutually consistent', () => {
  it('never signs two inconsistent checkpoints while two replicas append and sign concurrently', async () => {
    const t = await openTestStore('postgres');
    const second = await openStore(t.config);
    try {
      const key = await loadOrCreateCheckpointKey(t.home, ORIGIN);
      const replicas = [t.store, second].map((store, i) => {
        const log = new AuditLog(store);
        const cp = new Checkpointer({ store, log, signer: key.signer, origin: ORIGIN, intervalMs: 20, statePath: join(t.home, `state-${i}`, 'last.json') });
        return { log, cp };
      });
      // Each replica appends in its own sequence and signs every few appends, while the other does the same.
      await Promise.all(
        replicas.map(async ({ log, cp }, r) => {
          for (let i = 0; i < 60; i++) {
            await Promise.all([log.append(sampleEvent(r * 1000 + i)), log.append(sampleEvent(r * 1000 + i + 500))]);
            if (i % 6 === 0) await cp.checkpointNow();
          }
        }),
      );
      await Promise.all(replicas.map(({ cp }) => cp.checkpointNow()));
      const rows = await t.store.db.selectFrom('audit_checkpoints').select(['size', 'root', 'note']).orderBy('size').execute();
      expect(rows.length).toBeGreaterThan(2);
      expect(rows.at(-1)?.size).toBe(240);
      const verifier = parseVerifierKey(key.verifierKey);
      const log = replicas[0]!.log;
      for (let i = 0; i < rows.length; i++) {
        const a = rows[i]!;
        openCheckpoint(a.note, [verifier], ORIGIN);
        for (const b of rows.slice(i + 1)) {
          const proof = await log.consistencyProof(a.size, b.size);
          expect(() => verifyConsistency(a.size, b.size, a.root, b.root, proof.proof)).not.toThrow();
        }
      }
    } finally {
      await second.close();
      await t.cleanup();
    }
  });
});
