/** Artifacts: content-addressed storage for everything a pipeline consumes and produces, published names and releases. */
export {
  BlobStore,
  assertSha256Digest,
  blobCorruptError,
  copyBlobVerified,
  isNoSpaceError,
  isSha256Digest,
  readBlobVerified,
  sha256Digest,
  syncDirectory,
} from './blob-store.js';
export type { BlobInfo, BlobStoreLike, ObjectStore, Sha256Digest } from './blob-store.js';
export { Artifacts, MAX_LIST, integrityError } from './service.js';
export type { ArtifactDetail, ArtifactDownload, ArtifactName, ArtifactSummary, ArtifactsDeps, IntegrityReason, PublishResult, ReleaseDetail, ReleaseSummary, RunOutput, VerifyResult } from './service.js';
