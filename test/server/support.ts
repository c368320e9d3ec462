import { Writable } from 'node:stream';
/** Shared fixtures for the HTTP tests: an App on a fresh database of either engine. */
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { Secret } from 'otpauth';
import { totpAt } from '../../src/identity/index.js';
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

/** A clock the test moves by hand (sessions, TOTP steps, token expiry). */
export class TestClock {
  private t = Date.now();
  readonly now = (): Date => new Date(this.t);
  advance(ms: number): void {
    this.t += ms;
  }
}

export interface TestAppOptions {
  readonly clock?: TestClock;
  readonly config?: Partial<Config>;
  /** false: leave the log empty (the shipped policies apply without being stored as version 0). */
  readonly seedPolicy?: boolean;
}

/** A migrated App on a new SQLite file or PostgreSQL schema, with its own home and key. */
export async function openTestApp(engine: Engine, options: TestAppOptions = {}): Promise<TestApp> {
  const db = await freshDatabase(engine);
  const base = loadConfig({ flags: { home: db.home }, env: {} });
  const config: Config = { ...(engine === 'sqlite' ? base : { ...base, database: db.config }), ...options.config };
  const app = await openApp(config, { migrate: true, ...(options.seedPolicy === undefined ? {} : { seedPolicy: options.seedPolicy }), ...(options.clock === undefined ? {} : { clock: options.clock.now }) });
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
  // The request's own record (the one with the HTTP method); domain records of its state
  // changes carry the same request id.
  const found = recent.filter((e) => e.event.context.requestId === requestId && e.event.details.method !== undefined);
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

/** A person set up through the real flow (setup token, password, TOTP), ready to log in. */
export interface TestUser {
  readonly username: string;
  readonly password: string;
  readonly secret: Buffer;
}

/** Create and fully set up a user through the domain (the HTTP flow has its own tests). */
export async function makeUser(app: App, clock: TestClock, username: string, roles: readonly string[]): Promise<TestUser> {
  const made = await app.identity.users.create({ kind: 'system', id: 'test' }, { username, roles });
  const password = `pw-${username}-correct horse battery`;
  const enrolment = await app.identity.users.beginSetup({ username, setupToken: made.setupToken, password });
  const secret = Buffer.from(Secret.fromBase32(enrolment.secret).bytes);
  await app.identity.users.confirmSetup({ username, setupToken: made.setupToken, code: totpAt(secret, clock.now()) });
  return { username, password, secret };
}

/** The next TOTP code the server will accept: moves the clock one step on (a code is single-use). */
export function nextCode(clock: TestClock, user: TestUser): string {
  clock.advance(30_000);
  return totpAt(user.secret, clock.now());
}

/** Log in over HTTP (bearer mode); returns the session token. */
export async function login(server: FastifyInstance, clock: TestClock, user: TestUser): Promise<string> {
  const res = await server.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: user.username, password: user.password, code: nextCode(clock, user) } });
  expect(res.statusCode, res.body).toBe(201);
  return res.json<{ token: string }>().token;
}

/** The same server, with every injected request carrying `token` as its bearer credential. */
export function authed(server: FastifyInstance, token: string): FastifyInstance {
  return new Proxy(server, {
    get(target, prop, receiver) {
      if (prop !== 'inject') return Reflect.get(target, prop, receiver) as unknown;
      return (opts: InjectOptions | string) => {
        const o: InjectOptions = typeof opts === 'string' ? { url: opts } : opts;
        return target.inject({ ...o, headers: { authorization: `Bearer ${token}`, ...(o.headers ?? {}) } });
      };
    },
  });
}

/** A session token for a new user holding `roles` (signed in through the domain, no server needed). */
export async function signIn(app: App, clock: TestClock, username = 'operator', roles: readonly string[] = ['security-auditor', 'operator']): Promise<string> {
  const user = await makeUser(app, clock, username, roles);
  const session = await app.identity.sessions.login({ username, password: user.password, code: nextCode(clock, user) });
  return session.token;
}

/** A logger at `level` whose lines are kept in `lines` (to search them for secrets). */
export function capturingLogger(level: string, lines: string[]): ReturnType<typeof createLogger> {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  return createLogger(level, sink);
}
