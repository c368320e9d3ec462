/**
 * `airlock demo` as a new user runs it (a real process on embedded SQLite, twice in one home):
 * every step of the story happens, in order, and the second run works as the first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliEnv } from './helpers.js';
import { cliEnv, finished, requireBuilt, run, start } from './helpers.js';

describe('airlock demo (sqlite)', () => {
  let ctx: CliEnv;

  beforeAll(async () => {
    requireBuilt();
    ctx = await cliEnv('sqlite');
  });

  afterAll(async () => {
    await ctx.drop();
  });

  it('walks a change from commit to production, refusing alice her own approval, and is re-runnable', async () => {
    for (const round of [1, 2]) {
      const r = await run(['demo', '--listen', '127.0.0.1:0', '--exit'], { env: ctx.env, timeoutMs: 90_000 });
      expect(r.code, `round ${round}\n${r.stdout}\n${r.stderr.slice(-2000)}`).toBe(0);
      const out = r.stdout;
      const order = ['[1/7]', 'run sample-service#', '[2/7]', 'staging: succeeded', '[3/7]', '[4/7]', 'refused: ', 'does not count: alice requested this deployment', '[5/7]', 'production request: approved', '[6/7]', 'production: succeeded', '[7/7]', 'ok   signature', 'ok   audit event', 'ok   inclusion', 'airlock audit verify: OK'];
      let at = 0;
      for (const marker of order) {
        const i = out.indexOf(marker, at);
        expect(i, `round ${round}: "${marker}" after position ${at}\n${out}`).toBeGreaterThanOrEqual(0);
        at = i;
      }
      expect(out).toMatch(/approved by bob \("reviewed: same digests as staging, tests passed"\); succeeded/);
      expect(out).toContain(`secrets: released to the service (approvals): SERVICE_TOKEN v1 (the value is in the service's environment only)`);
      expect(out).not.toContain('UNEXPECTED');
    }
  }, 200_000);

  it('without --exit, leaves the server running at the URL it prints, and stops cleanly on Ctrl-C', async () => {
    // A home of its own: a first run signs in at once (a re-run waits for the next TOTP period).
    const fresh = await cliEnv('sqlite');
    try {
      const child = start(['demo', '--listen', '127.0.0.1:0'], { env: fresh.env });
      const done = finished(child, 90_000);
      let seen = '';
      const url = await new Promise<string>((ok, fail) => {
        child.stdout.on('data', (d: Buffer | string) => {
          seen += d.toString();
          const m = /The server keeps running at (http:\/\/127\.0\.0\.1:\d+)\./.exec(seen);
          if (m !== null && seen.includes('Ctrl-C to stop.')) ok(m[1]!);
        });
        child.once('exit', (code) => fail(new Error(`the demo exited (${String(code)}) instead of serving:\n${seen}`)));
      });
      // The printed URL answers while the demo waits; Ctrl-C stops the server and the deployed services.
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      expect(seen).toContain('production: succeeded');
      child.kill('SIGINT');
      const r = await done;
      expect(r.code, r.stderr.slice(-2000)).toBe(0);
      await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    } finally {
      await fresh.drop();
    }
  }, 120_000);
});
