/** Spawning compiled Airlock processes (workers, CLI) from tests. */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const APPEND_WORKER = `${ROOT}dist/test/support/workers/append-worker.js`;

/** Tests that drive real processes run the compiled code: fail clearly if it is missing. */
export function requireBuild(path: string = APPEND_WORKER): void {
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`npm run build\` first (npm test does)`);
}

/** A running worker: its acknowledged (seq, requestId) pairs, as they arrive. */
export interface Worker {
  readonly child: ChildProcess;
  readonly acks: { seq: number; requestId: string }[];
  readonly exited: Promise<number | null>;
  stderr(): string;
}

/** Start the append worker in its own process. */
export function startAppendWorker(input: unknown): Worker {
  requireBuild();
  const child = spawn(process.execPath, [APPEND_WORKER], {
    env: { PATH: process.env.PATH, AIRLOCK_WORKER: JSON.stringify(input) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const acks: { seq: number; requestId: string }[] = [];
  let buf = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buf += chunk;
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const line of lines) {
      const [, seq, requestId] = line.split(' ');
      if (seq !== undefined && requestId !== undefined) acks.push({ seq: Number(seq), requestId });
    }
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, acks, exited, stderr: () => err };
}
