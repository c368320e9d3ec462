/**
 * The HTTP adapter: fastify wired to the App. Hooks, in request order:
 *   onRequest  correlation headers; the single enforcement point (route must declare an action;
 *              refuse new work while draining)
 *   handler    routes.ts (parse, call the domain, shape JSON)
 *   error      toHttpError: the one code -> status table
 *   onSend     append the request's audit record and wait for it; if that fails the response
 *              becomes 503 STORAGE_UNAVAILABLE (nothing is served without its record)
 */
import type { AddressInfo } from 'node:net';
import { fastify } from 'fastify';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { App } from '../app/index.js';
import { AirlockError, ShuttingDownError } from '../errors/index.js';
import type { Logger } from '../observability/index.js';
import type { ErrorBody } from './errors.js';
import { toHttpError } from './errors.js';
import { declaredAction, requestEvent } from './request-audit.js';
import { requestIdOf, setErrorCode } from './request-context.js';
import { routes } from './routes.js';

/** A registered route and the action it declares (undefined: none, which is refused at run time). */
export interface RegisteredRoute {
  readonly method: string;
  readonly url: string;
  readonly action: string | undefined;
}

const ROUTES = new WeakMap<FastifyInstance, RegisteredRoute[]>();

/** Every route registered on a server made by {@link buildServer} (complete once it is ready). */
export function registeredRoutes(server: FastifyInstance): readonly RegisteredRoute[] {
  return [...(ROUTES.get(server) ?? [])];
}

/** Options for {@link buildServer}. */
export interface ServerOptions {
  readonly logger: Logger;
}

/** Options for {@link startServer}. */
export interface StartServerOptions extends ServerOptions {
  readonly host: string;
  readonly port: number;
}

/** A listening server. */
export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:7300 (the real port when started on port 0). */
  readonly url: string;
  /**
   * Graceful stop: accept no new connections, refuse new requests on open ones (503, audited),
   * finish in-flight requests including their audit appends. The caller then closes the app.
   */
  close(): Promise<void>;
}

export const BODY_LIMIT = 64 * 1024;

const JSON_TYPE = 'application/json; charset=utf-8';

function errorPayload(body: ErrorBody): string {
  return JSON.stringify(body);
}

/**
 * Build the server for `app`. Routes load when the instance becomes ready (`inject`,
 * `listen` or `ready()` do that), so a caller may still add hooks such as `onRoute` first.
 */
export async function buildServer(app: App, options: ServerOptions): Promise<FastifyInstance> {
  let draining = false;

  const server = fastify({
    loggerInstance: options.logger,
    trustProxy: false,
    bodyLimit: BODY_LIMIT,
    // Our own request id (validated); fastify must not take the header as-is.
    requestIdHeader: false,
    genReqId: requestIdOf,
    // Requests arriving while draining get our audited 503, not fastify's unaudited one.
    return503OnClosing: false,
    // Malformed URLs never reach a route or its hooks: answer and audit them here.
    frameworkErrors: (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      answerFrameworkError(app, error, request, reply).catch((err: unknown) => {
        request.log.error({ err }, 'answering a malformed request failed');
      });
    },
  }) as unknown as FastifyInstance;

  // Collected from the first route on, so the listing is complete (tests assert each declares an action).
  const registered: RegisteredRoute[] = [];
  ROUTES.set(server, registered);
  server.addHook('onRoute', (route) => {
    const action: unknown = route.config?.action;
    for (const method of [route.method].flat()) registered.push({ method, url: route.url, action: typeof action === 'string' ? action : undefined });
  });

  // Only JSON bodies exist in this API; anything else is 415. An empty JSON body is "no body".
  server.removeAllContentTypeParsers();
  const jsonParser = server.getDefaultJsonParser('error', 'error');
  server.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') {
      done(null, undefined);
      return;
    }
    void jsonParser(request, body as string, done);
  });

  server.addHook('onRequest', async (request, reply) => {
    void reply.header('x-request-id', request.id);
    void reply.header('cache-control', 'no-store');
    void reply.header('x-content-type-options', 'nosniff');
    // The single enforcement point: authorization will check this action here.
    if (declaredAction(request) === undefined) {
      throw new AirlockError('INTERNAL', 'internal error: this route declares no action', {});
    }
    if (draining) throw new ShuttingDownError();
    return Promise.resolve();
  });

  server.setErrorHandler((err, request, reply) => {
    const mapped = toHttpError(err);
    if (mapped.status >= 500) request.log.error({ err, code: mapped.code }, 'request failed');
    else request.log.info({ code: mapped.code }, 'request refused');
    setErrorCode(request.raw, mapped.code);
    return reply.code(mapped.status).type(JSON_TYPE).send(errorPayload(mapped.body));
  });

  server.setNotFoundHandler((request) => {
    // Thrown, so the error handler (and its table) produces the body.
    throw new AirlockError('NOT_FOUND', `no route matches ${request.method} ${request.url.split('?')[0] ?? ''}`.slice(0, 300));
  });

  server.addHook('onSend', async (request, reply, payload) => {
    const status = reply.statusCode;
    try {
      await app.audit.append(requestEvent(request, status, true));
    } catch (err) {
      // Fail closed: the access is not served without its record.
      request.log.error({ err, status }, 'audit append failed; refusing the response');
      setErrorCode(request.raw, 'STORAGE_UNAVAILABLE');
      void reply.code(503).type(JSON_TYPE);
      reply.removeHeader('vary');
      if (draining) void reply.header('connection', 'close');
      return errorPayload({ error: { code: 'STORAGE_UNAVAILABLE', message: 'the audit log is unavailable; the request was not served' } });
    }
    // Once draining, end each connection after its response so close() completes promptly.
    if (draining) void reply.header('connection', 'close');
    return payload;
  });

  server.addHook('preClose', async () => {
    draining = true;
    return Promise.resolve();
  });

  // Registered as a plugin so that it loads at ready(): hooks above apply to every route.
  void server.register(routes(app));

  return Promise.resolve(server);
}

/** Answer a request fastify refused before routing (bad URL), with its audit record. */
async function answerFrameworkError(app: App, error: FastifyError, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const mapped = toHttpError(error);
  setErrorCode(request.raw, mapped.code);
  let status = mapped.status;
  let body = mapped.body;
  try {
    await app.audit.append(requestEvent(request, status, false));
  } catch (err) {
    request.log.error({ err, status }, 'audit append failed; refusing the response');
    status = 503;
    body = { error: { code: 'STORAGE_UNAVAILABLE', message: 'the audit log is unavailable; the request was not served' } };
  }
  void reply.code(status).header('x-request-id', request.id).header('cache-control', 'no-store').header('x-content-type-options', 'nosniff').type(JSON_TYPE).send(errorPayload(body));
}

/** Build and listen. Rejects (and releases the port) if the address cannot be bound. */
export async function startServer(app: App, options: StartServerOptions): Promise<RunningServer> {
  const server = await buildServer(app, { logger: options.logger });
  try {
    await server.listen({ host: options.host, port: options.port });
  } catch (err) {
    await server.close();
    throw err;
  }
  const address = server.server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${address.port}`,
    close: () => (closing ??= server.close()),
  };
}
