/** Human and JSON renderings shared by the read commands. */
import type { AuditEntry, AuditEvent } from '../audit/index.js';

/** An entry as the CLI prints it in JSON (search, tail). */
export interface EntryJson {
  readonly seq: number;
  /** RFC 6962 leaf hash of the event's canonical JSON, base64. */
  readonly leafHash: string;
  readonly event: AuditEvent;
}

export function entryJson(entry: AuditEntry): EntryJson {
  return { seq: entry.seq, leafHash: entry.leafHash.toString('base64'), event: entry.event };
}

/** One line per entry: seq, time, actor, action, resource, outcome (and reason). */
export function entryLine(entry: AuditEntry): string {
  const e = entry.event;
  const reason = e.reason === '' ? '' : ` (${e.reason})`;
  return `${String(entry.seq).padStart(6)}  ${e.time}  ${e.actor.kind}:${e.actor.id}  ${e.action}  ${e.resource}  ${e.outcome}${reason}`;
}
