/** Health checks: HTTP status and command checks, retries, timeouts, bounded masked output. */
import { createServer } from 'node:http';
import type { Server, ServerResponse } from 'node:http';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runHealthCheck } from '../../src/delivery/health.js';
import { ValidationError } from '../../src/errors/index.js';

const SECRET = 'hunter2-very-secret-token';
let dir: string;
let server: Server;
let base: string;
const hung: ServerResponse[] = [];

function listen(s: Server, port = 0): Promise<number> {
  return new Promise((resolve) => {
    s.listen(port, '127.0.0.1', () => {
      const address = s.address();
      resolve(typeof address === 'object' && address !== null ? address.port : 0);
    });
  });
}

/** Whether a process exists and is not a zombie. */
async function running(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return !['Z', 'X'].includes(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? '');
  } catch {
    return false;
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-health-'));
  server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path === '/ok') res.writeHead(200).end('ok');
    else if (path === '/fail') res.writeHead(500).end(`database down, token=${SECRET}`);
    else if (path === '/redirect') res.writeHead(302, { location: '/ok' }).end();
    else if (path === '/hang') hung.push(res);
    else res.writeHead(404).end();
  });
  base = `http://127.0.0.1:${await listen(server)}`;
});

afterAll(async () => {
  for (const res of hung) res.destroy();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

describe('runHealthCheck over HTTP', () => {
  it('passes on the expected status', async () => {
    const result = await runHealthCheck({ url: `${base}/ok`, status: 200, timeoutMs: 1000 }, { env: {}, cwd: dir, timeoutMs: 2000 });
    expect(result).toMatchObject({ ok: true, attempts: 1 });
    expect(result.detail).toBe(`GET ${base}/ok answered 200: ok`);
  });

  it('fails on another status, names both, and masks secrets in the body excerpt', async () => {
    const result = await runHealthCheck({ url: `${base}/fail?token=${SECRET}`, status: 200, timeoutMs: 1000 }, { env: {}, cwd: dir, timeoutMs: 2000, retries: 2, intervalMs: 10, secrets: [SECRET] });
    expect(result.ok).toBe(false);
    expect(result.attempts).toBe(3);
    expect(result.detail).toContain('answered 500, expected 200');
    expect(result.detail).toContain('token=***');
    expect(result.detail).not.toContain(SECRET);
  });

  it('does not follow redirects: a 302 is not the 200 it expects', async () => {
    const result = await runHealthCheck({ url: `${base}/redirect`, status: 200, timeoutMs: 1000 }, { env: {}, cwd: dir, timeoutMs: 1000, retries: 0 });
    expect(result.ok).toBe(false);
    expect(result.detail).toContain('answered 302');
  });

  it('reports a request that gets no answer within its timeout', async () => {
    const started = Date.now();
    const result = await runHealthCheck({ url: `${base}/hang`, status: 200, timeoutMs: 300 }, { env: {}, cwd: dir, timeoutMs: 5000, retries: 0 });
    expect(result).toMatchObject({ ok: false, attempts: 1 });
    expect(result.detail).toContain('no answer within 300 ms');
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('keeps retrying until a service that starts late answers', async () => {
    const late = createServer((_req, res) => res.writeHead(200).end('ok'));
    const port = await listen(late);
    await new Promise((r) => late.close(r));
    const timer = setTimeout(() => void listen(late, port), 600);
    try {
      const result = await runHealthCheck({ url: `http://127.0.0.1:${port}/`, status: 200, timeoutMs: 500 }, { env: {}, cwd: dir, timeoutMs: 10_000, intervalMs: 100 });
      expect(result.ok).toBe(true);
      expect(result.attempts).toBeGreaterThan(1);
      expect(result.durationMs).toBeGreaterThanOrEqual(500);
    } finally {
      clearTimeout(timer);
      late.closeAllConnections();
      await new Promise((r) => late.close(r));
    }
  });

  it('gives up at the overall timeout when nothing listens', async () => {
    const probe = createServer();
    const port = await listen(probe);
    await new Promise((r) => probe.close(r));
    const result = await runHealthCheck({ url: `http://127.0.0.1:${port}/`, status: 200, timeoutMs: 200 }, { env: {}, cwd: dir, timeoutMs: 800, intervalMs: 100 });
    expect(result.ok).toBe(false);
    expect(result.detail).toContain('ECONNREFUSED');
    expect(result.attempts).toBeGreaterThan(1);
    expect(result.durationMs).toBeLessThan(2000);
  });

  it('refuses checks that are not HTTP or are malformed', async () => {
    await expect(runHealthCheck({ url: 'file:///etc/passwd', status: 200, timeoutMs: 100 }, { env: {}, cwd: dir, timeoutMs: 100 })).rejects.toBeInstanceOf(ValidationError);
    const err = await runHealthCheck({ url: `${base}/ok`, status: 42, timeoutMs: 0 }, { env: {}, cwd: dir, timeoutMs: -1, retries: -1 }).catch((e: unknown) => e);
    expect((err as ValidationError).issues.map((i) => i.path)).toEqual(['check.status', 'check.timeoutMs', 'timeoutMs', 'retries']);
    await expect(runHealthCheck({ command: '  ' }, { env: {}, cwd: dir, timeoutMs: 100 })).rejects.toBeInstanceOf(ValidationError);
  });
});

describe('runHealthCheck with a command', () => {
  it('passes when the command exits 0', async () => {
    const result = await runHealthCheck({ command: 'echo healthy' }, { env: {}, cwd: dir, timeoutMs: 5000 });
    expect(result).toMatchObject({ ok: true, attempts: 1, detail: 'the command exited 0: healthy' });
  });

  it('reports exit 1 with its output, secrets masked', async () => {
    const result = await runHealthCheck({ command: 'echo "token $TOKEN" >&2; exit 1' }, { env: { TOKEN: SECRET }, cwd: dir, timeoutMs: 5000, retries: 0, secrets: [SECRET] });
    expect(result).toMatchObject({ ok: false, attempts: 1 });
    expect(result.detail).toBe('the command exited 1: token ***');
  });

  it('runs with only the environment it is given, in cwd', async () => {
    process.env.AIRLOCK_HEALTH_TEST_LEAK = 'leaked';
    try {
      await writeFile(join(dir, 'marker'), 'here');
      const result = await runHealthCheck({ command: 'test -z "${AIRLOCK_HEALTH_TEST_LEAK:-}" && test "$GIVEN" = yes && test -f marker' }, { env: { GIVEN: 'yes' }, cwd: dir, timeoutMs: 5000, retries: 0 });
      expect(result.ok).toBe(true);
    } finally {
      delete process.env.AIRLOCK_HEALTH_TEST_LEAK;
    }
  });

  it('retries a command until it passes', async () => {
    const flag = join(dir, 'ready');
    const timer = setTimeout(() => void writeFile(flag, ''), 400);
    try {
      const result = await runHealthCheck({ command: `test -f ${flag}` }, { env: {}, cwd: dir, timeoutMs: 10_000, intervalMs: 50 });
      expect(result.ok).toBe(true);
      expect(result.attempts).toBeGreaterThan(1);
    } finally {
      clearTimeout(timer);
    }
  });

  it('kills the whole process group of a command that times out', async () => {
    const pidFile = join(dir, 'bg.pid');
    const started = Date.now();
    const result = await runHealthCheck({ command: `sleep 60 & echo $! > ${pidFile}; echo waiting; sleep 60` }, { env: {}, cwd: dir, timeoutMs: 500, killGraceMs: 300 });
    expect(result.ok).toBe(false);
    expect(result.detail).toBe("the command was still running when the health check's 500 ms ran out: waiting");
    expect(Date.now() - started).toBeLessThan(3000);
    const bg = Number((await readFile(pidFile, 'utf8')).trim());
    expect(await running(bg)).toBe(false);
  });

  it('sweeps background children of a command that exits on its own', async () => {
    const pidFile = join(dir, 'left.pid');
    const result = await runHealthCheck({ command: `sleep 60 & echo $! > ${pidFile}; exit 0` }, { env: {}, cwd: dir, timeoutMs: 5000, killGraceMs: 300 });
    expect(result.ok).toBe(true);
    expect(await running(Number((await readFile(pidFile, 'utf8')).trim()))).toBe(false);
  });

  it('keeps only a bounded tail of the output', async () => {
    const result = await runHealthCheck({ command: "head -c 100000 /dev/zero | tr '\\0' x; echo END; exit 3" }, { env: {}, cwd: dir, timeoutMs: 5000, retries: 0 });
    expect(result.ok).toBe(false);
    expect(result.detail.startsWith('the command exited 3: …')).toBe(true);
    expect(result.detail.endsWith('xEND')).toBe(true);
    expect(result.detail.length).toBeLessThan(2200);
  });
});
