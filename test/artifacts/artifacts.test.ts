/**
 * The artifacts domain on both engines: immutable names (a republish with other bytes is
 * refused and recorded), releases that pin digests, and integrity: a corrupt or missing blob
 * is refused on verify and on download, and the failure is in the audit log.
 */
import { stat as fsStat, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Artifacts, BlobStore, sha256Digest } from '../../src/artifacts/index.js';
import type { ObjectStore } from '../../src/artifacts/index.js';
import { AuditLog } from '../../src/audit/index.js';
import type { AuditEvent } from '../../src/audit/index.js';
import { AirlockError } from '../../src/errors/index.js';
import { ENGINES, openTestStore } from '../support/engines.js';
import type { TestStore } from '../support/engines.js';
import { corrupt, seedProject, seedRun } from './support.js';

const alice = { kind: 'user', id: 'alice' } as const;
const ctx = { requestId: 'req-1', sourceAddress: '10.0.0.7' };

async function rejection(p: Promise<unknown>): Promise<AirlockError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AirlockError);
  return err as AirlockError;
}

async function drain(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe.each(ENGINES)('artifacts on %s', (engine) => {
  let t: TestStore;
  let audit: AuditLog;
  let blobs: BlobStore;
  let artifacts: Artifacts;
  let web: string;
  let api: string;
  let runNo = 0;

  beforeAll(async () => {
    t = await openTestStore(engine);
    audit = new AuditLog(t.store);
    blobs = new BlobStore(join(t.home, 'artifacts'));
    artifacts = new Artifacts({ store: t.store, audit, objects: blobs, clock: () => new Date() });
    web = await seedProject(t.store, 'web');
    api = await seedProject(t.store, 'api');
  });
  afterAll(async () => {
    await t.cleanup();
  });

  const run = (options: Parameters<typeof seedRun>[4], project = web) => seedRun(t.store, blobs, project, ++runNo, options);
  const recorded = async (action: string, resource?: string): Promise<AuditEvent[]> => (await audit.search({ action, ...(resource === undefined ? {} : { resource }), limit: 1000, order: 'asc' })).map((e) => e.event);
  const accept = (r: { id: string; outputs: { path: string; digest: string; size: number }[] }) => t.store.transact((tx) => artifacts.recordOutputs(tx, r.id, r.outputs));

  it('records each output digest once and keeps the run that first produced it', async () => {
    const first = await run({ outputs: { 'dist/app.tgz': 'app v1 bytes' } });
    const again = await run({ outputs: { 'out/copy.tgz': 'app v1 bytes' } });
    await accept(first);
    await accept(first);
    await accept(again);
    const digest = first.outputs[0]!.digest;
    const rows = await t.store.db.selectFrom('artifacts').selectAll().where('digest', '=', digest).execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ size: 12, first_run_id: first.id });
    const err = await rejection(t.store.transact((tx) => artifacts.recordOutputs(tx, first.id, [{ path: 'x', digest: 'sha256:../../etc/passwd', size: 1 }])));
    expect(err.code).toBe('VALIDATION_FAILED');
  });

  it('publishes immutable names: the same digest again changes nothing, another digest is refused and recorded', async () => {
    const r = await run({ outputs: { 'dist/app.tgz': 'release one', 'dist/other.tgz': 'release two' } });
    await accept(r);
    const [one, two] = r.outputs;
    const p = await artifacts.publish(alice, { name: 'acme/web-app', version: '1.0.0', digest: one!.digest }, ctx);
    expect(p).toMatchObject({ name: 'acme/web-app', version: '1.0.0', digest: one!.digest, created: true, createdBy: 'user:alice' });
    const before = (await recorded('artifacts.publish')).length;
    const repeat = await artifacts.publish(alice, { name: 'acme/web-app', version: '1.0.0', digest: one!.digest }, ctx);
    expect(repeat).toMatchObject({ digest: one!.digest, created: false });
    expect(await recorded('artifacts.publish')).toHaveLength(before);

    const err = await rejection(artifacts.publish({ kind: 'user', id: 'mallory' }, { name: 'acme/web-app', version: '1.0.0', digest: two!.digest }, ctx));
    expect(err.code).toBe('CONFLICT');
    expect(err.message).toContain(`already published as ${one!.digest}`);
    expect(err.details).toMatchObject({ publishedDigest: one!.digest, digest: two!.digest });
    const denied = (await recorded('artifacts.publish')).filter((e) => e.outcome === 'denied');
    expect(denied).toHaveLength(1);
    expect(denied[0]).toMatchObject({ actor: { kind: 'user', id: 'mallory' }, resource: 'artifacts/names/acme/web-app@1.0.0', details: { digest: two!.digest, publishedDigest: one!.digest } });
    expect(denied[0]!.context.requestId).toBe('req-1');
    expect((await artifacts.show('acme/web-app@1.0.0')).digest).toBe(one!.digest);
  });

  it('refuses bad names, versions and digests with messages naming the field', async () => {
    const r = await run({ outputs: { 'a.bin': 'validation' } });
    await accept(r);
    const digest = r.outputs[0]!.digest;
    const cases: [Parameters<Artifacts['publish']>[1], string, RegExp][] = [
      [{ name: 'Acme/Web', version: '1', digest }, 'name', /lower-case/],
      [{ name: 'web/', version: '1', digest }, 'name', /invalid artifact name/],
      [{ name: '../etc', version: '1', digest }, 'name', /invalid artifact name/],
      [{ name: 'web', version: 'latest', digest }, 'version', /never move/],
      [{ name: 'web', version: '1 0', digest }, 'version', /invalid version/],
      [{ name: 'web', version: '1', digest: 'sha256:abc' }, 'digest', /64 lower-case hex/],
      [{ name: 'web', version: '1', digest, path: 'a.bin' }, 'path', /needs a run/],
    ];
    for (const [input, field, message] of cases) {
      const err = await rejection(artifacts.publish(alice, input));
      expect(err.code, JSON.stringify(input)).toBe('VALIDATION_FAILED');
      const issues = err.details.issues as { path: string; message: string }[];
      expect(`${err.message} ${issues[0]?.message ?? ''}`).toMatch(message);
      expect(issues[0]?.path).toBe(field);
    }
    const unknown = await rejection(artifacts.publish(alice, { name: 'web', version: '1', digest: sha256Digest('never stored') }));
    expect(unknown.code).toBe('NOT_FOUND');
  });

  it('publishing from a run needs the digest to be one of its outputs (at the path, when given)', async () => {
    const r = await run({ outputs: { 'dist/web.tgz': 'web from run' }, failedOutputs: { 'dist/junk.tgz': 'from a failed attempt' } });
    const other = await run({ outputs: { 'dist/web.tgz': 'another run' } });
    const web1 = r.outputs[0]!.digest;
    // Not accepted through recordOutputs yet: publishing from the run registers it.
    const p = await artifacts.publish(alice, { name: 'web', version: '2.0.0', digest: web1, runId: r.id, path: 'dist/web.tgz' });
    expect(p).toMatchObject({ runId: r.id, path: 'dist/web.tgz', created: true });
    const byNumber = await artifacts.publish(alice, { name: 'web', version: '2.0.1', digest: web1, runId: `web#${r.number}` });
    expect(byNumber).toMatchObject({ runId: r.id, path: 'dist/web.tgz' });
    const wrongRun = await rejection(artifacts.publish(alice, { name: 'web', version: '2.0.2', digest: web1, runId: other.id }));
    expect(wrongRun.code).toBe('VALIDATION_FAILED');
    expect(wrongRun.message).toContain(`is not an output of run web#${other.number}`);
    const wrongPath = await rejection(artifacts.publish(alice, { name: 'web', version: '2.0.2', digest: web1, runId: r.id, path: 'dist/other.tgz' }));
    expect(wrongPath.message).toContain('is not an output at dist/other.tgz');
    // The failed attempt's output never became an output of the run.
    const junk = (await t.store.db.selectFrom('run_steps').select('result_json').where('run_id', '=', r.id).where('state', '=', 'failed').executeTakeFirstOrThrow()).result_json!;
    const junkDigest = (JSON.parse(junk) as { outputs: { digest: string }[] }).outputs[0]!.digest;
    expect((await rejection(artifacts.publish(alice, { name: 'web', version: '2.0.3', digest: junkDigest, runId: r.id }))).code).toBe('VALIDATION_FAILED');
  });

  it('two concurrent publishes of one name with different digests: exactly one wins, the other is recorded', async () => {
    const r = await run({ outputs: { a: 'race a', b: 'race b' } });
    await accept(r);
    const results = await Promise.allSettled(r.outputs.map((o) => artifacts.publish(alice, { name: 'race', version: '1', digest: o.digest })));
    expect(results.filter((x) => x.status === 'fulfilled')).toHaveLength(1);
    const lost = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    expect((lost?.reason as AirlockError).code).toBe('CONFLICT');
    expect((await recorded('artifacts.publish', 'artifacts/names/race@1')).map((e) => e.outcome).sort()).toEqual(['allowed', 'denied']);
  });

  it('verify re-hashes the blob; corrupt and missing blobs are refused with a reason and recorded as failed', async () => {
    const r = await run({ outputs: { good: 'verify me please', bad: 'will be corrupted', gone: 'will be deleted' } });
    await accept(r);
    const [good, bad, gone] = r.outputs;
    expect(await artifacts.verify(alice, good!.digest, ctx)).toMatchObject({ digest: good!.digest, size: good!.size, ok: true });

    await corrupt(blobs, bad!.digest, 'will be CORRUPTED');
    const c = await rejection(artifacts.verify(alice, bad!.digest, ctx));
    expect(c.code).toBe('INTEGRITY_FAILED');
    expect(c.details).toMatchObject({ reason: 'blob_corrupt', digest: bad!.digest, actual: sha256Digest('will be CORRUPTED') });
    expect(c.message).toContain(`artifact ${bad!.digest} is corrupt`);

    await unlink(blobs.pathFor(gone!.digest));
    const m = await rejection(artifacts.verify(alice, gone!.digest, ctx));
    expect(m.code).toBe('INTEGRITY_FAILED');
    expect(m.details).toMatchObject({ reason: 'blob_missing', digest: gone!.digest });
    // A name must not be given to bytes the store cannot serve.
    const named = await rejection(artifacts.publish(alice, { name: 'gone', version: '1', digest: gone!.digest }, ctx));
    expect(named.details).toMatchObject({ reason: 'blob_missing' });
    expect((await recorded('artifacts.publish', `artifacts/${gone!.digest}`)).map((e) => e.outcome)).toEqual(['failed']);

    const events = await recorded('artifacts.verify');
    const of = (d: string) => events.filter((e) => e.resource === `artifacts/${d}`);
    expect(of(good!.digest).map((e) => e.outcome)).toEqual(['allowed']);
    expect(of(bad!.digest)).toEqual([expect.objectContaining({ outcome: 'failed', reason: expect.stringMatching(/^blob_corrupt: /) as string, details: expect.objectContaining({ reason: 'blob_corrupt', actual: sha256Digest('will be CORRUPTED') }) as object })]);
    expect(of(gone!.digest)).toEqual([expect.objectContaining({ outcome: 'failed', details: expect.objectContaining({ reason: 'blob_missing' }) as object })]);
    // A blob whose name is published is still refused: the name does not vouch for the bytes.
    await artifacts.publish(alice, { name: 'corrupt-one', version: '1', digest: bad!.digest }).catch(() => undefined);
    expect((await rejection(artifacts.verify(alice, 'corrupt-one@1'))).code).toBe('INTEGRITY_FAILED');
  });

  it('open streams verified bytes after recording the read; corruption fails the stream and is recorded', async () => {
    const r = await run({ outputs: { ok: 'download me', flip: 'same size bytes', grow: 'short', gone: 'deleted soon' } });
    await accept(r);
    const [ok, flip, grow, gone] = r.outputs;
    const dl = await artifacts.open(alice, ok!.digest, ctx);
    expect(dl).toMatchObject({ digest: ok!.digest, size: ok!.size });
    expect((await drain(dl.stream)).toString()).toBe('download me');
    expect((await recorded('artifacts.read', `artifacts/${ok!.digest}`)).map((e) => e.outcome)).toEqual(['allowed']);

    // Same size: only the hash can tell, so the stream ends in an error after recording it.
    await corrupt(blobs, flip!.digest, 'SAME size bytes');
    const stream = (await artifacts.open(alice, flip!.digest, ctx)).stream;
    const err = await rejection(drain(stream));
    expect(err.code).toBe('INTEGRITY_FAILED');
    expect(err.details).toMatchObject({ reason: 'blob_corrupt', actual: sha256Digest('SAME size bytes') });
    expect((await recorded('artifacts.read', `artifacts/${flip!.digest}`)).map((e) => e.outcome)).toEqual(['allowed', 'failed']);

    // A size that differs from the record is refused before a byte is served.
    await corrupt(blobs, grow!.digest, 'much longer than before');
    const sized = await rejection(artifacts.open(alice, grow!.digest, ctx));
    expect(sized.details).toMatchObject({ reason: 'blob_corrupt', expectedSize: 5, actualSize: 23 });
    await unlink(blobs.pathFor(gone!.digest));
    expect((await rejection(artifacts.open(alice, gone!.digest, ctx))).details).toMatchObject({ reason: 'blob_missing' });
    for (const d of [grow!.digest, gone!.digest]) expect((await recorded('artifacts.read', `artifacts/${d}`)).map((e) => e.outcome)).toEqual(['failed']);
    expect((await rejection(artifacts.open(alice, sha256Digest('unknown')))).code).toBe('NOT_FOUND');
  });

  it('a release pins one run’s digests: a later run with new bytes at the same paths changes nothing', async () => {
    const r1 = await run({ outputs: { 'dist/app.tgz': 'app 1.0', 'dist/sbom.json': '{"v":1}', 'dist/debug.log': 'noise' } });
    const r2 = await run({ outputs: { 'dist/app.tgz': 'app 1.1', 'dist/sbom.json': '{"v":2}' } });
    const rel = await artifacts.createRelease(alice, { project: 'web', name: 'v1.0.0', runId: r1.id, paths: ['dist/app.tgz', 'dist/sbom.json'] }, ctx);
    expect(rel).toMatchObject({ project: 'web', name: 'v1.0.0', runId: r1.id, runNumber: r1.number, createdBy: 'user:alice' });
    expect(rel.artifacts).toEqual([
      { path: 'dist/app.tgz', digest: sha256Digest('app 1.0'), size: 7 },
      { path: 'dist/sbom.json', digest: sha256Digest('{"v":1}'), size: 7 },
    ]);
    const all = await artifacts.createRelease(alice, { project: 'web', name: 'v1.1.0', runId: String(r2.number) });
    expect(all.artifacts.map((a) => a.digest)).toEqual([sha256Digest('app 1.1'), sha256Digest('{"v":2}')]);
    // The older release is unchanged.
    expect((await artifacts.release('web', 'v1.0.0')).artifacts.map((a) => a.digest)).toEqual([sha256Digest('app 1.0'), sha256Digest('{"v":1}')]);
    const shown = await artifacts.show(sha256Digest('app 1.0'));
    expect(shown.releases).toEqual([expect.objectContaining({ project: 'web', name: 'v1.0.0', path: 'dist/app.tgz' })]);
    expect(shown.producedBy).toEqual({ runId: r1.id, project: 'web', runNumber: r1.number });
    const listed = await artifacts.releases('web');
    expect(listed.map((x) => [x.name, x.artifactCount])).toEqual(expect.arrayContaining([['v1.0.0', 2], ['v1.1.0', 2]]));
    const created = await recorded('releases.create', 'releases/web/v1.0.0');
    expect(created).toEqual([expect.objectContaining({ outcome: 'allowed', details: expect.objectContaining({ artifacts: [{ path: 'dist/app.tgz', digest: sha256Digest('app 1.0') }, { path: 'dist/sbom.json', digest: sha256Digest('{"v":1}') }] }) as object })]);
  });

  it('refuses, and records, releases of a failed run, of paths it did not output, of another project’s run, and reused names', async () => {
    const failed = await run({ state: 'failed', outputs: { 'dist/app.tgz': 'from a failed run' } });
    const ok = await run({ outputs: { 'dist/app.tgz': 'refusals ok' } });
    const foreign = await run({ outputs: { 'x.bin': 'api bytes' } }, api);
    const f = await rejection(artifacts.createRelease(alice, { project: 'web', name: 'r-failed', runId: failed.id }));
    expect(f.code).toBe('CONFLICT');
    expect(f.message).toContain(`web#${failed.number} is failed`);
    const p = await rejection(artifacts.createRelease(alice, { project: 'web', name: 'r-path', runId: ok.id, paths: ['dist/app.tgz', 'dist/nope.tgz'] }));
    expect(p.code).toBe('VALIDATION_FAILED');
    expect(p.message).toContain('not an output of run');
    expect(p.message).toContain('dist/nope.tgz');
    const x = await rejection(artifacts.createRelease(alice, { project: 'web', name: 'r-foreign', runId: foreign.id }));
    expect(x.message).toContain('belongs to project api');
    await artifacts.createRelease(alice, { project: 'web', name: 'r-taken', runId: ok.id });
    const taken = await rejection(artifacts.createRelease(alice, { project: 'web', name: 'r-taken', runId: ok.id }));
    expect(taken.code).toBe('CONFLICT');
    expect(taken.message).toContain('release names are never reused');
    // The same name in another project is fine: names are unique per project.
    await artifacts.createRelease(alice, { project: 'api', name: 'r-taken', runId: foreign.id });
    for (const name of ['r-failed', 'r-path', 'r-foreign', 'r-taken']) {
      const denied = (await recorded('releases.create', `releases/web/${name}`)).filter((e) => e.outcome === 'denied');
      expect(denied, name).toHaveLength(1);
      expect(denied[0]!.reason.length).toBeGreaterThan(10);
    }
    // Nothing of the refused releases was stored.
    const rows = await t.store.db.selectFrom('releases').select('name').where('name', 'in', ['r-failed', 'r-path', 'r-foreign']).execute();
    expect(rows).toEqual([]);
    expect((await rejection(artifacts.createRelease(alice, { project: 'web', name: 'latest', runId: ok.id }))).code).toBe('VALIDATION_FAILED');
    expect((await rejection(artifacts.release('web', 'r-failed'))).code).toBe('NOT_FOUND');
  });

  it('lists by run, by name and overall, and shows by NAME@VERSION', async () => {
    const r = await run({ outputs: { 'bin/cli': 'cli binary', 'bin/srv': 'server binary' } });
    await accept(r);
    await artifacts.publish(alice, { name: 'tools/cli', version: '3.1.0', digest: r.outputs[0]!.digest });
    await artifacts.publish(alice, { name: 'tools/cli', version: '3.1.0-copy', digest: r.outputs[0]!.digest });
    const byRun = await artifacts.list({ runId: r.id });
    expect(byRun.map((a) => [a.path, a.digest])).toEqual([
      ['bin/cli', sha256Digest('cli binary')],
      ['bin/srv', sha256Digest('server binary')],
    ]);
    expect(byRun[0]!.names).toEqual(['tools/cli@3.1.0', 'tools/cli@3.1.0-copy']);
    const byName = await artifacts.list({ name: 'tools/cli' });
    expect(byName.map((a) => a.digest)).toEqual([sha256Digest('cli binary')]);
    expect((await artifacts.list({ limit: 2 })).length).toBe(2);
    const shown = await artifacts.show('tools/cli@3.1.0');
    expect(shown).toMatchObject({ digest: sha256Digest('cli binary'), size: 10, producedBy: { runId: r.id } });
    expect(shown.names.map((n) => n.version)).toEqual(['3.1.0', '3.1.0-copy']);
    expect((await rejection(artifacts.show('tools/cli@9.9.9'))).code).toBe('NOT_FOUND');
    expect((await rejection(artifacts.show('no-version-here'))).code).toBe('VALIDATION_FAILED');
    expect((await rejection(artifacts.list({ limit: 501 }))).code).toBe('VALIDATION_FAILED');
  });
});

