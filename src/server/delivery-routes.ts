/**
 * Delivery over HTTP: deployment requests, approvals and denials (step-up, enforced by Cedar
 * through `deployments.approve` being sensitive), deploys, one-off freezes, and the exported
 * deployment record an auditor verifies offline. Segregation of duties is the domain's: a
 * decision Cedar allows may still be refused there, with its reason code.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Deployments } from '../delivery/index.js';
import { actorOf } from '../identity/index.js';
import { principalOf } from './auth.js';
import { decimal, parseInput } from './input.js';
import { traceIdOf } from './request-context.js';

/** What the routes need; `App` has it once the composition root wires `deployments`. */
export interface DeliveryRouteDeps {
  readonly deployments: Deployments;
}

const ENV = z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, 'must be lower-case letters, digits and "-", starting with a letter (at most 63)');
const justification = z.string({ error: 'is required: say why' }).min(1, 'is required: say why').max(2000, 'must be at most 2000 characters');
const requestBody = z
  .object({
    run: z.string({ error: 'is required: a run id, or project#number' }).min(1, 'must not be empty').max(100, 'must be at most 100 characters'),
    environment: ENV,
    justification,
    ticket: z.string().min(1, 'must not be empty').max(200, 'must be at most 200 characters').optional(),
  })
  .strict();
const listQuery = z
  .object({
    project: z.string().min(1, 'must not be empty').max(63, 'must be at most 63 characters').optional(),
    environment: ENV.optional(),
    limit: decimal.pipe(z.number().min(1, 'must be at least 1').max(500, 'must be at most 500')).optional(),
  })
  .strict();
const idParams = z.object({ id: z.uuid({ error: 'must be a deployment id (see airlock deployments list)' }) }).strict();
const decisionBody = z.object({ justification }).strict();
const envParams = z.object({ environment: ENV }).strict();
const breakGlassBody = z.object({ justification }).strict();
const rollbackBody = z
  .object({
    project: z.string({ error: 'is required: the project to roll back' }).min(1, 'must not be empty').max(63, 'must be at most 63 characters'),
    to: z.uuid({ error: 'must be a deployment id (see airlock deployments list)' }).optional(),
    justification,
  })
  .strict();
const incidentParams = z.object({ id: z.uuid({ error: 'must be an incident id (see airlock incidents list)' }) }).strict();
const incidentQuery = z.object({ open: z.enum(['true', 'false'], { error: 'must be true or false' }).optional() }).strict();
const postmortemBody = z.object({ postmortem: z.string({ error: 'is required: what happened, why the bypass was needed, what follows' }).max(20_000, 'must be at most 20000 characters') }).strict();
const noQuery = z.object({}).strict();
const noBody = z.object({}).strict().optional();

function ctx(request: FastifyRequest) {
  return { sourceAddress: request.ip, requestId: request.id, traceId: traceIdOf(request.raw) };
}

export function deliveryRoutes(deps: DeliveryRouteDeps): (server: FastifyInstance) => Promise<void> {
  return async (server) => {
    const route = { resource: 'deployments' };

    server.post('/api/v1/deployments', { config: { action: 'deployments.request', ...route } }, async (request, reply) => {
      const body = parseInput(requestBody, request.body, 'body');
      const view = await deps.deployments.request(actorOf(principalOf(request)), { run: body.run, environment: body.environment, justification: body.justification, ticket: body.ticket }, ctx(request));
      return reply.code(201).send(view);
    });

    server.get('/api/v1/deployments', { config: { action: 'deployments.read', ...route } }, async (request) => {
      const q = parseInput(listQuery, request.query, 'query');
      return { deployments: await deps.deployments.list({ project: q.project, environment: q.environment, limit: q.limit ?? 50 }) };
    });

    server.get('/api/v1/deployments/:id', { config: { action: 'deployments.read', ...route } }, async (request) => {
      parseInput(noQuery, request.query, 'query');
      const { id } = parseInput(idParams, request.params, 'path');
      return deps.deployments.show(id);
    });

    server.get('/api/v1/deployments/:id/record', { config: { action: 'deployments.read', ...route } }, async (request) => {
      parseInput(noQuery, request.query, 'query');
      const { id } = parseInput(idParams, request.params, 'path');
      return deps.deployments.recordFile(id);
    });

    for (const decision of ['approve', 'deny'] as const) {
      server.post(`/api/v1/deployments/:id/${decision}`, { config: { action: 'deployments.approve', ...route } }, async (request) => {
        const body = parseInput(decisionBody, request.body, 'body');
        const { id } = parseInput(idParams, request.params, 'path');
        return deps.deployments.decide(actorOf(principalOf(request)), id, { decision, justification: body.justification }, ctx(request));
      });
    }

    server.post('/api/v1/deployments/:id/deploy', { config: { action: 'deployments.request', ...route } }, async (request) => {
      parseInput(noBody, request.body, 'body');
      const { id } = parseInput(idParams, request.params, 'path');
      return deps.deployments.deploy(actorOf(principalOf(request)), id, ctx(request));
    });

    // Break-glass: `breakglass.use` is sensitive (step-up within its window) and privileged; the
    // domain needs a second, distinct person before anything deploys.
    server.post('/api/v1/deployments/:id/break-glass', { config: { action: 'breakglass.use', ...route } }, async (request) => {
      const body = parseInput(breakGlassBody, request.body, 'body');
      const { id } = parseInput(idParams, request.params, 'path');
      return deps.deployments.breakGlass(actorOf(principalOf(request)), id, { justification: body.justification }, ctx(request));
    });

    server.get('/api/v1/deployments/:id/vsa', { config: { action: 'deployments.read', ...route } }, async (request) => {
      parseInput(noQuery, request.query, 'query');
      const { id } = parseInput(idParams, request.params, 'path');
      return { verificationSummaries: await deps.deployments.verificationSummaries(id) };
    });

    server.post('/api/v1/environments/:environment/rollback', { config: { action: 'deployments.request', ...route } }, async (request) => {
      const body = parseInput(rollbackBody, request.body, 'body');
      const { environment } = parseInput(envParams, request.params, 'path');
      return deps.deployments.rollback(actorOf(principalOf(request)), { project: body.project, environment, to: body.to, justification: body.justification }, ctx(request));
    });

    server.get('/api/v1/incidents', { config: { action: 'incidents.read', resource: 'incidents' } }, async (request) => {
      const q = parseInput(incidentQuery, request.query, 'query');
      return { incidents: await deps.deployments.incidents.list({ open: q.open === 'true' }) };
    });

    server.get('/api/v1/incidents/:id', { config: { action: 'incidents.read', resource: 'incidents' } }, async (request) => {
      parseInput(noQuery, request.query, 'query');
      const { id } = parseInput(incidentParams, request.params, 'path');
      return deps.deployments.incidents.show(id);
    });

    server.post('/api/v1/incidents/:id/postmortem', { config: { action: 'incidents.update', resource: 'incidents' } }, async (request) => {
      const body = parseInput(postmortemBody, request.body, 'body');
      const { id } = parseInput(incidentParams, request.params, 'path');
      return deps.deployments.incidents.close(actorOf(principalOf(request)), id, body.postmortem, ctx(request));
    });

    return Promise.resolve();
  };
}
