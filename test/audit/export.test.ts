import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENGINES, openTestStore } from '../support/engines.js';
import type { TestStore } from '../support/engines.js';
import {
  AuditLog,
  Checkpointer,
  canonicalEvent,
  EXPORT_FORMAT,
  ed25519Signer,
  exportLog,
  formatCheckpoint,
  formatVerifierKey,
  latestCheckpoint,
  leafHash,
  parseVerifierKey,
  signNote,
  verifyExport,
} from '../../src/audit/index.js';
import type { AuditEvent, AuditEventInput, ExportFinding, NoteSigner, SignedCheckpoint } from '../../src/audit/index.js';

const ORIGIN = 'export.test/audit';

function newKey(name = ORIGIN): { signer: NoteSigner; vkey: string } {
  const { privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(createPublicKey(privateKey).export({ format: 'jwk' }).x ?? '', 'base64url');
  return { signer: ed25519Signer(name, privateKey), vkey: formatVerifierKey(name, raw) };
}

const ev = (i: number): AuditEventInput => ({
  actor: { kind: i % 2 === 0 ? 'user' : 'service', id: `actor-${i % 3}` },
  action: i % 4 === 0 ? 'pipeline.run.start' : 'audit.entries.read',
  resource: `thing/${i}`,
  outcome: i % 5 === 0 ? 'denied' : 'allowed',
  ...(i % 5 === 0 ? { reason: 'not permitted' } : {}),
  details: { i, note: 'ünïcödé ✓', nested: { n: i / 3 } },
});

type Json = Record<string, unknown>;
const parse = (line: string): Json => JSON.parse(line) as Json;
const edit = (lines: readonly string[], index: number, change: (o: Json) => void): string[] => {
  const copy = [...lines];
  const o = parse(copy[index]!);
  change(o);
  copy[index] = JSON.stringify(o);
  return copy;
};
const linesOf = (findings: readonly ExportFinding[]): number[] => [...new Set(findings.map((f) => f.line))];

async function* asAsync(lines: readonly string[]): AsyncGenerator<string> {
  for (const line of lines) {
    await Promise.resolve();
    yield line;
  }
}

describe.each(ENGINES)('audit export on %s', (engine) => {
  const key = newKey();
  const verifiers = [parseVerifierKey(key.vkey)];
  let t: TestStore;
  let log: AuditLog;
  let cp: SignedCheckpoint;
  /** Entries 0..12 against the checkpoint of size 13 (the log has 15 entries). */
  let lines: string[];

  beforeAll(async () => {
    t = await openTestStore(engine);
    log = new AuditLog(t.store);
    for (let i = 0; i < 13; i++) await log.append(ev(i));
    const checkpointer = new Checkpointer({ store: t.store, log, signer: key.signer, origin: ORIGIN, intervalMs: 100 });
    cp = await checkpointer.checkpointNow();
    // Entries after the checkpoint are not exportable against it.
    await log.append(ev(13));
    await log.append(ev(14));
    lines = [];
    await exportLog({ log, checkpoint: cp, verifierKey: key.vkey, from: 0, to: 13, write: (l) => void lines.push(l) });
  });
  afterAll(async () => {
    await t.cleanup();
  });

  it('writes a header then one entry line per sequence number, proofs against the checkpoint', async () => {
    expect(lines).toHaveLength(14);
    const header = parse(lines[0]!);
    expect(header).toEqual({
      type: EXPORT_FORMAT,
      origin: ORIGIN,
      checkpoint: cp.note,
      treeSize: 13,
      rootHash: cp.rootHash.toString('base64'),
      verifierKey: key.vkey,
      from: 0,
      to: 13,
    });
    const entry = parse(lines[4]!);
    expect(Object.keys(entry).sort()).toEqual(['event', 'inclusionProof', 'leafHash', 'seq', 'type']);
    expect(entry.seq).toBe(3);
    expect((entry.event as Json).seq).toBe(3);
    expect(entry.leafHash).toBe((await log.entry(3)).leafHash.toString('base64'));
    expect((await latestCheckpoint(t.store.db))?.size).toBe(13);
  });

  it('round-trips: the export verifies with the trusted key, from an array or a stream', async () => {
    const sync = await verifyExport(lines, verifiers);
    expect(sync).toMatchObject({ ok: true, entries: 13, treeSize: 13, from: 0, to: 13, origin: ORIGIN, verifiedBy: [ORIGIN], findings: [] });
    // A trailing newline (empty last line) is normal.
    expect((await verifyExport(asAsync([...lines, '']), verifiers, { origin: ORIGIN })).ok).toBe(true);
  });

  it('exports a sub-range with proofs still against the whole signed tree, and reports progress', async () => {
    const part: string[] = [];
    const progress: number[][] = [];
    const summary = await exportLog({
      log,
      checkpoint: cp,
      verifierKey: key.vkey,
      from: 4,
      to: 9,
      write: async (l) => {
        await Promise.resolve();
        part.push(l);
      },
      onProgress: (done, total) => progress.push([done, total]),
    });
    expect(summary).toEqual({ from: 4, to: 9, entries: 5, treeSize: 13, rootHash: cp.rootHash.toString('base64') });
    expect(progress.at(-1)).toEqual([5, 5]);
    const r = await verifyExport(part, verifiers);
    expect(r).toMatchObject({ ok: true, entries: 5, from: 4, to: 9 });
    const empty: string[] = [];
    await exportLog({ log, checkpoint: cp, verifierKey: key.vkey, from: 13, to: 13, write: (l) => void empty.push(l) });
    expect((await verifyExport(empty, verifiers)).ok).toBe(true);
  });

  it('refuses ranges the checkpoint does not cover and a checkpoint the given key did not sign', async () => {
    const write = (): void => undefined;
    await expect(exportLog({ log, checkpoint: cp, verifierKey: key.vkey, from: 0, to: 14, write })).rejects.toMatchObject({ code: 'AUDIT_INVALID_RANGE' });
    await expect(exportLog({ log, checkpoint: cp, verifierKey: key.vkey, from: 5, to: 4, write })).rejects.toMatchObject({ code: 'AUDIT_INVALID_RANGE' });
    await expect(exportLog({ log, checkpoint: cp, verifierKey: newKey().vkey, from: 0, to: 1, write })).rejects.toMatchObject({ code: 'CHECKPOINT_INVALID' });
  });

  it('detects an edited event on its line', async () => {
    // Line 6 holds entry 5.
    const r = await verifyExport(
      edit(lines, 6, (o) => {
        (o.event as Json).resource = 'thing/other';
      }),
      verifiers,
    );
    expect(r.ok).toBe(false);
    expect(r.findings).toEqual([expect.objectContaining({ line: 7, seq: 5 })]);
    expect(r.findings[0]!.message).toMatch(/modified/);

    // Also when the forger recomputes the leaf hash: the proof no longer reaches the signed root.
    const forged = edit(lines, 6, (o) => {
      const event = o.event as Json;
      event.outcome = 'allowed';
      event.reason = '';
      o.leafHash = leafHash(Buffer.from(canonicalEvent(event as unknown as AuditEvent))).toString('base64');
    });
    const r2 = await verifyExport(forged, verifiers);
    expect(r2.findings).toEqual([expect.objectContaining({ line: 7, seq: 5 })]);
    expect(r2.findings[0]!.message).toMatch(/inclusion proof/);
  });

  it('detects a dropped line, naming where the gap shows, and a truncated end', async () => {
    const dropped = lines.filter((_, i) => i !== 4); // entry 3
    const r = await verifyExport(dropped, verifiers);
    expect(r.ok).toBe(false);
    expect(r.findings).toEqual([expect.objectContaining({ line: 5, seq: 4 })]);
    expect(r.findings[0]!.message).toMatch(/entry 3 is missing/);

    const truncated = lines.slice(0, -2);
    const t2 = await verifyExport(truncated, verifiers);
    expect(t2.findings).toEqual([expect.objectContaining({ line: 13, seq: 11 })]);
    expect(t2.findings[0]!.message).toMatch(/entries 11 to 12 are missing at the end/);
  });

  it('detects a swapped pair of lines, naming both', async () => {
    const swapped = [...lines];
    [swapped[8], swapped[9]] = [swapped[9]!, swapped[8]!];
    const r = await verifyExport(swapped, verifiers);
    expect(r.ok).toBe(false);
    expect(linesOf(r.findings)).toEqual([9, 10]);
  });

  it('detects a checkpoint signed by another key (and a header that disagrees with its checkpoint)', async () => {
    const mallory = newKey();
    const body = formatCheckpoint({ origin: ORIGIN, size: cp.size, rootHash: cp.rootHash, extensions: [] });
    const resigned = edit(lines, 0, (o) => {
      o.checkpoint = signNote(body, [mallory.signer]);
      o.verifierKey = mallory.vkey; // the header's own key claim is never trusted
    });
    const r = await verifyExport(resigned, verifiers);
    expect(r.ok).toBe(false);
    expect(r.findings).toEqual([expect.objectContaining({ line: 1, seq: null })]);
    expect(r.findings[0]!.message).toMatch(/does not verify/);

    // The right export checked against the wrong trusted key fails the same way.
    expect(linesOf((await verifyExport(lines, [parseVerifierKey(mallory.vkey)])).findings)).toEqual([1]);

    const lying = edit(lines, 0, (o) => {
      o.treeSize = 12;
    });
    expect(linesOf((await verifyExport(lying, verifiers)).findings)).toContain(1);
  });

  it('detects a modified proof hash on its line', async () => {
    const r = await verifyExport(
      edit(lines, 9, (o) => {
        const proof = o.inclusionProof as string[];
        proof[0] = Buffer.alloc(32, 7).toString('base64');
      }),
      verifiers,
    );
    expect(r.ok).toBe(false);
    expect(r.findings).toEqual([expect.objectContaining({ line: 10, seq: 8 })]);
    expect(r.findings[0]!.message).toMatch(/inclusion proof/);
  });

  it('reports garbage lines and a missing header without throwing', async () => {
    const garbage = [...lines];
    garbage[3] = '{not json';
    expect(linesOf((await verifyExport(garbage, verifiers)).findings)).toContain(4);
    expect((await verifyExport(lines.slice(1), verifiers)).findings[0]).toMatchObject({ line: 1 });
    expect((await verifyExport([], verifiers)).ok).toBe(false);
  });

  it('refuses to export from a database whose entry was edited', async () => {
    await t.raw(`update audit_events set event = replace(event, 'thing/2', 'thing/X') where seq = 2`);
    await expect(exportLog({ log, checkpoint: cp, verifierKey: key.vkey, from: 0, to: 13, write: () => undefined })).rejects.toMatchObject({
      code: 'CHECKPOINT_INCONSISTENT',
    });
  });
});
