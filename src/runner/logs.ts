/**
 * One output stream of a step: forwarded live, hashed in full, stored up to a cap.
 *
 * Nothing is accumulated in memory: bytes under the cap stream straight into the blob store
 * (which spools to a temporary file), with backpressure pausing the child's pipe; bytes over
 * the cap are hashed, counted and dropped. A step printing gigabytes costs CPU, not RAM.
 */
import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import type { Readable } from 'node:stream';
import type { BlobInfo, BlobStoreLike } from '../artifacts/index.js';
import type { LogRecord } from './types.js';

export type StreamName = 'stdout' | 'stderr';

/** The marker appended to a stored log that hit the cap. */
export function truncationMarker(kept: number, dropped: number): string {
  return `\n[airlock: output truncated after ${kept} bytes; ${dropped} bytes dropped]\n`;
}

export class LogCapture {
  private readonly hash = createHash('sha256');
  private readonly sink = new PassThrough();
  private readonly put: Promise<BlobInfo | null>;
  private total = 0;
  private kept = 0;
  private paused: Readable | null = null;
  /** Why the stream could not be stored, if it could not. */
  storeError: unknown = undefined;

  constructor(
    readonly name: StreamName,
    blobs: BlobStoreLike,
    private readonly maxBytes: number,
    private readonly onOutput: (stream: StreamName, chunk: Buffer) => void,
    /** Masks secret values before anything is hashed, stored or streamed (issue 5). */
    private readonly masker?: { push(chunk: Buffer): Buffer; flush(): Buffer },
  ) {
    this.put = blobs.put(this.sink).catch((err: unknown) => {
      // Keep the step's pipe draining: a full store must not block (or deadlock) the step.
      this.storeError = err;
      this.sink.destroy();
      this.resume();
      return null;
    });
  }

  private resume(): void {
    const source = this.paused;
    this.paused = null;
    source?.resume();
  }

  /** Changes while bytes are still flowing (or waiting on the store): lets a waiter tell stuck from slow. */
  get progress(): string {
    return `${this.total}:${this.paused === null ? 0 : 1}`;
  }

  /** Consume a child's stream. */
  attach(source: Readable): void {
    source.on('data', (chunk: Buffer) => {
      this.write(chunk, source);
    });
  }

  write(raw: Buffer, source?: Readable): void {
    this.emit(this.masker === undefined ? raw : this.masker.push(raw), source);
  }

  private emit(chunk: Buffer, source?: Readable): void {
    if (chunk.length === 0) return;
    this.hash.update(chunk);
    this.total += chunk.length;
    try {
      this.onOutput(this.name, chunk);
    } catch {
      // A listener's failure (a closed websocket) must not lose the stored record.
    }
    if (this.storeError !== undefined || this.kept >= this.maxBytes) return;
    const part = chunk.length <= this.maxBytes - this.kept ? chunk : chunk.subarray(0, this.maxBytes - this.kept);
    this.kept += part.length;
    if (!this.sink.write(part) && source !== undefined && this.paused === null) {
      this.paused = source;
      source.pause();
      this.sink.once('drain', () => {
        this.resume();
      });
    }
  }

  /** End the stream and store it; never throws (a store failure is in `storeError`). */
  async finish(): Promise<LogRecord> {
    // The masker holds back a possible partial secret at the end; release it, masked.
    if (this.masker !== undefined) this.emit(this.masker.flush());
    const truncated = this.total > this.kept;
    if (this.storeError === undefined) {
      if (truncated) this.sink.write(truncationMarker(this.kept, this.total - this.kept));
      this.sink.end();
    }
    const stored = await this.put;
    return Object.freeze({
      digest: stored?.digest ?? null,
      bytes: this.total,
      truncated,
      streamDigest: `sha256:${this.hash.digest('hex')}`,
    });
  }
}
