/** Artifacts: content-addressed storage for everything a pipeline consumes and produces. */
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
export type { BlobInfo, BlobStoreLike, Sha256Digest } from './blob-store.js';
