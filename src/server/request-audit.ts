/**
 * Every request leaves a record in the audit log before its response leaves (promise 1, fail
 * closed): served, refused, failed, health probes alike, with who asked (as authenticated by
 * the enforcement point) and the policies that decided.
 */
import type { FastifyRequest } from 'fastify';
import type { AuditEventInput, Outcome } from '../audit/index.js';
import { actorOf } from '../identity/index.js';
import { authRecord } from './auth.js';
import { errorCodeOf, traceIdOf } from './request-context.js';

/** Action recorded for requests that matched no route (or a route that declares none). */
export const UNMATCHED_ACTION = 'http.request';
const MAX_RESOURCE = 512;
const MAX_USER_AGENT = 512;

/** The action a request performs, as its route declares it; undefined if the route declares none. */
export function declaredAction(request: FastifyRequest): string | undefined {
  if (request.is404) return UNMATCHED_ACTION;
  const action: unknown = request.routeOptions.config.action;
  return typeof action === 'string' && action !== '' ? action : undefined;
}

/** outcome from status: < 400 allowed; 401/403 denied; anything else failed. */
export function outcomeOf(status: number): Outcome {
  if (status < 400) return 'allowed';
  return status === 401 || status === 403 ? 'denied' : 'failed';
}

/** The audit event for `request` answered with `status`. */
export function requestEvent(request: FastifyRequest, status: number, matched: boolean): AuditEventInput {
  const url = request.url;
  const q = url.indexOf('?');
  const path = (q === -1 ? url : url.slice(0, q)).slice(0, MAX_RESOURCE) || '/';
  const outcome = outcomeOf(status);
  const userAgent = request.headers['user-agent'];
  const route = matched && !request.is404 ? (request.routeOptions.url ?? null) : null;
  const auth = authRecord(request.raw);
  return {
    actor: actorOf(auth.actor),
    action: (matched ? declaredAction(request) : undefined) ?? UNMATCHED_ACTION,
    resource: path,
    outcome,
    ...(outcome === 'allowed' ? {} : { reason: errorCodeOf(request.raw) ?? `HTTP_${status}` }),
    context: {
      // request.ip is the socket's peer (trustProxy is off); empty once the socket is gone.
      sourceAddress: request.ip === '' ? undefined : request.ip,
      userAgent: userAgent?.slice(0, MAX_USER_AGENT),
      requestId: request.id,
      traceId: traceIdOf(request.raw),
    },
    details: { method: request.method, status, route, ...auth.details },
  };
}
