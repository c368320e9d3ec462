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
import { LogController, fastify } from 'fastify';
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { App } from '../app/index.js';
import { AirlockError, ShuttingDownError } from '../errors/index.js';
import type { Logger } from '../observability/index.js';
import type { ErrorBody } from './errors.js';
import { auditUnavailable, toHttpError } from './errors.js';
import { enforce } from './auth.js';
import { declaredAction, requestEvent } from './request-audit.js';
import { recordedInTx, requestIdOf, setErrorCode, traceIdOf } from './request-context.js';
import { agentRoutes } from './agent-routes.js';
import { identityRoutes } from './identity-routes.js';
import { routes } from './routes.js';
import { runRoutes } from './run-routes.js';
import { secretRoutes } from './secret-routes.js';
import { provenanceRoutes } from './provenance-routes.js';
import { intotoRoutes } from './intoto-routes.js';
import { artifactRoutes } from './artifact-routes.js';
import { deliveryRoutes } from './delivery-routes.js';
import { freezeRoutes } from './freeze-routes.js';

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
 * Build the server for `app` (not yet listening: use `inject`, or {@link startServer}).
 * {@link registeredRoutes} lists its routes once it is ready.
 */
export async function buildServer(app: App, options: ServerOptions): Promise<FastifyInstance> {
  let draining = false;
  // Seen as fastify's base logger, so the instance is a plain FastifyInstance.
  const logger: FastifyBaseLogger = options.logger;

  const server = fastify({
    loggerInstance: logger,
    // The audit log is the access record; per-request log lines are for debugging (below).
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: false,
    bodyLimit: BODY_LIMIT,
    // Our own request id (validated); fastify must not take the header as-is.
    requestIdHeader: false,
    genReqId: requestIdOf,
    // Every request's log lines carry the trace id its audit record carries.
    childLoggerFactory: (parent, bindings, opts, raw) => parent.child({ ...bindings, traceId: traceIdOf(raw) }, opts),
    // Requests arriving while draining get our audited 503, not fastify's unaudited one.
    return503OnClosing: false,
    // Malformed URLs never reach a route or its hooks: answer and audit them here.
    frameworkErrors: (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      answerFrameworkError(app, error, request, reply).catch((err: unknown) => {
        request.log.error({ err }, 'answering a malformed request failed');
      });
    },
  });

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
    // The single enforcement point: every route declares its action, checked here and only here.
    const action = declaredAction(request);
    if (action === undefined) {
      throw new AirlockError('INTERNAL', 'internal error: this route declares no action', {});
    }
    if (draining) throw new ShuttingDownError();
    if (request.is404) return;
    await enforce(app, request, action, request.routeOptions.config.resource);
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
      // Already durable with the handler's state change, as exactly this answer (200).
      if (!(status === 200 && recordedInTx(request.raw))) await app.audit.append(requestEvent(request, status, true));
    } catch (err) {
      // Fail closed: the access is not served without its record.
      request.log.error({ err, status }, 'audit append failed; refusing the response');
      const refused = auditUnavailable();
      setErrorCode(request.raw, refused.code);
      void reply.code(refused.status).type(JSON_TYPE);
      reply.removeHeader('vary');
      if (draining) void reply.header('connection', 'close');
      return errorPayload(refused.body);
    }
    // Once draining, end each connection after its response so close() completes promptly.
    if (draining) void reply.header('connection', 'close');
    return payload;
  });

  server.addHook('onResponse', async (request, reply) => {
    if (options.logger.isLevelEnabled('debug')) request.log.debug({ req: request, status: reply.statusCode, ms: reply.elapsedTime }, 'request completed');
    return Promise.resolve();
  });

  server.addHook('preClose', async () => {
    draining = true;
    return Promise.resolve();
  });

  // A plugin, so the hooks and handlers above apply to every route inside it.
  void server.register(routes(app));
  void server.register(identityRoutes(app));
  void server.register(agentRoutes(app));
  void server.register(runRoutes(app));
  void server.register(secretRoutes(app));
  void server.register(provenanceRoutes(app));
  void server.register(intotoRoutes(app.intoto));
  void server.register(artifactRoutes(app));
  void server.register(deliveryRoutes(app));
  void server.register(freezeRoutes({ freezes: app.deployments.freezes }));

  return Promise.resolve(server);
}

/** Answer a request fastify refused before routing (bad URL), with its audit record. */
async function answerFrameworkError(app: App, error: FastifyError, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  let answer = toHttpError(error);
  request.log.info({ code: answer.code }, 'request refused');
  setErrorCode(request.raw, answer.code);
  try {
    await app.audit.append(requestEvent(request, answer.status, false));
  } catch (err) {
    request.log.error({ err, status: answer.status }, 'audit append failed; refusing the response');
    answer = auditUnavailable();
  }
  void reply.code(answer.status).header('x-request-id', request.id).header('cache-control', 'no-store').header('x-content-type-options', 'nosniff').type(JSON_TYPE).send(errorPayload(answer.body));
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
  const close = async (): Promise<void> => {
    // Responses that were already past onSend when draining began keep their connection
    // alive; reap such connections as soon as they go idle instead of at keepAliveTimeout.
    const reaper = setInterval(() => {
      server.server.closeIdleConnections();
    }, 100);
    try {
      await server.close();
    } finally {
      clearInterval(reaper);
    }
  };
  return {
    url: `http://${host}:${address.port}`,
    close: () => (closing ??= close()),
  };
}
