/** Statements in DSSE envelopes: sign the canonical bytes, verify before parsing. */
import type { KeyObject } from 'node:crypto';
import { isAirlockError } from '../errors/index.js';
import { IN_TOTO_PAYLOAD_TYPE, signEnvelope, verifyEnvelope } from './dsse.js';
import type { AttestationSigner, Envelope } from './dsse.js';
import { parseStatement, statementBytes } from './statement.js';
import type { Statement } from './statement.js';

export function signStatement(st: Statement<object>, signer: AttestationSigner): Envelope {
  return signEnvelope(IN_TOTO_PAYLOAD_TYPE, statementBytes(st), signer);
}

export interface VerifyStatementOptions {
  readonly threshold?: number;
  /** If set, any other predicate type is refused. */
  readonly predicateType?: string;
}

export type StatementVerification = { readonly ok: true; readonly statement: Statement; readonly keyids: string[] } | { readonly ok: false; readonly reason: string };

/** verifyEnvelope (in-toto payload type), then parseStatement; the statement is never read before its signature checks. */
export function verifyStatement(envelope: unknown, keys: ReadonlyMap<string, KeyObject>, opts: VerifyStatementOptions = {}): StatementVerification {
  const checked = verifyEnvelope(envelope, keys, { expectedPayloadType: IN_TOTO_PAYLOAD_TYPE, ...(opts.threshold === undefined ? {} : { threshold: opts.threshold }) });
  if (!checked.ok) return checked;
  let st: Statement;
  try {
    st = parseStatement(checked.payload);
  } catch (err) {
    if (isAirlockError(err)) return { ok: false, reason: err.message };
    throw err;
  }
  if (opts.predicateType !== undefined && st.predicateType !== opts.predicateType) return { ok: false, reason: `predicate type ${st.predicateType} is not ${opts.predicateType}` };
  return { ok: true, statement: st, keyids: checked.keyids };
}
