/** SBOMs: CycloneDX from an npm lockfile, and the lockfile's packages for provenance. */
export { SBOM_SPEC_VERSION, sbomFromLockfile, sbomJson } from './cyclonedx.js';
export { MAX_LOCKFILE_BYTES, integrityDigests, lockfileGraph, lockfilePackages, npmPurl } from './lockfile.js';
export type { LockfileGraph, LockfilePackage, PackageScope } from './lockfile.js';
