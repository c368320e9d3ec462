/**
 * HTTP figures: an authenticated, authorized and audited read against the real server, and
 * bare fastify on the same machine in the same run, both driven by autocannon.
 *
 * Three processes, never sharing an event loop: this figure child is the client (autocannon);
 * the server runs in a child of it, forked from this same file with `serve` as argv[2]. The
 * servers are measured one after the other, never side by side.
 *
 * The Airlock server is the product path: `openApp` (SQLite in a fresh AIRLOCK_HOME, migrated,
 * checkpointing on) and `startServer`, logging at the shipped default level to a file. Each
 * request to GET /api/v1/audit/tree carries a bearer session token (looked up by hash), is
 * authorized by the Cedar policy in force, and waits for its own audit record to be durable
 * (group commit) before the response leaves. Afterwards the server counts the audit records
 * of those reads, which must cover every response the client received.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { QUICK, describeError, emit, now, progress, round } from './lib.js';

const THIS_FILE = fileURLToPath(import.meta.url);
const GOAL_REQ_PER_S = 3000;
const BENCH_USER = 'bench-auditor';
/** Same shape and size as the tree head the Airlock route answers with. */
const BARE_BODY = { size: 123_456, rootHash: 'q1Xr4m0fJ8Q3oYy8mY5yXq2c6vGm4R0bZK3a9bV7t0Q=' };

// --- Protocol between the client (figure child) and the server child -----------------------

type ServerKind = 'airlock' | 'fastify';

interface ServeArgs {
  readonly kind: ServerKind;
  readonly home: string;
  readonly logLevel: string;
  /** Write a CPU profile of each measured window here (BENCH_CPU_PROF=1). */
  readonly profileDir: string | undefined;
}

type ToServer = { readonly kind: 'measure-start' } | { readonly kind: 'measure-stop' } | { readonly kind: 'stop' };

type FromServer =
  | { readonly kind: 'ready'; readonly url: string; readonly headers: Record<string, string> }
  | { readonly kind: 'measured'; readonly cpuMs: number; readonly wallMs: number; readonly loopDelayP99Ms: number; readonly loopDelayMaxMs: number; readonly profile: string | undefined }
  | { readonly kind: 'stopped'; readonly audit: AuditCount | undefined; readonly logBytes: number | undefined }
  | { readonly kind: 'error'; readonly message: string };

/** What the server's audit log says about the benchmark's reads. */
interface AuditCount {
  /** Growth of the tree head from before the first request to after the last one. */
  readonly headGrowth: number;
  /** Records of allowed audit.tree.read requests by the benchmark user. */
  readonly treeReads: number;
  readonly sizeAfter: number;
}

// --- Server child ----------------------------------------------------------------------------

interface Served {
  readonly url: string;
  readonly headers: Record<string, string>;
  close(): Promise<{ audit: AuditCount | undefined; logBytes: number | undefined }>;
}

async function serveFastify(): Promise<Served> {
  const { fastify } = await import('fastify');
  const server = fastify({ logger: false });
  server.get('/', async () => Promise.resolve(BARE_BODY));
  const url = await server.listen({ host: '127.0.0.1', port: 0 });
  return {
    url: `${url}/`,
    headers: {},
    close: async () => {
      await server.close();
      return { audit: undefined, logBytes: undefined };
    },
  };
}

