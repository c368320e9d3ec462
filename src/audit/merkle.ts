/**
 * RFC 6962 / RFC 9162 Merkle tree over SHA-256: hashing, node addressing, proof plans for a
 * storage layer, proof verifiers and an incremental builder. Pure: no I/O.
 *
 * Sizes and indices are JavaScript numbers limited to safe integers (< 2^53). Bitwise operators
 * truncate to 32 bits, so all "bit twiddling" below is done with exact arithmetic on numbers
 * (halving, parity, powers of two), which is exact for every safe integer.
 */
import { hash } from 'node:crypto';
import { AirlockError } from '../errors/index.js';

/** Size in bytes of every hash in the tree (SHA-256). */
export const HASH_SIZE = 32;

/** A 32-byte SHA-256 hash. */
export type Hash = Buffer;

/** A perfect subtree: level L, index i covers leaves [i*2^L, (i+1)*2^L); level 0 is a leaf hash. */
export interface NodeId {
  readonly level: number;
  readonly index: number;
}

/** The hashes a proof needs: each range [b, e) is one proof hash MTH(D[b:e]), in proof order. */
export interface ProofPlan {
  readonly ranges: readonly (readonly [number, number])[];
}

// Domain-separation prefixes (RFC 6962 §2.1): a leaf can never be passed off as a node.
const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);
const TWO_32 = 2 ** 32;

// One-shot crypto.hash (Node >= 20.12) is ~1.5x faster than createHash().update().digest()
// for 33-65 byte inputs; the builder's 1M-leaf budget depends on it.
function sha256(data: Uint8Array): Buffer {
  return hash('sha256', data, 'buffer');
}

/** SHA-256(0x00 || data): the hash of one log entry (RFC 6962 §2.1). */
export function leafHash(data: Uint8Array): Buffer {
  return sha256(Buffer.concat([LEAF_PREFIX, data]));
}

/** SHA-256(0x01 || left || right): an interior node (RFC 6962 §2.1). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return sha256(Buffer.concat([NODE_PREFIX, left, right]));
}

/** SHA-256(""): the root of the empty tree (RFC 6962 §2.1). */
export function emptyRoot(): Buffer {
  return sha256(new Uint8Array(0));
}

/** Stable string key of a node, e.g. "3:17", for maps and storage lookups. */
export function nodeKey(id: NodeId): string {
  return `${id.level}:${id.index}`;
}

// ---------------------------------------------------------------------------------------------
// Argument checks and exact integer helpers

function invalidRange(message: string, details: Record<string, unknown>): AirlockError {
  return new AirlockError('AUDIT_INVALID_RANGE', message, details);
}

function proofInvalid(message: string, reason: string, details: Record<string, unknown> = {}): AirlockError {
  return new AirlockError('AUDIT_PROOF_INVALID', message, { reason, ...details });
}

/** Throws unless `value` is a safe integer >= 0 (JSON.parse silently rounds 2^64 - 1 to 2^64). */
function checkCount(name: string, value: number): void {
  if (!Number.isSafeInteger(value)) {
    throw invalidRange(`${name} must be a safe integer, got ${String(value)}`, { reason: 'not_safe_integer', [name]: value });
  }
  if (value < 0) {
    throw invalidRange(`${name} must not be negative, got ${value}`, { reason: 'negative', [name]: value });
  }
}

function checkHash(name: string, h: Uint8Array, reason: string): void {
  if (h.length !== HASH_SIZE) {
    throw proofInvalid(`${name} must be ${HASH_SIZE} bytes, got ${h.length}`, reason, { length: h.length });
  }
}

