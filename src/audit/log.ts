/**
 * The append-only audit log. `record` appends inside the caller's transaction: the event,
 * its leaf hash and every newly completed interior node are written by the same commit as
 * the caller's state change, or not at all (promise 1, fail closed).
 *
 * Storage layout: audit_events holds the canonical event text (the leaf bytes) plus columns
 * for search; audit_nodes holds the hash of every complete perfect subtree (level 0 are the
 * leaf hashes), so any root or proof reads O(log n) stored hashes; audit_head holds the
 * current size and root and is the row that serialises appenders.
 */
import type { Expression, Kysely, SqlBool } from 'kysely';
import { sql } from 'kysely';
import { AirlockError, NotFoundError } from '../errors/index.js';
import type { Database, Store, Tx, TxParticipant } from '../storage/index.js';
import type { AuditEvent, AuditEventInput } from './event.js';
import { buildEvent, canonicalEvent, parseStoredEvent, validateEventInput } from './event.js';
import type { NodeId } from './merkle.js';
import { MerkleBuilder, consistencyPlan, emptyRoot, frontierNodes, inclusionPlan, leafHash, nodeKey, planNodes, resolvePlan, rootPlan } from './merkle.js';
import { fetchNodes, nodeGetter, readHead, resolveStored } from './tree-store.js';

/** Source of time; injected so tests can pin it. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** A stored entry as returned to readers. */
export interface AuditEntry {
  readonly seq: number;
  readonly event: AuditEvent;
  readonly leafHash: Buffer;
}

/** Tree head: size and root of the whole log. */
export interface TreeHead {
  readonly size: number;
  readonly rootHash: Buffer;
}

/** Inclusion proof of one entry in the tree of `treeSize` (RFC 9162 section 2.1.3). */
export interface InclusionProof {
  readonly leafIndex: number;
  readonly treeSize: number;
  readonly leafHash: Buffer;
  readonly rootHash: Buffer;
  readonly proof: readonly Buffer[];
}

/** Consistency proof between two tree sizes (RFC 9162 section 2.1.4). */
export interface ConsistencyProof {
  readonly size1: number;
  readonly size2: number;
  readonly root1: Buffer;
  readonly root2: Buffer;
  readonly proof: readonly Buffer[];
}

/** Filters for {@link AuditLog.search}. Every field narrows the result. */
export interface AuditQuery {
  readonly actorId?: string | undefined;
  readonly actorKind?: string | undefined;
  readonly action?: string | undefined;
  readonly resource?: string | undefined;
  readonly outcome?: string | undefined;
  readonly since?: string | undefined;
  readonly until?: string | undefined;
  readonly afterSeq?: number | undefined;
  readonly beforeSeq?: number | undefined;
  readonly limit?: number | undefined;
  readonly order?: 'asc' | 'desc' | undefined;
}

const SEQUENCER = Symbol('audit.sequencer');
const INSERT_CHUNK = 400;

interface PendingEvent {
  readonly event: AuditEvent;
  readonly text: string;
}

interface PendingNode {
  readonly level: number;
  readonly idx: number;
  readonly hash: Buffer;
}

/** Last committed head with its frontier, so a new batch needn't re-read it. */
interface HeadCache {
  readonly size: number;
  readonly root: Buffer;
  readonly frontier: readonly Buffer[];
}

type AppendListener = (head: TreeHead) => void;

/** The audit log over a {@link Store}. */
export class AuditLog {
  private cache: HeadCache | undefined;
  private readonly listeners: AppendListener[] = [];

  constructor(
    private readonly store: Store,
    private readonly clock: Clock = systemClock,
  ) {}

  /**
   * Append an event inside the caller's transaction and return it with its sequence
   * number. Throws ValidationError for bad input; a storage failure fails the whole commit.
   * @example await store.transact(async (tx) => { await changeSomething(tx); await audit.record(tx, event); });
   */
  record(tx: Tx, input: AuditEventInput): Promise<AuditEvent> {
    const valid = validateEventInput(input);
    const seq = tx.participant(SEQUENCER, () => new Sequencer(this, tx));
    return seq.append(valid);
  }

