/** Shared pieces of the identity domain: dependencies, name rules, audit helpers. */
import { randomUUID } from 'node:crypto';
import type { AuditEventInput, AuditLog, JsonValue, RequestContext } from '../audit/index.js';
import { ValidationError } from '../errors/index.js';
import type { Store, Tx } from '../storage/index.js';
import type { SealKey } from './seal.js';

export type Actor = AuditEventInput['actor'];

/** What every identity component needs; wired once in src/app. */
export interface IdentityDeps {
  readonly store: Store;
  readonly audit: AuditLog;
  readonly seal: SealKey;
  readonly clock: () => Date;
}

/** Per-call context: the request's correlation and source, for the audit record. */
export type CallContext = RequestContext;

const NAME = /^[a-z][a-z0-9._-]{1,63}$/;

/** Usernames, service account and role names: lower-case, stable, safe in URLs and Cedar ids. */
export function checkName(field: string, value: string): string {
  if (!NAME.test(value)) {
    throw new ValidationError(`${field} must be 2-64 characters: a lower-case letter, then lower-case letters, digits, ".", "_" or "-"`, [
      { path: field, message: 'must match ^[a-z][a-z0-9._-]{1,63}$' },
    ]);
  }
  return value;
}

/** A name as it may be written into an audit record: attempted names that break the rules are
 * not echoed (a password typed into the username field must not land in the log). */
export function recordableName(value: unknown): string {
  return typeof value === 'string' && NAME.test(value) ? value : '<invalid>';
}

export const newId = (): string => randomUUID();

export interface RecordInput {
  readonly actor: Actor;
  readonly action: string;
  readonly resource: string;
  readonly outcome?: AuditEventInput['outcome'];
  readonly reason?: string;
  readonly context?: CallContext | undefined;
  readonly details?: Record<string, JsonValue>;
}

/** Record a state change in the caller's transaction (promise 1: it commits with the change). */
export async function record(deps: IdentityDeps, tx: Tx, input: RecordInput): Promise<void> {
  await deps.audit.record(tx, { outcome: 'allowed', ...input });
}

export const iso = (d: Date): string => d.toISOString();
