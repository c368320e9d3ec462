/**
 * Vault figures: envelope encryption and decryption of one secret value, the crypto path of
 * `Vault.encrypt` / `Vault.decrypt` without the database (a fresh 256-bit data key, AES-256-GCM
 * of the value, AES-256-GCM wrap of the data key under a KEK; and the reverse). The value is
 * 64 bytes (a typical token); a 4 KiB value (a certificate, a small file) is shown beside it.
 * Also the audit hash (HMAC-SHA256) that every secret read records.
 *
 * Then the product path: a running step's runner fetching its declared secrets through the API
 * (POST /api/v1/workload/secrets with the step's workload token) from a real server on SQLite,
 * one request at a time. Each fetch verifies the token, reads the step and its run, asks the
 * Cedar release policy per secret, decrypts, and waits for its audit records to be durable.
 */
import { execFileSync, fork } from 'node:child_process';
import { createHmac, createSecretKey, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openApp } from '../src/app/index.js';
import { loadConfig } from '../src/config/index.js';
import { createLogger } from '../src/observability/index.js';
import { startServer } from '../src/server/index.js';
import { newKek, openEnvelope, sealEnvelope, secretContext } from '../src/vault/envelope.js';
import type { Envelope } from '../src/vault/envelope.js';
import { QUICK, Samples, emit, now, progress, round, timeLoop } from './lib.js';

const GOAL_OPS_PER_S = 10_000;
const GOAL_FETCH_P99_MS = 5;
const FETCHES = QUICK ? 300 : 3000;
/**
 * Fetches before the measured ones: V8 optimizes the hot path on both sides, and the WAL goes
 * through its first cycle to the checkpoint size (2000 pages; each fetch writes a few pages):
 * until then each commit grows the WAL file, and growing a file costs its fsync a metadata
 * journal write. A long-running server is past both; their p99 is reported beside the figure
 * (`warmupP99Ms`), not hidden.
 */
const WARMUP_FETCHES = QUICK ? 300 : 3000;
const THIS_FILE = fileURLToPath(import.meta.url);

interface ClientResult {
  readonly p50: number;
  readonly p99: number;
  readonly wallMs: number;
  readonly warmupP99: number;
}

/**
 * The client, in its own process (forked from this file) so that its fetch machinery does not
 * share the server's event loop: one request at a time, each timed from send to parsed answer.
 */
async function fetchClient(url: string, token: string, n: number, expect: number): Promise<void> {
  // node:http with one kept-alive connection: a light client, so the figure is mostly the
  // server's (undici's fetch costs the shared 2 cores more than the request itself).
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const target = new URL(url);
  const once = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = request({ host: target.hostname, port: target.port, path: target.pathname, method: 'POST', agent, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': '2' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = JSON.parse(Buffer.concat(chunks).toString()) as { secrets?: unknown[] };
          if (res.statusCode !== 200 || body.secrets?.length !== expect) reject(new Error(`fetch answered ${String(res.statusCode)}`));
          else resolve();
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end('{}');
    });
  const warmup = new Samples();
  for (let i = 0; i < WARMUP_FETCHES; i++) {
    const s = now();
    await once();
    warmup.push(now() - s);
  }
  const samples = new Samples();
  const t0 = now();
  for (let i = 0; i < n; i++) {
    const s = now();
    await once();
    samples.push(now() - s);
  }
  const s = samples.summary();
  const result: ClientResult = { p50: s.p50, p99: s.p99, wallMs: now() - t0, warmupP99: warmup.summary().p99 };
  process.send?.(result);
}

if (process.argv[1] === THIS_FILE && process.argv[2] === 'fetch-client') {
  fetchClient(process.argv[3] ?? '', process.env.BENCH_FETCH_TOKEN ?? '', Number(process.argv[4]), Number(process.argv[5])).catch((err: unknown) => {
    process.stderr.write(`fetch client failed: ${String(err)}\n`);
    process.exit(1);
  });
}

