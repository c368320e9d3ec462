/**
 * Coded errors. Domains throw these; only the HTTP layer maps a code to a status and only
 * the CLI maps it to an exit code. Codes are stable: scripts and clients may switch on them.
 */

/** Every stable error code Airlock emits. */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'VALIDATION_FAILED'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'PAYLOAD_TOO_LARGE'
  | 'STORAGE_UNAVAILABLE'
  | 'STORAGE_FAILED'
  | 'MIGRATION_FAILED'
  | 'AUDIT_APPEND_FAILED'
  | 'AUDIT_INVALID_RANGE'
  | 'AUDIT_PROOF_INVALID'
  | 'CHECKPOINT_INVALID'
  | 'CHECKPOINT_INCONSISTENT'
  | 'KEY_INVALID'
  | 'INTEGRITY_FAILED'
  | 'ROTATION_FAILED'
  | 'SHUTTING_DOWN'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'MFA_REQUIRED'
  | 'STEP_UP_REQUIRED'
  | 'CSRF_FAILED'
  | 'TOO_MANY_ATTEMPTS'
  | 'TOKEN_INVALID'
  | 'POLICY_INVALID'
  | 'SERVER_UNREACHABLE'
  | 'BAD_RESPONSE'
  | 'INTERNAL';

/** One invalid input field: a dotted path and what is wrong with it. */
export interface FieldIssue {
  readonly path: string;
  readonly message: string;
}

/** Base class: a stable `code`, a message a person can act on, and structured details. */
export class AirlockError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.details = Object.freeze({ ...details });
  }
}

/** Bad input: names every offending field so the caller can fix them all at once. */
export class ValidationError extends AirlockError {
  readonly issues: readonly FieldIssue[];

  constructor(message: string, issues: readonly FieldIssue[]) {
    super('VALIDATION_FAILED', message, { issues });
    this.issues = issues;
  }
}

/** A setting is missing or invalid; the process must not start. */
export class ConfigError extends AirlockError {
  constructor(setting: string, message: string) {
    super('CONFIG_INVALID', `invalid setting ${setting}: ${message}`, { setting });
  }
}

export class NotFoundError extends AirlockError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('NOT_FOUND', message, details);
  }
}

export class ConflictError extends AirlockError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('CONFLICT', message, details);
  }
}

/** The database cannot be reached or refused the write (disk full, read-only, down). */
export class StorageError extends AirlockError {
  constructor(code: 'STORAGE_UNAVAILABLE' | 'STORAGE_FAILED' | 'MIGRATION_FAILED', message: string, options?: ErrorOptions) {
    super(code, message, {}, options);
  }
}

/** The process is draining; new work is refused so nothing half-done is acknowledged. */
export class ShuttingDownError extends AirlockError {
  constructor() {
    super('SHUTTING_DOWN', 'the server is shutting down; retry against another replica');
  }
}

/**
 * No valid credential. The message is the same whatever was wrong (unknown user, bad password,
 * bad code, expired or revoked token) so it cannot be used to enumerate accounts.
 */
export class UnauthenticatedError extends AirlockError {
  constructor(message = 'authentication required: the credentials are missing, invalid or expired', details: Record<string, unknown> = {}) {
    super('UNAUTHENTICATED', message, details);
  }
}

/** Authenticated, but policy does not permit the action (deciding policy ids in details). */
export class ForbiddenError extends AirlockError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('FORBIDDEN', message, details);
  }
}

/** The action needs a fresh MFA proof (step-up) or MFA at all. */
export class MfaRequiredError extends AirlockError {
  constructor(code: 'MFA_REQUIRED' | 'STEP_UP_REQUIRED', message: string, details: Record<string, unknown> = {}) {
    super(code, message, details);
  }
}

/** Too many failed attempts: back off until `retryAfterSeconds`. */
export class TooManyAttemptsError extends AirlockError {
  readonly retryAfterSeconds: number;
  constructor(retryAfterSeconds: number) {
    super('TOO_MANY_ATTEMPTS', `too many failed attempts; try again in ${retryAfterSeconds} s`, { retryAfterSeconds });
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** Narrowing helper for catch blocks. */
export function isAirlockError(err: unknown): err is AirlockError {
  return err instanceof AirlockError;
}

/** A message that is safe to show: never a driver's raw text, which may quote SQL or data. */
export function describeError(err: unknown): string {
  if (isAirlockError(err)) return err.message;
  return 'internal error';
}
