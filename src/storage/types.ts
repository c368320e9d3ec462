import type { Kysely } from 'kysely';
import type { Database } from './schema.js';

/** The two supported engines. */
export type Engine = 'sqlite' | 'postgres';

/**
 * A batch-scoped participant in a group-committed transaction (the audit sequencer is one).
 * Each unit of work inside the batch runs in its own savepoint; participants keep their
 * in-memory state in step with those savepoints through these callbacks.
 */
export interface TxParticipant {
  /** A unit of work is starting: remember state to return to. */
  beginItem(): void;
  /**
   * The unit of work failed. `savepointRolledBack` says whether its SQL was undone (and any
   * lock it took released); false for units declared `savepoint: false`.
   */
  rollbackItem(savepointRolledBack: boolean): void;
  /** Last writes of the batch (for example interior nodes and the tree head). */
  beforeCommit(db: Kysely<Database>): Promise<void>;
  /** The batch is durable. */
  afterCommit(): void;
  /** The batch was rolled back as a whole: drop any cached state. */
  afterRollback(): void;
}

/** The handle a unit of work receives: a query builder bound to the open transaction. */
export interface Tx {
  readonly db: Kysely<Database>;
  readonly engine: Engine;
  /** The participant registered under `key` for this batch, created on first use. */
  participant<P extends TxParticipant>(key: symbol, create: () => P): P;
}

/** Per-unit options for {@link Store.transact}. */
export interface TransactOptions {
  /**
   * false: the unit runs no SQL of its own, only through participants (whose writes happen
   * at commit), so it needs no savepoint. A driver error inside it then fails the batch.
   */
  readonly savepoint?: boolean;
}

/** Migration state, for `airlock db status`. */
export interface MigrationState {
  readonly name: string;
  readonly executedAt: string | null;
}

/** What domains need from storage: reads, group-committed writes, lifecycle. */
export interface Store {
  readonly engine: Engine;
  /** For reads. On SQLite a separate read-only connection, so reads never queue behind writes. */
  readonly db: Kysely<Database>;
  /**
   * Run `work` inside a transaction shared with other concurrent callers (group commit).
   * Resolves only once the transaction is durable; a failure of `work` rolls back only its
   * own savepoint; a failed commit rejects every caller in the batch.
   */
  transact<T>(work: (tx: Tx) => Promise<T>, options?: TransactOptions): Promise<T>;
  migrate(): Promise<readonly MigrationState[]>;
  migrationStatus(): Promise<readonly MigrationState[]>;
  /** Throws StorageError if the database cannot answer a trivial query. */
  ping(): Promise<void>;
  /** Refuse new work, finish queued work, then close connections. */
  close(): Promise<void>;
}
