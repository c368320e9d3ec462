/**
 * The scheduled secrets check as the server runs it: AIRLOCK_SECRET_UNUSED_DAYS sets how long a
 * secret may go unread (default 90, 1-3650, a bad value names the setting), and starting the
 * runner with the reaper runs the check at once, recording one event per finding.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors/index.js';
import { TestClock, openTestApp } from '../server/support.js';

const dir = mkdtempSync(join(tmpdir(), 'airlock-hygiene-config-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('the scheduled secrets check', () => {
  it('reads AIRLOCK_SECRET_UNUSED_DAYS with a default of 90 and refuses a value out of range, naming it', () => {
    const load = (env: Record<string, string>) => loadConfig({ flags: { home: join(dir, 'home') }, env, cwd: dir });
    expect(load({}).secretUnusedDays).toBe(90);
    expect(load({ AIRLOCK_SECRET_UNUSED_DAYS: '30' }).secretUnusedDays).toBe(30);
    for (const bad of ['0', '3651', 'soon']) {
      expect(() => load({ AIRLOCK_SECRET_UNUSED_DAYS: bad })).toThrow(ConfigError);
      expect(() => load({ AIRLOCK_SECRET_UNUSED_DAYS: bad })).toThrow(/AIRLOCK_SECRET_UNUSED_DAYS/);
    }
  });

  it('runs when the runner starts, with the configured number of days, one audit event per finding', async () => {
    const clock = new TestClock();
    const t = await openTestApp('sqlite', { clock, config: { secretUnusedDays: 7 } });
    try {
      await t.app.secrets.set({ kind: 'system', id: 'test' }, { name: 'STALE_TOKEN', scope: {}, value: Buffer.from('stale-token-value-0001') });
      clock.advance(8 * 86_400_000);
      await t.app.startRunner({ labels: ['embedded'], concurrency: 0, reap: true });
      let found: Awaited<ReturnType<typeof t.app.audit.search>> = [];
      for (let i = 0; i < 50 && found.length === 0; i++) {
        found = await t.app.audit.search({ action: 'secrets.hygiene', limit: 10 });
        if (found.length === 0) await new Promise((r) => setTimeout(r, 50));
      }
      expect(found.map((e) => [e.event.outcome, e.event.details.name, e.event.details.finding])).toEqual([['failed', 'STALE_TOKEN', 'unused']]);
      expect(found[0]?.event.reason).toMatch(/^unused: not read since it was created/);
    } finally {
      await t.cleanup();
    }
  });
});
