/** Secrets vault (issue 5): the root key, envelope encryption of secret versions and sealed blobs, the audit HMAC, the keys it holds for other domains. */
export { loadRootKey, masterKeyPath, MASTER_KEY_ENV, RootKey } from './root-key.js';
export type { LoadRootKeyOptions, LoadedRootKey, RootKeySource } from './root-key.js';
export { DEFAULT_REWRAP_BATCH, MAX_PLAINTEXT_BYTES, Vault, secretScope } from './vault.js';
export type { RewrapOptions, RewrapProgress, SecretAad, VaultDeps, VersionCiphertext } from './vault.js';
export { SEALED_KEY_DESCRIPTIONS, SEALED_KEY_NAMES } from './sealed-keys.js';
export type { CheckpointKeyPair, LegacyKeyFile, LegacyKeyFiles, SealKey as VaultSealKey, SealedKeyEvent, SealedKeyName } from './sealed-keys.js';
