/**
 * Remote agents over HTTP: registration tokens, registration, and the job protocol an agent
 * speaks (long-poll for a job, fetch its source and inputs, stream logs, heartbeat, upload
 * outputs, report). Authorization of the action happened at the enforcement point; which job an
 * agent may touch is the agents domain's check, made before any byte is read or served.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { PassThrough, Readable, Transform, pipeline } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { Agents } from '../agents/index.js';
import type { App } from '../app/index.js';
import type { JsonValue } from '../audit/index.js';
import { AirlockError, NotFoundError, ValidationError } from '../errors/index.js';
import { actorOf } from '../identity/index.js';
import { principalOf } from './auth.js';
import { decimal, emptyBody, noFields, parseInput } from './input.js';
import { traceIdOf } from './request-context.js';

/** Largest output blob an agent may upload. */
export const MAX_OUTPUT_BYTES = 1024 * 1024 * 1024;
/** Largest log batch (decoded bytes) in one request; agents send smaller batches. */
export const MAX_LOG_BATCH_BYTES = 1024 * 1024;
/** Default long-poll wait for a job. */
const DEFAULT_WAIT_SECONDS = 25;

const OCTET = 'application/octet-stream';
const digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be "sha256:" followed by 64 lower-case hex digits');
const stepId = z.uuid('must be a step id');
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const tokenBody = z.object({ labels: z.array(z.string().max(100)).max(20).default([]), expiresInMinutes: z.number().int().optional() }).strict();
const registerBody = z.object({ token: z.string().min(1).max(200), name: z.string().min(1).max(100), publicKey: z.string().min(1).max(4096) }).strict();
const nextQuery = z.object({ wait: decimal.pipe(z.number().max(60, 'must be at most 60 seconds')).optional() }).strict();
const nameParams = z.object({ name: z.string().min(1).max(100) }).strict();
const stepParams = z.object({ stepId }).strict();
const blobParams = z.object({ stepId, digest }).strict();
const logsBody = z
  .object({
    chunks: z.array(z.object({ stream: z.enum(['stdout', 'stderr']), data: z.string().max(2 * MAX_LOG_BATCH_BYTES).regex(BASE64, 'must be base64') }).strict()).max(1000),
  })
  .strict();
const resultBody = z
  .object({
    status: z.enum(['succeeded', 'failed', 'timed_out', 'cancelled', 'refused']),
    exitCode: z.number().int().nullable(),
    reason: z.string().max(4000).nullable().optional(),
    outputs: z.array(z.object({ path: z.string().min(1).max(1024), digest, size: z.number().int().min(0) }).strict()).max(1000),
    evidence: z.unknown().optional(),
  })
  .strict();

function ctx(request: FastifyRequest) {
  const ua = request.headers['user-agent'];
  return { sourceAddress: request.ip, requestId: request.id, traceId: traceIdOf(request.raw), userAgent: typeof ua === 'string' ? ua.slice(0, 512) : undefined };
}

/**
 * A pass-through that refuses more than `limit` bytes and, at the end, bytes that do not hash
 * to `expected`. The blob store removes its temporary file when its source fails, so content
 * that does not match the digest the agent named is never stored.
 */
function verifying(expected: string, limit: number): Transform {
  const hash = createHash('sha256');
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      size += chunk.length;
      if (size > limit) {
        callback(new AirlockError('PAYLOAD_TOO_LARGE', `an output may be at most ${limit} bytes`));
        return;
      }
      hash.update(chunk);
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      const actual = `sha256:${hash.digest('hex')}`;
      callback(actual === expected ? null : new ValidationError(`the uploaded bytes hash to ${actual}, not ${expected}`, [{ path: 'digest', message: 'does not match the content' }]));
    },
  });
}

