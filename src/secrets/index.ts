/** Secrets: scoped, versioned, envelope-encrypted values released only to steps that declare them (promise 2). */
export { Secrets, MAX_SECRET_BYTES } from './service.js';
export type { DeploymentRelease, Released, SecretCipher, SecretInfo, SecretScope, SecretsDeps } from './service.js';
