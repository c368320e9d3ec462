/**
 * Request input schemas. Every querystring, path parameter and body is checked by a strict
 * zod schema (unknown fields are refused) and every failure names the field.
 */
import { z } from 'zod';
import { ACTOR_KINDS, OUTCOMES } from '../audit/index.js';
import type { ActorKind, AuditQuery } from '../audit/index.js';
import { ValidationError } from '../errors/index.js';
import type { FieldIssue } from '../errors/index.js';

const SINGLE = { error: 'must be given once, as a single value' };

/**
 * A non-negative integer written in decimal digits only: no sign, fraction, exponent, hex,
 * whitespace or empty string, and no value beyond 2^53 - 1 (which JSON numbers could not
 * carry exactly).
 */
export const decimal = z.string(SINGLE).transform((s, ctx) => {
  if (!/^[0-9]+$/.test(s)) {
    ctx.addIssue({ code: 'custom', message: 'must be a non-negative integer written in decimal digits' });
    return z.NEVER;
  }
  const n = Number(s);
  if (!Number.isSafeInteger(n)) {
    ctx.addIssue({ code: 'custom', message: `must be at most ${Number.MAX_SAFE_INTEGER}` });
    return z.NEVER;
  }
  return n;
});

/** An ISO 8601 date-time with a zone, normalised to the UTC form the log stores. */
const dateTime = z
  .string(SINGLE)
  .pipe(z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time with a zone, such as 2025-01-31T12:00:00Z' }))
  .transform((s, ctx) => {
    const d = new Date(s);
    if (Number.isNaN(d.getTime())) {
      ctx.addIssue({ code: 'custom', message: 'is not a valid date-time' });
      return z.NEVER;
    }
    return d.toISOString();
  });

/** `id`, or `kind:id` when the part before the first colon is an actor kind. */
const actor = z
  .string(SINGLE)
  .min(1, 'must not be empty')
  .max(300, 'must be at most 300 characters')
  .transform((s) => {
    const colon = s.indexOf(':');
    const kind = colon > 0 ? s.slice(0, colon) : '';
    if ((ACTOR_KINDS as readonly string[]).includes(kind) && colon < s.length - 1) {
      return { actorKind: kind as ActorKind, actorId: s.slice(colon + 1) };
    }
    return { actorKind: undefined, actorId: s };
  });

/** Exact text, or a prefix when it ends in `*`. */
const textFilter = (max: number) => z.string(SINGLE).min(1, 'must not be empty').max(max + 1, `must be at most ${max} characters (plus an optional trailing *)`);

export const noFields = z.object({}).strict();

export const entriesQuery = z
  .object({
    actor: actor.optional(),
    action: textFilter(128).optional(),
    resource: textFilter(512).optional(),
    outcome: z.enum(OUTCOMES, { error: `must be one of ${OUTCOMES.join(', ')}` }).optional(),
    since: dateTime.optional(),
    until: dateTime.optional(),
    after: decimal.optional(),
    before: decimal.optional(),
    limit: decimal.pipe(z.number().min(1, 'must be at least 1').max(1000, 'must be at most 1000')).optional(),
    order: z.enum(['asc', 'desc'], { error: 'must be asc or desc' }).optional(),
  })
  .strict();

/** The entries query as the domain's {@link AuditQuery}. */
export function toAuditQuery(q: z.output<typeof entriesQuery>): AuditQuery & { limit: number; order: 'asc' | 'desc' } {
  return {
    actorId: q.actor?.actorId,
    actorKind: q.actor?.actorKind,
    action: q.action,
    resource: q.resource,
    outcome: q.outcome,
    since: q.since,
    until: q.until,
    afterSeq: q.after,
    beforeSeq: q.before,
    limit: q.limit ?? 100,
    order: q.order ?? 'asc',
  };
}

export const seqParams = z.object({ seq: decimal }).strict();
export const inclusionQuery = z.object({ seq: decimal, size: decimal.optional() }).strict();
export const consistencyQuery = z.object({ from: decimal, to: decimal.optional() }).strict();
/** A POST that takes no arguments: no body, or `{}`. */
export const emptyBody = z.object({}).strict().optional();

type Where = 'query' | 'path' | 'body';

/** Parse `value` or throw VALIDATION_FAILED naming every bad field. */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, where: Where): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issues: FieldIssue[] = [];
  for (const i of r.error.issues) {
    if (i.code === 'unrecognized_keys') {
      for (const key of i.keys) issues.push({ path: [...i.path.map(String), key].join('.'), message: `is not a recognised ${where === 'body' ? 'field' : 'parameter'}` });
    } else {
      issues.push({ path: i.path.map(String).join('.') || `(${where})`, message: i.message });
    }
  }
  const summary = issues.map((i) => `${i.path} ${i.message}`).join('; ');
  throw new ValidationError(`invalid ${where}: ${summary}`, issues);
}