/** The source tree as a tar stream; fails the stream (not a clean end) if tar fails. */
function tarOf(dir: string): { stream: Readable; stop: () => void } {
  const tar = spawn('tar', ['--create', '--file=-', '--directory', dir, '--sort=name', '--numeric-owner', '--owner=0', '--group=0', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = new PassThrough();
  let stderr = '';
  tar.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 1000) stderr += d.toString('utf8');
  });
  tar.stdout.pipe(out, { end: false });
  tar.on('error', (err) => out.destroy(err));
  tar.on('close', (code) => {
    if (code === 0) out.end();
    else out.destroy(new AirlockError('INTERNAL', `tar of the source failed (exit ${String(code)})`, { stderr: stderr.slice(0, 300) }));
  });
  return { stream: out, stop: () => tar.kill('SIGKILL') };
}

/** Register with `void server.register(agentRoutes(app))` in buildServer. */
export function agentRoutes(app: App): (server: FastifyInstance) => Promise<void> {
  // The composition root does not carry the agents domain yet; one per server is equivalent
  // (all its state is in the database, apart from the waiters of this process's long polls).
  const agents = new Agents({ store: app.store, audit: app.audit, clock: app.clock, runs: app.runs, blobs: app.blobs, provided: (job, runner) => app.providedEnv(job, runner) });
  return (server) => {
    // Long polls end at once when the server starts closing, so a graceful stop is not held up.
    const closing = new AbortController();
    server.addHook('preClose', (done) => {
      closing.abort();
      done();
    });
    // Outputs are streamed into the blob store, never buffered: the parser hands over the raw
    // request. Scoped to this plugin; everywhere else only JSON is accepted.
    server.addContentTypeParser(OCTET, (_request, payload, done) => {
      done(null, payload);
    });

    const agentOf = (request: FastifyRequest) => agents.forPrincipal(principalOf(request));

    // --- enrolment ----------------------------------------------------------------------------
    server.post('/api/v1/agents/registration-tokens', { config: { action: 'agents.tokens.create', resource: 'agents' } }, async (request, reply) => {
      const body = parseInput(tokenBody, request.body, 'body');
      return reply.code(201).send(await agents.createRegistrationToken(actorOf(principalOf(request)), body, ctx(request)));
    });

    server.post('/api/v1/agents/register', { config: { action: 'agents.register', resource: 'agents' } }, async (request, reply) => {
      const body = parseInput(registerBody, request.body, 'body');
      return reply.code(201).send(await agents.register(body, ctx(request)));
    });

    server.get('/api/v1/agents', { config: { action: 'agents.read', resource: 'agents' } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      return { agents: await agents.list() };
    });

    server.post('/api/v1/agents/:name/disable', { config: { action: 'agents.disable', resource: 'agents' } }, async (request) => {
      parseInput(emptyBody, request.body, 'body');
      const { name } = parseInput(nameParams, request.params, 'path');
      return agents.disable(actorOf(principalOf(request)), name, ctx(request));
    });

    // --- jobs -------------------------------------------------------------------------------------
    // No HEAD twin: a HEAD would claim a job and throw the answer away.
    server.get('/api/v1/agents/jobs/next', { exposeHeadRoute: false, config: { action: 'agents.jobs.claim', resource: 'agents' } }, async (request, reply) => {
      const q = parseInput(nextQuery, request.query, 'query');
      const agent = await agentOf(request);
      await agents.seen(agent);
      // The agent hung up (or the server is closing): stop waiting rather than claim for nobody.
      const gone = new AbortController();
      const onClose = (): void => {
        if (!reply.raw.writableFinished) gone.abort();
      };
      reply.raw.once('close', onClose);
      try {
        const next = await agents.nextJob(agent, (q.wait ?? DEFAULT_WAIT_SECONDS) * 1000, AbortSignal.any([gone.signal, closing.signal]));
        if (next === undefined) return await reply.code(204).send();
        // No secret travels with the offer: the agent fetches the step's own secrets with the
        // step's workload token when it starts it (POST /api/v1/workload/secrets).
        return await reply.send(next);
      } finally {
        reply.raw.off('close', onClose);
      }
    });

    server.get('/api/v1/agents/jobs/:stepId/source', { exposeHeadRoute: false, config: { action: 'agents.jobs.claim', resource: 'agents' } }, async (request, reply) => {
      parseInput(noFields, request.query, 'query');
      const p = parseInput(stepParams, request.params, 'path');
      const dir = await agents.sourceDir(await agentOf(request), p.stepId, ctx(request));
      if (!existsSync(dir)) throw new NotFoundError(`the source tree of step ${p.stepId} is not on this server`, { stepId: p.stepId });
      const tar = tarOf(dir);
      reply.raw.once('close', tar.stop);
      return reply.type('application/x-tar').send(tar.stream);
    });

    server.get('/api/v1/agents/jobs/:stepId/inputs/:digest', { exposeHeadRoute: false, config: { action: 'agents.jobs.claim', resource: 'agents' } }, async (request, reply) => {
      parseInput(noFields, request.query, 'query');
      const p = parseInput(blobParams, request.params, 'path');
      await agents.checkInput(await agentOf(request), p.stepId, p.digest, ctx(request));
      // The store's stream re-hashes and fails at its end if the blob is corrupt.
      return reply.type(OCTET).send(await app.blobs.open(p.digest));
    });

    server.put('/api/v1/agents/jobs/:stepId/outputs/:digest', { config: { action: 'agents.jobs.report', resource: 'agents' } }, async (request, reply) => {
      parseInput(noFields, request.query, 'query');
      const p = parseInput(blobParams, request.params, 'path');
      await agents.access(await agentOf(request), p.stepId, 'output', ctx(request));
      const declared = Number(request.headers['content-length'] ?? '0');
      // An empty output (an empty file) may arrive without a body at all.
      const body = request.body instanceof Readable ? request.body : request.body === undefined && declared === 0 ? Readable.from([]) : undefined;
      if (body === undefined) throw new ValidationError(`send the output's bytes as ${OCTET}`, [{ path: '(body)', message: `must be ${OCTET}` }]);
      if (declared > MAX_OUTPUT_BYTES) throw new AirlockError('PAYLOAD_TOO_LARGE', `an output may be at most ${MAX_OUTPUT_BYTES} bytes`);
      const check = verifying(p.digest, MAX_OUTPUT_BYTES);
      // Errors reach the store through `check`, which then removes its temporary file.
      pipeline(body, check, () => undefined);
      const stored = await app.blobs.put(check);
      return reply.code(201).send(stored);
    });

    server.post('/api/v1/agents/jobs/:stepId/logs', { bodyLimit: 3 * MAX_LOG_BATCH_BYTES, config: { action: 'agents.jobs.report', resource: 'agents' } }, async (request, reply) => {
      const p = parseInput(stepParams, request.params, 'path');
      const body = parseInput(logsBody, request.body, 'body');
      const chunks = body.chunks.map((c) => ({ stream: c.stream, data: Buffer.from(c.data, 'base64') }));
      const total = chunks.reduce((n, c) => n + c.data.length, 0);
      if (total > MAX_LOG_BATCH_BYTES) throw new AirlockError('PAYLOAD_TOO_LARGE', `a log batch may carry at most ${MAX_LOG_BATCH_BYTES} bytes; send smaller batches`);
      await agents.appendLog(await agentOf(request), p.stepId, chunks, ctx(request));
      return reply.code(204).send();
    });

    server.post('/api/v1/agents/jobs/:stepId/heartbeat', { config: { action: 'agents.jobs.report', resource: 'agents' } }, async (request) => {
      parseInput(emptyBody, request.body, 'body');
      const p = parseInput(stepParams, request.params, 'path');
      return agents.heartbeat(await agentOf(request), p.stepId, ctx(request));
    });

    server.post('/api/v1/agents/jobs/:stepId/result', { bodyLimit: MAX_LOG_BATCH_BYTES, config: { action: 'agents.jobs.report', resource: 'agents' } }, async (request, reply) => {
      const p = parseInput(stepParams, request.params, 'path');
      const body = parseInput(resultBody, request.body, 'body');
      // Parsed from JSON, so it is JSON.
      const evidence = (body.evidence ?? null) as JsonValue;
      await agents.report(await agentOf(request), p.stepId, { status: body.status, exitCode: body.exitCode, reason: body.reason ?? undefined, outputs: body.outputs, evidence }, ctx(request));
      return reply.code(204).send();
    });
    return Promise.resolve();
  };
}
