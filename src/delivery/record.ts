/**
 * The deployment record: one signed statement per deployment (who, what, why, with which
 * approvals and evidence, and how it ended), and the file an auditor verifies offline. The
 * file carries the DSSE envelope, the audit event that recorded the envelope's digest, an
 * RFC 6962 inclusion proof of that event, and a signed C2SP checkpoint of the tree the proof
 * leads to: editing the record, the event or the log breaks one of the links.
 */
import { createHash } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import canonicalize from 'canonicalize';
import { IN_TOTO_PAYLOAD_TYPE, VSA_V1, signEnvelope, statement, statementBytes, verifyStatement } from '../attest/index.js';
import type { AttestationSigner, Envelope } from '../attest/index.js';
import { canonicalEvent, decodeInclusionProof, leafHash, openCheckpoint, verifyInclusion } from '../audit/index.js';
import type { AuditEvent, InclusionProofDocument, NoteVerifier } from '../audit/index.js';

/** The predicate type of a deployment record (docs/delivery.md). */
export const DEPLOYMENT_RECORD_V1 = 'https://airlock.dev/deployment-record/v1';
/** The predicate type of an approval attestation. */
export const APPROVAL_V1 = 'https://airlock.dev/deployment-approval/v1';
/** The format name of an exported record file. */
export const RECORD_FILE_FORMAT = 'airlock-deployment-record/v1';

/** What one deployment did; every field is recorded, nothing secret is. */
export interface DeploymentRecord {
  readonly deploymentId: string;
  readonly project: string;
  readonly environment: string;
  /** Who asked for the deployment. */
  readonly initiator: string;
  /** Who carried it out (the initiator, an approver, or the second break-glass person). */
  readonly deployedBy?: string | undefined;
  readonly justification: string;
  readonly ticket?: string | undefined;
  readonly approvals: readonly { readonly approver: string; readonly justification: string; readonly at: string; readonly attestation?: string | undefined }[];
  readonly commitRange: { readonly from: string | null; readonly to: string };
  /** The digest every approval signed: environment, digests, config digest, commit range, run. */
  readonly bindingDigest?: string | undefined;
  readonly artifacts: readonly { readonly path: string; readonly digest: string; readonly sbom?: string | undefined }[];
  /** The effective config's digest, the previous deployment's, and what changed (values are non-secret: the config is credential-scanned). */
  readonly config: { readonly digest: string; readonly previous?: string | null | undefined; readonly diff: { readonly added: readonly string[]; readonly removed: readonly string[]; readonly changed: readonly string[] } };
  readonly fingerprint: Readonly<Record<string, string>>;
  readonly steps: readonly { readonly name: string; readonly startedAt: string; readonly finishedAt: string; readonly exitCode: number | null; readonly digests: readonly string[] }[];
  readonly policyDecisions: readonly { readonly action: string; readonly allowed: boolean; readonly policies: readonly string[] }[];
  readonly exceptions: readonly string[];
  readonly outcome: 'succeeded' | 'failed' | 'rolled_back';
  readonly rollbackOf?: string | undefined;
  /** Present when two people bypassed approvals or a freeze; the incident stays open until a postmortem. */
  readonly breakGlass?: { readonly participants: readonly string[]; readonly justifications: readonly { readonly person: string; readonly justification: string; readonly at: string }[]; readonly bypassed: readonly string[]; readonly incident?: string | undefined } | undefined;
  /** sha256 (of the RFC 8785 JSON) of each SLSA VSA the promotion produced. */
  readonly verificationSummaries?: readonly string[] | undefined;
  /** Why it did not succeed. */
  readonly reason?: string | undefined;
  readonly startedAt: string;
  readonly finishedAt: string;
}

/** The exported, offline-verifiable file. */
export interface RecordFile {
  readonly format: typeof RECORD_FILE_FORMAT;
  readonly envelope: Envelope;
  readonly audit: {
    /** The audit event whose details.recordDigest names the envelope. */
    readonly event: AuditEvent;
    readonly inclusion: InclusionProofDocument;
    /** A signed checkpoint (C2SP note) of the tree the proof leads to. */
    readonly checkpoint: string;
  };
  /** The signed approvals that counted; each must be named (by digest) in the signed record. */
  readonly approvals?: readonly Envelope[] | undefined;
  /** The SLSA VSAs the promotion produced; each must be named (by digest) in the signed record. */
  readonly verificationSummaries?: readonly Envelope[] | undefined;
}

