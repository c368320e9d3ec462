/**
 * The documented JSON form of proofs (docs/audit-proofs.md). Hashes are standard base64, as
 * in the RFC 6962 test vectors and C2SP checkpoints, so an independent verifier needs only
 * SHA-256 and the RFC 9162 algorithms.
 */
import { z } from 'zod';
import { ValidationError } from '../errors/index.js';
import type { ConsistencyProof, InclusionProof } from './log.js';
import { verifyConsistency, verifyInclusion } from './merkle.js';

/** Inclusion proof as JSON. */
export interface InclusionProofDocument {
  readonly type: 'inclusion';
  readonly leafIndex: number;
  readonly treeSize: number;
  readonly leafHash: string;
  readonly rootHash: string;
  readonly proof: readonly string[];
}

/** Consistency proof as JSON. */
export interface ConsistencyProofDocument {
  readonly type: 'consistency';
  readonly size1: number;
  readonly size2: number;
  readonly root1: string;
  readonly root2: string;
  readonly proof: readonly string[];
}

const b64 = (b: Buffer): string => b.toString('base64');

/** Encode an inclusion proof for JSON output. */
export function encodeInclusionProof(p: InclusionProof): InclusionProofDocument {
  return { type: 'inclusion', leafIndex: p.leafIndex, treeSize: p.treeSize, leafHash: b64(p.leafHash), rootHash: b64(p.rootHash), proof: p.proof.map(b64) };
}

/** Encode a consistency proof for JSON output. */
export function encodeConsistencyProof(p: ConsistencyProof): ConsistencyProofDocument {
  return { type: 'consistency', size1: p.size1, size2: p.size2, root1: b64(p.root1), root2: b64(p.root2), proof: p.proof.map(b64) };
}

const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be standard base64');
const index = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const inclusionSchema = z.object({ type: z.literal('inclusion'), leafIndex: index, treeSize: index, leafHash: base64, rootHash: base64, proof: z.array(base64).max(64) }).strict();
const consistencySchema = z.object({ type: z.literal('consistency'), size1: index, size2: index, root1: base64, root2: base64, proof: z.array(base64).max(128) }).strict();

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new ValidationError(`invalid ${what}`, r.error.issues.map((i) => ({ path: i.path.join('.') || '(root)', message: i.message })));
  return r.data;
}

/** Parse an inclusion proof document, naming every bad field. */
export function decodeInclusionProof(value: unknown): InclusionProof {
  const d = parse(inclusionSchema, value, 'inclusion proof');
  return { leafIndex: d.leafIndex, treeSize: d.treeSize, leafHash: Buffer.from(d.leafHash, 'base64'), rootHash: Buffer.from(d.rootHash, 'base64'), proof: d.proof.map((p) => Buffer.from(p, 'base64')) };
}

/** Parse a consistency proof document, naming every bad field. */
export function decodeConsistencyProof(value: unknown): ConsistencyProof {
  const d = parse(consistencySchema, value, 'consistency proof');
  return { size1: d.size1, size2: d.size2, root1: Buffer.from(d.root1, 'base64'), root2: Buffer.from(d.root2, 'base64'), proof: d.proof.map((p) => Buffer.from(p, 'base64')) };
}

/** Verify a proof document of either type; throws AUDIT_PROOF_INVALID when it does not hold. */
export function verifyProofDocument(value: unknown): void {
  const type = (value as { type?: unknown } | null)?.type;
  if (type === 'inclusion') {
    const p = decodeInclusionProof(value);
    verifyInclusion(p.leafIndex, p.treeSize, p.leafHash, p.proof, p.rootHash);
  } else if (type === 'consistency') {
    const p = decodeConsistencyProof(value);
    verifyConsistency(p.size1, p.size2, p.root1, p.root2, p.proof);
  } else {
    throw new ValidationError('invalid proof', [{ path: 'type', message: 'must be "inclusion" or "consistency"' }]);
  }
}