/** Lets queued IPC messages (the emitted lines) go out between CPU-bound figures. */
const breathe = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Ops/s and per-op latency of `op` over about `ms`, after a warm-up. */
function measure(ms: number, op: (i: number) => void): { opsPerS: number; n: number; p50: number; p99: number } {
  let i = 0;
  timeLoop(Math.min(300, ms / 4), () => op(i++), 100); // warm-up (JIT)
  const t = timeLoop(ms, () => op(i++), 100);
  // Latency on a separate, shorter pass, so timing each call does not slow the throughput figure.
  const samples = new Samples();
  for (let k = 0; k < 5_000; k++) {
    const t0 = now();
    op(i++);
    samples.push(now() - t0);
  }
  const s = samples.summary();
  return { opsPerS: Math.round(t.iterations / t.elapsedS), n: t.iterations, p50: s.p50, p99: s.p99 };
}

const FETCH_SECRETS = ['DB_PASSWORD', 'API_TOKEN', 'SIGNING_KEY'];

/**
 * p50/p99 of a step's secret fetch through the API, for a step declaring one secret (what
 * Vault's KV-read figure measures) and one declaring three (64 bytes each): two steps of one run.
 */
async function benchFetch(scratch: string): Promise<void> {
  const dir = mkdtempSync(join(scratch, 'vault-'));
  const repo = join(dir, 'repo');
  mkdirSync(repo);
  writeFileSync(join(repo, 'airlock.yaml'), `version: 1\npipeline: fetch\nowners: [bench]\nstages:\n  one:\n    steps:\n      - { name: s1, run: "true", secrets: [DB_PASSWORD] }\n      - { name: s3, run: "true", secrets: [${FETCH_SECRETS.join(', ')}] }\n`);
  const env = { ...process.env, GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@b', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@b' };
  for (const args of [['init', '-q'], ['add', '-A'], ['commit', '-q', '-m', 'bench']]) execFileSync('git', ['-C', repo, ...args], { env });
  const config = loadConfig({ flags: { home: join(dir, 'home'), listen: '127.0.0.1:0' }, env: {} });
  const app = await openApp(config, { migrate: true });
  const server = await startServer(app, { logger: createLogger('silent'), host: '127.0.0.1', port: 0 });
  try {
    const actor = { kind: 'system' as const, id: 'bench' };
    await app.projects.add(actor, { name: 'fetch', repo });
    for (const name of FETCH_SECRETS) await app.secrets.set(actor, { name, scope: { project: 'fetch' }, value: randomBytes(64) });
    await app.runs.start(actor, { project: 'fetch' });
    // Claimed by hand, as a runner would: no embedded runner competes for the steps.
    const jobs = [await app.runs.claim({ name: 'bench-runner', labels: ['embedded'] }), await app.runs.claim({ name: 'bench-runner', labels: ['embedded'] })];
    for (const job of jobs) {
      if (job === undefined) throw new Error('the steps were not queued');
      const count = job.secrets.length;
      const token = (await app.providedEnv(job, 'bench-runner')).AIRLOCK_TOKEN ?? '';
      progress(`vault: ${FETCHES} fetches of ${count} secret(s) through the API, one at a time, from a client process`);
      // The token goes through the environment, not argv (which `ps` shows).
      const client = fork(THIS_FILE, ['fetch-client', `${server.url}/api/v1/workload/secrets`, String(FETCHES), String(count)], { env: { ...process.env, BENCH_FETCH_TOKEN: token } });
      const s = await new Promise<ClientResult>((resolve, reject) => {
        client.once('message', (m) => {
          resolve(m as ClientResult);
        });
        client.once('exit', (code) => {
          reject(new Error(`the fetch client exited (${String(code)}) without a result`));
        });
      });
      emit({
        bench: count === 1 ? 'vault_step_secret_fetch_p99' : `vault_step_secret_fetch_${count}_p99`,
        value: s.p99,
        unit: 'ms',
        p50Ms: s.p50,
        n: FETCHES,
        warmupFetches: WARMUP_FETCHES,
        warmupP99Ms: s.warmupP99,
        secretsPerFetch: count,
        fetchesPerS: Math.round(FETCHES / (s.wallMs / 1000)),
        api: `POST /api/v1/workload/secrets: JWT verify, Cedar route + ${count} release decision(s), ${count} decrypt(s), ${count + 1} audit records in one durable commit (SQLite)`,
        goal: `<= ${GOAL_FETCH_P99_MS} ms`,
        pass: s.p99 <= GOAL_FETCH_P99_MS,
      });
      await app.runs.complete(job.stepId, 'bench-runner', { status: 'succeeded', exitCode: 0, reason: undefined, outputs: [], evidence: null });
    }
  } finally {
    await server.close();
    await app.close();
  }
}

