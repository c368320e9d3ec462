/** Storage: engines, migrations and the group-commit transaction executor. */
export { openStore } from './database.js';
export type { StoreOptions } from './database.js';
export { isDriverError, toStorageError } from './errors.js';
export { MIGRATION_NAMES } from './migrations.js';
export type { Database, AuditEventsTable, AuditNodesTable, AuditHeadTable, AuditCheckpointsTable } from './schema.js';
export type { Engine, MigrationState, Store, TransactOptions, Tx, TxParticipant } from './types.js';
