/** Shared fixtures for the HTTP tests: an App on a fresh database of either engine. */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';
import { openApp } from '../../src/app/index.js';
import type { App } from '../../src/app/index.js';
import type { AuditEvent } from '../../src/audit/index.js';
import { loadConfig } from '../../src/config/index.js';
import type { Config } from '../../src/config/index.js';
import { createLogger } from '../../src/observability/index.js';
import type { ErrorBody } from '../../src/server/index.js';
import type { Engine } from '../../src/storage/index.js';
import { freshDatabase } from '../support/engines.js';

export const silent = createLogger('silent');

export interface TestApp {
  readonly app: App;
  cleanup(): Promise<void>;
}

/** A migrated App on a new SQLite file or PostgreSQL schema, with its own home and key. */
export async function openTestApp(engine: Engine): Promise<TestApp> {
  const db = await freshDatabase(engine);
  const base = loadConfig({ flags: { home: db.home }, env: {} });
  const config: Config = engine === 'sqlite' ? base : { ...base, database: db.config };
  const app = await openApp(config, { migrate: true });
  let closed = false;
  return {
    app,
    cleanup: async () => {
      if (!closed) await app.close();
      closed = true;
      await db.drop();
    },
  };
}

let counter = 0;
/** A request id unique to this process, to find a request's audit record. */
export function rid(label = 'r'): string {
  counter += 1;
  return `${label}-${process.pid}-${counter}`;
}

/** The audit record of the request that carried `requestId`. */
export async function recordOf(app: App, requestId: string): Promise<AuditEvent> {
  const recent = await app.audit.search({ order: 'desc', limit: 500 });
  const found = recent.filter((e) => e.event.context.requestId === requestId);
  expect(found, `audit records for ${requestId}`).toHaveLength(1);
  return found[0]!.event;
}

/** Assert `res` is an error response of the documented shape and return its body. */
export function expectError(res: LightMyRequestResponse, status: number, code: string): ErrorBody['error'] {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  const body = res.json<ErrorBody>();
  expect(Object.keys(body)).toEqual(['error']);
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe('string');
  expect(Object.keys(body.error).every((k) => ['code', 'message', 'details'].includes(k))).toBe(true);
  // Nothing internal leaks: no stack frames, no SQL, no driver text.
  expect(res.body).not.toMatch(/\bat .*\.(ts|js):\d+|stack|select |insert |SQLITE_|relation "|no such table/i);
  return body.error;
}

/** GET with a fresh request id; returns the response and the id. */
export async function get(server: FastifyInstance, url: string, headers: Record<string, string> = {}): Promise<{ res: LightMyRequestResponse; id: string }> {
  const id = rid();
  const res = await server.inject({ method: 'GET', url, headers: { 'x-request-id': id, ...headers } });
  return { res, id };
}