export async function benchVault(scratch: string): Promise<void> {
  await benchFetch(scratch);
  const ms = QUICK ? 500 : 3000;
  const { kek } = newKek();
  const scope = 'project:payments/env:production';

  for (const size of [64, 4096]) {
    const value = randomBytes(size);
    progress(`vault: envelope encrypt, ${size}-byte value`);
    const enc = measure(ms, (i) => sealEnvelope(kek, secretContext(`sec-${i & 1023}`, 1, scope), value));
    emit({
      bench: size === 64 ? 'vault_envelope_encrypt' : 'vault_envelope_encrypt_4k',
      value: enc.opsPerS,
      unit: 'ops/s',
      valueBytes: size,
      n: enc.n,
      p50Ms: enc.p50,
      p99Ms: enc.p99,
      api: 'sealEnvelope: random DEK + AES-256-GCM value + AES-256-GCM DEK wrap (Vault.encrypt without the active-KEK read)',
      goal: `>= ${GOAL_OPS_PER_S} ops/s`,
      pass: enc.opsPerS >= GOAL_OPS_PER_S,
    });

    await breathe();
    // 1024 distinct envelopes, decrypted round-robin: each call unwraps a data key and opens a value.
    const envelopes: Envelope[] = Array.from({ length: 1024 }, (_, k) => sealEnvelope(kek, secretContext(`sec-${k}`, 1, scope), value));
    progress(`vault: envelope decrypt, ${size}-byte value`);
    const dec = measure(ms, (i) => {
      const k = i & 1023;
      const out = openEnvelope(kek, secretContext(`sec-${k}`, 1, scope), envelopes[k]!);
      if (out.length !== size) throw new Error('decrypted value has the wrong length');
    });
    emit({
      bench: size === 64 ? 'vault_envelope_decrypt' : 'vault_envelope_decrypt_4k',
      value: dec.opsPerS,
      unit: 'ops/s',
      valueBytes: size,
      n: dec.n,
      p50Ms: dec.p50,
      p99Ms: dec.p99,
      api: 'openEnvelope: AES-256-GCM DEK unwrap + AES-256-GCM value (Vault.decrypt without the row read)',
      goal: `>= ${GOAL_OPS_PER_S} ops/s`,
      pass: dec.opsPerS >= GOAL_OPS_PER_S,
    });
  }

  await breathe();
  progress('vault: audit hash (HMAC-SHA256) of a 64-byte value');
  const hmacKey = createSecretKey(randomBytes(32));
  const value = randomBytes(64);
  const h = measure(ms, () => createHmac('sha256', hmacKey).update(value).digest('hex'));
  emit({ bench: 'vault_audit_hash', value: h.opsPerS, unit: 'ops/s', valueBytes: 64, n: h.n, p50Ms: h.p50, p99Ms: h.p99, api: 'createHmac sha256 (Vault.auditHash)' });
  progress(`vault: done (${round(ms / 1000, 1)} s per figure)`);
}
