/**
 * Storage faults: the action fails with a clear, coded error; nothing acknowledged is lost;
 * once the fault clears, appends resume and the log still verifies.
 */
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { openTestStore, PG_URL } from '../support/engines.js';
import type { TestStore } from '../support/engines.js';
import { sampleEvent } from '../support/audit-fixture.js';
import { AuditLog, verifyLog } from '../../src/audit/index.js';
import { openStore } from '../../src/storage/index.js';

let t: TestStore | undefined;
afterEach(async () => {
  await t?.cleanup();
  t = undefined;
});

const verify = (s: TestStore) => verifyLog({ db: s.store.db, verifiers: [], origin: 'unused' });

describe('faults on sqlite', () => {
  it('disk full: the append fails with STORAGE_FAILED naming the cause, and recovers', async () => {
    t = await openTestStore('sqlite');
    const log = new AuditLog(t.store);
    for (let i = 0; i < 5; i++) await log.append(sampleEvent(i));
    const pages = (await t.raw('pragma page_count')) as { page_count: number }[];
    // max_page_count is SQLite's own quota: past it, writes fail exactly as on a full disk.
    await t.raw(`pragma max_page_count = ${pages[0]?.page_count ?? 1}`);
    const big = { ...sampleEvent(9), details: { blob: 'x'.repeat(15_000) } };
    const err = (await log.append(big).catch((e: unknown) => e)) as { code: string; message: string };
    expect(err.code).toBe('STORAGE_FAILED');
    expect(err.message).toMatch(/SQLITE_FULL.*disk is full/);
    expect((await log.head()).size).toBe(5);
    await t.raw('pragma max_page_count = 1073741823');
    const next = await log.append(sampleEvent(5));
    expect(next.seq).toBe(5);
    expect((await verify(t)).findings).toEqual([]);
  });
});

describe('faults on postgres', () => {
  it('an unreachable server: STORAGE_UNAVAILABLE, and the message does not echo the URL', async () => {
    const store = await openStore({ kind: 'postgres', url: 'postgres://airlock:s3cret-pw@127.0.0.1:1/test', schema: undefined });
    try {
      const err = (await new AuditLog(store).append(sampleEvent(0)).catch((e: unknown) => e)) as { code: string; message: string };
      expect(err.code).toBe('STORAGE_UNAVAILABLE');
      expect(err.message).not.toContain('s3cret-pw');
      await expect(store.ping()).rejects.toMatchObject({ code: 'STORAGE_UNAVAILABLE' });
    } finally {
      await store.close();
    }
  });

  it('connections killed mid-flight: in-flight appends fail cleanly, none is half-written, and appends resume', async () => {
    const applicationName = `airlock-fault-${process.pid}`;
    t = await openTestStore('postgres', { applicationName });
    const log = new AuditLog(t.store);
    for (let i = 0; i < 10; i++) await log.append(sampleEvent(i));
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    try {
      // Settle handlers attach at once: these rejections are expected, not unhandled.
      const settled = Promise.allSettled(Array.from({ length: 200 }, (_, i) => log.append(sampleEvent(100 + i))));
      // Terminate every backend serving this test's schema while the burst is in flight.
      await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1', [applicationName]);
      const results = await settled;
      const ok = results.filter((r) => r.status === 'fulfilled').length;
      for (const r of results) {
        if (r.status === 'rejected') expect(String((r.reason as { code?: string }).code) + ' ' + String((r.reason as Error).stack)).toMatch(/^STORAGE_(UNAVAILABLE|FAILED) /);
      }
      // Whatever was acknowledged is there, and only that.
      const after = await log.append(sampleEvent(999));
      expect(after.seq).toBe(10 + ok);
      const report = await verify(t);
      expect(report.findings).toEqual([]);
      expect(report.treeSize).toBe(11 + ok);
    } finally {
      await admin.end();
    }
  });
});
