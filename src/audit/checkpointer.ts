/**
 * Issues signed checkpoints (C2SP tlog-checkpoint). Before signing, the tree being signed
 * is proven to extend the last checkpoint this log published and the last one this process
 * signed, so the key never signs two inconsistent histories, even if someone rewrote the
 * database underneath (a database writer can rewrite rows, but not this check's outcome).
 */
import { mkdirSync, openSync, fsyncSync, closeSync, writeSync, readFileSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Kysely } from 'kysely';
import { AirlockError } from '../errors/index.js';
import type { Database, Store } from '../storage/index.js';
import type { NoteSigner } from './checkpoint.js';
import { formatCheckpoint, signNote } from './checkpoint.js';
import type { AuditLog } from './log.js';
import { emptyRoot, rootPlan } from './merkle.js';
import { MissingNodeError, readHead, resolveStored } from './tree-store.js';

/** A checkpoint as stored and served. */
export interface SignedCheckpoint {
  readonly size: number;
  readonly rootHash: Buffer;
  /** The signed note text, final newline included. */
  readonly note: string;
  readonly createdAt: string;
}

/** Collaborators of {@link Checkpointer}. */
export interface CheckpointerOptions {
  readonly store: Store;
  readonly log: AuditLog;
  readonly signer: NoteSigner;
  readonly origin: string;
  /** Longest wait between an append and the checkpoint covering it. */
  readonly intervalMs: number;
  /** File recording what this process last signed (outside the database). */
  readonly statePath?: string | undefined;
  /** Told about refusals; a refusal means tampering or a bug and must reach an operator. */
  readonly onError?: ((err: unknown) => void) | undefined;
  /** Told about every newly signed checkpoint (metrics, witnesses). */
  readonly onSigned?: ((checkpoint: SignedCheckpoint) => void) | undefined;
}

interface LastSigned {
  readonly size: number;
  readonly root: string;
}

/** Signs checkpoints on a cadence after appends, and on demand. */
export class Checkpointer {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private dirty = false;
  private stopped = false;
  /** The last refusal or failure, for /readyz. */
  lastError: AirlockError | undefined;

  constructor(private readonly options: CheckpointerOptions) {}

  /** Start signing after appends: at most `intervalMs` after each commit. */
  start(): void {
    this.options.log.onAppended(() => {
      this.dirty = true;
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.stopped || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.dirty) return;
      this.dirty = false;
      this.checkpointNow().catch((err: unknown) => {
        this.options.onError?.(err);
      });
    }, this.options.intervalMs);
  }

  /** Sign the current tree head now (or return the existing checkpoint for it). */
  async checkpointNow(): Promise<SignedCheckpoint> {
    // One signing at a time per process; replicas serialise on the head row lock.
    while (this.running !== undefined) await this.running.catch(() => undefined);
    const p = this.sign();
    this.running = p;
    try {
      const cp = await p;
      this.lastError = undefined;
      return cp;
    } catch (err) {
      if (err instanceof AirlockError) this.lastError = err;
      throw err;
    } finally {
      this.running = undefined;
    }
  }

  private async sign(): Promise<SignedCheckpoint> {
    const { store, origin, signer } = this.options;
    const local = this.readLocal();
    const cp = await store.transact(async (tx) => {
      const db = tx.db;
      const head = await readHead(db, { engine: tx.engine });
      const latest = await db.selectFrom('audit_checkpoints').select(['size', 'root', 'note', 'created_at']).orderBy('size', 'desc').limit(1).executeTakeFirst();
      if (latest !== undefined && latest.size === head.size && latest.root.equals(head.root)) {
        return { size: latest.size, rootHash: latest.root, note: latest.note, createdAt: latest.created_at, fresh: false };
      }
      const root = await rootFromNodes(db, head.size);
      if (!root.equals(head.root)) refuse('the tree head does not match the stored tree', head.size);
      if (latest !== undefined) await assertExtends(db, head.size, latest.size, latest.root, 'the last published checkpoint');
      if (local !== undefined) await assertExtends(db, head.size, local.size, Buffer.from(local.root, 'base64'), 'the last checkpoint this server signed');
      const body = formatCheckpoint({ origin, size: head.size, rootHash: head.root, extensions: [] });
      const note = signNote(body, [signer]);
      const createdAt = new Date().toISOString();
      await db.insertInto('audit_checkpoints').values({ size: head.size, root: head.root, note, created_at: createdAt }).execute();
      return { size: head.size, rootHash: head.root, note, createdAt, fresh: true };
    });
    const signed = { size: cp.size, rootHash: cp.rootHash, note: cp.note, createdAt: cp.createdAt };
    if (cp.fresh) {
      this.writeLocal({ size: cp.size, root: cp.rootHash.toString('base64') });
      this.options.onSigned?.(signed);
    }
    return signed;
  }

  /** The newest stored checkpoint, if any. */
  async latest(): Promise<SignedCheckpoint | undefined> {
    const row = await this.options.store.db.selectFrom('audit_checkpoints').selectAll().orderBy('size', 'desc').limit(1).executeTakeFirst();
    return row === undefined ? undefined : { size: row.size, rootHash: row.root, note: row.note, createdAt: row.created_at };
  }

  /** Stop the cadence; sign once more if appends are not yet covered (graceful shutdown). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.dirty) {
      this.dirty = false;
      await this.checkpointNow();
    }
    while (this.running !== undefined) await this.running.catch(() => undefined);
  }

  private readLocal(): LastSigned | undefined {
    const path = this.options.statePath;
    if (path === undefined) return undefined;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
    const v = JSON.parse(text) as Partial<LastSigned>;
    if (typeof v.size !== 'number' || typeof v.root !== 'string') {
      throw new AirlockError('CHECKPOINT_INCONSISTENT', `${path} is damaged; refusing to sign until an operator checks it`);
    }
    return { size: v.size, root: v.root };
  }

  private writeLocal(state: LastSigned): void {
    const path = this.options.statePath;
    if (path === undefined) return;
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const tmp = `${path}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify(state));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  }
}

function refuse(why: string, size: number): never {
  throw new AirlockError('CHECKPOINT_INCONSISTENT', `refusing to sign a checkpoint at size ${size}: ${why}; run \`airlock audit verify\``, { size });
}

async function rootFromNodes(db: Kysely<Database>, size: number): Promise<Buffer> {
  if (size === 0) return emptyRoot();
  try {
    const [root] = await resolveStored(db, [rootPlan(size)]);
    return root?.[0] ?? emptyRoot();
  } catch (err) {
    if (err instanceof MissingNodeError) refuse(`tree node ${err.node} is missing`, size);
    throw err;
  }
}

/** The tree of `size` must contain the tree of `oldSize` with root `oldRoot` as a prefix. */
async function assertExtends(db: Kysely<Database>, size: number, oldSize: number, oldRoot: Buffer, what: string): Promise<void> {
  if (oldSize > size) refuse(`${what} covers ${oldSize} entries but the log has only ${size} (truncated?)`, size);
  const root = await rootFromNodes(db, oldSize);
  if (!root.equals(oldRoot)) refuse(`the log's first ${oldSize} entries no longer hash to ${what}'s root (history rewritten)`, size);
}
