/**
 * Content-addressed blob store on the local file system.
 *
 * A blob lives at `<root>/sha256/<first 2 hex>/<remaining 62 hex>`. Writes go to a private
 * temporary file in `<root>/tmp`, are fsynced, then renamed into place and the directory is
 * fsynced: a reader sees the whole blob or nothing, and a crash leaves at worst a stray
 * temporary file. Every verified read re-hashes the bytes, because a blob on disk is only as
 * trustworthy as the last time someone checked it (bit rot, an operator's edit, an attacker).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { AirlockError, NotFoundError, ValidationError } from '../errors/index.js';

/** `sha256:` followed by 64 lower-case hex digits. */
export type Sha256Digest = `sha256:${string}`;

/** What a put stored: the content digest and its size in bytes. */
export interface BlobInfo {
  readonly digest: Sha256Digest;
  readonly size: number;
}

/**
 * The part of a blob store other domains depend on. Narrow on purpose: an S3-compatible
 * store can implement it (PUT, GET, HEAD). Verification does not belong to the store: use
 * `readBlobVerified` / `copyBlobVerified`, which hash on our side whatever the store says.
 */
export interface BlobStoreLike {
  /** Store bytes; a string is the path of a file to read. Idempotent for equal content. */
  put(source: string | Buffer | Readable): Promise<BlobInfo>;
  /** Stream a blob's bytes; `NotFoundError` when absent. */
  open(digest: string): Promise<Readable>;
  /** Whether a blob is stored (presence only; says nothing about integrity). */
  has(digest: string): Promise<boolean>;
}

/**
 * What the artifacts domain needs from object storage, and all it may assume: content
 * addressing (put returns the digest), a read that re-hashes and errors at its end on a
 * mismatch, presence and size. An S3-compatible store implements it with PUT (to a temporary
 * key, then copy), a GET piped through a hash, and HEAD; nothing here lists, deletes or
 * overwrites by name, so the store holds no authority beyond "these bytes have this digest".
 */
export interface ObjectStore {
  /** Store a file (a string is a path) or a stream; resolves once the bytes are durable. */
  put(source: string | Readable): Promise<BlobInfo>;
  /**
   * Stream an object; `NotFoundError` when absent. The stream re-hashes as it goes and errors
   * at its end (`STORAGE_FAILED`, `details.reason: 'blob_corrupt'`) if the bytes do not match.
   */
  open(digest: string): Promise<Readable>;
  /** Whether an object is stored (presence only; says nothing about integrity). */
  has(digest: string): Promise<boolean>;
  /** Its stored size, or undefined when absent (presence only). */
  stat(digest: string): Promise<BlobInfo | undefined>;
}

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** Whether `value` is a well-formed `sha256:<64 hex>` digest. */
export function isSha256Digest(value: unknown): value is Sha256Digest {
  return typeof value === 'string' && DIGEST_RE.test(value);
}

/**
 * Refuse anything but a canonical digest before it becomes a path: a digest comes from job
 * definitions and API input, and `sha256:../../x` must never reach the file system.
 */
export function assertSha256Digest(value: unknown, field = 'digest'): asserts value is Sha256Digest {
  if (!isSha256Digest(value)) {
    throw new ValidationError('invalid blob digest', [{ path: field, message: 'must be "sha256:" followed by 64 lower-case hex digits' }]);
  }
}

/** The digest of some bytes, in the store's format. */
export function sha256Digest(data: Buffer | string): Sha256Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** The corruption error: stable code, digest expected and found, never the content. */
export function blobCorruptError(digest: string, actual: string): AirlockError {
  return new AirlockError('STORAGE_FAILED', `blob ${digest} is corrupt: its content hashes to ${actual}`, {
    reason: 'blob_corrupt',
    digest,
    actual,
  });
}

/** Whether an error means "no space left" (the file system or a quota is full). */
export function isNoSpaceError(err: unknown): boolean {
  if (err instanceof AirlockError) return err.details.reason === 'disk_full';
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

const STORE = 'artifact store';

/** `target` names where bytes were going ("artifact store", a destination path). */
function storageError(target: string, action: string, err: unknown): AirlockError {
  const code = (err as NodeJS.ErrnoException | null)?.code ?? 'unknown';
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new AirlockError('STORAGE_FAILED', `${target}: out of space while ${action} (${code})`, { reason: 'disk_full', code }, { cause: err });
  }
  return new AirlockError('STORAGE_FAILED', `${target}: failed while ${action} (${code})`, { reason: 'io_error', code }, { cause: err });
}

