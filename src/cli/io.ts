/**
 * Where the CLI reads and writes. Machine output (--json) goes to stdout only; messages,
 * logs and progress go to stderr, so `airlock ... --json | jq` always sees one clean document.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { AirlockError, NotFoundError } from '../errors/index.js';

/** The process streams and environment, injectable for in-process use. */
export interface Io {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly stdin: NodeJS.ReadableStream;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  /** Progress is shown by default only to a person watching a terminal. */
  readonly stderrIsTTY: boolean;
}

let pipeGuard = false;

/** The real process. */
export function processIo(): Io {
  if (!pipeGuard) {
    pipeGuard = true;
    // `airlock audit tail -f | head -1`: the reader went away, which is a normal way to stop.
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    cwd: process.cwd(),
    stderrIsTTY: process.stderr.isTTY,
  };
}

/** One line of human output on stdout. */
export function say(io: Io, text: string): void {
  io.stdout.write(`${text}\n`);
}

/** One line on stderr. */
export function note(io: Io, text: string): void {
  io.stderr.write(`${text}\n`);
}

/** Exactly one JSON document on stdout. */
export function printJson(io: Io, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Write one line, waiting for the stream to drain when its buffer is full (large exports). */
export function writeLine(stream: NodeJS.WritableStream, line: string): Promise<void> {
  if (stream.write(`${line}\n`)) return Promise.resolve();
  return new Promise((done) => stream.once('drain', done));
}

/** A progress display; every method is a no-op when progress is off. */
export interface Progress {
  /** `total` is omitted when unknown (a streamed input). */
  update(done: number, total?: number): void;
  end(): void;
}

/**
 * Progress on stderr when it is a terminal or `--progress` was given: an updating line on a
 * terminal, otherwise at most one plain line a second (for CI logs).
 */
export function progress(io: Io, label: string, forced: boolean): Progress {
  if (!forced && !io.stderrIsTTY) return { update: () => undefined, end: () => undefined };
  const tty = io.stderrIsTTY;
  let last = 0;
  let shown = false;
  return {
    update(done, total) {
      const now = Date.now();
      if ((total === undefined || done < total) && now - last < (tty ? 100 : 1000)) return;
      last = now;
      const pct = total === undefined ? undefined : total === 0 ? 100 : Math.floor((done * 100) / total);
      const text = total === undefined ? `${label}: ${done}` : `${label}: ${done}/${total} (${String(pct)}%)`;
      if (tty) io.stderr.write(`\r${text}\x1b[K`);
      else io.stderr.write(`${text}\n`);
      shown = true;
    },
    end() {
      if (tty && shown) io.stderr.write('\n');
    },
  };
}

function readFailure(path: string, err: unknown): AirlockError {
  const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
  if (code === 'ENOENT' || code === 'ENOTDIR') return new NotFoundError(`cannot read ${path}: no such file`, { path });
  return new AirlockError('INTERNAL', `cannot read ${path} (${code})`, { path });
}

/** The whole text of FILE, or of stdin when FILE is "-". */
export async function readInput(io: Io, file: string): Promise<string> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of io.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    return Buffer.concat(chunks).toString('utf8');
  }
  const path = resolve(io.cwd, file);
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw readFailure(path, err);
  }
}

/** The lines of FILE (or stdin for "-"), streamed: an export can be larger than memory. */
export async function inputLines(io: Io, file: string): Promise<AsyncIterable<string>> {
  if (file === '-') return createInterface({ input: io.stdin, crlfDelay: Infinity });
  const path = resolve(io.cwd, file);
  const stream = createReadStream(path, { encoding: 'utf8' });
  // Surface a missing file as a clean error before any line is read.
  await new Promise<void>((ready, fail) => {
    stream.once('open', () => {
      ready();
    });
    stream.once('error', (err) => {
      fail(readFailure(path, err));
    });
  });
  return createInterface({ input: stream, crlfDelay: Infinity });
}