describe('ObjectStore (the local BlobStore)', () => {
  it('writes atomically: nothing under the final name until the bytes are complete and synced', async () => {
    const t = await openTestStore('sqlite');
    try {
      const local = new BlobStore(join(t.home, 'objects'));
      const store: ObjectStore = local;
      const source = new PassThrough();
      const put = store.put(source);
      const content = Buffer.alloc(256 * 1024, 7);
      const digest = sha256Digest(content);
      source.write(content.subarray(0, 100_000));
      await new Promise((r) => setTimeout(r, 50));
      // Half written: a temporary file exists, the final name does not, and the store says absent.
      expect(await readdir(join(t.home, 'objects', 'tmp'))).toHaveLength(1);
      expect(await store.has(digest)).toBe(false);
      expect(await store.stat(digest)).toBeUndefined();
      source.end(content.subarray(100_000));
      expect(await put).toEqual({ digest, size: content.length });
      expect(await store.stat(digest)).toEqual({ digest, size: content.length });
      expect(await readdir(join(t.home, 'objects', 'tmp'))).toEqual([]);
      // Read-only on disk: an accidental in-place edit fails.
      expect((await fsStat(local.pathFor(digest))).mode & 0o777).toBe(0o444);
      expect(await drain(await store.open(digest))).toEqual(content);
    } finally {
      await t.cleanup();
    }
  });

  it('a source that fails before the store starts reading it rejects the put, not the process', async () => {
    const t = await openTestStore('sqlite');
    try {
      const store = new BlobStore(join(t.home, 'objects'));
      const source = new PassThrough();
      const put = store.put(source);
      source.destroy(new Error('dropped at once'));
      await expect(put).rejects.toThrow('dropped at once');
      expect(await readdir(join(t.home, 'objects', 'tmp'))).toEqual([]);
    } finally {
      await t.cleanup();
    }
  });

  it('a source that fails mid-way leaves no object under any name', async () => {
    const t = await openTestStore('sqlite');
    try {
      const store = new BlobStore(join(t.home, 'objects'));
      const source = new PassThrough();
      const put = store.put(source);
      source.write(Buffer.alloc(1000, 1));
      setTimeout(() => source.destroy(new Error('network dropped')), 20);
      await expect(put).rejects.toThrow('network dropped');
      expect(await readdir(join(t.home, 'objects', 'tmp'))).toEqual([]);
      expect(await store.has(sha256Digest(Buffer.alloc(1000, 1)))).toBe(false);
    } finally {
      await t.cleanup();
    }
  });
});