/** Write all of `chunk` (a write may be short when the disk is nearly full). */
async function writeFully(fh: FileHandle, chunk: Buffer): Promise<void> {
  let offset = 0;
  while (offset < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, offset, chunk.length - offset);
    offset += bytesWritten;
  }
}

/** fsync a directory so a rename into it survives a crash (POSIX leaves it to the caller). */
export async function syncDirectory(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function toBuffer(chunk: unknown): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
}

/**
 * Stream `source` into `path` (created exclusively), hashing as it goes. Returns the digest
 * and size; the file is fsynced and closed. On any failure the file is removed. Errors from
 * writing are wrapped as `STORAGE_FAILED`; errors from the source propagate unchanged.
 */
async function spool(source: Readable, path: string, mode: number, target: string): Promise<BlobInfo> {
  const hash = createHash('sha256');
  let size = 0;
  let fh: FileHandle;
  try {
    fh = await open(path, 'wx', mode);
  } catch (err) {
    source.destroy();
    throw storageError(target, 'creating a temporary file', err);
  }
  try {
    for await (const raw of source) {
      const chunk = toBuffer(raw);
      hash.update(chunk);
      size += chunk.length;
      try {
        await writeFully(fh, chunk);
      } catch (err) {
        throw storageError(target, 'writing', err);
      }
    }
    try {
      await fh.sync();
    } catch (err) {
      throw storageError(target, 'flushing to disk', err);
    }
  } catch (err) {
    source.destroy();
    await fh.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw err;
  }
  await fh.close();
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

/** A pass-through that fails at the end when the bytes do not hash to `digest`. */
function verifier(digest: string): Transform {
  const hash = createHash('sha256');
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      hash.update(chunk);
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      const actual = `sha256:${hash.digest('hex')}`;
      callback(actual === digest ? null : blobCorruptError(digest, actual));
    },
  });
}

/** Read a whole blob from any store and check its hash before returning it. */
export async function readBlobVerified(store: Pick<BlobStoreLike, 'open'>, digest: string): Promise<Buffer> {
  assertSha256Digest(digest);
  const source = await store.open(digest);
  const hash = createHash('sha256');
  const chunks: Buffer[] = [];
  for await (const raw of source) {
    const chunk = toBuffer(raw);
    hash.update(chunk);
    chunks.push(chunk);
  }
  const actual = `sha256:${hash.digest('hex')}`;
  if (actual !== digest) throw blobCorruptError(digest, actual);
  return Buffer.concat(chunks);
}

/**
 * Copy a blob from any store to `destPath`, verifying as it streams. The bytes go to a
 * temporary file beside the destination, renamed over it only when the hash matches; on a
 * mismatch the temporary file is deleted and nothing appears at `destPath`.
 */
export async function copyBlobVerified(store: Pick<BlobStoreLike, 'open'>, digest: string, destPath: string, mode = 0o644): Promise<void> {
  assertSha256Digest(digest);
  const source = await store.open(digest);
  const dir = dirname(destPath);
  const tmp = join(dir, `.${basename(destPath)}.${randomBytes(6).toString('hex')}.part`);
  // A verifying store (ours) reports corruption from the stream itself; spool rethrows it.
  const info = await spool(source, tmp, mode, destPath);
  if (info.digest !== digest) {
    await unlink(tmp).catch(() => undefined);
    throw blobCorruptError(digest, info.digest);
  }
  try {
    await rename(tmp, destPath);
    await syncDirectory(dir);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw storageError(destPath, `moving blob ${digest} into place`, err);
  }
}

/**
 * The local-disk blob store.
 *
 * @example
 * const blobs = new BlobStore(join(airlockHome, 'artifacts'));
 * const { digest } = await blobs.put(Buffer.from('hello'));
 * const bytes = await blobs.readVerified(digest);
 */
export class BlobStore implements BlobStoreLike, ObjectStore {
  readonly root: string;
  private ready: Promise<void> | undefined;

  constructor(root: string) {
    this.root = root;
  }

  /** Where a blob with this digest lives (the digest is validated first). */
  pathFor(digest: string): string {
    assertSha256Digest(digest);
    const hex = digest.slice('sha256:'.length);
    return join(this.root, 'sha256', hex.slice(0, 2), hex.slice(2));
  }

