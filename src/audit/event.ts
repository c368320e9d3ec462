/**
 * The audit event, schema version 1. The leaf of the Merkle tree is the RFC 8785 (JCS)
 * canonical JSON of the whole event, so any verifier in any language recomputes the same
 * bytes (shared/reference/audit-log.md, "What goes into a leaf").
 */
import canonicalize from 'canonicalize';
import { z } from 'zod';
import { ValidationError } from '../errors/index.js';

export const AUDIT_SCHEMA_VERSION = 1;

/** Who acted. `anonymous` covers unauthenticated requests; `system` the server itself. */
export const ACTOR_KINDS = ['user', 'service', 'workload', 'system', 'anonymous'] as const;
export type ActorKind = (typeof ACTOR_KINDS)[number];

export const OUTCOMES = ['allowed', 'denied', 'failed'] as const;
export type Outcome = (typeof OUTCOMES)[number];

/** Plain JSON value: what `details` may hold. */
export type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** Request context of the event; every field optional because not every action has a request. */
export interface RequestContext {
  readonly sourceAddress?: string | undefined;
  readonly userAgent?: string | undefined;
  readonly requestId?: string | undefined;
  readonly traceId?: string | undefined;
}

/** What a caller records. The log adds the sequence number, time and schema version. */
export interface AuditEventInput {
  readonly actor: { readonly kind: ActorKind; readonly id: string };
  /** Dotted verb, e.g. `audit.proof.read`, `db.migrate`. */
  readonly action: string;
  /** What was acted on, e.g. `audit/entries/42`. */
  readonly resource: string;
  readonly outcome: Outcome;
  /** Why the outcome is what it is; required for denied and failed. */
  readonly reason?: string | undefined;
  readonly context?: RequestContext | undefined;
  /** Never a secret value: store references or HMACs, not plaintext (promise 1 vs 2). */
  readonly details?: { readonly [key: string]: JsonValue } | undefined;
}

/** One entry of the log exactly as it is hashed. Immutable once made. */
export interface AuditEvent {
  readonly schemaVersion: number;
  readonly seq: number;
  readonly time: string;
  readonly actor: { readonly kind: ActorKind; readonly id: string };
  readonly action: string;
  readonly resource: string;
  readonly outcome: Outcome;
  readonly reason: string;
  readonly context: {
    readonly sourceAddress: string | null;
    readonly userAgent: string | null;
    readonly requestId: string | null;
    readonly traceId: string | null;
  };
  readonly details: { readonly [key: string]: JsonValue };
}

/** Bounds keep one event small enough that a burst cannot exhaust memory or the page cache. */
export const MAX_EVENT_BYTES = 20 * 1024;

const shortText = (max: number) => z.string().min(1).max(max);
const jsonValue: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([z.string(), z.number().refine(Number.isFinite, 'must be a finite number'), z.boolean(), z.null(), z.array(jsonValue), z.record(z.string(), jsonValue)]),
);

const inputSchema = z
  .object({
    actor: z.object({ kind: z.enum(ACTOR_KINDS), id: shortText(256) }).strict(),
    action: z.string().regex(/^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*$/, 'must be a dotted lower-case verb like "audit.proof.read"').max(128),
    resource: shortText(512),
    outcome: z.enum(OUTCOMES),
    reason: z.string().max(1024).optional(),
    context: z
      .object({
        sourceAddress: z.string().max(128).optional(),
        userAgent: z.string().max(512).optional(),
        requestId: z.string().max(128).optional(),
        traceId: z.string().max(128).optional(),
      })
      .strict()
      .optional(),
    details: z.record(z.string(), jsonValue).optional(),
  })
  .strict();

/** Validate a caller's input, reporting every bad field. */
export function validateEventInput(input: unknown): AuditEventInput {
  const parsed = inputSchema.safeParse(input);
  if (!parsed.success) {
    throw new ValidationError(
      'invalid audit event',
      parsed.error.issues.map((i) => ({ path: i.path.join('.') || '(root)', message: i.message })),
    );
  }
  const value = parsed.data;
  if (value.outcome !== 'allowed' && (value.reason === undefined || value.reason === '')) {
    throw new ValidationError('invalid audit event', [{ path: 'reason', message: `is required when outcome is ${value.outcome}` }]);
  }
  return value;
}

/** Build the immutable event for position `seq` at `time`. */
export function buildEvent(input: AuditEventInput, seq: number, time: string): AuditEvent {
  const ctx = input.context ?? {};
  return {
    schemaVersion: AUDIT_SCHEMA_VERSION,
    seq,
    time,
    actor: { kind: input.actor.kind, id: input.actor.id },
    action: input.action,
    resource: input.resource,
    outcome: input.outcome,
    reason: input.reason ?? '',
    context: {
      sourceAddress: ctx.sourceAddress ?? null,
      userAgent: ctx.userAgent ?? null,
      requestId: ctx.requestId ?? null,
      traceId: ctx.traceId ?? null,
    },
    details: input.details ?? {},
  };
}

/** RFC 8785 canonical JSON: the exact leaf bytes. */
export function canonicalEvent(event: AuditEvent): string {
  const text = canonicalize(event);
  if (text === undefined) throw new ValidationError('invalid audit event', [{ path: '(root)', message: 'cannot be canonicalised' }]);
  if (Buffer.byteLength(text) > MAX_EVENT_BYTES) {
    throw new ValidationError('invalid audit event', [{ path: 'details', message: `the event must encode to at most ${MAX_EVENT_BYTES} bytes` }]);
  }
  return text;
}

const storedSchema = z
  .object({
    schemaVersion: z.literal(AUDIT_SCHEMA_VERSION),
    seq: z.number().int().nonnegative(),
    time: z.string(),
    actor: z.object({ kind: z.enum(ACTOR_KINDS), id: z.string() }).strict(),
    action: z.string(),
    resource: z.string(),
    outcome: z.enum(OUTCOMES),
    reason: z.string(),
    context: z
      .object({
        sourceAddress: z.string().nullable(),
        userAgent: z.string().nullable(),
        requestId: z.string().nullable(),
        traceId: z.string().nullable(),
      })
      .strict(),
    details: z.record(z.string(), jsonValue),
  })
  .strict();

/** Parse a stored event; undefined when the text is not a well-formed v1 event. */
export function parseStoredEvent(text: string): AuditEvent | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = storedSchema.safeParse(raw);
  return parsed.success ? parsed.data : undefined;
}
