/** Secrets over HTTP: write, list metadata, list versions, reveal (step-up + justification), delete, audit-hash. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { App } from '../app/index.js';
import { ForbiddenError } from '../errors/index.js';
import { actorOf } from '../identity/index.js';
import { principalOf } from './auth.js';
import { noFields, parseInput } from './input.js';
import { markRecordedInTx, traceIdOf } from './request-context.js';
import { requestEvent } from './request-audit.js';

const scopeFields = { project: z.string().min(1).max(63).optional(), environment: z.string().min(1).max(63).optional() };
const setBody = z
  .object({
    name: z.string().min(1).max(128),
    /** The value, base64: JSON cannot carry arbitrary bytes, and base64 is never mistaken for a display string. */
    valueBase64: z.string().min(1).max(120_000),
    description: z.string().max(500).optional(),
    owner: z.string().max(64).optional(),
    rotationIntervalDays: z.number().int().optional(),
    expiresAt: z.string().max(40).optional(),
    ...scopeFields,
  })
  .strict();
const nameParams = z.object({ name: z.string().min(1).max(128) }).strict();
const scopeQuery = z.object(scopeFields).strict();
const revealBody = z.object({ justification: z.string().min(1).max(1000), version: z.number().int().min(1).optional(), ...scopeFields }).strict();
const hashBody = z.object({ valueBase64: z.string().min(1).max(200_000) }).strict();
const rotationFailureBody = z.object({ reason: z.string().min(1).max(300), ...scopeFields }).strict();
const fetchBody = z.object({ names: z.array(z.string().min(1).max(128)).min(1).max(100).optional() }).strict();

function ctx(request: FastifyRequest) {
  return { sourceAddress: request.ip, requestId: request.id, traceId: traceIdOf(request.raw) };
}

export function secretRoutes(app: App): (server: FastifyInstance) => Promise<void> {
  return async (server) => {
    // The vault must be open (and the root key right) before any secret is touched.
    server.addHook('preHandler', async () => {
      await app.vault();
    });

    // A value may be up to 64 KiB, which is about 88 KiB in base64: room for that and the rest.
    server.post('/api/v1/secrets', { bodyLimit: 128 * 1024, config: { action: 'secrets.write', resource: 'secrets' } }, async (request, reply) => {
      const body = parseInput(setBody, request.body, 'body');
      const value = Buffer.from(body.valueBase64, 'base64');
      const info = await app.secrets.set(actorOf(principalOf(request)), { name: body.name, scope: { project: body.project, environment: body.environment }, value, description: body.description, owner: body.owner, rotationIntervalDays: body.rotationIntervalDays, expiresAt: body.expiresAt }, ctx(request));
      return reply.code(201).send(info);
    });

    server.get('/api/v1/secrets', { config: { action: 'secrets.read', resource: 'secrets' } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      return { secrets: await app.secrets.list() };
    });

    server.get('/api/v1/secrets/:name/versions', { config: { action: 'secrets.read', resource: 'secrets' } }, async (request) => {
      const q = parseInput(scopeQuery, request.query, 'query');
      const { name } = parseInput(nameParams, request.params, 'path');
      return { versions: await app.secrets.versions(name, q) };
    });

    server.get('/api/v1/secrets/:name/usage', { config: { action: 'secrets.read', resource: 'secrets' } }, async (request) => {
      const q = parseInput(scopeQuery, request.query, 'query');
      const { name } = parseInput(nameParams, request.params, 'path');
      return { usage: await app.secrets.usage(name, q) };
    });

    // A step's runner (embedded or agent) fetches the step's secrets with the step's workload
    // token as the step starts; the token names the step attempt, the server decides the rest.
    server.post('/api/v1/workload/secrets', { config: { action: 'secrets.fetch', resource: 'secrets' } }, async (request, reply) => {
      const body = parseInput(fetchBody, request.body ?? {}, 'body');
      const principal = principalOf(request);
      if (principal.kind !== 'workload') throw new ForbiddenError('secrets are fetched with a step\'s workload token (AIRLOCK_TOKEN)');
      // The request's own record commits with the release records: one durable commit per fetch.
      const released = await app.releaseSecrets(principal.claims, body.names, request.ip, requestEvent(request, 200, true));
      markRecordedInTx(request.raw);
      void reply.header('cache-control', 'no-store');
      return { secrets: released.map((r) => ({ name: r.name, version: r.version, valueBase64: r.value.toString('base64') })) };
    });

    server.post('/api/v1/secrets/:name/reveal', { config: { action: 'secrets.reveal', resource: 'secrets' } }, async (request, reply) => {
      const body = parseInput(revealBody, request.body, 'body');
      const { name } = parseInput(nameParams, request.params, 'path');
      const { value, version } = await app.secrets.reveal(actorOf(principalOf(request)), { name, scope: { project: body.project, environment: body.environment }, justification: body.justification, version: body.version }, ctx(request));
      void reply.header('cache-control', 'no-store');
      return { name, version, valueBase64: value.toString('base64') };
    });

    server.delete('/api/v1/secrets/:name', { config: { action: 'secrets.write', resource: 'secrets' } }, async (request, reply) => {
      const q = parseInput(scopeQuery, request.query, 'query');
      const { name } = parseInput(nameParams, request.params, 'path');
      await app.secrets.delete(actorOf(principalOf(request)), name, q, ctx(request));
      return reply.code(204).send();
    });

    // `airlock secret rotate` runs the rotation command where the operator is; when it yields no
    // value the failure is still recorded here (the current version stays).
    server.post('/api/v1/secrets/:name/rotation-failures', { config: { action: 'secrets.write', resource: 'secrets' } }, async (request, reply) => {
      const body = parseInput(rotationFailureBody, request.body, 'body');
      const { name } = parseInput(nameParams, request.params, 'path');
      const kept = await app.secrets.rotationFailed(actorOf(principalOf(request)), name, { project: body.project, environment: body.environment }, body.reason, ctx(request));
      return reply.code(201).send(kept);
    });

    server.post('/api/v1/secrets/audit-hash', { config: { action: 'secrets.read', resource: 'secrets' } }, (request, reply) => {
      const body = parseInput(hashBody, request.body, 'body');
      return reply.send({ auditHash: app.secrets.auditHash(Buffer.from(body.valueBase64, 'base64')) });
    });

    return Promise.resolve();
  };
}
