/** What the runs domain needs, wired once in src/app. */
import { randomUUID } from 'node:crypto';
import type { AuditEventInput, AuditLog, JsonValue, RequestContext } from '../audit/index.js';
import type { Store, Tx } from '../storage/index.js';
import type { GitPort } from './git.js';

export type Actor = AuditEventInput['actor'];
export type RunContext = RequestContext;

export interface RunsDeps {
  readonly store: Store;
  readonly audit: AuditLog;
  readonly git: GitPort;
  readonly clock: () => Date;
  /** $AIRLOCK_HOME/runs: exported source trees and workspaces. */
  readonly runsDir: string;
}

export const newId = (): string => randomUUID();
export const iso = (d: Date): string => d.toISOString();

export interface RecordInput {
  readonly actor: Actor;
  readonly action: string;
  readonly resource: string;
  readonly outcome?: AuditEventInput['outcome'];
  readonly reason?: string | undefined;
  readonly context?: RunContext | undefined;
  readonly details?: Record<string, JsonValue>;
}

/** Every transition is an audit event in the transaction that makes it (promise 1). */
export async function actorRecord(deps: RunsDeps, tx: Tx, input: RecordInput): Promise<void> {
  await deps.audit.record(tx, { outcome: 'allowed', ...input });
}
