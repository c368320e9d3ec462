import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobStore, copyBlobVerified, readBlobVerified, sha256Digest } from '../../src/artifacts/index.js';
import type { BlobStoreLike } from '../../src/artifacts/index.js';
import { AirlockError, NotFoundError, ValidationError } from '../../src/errors/index.js';

let dir: string;
let store: BlobStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
  store = new BlobStore(join(dir, 'artifacts'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Overwrite a stored blob in place, as bit rot or an attacker with disk access would. */
async function corrupt(digest: string, content = 'tampered'): Promise<void> {
  const path = store.pathFor(digest);
  await chmod(path, 0o644);
  await writeFile(path, content);
}

async function drain(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('BlobStore', () => {
  it('stores by SHA-256 under sha256/ab/cdef… and reads back verified', async () => {
    const data = Buffer.from('hello airlock\n');
    const info = await store.put(data);
    const hex = createHash('sha256').update(data).digest('hex');
    expect(info).toEqual({ digest: `sha256:${hex}`, size: data.length });
    expect(store.pathFor(info.digest)).toBe(join(dir, 'artifacts', 'sha256', hex.slice(0, 2), hex.slice(2)));
    expect(await readFile(store.pathFor(info.digest))).toEqual(data);
    expect(await store.readVerified(info.digest)).toEqual(data);
    expect(await drain(await store.open(info.digest))).toEqual(data);
    expect(await store.has(info.digest)).toBe(true);
  });

  it('accepts a file path and a stream, and is idempotent', async () => {
    const file = join(dir, 'in.bin');
    const data = Buffer.from([0, 255, 128, 10, 13, 0xc3, 0x28]);
    await writeFile(file, data);
    const a = await store.put(file);
    const b = await store.put(Readable.from([data.subarray(0, 3), data.subarray(3)]));
    const c = await store.put(data);
    expect(a).toEqual(b);
    expect(b).toEqual(c);
    expect(await store.readVerified(a.digest)).toEqual(data);
    expect(await readdir(join(dir, 'artifacts', 'tmp'))).toEqual([]);
  });

  it('never shows a partial blob: nothing is visible until the write completes', async () => {
    const source = new PassThrough();
    const full = Buffer.alloc(256 * 1024, 7);
    const digest = sha256Digest(full);
    const pending = store.put(source);
    source.write(full.subarray(0, 100_000));
    await new Promise((r) => setTimeout(r, 50));
    // Mid-write: the bytes sit in a private temporary file, not at the content address.
    expect(await store.has(digest)).toBe(false);
    const tmpFiles = await readdir(join(dir, 'artifacts', 'tmp'));
    expect(tmpFiles).toHaveLength(1);
    source.end(full.subarray(100_000));
    expect((await pending).digest).toBe(digest);
    expect(await store.has(digest)).toBe(true);
    expect(await readdir(join(dir, 'artifacts', 'tmp'))).toEqual([]);
  });

  it('a source that fails mid-stream leaves no blob and no temporary file', async () => {
    const source = new PassThrough();
    const pending = store.put(source);
    source.write('partial content');
    setTimeout(() => source.destroy(new Error('upload cut')), 20);
    await expect(pending).rejects.toThrow('upload cut');
    expect(await readdir(join(dir, 'artifacts', 'tmp'))).toEqual([]);
    expect(await store.has(sha256Digest('partial content'))).toBe(false);
  });

  it('concurrent puts of the same content all succeed with one intact blob', async () => {
    const data = Buffer.alloc(512 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
    const results = await Promise.all(Array.from({ length: 16 }, (_, i) => store.put(i % 2 === 0 ? data : Readable.from([data]))));
    expect(new Set(results.map((r) => r.digest)).size).toBe(1);
    expect(await store.readVerified(results[0]!.digest)).toEqual(data);
    expect(await readdir(join(dir, 'artifacts', 'tmp'))).toEqual([]);
    const hex = results[0]!.digest.slice(7);
    expect(await readdir(join(dir, 'artifacts', 'sha256', hex.slice(0, 2)))).toEqual([hex.slice(2)]);
  });

  it('refuses a corrupt blob on every read path, naming expected and found digests', async () => {
    const { digest } = await store.put(Buffer.from('the real artifact'));
    expect(await store.readVerified(digest)).toEqual(Buffer.from('the real artifact'));
    await corrupt(digest);
    const found = sha256Digest('tampered');
    const err = await store.readVerified(digest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AirlockError);
    expect((err as AirlockError).code).toBe('STORAGE_FAILED');
    expect((err as AirlockError).details).toEqual({ reason: 'blob_corrupt', digest, actual: found });
    await expect(drain(await store.open(digest))).rejects.toMatchObject({ details: { reason: 'blob_corrupt' } });
    // Presence is not integrity: has() still says yes, reads still say no.
    expect(await store.has(digest)).toBe(true);
    await expect(store.readVerified(digest)).rejects.toMatchObject({ details: { reason: 'blob_corrupt' } });
  });

  it('copyTo writes the destination atomically and deletes the partial file on a mismatch', async () => {
    const { digest } = await store.put(Buffer.from('artifact bytes'));
    const out = join(dir, 'out');
    await store.copyTo(digest, join(dir, 'copy.bin'));
    expect(await readFile(join(dir, 'copy.bin'), 'utf8')).toBe('artifact bytes');

    await corrupt(digest);
    await mkdir(out);
    await expect(store.copyTo(digest, join(out, 'app.tgz'))).rejects.toMatchObject({ code: 'STORAGE_FAILED', details: { reason: 'blob_corrupt', digest } });
    expect(await readdir(out)).toEqual([]);
    // An existing destination is left untouched by a refused copy.
    await writeFile(join(out, 'app.tgz'), 'previous');
    await expect(store.copyTo(digest, join(out, 'app.tgz'))).rejects.toBeInstanceOf(AirlockError);
    expect(await readdir(out)).toEqual(['app.tgz']);
    expect(await readFile(join(out, 'app.tgz'), 'utf8')).toBe('previous');
  });

  it('a later put of the right content heals a corrupted blob', async () => {
    const { digest } = await store.put(Buffer.from('healable'));
    await corrupt(digest);
    await store.put(Buffer.from('healable'));
    expect(await store.readVerified(digest)).toEqual(Buffer.from('healable'));
  });

  it('rejects malformed digests before touching the file system (no traversal)', async () => {
    for (const bad of ['sha256:../../etc/passwd', 'sha256:ABC', `sha512:${'a'.repeat(64)}`, `sha256:${'A'.repeat(64)}`, '']) {
      await expect(store.readVerified(bad)).rejects.toBeInstanceOf(ValidationError);
      await expect(store.open(bad)).rejects.toBeInstanceOf(ValidationError);
      await expect(store.has(bad)).rejects.toBeInstanceOf(ValidationError);
    }
  });

  it('a missing blob is NotFound', async () => {
    const digest = sha256Digest('never stored');
    expect(await store.has(digest)).toBe(false);
    await expect(store.open(digest)).rejects.toBeInstanceOf(NotFoundError);
    await expect(store.readVerified(digest)).rejects.toBeInstanceOf(NotFoundError);
  });
});

describe('verification over any BlobStoreLike', () => {
  /** A store that lies: it serves whatever bytes it likes for any digest (a hostile S3). */
  const lying: BlobStoreLike = {
    put: () => Promise.reject(new Error('read-only')),
    open: () => Promise.resolve(Readable.from([Buffer.from('substituted')])),
    has: () => Promise.resolve(true),
  };

  it('readBlobVerified and copyBlobVerified hash on our side', async () => {
    const digest = sha256Digest('what we asked for');
    await expect(readBlobVerified(lying, digest)).rejects.toMatchObject({ details: { reason: 'blob_corrupt', actual: sha256Digest('substituted') } });
    await expect(copyBlobVerified(lying, digest, join(dir, 'dest'))).rejects.toMatchObject({ details: { reason: 'blob_corrupt' } });
    expect(await readdir(dir)).toEqual([]);
  });
});
