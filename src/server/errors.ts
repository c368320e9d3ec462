/**
 * The one place that turns an error into an HTTP status and a response body. Domains throw
 * coded errors; fastify throws its own FST_* errors for malformed requests; anything else is
 * a bug and becomes a 500 whose body says nothing about it (no stack, no driver message).
 */
import { AirlockError, isAirlockError } from '../errors/index.js';
import type { ErrorCode, FieldIssue } from '../errors/index.js';
import { isDriverError, toStorageError } from '../storage/index.js';

/**
 * Codes the HTTP layer can answer with: every domain code plus UNSUPPORTED_MEDIA_TYPE, which
 * only exists at this boundary (it belongs in src/errors once another adapter needs it).
 */
export type HttpErrorCode = ErrorCode | 'UNSUPPORTED_MEDIA_TYPE';

/** The single code -> status table. Codes not listed are server faults: 500. */
const STATUS: Readonly<Partial<Record<HttpErrorCode, number>>> = {
  VALIDATION_FAILED: 400,
  AUDIT_INVALID_RANGE: 400,
  AUDIT_PROOF_INVALID: 400,
  POLICY_INVALID: 400,
  UNAUTHENTICATED: 401,
  TOKEN_INVALID: 401,
  FORBIDDEN: 403,
  MFA_REQUIRED: 403,
  STEP_UP_REQUIRED: 403,
  CSRF_FAILED: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  TOO_MANY_ATTEMPTS: 429,
  UNSUPPORTED_MEDIA_TYPE: 415,
  STORAGE_UNAVAILABLE: 503,
  SHUTTING_DOWN: 503,
};

/** The body of every error response. */
export interface ErrorBody {
  readonly error: {
    readonly code: HttpErrorCode;
    readonly message: string;
    readonly details?: Readonly<Record<string, unknown>>;
  };
}

/** What the error handler sends. */
export interface HttpError {
  readonly status: number;
  readonly code: HttpErrorCode;
  readonly body: ErrorBody;
}

/**
 * The process cannot serve (readiness probe): always 503, whatever the cause's code, so a
 * load balancer takes the replica out. The body still carries the cause's code and message.
 */
export class NotReadyError extends AirlockError {
  constructor(cause: AirlockError) {
    super(cause.code, cause.message, {}, { cause });
  }
}

/** HTTP status for a code, from the one table. */
export function statusFor(code: HttpErrorCode): number {
  return STATUS[code] ?? 500;
}

/** Map anything thrown while serving a request to its status and body. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof NotReadyError) return build(503, err.code, err.message);
  if (isAirlockError(err)) {
    const status = statusFor(err.code);
    // Details help a client fix its request; on a server fault they could name files or state.
    const details = status < 500 && Object.keys(err.details).length > 0 ? err.details : undefined;
    return build(status, err.code, err.message, details);
  }
  const fastify = fromFastify(err);
  if (fastify !== undefined) return fastify;
  // A raw driver error that escaped a domain: classify it, but never show its text.
  if (isDriverError(err)) {
    const mapped = toStorageError(err, 'database access');
    return build(statusFor(mapped.code), mapped.code, statusFor(mapped.code) === 503 ? 'the database is unavailable' : 'internal error');
  }
  return build(500, 'INTERNAL', 'internal error');
}

function build(status: number, code: HttpErrorCode, message: string, details?: Readonly<Record<string, unknown>>): HttpError {
  return { status, code, body: { error: details === undefined ? { code, message } : { code, message, details } } };
}

function invalid(path: string, message: string): HttpError {
  const issues: FieldIssue[] = [{ path, message }];
  return build(400, 'VALIDATION_FAILED', `invalid request: ${path} ${message}`, { issues });
}

/** fastify's own errors for malformed requests (body, media type, URL). */
function fromFastify(err: unknown): HttpError | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const { code, statusCode } = err as { code?: unknown; statusCode?: unknown };
  if (typeof code !== 'string' || !code.startsWith('FST_')) return undefined;
  switch (code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return build(statusFor('PAYLOAD_TOO_LARGE'), 'PAYLOAD_TOO_LARGE', 'the request body is larger than this endpoint allows (64 KiB for most requests)');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return build(statusFor('UNSUPPORTED_MEDIA_TYPE'), 'UNSUPPORTED_MEDIA_TYPE', 'unsupported content type: send application/json, or no body');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return invalid('(body)', 'is not valid JSON');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return invalid('(body)', 'does not match its Content-Length');
    case 'FST_ERR_BAD_URL':
      return invalid('(url)', 'is not a valid URL (bad percent-encoding)');
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return invalid('(url)', 'has a path segment that is too long');
    case 'FST_ERR_NOT_FOUND':
      return build(statusFor('NOT_FOUND'), 'NOT_FOUND', 'no such route');
    default:
      // Any other client error fastify raises is still the client's: never a 500.
      if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) return invalid('(request)', 'is malformed');
      return undefined;
  }
}

/** The answer that replaces any response whose audit record could not be written. */
export function auditUnavailable(): HttpError {
  return toHttpError(new AirlockError('STORAGE_UNAVAILABLE', 'the audit log is unavailable; the request was not served'));
}