  /** Append one event in a transaction of its own (group-committed with others). */
  append(input: AuditEventInput): Promise<AuditEvent> {
    // record() writes nothing until commit, so this unit needs no savepoint of its own.
    return this.store.transact((tx) => this.record(tx, input), { savepoint: false });
  }

  /** Be told after every commit that appended events. */
  onAppended(listener: AppendListener): void {
    this.listeners.push(listener);
  }

  /** @internal The sequencer's view of the clock and cache. */
  now(): string {
    return this.clock.now().toISOString();
  }

  /** @internal */
  cachedHead(): HeadCache | undefined {
    return this.cache;
  }

  /** @internal */
  committed(head: HeadCache): void {
    this.cache = head;
    for (const l of this.listeners) l({ size: head.size, rootHash: head.root });
  }

  /** @internal */
  invalidate(): void {
    this.cache = undefined;
  }

  /** Current size and root as committed. */
  async head(): Promise<TreeHead> {
    const row = await readHead(this.store.db);
    return { size: row.size, rootHash: row.root };
  }

  /** One entry by sequence number. */
  async entry(seq: number): Promise<AuditEntry> {
    const row = await this.store.db.selectFrom('audit_events').select(['seq', 'event']).where('seq', '=', seq).executeTakeFirst();
    if (row === undefined) throw new NotFoundError(`no audit entry with sequence number ${seq}`, { seq });
    const leaf = await this.store.db.selectFrom('audit_nodes').select('hash').where('level', '=', 0).where('idx', '=', seq).executeTakeFirst();
    return toEntry(row.seq, row.event, leaf?.hash ?? leafHash(Buffer.from(row.event)));
  }

  /** Entries matching `query`, oldest first unless `order: 'desc'`. */
  async search(query: AuditQuery = {}): Promise<AuditEntry[]> {
    let q = this.store.db.selectFrom('audit_events').select(['seq', 'event']);
    if (query.actorId !== undefined) q = q.where('actor_id', '=', query.actorId);
    if (query.actorKind !== undefined) q = q.where('actor_kind', '=', query.actorKind);
    if (query.action !== undefined) q = q.where(textFilter('action', query.action));
    if (query.resource !== undefined) q = q.where(textFilter('resource', query.resource));
    if (query.outcome !== undefined) q = q.where('outcome', '=', query.outcome);
    if (query.since !== undefined) q = q.where('time', '>=', query.since);
    if (query.until !== undefined) q = q.where('time', '<', query.until);
    if (query.afterSeq !== undefined) q = q.where('seq', '>', query.afterSeq);
    if (query.beforeSeq !== undefined) q = q.where('seq', '<', query.beforeSeq);
    const rows = await q
      .orderBy('seq', query.order ?? 'asc')
      .limit(Math.min(query.limit ?? 100, 10_000))
      .execute();
    const leaves = await fetchNodes(this.store.db, rows.map((r) => ({ level: 0, index: r.seq })));
    return rows.map((r) => toEntry(r.seq, r.event, leaves.get(nodeKey({ level: 0, index: r.seq })) ?? leafHash(Buffer.from(r.event))));
  }

  /** Root of the tree of `size` leaves, from O(log n) stored nodes. */
  async rootAt(size: number): Promise<Buffer> {
    const head = await this.head();
    checkSize('size', size, head.size);
    if (size === 0) return emptyRoot();
    const [root] = await resolveStored(this.store.db, [rootPlan(size)]);
    return root?.[0] ?? emptyRoot();
  }

