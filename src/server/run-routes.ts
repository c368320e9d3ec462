/** Projects and runs: register repositories, trigger runs, follow them, cancel them. */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { App } from '../app/index.js';
import { actorOf } from '../identity/index.js';
import { principalOf } from './auth.js';
import { decimal, noFields, parseInput } from './input.js';
import { traceIdOf } from './request-context.js';

const projectBody = z.object({ name: z.string().min(1).max(63), repo: z.string().min(1).max(1000) }).strict();
const runBody = z
  .object({
    project: z.string().min(1).max(63),
    ref: z.string().min(1).max(200).optional(),
    reason: z.string().max(1000).optional(),
    params: z.record(z.string(), z.string().max(1000)).optional(),
  })
  .strict();
const runsQuery = z.object({ project: z.string().min(1).max(63).optional(), limit: decimal.pipe(z.number().min(1).max(500)).optional() }).strict();
const runParams = z.object({ run: z.string().min(1).max(100) }).strict();
const cancelBody = z.object({ reason: z.string().max(1000).optional() }).strict().optional();
const logsQuery = z
  .object({
    after: decimal.optional(),
    wait: decimal.pipe(z.number().max(30, 'must be at most 30 seconds')).optional(),
  })
  .strict();

const LOG_POLL_MS = 250;

export function runRoutes(app: App): (server: FastifyInstance) => Promise<void> {
  const ctx = (request: { ip: string; id: string; raw: Parameters<typeof traceIdOf>[0] }) => ({ sourceAddress: request.ip, requestId: request.id, traceId: traceIdOf(request.raw) });
  return async (server) => {
    // Log long polls end when the server starts closing or the client hangs up, so neither a
    // graceful stop nor a departed `airlock logs -f` keeps a handler looping to its deadline.
    const closing = new AbortController();
    server.addHook('preClose', async () => {
      closing.abort();
      return Promise.resolve();
    });

    server.get('/api/v1/projects', { config: { action: 'projects.read', resource: 'projects' } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      return { projects: await app.projects.list() };
    });

    server.post('/api/v1/projects', { config: { action: 'projects.create', resource: 'projects' } }, async (request, reply) => {
      const body = parseInput(projectBody, request.body, 'body');
      return reply.code(201).send(await app.projects.add(actorOf(principalOf(request)), body, ctx(request)));
    });

    server.post('/api/v1/runs', { config: { action: 'pipelines.run', resource: 'runs' } }, async (request, reply) => {
      const body = parseInput(runBody, request.body, 'body');
      // The run gets its own trace id (every step and event of it shares it), not the request's.
      const { traceId: _omit, ...context } = ctx(request);
      return reply.code(201).send(await app.runs.start(actorOf(principalOf(request)), body, context));
    });

    server.get('/api/v1/runs', { config: { action: 'runs.read' } }, async (request) => {
      const q = parseInput(runsQuery, request.query, 'query');
      return { runs: await app.runs.list(q) };
    });

    server.get('/api/v1/runs/:run', { config: { action: 'runs.read' } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      const { run } = parseInput(runParams, request.params, 'path');
      return app.runs.show(await app.runs.resolveId(run));
    });

    server.post('/api/v1/runs/:run/cancel', { config: { action: 'runs.cancel' } }, async (request) => {
      const body = parseInput(cancelBody, request.body, 'body') ?? {};
      const { run } = parseInput(runParams, request.params, 'path');
      return app.runs.cancel(actorOf(principalOf(request)), await app.runs.resolveId(run), body.reason, ctx(request));
    });

    server.get('/api/v1/runs/:run/logs', { config: { action: 'runs.read' } }, async (request, reply) => {
      const q = parseInput(logsQuery, request.query, 'query');
      const { run } = parseInput(runParams, request.params, 'path');
      const id = await app.runs.resolveId(run);
      const deadline = Date.now() + (q.wait ?? 0) * 1000;
      const gone = (): boolean => closing.signal.aborted || request.raw.destroyed || reply.raw.destroyed;
      // Long poll: answer as soon as there is output or the run ends, at the latest at the deadline.
      for (;;) {
        const { chunks, finished } = await app.runs.logs(id, q.after);
        if (chunks.length > 0 || finished || Date.now() >= deadline || gone()) {
          const last = chunks.at(-1);
          return {
            chunks: chunks.map((c) => ({ stage: c.stage, step: c.step, attempt: c.attempt, stream: c.stream, data: c.data.toString('base64') })),
            cursor: last === undefined ? (q.after ?? null) : last.id,
            finished,
          };
        }
        await new Promise((r) => setTimeout(r, LOG_POLL_MS));
      }
    });

    return Promise.resolve();
  };
}
