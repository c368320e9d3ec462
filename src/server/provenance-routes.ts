/**
 * Provenance over HTTP: the published verification keys (public: anyone may verify), key
 * rotation (admin, step-up), the attestations of a digest or run (as DSSE envelopes and as
 * Sigstore bundles), and the record of a verification a client performed.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { App } from '../app/index.js';
import { actorOf } from '../identity/index.js';
import { principalOf } from './auth.js';
import { noFields, parseInput } from './input.js';
import { traceIdOf } from './request-context.js';

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const rotateBody = z
  .object({ purpose: z.enum(['attestation', 'layout'], { error: 'must be attestation or layout' }), project: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, 'must be a project name').optional() })
  .strict()
  .refine((b) => (b.purpose === 'layout') === (b.project !== undefined), { message: 'a layout key belongs to one project: give project with purpose layout, and only then', path: ['project'] });
const attestationsQuery = z
  .object({
    subject: z.string().regex(DIGEST, 'must be sha256:<64 lower-case hex>').optional(),
    run: z.string().min(1).max(100).optional(),
  })
  .strict()
  .refine((q) => q.subject !== undefined || q.run !== undefined, { message: 'give subject=sha256:<hex> or run=<id>' });
const verificationBody = z
  .object({
    digest: z.string().regex(DIGEST, 'must be sha256:<64 lower-case hex>'),
    name: z.string().min(1).max(500),
    result: z.enum(['PASSED', 'FAILED']),
    reasons: z.array(z.string().max(500)).max(50),
  })
  .strict();

function ctx(request: FastifyRequest) {
  return { sourceAddress: request.ip, requestId: request.id, traceId: traceIdOf(request.raw) };
}

export function provenanceRoutes(app: App): (server: FastifyInstance) => Promise<void> {
  return async (server) => {
    server.get('/api/v1/keys', { config: { action: 'keys.read', resource: 'keys' } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      await app.vault();
      return { keys: await app.platformKeys.publicKeys() };
    });

    server.post('/api/v1/keys/rotate', { config: { action: 'keys.rotate', resource: 'keys' } }, async (request) => {
      const body = parseInput(rotateBody, request.body, 'body');
      await app.vault();
      return app.platformKeys.rotate(body.purpose, actorOf(principalOf(request)), ctx(request), body.project === undefined ? '' : `project:${body.project}`);
    });

    server.get('/api/v1/attestations', { config: { action: 'artifacts.read', resource: 'artifacts' } }, async (request) => {
      const q = parseInput(attestationsQuery, request.query, 'query');
      return { attestations: await app.provenance.list({ subject: q.subject, runId: q.run }) };
    });

    server.post('/api/v1/verifications', { config: { action: 'artifacts.read', resource: 'artifacts' } }, async (request, reply) => {
      const body = parseInput(verificationBody, request.body, 'body');
      await app.provenance.recordVerification(actorOf(principalOf(request)), body, ctx(request));
      return reply.code(204).send();
    });

    return Promise.resolve();
  };
}
