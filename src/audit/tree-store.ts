/**
 * Reads of the stored tree shared by the log, the checkpointer and the verifier: the head
 * row (locked when appending or signing) and stored nodes resolved through proof plans.
 */
import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import { AirlockError } from '../errors/index.js';
import type { Database, Engine } from '../storage/index.js';
import type { NodeId, ProofPlan } from './merkle.js';
import { nodeKey, planNodes, resolvePlan } from './merkle.js';

/** The committed tree head, plus the time of its newest entry. */
export interface HeadRow {
  readonly size: number;
  readonly root: Buffer;
  readonly updated_at: string;
}

/**
 * Read the head. Given `lock` on PostgreSQL it is `SELECT ... FOR UPDATE`: the explicit
 * serialisation point of every appender and signer on every replica, held until the
 * transaction ends (SQLite's BEGIN IMMEDIATE already serialises writers).
 */
export async function readHead(db: Kysely<Database>, lock?: { readonly engine: Engine }): Promise<HeadRow> {
  const head =
    lock?.engine === 'postgres'
      ? (await sql<HeadRow>`select size, root, updated_at from audit_head where id = 1 for update`.execute(db)).rows[0]
      : await db.selectFrom('audit_head').select(['size', 'root', 'updated_at']).where('id', '=', 1).executeTakeFirst();
  if (head === undefined) throw new AirlockError('STORAGE_FAILED', 'audit head row is missing: run `airlock db migrate`');
  return head;
}

/** Fetch stored nodes by id in one query. */
export async function fetchNodes(db: Kysely<Database>, ids: readonly NodeId[]): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  if (ids.length === 0) return out;
  const byLevel = new Map<number, Set<number>>();
  for (const id of ids) {
    let set = byLevel.get(id.level);
    if (set === undefined) byLevel.set(id.level, (set = new Set()));
    set.add(id.index);
  }
  const rows = await db
    .selectFrom('audit_nodes')
    .select(['level', 'idx', 'hash'])
    .where((eb) => eb.or([...byLevel].map(([level, idxs]) => eb.and([eb('level', '=', level), eb('idx', 'in', [...idxs])]))))
    .execute();
  for (const r of rows) out.set(nodeKey({ level: r.level, index: r.idx }), r.hash);
  return out;
}

/** Raised for a node a plan needs but the store lacks: the stored tree is damaged. */
export class MissingNodeError extends AirlockError {
  constructor(readonly node: string) {
    super('STORAGE_FAILED', `audit tree node ${node} is missing; run \`airlock audit verify\``, { node });
  }
}

/** A lookup over fetched nodes that throws {@link MissingNodeError} for a gap. */
export function nodeGetter(nodes: Map<string, Buffer>): (id: NodeId) => Buffer {
  return (id) => {
    const h = nodes.get(nodeKey(id));
    if (h === undefined) throw new MissingNodeError(nodeKey(id));
    return h;
  };
}

/** Resolve several plans against the store with one node query. */
export async function resolveStored(db: Kysely<Database>, plans: readonly ProofPlan[]): Promise<Buffer[][]> {
  const get = nodeGetter(await fetchNodes(db, plans.flatMap((p) => planNodes(p))));
  return plans.map((p) => resolvePlan(p, get));
}