function checkProofHashes(proof: readonly Uint8Array[]): void {
  proof.forEach((h, i) => {
    if (h.length !== HASH_SIZE) {
      throw proofInvalid(`proof hash ${i} must be ${HASH_SIZE} bytes, got ${h.length}`, 'bad_proof_hash_length', {
        position: i,
        length: h.length,
      });
    }
  });
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/** floor(log2(n)) for a safe integer n >= 1; Math.log2 can round up just below a power of two. */
function floorLog2(n: number): number {
  const hi = Math.floor(n / TWO_32);
  return hi > 0 ? 63 - Math.clz32(hi) : 31 - Math.clz32(n);
}

/** k = the largest power of two smaller than n, for n >= 2: where RFC 6962 §2.1 splits D[n]. */
function splitPoint(n: number): number {
  return 2 ** floorLog2(n - 1);
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && 2 ** floorLog2(n) === n;
}

const half = (n: number): number => Math.floor(n / 2);
const isOdd = (n: number): boolean => n % 2 === 1;

// ---------------------------------------------------------------------------------------------
// Perfect-subtree decomposition

/** The perfect subtrees, largest first, whose RFC 6962 fold is MTH(D[begin:end]); begin must be aligned. */
export function perfectDecomposition(begin: number, end: number): NodeId[] {
  checkCount('begin', begin);
  checkCount('end', end);
  if (begin > end) throw invalidRange(`range begin ${begin} is after end ${end}`, { reason: 'begin_after_end', begin, end });
  const nodes: NodeId[] = [];
  if (begin === end) return nodes;
  const top = floorLog2(end - begin);
  // The largest piece must start on its own boundary to be an addressable node; every smaller
  // piece then does too. RFC subtree ranges always satisfy this.
  if (begin % 2 ** top !== 0) {
    throw invalidRange(`range [${begin}, ${end}) is not aligned to a subtree boundary`, { reason: 'unaligned_range', begin, end });
  }
  let pos = begin;
  for (let level = top; level >= 0; level--) {
    const width = 2 ** level;
    if (end - pos >= width) {
      nodes.push({ level, index: pos / width });
      pos += width;
    }
  }
  return nodes;
}

/** The perfect subtrees stored for a tree of `size` (the builder's frontier), largest first. */
export function frontierNodes(size: number): NodeId[] {
  return perfectDecomposition(0, size);
}

/** MTH(D[begin:end]) from stored perfect-subtree hashes, folded right to left: H(P1, H(P2, ... Pr)). */
export function rangeRoot(begin: number, end: number, get: (id: NodeId) => Buffer): Buffer {
  const hashes = perfectDecomposition(begin, end).map((id) => {
    const h = get(id);
    if (h.length !== HASH_SIZE) {
      throw proofInvalid(`stored node ${nodeKey(id)} is ${h.length} bytes, not ${HASH_SIZE}`, 'bad_node_hash_length', {
        node: nodeKey(id),
      });
    }
    return h;
  });
  return hashes.reduceRight<Buffer | undefined>((acc, h) => (acc === undefined ? h : nodeHash(h, acc)), undefined) ?? emptyRoot();
}

// ---------------------------------------------------------------------------------------------
// Proof plans: which subtree hashes a proof consists of, so storage can fetch them in one query.

/** Ranges of the inclusion proof PATH(leafIndex, D[0:treeSize]) (RFC 6962 §2.1.1), bottom-up. */
export function inclusionPlan(leafIndex: number, treeSize: number): ProofPlan {
  checkCount('leafIndex', leafIndex);
  checkCount('treeSize', treeSize);
  if (leafIndex >= treeSize) {
    throw invalidRange(`leaf index ${leafIndex} is not in a tree of size ${treeSize}`, { reason: 'index_beyond_size', leafIndex, treeSize });
  }
  // Walk down from the root; each step's sibling is one proof hash. Reversed at the end
  // because PATH lists the deepest sibling first.
  const topDown: (readonly [number, number])[] = [];
  let begin = 0;
  let end = treeSize;
  while (end - begin > 1) {
    const mid = begin + splitPoint(end - begin);
    if (leafIndex < mid) {
      topDown.push([mid, end]);
      end = mid;
    } else {
      topDown.push([begin, mid]);
      begin = mid;
    }
  }
  return { ranges: topDown.reverse() };
}

/** Ranges of the consistency proof PROOF(size1, D[0:size2]) (RFC 6962 §2.1.2), bottom-up; empty if size1 is 0 or size2. */
export function consistencyPlan(size1: number, size2: number): ProofPlan {
  checkCount('size1', size1);
  checkCount('size2', size2);
  if (size1 > size2) throw invalidRange(`size1 ${size1} is larger than size2 ${size2}`, { reason: 'size1_after_size2', size1, size2 });
  if (size1 === 0 || size1 === size2) return { ranges: [] };
  // SUBPROOF(m, D[begin:end], whole) unrolled; invariant begin < size1 <= end.
  const topDown: (readonly [number, number])[] = [];
  let begin = 0;
  let end = size2;
  let whole = true;
  while (size1 !== end) {
    const mid = begin + splitPoint(end - begin);
    if (size1 <= mid) {
      topDown.push([mid, end]);
      end = mid;
    } else {
      topDown.push([begin, mid]);
      begin = mid;
      whole = false;
    }
  }
  // m == n: the old root itself is only needed when it is not the whole old tree.
  if (!whole) topDown.push([begin, end]);
  return { ranges: topDown.reverse() };
}

/** The plan whose single hash is the root of a tree of `size` (the empty root for size 0). */
export function rootPlan(size: number): ProofPlan {
  checkCount('size', size);
  return { ranges: [[0, size]] };
}

/** Every stored node a plan reads, deduplicated, in first-use order: O(log n) of them. */
export function planNodes(plan: ProofPlan): NodeId[] {
  const seen = new Map<string, NodeId>();
  for (const [begin, end] of plan.ranges) {
    for (const id of perfectDecomposition(begin, end)) {
      const key = nodeKey(id);
      if (!seen.has(key)) seen.set(key, id);
    }
  }
  return [...seen.values()];
}

/** The proof hashes of a plan, computed from stored node hashes. */
export function resolvePlan(plan: ProofPlan, get: (id: NodeId) => Buffer): Buffer[] {
  return plan.ranges.map(([begin, end]) => rangeRoot(begin, end, get));
}

// ---------------------------------------------------------------------------------------------
// Verifiers (RFC 9162 §2.1.3.2 and §2.1.4.2)

/**
 * Dry run of the RFC 9162 §2.1.3.2 loop: for each proof hash, whether it is a left sibling.
 * Its length is the exact proof length; the loop ends when sn reaches 0.
 */
function inclusionSides(index: number, size: number): boolean[] {
  const left: boolean[] = [];
  let fn = index;
  let sn = size - 1;
  while (sn > 0) {
    if (isOdd(fn) || fn === sn) {
      left.push(true);
      // On the right border: skip levels where the path node has no sibling.
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      left.push(false);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return left;
}

function checkProofLength(got: number, want: number): void {
  if (got > want) throw proofInvalid(`proof has ${got} hashes, expected ${want}`, 'proof_too_long', { got, want });
  if (got < want) throw proofInvalid(`proof has ${got} hashes, expected ${want}`, 'proof_too_short', { got, want });
}

/** The root implied by an inclusion proof (RFC 9162 §2.1.3.2); throws if the proof is malformed. */
export function rootFromInclusionProof(
  leafIndex: number,
  treeSize: number,
  leafHash: Uint8Array,
  proof: readonly Uint8Array[],
): Buffer {
  checkCount('leafIndex', leafIndex);
  checkCount('treeSize', treeSize);
  if (leafIndex >= treeSize) {
    throw invalidRange(`leaf index ${leafIndex} is not in a tree of size ${treeSize}`, { reason: 'index_beyond_size', leafIndex, treeSize });
  }
  checkHash('leaf hash', leafHash, 'bad_leaf_hash_length');
  checkProofHashes(proof);
  const sides = inclusionSides(leafIndex, treeSize);
  checkProofLength(proof.length, sides.length);
  let r: Buffer = Buffer.from(leafHash);
  proof.forEach((p, i) => {
    r = sides[i] === true ? nodeHash(p, r) : nodeHash(r, p);
  });
  return r;
}

/** Throws AUDIT_PROOF_INVALID unless `proof` shows leaf `leafIndex` with `leafHash` is in the tree with `root`. */
export function verifyInclusion(
  leafIndex: number,
  treeSize: number,
  leafHash: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): void {
  checkHash('root', root, 'bad_root_length');
  const computed = rootFromInclusionProof(leafIndex, treeSize, leafHash, proof);
  if (!computed.equals(root)) {
    throw proofInvalid(`inclusion proof for leaf ${leafIndex} does not lead to the given root of tree size ${treeSize}`, 'root_mismatch');
  }
}

/** Throws AUDIT_PROOF_INVALID unless `proof` shows the tree (size1, root1) is a prefix of (size2, root2). */
export function verifyConsistency(
  size1: number,
  size2: number,
  root1: Uint8Array,
  root2: Uint8Array,
  proof: readonly Uint8Array[],
): void {
  checkCount('size1', size1);
  checkCount('size2', size2);
  if (size1 > size2) throw invalidRange(`size1 ${size1} is larger than size2 ${size2}`, { reason: 'size1_after_size2', size1, size2 });

  if (size1 === size2) {
    // RFC 9162 §2.1.4.2: equal sizes need an empty proof and equal roots; hash length is not
    // checked here (a vector requires accepting equal 12-byte roots). A size-0 tree has exactly
    // one root, though, so anything else is a forged empty tree.
    checkProofLength(proof.length, 0);
    if (size1 === 0 && !(bytesEqual(root1, emptyRoot()) && bytesEqual(root2, emptyRoot()))) {
      throw proofInvalid('a tree of size 0 must have the empty root SHA-256("")', 'bad_empty_root');
    }
    if (!bytesEqual(root1, root2)) throw proofInvalid(`trees of equal size ${size1} have different roots`, 'root_mismatch');
    return;
  }
  if (size1 === 0) {
    // Every tree extends the empty tree, so there is nothing to prove, but root1 must really be
    // the empty root and root2 a well-formed hash.
    checkProofLength(proof.length, 0);
    if (!bytesEqual(root1, emptyRoot())) throw proofInvalid('a tree of size 0 must have the empty root SHA-256("")', 'bad_empty_root');
    checkHash('root2', root2, 'bad_root_length');
    return;
  }

  // Step 1: a proof between different non-empty sizes is never empty.
  if (proof.length === 0) throw proofInvalid('consistency proof is empty', 'proof_too_short');
  checkHash('root1', root1, 'bad_root_length');
  checkHash('root2', root2, 'bad_root_length');
  checkProofHashes(proof);

  // RFC 9162 §2.1.4.2 step 2: when size1 is a power of two the old root is itself the first
  // path element, so the proof omits it.
  const seeded = isPowerOfTwo(size1);
  let fn = size1 - 1;
  let sn = size2 - 1;
  // Step 4: skip the levels where the old tree's last node is a right child of a complete subtree.
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  // Dry run of step 6 to know the exact proof length before hashing: for each path element,
  // whether it is a left sibling (hashed into both roots) or a right one (new tree only).
  const both: boolean[] = [];
  while (sn > 0) {
    if (isOdd(fn) || fn === sn) {
      both.push(true);
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      both.push(false);
    }
    fn = half(fn);
    sn = half(sn);
  }
  const [first, ...rest] = proof;
  const seed = seeded ? root1 : first;
  const path = seeded ? proof : rest;
  checkProofLength(proof.length, (seeded ? 0 : 1) + both.length);
  if (seed === undefined) throw proofInvalid('consistency proof is empty', 'proof_too_short');

  let fr: Buffer = Buffer.from(seed);
  let sr = fr;
  path.forEach((c, i) => {
    if (both[i] === true) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
    } else {
      sr = nodeHash(sr, c);
    }
  });
  if (!fr.equals(root1)) throw proofInvalid(`consistency proof does not lead to root1 of tree size ${size1}`, 'root1_mismatch');
  if (!sr.equals(root2)) throw proofInvalid(`consistency proof does not lead to root2 of tree size ${size2}`, 'root2_mismatch');
}

// ---------------------------------------------------------------------------------------------
// Incremental builder

/**
 * Appends leaf hashes keeping only the frontier (one perfect-subtree root per set bit of size),
 * so appending is amortised O(1) hashes and O(log n) memory.
 */
export class MerkleBuilder {
  #size: number;
  readonly #stack: Buffer[];
  // Reused for every node hash: 0x01 || left || right, no per-append allocation but the digest.
  readonly #scratch = Buffer.alloc(1 + 2 * HASH_SIZE);

  /** Resume from `size` leaves and their frontier (as from frontier()), or start empty. */
  constructor(size = 0, frontier: readonly Buffer[] = []) {
    checkCount('size', size);
    const want = frontierNodes(size).length;
    if (frontier.length !== want) {
      throw invalidRange(`a tree of size ${size} has ${want} frontier hashes, got ${frontier.length}`, {
        reason: 'frontier_length',
        size,
        got: frontier.length,
        want,
      });
    }
    frontier.forEach((h, i) => {
      if (h.length !== HASH_SIZE) {
        throw invalidRange(`frontier hash ${i} must be ${HASH_SIZE} bytes, got ${h.length}`, { reason: 'bad_hash_length', position: i });
      }
    });
    this.#size = size;
    this.#stack = frontier.map((h) => Buffer.from(h));
    this.#scratch[0] = 0x01;
  }

  /** Number of leaves appended so far (including the resumed size). */
  get size(): number {
    return this.#size;
  }

  /** Appends one leaf hash; `onNode` receives each perfect subtree (level >= 1) this completes. */
  append(leafHash: Buffer, onNode?: (level: number, index: number, hash: Buffer) => void): void {
    if (leafHash.length !== HASH_SIZE) {
      throw invalidRange(`leaf hash must be ${HASH_SIZE} bytes, got ${leafHash.length}`, { reason: 'bad_hash_length' });
    }
    if (this.#size >= Number.MAX_SAFE_INTEGER) throw invalidRange('the tree is full', { reason: 'tree_full' });
    let node = leafHash;
    let level = 0;
    // Each trailing 1 bit of size is a left sibling on the stack that the new node completes;
    // `index` is the new node's index at `level` (size >> level).
    let index = this.#size;
    while (isOdd(index)) {
      const left = this.#stack.pop();
      if (left === undefined) throw new AirlockError('INTERNAL', 'merkle frontier is shorter than its size implies');
      left.copy(this.#scratch, 1);
      node.copy(this.#scratch, 1 + HASH_SIZE);
      node = sha256(this.#scratch);
      level += 1;
      index = (index - 1) / 2;
      onNode?.(level, index, node);
    }
    // A leaf left on the frontier is the caller's buffer: copy it so later reuse can't corrupt us.
    this.#stack.push(level === 0 ? Buffer.from(node) : node);
    this.#size += 1;
  }

  /** The current root: MTH of all appended leaves (the empty root for size 0). */
  root(): Buffer {
    const r = this.#stack.reduceRight<Buffer | undefined>((acc, h) => (acc === undefined ? h : nodeHash(h, acc)), undefined);
    // Copy: for a power-of-two size r is our own frontier buffer.
    return r === undefined ? emptyRoot() : Buffer.from(r);
  }

  /** Copies of the frontier hashes, largest subtree first (the nodes frontierNodes(size) names). */
  frontier(): Buffer[] {
    return this.#stack.map((h) => Buffer.from(h));
  }
}
