/**
 * Table shapes as Kysely sees them. Both engines return these JavaScript types: BLOB and
 * bytea come back as Buffer, and PostgreSQL int8 is parsed to number by the pool (every
 * sequence number stays far below 2^53).
 */

export interface AuditEventsTable {
  /** Position in the log and leaf index in the Merkle tree; gap-free from 0. */
  seq: number;
  time: string;
  actor_kind: string;
  actor_id: string;
  action: string;
  resource: string;
  outcome: string;
  /** The RFC 8785 canonical JSON of the event: exactly the bytes hashed into the leaf. */
  event: string;
}

export interface AuditNodesTable {
  /** Perfect subtree at (level, idx) covers leaves [idx * 2^level, (idx + 1) * 2^level). */
  level: number;
  idx: number;
  hash: Buffer;
}

export interface AuditHeadTable {
  /** Always 1: the single row that serialises the sequencer (SELECT ... FOR UPDATE). */
  id: number;
  size: number;
  root: Buffer;
  /** Time of the newest entry: later entries never get an earlier time, whatever the clocks. */
  updated_at: string;
}

export interface AuditCheckpointsTable {
  size: number;
  root: Buffer;
  /** The whole signed note, as served to clients. */
  note: string;
  created_at: string;
}

export interface MetaTable {
  key: string;
  value: string;
}

/** The whole database, for `Kysely<Database>`. */
export interface Database {
  audit_events: AuditEventsTable;
  audit_nodes: AuditNodesTable;
  audit_head: AuditHeadTable;
  audit_checkpoints: AuditCheckpointsTable;
  airlock_meta: MetaTable;
}
