/**
 * Stored attestations: the DSSE envelope exactly as signed, indexed by subject digest and run.
 * The index columns are derived from the envelope at insert, never taken from the caller, so
 * they cannot disagree with what was signed. Readers still verify before trusting an envelope.
 */
import { randomUUID } from 'node:crypto';
import { AirlockError, ValidationError } from '../errors/index.js';
import { toStorageError } from '../storage/index.js';
import type { Database, Store, Tx } from '../storage/index.js';
import { IN_TOTO_PAYLOAD_TYPE, decodeBase64 } from './dsse.js';
import type { Envelope } from './dsse.js';
import { parseStatement, subjectDigest } from './statement.js';

export interface AttestationRecord {
  readonly id: string;
  readonly runId: string | null;
  /** `sha256:<hex>` */
  readonly subjectDigest: string;
  readonly predicateType: string;
  readonly kid: string;
  /** As stored: verify it (verifyStatement / verifyEnvelope) before relying on it. */
  readonly envelope: Envelope;
  readonly createdAt: string;
}

export interface NewAttestation {
  readonly runId: string | null;
  readonly envelope: Envelope;
  /** Which subject to index (`sha256:<hex>`); must be one of the statement's. Default: the first. */
  readonly subjectDigest?: string;
}

function invalid(path: string, message: string): ValidationError {
  return new ValidationError(`invalid attestation: ${path} ${message}`, [{ path, message }]);
}

function toRecord(row: Database['attestations']): AttestationRecord {
  let envelope: Envelope;
  try {
    envelope = JSON.parse(row.envelope) as Envelope;
  } catch {
    throw new AirlockError('INTEGRITY_FAILED', `stored attestation ${row.id} is not valid JSON; the row was altered`, { id: row.id });
  }
  return { id: row.id, runId: row.run_id, subjectDigest: row.subject_digest, predicateType: row.predicate_type, kid: row.kid, envelope, createdAt: row.created_at };
}

export class Attestations {
  constructor(private readonly deps: { readonly store: Store; readonly clock: () => Date }) {}

  /** Inserts within the caller's transaction (with the run's other changes and its audit event). */
  async insert(tx: Tx, input: NewAttestation): Promise<AttestationRecord> {
    const { envelope } = input;
    if (envelope.payloadType !== IN_TOTO_PAYLOAD_TYPE) throw invalid('envelope.payloadType', `must be ${IN_TOTO_PAYLOAD_TYPE}`);
    const first = envelope.signatures[0];
    if (first === undefined || first.keyid === '') throw invalid('envelope.signatures', 'must hold a signature with a key id');
    const payload = decodeBase64(envelope.payload);
    if (payload === null) throw invalid('envelope.payload', 'must be base64');
    const st = parseStatement(payload);
    const digests = st.subject.map(subjectDigest);
    const chosen = input.subjectDigest ?? digests[0];
    if (chosen === undefined || !digests.includes(chosen)) throw invalid('subjectDigest', 'must be the sha256 of one of the statement subjects');
    const row: Database['attestations'] = {
      id: randomUUID(),
      run_id: input.runId,
      subject_digest: chosen,
      predicate_type: st.predicateType,
      kid: first.keyid,
      envelope: JSON.stringify(envelope),
      created_at: this.deps.clock().toISOString(),
    };
    await tx.db.insertInto('attestations').values(row).execute();
    return toRecord(row);
  }

  async get(id: string): Promise<AttestationRecord | undefined> {
    const row = await this.read(() => this.deps.store.db.selectFrom('attestations').selectAll().where('id', '=', id).executeTakeFirst());
    return row === undefined ? undefined : toRecord(row);
  }

  /** Oldest first. `digest` is `sha256:<hex>`. */
  async bySubject(digest: string): Promise<AttestationRecord[]> {
    const rows = await this.read(() => this.deps.store.db.selectFrom('attestations').selectAll().where('subject_digest', '=', digest).orderBy('created_at').orderBy('id').execute());
    return rows.map(toRecord);
  }

  /** Oldest first. */
  async byRun(runId: string): Promise<AttestationRecord[]> {
    const rows = await this.read(() => this.deps.store.db.selectFrom('attestations').selectAll().where('run_id', '=', runId).orderBy('created_at').orderBy('id').execute());
    return rows.map(toRecord);
  }

  private async read<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw toStorageError(err, 'reading attestations');
    }
  }
}