export interface RecordCheck {
  readonly check: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** sha256:<hex> of an envelope's RFC 8785 JSON: what the audit event names. */
export function recordDigest(envelope: Envelope): string {
  return `sha256:${createHash('sha256')
    .update(canonicalize(envelope) ?? '')
    .digest('hex')}`;
}

const hexOf = (digest: string): string => (digest.startsWith('sha256:') ? digest.slice(7) : digest);

/** Sign a record as an in-toto statement whose subjects are the deployed artifacts. */
export function signRecord(record: DeploymentRecord, signer: AttestationSigner): Envelope {
  const subjects = record.artifacts.map((a) => ({ name: a.path, digest: { sha256: hexOf(a.digest) } }));
  // Through JSON once: optional fields left undefined are dropped, as the canonical form would.
  const predicate = JSON.parse(JSON.stringify(record)) as object;
  return signEnvelope(IN_TOTO_PAYLOAD_TYPE, statementBytes(statement(subjects, DEPLOYMENT_RECORD_V1, predicate)), signer);
}

/**
 * Verify an exported record with keys the verifier brings: the attestation keys (kid ->
 * key) and the audit log's checkpoint verifier keys. Never throws for bad input; every problem
 * is a failed check with its reason.
 */
export function verifyRecordFile(file: unknown, keys: { attestation: ReadonlyMap<string, KeyObject>; log: readonly NoteVerifier[]; origin?: string | undefined }): { ok: boolean; checks: RecordCheck[]; record: DeploymentRecord | undefined } {
  const checks: RecordCheck[] = [];
  const add = (check: string, ok: boolean, detail: string): void => {
    checks.push({ check, ok, detail });
  };
  const f = (typeof file === 'object' && file !== null ? file : {}) as Partial<RecordFile>;
  if (f.format !== RECORD_FILE_FORMAT || f.envelope === undefined || f.audit === undefined) {
    add('format', false, `not an ${RECORD_FILE_FORMAT} file (format, envelope and audit are required)`);
    return { ok: false, checks, record: undefined };
  }
  let record: DeploymentRecord | undefined;
  const v = verifyStatement(f.envelope, keys.attestation, { predicateType: DEPLOYMENT_RECORD_V1 });
  if (v.ok) {
    record = v.statement.predicate as unknown as DeploymentRecord;
    add('signature', true, `deployment ${record.deploymentId} to ${record.environment}, signed by ${v.keyids.join(', ')}`);
  } else add('signature', false, v.reason);

  const { event, inclusion, checkpoint } = f.audit;
  const digest = recordDigest(f.envelope);
  const named = (event as { details?: { recordDigest?: unknown } } | undefined)?.details?.recordDigest;
  add('audit event', named === digest, named === digest ? `event ${String((event as { seq?: unknown }).seq)} records ${digest}` : `the audit event names ${typeof named === 'string' ? named : 'no record'}, not this record (${digest})`);
  try {
    const proof = decodeInclusionProof(inclusion);
    const leaf = leafHash(Buffer.from(canonicalEvent(event), 'utf8'));
    if (!leaf.equals(proof.leafHash)) throw new Error('the audit event does not hash to the proof leaf (the event was edited)');
    verifyInclusion(proof.leafIndex, proof.treeSize, proof.leafHash, proof.proof, proof.rootHash);
    const opened = openCheckpoint(checkpoint, keys.log, keys.origin);
    if (opened.checkpoint.size !== proof.treeSize || !opened.checkpoint.rootHash.equals(proof.rootHash)) throw new Error(`the proof leads to tree ${proof.treeSize}, but the checkpoint signs tree ${opened.checkpoint.size} with another root`);
    add('inclusion', true, `event ${proof.leafIndex} is in the log of size ${proof.treeSize}, checkpoint signed by ${opened.verifiedBy.join(', ')}`);
  } catch (err) {
    add('inclusion', false, err instanceof Error ? err.message : 'the inclusion proof does not verify');
  }
  // Each approval the record counts must travel with it, signed, for this binding, by that person.
  const counted = (record?.approvals ?? []).filter((a) => a.attestation !== undefined);
  if (counted.length > 0 || (f.approvals ?? []).length > 0) {
    const byDigest = new Map((f.approvals ?? []).map((e) => [recordDigest(e), e]));
    const problems: string[] = [];
    for (const a of counted) {
      const env = byDigest.get(a.attestation ?? '');
      if (env === undefined) {
        problems.push(`${a.approver}'s approval (${a.attestation ?? ''}) is not in the file`);
        continue;
      }
      const checked = verifyStatement(env, keys.attestation, { predicateType: APPROVAL_V1 });
      if (!checked.ok) {
        problems.push(`${a.approver}'s approval: ${checked.reason}`);
        continue;
      }
      const p = checked.statement.predicate as { approver?: unknown; decision?: unknown; bindingDigest?: unknown };
      if (p.approver !== a.approver || p.decision !== 'approve') problems.push(`the approval named for ${a.approver} is ${String(p.decision)} by ${String(p.approver)}`);
      if (p.bindingDigest !== record?.bindingDigest) problems.push(`${a.approver}'s approval is for binding ${String(p.bindingDigest)}, not this deployment's ${record?.bindingDigest ?? '(none)'}`);
    }
    if ((f.approvals ?? []).length !== counted.length) problems.push(`the record names ${counted.length} approval(s), the file carries ${(f.approvals ?? []).length}`);
    add('approvals', problems.length === 0, problems.length === 0 ? `${counted.length} signed approval(s) of binding ${record?.bindingDigest ?? ''}` : problems.join('; '));
  }
  // VSAs travel beside the record; the signed record names each, so none can be swapped in.
  const vsas = f.verificationSummaries ?? [];
  if (vsas.length > 0 || (record?.verificationSummaries ?? []).length > 0) {
    const vsaNames = new Set(record?.verificationSummaries ?? []);
    const problems: string[] = [];
    for (const [i, vsa] of vsas.entries()) {
      const d = recordDigest(vsa);
      if (!vsaNames.has(d)) problems.push(`VSA ${i} (${d}) is not named by the record`);
      const checked = verifyStatement(vsa, keys.attestation, { predicateType: VSA_V1 });
      if (!checked.ok) problems.push(`VSA ${i}: ${checked.reason}`);
      else if ((checked.statement.predicate as { verificationResult?: unknown }).verificationResult !== 'PASSED') problems.push(`VSA ${i} says ${String((checked.statement.predicate as { verificationResult?: unknown }).verificationResult)}`);
    }
    if (vsas.length !== vsaNames.size) problems.push(`the record names ${vsaNames.size} VSA(s), the file carries ${vsas.length}`);
    add('verification summaries', problems.length === 0, problems.length === 0 ? `${vsas.length} SLSA VSA(s) PASSED, signed and named by the record` : problems.join('; '));
  }
  return { ok: checks.every((c) => c.ok), checks, record };
}
