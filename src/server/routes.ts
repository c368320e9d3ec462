/**
 * The routes: parse input, call the domain, shape JSON. No domain logic lives here. Every
 * route declares in `config.action` the action it performs; the enforcement point in
 * server.ts refuses to serve a route that declares none.
 */
import type { FastifyInstance } from 'fastify';
import type { App } from '../app/index.js';
import { encodeConsistencyProof, encodeInclusionProof } from '../audit/index.js';
import type { AuditEntry, SignedCheckpoint } from '../audit/index.js';
import { AirlockError, NotFoundError, isAirlockError } from '../errors/index.js';
import { NotReadyError } from './errors.js';
import { consistencyQuery, emptyBody, entriesQuery, inclusionQuery, noFields, parseInput, seqParams, toAuditQuery } from './input.js';
import type { ResourceSpec } from './auth.js';
import { principalOf } from './auth.js';
import { traceIdOf } from './request-context.js';
import { actorOf } from '../identity/index.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The action this route performs: what the enforcement point authorizes and the audit records. */
    action?: string;
    /** What it acts on (default: the collection named by the action's first segment). */
    resource?: ResourceSpec;
  }
}

const b64 = (b: Buffer): string => b.toString('base64');

const entryJson = (e: AuditEntry) => ({ seq: e.seq, leafHash: b64(e.leafHash), event: e.event });

const checkpointJson = (c: SignedCheckpoint) => ({ size: c.size, rootHash: b64(c.rootHash), note: c.note, createdAt: c.createdAt });

/** Speak the query's field names in an AUDIT_INVALID_RANGE error, not the domain's. */
function renameRangeField(err: unknown, names: Readonly<Record<string, string>>): unknown {
  if (!isAirlockError(err) || err.code !== 'AUDIT_INVALID_RANGE') return err;
  const field = err.details.field;
  if (typeof field !== 'string') return err;
  const name = names[field] ?? field;
  const message = err.message.startsWith(field) ? name + err.message.slice(field.length) : err.message;
  return new AirlockError('AUDIT_INVALID_RANGE', `invalid query: ${message}`, { ...err.details, field: name, issues: [{ path: name, message }] });
}

/** True if the client's Accept header prefers text/plain over JSON. */
export function prefersText(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  let text = -1;
  let json = -1;
  for (const part of accept.split(',')) {
    const [type = '', ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    const qParam = params.find((p) => p.startsWith('q='));
    const q = qParam === undefined ? 1 : Number(qParam.slice(2));
    if (!Number.isFinite(q)) continue;
    if (type === 'text/plain' || type === 'text/*') text = Math.max(text, q);
    else if (type === 'application/json' || type === 'application/*' || type === '*/*') json = Math.max(json, q);
  }
  return text > 0 && text > json;
}

/** Register every route of the API on `server`. */
export function routes(app: App): (server: FastifyInstance) => Promise<void> {
  return async (server) => {
    server.get('/healthz', { config: { action: 'system.health.read' } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      return Promise.resolve({ status: 'ok' });
    });

    server.get('/readyz', { config: { action: 'system.health.read' } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      try {
        await app.store.ping();
      } catch (err) {
        throw new NotReadyError(isAirlockError(err) ? err : new AirlockError('STORAGE_UNAVAILABLE', 'the database is unavailable'));
      }
      // A refusal to sign means the stored log no longer extends what was signed: not ready.
      const refusal = app.checkpointer.lastError;
      if (refusal !== undefined) throw new NotReadyError(refusal);
      return { status: 'ready' };
    });

    server.get('/api/v1/audit/tree', { config: { action: 'audit.tree.read' } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      const head = await app.audit.head();
      return { size: head.size, rootHash: b64(head.rootHash) };
    });

    server.get('/api/v1/audit/entries', { config: { action: 'audit.entries.read' } }, async (request) => {
      const query = toAuditQuery(parseInput(entriesQuery, request.query, 'query'));
      // One more than asked says whether another page exists. `next` is the last seq served:
      // pass it as `after` for the next page (as `before` when paging with order=desc).
      const found = await app.audit.search({ ...query, limit: query.limit + 1 });
      const entries = found.slice(0, query.limit);
      const last = entries.at(-1);
      const more = found.length > query.limit && last !== undefined;
      return { entries: entries.map(entryJson), ...(more ? { next: last.seq } : {}) };
    });

    server.get('/api/v1/audit/entries/:seq', { config: { action: 'audit.entries.read' } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      const { seq } = parseInput(seqParams, request.params, 'path');
      return entryJson(await app.audit.entry(seq));
    });

    server.get('/api/v1/audit/checkpoints/latest', { config: { action: 'audit.checkpoints.read' } }, async (request, reply) => {
      parseInput(noFields, request.query, 'query');
      const latest = await app.checkpointer.latest();
      reply.header('vary', 'accept');
      if (latest === undefined) throw new NotFoundError('no checkpoint has been signed yet');
      if (prefersText(request.headers.accept)) {
        return reply.type('text/plain; charset=utf-8').send(latest.note);
      }
      return checkpointJson(latest);
    });

    server.post('/api/v1/audit/checkpoints', { config: { action: 'audit.checkpoints.create' } }, async (request, reply) => {
      parseInput(noFields, request.query, 'query');
      parseInput(emptyBody, request.body, 'body');
      // Signing is a state change: recorded before it happens, so a failed record signs nothing.
      const cp = await app.signCheckpoint(
        actorOf(principalOf(request)),
        { sourceAddress: request.ip, requestId: request.id, traceId: traceIdOf(request.raw) },
      );
      return reply.code(201).send(checkpointJson(cp));
    });

    server.get('/api/v1/audit/proofs/inclusion', { config: { action: 'audit.proofs.read' } }, async (request) => {
      const { seq, size } = parseInput(inclusionQuery, request.query, 'query');
      try {
        return encodeInclusionProof(await app.audit.inclusionProof(seq, size));
      } catch (err) {
        throw renameRangeField(err, { leafIndex: 'seq', treeSize: 'size' });
      }
    });

    server.get('/api/v1/audit/proofs/consistency', { config: { action: 'audit.proofs.read' } }, async (request) => {
      const { from, to } = parseInput(consistencyQuery, request.query, 'query');
      try {
        return encodeConsistencyProof(await app.audit.consistencyProof(from, to));
      } catch (err) {
        throw renameRangeField(err, { size1: 'from', size2: 'to' });
      }
    });

    server.get('/api/v1/audit/key', { config: { action: 'audit.key.read' } }, async (request) => {
      parseInput(noFields, request.query, 'query');
      return Promise.resolve({ verifierKey: app.key.verifierKey, keyName: app.key.signer.name, algorithm: 'Ed25519' });
    });

    return Promise.resolve();
  };
}
