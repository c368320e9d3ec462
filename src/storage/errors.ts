import { AirlockError, ConflictError, StorageError } from '../errors/index.js';

// Driver messages can quote SQL and row values (PostgreSQL's "Key (x)=(...)"), so only
// the driver's error code travels into a message; the original stays as `cause` for logs.
const UNAVAILABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EPIPE', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08006', 'SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_CANTOPEN']);

const PG_CONNECTION_MESSAGES = /Connection terminated|not queryable|after calling end on the pool|timeout exceeded when trying to connect|Query read timeout/i;

function driverCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** True if `err` came from a database driver (SQLite result code, SQLSTATE or socket error). */
export function isDriverError(err: unknown): boolean {
  const code = driverCode(err);
  // node-postgres raises some connection failures as plain Errors without a code.
  if (code === undefined) return err instanceof Error && PG_CONNECTION_MESSAGES.test(err.message);
  return code.startsWith('SQLITE_') || /^[0-9A-Z]{5}$/.test(code) || UNAVAILABLE.has(code);
}

/** Map a driver error to a coded error whose message is safe to show. */
export function toStorageError(err: unknown, doing: string): AirlockError {
  if (err instanceof AirlockError) return err;
  const code = driverCode(err) ?? 'connection lost';
  if (code === '23505' || code.startsWith('SQLITE_CONSTRAINT')) {
    return new ConflictError(`${doing} conflicts with an existing record (${code})`);
  }
  const kind = UNAVAILABLE.has(code) || code === 'connection lost' ? 'STORAGE_UNAVAILABLE' : 'STORAGE_FAILED';
  const hint =
    code === 'SQLITE_FULL' ? ': the disk is full'
    : code.startsWith('SQLITE_READONLY') ? ': the database file is read-only'
    : code === 'SQLITE_BUSY' ? ': another process holds the write lock'
    : kind === 'STORAGE_UNAVAILABLE' ? ': the database is unreachable'
    : '';
  return new StorageError(kind, `${doing} failed (${code})${hint}`, { cause: err });
}
