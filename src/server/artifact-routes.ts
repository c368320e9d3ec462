/**
 * Artifacts and releases over HTTP: list, show, download (re-hashed as it streams), verify,
 * publish an immutable name, and create, list and show releases. Every byte goes through
 * `Artifacts`, never the object store directly, so each read is re-hashed and recorded.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Artifacts } from '../artifacts/index.js';
import { actorOf } from '../identity/index.js';
import { principalOf } from './auth.js';
import { decimal, noFields, parseInput } from './input.js';
import { traceIdOf } from './request-context.js';

/** What these routes need: the artifacts domain (which owns the object store). */
export interface ArtifactRouteDeps {
  readonly artifacts: Pick<Artifacts, 'list' | 'show' | 'open' | 'verify' | 'publish' | 'createRelease' | 'releases' | 'release'>;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const digest = z.string().regex(DIGEST, 'must be "sha256:" followed by 64 lower-case hex digits');
/** A digest or NAME@VERSION (a name with "/" arrives percent-encoded in the path). */
const refParams = z.object({ ref: z.string().min(1).max(400) }).strict();
const listQuery = z
  .object({
    run: z.string().min(1).max(100).optional(),
    name: z.string().min(1).max(200).optional(),
    limit: decimal.pipe(z.number().min(1, 'must be at least 1').max(500, 'must be at most 500')).optional(),
  })
  .strict()
  .refine((q) => q.run === undefined || q.name === undefined, { message: 'give run or name, not both', path: ['name'] });
const publishBody = z
  .object({
    name: z.string().min(1).max(200),
    version: z.string().min(1).max(128),
    digest,
    run: z.string().min(1).max(100).optional(),
    path: z.string().min(1).max(1024).optional(),
  })
  .strict();
const releaseBody = z
  .object({
    project: z.string().min(1).max(63),
    name: z.string().min(1).max(128),
    run: z.string().min(1).max(100),
    paths: z.array(z.string().min(1).max(1024)).min(1).max(1000).optional(),
  })
  .strict();
const projectQuery = z.object({ project: z.string().min(1).max(63) }).strict();
const releaseParams = z.object({ project: z.string().min(1).max(63), name: z.string().min(1).max(128) }).strict();

function ctx(request: FastifyRequest) {
  return { sourceAddress: request.ip, requestId: request.id, traceId: traceIdOf(request.raw) };
}

/** RFC 9530 Repr-Digest value for a `sha256:<hex>` digest. */
function reprDigest(d: string): string {
  return `sha-256=:${Buffer.from(d.slice('sha256:'.length), 'hex').toString('base64')}:`;
}

export function artifactRoutes(deps: ArtifactRouteDeps): (server: FastifyInstance) => Promise<void> {
  const { artifacts } = deps;
  return async (server) => {
    const read = { action: 'artifacts.read', resource: 'artifacts' };
    const write = { action: 'artifacts.write', resource: 'artifacts' };

    server.get('/api/v1/artifacts', { config: read }, async (request) => {
      const q = parseInput(listQuery, request.query, 'query');
      return { artifacts: await artifacts.list({ runId: q.run, name: q.name, limit: q.limit }) };
    });

    server.get('/api/v1/artifacts/:ref', { config: read }, async (request) => {
      parseInput(noFields, request.query, 'query');
      const { ref } = parseInput(refParams, request.params, 'path');
      return artifacts.show(ref);
    });

    // No automatic HEAD: it would open (and record) a download nobody reads.
    server.get('/api/v1/artifacts/:ref/content', { config: read, exposeHeadRoute: false }, async (request, reply) => {
      parseInput(noFields, request.query, 'query');
      const { ref } = parseInput(refParams, request.params, 'path');
      const download = await artifacts.open(actorOf(principalOf(request)), ref, ctx(request));
      // Headers leave before the last byte is hashed: a corrupt blob ends in an aborted
      // response (the length is then short), never in a clean one. Clients re-hash too.
      void reply
        .header('content-type', 'application/octet-stream')
        .header('content-length', String(download.size))
        .header('content-disposition', `attachment; filename="${download.digest.replace(':', '-')}"`)
        .header('x-airlock-digest', download.digest)
        .header('repr-digest', reprDigest(download.digest));
      return reply.send(download.stream);
    });

    server.post('/api/v1/artifacts/:ref/verify', { config: read }, async (request) => {
      parseInput(noFields.optional(), request.body, 'body');
      const { ref } = parseInput(refParams, request.params, 'path');
      return artifacts.verify(actorOf(principalOf(request)), ref, ctx(request));
    });

    server.post('/api/v1/artifacts', { config: write }, async (request, reply) => {
      const body = parseInput(publishBody, request.body, 'body');
      const published = await artifacts.publish(actorOf(principalOf(request)), { name: body.name, version: body.version, digest: body.digest, runId: body.run, path: body.path }, ctx(request));
      return reply.code(published.created ? 201 : 200).send(published);
    });

    server.post('/api/v1/releases', { config: write }, async (request, reply) => {
      const body = parseInput(releaseBody, request.body, 'body');
      const release = await artifacts.createRelease(actorOf(principalOf(request)), { project: body.project, name: body.name, runId: body.run, paths: body.paths }, ctx(request));
      return reply.code(201).send(release);
    });

    server.get('/api/v1/releases', { config: read }, async (request) => {
      const q = parseInput(projectQuery, request.query, 'query');
      return { releases: await artifacts.releases(q.project) };
    });

    server.get('/api/v1/releases/:project/:name', { config: read }, async (request) => {
      parseInput(noFields, request.query, 'query');
      const p = parseInput(releaseParams, request.params, 'path');
      return artifacts.release(p.project, p.name);
    });

    return Promise.resolve();
  };
}
