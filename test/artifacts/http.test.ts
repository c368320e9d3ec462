/**
 * Artifacts over HTTP and from the CLI, on both engines, behind the real enforcement point
 * and request audit: publish needs artifacts.write (operators, not developers), downloads are
 * octet streams re-hashed on both ends, corrupt blobs are refused and recorded, releases pin.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { Command } from 'commander';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Digest } from '../../src/artifacts/index.js';
import { registerArtifactCommands } from '../../src/cli/artifact-commands.js';
import type { Cli } from '../../src/cli/cli.js';
import { AirlockError } from '../../src/errors/index.js';
import { buildServer } from '../../src/server/index.js';
import { ENGINES } from '../support/engines.js';
import { TestClock, expectError, login, makeUser, rid, recordOf, silent } from '../server/support.js';
import type { TestApp } from '../server/support.js';
import { openTestApp } from '../server/support.js';
import { corrupt, seedProject, seedRun } from './support.js';

describe.each(ENGINES)('artifacts over HTTP and the CLI on %s', (engine) => {
  let t: TestApp;
  let server: FastifyInstance;
  let url: string;
  const clock = new TestClock();
  let op: string;
  let dev: string;
  let scratch: string;
  let runId: string;
  let runNumber: number;
  let digests: Record<string, string>;

  beforeAll(async () => {
    t = await openTestApp(engine, { clock });
    const app = t.app;
    const artifacts = app.artifacts;
    server = await buildServer(app, { logger: silent });
    await server.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
    op = await login(server, clock, await makeUser(app, clock, 'olga', ['operator']));
    dev = await login(server, clock, await makeUser(app, clock, 'dave', ['developer']));
    const project = await seedProject(app.store, 'web');
    const r = await seedRun(app.store, app.blobs, project, 1, { outputs: { 'dist/app.tgz': 'the app, version one', 'dist/flip.bin': 'flip my bytes', 'dist/size.bin': 'short', 'dist/notes.txt': 'release notes' } });
    await app.store.transact((tx) => artifacts.recordOutputs(tx, r.id, r.outputs));
    runId = r.id;
    runNumber = r.number;
    digests = Object.fromEntries(r.outputs.map((o) => [o.path, o.digest]));
    scratch = mkdtempSync(join(tmpdir(), 'airlock-artifacts-cli-'));
  }, 60_000);

  afterAll(async () => {
    await server.close();
    await t.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  });

  const call = (token: string | undefined, method: 'GET' | 'POST', path: string, payload?: Record<string, unknown>, requestId = rid('art')) =>
    server.inject({ method, url: path, headers: { 'x-request-id': requestId, ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) }, ...(payload === undefined ? {} : { payload }) });

  /** Run one `airlock artifact|release …` command in process against the listening server. */
  async function cli(token: string, ...args: string[]): Promise<{ code: number; stdout: string }> {
    let stdout = '';
    const sink = (write: (s: string) => void) => new Writable({ write: (chunk: Buffer, _e, done) => { write(chunk.toString()); done(); } });
    const c: Cli = { io: { stdout: sink((s) => (stdout += s)), stderr: sink(() => undefined), stdin: process.stdin, env: { AIRLOCK_SERVER: url, AIRLOCK_TOKEN: token }, cwd: scratch, stderrIsTTY: false }, exitCode: 0, logLevel: undefined };
    const program = new Command('airlock').exitOverride().configureOutput({ writeOut: (s) => (stdout += s), writeErr: () => undefined });
    registerArtifactCommands(program, c, (cmd, jsonHelp) => cmd.option('--server <url>', 'server').option('--json', jsonHelp ?? 'json'));
    await program.parseAsync(args, { from: 'user' });
    return { code: c.exitCode, stdout };
  }

  it('publish needs artifacts.write: operators may, developers and anonymous callers are refused and recorded', async () => {
    const body = { name: 'acme/web', version: '1.0.0', digest: digests['dist/app.tgz']!, run: `web#${runNumber}`, path: 'dist/app.tgz' };
    const anon = await call(undefined, 'POST', '/api/v1/artifacts', body);
    expectError(anon, 401, 'UNAUTHENTICATED');
    const id = rid('dev-publish');
    expectError(await call(dev, 'POST', '/api/v1/artifacts', body, id), 403, 'FORBIDDEN');
    expect(await recordOf(t.app, id)).toMatchObject({ action: 'artifacts.write', outcome: 'denied', actor: { id: 'dave' } });

    const created = await call(op, 'POST', '/api/v1/artifacts', body);
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json()).toMatchObject({ name: 'acme/web', version: '1.0.0', runId, path: 'dist/app.tgz', created: true });
    const again = await call(op, 'POST', '/api/v1/artifacts', body);
    expect(again.statusCode).toBe(200);
    expect(again.json()).toMatchObject({ created: false });
    const moved = await call(op, 'POST', '/api/v1/artifacts', { ...body, digest: digests['dist/notes.txt']!, path: 'dist/notes.txt' });
    expect(expectError(moved, 409, 'CONFLICT').message).toContain('published names never change');
    const denied = (await t.app.audit.search({ action: 'artifacts.publish', outcome: 'denied', limit: 10 })).map((e) => e.event);
    expect(denied).toEqual([expect.objectContaining({ actor: { kind: 'user', id: 'olga' }, resource: 'artifacts/names/acme/web@1.0.0' })]);
    // Unknown fields and malformed digests are named.
    expect(expectError(await call(op, 'POST', '/api/v1/artifacts', { ...body, extra: 1 }), 400, 'VALIDATION_FAILED').message).toContain('extra');
    expect(expectError(await call(op, 'POST', '/api/v1/artifacts', { ...body, digest: 'sha256:XYZ' }), 400, 'VALIDATION_FAILED').message).toContain('digest');
  });

  it('lists and shows (a name with "/" percent-encoded), for developers too', async () => {
    const list = await call(dev, 'GET', `/api/v1/artifacts?run=${runId}`);
    expect(list.statusCode, list.body).toBe(200);
    expect(list.json<{ artifacts: { path: string }[] }>().artifacts.map((a) => a.path)).toEqual(['dist/app.tgz', 'dist/flip.bin', 'dist/size.bin', 'dist/notes.txt']);
    const shown = await call(dev, 'GET', `/api/v1/artifacts/${encodeURIComponent('acme/web@1.0.0')}`);
    expect(shown.statusCode, shown.body).toBe(200);
    expect(shown.json()).toMatchObject({ digest: digests['dist/app.tgz'], producedBy: { runId, project: 'web', runNumber } });
    expectError(await call(dev, 'GET', '/api/v1/artifacts?run=x&name=y'), 400, 'VALIDATION_FAILED');
    expectError(await call(dev, 'GET', `/api/v1/artifacts/${encodeURIComponent('acme/web@9')}`), 404, 'NOT_FOUND');
  });

  it('downloads as an octet stream with its digest, recorded; a corrupt blob is refused and recorded', async () => {
    const id = rid('download');
    const res = await call(dev, 'GET', `/api/v1/artifacts/${digests['dist/app.tgz']!}/content`, undefined, id);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/octet-stream');
    expect(res.headers['x-airlock-digest']).toBe(digests['dist/app.tgz']);
    expect(res.headers['repr-digest']).toBe(`sha-256=:${Buffer.from(digests['dist/app.tgz']!.slice(7), 'hex').toString('base64')}:`);
    expect(res.rawPayload.toString()).toBe('the app, version one');
    const read = (await t.app.audit.search({ action: 'artifacts.read', limit: 10 })).map((e) => e.event).find((e) => e.context.requestId === id);
    expect(read).toMatchObject({ outcome: 'allowed', actor: { id: 'dave' }, resource: `artifacts/${digests['dist/app.tgz']!}` });

    // A blob whose size changed is refused before any byte is sent.
    await corrupt(t.app.blobs, digests['dist/size.bin']!, 'longer than it was');
    const refused = await call(dev, 'GET', `/api/v1/artifacts/${digests['dist/size.bin']!}/content`);
    expect(expectError(refused, 500, 'INTEGRITY_FAILED').message).toContain('is corrupt');
    const verify = await call(dev, 'POST', `/api/v1/artifacts/${digests['dist/size.bin']!}/verify`);
    expect(expectError(verify, 500, 'INTEGRITY_FAILED').message).toContain(`hash to ${sha256Digest('longer than it was')}`);
    const failed = (await t.app.audit.search({ resource: `artifacts/${digests['dist/size.bin']!}`, limit: 10, order: 'asc' })).map((e) => e.event).filter((e) => e.details.method === undefined);
    expect(failed.map((e) => [e.action, e.outcome, e.details.reason])).toEqual([
      ['artifacts.read', 'failed', 'blob_corrupt'],
      ['artifacts.verify', 'failed', 'blob_corrupt'],
    ]);
    const ok = await call(dev, 'POST', `/api/v1/artifacts/${encodeURIComponent('acme/web@1.0.0')}/verify`);
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json()).toMatchObject({ digest: digests['dist/app.tgz'], ok: true });
  });

  it('creates, lists and shows releases; refusals are named', async () => {
    expectError(await call(dev, 'POST', '/api/v1/releases', { project: 'web', name: 'v1', run: runId }), 403, 'FORBIDDEN');
    const bad = await call(op, 'POST', '/api/v1/releases', { project: 'web', name: 'v1', run: runId, paths: ['dist/missing'] });
    expect(expectError(bad, 400, 'VALIDATION_FAILED').message).toContain('dist/missing');
    const created = await call(op, 'POST', '/api/v1/releases', { project: 'web', name: 'v1', run: String(runNumber), paths: ['dist/app.tgz', 'dist/notes.txt'] });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json<{ artifacts: { path: string; digest: string }[] }>().artifacts).toEqual([
      { path: 'dist/app.tgz', digest: digests['dist/app.tgz'], size: 20 },
      { path: 'dist/notes.txt', digest: digests['dist/notes.txt'], size: 13 },
    ]);
    expectError(await call(op, 'POST', '/api/v1/releases', { project: 'web', name: 'v1', run: runId }), 409, 'CONFLICT');
    const list = await call(dev, 'GET', '/api/v1/releases?project=web');
    expect(list.json<{ releases: { name: string; artifactCount: number }[] }>().releases).toEqual([expect.objectContaining({ name: 'v1', artifactCount: 2 })]);
    const shown = await call(dev, 'GET', '/api/v1/releases/web/v1');
    expect(shown.json()).toMatchObject({ project: 'web', name: 'v1', runId, runNumber });
    expectError(await call(dev, 'GET', '/api/v1/releases'), 400, 'VALIDATION_FAILED');
  });

  it('the CLI lists, shows, verifies and gets (re-hashing locally); a corrupt download leaves no file', async () => {
    const listed = await cli(dev, 'artifact', 'list', '--run', `web#${runNumber}`, '--json');
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toMatchObject({ artifacts: expect.arrayContaining([expect.objectContaining({ path: 'dist/app.tgz' })]) as unknown[] });
    const shown = await cli(dev, 'artifact', 'show', 'acme/web@1.0.0');
    expect(shown.stdout).toContain(`digest:      ${digests['dist/app.tgz']!}`);
    expect(shown.stdout).toContain('releases:    web/v1 (dist/app.tgz)');
    const verified = await cli(dev, 'artifact', 'verify', digests['dist/notes.txt']!, '--json');
    expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, size: 13 });

    const got = await cli(dev, 'artifact', 'get', 'acme/web@1.0.0', '-o', 'app.tgz', '--json');
    expect(got.code).toBe(0);
    expect(readFileSync(join(scratch, 'app.tgz'), 'utf8')).toBe('the app, version one');
    expect(JSON.parse(got.stdout)).toMatchObject({ digest: digests['dist/app.tgz'], size: 20, verified: true });

    // Same size, other bytes: the server streams, its hash fails at the end, the response is
    // cut short; the CLI refuses and writes nothing (not even a partial file).
    await corrupt(t.app.blobs, digests['dist/flip.bin']!, 'FLIP my bytes');
    const err = await cli(dev, 'artifact', 'get', digests['dist/flip.bin']!, '-o', 'flip.bin').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AirlockError);
    expect((err as AirlockError).code).toBe('INTEGRITY_FAILED');
    expect(existsSync(join(scratch, 'flip.bin'))).toBe(false);
    expect(readdirSync(scratch).filter((f) => f.endsWith('.part'))).toEqual([]);
    const recorded = (await t.app.audit.search({ action: 'artifacts.read', resource: `artifacts/${digests['dist/flip.bin']!}`, limit: 10, order: 'asc' })).map((e) => e.event.outcome);
    expect(recorded).toEqual(['allowed', 'failed']);

    const released = await cli(op, 'release', 'create', 'v2', '--project', 'web', '--run', String(runNumber), '--path', 'dist/notes.txt', '--json');
    expect(JSON.parse(released.stdout)).toMatchObject({ name: 'v2', artifacts: [{ path: 'dist/notes.txt' }] });
    const releases = await cli(dev, 'release', 'list', '--project', 'web');
    expect(releases.stdout).toMatch(/^v2\s+web#1\s+1\s/m);
    const rel = await cli(dev, 'release', 'show', 'v1', '--project', 'web');
    expect(rel.stdout).toContain(`dist/app.tgz    ${digests['dist/app.tgz']!}  20`);
    const published = await cli(op, 'artifact', 'publish', 'acme/notes@1', digests['dist/notes.txt']!, '--run', runId);
    expect(published.stdout).toContain('published acme/notes@1');
  });
});