  private ensureDirs(): Promise<void> {
    this.ready ??= (async () => {
      const madeTmp = await mkdir(join(this.root, 'tmp'), { recursive: true, mode: 0o700 });
      const madeBlobs = await mkdir(join(this.root, 'sha256'), { recursive: true, mode: 0o700 });
      // New directory entries are durable only once their parent is fsynced (as for blobs).
      if (madeTmp !== undefined || madeBlobs !== undefined) await syncDirectory(this.root);
    })().catch((err: unknown) => {
      this.ready = undefined;
      throw storageError(STORE, 'creating its directories', err);
    });
    return this.ready;
  }

  /**
   * Store bytes from a Buffer, a stream, or a file path (a string is always a path).
   * Concurrent puts of the same content are safe: each writes its own temporary file and the
   * last rename wins with identical bytes; a previously corrupted copy is replaced.
   */
  async put(source: string | Buffer | Readable): Promise<BlobInfo> {
    // A caller's stream can fail (a dropped upload) before we start reading it: keep that
    // error for the spool below instead of letting it escape as an uncaught exception.
    let early: Error | undefined;
    const keep = (err: Error): void => {
      early ??= err;
    };
    if (source instanceof Readable) source.on('error', keep);
    try {
      await this.ensureDirs();
    } catch (err) {
      if (source instanceof Readable) source.destroy();
      throw err;
    }
    if (early !== undefined) throw early;
    const input = typeof source === 'string' ? createReadStream(source) : Buffer.isBuffer(source) ? Readable.from([source]) : source;
    const tmp = join(this.root, 'tmp', `${randomBytes(12).toString('hex')}.part`);
    // Blobs are immutable: read-only on disk guards against accidental in-place edits.
    let info: BlobInfo;
    try {
      info = await spool(input, tmp, 0o444, STORE);
    } finally {
      if (source instanceof Readable) source.off('error', keep);
    }
    const dest = this.pathFor(info.digest);
    try {
      const created = await mkdir(dirname(dest), { recursive: true, mode: 0o700 });
      await rename(tmp, dest);
      await syncDirectory(dirname(dest));
      if (created !== undefined) await syncDirectory(dirname(dirname(dest)));
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw storageError(STORE, `storing blob ${info.digest}`, err);
    }
    return info;
  }

  private async openRaw(digest: string): Promise<Readable> {
    const path = this.pathFor(digest);
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`blob ${digest} is not in the artifact store`, { digest });
      throw storageError(STORE, `opening blob ${digest}`, err);
    }
    return fh.createReadStream();
  }

  /**
   * Stream a blob. The stream re-hashes as it goes and errors at its end with
   * `STORAGE_FAILED`/`blob_corrupt` if the content does not match; a consumer that must not
   * act on unverified bytes should use `readVerified` or `copyTo`.
   */
  async open(digest: string): Promise<Readable> {
    const raw = await this.openRaw(digest);
    const check = verifier(digest);
    raw.on('error', (err) => check.destroy(err));
    // Consumers get the corruption error through their own read (for await, pipeline); this
    // listener only keeps a late one (after a consumer stopped reading) from crashing the process.
    check.on('error', () => undefined);
    return raw.pipe(check);
  }

  /** The whole blob, re-hashed on every call; a mismatch throws `blob_corrupt`. */
  readVerified(digest: string): Promise<Buffer> {
    return readBlobVerified({ open: (d) => this.openRaw(d) }, digest);
  }

  /** Copy a blob to `destPath` atomically, refusing (and leaving nothing) on a mismatch. */
  copyTo(digest: string, destPath: string): Promise<void> {
    return copyBlobVerified({ open: (d) => this.openRaw(d) }, digest, destPath);
  }

  /** The blob file's size, or undefined when absent (presence only; reads verify content). */
  async stat(digest: string): Promise<BlobInfo | undefined> {
    const path = this.pathFor(digest);
    try {
      const s = await stat(path);
      return s.isFile() ? { digest: digest as Sha256Digest, size: s.size } : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw storageError(STORE, `checking blob ${digest}`, err);
    }
  }

  /** Whether the blob file exists (presence only; reads verify content). */
  async has(digest: string): Promise<boolean> {
    const path = this.pathFor(digest);
    try {
      return (await stat(path)).isFile();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw storageError(STORE, `checking blob ${digest}`, err);
    }
  }
}
