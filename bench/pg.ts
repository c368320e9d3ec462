/**
 * Figure 4: PostgreSQL, 8 writer processes appending to one log in one fresh schema. Every
 * process has its own pool and group-commit executor; they serialise on the audit head row
 * lock (`select ... for update`), as replicas of one server do. Afterwards verifyLog must
 * find one linear, gap-free log holding exactly the acknowledged appends.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { verifyLog } from '../src/audit/index.js';
import { openStore } from '../src/storage/index.js';
import { QUICK, Samples, emit, now, onInterrupt, progress, round, timedCommits } from './lib.js';
import type { WorkerArgs, WorkerMessage } from './pg-worker.js';

export const PG_URL = process.env.AIRLOCK_BENCH_DATABASE_URL ?? process.env.AIRLOCK_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const WRITERS = 8;
const GOAL_EVENTS_PER_S = 3000;
const WORKER = fileURLToPath(new URL('./pg-worker.js', import.meta.url));

async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    await client.query(`drop schema if exists ${schema} cascade`);
  } finally {
    await client.end();
  }
}

interface Done {
  readonly acked: number;
  readonly failures: number;
  readonly elapsedS: number;
  readonly latencies: number[];
}

/** Fork the writers, start them together, collect their results. */
async function runWriters(schema: string, inflight: number, durationMs: number): Promise<Done[]> {
  const children: ChildProcess[] = [];
  const ready: Promise<void>[] = [];
  const done: Promise<Done>[] = [];
  for (let writer = 0; writer < WRITERS; writer++) {
    const args: WorkerArgs = { url: PG_URL, schema, inflight, durationMs, writer };
    const child = fork(WORKER, [JSON.stringify(args)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(child);
    let onReady: () => void = () => undefined;
    ready.push(new Promise<void>((resolve) => (onReady = resolve)));
    done.push(
      new Promise<Done>((resolve, reject) => {
        child.on('message', (message) => {
          const m = message as WorkerMessage;
          if (m.kind === 'ready') onReady();
          else if (m.kind === 'done') resolve(m);
          else reject(new Error(`writer ${writer}: ${m.message}`));
        });
        child.on('exit', (code) => {
          if (code !== 0) reject(new Error(`writer ${writer} exited with ${String(code)}`));
        });
      }),
    );
  }
  try {
    await Promise.race([Promise.all(ready), Promise.all(done)]);
    for (const c of children) c.send('go');
    return await Promise.all(done);
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill();
  }
}

async function oneConfiguration(inflight: number, seconds: number): Promise<void> {
  const schema = `bench_${randomBytes(6).toString('hex')}`;
  const forget = onInterrupt(() => dropSchema(schema));
  const store = await openStore({ kind: 'postgres', url: PG_URL, schema });
  try {
    await store.migrate();
    progress(`postgres: ${WRITERS} writer processes x ${inflight} in flight for ${seconds} s (schema ${schema})`);
    const t0 = now();
    const results = await runWriters(schema, inflight, seconds * 1000);
    const wallS = (now() - t0) / 1000;
    const acked = results.reduce((s, r) => s + r.acked, 0);
    const failures = results.reduce((s, r) => s + r.failures, 0);
    // Writers start together on "go"; the slowest one's window is the run's length.
    const elapsedS = Math.max(...results.map((r) => r.elapsedS));
    const lat = new Samples();
    for (const r of results) lat.pushAll(r.latencies);
    const l = lat.summary();

    progress(`postgres: verifying the log (${acked} acknowledged appends)`);
    const v0 = now();
    const report = await verifyLog({ db: store.db, verifiers: [], origin: 'bench.airlock.local/audit' });
    const verifyS = (now() - v0) / 1000;
    const rows = await store.db.selectFrom('audit_events').select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.max('seq').as('maxSeq')]).executeTakeFirst();
    const rowCount = rows?.n ?? 0;
    const verified = report.ok && report.treeSize === acked && rowCount === acked && (rows?.maxSeq ?? -1) === acked - 1;
    if (!verified) progress(`postgres: verification failed: ok=${report.ok} size=${report.treeSize} rows=${rowCount} acked=${acked} findings=${JSON.stringify(report.findings.slice(0, 3))}`);
    const perS = acked / elapsedS;
    emit({
      bench: `pg_8_writers_inflight_${inflight}`,
      value: Math.round(perS),
      unit: 'events/s',
      engine: 'postgres',
      writers: WRITERS,
      inflightPerWriter: inflight,
      durationS: round(elapsedS, 2),
      wallS: round(wallS, 2),
      n: acked,
      perWriterMin: Math.min(...results.map((r) => r.acked)),
      perWriterMax: Math.max(...results.map((r) => r.acked)),
      failures,
      p50: l.p50,
      p99: l.p99,
      p999: l.p999,
      max: l.max,
      latencyUnit: 'ms',
      verified,
      logSize: report.treeSize,
      verifyS: round(verifyS, 2),
      goal: `>= ${GOAL_EVENTS_PER_S} events/s`,
      pass: perS >= GOAL_EVENTS_PER_S && verified && failures === 0,
    });
  } finally {
    await store.close();
    await dropSchema(schema);
    forget();
    progress(`postgres: dropped schema ${schema}`);
  }
}

/**
 * Reference: what one PostgreSQL connection can commit durably per second on this server
 * (begin; insert 100 bytes; commit), i.e. the ceiling of any design that holds a lock across
 * each commit's WAL flush.
 */
async function pgCommitReference(): Promise<void> {
  const schema = `bench_${randomBytes(6).toString('hex')}`;
  const forget = onInterrupt(() => dropSchema(schema));
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    await client.query(`create schema ${schema}`);
    await client.query(`create table ${schema}.probe (id bigserial primary key, payload bytea not null)`);
    const settings = await client.query<{ name: string; setting: string }>(
      `select name, setting from pg_settings where name in ('fsync', 'synchronous_commit', 'wal_sync_method', 'commit_delay')`,
    );
    const setting = (name: string): string => settings.rows.find((r) => r.name === name)?.setting ?? 'unknown';
    const payload = randomBytes(100);
    const { latency: lat, seconds } = await timedCommits(QUICK ? 1000 : 3000, async () => {
      await client.query('begin');
      await client.query(`insert into ${schema}.probe (payload) values ($1)`, [payload]);
      await client.query('commit');
    });
    const l = lat.summary();
    emit({
      bench: 'ref_pg_commit',
      value: Math.round(lat.count / seconds),
      unit: 'commits/s',
      engine: 'postgres',
      n: lat.count,
      durationS: round(seconds, 2),
      p50: l.p50,
      p99: l.p99,
      latencyUnit: 'ms',
      method: 'one connection: begin; insert 100 B; commit',
      fsync: setting('fsync'),
      synchronousCommit: setting('synchronous_commit'),
      walSyncMethod: setting('wal_sync_method'),
    });
  } finally {
    await client.query(`drop schema if exists ${schema} cascade`).catch(() => undefined);
    await client.end();
    forget();
  }
}

export async function pgFigures(): Promise<void> {
  await pgCommitReference();
  const raw = Number(process.env.BENCH_PG_SECONDS ?? '');
  const seconds = Number.isFinite(raw) && raw > 0 ? raw : QUICK ? 3 : 20;
  for (const inflight of [1, 32]) await oneConfiguration(inflight, seconds);
}