async function serveAirlock(args: ServeArgs): Promise<Served> {
  const [{ Secret }, { openApp }, { loadConfig }, { totpAt }, { createLogger }, { startServer }, { createWriteStream }] = await Promise.all([
    import('otpauth'),
    import('../src/app/index.js'),
    import('../src/config/index.js'),
    import('../src/identity/index.js'),
    import('../src/observability/index.js'),
    import('../src/server/index.js'),
    import('node:fs'),
  ]);
  const config = loadConfig({ flags: { home: args.home, logLevel: args.logLevel }, env: {} });
  // Logs go to a file, as they would to a journal in production: their cost is part of the figure.
  const logPath = join(args.home, 'server.log');
  const logStream = createWriteStream(logPath);
  const logger = createLogger(config.logLevel, logStream);
  const app = await openApp(config, { migrate: true, checkpointing: true, logger });
  try {
    // A real user through the real flow: setup token, password, TOTP enrolment, then a
    // password+TOTP login. The login uses the next 30 s step (inside the drift window), since a
    // step already used for enrolment is refused as a replay.
    const actor = { kind: 'system', id: 'bench' } as const;
    const made = await app.identity.users.create(actor, { username: BENCH_USER, roles: ['security-auditor'] });
    const password = `bench ${made.setupToken.slice(0, 12)} correct horse battery`;
    const enrolment = await app.identity.users.beginSetup({ username: BENCH_USER, setupToken: made.setupToken, password });
    const seed = Buffer.from(Secret.fromBase32(enrolment.secret).bytes);
    await app.identity.users.confirmSetup({ username: BENCH_USER, setupToken: made.setupToken, code: totpAt(seed, new Date()) });
    const session = await app.identity.sessions.login({ username: BENCH_USER, password, code: totpAt(seed, new Date(Date.now() + 30_000)) });
    const sizeBefore = (await app.audit.head()).size;
    const running = await startServer(app, { logger, host: '127.0.0.1', port: 0 });
    return {
      url: `${running.url}/api/v1/audit/tree`,
      headers: { authorization: `Bearer ${session.token}`, 'user-agent': 'airlock-bench/autocannon' },
      close: async () => {
        await running.close();
        const sizeAfter = (await app.audit.head()).size;
        const row = await app.store.db
          .selectFrom('audit_events')
          .select((eb) => eb.fn.countAll<number | string>().as('n'))
          .where('action', '=', 'audit.tree.read')
          .where('actor_kind', '=', 'user')
          .where('actor_id', '=', BENCH_USER)
          .where('outcome', '=', 'allowed')
          .executeTakeFirstOrThrow();
        await app.close();
        await new Promise<void>((done) => logStream.end(done));
        return { audit: { headGrowth: sizeAfter - sizeBefore, treeReads: Number(row.n), sizeAfter }, logBytes: statSync(logPath).size };
      },
    };
  } catch (err) {
    await app.close();
    throw err;
  }
}

function sendToClient(msg: FromServer): Promise<void> {
  return new Promise((done) => {
    if (process.send === undefined) done();
    else
      process.send(msg, undefined, {}, () => {
        done();
      });
  });
}

/** Profiles only the measured window (not set-up, password hashing or shutdown). */
async function startProfiler(): Promise<{ stop(path: string): Promise<void> }> {
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return {
    stop: async (path) => {
      const { profile } = await session.post('Profiler.stop');
      writeFileSync(path, JSON.stringify(profile));
      session.disconnect();
    },
  };
}

async function serveMain(args: ServeArgs): Promise<void> {
  const served = args.kind === 'airlock' ? await serveAirlock(args) : await serveFastify();
  let cpu0 = process.cpuUsage();
  let t0 = now();
  let profiler: Awaited<ReturnType<typeof startProfiler>> | undefined;
  // Event-loop stalls (a synchronous commit, a WAL checkpoint, GC) show here as well as in p99.
  const loopDelay = monitorEventLoopDelay({ resolution: 5 });
  process.on('message', (raw) => {
    const msg = raw as ToServer;
    void (async () => {
      switch (msg.kind) {
        case 'measure-start':
          if (args.profileDir !== undefined) profiler = await startProfiler();
          cpu0 = process.cpuUsage();
          t0 = now();
          loopDelay.reset();
          loopDelay.enable();
          return;
        case 'measure-stop': {
          const cpu = process.cpuUsage(cpu0);
          const wallMs = now() - t0;
          loopDelay.disable();
          let profile: string | undefined;
          if (profiler !== undefined && args.profileDir !== undefined) {
            mkdirSync(args.profileDir, { recursive: true });
            profile = join(args.profileDir, `http-${args.kind}-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`);
            await profiler.stop(profile);
            profiler = undefined;
          }
          const loopDelayP99Ms = round(loopDelay.percentile(99) / 1e6, 1);
          const loopDelayMaxMs = round(loopDelay.max / 1e6, 1);
          await sendToClient({ kind: 'measured', cpuMs: (cpu.user + cpu.system) / 1000, wallMs, loopDelayP99Ms, loopDelayMaxMs, profile });
          return;
        }
        case 'stop': {
          const result = await served.close();
          await sendToClient({ kind: 'stopped', ...result });
          process.exit(0);
        }
      }
    })().catch(async (err: unknown) => {
      await sendToClient({ kind: 'error', message: describeError(err) });
      process.exit(1);
    });
  });
  await sendToClient({ kind: 'ready', url: served.url, headers: served.headers });
}

// --- Client side (the figure child) ---------------------------------------------------------

