/**
 * The keys other domains get from the vault (issue 5): the identity sealing key and the audit
 * checkpoint key, sealed by the root key in the database. This file wires the old key files of an
 * existing install into the vault's one-time import, logs what happened, and reads the
 * checkpoint verifier key for commands that must not need the root key.
 */
import { existsSync } from 'node:fs';
import type { Config } from '../config/index.js';
import { AirlockError } from '../errors/index.js';
import { checkpointKeyPath, checkpointVerifierKeyFrom, loadVerifierKey, readCheckpointKeyFile } from '../audit/index.js';
import type { CheckpointKey, CheckpointVerifierKey } from '../audit/index.js';
import { readSealKeyFile, sealKeyPath } from '../identity/index.js';
import type { SealKey } from '../identity/index.js';
import type { Logger } from '../observability/index.js';
import { openStore } from '../storage/index.js';
import { SEALED_KEY_DESCRIPTIONS, Vault, loadRootKey } from '../vault/index.js';
import type { LegacyKeyFiles, RootKey, SealedKeyEvent } from '../vault/index.js';

/** The migration that created the vault's table of held keys. */
const SEALED_KEYS_MIGRATION = '0005_vault_sealed_keys';

/** The key files an install made before the keys moved into the vault. */
export function legacyKeyFiles(home: string): LegacyKeyFiles {
  return {
    'identity-seal': { path: sealKeyPath(home), read: () => readSealKeyFile(home) },
    'audit-checkpoint': { path: checkpointKeyPath(home), read: () => readCheckpointKeyFile(home) },
  };
}

/** One log line per thing the vault did with a held key; never key bytes. */
export function logSealedKeyEvent(logger: Logger | undefined): (event: SealedKeyEvent) => void {
  return (event) => {
    const what = SEALED_KEY_DESCRIPTIONS[event.key];
    const at = { key: event.key, path: event.path };
    switch (event.action) {
      case 'generated':
        logger?.info({ key: event.key }, `generated a new ${what} in the vault, sealed by the root key; it is backed up with the database`);
        return;
      case 'imported':
        logger?.warn(at, `moved the ${what} from ${event.path ?? 'its key file'} into the vault, sealed by the root key; the file is deleted`);
        return;
      case 'file_removed':
        logger?.info(at, `deleted ${event.path ?? 'the old key file'}: the vault holds its key`);
        return;
      case 'file_kept':
        logger?.warn(at, `${event.path ?? 'an old key file'} does not hold the vault's ${what} (or cannot be read); it was not imported and is left in place: keep it only if something signed or sealed with it must still be checked, else delete it`);
        return;
      case 'file_remove_failed':
        logger?.warn(at, `could not delete ${event.path ?? 'the old key file'} although the vault holds its key; delete it by hand`);
        return;
    }
  };
}

function notMigrated(): AirlockError {
  return new AirlockError('STORAGE_FAILED', 'the database is not migrated, so the vault that holds the identity and checkpoint keys cannot be opened; run `airlock db migrate`');
}

/**
 * Stand-ins while migrations are pending (`airlock db migrate` opens the app to apply them and
 * needs neither key): any use refuses, naming the fix.
 */
export function pendingKeys(origin: string): { seal: SealKey; key: CheckpointKey } {
  const refuse = (): never => {
    throw notMigrated();
  };
  return {
    seal: { seal: refuse, open: refuse },
    key: {
      signer: { name: origin, keyId: Buffer.alloc(0), sign: refuse },
      get verifierKey(): string {
        return refuse();
      },
      get publicKey(): Buffer {
        return refuse();
      },
    },
  };
}

/** The root key if one is configured (never generated); undefined when none is. */
async function configuredRootKey(config: Config, env: NodeJS.ProcessEnv): Promise<RootKey | undefined> {
  try {
    return (await loadRootKey({ env, home: config.home, generate: false })).key;
  } catch (err) {
    if (err instanceof AirlockError && err.details.reason === 'missing') return undefined;
    throw err;
  }
}

/** The checkpoint public key the vault stores, or undefined (no database, not migrated, no key yet). Writes nothing. */
async function vaultVerifierKey(config: Config, env: NodeJS.ProcessEnv): Promise<CheckpointVerifierKey | undefined> {
  if (config.database.kind === 'sqlite' && !existsSync(config.database.path)) return undefined;
  const store = await openStore(config.database);
  try {
    const applied = (await store.migrationStatus()).some((m) => m.name === SEALED_KEYS_MIGRATION && m.executedAt !== null);
    if (!applied) return undefined;
    // Authenticated when the root key is at hand: a public key swapped in the database is refused.
    const publicKey = await Vault.checkpointPublicKey(store.db, await configuredRootKey(config, env));
    return publicKey === undefined ? undefined : checkpointVerifierKeyFrom(config.auditOrigin, publicKey);
  } finally {
    await store.close();
  }
}

/**
 * The checkpoint verifier key of this install for verifier-only commands: the vault's (stored in
 * clear), else the key file of a home not yet migrated. Never creates a key, a file or a
 * database. A home with neither: KEY_INVALID with `reason: 'missing'`.
 */
export async function homeCheckpointVerifierKey(config: Config, env: NodeJS.ProcessEnv = process.env): Promise<CheckpointVerifierKey> {
  return (await vaultVerifierKey(config, env)) ?? (await loadVerifierKey(config.home, config.auditOrigin));
}
