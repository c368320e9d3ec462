/** `airlock artifact …` and `airlock release …`: the artifact store over the HTTP API. */
import { createHash, randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { Command } from 'commander';
// The API answers with the domain's shapes: typed from the domain, erased at run time.
import type { ArtifactDetail, ArtifactSummary, PublishResult, ReleaseDetail, ReleaseSummary, VerifyResult } from '../../artifacts/index.js';
import { AirlockError } from '../../errors/index.js';
import type { Cli } from '../cli.js';
import { EXIT_OK, UsageError } from '../cli.js';
import { printJson, say } from '../io.js';
import type { RemoteOptions } from './remote.js';
import { list, seg, table, withSession } from './remote.js';

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** A digest, or NAME@VERSION. */
function checkRef(ref: string): string {
  if (ref.startsWith('sha256:') ? !DIGEST.test(ref) : ref.lastIndexOf('@') <= 0) throw new UsageError(`"${ref}" is neither a digest (sha256:<64 hex>) nor NAME@VERSION`);
  return ref;
}

export async function artifactList(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions & { run?: string; name?: string; limit?: number }>();
  if (opts.run !== undefined && opts.name !== undefined) throw new UsageError('give --run or --name, not both');
  const q = new URLSearchParams({ ...(opts.run === undefined ? {} : { run: opts.run }), ...(opts.name === undefined ? {} : { name: opts.name }), ...(opts.limit === undefined ? {} : { limit: String(opts.limit) }) });
  return withSession(cli, command, async (s) => {
    const { artifacts } = await s.call((c) => c.get<{ artifacts: ArtifactSummary[] }>(`/api/v1/artifacts${q.size === 0 ? '' : `?${q.toString()}`}`));
    if (opts.json === true) printJson(cli.io, { artifacts });
    else {
      const header = opts.run === undefined ? ['DIGEST', 'SIZE', 'CREATED', 'NAMES'] : ['PATH', 'DIGEST', 'SIZE', 'NAMES'];
      const rows = artifacts.map((a) => (opts.run === undefined ? [a.digest, String(a.size), a.createdAt, list(a.names)] : [a.path ?? '-', a.digest, String(a.size), list(a.names)]));
      for (const line of table(header, rows)) say(cli.io, line);
    }
    return EXIT_OK;
  });
}

export async function artifactShow(cli: Cli, command: Command, ref: string): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  checkRef(ref);
  return withSession(cli, command, async (s) => {
    const a = await s.call((c) => c.get<ArtifactDetail>(`/api/v1/artifacts/${seg(ref)}`));
    if (opts.json === true) printJson(cli.io, a);
    else {
      say(cli.io, `digest:      ${a.digest}`);
      say(cli.io, `size:        ${a.size} bytes`);
      say(cli.io, `recorded:    ${a.createdAt}`);
      say(cli.io, `produced by: ${a.producedBy === null ? '-' : `run ${a.producedBy.project}#${a.producedBy.runNumber} (${a.producedBy.runId})`}`);
      say(cli.io, `names:       ${list(a.names.map((n) => `${n.name}@${n.version}`))}`);
      say(cli.io, `releases:    ${list(a.releases.map((r) => `${r.project}/${r.name} (${r.path})`))}`);
    }
    return EXIT_OK;
  });
}

/**
 * `airlock artifact get REF -o FILE`: stream to a temporary file beside FILE while hashing,
 * and rename it into place only when the bytes hash to the digest asked for. The server
 * re-hashes too, but the check that counts is the one made where the bytes are used.
 */
export async function artifactGet(cli: Cli, command: Command, ref: string): Promise<number> {
  const opts = command.opts<RemoteOptions & { output: string }>();
  checkRef(ref);
  const dest = resolve(cli.io.cwd, opts.output);
  return withSession(cli, command, async (s) => {
    const digest = DIGEST.test(ref) ? ref : (await s.call((c) => c.get<ArtifactDetail>(`/api/v1/artifacts/${seg(ref)}`))).digest;
    if (!DIGEST.test(digest)) throw new AirlockError('BAD_RESPONSE', `the server named ${ref} with a malformed digest`);
    const response = await s.call((c) => c.download(`/api/v1/artifacts/${seg(digest)}/content`));
    const announced = response.headers.get('x-airlock-digest');
    if (announced !== digest) {
      await response.body?.cancel();
      throw new AirlockError('INTEGRITY_FAILED', `the server sent ${announced ?? 'no digest'} for ${digest}; nothing was written`, { reason: 'digest_mismatch', digest });
    }
    const expectedSize = Number(response.headers.get('content-length') ?? NaN);
    const tmp = join(dirname(dest), `.${basename(dest)}.${randomBytes(6).toString('hex')}.part`);
    const hash = createHash('sha256');
    let size = 0;
    const fh = await open(tmp, 'wx', 0o644);
    let complete = false;
    try {
      try {
        if (response.body === null) throw new Error('no body');
        for await (const chunk of Readable.fromWeb(response.body as WebReadableStream<Uint8Array>)) {
          const b = chunk as Buffer;
          hash.update(b);
          size += b.length;
          await fh.write(b);
        }
      } catch {
        // The server aborts a download whose stored bytes fail its own check.
        throw new AirlockError('INTEGRITY_FAILED', `the download of ${digest} was cut short after ${size} bytes${Number.isFinite(expectedSize) ? ` of ${expectedSize}` : ''}; the server aborts a download whose stored bytes do not match (check with: airlock artifact verify ${digest}); nothing was written to ${opts.output}`, { reason: 'download_incomplete', digest });
      }
      const actual = `sha256:${hash.digest('hex')}`;
      if (actual !== digest) throw new AirlockError('INTEGRITY_FAILED', `the bytes received hash to ${actual}, not ${digest}; nothing was written to ${opts.output}`, { reason: 'digest_mismatch', digest, actual });
      await fh.sync();
      complete = true;
    } finally {
      await fh.close();
      if (!complete) await unlink(tmp).catch(() => undefined);
    }
    try {
      await rename(tmp, dest);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    if (opts.json === true) printJson(cli.io, { digest, size, path: dest, verified: true });
    else say(cli.io, `wrote ${opts.output} (${size} bytes, ${digest}, verified)`);
    return EXIT_OK;
  });
}

export async function artifactVerify(cli: Cli, command: Command, ref: string): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  checkRef(ref);
  return withSession(cli, command, async (s) => {
    const r = await s.call((c) => c.post<VerifyResult>(`/api/v1/artifacts/${seg(ref)}/verify`));
    if (opts.json === true) printJson(cli.io, r);
    else say(cli.io, `ok: ${r.digest} (${r.size} bytes) re-hashed and matches`);
    return EXIT_OK;
  });
}

export async function artifactPublish(cli: Cli, command: Command, nameAtVersion: string, digest: string): Promise<number> {
  const opts = command.opts<RemoteOptions & { run?: string; path?: string }>();
  const at = nameAtVersion.lastIndexOf('@');
  if (at <= 0 || at === nameAtVersion.length - 1) throw new UsageError(`"${nameAtVersion}" is not NAME@VERSION (for example web-app@1.4.2)`);
  if (!DIGEST.test(digest)) throw new UsageError(`"${digest}" is not a digest (sha256:<64 hex>)`);
  if (opts.path !== undefined && opts.run === undefined) throw new UsageError('--path needs --run (the run that produced the output)');
  return withSession(cli, command, async (s) => {
    const body = { name: nameAtVersion.slice(0, at), version: nameAtVersion.slice(at + 1), digest, ...(opts.run === undefined ? {} : { run: opts.run }), ...(opts.path === undefined ? {} : { path: opts.path }) };
    const p = await s.call((c) => c.post<PublishResult>('/api/v1/artifacts', body));
    if (opts.json === true) printJson(cli.io, p);
    else say(cli.io, p.created ? `published ${p.name}@${p.version} -> ${p.digest}; this name never changes` : `${p.name}@${p.version} was already published as ${p.digest}; nothing changed`);
    return EXIT_OK;
  });
}

export async function releaseCreate(cli: Cli, command: Command, name: string): Promise<number> {
  const opts = command.opts<RemoteOptions & { project: string; run: string; path?: string[] }>();
  return withSession(cli, command, async (s) => {
    const body = { project: opts.project, name, run: opts.run, ...(opts.path === undefined ? {} : { paths: opts.path }) };
    const r = await s.call((c) => c.post<ReleaseDetail>('/api/v1/releases', body));
    if (opts.json === true) printJson(cli.io, r);
    else {
      say(cli.io, `created release ${r.project}/${r.name} from run ${r.project}#${r.runNumber}, pinning ${r.artifacts.length} artifact(s):`);
      for (const line of table(['PATH', 'DIGEST', 'SIZE'], r.artifacts.map((a) => [a.path, a.digest, String(a.size)]))) say(cli.io, line);
    }
    return EXIT_OK;
  });
}

export async function releaseList(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions & { project: string }>();
  return withSession(cli, command, async (s) => {
    const { releases } = await s.call((c) => c.get<{ releases: ReleaseSummary[] }>(`/api/v1/releases?${new URLSearchParams({ project: opts.project }).toString()}`));
    if (opts.json === true) printJson(cli.io, { releases });
    else for (const line of table(['NAME', 'RUN', 'ARTIFACTS', 'CREATED', 'BY'], releases.map((r) => [r.name, `${r.project}#${r.runNumber}`, String(r.artifactCount), r.createdAt, r.createdBy]))) say(cli.io, line);
    return EXIT_OK;
  });
}

export async function releaseShow(cli: Cli, command: Command, name: string): Promise<number> {
  const opts = command.opts<RemoteOptions & { project: string }>();
  return withSession(cli, command, async (s) => {
    const r = await s.call((c) => c.get<ReleaseDetail>(`/api/v1/releases/${seg(opts.project)}/${seg(name)}`));
    if (opts.json === true) printJson(cli.io, r);
    else {
      say(cli.io, `release ${r.project}/${r.name}: run ${r.project}#${r.runNumber} (${r.runId}), created ${r.createdAt} by ${r.createdBy}`);
      for (const line of table(['PATH', 'DIGEST', 'SIZE'], r.artifacts.map((a) => [a.path, a.digest, String(a.size)]))) say(cli.io, line);
    }
    return EXIT_OK;
  });
}