  /** Inclusion proof of entry `leafIndex` in the tree of `treeSize` (default: current). */
  async inclusionProof(leafIndex: number, treeSize?: number): Promise<InclusionProof> {
    const head = await this.head();
    const size = treeSize ?? head.size;
    checkSize('treeSize', size, head.size);
    if (!Number.isSafeInteger(leafIndex) || leafIndex < 0 || leafIndex >= size) {
      throw new AirlockError('AUDIT_INVALID_RANGE', `leafIndex must be an integer in [0, ${size}) for a tree of size ${size}`, { field: 'leafIndex' });
    }
    const plan = inclusionPlan(leafIndex, size);
    const root = rootPlan(size);
    const leafId: NodeId = { level: 0, index: leafIndex };
    const get = nodeGetter(await fetchNodes(this.store.db, [...planNodes(plan), ...planNodes(root), leafId]));
    return {
      leafIndex,
      treeSize: size,
      leafHash: get(leafId),
      rootHash: resolvePlan(root, get)[0] ?? emptyRoot(),
      proof: resolvePlan(plan, get),
    };
  }

  /** Consistency proof between sizes `size1` <= `size2` (default: current size). */
  async consistencyProof(size1: number, size2?: number): Promise<ConsistencyProof> {
    const head = await this.head();
    const second = size2 ?? head.size;
    checkSize('size2', second, head.size);
    checkSize('size1', size1, second);
    const plan = consistencyPlan(size1, second);
    const r1 = rootPlan(size1);
    const r2 = rootPlan(second);
    const get = nodeGetter(await fetchNodes(this.store.db, [...planNodes(plan), ...planNodes(r1), ...planNodes(r2)]));
    return {
      size1,
      size2: second,
      root1: size1 === 0 ? emptyRoot() : (resolvePlan(r1, get)[0] ?? emptyRoot()),
      root2: second === 0 ? emptyRoot() : (resolvePlan(r2, get)[0] ?? emptyRoot()),
      proof: resolvePlan(plan, get),
    };
  }

}

function checkSize(field: string, size: number, max: number): void {
  if (!Number.isSafeInteger(size) || size < 0 || size > max) {
    throw new AirlockError('AUDIT_INVALID_RANGE', `${field} must be an integer between 0 and ${max} (the current tree size)`, { field, max });
  }
}

/** Exact match, or "starts with" when the value ends in `*` (same semantics on both engines). */
function textFilter(column: 'action' | 'resource', value: string): Expression<SqlBool> {
  if (!value.endsWith('*')) return sql<SqlBool>`${sql.ref(column)} = ${value}`;
  const prefix = value.slice(0, -1);
  // substr counts code points on both engines; LIKE differs in case rules and escaping.
  return sql<SqlBool>`substr(${sql.ref(column)}, 1, ${Array.from(prefix).length}) = ${prefix}`;
}

function toEntry(seq: number, text: string, leaf: Buffer): AuditEntry {
  const event = parseStoredEvent(text);
  if (event === undefined) {
    throw new AirlockError('STORAGE_FAILED', `audit entry ${seq} is not a well-formed event; run \`airlock audit verify\``, { seq });
  }
  return { seq, event, leafHash: leaf };
}

/**
 * Batch-scoped sequencer: assigns sequence numbers in memory and writes everything in
 * `beforeCommit`, so N events cost a few multi-row statements. Savepoint-aware: a unit of
 * work that fails takes its events back out of the batch.
 */
class Sequencer implements TxParticipant {
  private builder: MerkleBuilder | undefined;
  private loading: Promise<MerkleBuilder> | undefined;
  private readonly events: PendingEvent[] = [];
  private readonly nodes: PendingNode[] = [];
  private mark = { size: 0, frontier: [] as Buffer[], events: 0, nodes: 0 };
  /** True while the unit of work that took the head lock has not finished. */
  private loadedInItem = false;
  private lastTime = '';

  constructor(
    private readonly log: AuditLog,
    private readonly tx: Tx,
  ) {}

