/**
 * Per-request correlation: the request id (client-supplied when well-formed, else a UUID),
 * the W3C trace id, and the error code the response carries, for the audit record.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { HttpErrorCode } from './errors.js';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;
/** W3C Trace Context `traceparent`: version-traceid-parentid-flags (future versions may append fields). */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

interface RequestState {
  readonly traceId: string;
  errorCode: HttpErrorCode | undefined;
  /** The handler's domain transaction already holds this request's record (status 200). */
  recordedInTx: boolean;
}

const states = new WeakMap<IncomingMessage, RequestState>();

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === 'string' ? v : undefined;
}

/** fastify `genReqId`: honour a well-formed `x-request-id`, else generate one. */
export function requestIdOf(req: IncomingMessage): string {
  const given = header(req, 'x-request-id');
  return given !== undefined && REQUEST_ID.test(given) ? given : randomUUID();
}

/** The trace id of a valid `traceparent`, else a new random one (32 lower-case hex). */
export function traceIdFrom(traceparent: string | undefined): string {
  const m = traceparent === undefined ? null : TRACEPARENT.exec(traceparent.trim());
  if (m !== null) {
    const [, version, traceId, parentId, , rest] = m;
    const valid = version !== 'ff' && !(version === '00' && rest !== undefined) && traceId !== '0'.repeat(32) && parentId !== '0'.repeat(16);
    if (valid && traceId !== undefined) return traceId;
  }
  return randomBytes(16).toString('hex');
}

function stateOf(req: IncomingMessage): RequestState {
  let s = states.get(req);
  if (s === undefined) {
    s = { traceId: traceIdFrom(header(req, 'traceparent')), errorCode: undefined, recordedInTx: false };
    states.set(req, s);
  }
  return s;
}

export function traceIdOf(req: IncomingMessage): string {
  return stateOf(req).traceId;
}

/**
 * The handler committed this request's 200 record with its own state change (one durable
 * commit instead of two); the response hook then appends none unless the status changed.
 */
export function markRecordedInTx(req: IncomingMessage): void {
  stateOf(req).recordedInTx = true;
}

export function recordedInTx(req: IncomingMessage): boolean {
  return stateOf(req).recordedInTx;
}

/** Remember the code of the error response being sent (the audit record's reason). */
export function setErrorCode(req: IncomingMessage, code: HttpErrorCode): void {
  stateOf(req).errorCode = code;
}

export function errorCodeOf(req: IncomingMessage): HttpErrorCode | undefined {
  return stateOf(req).errorCode;
}
