/**
 * The operator's and the auditor's journey through the real CLI on one engine: a server run,
 * verification, proofs, search, export, and detection of a tampered database. Steps share one
 * home and run in order; independent commands inside a step run in parallel.
 */
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatVerifierKey } from '../../src/audit/index.js';
import type { Engine } from '../../src/storage/index.js';
import { PG_URL } from '../support/engines.js';
import type { CliEnv } from './helpers.js';
import { cliEnv, finished, json, requireBuilt, run, start, startServer } from './helpers.js';

const VKEY_RE = /^[^+\s]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$/;

interface Report {
  ok: boolean;
  treeSize: number;
  unsignedTail: number;
  firstBadSeq: number | null;
  latestCheckpoint: { size: number; rootHash: string } | null;
  findings: { kind: string; seq: number | null; message: string }[];
}
interface Entry {
  seq: number;
  leafHash: string;
  event: { seq: number; action: string; actor: { kind: string; id: string }; outcome: string; resource: string; time: string };
}

export function defineLifecycleSuite(engine: Engine): void {
  describe(`airlock CLI on ${engine}`, () => {
    let ctx: CliEnv;
    let env: Record<string, string>;
    let vkey: string;
    const file = (name: string): string => join(ctx.home, name);
    const airlock = (...args: string[]) => run(args, { env });
    const treeSize = async (): Promise<number> => json<Report>(await airlock('audit', 'verify', '--json')).treeSize;

    beforeAll(async () => {
      requireBuilt();
      ctx = await cliEnv(engine);
      env = { ...ctx.env };
    });
    afterAll(async () => {
      await ctx.drop();
    });

    it('reports pending migrations and refuses reads before the database exists, creating nothing', async () => {
      const [status, tail] = await Promise.all([airlock('db', 'status', '--json'), airlock('audit', 'tail')]);
      expect(status.code).toBe(0);
      expect(json(status)).toEqual({
        migrations: [
          { name: '0001_audit_log', executedAt: null },
          { name: '0002_identity', executedAt: null },
          { name: '0003_runs', executedAt: null },
          { name: '0004_vault', executedAt: null },
          { name: '0005_vault_sealed_keys', executedAt: null },
          { name: '0006_artifacts_provenance', executedAt: null },
          { name: '0007_delivery', executedAt: null },
        ],
        pending: 7,
      });
      expect(tail.code).toBe(1);
      expect(tail.stderr).toContain('airlock db migrate');
      if (engine === 'sqlite') expect(existsSync(file('airlock.db'))).toBe(false);
    });

    it('runs the server: listening line, /healthz, SIGTERM exits 0 after a graceful shutdown', async () => {
      const server = await startServer(env);
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const health = await fetch(`${server.url}/healthz`);
      expect(health.status).toBe(200);
      const r = await server.stop('SIGTERM');
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`airlock listening on ${server.url}\n`);
      // The same line goes to the structured log on stderr.
      expect(r.stderr).toContain(`"msg":"airlock listening on ${server.url}"`);
    });

    it('verifies afterwards: ok, and the final checkpoint covers every entry', async () => {
      const [verify, human, status, key, keyJson, tail, checkpoint] = await Promise.all([
        airlock('audit', 'verify', '--json'),
        airlock('audit', 'verify'),
        airlock('db', 'status', '--json'),
        airlock('audit', 'key'),
        airlock('audit', 'key', '--json'),
        airlock('audit', 'tail', '-n', '2', '--json'),
        airlock('audit', 'checkpoint'),
      ]);
      expect(verify.code).toBe(0);
      const report = json<Report>(verify);
      expect(report).toMatchObject({ ok: true, findings: [], unsignedTail: 0 });
      expect(report.treeSize).toBeGreaterThanOrEqual(2);
      expect(report.latestCheckpoint?.size).toBe(report.treeSize);
      expect(human.code).toBe(0);
      expect(human.stdout).toMatch(/^OK: \d+ entries verified/);
      expect(human.stdout).toContain('covers every entry');

      expect(json(status)).toMatchObject({ pending: 0 });

      expect(key.code).toBe(0);
      vkey = key.stdout.trim();
      expect(vkey).toMatch(VKEY_RE);
      expect(json(keyJson)).toMatchObject({ verifierKey: vkey, name: 'airlock.local/audit', algorithm: 'ed25519' });

      // JSON Lines, oldest first; the server's own lifecycle is on the record.
      const lines = tail.stdout.trim().split('\n').map((l) => JSON.parse(l) as Entry);
      expect(lines).toHaveLength(2);
      expect(lines[1]!.event.action).toBe('system.server.stop');
      expect(lines[1]!.event.actor).toEqual({ kind: 'system', id: 'server' });
      expect(lines[1]!.seq).toBe(report.treeSize - 1);

      expect(checkpoint.code).toBe(0);
      expect(checkpoint.stdout).toMatch(new RegExp(`^airlock\\.local/audit\\n${report.treeSize}\\n[A-Za-z0-9+/]+=*\\n\\n\u2014 airlock\\.local/audit \\S+\\n$`));
      writeFileSync(file('cp.note'), checkpoint.stdout);
    });

    it('migrates (recording db.migrate) and searches with filters', async () => {
      const migrate = await airlock('db', 'migrate', '--json');
      expect(migrate.code).toBe(0);
      const migrated = json<{ applied: string[]; pending: number; auditSeq: number }>(migrate);
      expect(migrated).toMatchObject({ applied: [], pending: 0 });

      const [server, prefix, migrations, denied, future, limited, byId, window] = await Promise.all([
        airlock('audit', 'search', '--actor', 'system:server', '--json'),
        airlock('audit', 'search', '--action', 'system.server.*', '--json'),
        airlock('audit', 'search', '--action', 'db.migrate', '--resource', 'database', '--outcome', 'allowed', '--json'),
        airlock('audit', 'search', '--outcome', 'denied', '--json'),
        airlock('audit', 'search', '--since', '2999-01-01', '--json'),
        airlock('audit', 'search', '--limit', '1', '--json'),
        airlock('audit', 'search', '--actor', 'server'),
        airlock('audit', 'search', '--since', '2000-01-01T00:00:00Z', '--until', '2999-01-01T00:00:00+02:00', '--json'),
      ]);
      const entries = (r: typeof server): Entry[] => {
        expect(r.code).toBe(0);
        const doc = json<{ count: number; entries: Entry[] }>(r);
        expect(doc.count).toBe(doc.entries.length);
        return doc.entries;
      };
      expect(entries(server).map((e) => e.event.action)).toEqual(['system.server.start', 'system.server.stop']);
      expect(entries(prefix).map((e) => e.event.action)).toEqual(['system.server.start', 'system.server.stop']);
      const m = entries(migrations);
      expect(m).toHaveLength(1);
      expect(m[0]!.seq).toBe(migrated.auditSeq);
      expect(m[0]!.event.actor.kind).toBe('system');
      expect(entries(denied)).toEqual([]);
      expect(entries(future)).toEqual([]);
      expect(entries(limited).map((e) => e.seq)).toEqual([0]);
      expect(byId.code).toBe(0);
      expect(byId.stdout.trim().split('\n')).toHaveLength(2);
      expect(entries(window).length).toBe(migrated.auditSeq + 1);
    });

    it('pipes an inclusion proof into offline verification against the signed checkpoint', async () => {
      // The default tree size is the latest checkpoint's, although db.migrate is not covered yet.
      const proof = await airlock('audit', 'proof', 'inclusion', '--seq', '1', '--json');
      expect(proof.code).toBe(0);
      const doc = json<{ type: string; leafIndex: number; treeSize: number; rootHash: string }>(proof);
      const note = readFileSync(file('cp.note'), 'utf8');
      expect(doc).toMatchObject({ type: 'inclusion', leafIndex: 1, treeSize: Number(note.split('\n')[1]) });

      const tampered = JSON.stringify({ ...doc, leafIndex: 0 });
      const consistency = await airlock('audit', 'proof', 'consistency', '--from', '1', '--json');
      const otherKey = formatVerifierKey(
        'airlock.local/audit',
        Buffer.from(generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' }).x ?? '', 'base64url'),
      );
      const [viaStdin, viaHomeKey, asJson, forged, consistent, untrusted, outOfRange] = await Promise.all([
        run(['audit', 'proof', 'verify', '-', '--checkpoint', file('cp.note'), '--key', vkey], { env, input: proof.stdout }),
        run(['audit', 'proof', 'verify', '-', '--checkpoint', file('cp.note')], { env, input: proof.stdout }),
        run(['audit', 'proof', 'verify', '-', '--json'], { env, input: proof.stdout }),
        run(['audit', 'proof', 'verify', '-', '--json'], { env, input: tampered }),
        run(['audit', 'proof', 'verify', '-', '--checkpoint', file('cp.note'), '--key', vkey, '--json'], { env, input: consistency.stdout }),
        run(['audit', 'proof', 'verify', '-', '--checkpoint', file('cp.note'), '--key', otherKey], { env, input: proof.stdout }),
        airlock('audit', 'proof', 'inclusion', '--seq', '999'),
      ]);
      expect(viaStdin.code).toBe(0);
      expect(viaStdin.stdout).toMatch(/^OK: the proof of inclusion of entry 1 /);
      expect(viaStdin.stdout).toContain('matches the checkpoint');
      expect(viaHomeKey.code).toBe(0);
      expect(asJson.code).toBe(0);
      expect(json(asJson)).toMatchObject({ ok: true, type: 'inclusion', leafIndex: 1, error: null });
      expect(forged.code).toBe(1);
      expect(json(forged)).toMatchObject({ ok: false, error: { code: 'AUDIT_PROOF_INVALID' } });
      expect(consistency.code).toBe(0);
      expect(consistent.code).toBe(0);
      expect(json(consistent)).toMatchObject({ ok: true, type: 'consistency', size1: 1 });
      expect(untrusted.code).toBe(1);
      expect(untrusted.stdout).toMatch(/^FAIL: .*\(CHECKPOINT_INVALID\)$/m);
      expect(outOfRange.code).toBe(1);
      expect(outOfRange.stderr).toMatch(/^airlock: --seq 999 is not in the tree .*\(AUDIT_INVALID_RANGE\)$/m);
    });

    it('exports with proofs (signing a covering checkpoint) and verifies the export offline', async () => {
      const size = await treeSize();
      const exported = await airlock('audit', 'export', '-o', file('export.jsonl'), '--json');
      expect(exported.code).toBe(0);
      // Signing is recorded (audit.checkpoint.sign) before it happens, so the checkpoint covers one more entry.
      expect(exported.stderr).toContain(`signed a checkpoint of size ${size + 1}`);
      expect(json(exported)).toMatchObject({ file: file('export.jsonl'), from: 0, to: size, entries: size, treeSize: size + 1 });
      expect(await treeSize()).toBe(size + 1);
      const text = readFileSync(file('export.jsonl'), 'utf8');
      const lines = text.trimEnd().split('\n');
      expect(lines).toHaveLength(size + 1);

      const edited = [...lines];
      // Whatever entry 0 is, change one letter of its action.
      edited[1] = edited[1]!.replace(/"action":"(\w)/, (_m, c: string) => `"action":"${c === 'x' ? 'y' : 'x'}`);
      writeFileSync(file('edited.jsonl'), `${edited.join('\n')}\n`);

      const [ok, okHuman, toStdout, bad] = await Promise.all([
        airlock('audit', 'verify-export', file('export.jsonl'), '--key', vkey, '--json'),
        airlock('audit', 'verify-export', file('export.jsonl')),
        airlock('audit', 'export', '--from', '1', '--to', '3'),
        airlock('audit', 'verify-export', file('edited.jsonl'), '--key', vkey),
      ]);
      expect(ok.code).toBe(0);
      expect(json(ok)).toMatchObject({ ok: true, entries: size, treeSize: size + 1, findings: [] });
      expect(okHuman.code).toBe(0);
      expect(okHuman.stdout).toMatch(/^OK: \d+ entries/);
      expect(toStdout.code).toBe(0);
      const piped = await run(['audit', 'verify-export', '-', '--key', vkey, '--json'], { env, input: toStdout.stdout });
      expect(piped.code).toBe(0);
      expect(json(piped)).toMatchObject({ ok: true, entries: 2, from: 1, to: 3 });
      expect(bad.code).toBe(1);
      expect(bad.stdout).toMatch(/^FAIL: line 2 \(seq 0\): entry 0 was modified/);
    });

    it('signs a checkpoint on demand, recording audit.checkpoint.sign under it; reads append nothing', async () => {
      const before = await treeSize();
      const signed = await airlock('audit', 'checkpoint', '--sign', '--json');
      expect(signed.code).toBe(0);
      const cp = json<{ size: number; rootHash: string; note: string; createdAt: string }>(signed);
      expect(cp.size).toBe(before + 1);
      expect(cp.note.split('\n')[1]).toBe(String(cp.size));
      const [latest, search, verify] = await Promise.all([
        airlock('audit', 'checkpoint', '--json'),
        airlock('audit', 'search', '--action', 'audit.checkpoint.sign', '--json'),
        airlock('audit', 'verify', '--json'),
      ]);
      expect(json(latest)).toEqual(cp);
      // Two signings are on record: the export's (earlier test) and this one, as the newest.
      const signings = json<{ entries: Entry[] }>(search).entries.map((e) => e.seq);
      expect(signings).toHaveLength(2);
      expect(signings.at(-1)).toBe(before);
      expect(json<Report>(verify)).toMatchObject({ ok: true, treeSize: cp.size, unsignedTail: 0 });
      // Everything above except --sign was a read: the log did not grow.
      expect(await treeSize()).toBe(cp.size);
    });

    it('follows the log with tail -f until SIGINT', async () => {
      const child = start(['audit', 'tail', '-f', '-n', '0', '--json'], { env });
      child.stdin.end();
      let out = '';
      child.stdout.on('data', (d: Buffer | string) => (out += d.toString()));
      const done = finished(child);
      // Let it take its first poll position, then append something for it to see.
      await new Promise((r) => setTimeout(r, 800));
      const migrate = await airlock('db', 'migrate', '--json');
      const seq = json<{ auditSeq: number }>(migrate).auditSeq;
      for (let i = 0; i < 50 && !out.includes('"db.migrate"'); i++) await new Promise((r) => setTimeout(r, 100));
      child.kill('SIGINT');
      const r = await done;
      expect(r.code).toBe(0);
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Entry);
      expect(lines.map((e) => e.seq)).toEqual([seq]);
      expect(lines[0]!.event.action).toBe('db.migrate');
    });

    it('fails verification (exit 1) after the database is tampered with, naming event_modified at seq 0', async () => {
      const before = await treeSize();
      const update = `UPDATE audit_events SET event = replace(event,'{"action":"','{"action":"x') WHERE seq = 0`;
      if (engine === 'sqlite') {
        const db = new SqliteDatabase(file('airlock.db'));
        try {
          expect(db.prepare(update).run().changes).toBe(1);
        } finally {
          db.close();
        }
      } else {
        const client = new pg.Client({ connectionString: PG_URL });
        await client.connect();
        try {
          await client.query(`SET search_path TO ${ctx.schema ?? 'public'}`);
          expect((await client.query(update)).rowCount).toBe(1);
        } finally {
          await client.end();
        }
      }
      const [human, machine, withAnchor] = await Promise.all([
        airlock('audit', 'verify'),
        airlock('audit', 'verify', '--json', '--progress'),
        airlock('audit', 'verify', '--key', vkey, '--checkpoint', file('cp.note')),
      ]);
      expect(human.code).toBe(1);
      expect(human.stdout).toMatch(/^FAIL: event_modified at seq 0: entry 0 was modified/);
      expect(machine.code).toBe(1);
      const report = json<Report>(machine);
      expect(report.ok).toBe(false);
      expect(report.firstBadSeq).toBe(0);
      expect(report.findings).toContainEqual(expect.objectContaining({ kind: 'event_modified', seq: 0 }));
      expect(machine.stderr).toContain('FAIL: event_modified at seq 0');
      expect(machine.stderr).toMatch(/verifying audit log: \d+\/\d+/);
      expect(withAnchor.code).toBe(1);
      // Verification is read-only, even on a damaged log.
      expect(report.treeSize).toBe(before);
      expect(await treeSize()).toBe(before);
    });
  });
}
