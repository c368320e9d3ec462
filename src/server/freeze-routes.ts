/**
 * Freezes over HTTP: set one (one-off until a time, or recurring as cron + time zone + duration),
 * list them with whether each is in force now, and lift one. Setting and lifting are
 * `deployments.freeze`; reading is `deployments.read`. The domain re-checks every rule and
 * records each change with the request's context.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { MAX_FREEZE_DURATION_SECONDS } from '../delivery/index.js';
import type { Freezes } from '../delivery/index.js';
import { actorOf } from '../identity/index.js';
import { principalOf } from './auth.js';
import { parseInput } from './input.js';
import { traceIdOf } from './request-context.js';

/** What the routes need; `App` has it once the composition root wires `freezes`. */
export interface FreezeRouteDeps {
  readonly freezes: Freezes;
}

const ENV = z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, 'must be lower-case letters, digits and "-", starting with a letter (at most 63)');
const isoTime = z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time with a zone, such as 2025-01-31T18:00:00Z' }).transform((s) => new Date(s).toISOString());
const reason = (what: string) => z.string({ error: `is required: say why ${what}` }).trim().min(5, 'must be at least 5 characters').max(1000, 'must be at most 1000 characters');
const freezeBody = z
  .object({
    reason: reason('the environment is frozen'),
    until: isoTime.optional(),
    from: isoTime.optional(),
    cron: z.string({ error: 'must be a cron expression such as "0 18 * * 5"' }).min(1, 'must not be empty').max(200, 'must be at most 200 characters').optional(),
    timezone: z.string({ error: 'must be an IANA time zone such as Europe/Paris' }).min(1, 'must not be empty').max(100, 'must be at most 100 characters').optional(),
    durationSeconds: z
      .number({ error: 'must be a number of seconds' })
      .int('must be a whole number of seconds')
      .min(1, 'must be at least 1 second')
      .max(MAX_FREEZE_DURATION_SECONDS, `must be at most ${MAX_FREEZE_DURATION_SECONDS} seconds (31 days)`)
      .optional(),
  })
  .strict()
  .superRefine((b, ctx) => {
    const recurring = b.cron !== undefined || b.timezone !== undefined || b.durationSeconds !== undefined;
    if (!recurring && b.until === undefined) ctx.addIssue({ code: 'custom', path: ['until'], message: 'is required for a one-off freeze (or give cron, timezone and durationSeconds for a recurring one)' });
    if (recurring) {
      for (const field of ['cron', 'timezone', 'durationSeconds'] as const) {
        if (b[field] === undefined) ctx.addIssue({ code: 'custom', path: [field], message: 'is required for a recurring freeze (cron, timezone and durationSeconds go together)' });
      }
    }
    if (b.from !== undefined && b.until !== undefined && Date.parse(b.until) <= Date.parse(b.from)) ctx.addIssue({ code: 'custom', path: ['until'], message: 'must be after from' });
  });
const envParams = z.object({ environment: ENV }).strict();
const idParams = z.object({ id: z.uuid({ error: 'must be a freeze id (see airlock freeze list --all)' }) }).strict();
const listQuery = z
  .object({
    environment: ENV.optional(),
    all: z.enum(['true', 'false'], { error: 'must be true or false' }).optional(),
  })
  .strict();
const liftBody = z.object({ reason: reason('the freeze is lifted') }).strict();

function ctx(request: FastifyRequest) {
  return { sourceAddress: request.ip, requestId: request.id, traceId: traceIdOf(request.raw) };
}

/** The freeze routes; register with `server.register(freezeRoutes(app))`. */
export function freezeRoutes(deps: FreezeRouteDeps): (server: FastifyInstance) => Promise<void> {
  return async (server) => {
    const route = { resource: 'deployments' };

    server.post('/api/v1/environments/:environment/freezes', { config: { action: 'deployments.freeze', ...route } }, async (request, reply) => {
      const body = parseInput(freezeBody, request.body, 'body');
      const { environment } = parseInput(envParams, request.params, 'path');
      const freeze = await deps.freezes.add(actorOf(principalOf(request)), { environment, ...body }, ctx(request));
      return reply.code(201).send(freeze);
    });

    server.get('/api/v1/freezes', { config: { action: 'deployments.read', ...route } }, async (request) => {
      const q = parseInput(listQuery, request.query, 'query');
      return { freezes: await deps.freezes.list({ environment: q.environment, includeLifted: q.all === 'true' }) };
    });

    server.post('/api/v1/freezes/:id/lift', { config: { action: 'deployments.freeze', ...route } }, async (request) => {
      const body = parseInput(liftBody, request.body, 'body');
      const { id } = parseInput(idParams, request.params, 'path');
      return deps.freezes.lift(actorOf(principalOf(request)), id, body.reason, ctx(request));
    });

    return Promise.resolve();
  };
}
