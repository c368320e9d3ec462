/**
 * Full verification of the stored log. Three layers are checked against each other:
 *   events     -> leaf hashes recomputed from the stored canonical text,
 *   stored tree -> leaf and interior hashes in audit_nodes, and the head row,
 *   checkpoints -> roots signed by the log key (the only layer a database writer cannot forge).
 * The scan runs in aligned chunks, so memory stays O(chunk + log n) and every query is a
 * range scan on a primary key.
 */
import { hash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { AirlockError } from '../errors/index.js';
import type { AuditEventsTable, Database } from '../storage/index.js';
import type { NoteVerifier } from './checkpoint.js';
import { openCheckpoint } from './checkpoint.js';
import { MerkleBuilder, consistencyPlan, leafHash, nodeHash, nodeKey, verifyConsistency } from './merkle.js';
import { MissingNodeError, readHead, resolveStored } from './tree-store.js';

/** Every kind of fault the verifier names. */
export type FaultKind =
  | 'event_modified'
  | 'event_deleted'
  | 'event_reordered'
  | 'event_inserted'
  | 'index_modified'
  | 'node_modified'
  | 'node_missing'
  | 'head_mismatch'
  | 'log_truncated'
  | 'checkpoint_invalid'
  | 'checkpoint_root_mismatch'
  | 'fork'
  | 'document_modified';

/** One fault. `seq` is the first sequence number it concerns, when it concerns one. */
export interface Finding {
  readonly kind: FaultKind;
  readonly seq: number | null;
  readonly message: string;
}

/** The verdict of {@link verifyLog}. */
export interface VerifyReport {
  readonly ok: boolean;
  readonly treeSize: number;
  readonly rootHash: string;
  readonly entriesChecked: number;
  readonly checkpointsChecked: number;
  /** Latest checkpoint that verified, if any. */
  readonly latestCheckpoint: { readonly size: number; readonly rootHash: string } | null;
  /** Entries after the latest signed checkpoint: protected by the stored tree only. */
  readonly unsignedTail: number;
  readonly firstBadSeq: number | null;
  readonly findings: readonly Finding[];
}

/**
 * A document kept in its own table (a signed deployment record) whose digest an audit event
 * names: the entry at `seq` must be `action` on `resource` with `details[field] === digest`.
 * Editing such a document leaves the log itself intact; checking it against the event that
 * named it is how the log's verifier still sees the edit.
 */
export interface AnchoredDocument {
  readonly seq: number;
  readonly action: string;
  readonly resource: string;
  readonly field: string;
  /** The digest of the document as stored now. */
  readonly digest: string;
  /** How findings name it ("deployment record <id>"). */
  readonly what: string;
}

/** Inputs of {@link verifyLog}. */
export interface VerifyOptions {
  readonly db: Kysely<Database>;
  /** Keys trusted to sign checkpoints of this log. */
  readonly verifiers: readonly NoteVerifier[];
  readonly origin: string;
  /** A checkpoint kept outside the database (`--checkpoint FILE`): the auditor's anchor. */
  readonly externalCheckpoint?: string | undefined;
  /** Called after each chunk, for progress output. */
  readonly onProgress?: ((checked: number, total: number) => void) | undefined;
  readonly maxFindings?: number | undefined;
  /** Documents stored outside the log that audit events name by digest (app: auditAnchors). */
  readonly anchored?: (() => Promise<readonly AnchoredDocument[]>) | undefined;
}

// 2^11 entries (~1 MiB of rows) per chunk keeps each chunk in V8's young generation: larger
// chunks were measured slower (GC) and several times larger in RSS.
const CHUNK_LEVEL = 11;
const CHUNK = 2 ** CHUNK_LEVEL;

type EventRow = AuditEventsTable;

/** Stored nodes of levels 0..CHUNK_LEVEL under one chunk, in dense per-level arrays. */
class ChunkNodes {
  constructor(
    private readonly begin: number,
    private readonly levels: readonly (Buffer | undefined)[][],
  ) {}

  get(level: number, index: number): Buffer | undefined {
    const base = Math.floor(this.begin / 2 ** level);
    return this.levels[level]?.[index - base];
  }
}

/** One range scan on the primary key per level (cheaper for SQLite than one OR of ranges). */
async function loadChunkNodes(db: Kysely<Database>, a: number, b: number): Promise<ChunkNodes> {
  const levels: (Buffer | undefined)[][] = [];
  for (let level = 0; level <= CHUNK_LEVEL; level++) {
    const lo = Math.floor(a / 2 ** level);
    const hi = Math.floor(b / 2 ** level);
    const arr = new Array<Buffer | undefined>(Math.max(0, hi - lo));
    levels.push(arr);
    if (hi <= lo) continue;
    const rows = await db.selectFrom('audit_nodes').select(['idx', 'hash']).where('level', '=', level).where('idx', '>=', lo).where('idx', '<', hi).execute();
    for (const r of rows) arr[r.idx - lo] = r.hash;
  }
  return new ChunkNodes(a, levels);
}

/** SHA-256(0x00 || UTF-8(text)) without an intermediate Buffer per entry. */
function leafHashOfText(text: string): Buffer {
  return hash('sha256', `\u0000${text}`, 'buffer');
}

interface SignedRoot {
  readonly size: number;
  readonly root: Buffer;
  readonly source: string;
}

/** Verify the whole log; never throws for a fault in the data, only reports it. */
export async function verifyLog(options: VerifyOptions): Promise<VerifyReport> {
  const { db } = options;
  const max = options.maxFindings ?? 100;
  const findings: Finding[] = [];
  const add = (kind: FaultKind, seq: number | null, message: string): void => {
    if (findings.length < max) findings.push({ kind, seq, message });
  };

  const head = await readHead(db);
  const n = head.size;

  // --- Checkpoints: only signed roots are trusted anchors.
  const signed: SignedRoot[] = [];
  const rows = await db.selectFrom('audit_checkpoints').select(['size', 'root', 'note']).orderBy('size').execute();
  for (const row of rows) {
    try {
      const { checkpoint } = openCheckpoint(row.note, options.verifiers, options.origin);
      if (checkpoint.size !== row.size || !checkpoint.rootHash.equals(row.root)) {
        add('checkpoint_invalid', checkpoint.size, `stored checkpoint row for size ${row.size} does not match its own signed note`);
      }
      signed.push({ size: checkpoint.size, root: checkpoint.rootHash, source: `stored checkpoint ${checkpoint.size}` });
    } catch (err) {
      add('checkpoint_invalid', row.size, `stored checkpoint for size ${row.size} does not verify with the log key: ${(err as Error).message}`);
    }
  }
  let external: SignedRoot | undefined;
  if (options.externalCheckpoint !== undefined) {
    try {
      const { checkpoint } = openCheckpoint(options.externalCheckpoint, options.verifiers, options.origin);
      external = { size: checkpoint.size, root: checkpoint.rootHash, source: 'the given checkpoint' };
      signed.push(external);
    } catch (err) {
      add('checkpoint_invalid', null, `the given checkpoint does not verify with the log key: ${(err as Error).message}`);
    }
  }
  signed.sort((a, b) => a.size - b.size);
  // Two validly signed roots for one size: the log key has signed two histories.
  for (let i = 1; i < signed.length; i++) {
    const a = signed[i - 1];
    const b = signed[i];
    if (a !== undefined && b !== undefined && a.size === b.size && !a.root.equals(b.root)) {
      add('fork', a.size, `${a.source} and ${b.source} are both signed for size ${a.size} but have different roots: the history was forked`);
    }
  }
  const largestSigned = signed.at(-1);
  if (largestSigned !== undefined && largestSigned.size > n) {
    add('log_truncated', n, `the log has ${n} entries but ${largestSigned.source} is signed for ${largestSigned.size}: entries from ${n} on were removed`);
  }

  // --- Events and stored tree, chunk by chunk.
  const lastRow = await db.selectFrom('audit_events').select('seq').where('seq', '<', n).orderBy('seq', 'desc').limit(1).executeTakeFirst();
  const lastRowSeq = lastRow?.seq ?? -1;
  const stored = new MerkleBuilder(); // built from stored leaf hashes: checks interior nodes
  let events: MerkleBuilder | undefined; // forks from `stored` at the first event-level fault
  const highNodes: { level: number; index: number; hash: Buffer }[] = [];
  let pendingSigned = signed.filter((s) => s.size > 0 && s.size <= n);
  let truncatedReported = false;

  const checkSignedRoots = (): void => {
    const size = stored.size;
    while (pendingSigned.length > 0 && (pendingSigned[0]?.size ?? Infinity) <= size) {
      const cp = pendingSigned[0];
      pendingSigned = pendingSigned.slice(1);
      if (cp === undefined || cp.size !== size) continue;
      const root = (events ?? stored).root();
      if (!root.equals(cp.root)) {
        add('checkpoint_root_mismatch', null, `the log's first ${cp.size} entries do not hash to the root signed in ${cp.source}`);
      }
    }
  };

  for (let a = 0; a < n; a += CHUNK) {
    const b = Math.min(a + CHUNK, n);
    const rowsInChunk = await db.selectFrom('audit_events').selectAll().where('seq', '>=', a).where('seq', '<', b).orderBy('seq').execute();
    // Dense arrays indexed by position: a 16k-entry chunk needs no hashing of keys.
    const rowAt: (EventRow | undefined)[] = new Array<EventRow | undefined>(b - a);
    for (const r of rowsInChunk) rowAt[r.seq - a] = r;
    const nodes = await loadChunkNodes(db, a, b);
    const onNode = (level: number, index: number, hash: Buffer): void => {
      if (level > CHUNK_LEVEL) {
        highNodes.push({ level, index, hash });
        return;
      }
      const got = nodes.get(level, index);
      if (got === undefined) add('node_missing', index * 2 ** level, `stored tree node (level ${level}, index ${index}) is missing`);
      else if (!got.equals(hash)) add('node_modified', index * 2 ** level, `stored tree node (level ${level}, index ${index}) was changed`);
    };
    const rows = (seq: number): EventRow | undefined => (seq >= a && seq < b ? rowAt[seq - a] : undefined);

    for (let s = a; s < b; s++) {
      const row = rowAt[s - a];
      const leafStored = nodes.get(0, s);
      let leafFromEvent: Buffer | undefined;
      let storedLeafIsFault = false;
      if (row === undefined) {
        if (s > lastRowSeq) {
          if (!truncatedReported) add('log_truncated', s, `entries ${s} to ${n - 1} are missing although the tree head says ${n}`);
          truncatedReported = true;
        } else {
          add('event_deleted', s, `entry ${s} is missing from the log`);
        }
      } else {
        leafFromEvent = leafHashOfText(row.event);
        if (leafStored !== undefined && !leafFromEvent.equals(leafStored)) {
          const kind = await classifyMismatch(db, s, row.event, leafFromEvent, leafStored, rows, nodes);
          if (kind === 'node_modified') {
            storedLeafIsFault = true;
            add('node_modified', s, `the stored leaf hash of entry ${s} was changed (the entry itself is intact)`);
          } else {
            add(kind, s, describe(kind, s));
          }
          if (kind !== 'node_modified' && events === undefined) events = new MerkleBuilder(stored.size, stored.frontier());
        } else {
          checkIndexColumns(row, s, add);
        }
      }
      if (leafStored === undefined) add('node_missing', s, `the stored leaf hash of entry ${s} is missing`);

      // The stored-tree builder prefers the stored leaf; when that leaf is itself the fault,
      // the recomputed one keeps later node comparisons from cascading.
      const fallback = (storedLeafIsFault ? leafFromEvent : leafStored) ?? leafFromEvent ?? Buffer.alloc(32);
      stored.append(fallback, onNode);
      events?.append(leafFromEvent ?? fallback);
      if (pendingSigned.length > 0) checkSignedRoots();
    }
    options.onProgress?.(b, n);
  }

  // Interior nodes above the chunk level, fetched in one query.
  if (highNodes.length > 0) {
    const have = await db.selectFrom('audit_nodes').select(['level', 'idx', 'hash']).where('level', '>', CHUNK_LEVEL).execute();
    const map = new Map(have.map((r) => [nodeKey({ level: r.level, index: r.idx }), r.hash]));
    for (const h of highNodes) {
      const got = map.get(nodeKey({ level: h.level, index: h.index }));
      if (got === undefined) add('node_missing', h.index * 2 ** h.level, `stored tree node (level ${h.level}, index ${h.index}) is missing`);
      else if (!got.equals(h.hash)) add('node_modified', h.index * 2 ** h.level, `stored tree node (level ${h.level}, index ${h.index}) was changed`);
    }
  }

  // Entries beyond the head were never sequenced into the tree.
  const extra = await db.selectFrom('audit_events').select('seq').where('seq', '>=', n).orderBy('seq').limit(1).executeTakeFirst();
  if (extra !== undefined) add('event_inserted', extra.seq, `entry ${extra.seq} is beyond the tree head (${n}): it was inserted outside the log`);

  const storedRoot = stored.root();
  if (!storedRoot.equals(head.root)) add('head_mismatch', null, 'the tree head root does not match the stored tree');

  for (const f of await checkAnchored(db, (await options.anchored?.()) ?? [])) add('document_modified', f.seq, f.message);

  // An auditor's older checkpoint: also prove consistency the way an outside verifier would.
  if (external !== undefined && external.size <= n) {
    try {
      const [proof = []] = await resolveStored(db, [consistencyPlan(external.size, n)]);
      verifyConsistency(external.size, n, external.root, storedRoot, proof);
    } catch (err) {
      // Only a proof that fails (or cannot be built from the stored tree) is a fork; a
      // database error must surface as one, not be misreported as tampering.
      if (!(err instanceof MissingNodeError) && !(err instanceof AirlockError && err.code === 'AUDIT_PROOF_INVALID')) throw err;
      add('fork', external.size, `the log is not consistent with the given checkpoint of size ${external.size}: the history was rewritten or forked`);
    }
  }

  const verifiedSigned = signed.filter((s) => s.size <= n);
  const latest = verifiedSigned.at(-1);
  const badSeqs = findings.map((f) => f.seq).filter((s): s is number => s !== null);
  return {
    ok: findings.length === 0,
    treeSize: n,
    rootHash: head.root.toString('base64'),
    entriesChecked: n,
    checkpointsChecked: signed.length,
    latestCheckpoint: latest === undefined ? null : { size: latest.size, rootHash: latest.root.toString('base64') },
    unsignedTail: n - (latest?.size ?? 0),
    firstBadSeq: badSeqs.length === 0 ? null : Math.min(...badSeqs),
    findings,
  };
}

/** Each anchored document against the event that named it (the events themselves were checked above). */
async function checkAnchored(db: Kysely<Database>, docs: readonly AnchoredDocument[]): Promise<{ seq: number; message: string }[]> {
  const out: { seq: number; message: string }[] = [];
  for (let i = 0; i < docs.length; i += 500) {
    const batch = docs.slice(i, i + 500);
    const rows = await db.selectFrom('audit_events').select(['seq', 'event']).where('seq', 'in', batch.map((d) => d.seq)).execute();
    const bySeq = new Map(rows.map((r) => [r.seq, r.event]));
    for (const d of batch) {
      const text = bySeq.get(d.seq);
      let named: unknown;
      let matches = false;
      if (text !== undefined) {
        const event = JSON.parse(text) as { action?: unknown; resource?: unknown; details?: Record<string, unknown> };
        named = event.details?.[d.field];
        matches = event.action === d.action && event.resource === d.resource;
      }
      if (!matches) out.push({ seq: d.seq, message: `${d.what} names audit entry ${d.seq}, which is not its ${d.action} event` });
      else if (named !== d.digest) out.push({ seq: d.seq, message: `${d.what} was modified: it hashes to ${d.digest}, but audit entry ${d.seq} recorded ${typeof named === 'string' ? named : 'no digest'}` });
    }
  }
  return out;
}

function describe(kind: FaultKind, s: number): string {
  switch (kind) {
    case 'event_inserted':
      return `an entry was inserted at ${s}; the entries after it were renumbered`;
    case 'event_deleted':
      return `entry ${s} was deleted and the entries after it were renumbered`;
    case 'event_reordered':
      return `entry ${s} holds an authentic entry from another position: the log was reordered`;
    default:
      return `entry ${s} was modified: its content no longer matches its leaf hash`;
  }
}

/**
 * Decide what explains "entry s does not hash to stored leaf s". Rows carry their original
 * seq inside the hashed text, so an authentic row found at the wrong position reveals a
 * move, and the stored parent node tells an edited leaf hash from an edited entry.
 */
async function classifyMismatch(
  db: Kysely<Database>,
  s: number,
  text: string,
  fromEvent: Buffer,
  storedLeaf: Buffer,
  rows: (seq: number) => EventRow | undefined,
  nodes: ChunkNodes,
): Promise<FaultKind> {
  const sibling = nodes.get(0, s % 2 === 0 ? s + 1 : s - 1);
  const parent = nodes.get(1, Math.floor(s / 2));
  if (sibling !== undefined && parent !== undefined) {
    const pair = (leaf: Buffer) => (s % 2 === 0 ? nodeHash(leaf, sibling) : nodeHash(sibling, leaf));
    if (pair(fromEvent).equals(parent) && !pair(storedLeaf).equals(parent)) return 'node_modified';
  }
  const claimed = claimedSeq(text);
  const authenticAt = async (seq: number, leaf: Buffer): Promise<boolean> => {
    const h = nodes.get(0, seq) ?? (await db.selectFrom('audit_nodes').select('hash').where('level', '=', 0).where('idx', '=', seq).executeTakeFirst())?.hash;
    return h !== undefined && h.equals(leaf);
  };
  const next = rows(s + 1);
  if (claimed !== undefined && claimed !== s && (await authenticAt(claimed, fromEvent))) {
    if (claimed === s + 1) {
      const nextClaim = next === undefined ? undefined : claimedSeq(next.event);
      if (next === undefined || nextClaim === s + 2) return 'event_deleted';
    }
    return 'event_reordered';
  }
  if (next !== undefined && claimedSeq(next.event) === s && (await authenticAt(s, leafHash(Buffer.from(next.event, 'utf8'))))) {
    return 'event_inserted';
  }
  return 'event_modified';
}

function claimedSeq(text: string): number | undefined {
  try {
    const v = (JSON.parse(text) as { seq?: unknown }).seq;
    return typeof v === 'number' && Number.isSafeInteger(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The search columns are derived data; a mismatch could hide an entry from a search. The
 * text is already proven authentic and is RFC 8785 output, so its layout is fixed: keys in
 * code-unit order, strings escaped exactly as JSON.stringify does, hence no unescaped quote
 * inside a value. That allows comparing by string position instead of parsing every entry;
 * anything unexpected falls back to a full parse.
 */
function checkIndexColumns(row: EventRow, s: number, add: (k: FaultKind, s: number, m: string) => void): void {
  const t = row.event;
  const j = JSON.stringify;
  const head = `{"action":${j(row.action)},"actor":{"id":${j(row.actor_id)},"kind":${j(row.actor_kind)}},"context":`;
  const tail = `,"resource":${j(row.resource)},"schemaVersion":1,"seq":${s},"time":${j(row.time)}}`;
  // The last ',"outcome":' is the top-level one: details come before it and no string can hold it unescaped.
  const at = t.lastIndexOf(',"outcome":');
  if (t.startsWith(head) && t.endsWith(tail) && at > 0 && t.startsWith(`${j(row.outcome)},"reason":`, at + 11)) return;
  checkIndexColumnsSlowly(row, s, add);
}

function checkIndexColumnsSlowly(row: EventRow, s: number, add: (k: FaultKind, s: number, m: string) => void): void {
  let e: { seq?: unknown; time?: unknown; actor?: { kind?: unknown; id?: unknown }; action?: unknown; resource?: unknown; outcome?: unknown };
  try {
    e = JSON.parse(row.event) as typeof e;
  } catch {
    add('event_modified', s, `entry ${s} is not valid JSON`);
    return;
  }
  if (
    e.seq !== s ||
    e.time !== row.time ||
    e.actor?.kind !== row.actor_kind ||
    e.actor.id !== row.actor_id ||
    e.action !== row.action ||
    e.resource !== row.resource ||
    e.outcome !== row.outcome
  ) {
    add('index_modified', s, `the search columns of entry ${s} do not match its hashed content`);
  }
}
