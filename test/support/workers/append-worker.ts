/**
 * A separate OS process that appends audit events and prints one line per acknowledged
 * append ("ack <seq> <requestId>"), so tests can kill it at any moment and then check that
 * every acknowledged event survived. Compiled to dist/ by `npm run build`.
 * Input: AIRLOCK_WORKER = JSON { database, count, concurrency, tag }.
 */
import { AuditLog } from '../../../src/audit/index.js';
import type { DatabaseConfig } from '../../../src/config/index.js';
import { openStore } from '../../../src/storage/index.js';

interface WorkerInput {
  readonly database: DatabaseConfig;
  readonly count: number;
  readonly concurrency: number;
  readonly tag: string;
}

const input = JSON.parse(process.env.AIRLOCK_WORKER ?? '{}') as WorkerInput;
const store = await openStore(input.database);
const log = new AuditLog(store);
let next = 0;
const out: string[] = [];
const flush = (): void => {
  if (out.length > 0) process.stdout.write(out.splice(0).join(''));
};
const timer = setInterval(flush, 5);

async function lane(): Promise<void> {
  while (next < input.count) {
    const i = next++;
    const requestId = `${input.tag}-${i}`;
    const e = await log.append({
      actor: { kind: 'service', id: input.tag },
      action: 'test.append',
      resource: `worker/${input.tag}/${i}`,
      outcome: 'allowed',
      context: { requestId },
      details: { i },
    });
    out.push(`ack ${e.seq} ${requestId}\n`);
  }
}

await Promise.all(Array.from({ length: input.concurrency }, lane));
clearInterval(timer);
flush();
await store.close();
