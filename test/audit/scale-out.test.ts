/**
 * Several server processes appending to one PostgreSQL log at once must produce one linear,
 * gap-free sequence and one tree; and a process killed with SIGKILL mid-burst must lose no
 * acknowledged event. Real OS processes, not async tasks.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ENGINES, freshDatabase } from '../support/engines.js';
import { startAppendWorker } from '../support/processes.js';
import { AuditLog, verifyLog } from '../../src/audit/index.js';
import { openStore } from '../../src/storage/index.js';
import type { Store } from '../../src/storage/index.js';

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

async function verifyNoKeys(store: Store) {
  return verifyLog({ db: store.db, verifiers: [], origin: 'unused' });
}

describe('scale-out on postgres', () => {
  it('4 processes appending at once keep one gap-free sequence and one tree', async () => {
    const { config, drop } = await freshDatabase('postgres');
    const store = await openStore(config);
    cleanup = async () => {
      await store.close();
      await drop();
    };
    await store.migrate();
    const workers = Array.from({ length: 4 }, (_, i) => startAppendWorker({ database: config, count: 250, concurrency: 8, tag: `w${i}` }));
    const codes = await Promise.all(workers.map((w) => w.exited));
    expect(codes, workers.map((w) => w.stderr()).join('\n')).toEqual([0, 0, 0, 0]);
    const acked = workers.flatMap((w) => w.acks);
    expect(acked).toHaveLength(1000);
    expect(new Set(acked.map((a) => a.seq)).size).toBe(1000);
    expect(Math.max(...acked.map((a) => a.seq))).toBe(999);
    const report = await verifyNoKeys(store);
    expect(report.findings).toEqual([]);
    expect(report.treeSize).toBe(1000);
    // Interleaving really happened: the workers' events alternate in the sequence.
    const log = new AuditLog(store);
    const actors = (await log.search({ limit: 1000 })).map((e) => e.event.actor.id);
    const switches = actors.filter((a, i) => i > 0 && a !== actors[i - 1]).length;
    expect(switches).toBeGreaterThan(10);
  });
});

describe.each(ENGINES)('crash safety on %s', (engine) => {
  it('kill -9 during a burst loses no acknowledged event and a restart recovers', async () => {
    const { config, drop } = await freshDatabase(engine);
    const setup = await openStore(config);
    await setup.migrate();
    await setup.close();
    const w = startAppendWorker({ database: config, count: 1_000_000, concurrency: 64, tag: 'burst' });
    const start = Date.now();
    while (w.acks.length < 500 && Date.now() - start < 20_000) await new Promise((r) => setTimeout(r, 10));
    w.child.kill('SIGKILL');
    await w.exited;
    const acked = [...w.acks];
    expect(acked.length, w.stderr()).toBeGreaterThanOrEqual(500);

    const store = await openStore(config);
    cleanup = async () => {
      await store.close();
      await drop();
    };
    const report = await verifyNoKeys(store);
    expect(report.findings).toEqual([]);
    const log = new AuditLog(store);
    const bySeq = new Map((await log.search({ limit: 10_000 })).map((e) => [e.seq, e.event.context.requestId]));
    for (const a of acked) expect(bySeq.get(a.seq)).toBe(a.requestId);
    // The log accepts appends again after the crash, continuing the same sequence.
    const next = await log.append({ actor: { kind: 'system', id: 'test' }, action: 'test.after_crash', resource: 'x', outcome: 'allowed' });
    expect(next.seq).toBe(report.treeSize);
    expect((await verifyNoKeys(store)).ok).toBe(true);
  });
});