  async append(input: AuditEventInput): Promise<AuditEvent> {
    const builder = this.builder ?? (await (this.loading ??= this.load()));
    const seq = builder.size;
    // Time never goes backwards along the sequence, even if the clock steps back.
    const now = this.log.now();
    const time = now > this.lastTime ? now : this.lastTime;
    this.lastTime = time;
    const event = buildEvent(input, seq, time);
    const text = canonicalEvent(event);
    const leaf = leafHash(Buffer.from(text, 'utf8'));
    this.events.push({ event, text });
    this.nodes.push({ level: 0, idx: seq, hash: leaf });
    builder.append(leaf, (level, index, hash) => this.nodes.push({ level, idx: index, hash }));
    return event;
  }

  private async load(): Promise<MerkleBuilder> {
    const db = this.tx.db;
    const head = await readHead(db, { engine: this.tx.engine });
    const cached = this.log.cachedHead();
    let frontier: readonly Buffer[];
    if (cached !== undefined && cached.size === head.size && cached.root.equals(head.root)) {
      frontier = cached.frontier;
    } else {
      const ids = frontierNodes(head.size);
      frontier = ids.map(nodeGetter(await fetchNodes(db, ids)));
    }
    const builder = new MerkleBuilder(head.size, frontier);
    if (!builder.root().equals(head.root)) {
      throw new AirlockError('AUDIT_APPEND_FAILED', 'stored audit tree does not match its head; refusing to append (run `airlock audit verify`)');
    }
    this.builder = builder;
    // The head keeps the time of the newest entry, so time stays monotonic across batches,
    // restarts and replicas whose clocks disagree.
    this.lastTime = head.updated_at;
    this.mark = { size: builder.size, frontier: builder.frontier(), events: 0, nodes: 0 };
    this.loadedInItem = true;
    return builder;
  }

  beginItem(): void {
    this.loadedInItem = false;
    if (this.builder === undefined) return;
    this.mark = { size: this.builder.size, frontier: this.builder.frontier(), events: this.events.length, nodes: this.nodes.length };
  }

  rollbackItem(savepointRolledBack: boolean): void {
    if (this.loadedInItem && savepointRolledBack) {
      // Rolling back to the savepoint released the head row lock taken inside it, so the
      // head must be read (and locked) again by the next unit of work.
      this.builder = undefined;
      this.loading = undefined;
      this.loadedInItem = false;
      this.events.length = 0;
      this.nodes.length = 0;
      return;
    }
    if (this.builder === undefined) return;
    this.builder = new MerkleBuilder(this.mark.size, this.mark.frontier);
    this.events.length = this.mark.events;
    this.nodes.length = this.mark.nodes;
  }

  async beforeCommit(db: Kysely<Database>): Promise<void> {
    if (this.builder === undefined || this.events.length === 0) return;
    for (let i = 0; i < this.events.length; i += INSERT_CHUNK) {
      const rows = this.events.slice(i, i + INSERT_CHUNK).map(({ event, text }) => ({
        seq: event.seq,
        time: event.time,
        actor_kind: event.actor.kind,
        actor_id: event.actor.id,
        action: event.action,
        resource: event.resource,
        outcome: event.outcome,
        event: text,
      }));
      await db.insertInto('audit_events').values(rows).execute();
    }
    for (let i = 0; i < this.nodes.length; i += INSERT_CHUNK) {
      await db.insertInto('audit_nodes').values(this.nodes.slice(i, i + INSERT_CHUNK)).execute();
    }
    await db
      .updateTable('audit_head')
      .set({ size: this.builder.size, root: this.builder.root(), updated_at: this.lastTime })
      .where('id', '=', 1)
      .execute();
  }

  afterCommit(): void {
    if (this.builder === undefined || this.events.length === 0) return;
    this.log.committed({ size: this.builder.size, root: this.builder.root(), frontier: this.builder.frontier() });
  }

  afterRollback(): void {
    this.log.invalidate();
  }
}
