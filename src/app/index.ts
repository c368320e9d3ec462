/**
 * Composition root: the one place that turns a Config into the object graph (store, audit
 * log, key, checkpointer). Adapters (server, CLI) call this and nothing below it.
 */
import { existsSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../config/index.js';
import type { AuditEventInput, AuditLog as AuditLogType, CheckpointKey, Checkpointer as CheckpointerType, NoteVerifier, RequestContext, SignedCheckpoint } from '../audit/index.js';
import { AirlockError, NotFoundError, describeError } from '../errors/index.js';
import { AuditLog, Checkpointer, loadOrCreateCheckpointKey, parseVerifierKey } from '../audit/index.js';
import { MIGRATION_NAMES, openStore } from '../storage/index.js';
import type { MigrationState, Store } from '../storage/index.js';
import type { Logger } from '../observability/index.js';

/** The wired application. */
export interface App {
  readonly config: Config;
  readonly store: Store;
  readonly audit: AuditLogType;
  readonly key: CheckpointKey;
  readonly checkpointer: CheckpointerType;
  /**
   * Keys trusted for this log's checkpoints: the given verifier keys when there are any (an
   * auditor who does not trust this machine brings their own), otherwise this home's key.
   */
  verifiers(keys?: readonly string[]): NoteVerifier[];
  /**
   * Sign a checkpoint now on behalf of `actor`. The request is recorded first, so the new
   * checkpoint covers its own record; a refusal (tampering, or a bug) is recorded as failed.
   */
  signCheckpoint(actor: AuditEventInput['actor'], context?: RequestContext): Promise<SignedCheckpoint>;
  /** Stop signing, drain queued writes, close connections. */
  close(): Promise<void>;
}

/** Options for {@link openApp}. */
export interface OpenAppOptions {
  /** Apply pending migrations first (the embedded default does; managed installs may not). */
  readonly migrate?: boolean;
  readonly logger?: Logger | undefined;
  /** Start the checkpoint cadence (servers do; one-shot CLI commands do not). */
  readonly checkpointing?: boolean;
}

/** Identity of the local operator for events the CLI itself records. */
export function localActor(): AuditEventInput['actor'] {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (containers): keep "unknown" rather than fail the command.
  }
  return { kind: 'system', id: `cli:${user}@${hostname()}` };
}

/** Open storage, load keys and wire the audit domain. */
export async function openApp(config: Config, options: OpenAppOptions = {}): Promise<App> {
  const store = await openStore(config.database);
  try {
    if (options.migrate === true) await store.migrate();
    const key = await loadOrCreateCheckpointKey(config.home, config.auditOrigin);
    if (key.created) options.logger?.warn({ path: key.path }, 'generated a new audit checkpoint signing key; back it up and publish its verifier key (airlock audit key)');
    const audit = new AuditLog(store);
    const checkpointer = new Checkpointer({
      store,
      log: audit,
      signer: key.signer,
      origin: config.auditOrigin,
      intervalMs: config.checkpointIntervalMs,
      statePath: join(config.home, 'state', 'last-checkpoint.json'),
      onError: (err) => options.logger?.error({ err }, 'checkpoint signing refused or failed'),
    });
    if (options.checkpointing === true) checkpointer.start();
    return {
      config,
      store,
      audit,
      key,
      checkpointer,
      signCheckpoint: async (actor, context) => {
        const base = { actor, action: 'audit.checkpoint.sign', resource: 'audit/checkpoints', context } as const;
        await audit.append({ ...base, outcome: 'allowed' });
        try {
          return await checkpointer.checkpointNow();
        } catch (err) {
          await audit.append({ ...base, outcome: 'failed', reason: describeError(err) }).catch(() => undefined);
          throw err;
        }
      },
      verifiers: (keys = []) => (keys.length > 0 ? keys.map(parseVerifierKey) : [parseVerifierKey(key.verifierKey)]),
      close: async () => {
        try {
          if (options.checkpointing === true) await checkpointer.stop();
        } finally {
          await store.close();
        }
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}

/** Read access to the log, without a signing key and without writing anything. */
export interface Reader {
  readonly store: Store;
  readonly audit: AuditLog;
  close(): Promise<void>;
}

/**
 * Open the database for reading. Read commands are out-of-band reads by whoever holds the
 * database: they never migrate, never create a key and never append an audit event. A missing
 * SQLite file is reported rather than created.
 */
export async function openReader(config: Config): Promise<Reader> {
  if (config.database.kind === 'sqlite' && !existsSync(config.database.path)) {
    throw new NotFoundError(`there is no database at ${config.database.path}; run \`airlock db migrate\` or start \`airlock server\` first (or check --home)`, {
      path: config.database.path,
    });
  }
  const store = await openStore(config.database);
  try {
    const pending = (await store.migrationStatus()).filter((m) => m.executedAt === null);
    if (pending.length > 0) {
      throw new AirlockError('STORAGE_FAILED', `the database is not migrated (${pending.length} pending migration(s)); run \`airlock db migrate\``, {
        pending: pending.map((m) => m.name),
      });
    }
    return { store, audit: new AuditLog(store), close: () => store.close() };
  } catch (err) {
    await store.close();
    throw err;
  }
}

/**
 * Migration state without side effects: a missing SQLite file is reported as all pending,
 * never created.
 */
export async function migrationStatus(config: Config): Promise<readonly MigrationState[]> {
  if (config.database.kind === 'sqlite' && !existsSync(config.database.path)) {
    return MIGRATION_NAMES.map((name) => ({ name, executedAt: null }));
  }
  const store = await openStore(config.database);
  try {
    return await store.migrationStatus();
  } finally {
    await store.close();
  }
}
