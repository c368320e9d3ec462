/** A populated, checkpointed log on a test store, for verification and tamper tests. */
import { join } from 'node:path';
import { sql } from 'kysely';
import { AuditLog, Checkpointer, MerkleBuilder, leafHash, loadOrCreateCheckpointKey, parseVerifierKey, verifyLog } from '../../src/audit/index.js';
import type { AuditEventInput, CheckpointKey, VerifyReport } from '../../src/audit/index.js';
import type { Engine } from '../../src/storage/index.js';
import { openTestStore } from './engines.js';
import type { TestStore } from './engines.js';

export const ORIGIN = 'airlock.test/audit';

/** The i-th sample event: alternating actors, a few denials. */
export function sampleEvent(i: number): AuditEventInput {
  return {
    actor: { kind: 'user', id: i % 2 === 0 ? 'alice' : 'bob' },
    action: 'pipeline.run.start',
    resource: `pipelines/p${i}`,
    outcome: i % 7 === 3 ? 'denied' : 'allowed',
    ...(i % 7 === 3 ? { reason: 'policy forbids' } : {}),
    context: { sourceAddress: '10.0.0.1', requestId: `req-${i}` },
    details: { n: i },
  };
}

export interface AuditFixture extends TestStore {
  readonly log: AuditLog;
  readonly key: CheckpointKey;
  readonly checkpointer: Checkpointer;
  verify(externalCheckpoint?: string): Promise<VerifyReport>;
}

/** `size` events appended one by one, then a signed checkpoint covering them all. */
export async function auditFixture(engine: Engine, size: number): Promise<AuditFixture> {
  const t = await openTestStore(engine);
  const log = new AuditLog(t.store);
  for (let i = 0; i < size; i++) await log.append(sampleEvent(i));
  const key = await loadOrCreateCheckpointKey(t.home, ORIGIN);
  const checkpointer = new Checkpointer({
    store: t.store,
    log,
    signer: key.signer,
    origin: ORIGIN,
    intervalMs: 50,
    statePath: join(t.home, 'state', 'last-checkpoint.json'),
  });
  if (size > 0) await checkpointer.checkpointNow();
  return {
    ...t,
    log,
    key,
    checkpointer,
    verify: (externalCheckpoint) =>
      verifyLog({ db: t.store.db, verifiers: [parseVerifierKey(key.verifierKey)], origin: ORIGIN, externalCheckpoint }),
  };
}

/** Rewrite entry `seq` and recompute every leaf, node and the head, as a thorough attacker would. */
export async function rewriteHistory(f: AuditFixture, seq: number): Promise<void> {
  await f.raw(`update audit_events set event = replace(event, '"alice"', '"mallory"'), actor_id = 'mallory' where seq = ${seq}`);
  const rows = await f.store.db.selectFrom('audit_events').select(['seq', 'event']).orderBy('seq').execute();
  const b = new MerkleBuilder();
  const nodes: { level: number; idx: number; hash: Buffer }[] = [];
  for (const r of rows) {
    const leaf = leafHash(Buffer.from(r.event));
    nodes.push({ level: 0, idx: r.seq, hash: leaf });
    b.append(leaf, (level, index, hash) => nodes.push({ level, idx: index, hash }));
  }
  await f.store.transact(async (tx) => {
    await sql`delete from audit_nodes`.execute(tx.db);
    await tx.db.insertInto('audit_nodes').values(nodes).execute();
    await tx.db.updateTable('audit_head').set({ root: b.root() }).where('id', '=', 1).execute();
  });
}

