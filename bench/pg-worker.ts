/**
 * One PostgreSQL writer process of figure 4 (forked by pg.ts). It opens its own store (its
 * own pool and group-commit executor, as one server replica would), reports ready, waits for
 * "go", keeps `inflight` appends in flight for the duration, and reports what was
 * acknowledged, i.e. what the log promised is durable.
 */
import { AuditLog } from '../src/audit/index.js';
import { openStore } from '../src/storage/index.js';
import { closedLoop, describeError, makeEvent } from './lib.js';

/** Arguments, passed as one JSON argv entry. */
export interface WorkerArgs {
  readonly url: string;
  readonly schema: string;
  readonly inflight: number;
  readonly durationMs: number;
  readonly writer: number;
}

export type WorkerMessage =
  | { readonly kind: 'ready' }
  | { readonly kind: 'done'; readonly acked: number; readonly failures: number; readonly elapsedS: number; readonly latencies: number[] }
  | { readonly kind: 'error'; readonly message: string };

function send(msg: WorkerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined) resolve();
    else
      process.send(msg, undefined, {}, () => {
        resolve();
      });
  });
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '{}') as WorkerArgs;
  const store = await openStore({ kind: 'postgres', url: args.url, schema: args.schema });
  try {
    const log = new AuditLog(store);
    await store.ping();
    const go = new Promise<void>((resolve) => {
      process.once('message', () => {
        resolve();
      });
    });
    await send({ kind: 'ready' });
    await go;
    let issued = 0;
    const r = await closedLoop({
      concurrency: args.inflight,
      durationMs: args.durationMs,
      op: () => log.append(makeEvent(issued++, args.writer)),
    });
    await send({ kind: 'done', acked: r.count - r.failures, failures: r.failures, elapsedS: r.elapsedS, latencies: r.latency.values() });
  } finally {
    await store.close();
  }
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    await send({ kind: 'error', message: describeError(err) });
    process.exit(1);
  },
);