/** The part of autocannon's result this figure reads (autocannon ships no types). */
interface CannonResult {
  readonly duration: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
  readonly resets: number;
  readonly '2xx': number;
  readonly statusCodeStats: Readonly<Record<string, { count: number }>>;
  readonly latency: { readonly p50: number; readonly p90: number; readonly p99: number; readonly p99_9: number; readonly max: number; readonly average: number };
  readonly requests: { readonly sent: number };
}

type Autocannon = (options: { url: string; connections: number; duration: number; headers: Record<string, string>; pipelining: number }) => Promise<CannonResult>;

/** A forked server and its replies, read one at a time. */
class ServerChild {
  private readonly inbox: FromServer[] = [];
  private waiter: ((msg: FromServer) => void) | undefined;
  private exited: Error | undefined;
  private onExit: ((err: Error) => void) | undefined;

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (raw) => {
      const msg = raw as FromServer;
      const w = this.waiter;
      this.waiter = undefined;
      if (w !== undefined) w(msg);
      else this.inbox.push(msg);
    });
    child.on('exit', (code, signal) => {
      this.exited = new Error(`server child exited with ${signal ?? String(code)}`);
      this.onExit?.(this.exited);
    });
  }

  static start(args: ServeArgs): ServerChild {
    return new ServerChild(fork(THIS_FILE, ['serve', JSON.stringify(args)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  }

  send(msg: ToServer): void {
    this.child.send(msg);
  }

  /** The next message of `kind`; an error message or the child's exit rejects. */
  async next<K extends FromServer['kind']>(kind: K): Promise<Extract<FromServer, { kind: K }>> {
    const msg =
      this.inbox.shift() ??
      (await new Promise<FromServer>((resolvePromise, reject) => {
        if (this.exited !== undefined) {
          reject(this.exited);
          return;
        }
        this.waiter = resolvePromise;
        this.onExit = reject;
      }));
    if (msg.kind === 'error') throw new Error(`server child: ${msg.message}`);
    if (msg.kind !== kind) throw new Error(`server child sent ${msg.kind}, expected ${kind}`);
    return msg as Extract<FromServer, { kind: K }>;
  }

  kill(): void {
    if (this.exited === undefined) this.child.kill('SIGKILL');
  }
}

/** Refuse a run with any error or non-2xx answer: a benchmark of 401s measures nothing. */
function checkClean(label: string, r: CannonResult): void {
  if (r.errors > 0 || r.timeouts > 0 || r.non2xx > 0 || r['2xx'] === 0) {
    const statuses = Object.entries(r.statusCodeStats)
      .map(([s, v]) => `${s}: ${v.count}`)
      .join(', ');
    throw new Error(`${label}: ${r['2xx']} 2xx, ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts (status counts ${statuses || 'none'})`);
  }
}

interface Measured {
  readonly reqPerSec: number;
  readonly result: CannonResult;
  /** 2xx responses over warm-up and measured window. */
  readonly served: number;
  readonly serverCpuPct: number;
  readonly clientCpuPct: number;
  readonly loopDelayP99Ms: number;
  readonly loopDelayMaxMs: number;
  readonly stopped: Extract<FromServer, { kind: 'stopped' }>;
  readonly profile: string | undefined;
}

interface LoadSettings {
  readonly connections: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
}

async function measure(cannon: Autocannon, args: ServeArgs, load: LoadSettings): Promise<Measured> {
  const server = ServerChild.start(args);
  try {
    const { url, headers } = await server.next('ready');
    const run = async (seconds: number): Promise<CannonResult> => {
      const r = await cannon({ url, connections: load.connections, duration: seconds, headers, pipelining: 1 });
      return r;
    };
    progress(`http: ${args.kind} listening at ${url}; warm-up ${load.warmupSeconds} s, then ${load.seconds} s with ${load.connections} connections`);
    const warm = await run(load.warmupSeconds);
    checkClean(`${args.kind} warm-up`, warm);
    server.send({ kind: 'measure-start' });
    const cpu0 = process.cpuUsage();
    const result = await run(load.seconds);
    const cpu = process.cpuUsage(cpu0);
    server.send({ kind: 'measure-stop' });
    const window = await server.next('measured');
    checkClean(args.kind, result);
    server.send({ kind: 'stop' });
    const stopped = await server.next('stopped');
    return {
      reqPerSec: result['2xx'] / result.duration,
      result,
      served: warm['2xx'] + result['2xx'],
      serverCpuPct: round((100 * window.cpuMs) / window.wallMs, 1),
      clientCpuPct: round((100 * (cpu.user + cpu.system)) / 1000 / (result.duration * 1000), 1),
      loopDelayP99Ms: window.loopDelayP99Ms,
      loopDelayMaxMs: window.loopDelayMaxMs,
      stopped,
      profile: window.profile,
    };
  } finally {
    server.kill();
  }
}

function latencyFields(r: CannonResult): Record<string, number> {
  return { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, p999: r.latency.p99_9, max: r.latency.max, mean: round(r.latency.average, 2) };
}

/**
 * Figure 8: `http_bare_fastify` (the ceiling of this machine, client included) and
 * `http_authed_read` (GET /api/v1/audit/tree on the real server), same autocannon settings.
 */
export async function benchHttp(dir: string, seconds: number, connections: number): Promise<void> {
  const require = createRequire(import.meta.url);
  const cannon = require('autocannon') as Autocannon;
  const load: LoadSettings = { connections, seconds, warmupSeconds: QUICK ? 1 : 2 };
  const logLevel = process.env.BENCH_HTTP_LOG_LEVEL ?? 'info';
  const profileDir = process.env.BENCH_CPU_PROF === '1' ? resolve('bench-profiles') : undefined;
  const common = { connections, pipelining: 1, seconds: load.seconds, warmupSeconds: load.warmupSeconds, client: 'autocannon 8, same machine, own process' };

  const bare = await measure(cannon, { kind: 'fastify', home: dir, logLevel, profileDir: undefined }, load);
  emit({
    bench: 'http_bare_fastify',
    value: Math.round(bare.reqPerSec),
    unit: 'req/s',
    ...latencyFields(bare.result),
    n: bare.result['2xx'],
    non2xx: bare.result.non2xx,
    errors: bare.result.errors,
    serverCpuPct: bare.serverCpuPct,
    clientCpuPct: bare.clientCpuPct,
    route: 'GET / -> small JSON, no logger, no hooks',
    ...common,
  });

  const home = join(dir, 'http-home');
  mkdirSync(home, { recursive: true });
  const authed = await measure(cannon, { kind: 'airlock', home, logLevel, profileDir }, load);
  const audit = authed.stopped.audit;
  if (audit === undefined) throw new Error('the Airlock server reported no audit count');
  // Every response the client got must have its record; requests cut off when a run ended may
  // have been served (and recorded) without the client counting them, so >= rather than ==.
  const audited = audit.treeReads >= authed.served && audit.headGrowth >= authed.served;
  const rate = Math.round(authed.reqPerSec);
  emit({
    bench: 'http_authed_read',
    value: rate,
    unit: 'req/s',
    ...latencyFields(authed.result),
    n: authed.result['2xx'],
    non2xx: authed.result.non2xx,
    errors: authed.result.errors,
    serverCpuPct: authed.serverCpuPct,
    clientCpuPct: authed.clientCpuPct,
    serverLoopDelayP99Ms: authed.loopDelayP99Ms,
    serverLoopDelayMaxMs: authed.loopDelayMaxMs,
    bareFastifyReqPerSec: Math.round(bare.reqPerSec),
    ratioToBare: round(authed.reqPerSec / bare.reqPerSec, 3),
    served: authed.served,
    auditedTreeReads: audit.treeReads,
    auditHeadGrowth: audit.headGrowth,
    auditSizeAfter: audit.sizeAfter,
    audited,
    route: 'GET /api/v1/audit/tree, bearer session, Cedar, audit record per request',
    database: 'sqlite',
    logLevel,
    logBytesPerRequest: authed.stopped.logBytes === undefined ? null : round(authed.stopped.logBytes / Math.max(1, audit.headGrowth), 1),
    ...common,
    goal: `>= ${GOAL_REQ_PER_S} req/s, every request audited`,
    pass: rate >= GOAL_REQ_PER_S && audited,
  });
  if (authed.profile !== undefined) progress(`http: CPU profile of the Airlock server's measured window: ${authed.profile}`);
  if (!audited) throw new Error(`audit records (${audit.treeReads} tree reads, head +${audit.headGrowth}) do not cover the ${authed.served} responses served`);
}

if (process.argv[2] === 'serve' && resolve(process.argv[1] ?? '') === THIS_FILE) {
  const args = JSON.parse(process.argv[3] ?? '{}') as ServeArgs;
  serveMain(args).catch(async (err: unknown) => {
    progress(`http server child failed: ${describeError(err, true)}`);
    await sendToClient({ kind: 'error', message: describeError(err) });
    process.exit(1);
  });
}
