/** Secrets vault (issue 5): the root key, envelope encryption of secret versions and sealed blobs, the audit HMAC. */
export { loadRootKey, masterKeyPath, MASTER_KEY_ENV, RootKey } from './root-key.js';
export type { LoadRootKeyOptions, LoadedRootKey, RootKeySource } from './root-key.js';
export { DEFAULT_REWRAP_BATCH, MAX_PLAINTEXT_BYTES, Vault, secretScope } from './vault.js';
export type { RewrapOptions, RewrapProgress, SecretAad, VaultDeps, VersionCiphertext } from './vault.js';
