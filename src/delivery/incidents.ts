/**
 * Incident records, minimal for now (a later issue builds incident response): a break-glass
 * deployment opens one in the transaction that claims the deploy, and it stays open until
 * someone attaches a postmortem. An open incident is visible on every list, so skipping the
 * bypass review is noticed rather than forgotten.
 */
import { randomUUID } from 'node:crypto';
import type { AuditLog, RequestContext } from '../audit/index.js';
import { ConflictError, NotFoundError, ValidationError } from '../errors/index.js';
import type { Store, Tx } from '../storage/index.js';

type Actor = Parameters<AuditLog['append']>[0]['actor'];

/** A postmortem shorter than this says nothing an auditor can use. */
export const MIN_POSTMORTEM_LENGTH = 40;
const MAX_POSTMORTEM_LENGTH = 20_000;

export interface IncidentView {
  readonly id: string;
  readonly kind: string;
  readonly deploymentId: string | null;
  readonly summary: string;
  readonly openedAt: string;
  readonly openedBy: string;
  readonly state: 'open' | 'closed';
  readonly postmortem: string | null;
  readonly closedAt: string | null;
  readonly closedBy: string | null;
}

export class Incidents {
  constructor(private readonly deps: { readonly store: Store; readonly audit: AuditLog; readonly clock: () => Date }) {}

  /** Open an incident inside the caller's transaction (recorded there: it commits with the cause or not at all). */
  async openInTx(tx: Tx, actor: Actor, input: { kind: string; deploymentId: string; summary: string }, context?: RequestContext): Promise<string> {
    const id = randomUUID();
    const now = this.deps.clock().toISOString();
    await tx.db.insertInto('incidents').values({ id, deployment_id: input.deploymentId, kind: input.kind, opened_at: now, opened_by: actor.id, summary: input.summary.slice(0, 2000), postmortem: null, closed_at: null, closed_by: null }).execute();
    await this.deps.audit.record(tx, { actor, action: 'incidents.open', resource: `incidents/${id}`, outcome: 'allowed', context, details: { kind: input.kind, deploymentId: input.deploymentId, severity: 'high', summary: input.summary.slice(0, 1000) } });
    return id;
  }

  async list(query: { open?: boolean | undefined; limit?: number | undefined } = {}): Promise<IncidentView[]> {
    let q = this.deps.store.db.selectFrom('incidents').selectAll();
    if (query.open === true) q = q.where('closed_at', 'is', null);
    const rows = await q
      .orderBy('opened_at', 'desc')
      .orderBy('id')
      .limit(Math.max(1, Math.min(query.limit ?? 100, 500)))
      .execute();
    return rows.map(view);
  }

  async show(id: string): Promise<IncidentView> {
    const row = await this.deps.store.db.selectFrom('incidents').selectAll().where('id', '=', id).executeTakeFirst();
    if (row === undefined) throw new NotFoundError(`no incident ${id} (see airlock incidents list)`, { id });
    return view(row);
  }

  /** Attach the postmortem, which closes the incident; recorded. A closed incident stays closed. */
  async close(actor: Actor, id: string, postmortem: string, context?: RequestContext): Promise<IncidentView> {
    const text = postmortem.trim();
    if (text.length < MIN_POSTMORTEM_LENGTH) throw new ValidationError(`a postmortem needs at least ${MIN_POSTMORTEM_LENGTH} characters: what happened, why the bypass was needed, what follows`, [{ path: 'postmortem', message: 'too short' }]);
    if (text.length > MAX_POSTMORTEM_LENGTH) throw new ValidationError(`a postmortem may be at most ${MAX_POSTMORTEM_LENGTH} characters`, [{ path: 'postmortem', message: 'too long' }]);
    const now = this.deps.clock().toISOString();
    await this.deps.store.transact(async (tx) => {
      const row = await tx.db.selectFrom('incidents').select(['closed_at']).where('id', '=', id).executeTakeFirst();
      if (row === undefined) throw new NotFoundError(`no incident ${id} (see airlock incidents list)`, { id });
      // Conditional: two people closing at once cannot both write a postmortem.
      const done = await tx.db.updateTable('incidents').set({ postmortem: text, closed_at: now, closed_by: actor.id }).where('id', '=', id).where('closed_at', 'is', null).executeTakeFirst();
      if (Number(done.numUpdatedRows) !== 1) throw new ConflictError(`incident ${id} is already closed`, { id });
      await this.deps.audit.record(tx, { actor, action: 'incidents.close', resource: `incidents/${id}`, outcome: 'allowed', context, details: { postmortemLength: text.length } });
    });
    return this.show(id);
  }
}

function view(r: { id: string; kind: string; deployment_id: string | null; summary: string; opened_at: string; opened_by: string; postmortem: string | null; closed_at: string | null; closed_by: string | null }): IncidentView {
  return { id: r.id, kind: r.kind, deploymentId: r.deployment_id, summary: r.summary, openedAt: r.opened_at, openedBy: r.opened_by, state: r.closed_at === null ? 'open' : 'closed', postmortem: r.postmortem, closedAt: r.closed_at, closedBy: r.closed_by };
}
