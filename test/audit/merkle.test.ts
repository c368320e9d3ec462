import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AirlockError } from '../../src/errors/index.js';
import type { NodeId, ProofPlan } from '../../src/audit/merkle.js';
import {
  HASH_SIZE,
  MerkleBuilder,
  consistencyPlan,
  emptyRoot,
  frontierNodes,
  inclusionPlan,
  leafHash,
  nodeHash,
  nodeKey,
  perfectDecomposition,
  planNodes,
  rangeRoot,
  resolvePlan,
  rootFromInclusionProof,
  rootPlan,
  verifyConsistency,
  verifyInclusion,
} from '../../src/audit/merkle.js';
import { refMth, refPath, refProof } from './merkle-reference.js';

// ---------------------------------------------------------------------------------------------
// Helpers

/** The AirlockError `fn` throws, or undefined if it returns. */
function caught(fn: () => unknown): AirlockError | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof AirlockError) return err;
    throw err;
  }
  return undefined;
}

function expectRejected(fn: () => unknown, code?: 'AUDIT_PROOF_INVALID' | 'AUDIT_INVALID_RANGE', reason?: string): void {
  const err = caught(fn);
  expect(err, 'expected an AirlockError').toBeInstanceOf(AirlockError);
  expect(['AUDIT_PROOF_INVALID', 'AUDIT_INVALID_RANGE']).toContain(err?.code);
  if (code !== undefined) expect(err?.code).toBe(code);
  if (reason !== undefined) expect(err?.details['reason']).toBe(reason);
}

/** Thunks for expectRejected: the verifier call, deferred. */
const inclusion =
  (...args: Parameters<typeof verifyInclusion>) =>
  (): void => {
    verifyInclusion(...args);
  };
const consistency =
  (...args: Parameters<typeof verifyConsistency>) =>
  (): void => {
    verifyConsistency(...args);
  };

const hex = (hs: readonly Uint8Array[]): string[] => hs.map((h) => Buffer.from(h).toString('hex'));

function flipBit(h: Uint8Array, bit: number): Buffer {
  const out = Buffer.from(h);
  const i = Math.floor(bit / 8) % out.length;
  out.writeUInt8(out.readUInt8(i) ^ (1 << bit % 8), i);
  return out;
}

/** A log held in memory the way storage would hold it: every completed perfect subtree by key. */
interface StoredTree {
  readonly leafHashes: Buffer[];
  readonly nodes: Map<string, Buffer>;
  /** Roots after each append: roots[n] is the root of size n. */
  readonly roots: Buffer[];
  /** Reads a stored node; throws for a node that was never stored. */
  get(id: NodeId): Buffer;
}

function buildTree(entries: readonly Uint8Array[]): StoredTree {
  const builder = new MerkleBuilder();
  const nodes = new Map<string, Buffer>();
  const leafHashes: Buffer[] = [];
  const roots = [builder.root()];
  for (const e of entries) {
    const lh = leafHash(e);
    leafHashes.push(lh);
    nodes.set(nodeKey({ level: 0, index: builder.size }), lh);
    builder.append(lh, (level, index, hash) => nodes.set(nodeKey({ level, index }), hash));
    roots.push(builder.root());
  }
  return {
    leafHashes,
    nodes,
    roots,
    get(id) {
      const h = nodes.get(nodeKey(id));
      if (h === undefined) throw new Error(`node ${nodeKey(id)} is not stored`);
      return h;
    },
  };
}

/** Asserts every node a plan reads is a complete subtree of the tree of `size`, so it is stored. */
function expectStoredIn(plan: ProofPlan, size: number): void {
  for (const id of planNodes(plan)) {
    expect((id.index + 1) * 2 ** id.level).toBeLessThanOrEqual(size);
  }
}

function entriesOf(n: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => Buffer.from(`entry ${i}`.repeat((i % 3) + 1)));
}

// BigInt re-derivations of the proof lengths (transparency-dev/merkle decompInclProof), an
// independent check on the float arithmetic for sizes beyond 2^32.
const bitLen = (x: bigint): number => (x === 0n ? 0 : x.toString(2).length);
const popCount = (x: bigint): number => x.toString(2).replaceAll('0', '').length;
function decomp(index: number, size: number): [number, number] {
  const inner = bitLen(BigInt(index) ^ BigInt(size - 1));
  return [inner, popCount(BigInt(index) >> BigInt(inner))];
}
function inclusionLength(index: number, size: number): number {
  const [inner, border] = decomp(index, size);
  return inner + border;
}
function consistencyLength(size1: number, size2: number): number {
  if (size1 === 0 || size1 === size2) return 0;
  const [inner, border] = decomp(size1 - 1, size2);
  let shift = 0;
  while ((BigInt(size1) >> BigInt(shift)) % 2n === 0n) shift++;
  const pow2 = BigInt(size1) === 1n << BigInt(shift);
  return (pow2 ? 0 : 1) + inner - shift + border;
}

// ---------------------------------------------------------------------------------------------
// RFC 6962 test vectors (transparency-dev/merkle testdata)

const VECTOR_DIR = fileURLToPath(new URL('../../../shared/testdata/rfc6962', import.meta.url));

function jsonFilesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) return jsonFilesUnder(p);
      return e.name.endsWith('.json') ? [p] : [];
    })
    .sort();
}

type Json = Record<string, unknown>;
function readJson(file: string): Json {
  const v = JSON.parse(readFileSync(file, 'utf8')) as unknown;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${file}: not a JSON object`);
  return v as Json;
}
function num(o: Json, key: string): number {
  const v = o[key];
  if (typeof v !== 'number') throw new Error(`${key} is not a number`);
  return v;
}
function bool(o: Json, key: string): boolean {
  const v = o[key];
  if (typeof v !== 'boolean') throw new Error(`${key} is not a boolean`);
  return v;
}
function b64(o: Json, key: string): Buffer {
  const v = o[key];
  if (typeof v !== 'string') throw new Error(`${key} is not a string`);
  return Buffer.from(v, 'base64');
}
/** Go writes a nil slice as null. */
function proofOf(o: Json): Buffer[] {
  const v = o['proof'];
  if (v === null) return [];
  if (!Array.isArray(v)) throw new Error('proof is not an array');
  return v.map((s) => {
    if (typeof s !== 'string') throw new Error('proof element is not a string');
    return Buffer.from(s, 'base64');
  });
}

const inclusionFiles = jsonFilesUnder(path.join(VECTOR_DIR, 'inclusion'));
const consistencyFiles = jsonFilesUnder(path.join(VECTOR_DIR, 'consistency'));
const rel = (file: string): string => path.relative(VECTOR_DIR, file);

const treeJson = readJson(path.join(VECTOR_DIR, 'tree.json'));
const treeLeaves = (treeJson['leafInputsHex'] as string[]).map((h) => Buffer.from(h, 'hex'));
const treeRoots = (treeJson['rootHashHexByTreeSize'] as string[]).map((h) => Buffer.from(h, 'hex'));
const treeStore = buildTree(treeLeaves);

/** Numbered directories hold proofs over the tree.json leaves; the others are synthetic. */
const overTreeJson = (file: string): boolean => /^(inclusion|consistency)\/\d+\//.test(rel(file));

describe('RFC 6962 vectors', () => {
  it('finds the vectors (a wrong path must not pass silently)', () => {
    expect(inclusionFiles.length).toBeGreaterThan(50);
    expect(consistencyFiles.length).toBeGreaterThan(50);
    const wants = [...inclusionFiles, ...consistencyFiles].map((f) => bool(readJson(f), 'wantErr'));
    expect(wants.filter((w) => !w).length).toBeGreaterThan(0);
    expect(wants.filter((w) => w).length).toBeGreaterThan(0);
  });

  it('includes the leafIdx 2^64-1 trap, and JSON.parse really turns it into an unsafe number', () => {
    const trapped = inclusionFiles.filter((f) => /"leafIdx":\s*18446744073709551615\b/.test(readFileSync(f, 'utf8')));
    expect(trapped.length).toBeGreaterThanOrEqual(1);
    for (const f of trapped) {
      const v = readJson(f);
      const idx = num(v, 'leafIdx');
      expect(Number.isSafeInteger(idx)).toBe(false);
      expect(idx).toBe(2 ** 64); // rounded: 2^64 - 1 has no double
      expect(bool(v, 'wantErr')).toBe(true);
      expectRejected(
        inclusion(idx, num(v, 'treeSize'), b64(v, 'leafHash'), proofOf(v), b64(v, 'root')),
        'AUDIT_INVALID_RANGE',
        'not_safe_integer',
      );
    }
  });

  describe('inclusion', () => {
    it.each(inclusionFiles.map((f) => [rel(f), f]))('%s', (_name, file) => {
      const v = readJson(file);
      const run = (): void => {
        verifyInclusion(num(v, 'leafIdx'), num(v, 'treeSize'), b64(v, 'leafHash'), proofOf(v), b64(v, 'root'));
      };
      if (bool(v, 'wantErr')) {
        expectRejected(run);
      } else {
        expect(caught(run)).toBeUndefined();
        if (overTreeJson(file)) {
          // Our own plan over the tree.json leaves yields this very proof.
          const got = resolvePlan(inclusionPlan(num(v, 'leafIdx'), num(v, 'treeSize')), (id) => treeStore.get(id));
          expect(hex(got)).toEqual(hex(proofOf(v)));
        }
      }
    });
  });

  describe('consistency', () => {
    it.each(consistencyFiles.map((f) => [rel(f), f]))('%s', (_name, file) => {
      const v = readJson(file);
      const run = (): void => {
        verifyConsistency(num(v, 'size1'), num(v, 'size2'), b64(v, 'root1'), b64(v, 'root2'), proofOf(v));
      };
      if (bool(v, 'wantErr')) {
        expectRejected(run);
      } else {
        expect(caught(run)).toBeUndefined();
        if (overTreeJson(file)) {
          const got = resolvePlan(consistencyPlan(num(v, 'size1'), num(v, 'size2')), (id) => treeStore.get(id));
          expect(hex(got)).toEqual(hex(proofOf(v)));
        }
      }
    });
  });

  describe('tree.json', () => {
    it('has roots for sizes 0..8', () => {
      expect(treeLeaves).toHaveLength(8);
      expect(treeRoots).toHaveLength(9);
    });

    it('MerkleBuilder reproduces every root', () => {
      expect(hex(treeStore.roots)).toEqual(hex(treeRoots));
    });

    it('rangeRoot over the nodes collected from onNode reproduces every root', () => {
      const got = treeRoots.map((_, n) => rangeRoot(0, n, (id) => treeStore.get(id)));
      expect(hex(got)).toEqual(hex(treeRoots));
      expect(hex(treeRoots.map((_, n) => resolvePlan(rootPlan(n), (id) => treeStore.get(id))[0] ?? Buffer.alloc(0)))).toEqual(
        hex(treeRoots),
      );
    });

    it('size 0 is the empty root', () => {
      expect(treeRoots[0]?.toString('hex')).toBe(emptyRoot().toString('hex'));
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Cross-check against the naive recursive RFC 6962 reference

describe('agrees with the RFC 6962 §2.1 reference', () => {
  const entries = entriesOf(64);
  const store = buildTree(entries);
  const get = (id: NodeId): Buffer => store.get(id);
  const sizes = Array.from({ length: 64 }, (_, i) => i + 1);

  it.each(sizes)('tree size %i: roots, every inclusion proof, every consistency proof', (n) => {
    const d = entries.slice(0, n);
    const root = refMth(d);
    expect(store.roots[n]?.toString('hex')).toBe(root.toString('hex'));
    expect(rangeRoot(0, n, get).toString('hex')).toBe(root.toString('hex'));

    for (let m = 0; m < n; m++) {
      const plan = inclusionPlan(m, n);
      expectStoredIn(plan, n);
      const proof = resolvePlan(plan, get);
      expect(hex(proof)).toEqual(hex(refPath(m, d)));
      expect(proof).toHaveLength(inclusionLength(m, n));
      const leaf = store.leafHashes[m] ?? Buffer.alloc(0);
      expect(rootFromInclusionProof(m, n, leaf, proof).equals(root)).toBe(true);
      verifyInclusion(m, n, leaf, proof, root);
    }

    for (let m = 1; m <= n; m++) {
      const plan = consistencyPlan(m, n);
      expectStoredIn(plan, n);
      const proof = resolvePlan(plan, get);
      expect(hex(proof)).toEqual(hex(refProof(m, d)));
      expect(proof).toHaveLength(consistencyLength(m, n));
      verifyConsistency(m, n, refMth(entries.slice(0, m)), root, proof);
    }
    verifyConsistency(0, n, emptyRoot(), root, []);
    expect(consistencyPlan(0, n).ranges).toHaveLength(0);
  });

  it('rangeRoot equals MTH(D[b:e]) for every aligned range in 64 leaves, and refuses unaligned ones', () => {
    for (let b = 0; b <= 64; b++) {
      for (let e = b; e <= 64; e++) {
        const width = e > b ? 2 ** Math.floor(Math.log2(e - b)) : 1;
        if (b % width === 0) {
          expect(rangeRoot(b, e, get).toString('hex')).toBe(refMth(entries.slice(b, e)).toString('hex'));
        } else {
          expectRejected(() => rangeRoot(b, e, get), 'AUDIT_INVALID_RANGE', 'unaligned_range');
        }
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Decomposition, plans and the builder

describe('perfectDecomposition and plans', () => {
  it('decomposes by the binary digits of the width, largest first', () => {
    expect(perfectDecomposition(0, 13)).toEqual([
      { level: 3, index: 0 },
      { level: 2, index: 2 },
      { level: 0, index: 12 },
    ]);
    expect(perfectDecomposition(8, 15)).toEqual([
      { level: 2, index: 2 },
      { level: 1, index: 6 },
      { level: 0, index: 14 },
    ]);
    expect(perfectDecomposition(5, 5)).toEqual([]);
    expect(frontierNodes(0)).toEqual([]);
    expect(frontierNodes(2 ** 53 - 1)).toHaveLength(53);
    expect(nodeKey({ level: 3, index: 17 })).toBe('3:17');
  });

  it('names nodes the builder actually stored, and the frontier', () => {
    const store = buildTree(entriesOf(100));
    for (let n = 0; n <= 100; n++) {
      const b = new MerkleBuilder();
      store.leafHashes.slice(0, n).forEach((h) => {
        b.append(h);
      });
      expect(hex(b.frontier())).toEqual(hex(frontierNodes(n).map((id) => store.get(id))));
    }
  });

  it('reads O(log n) stored nodes even for huge trees', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.nat(), fc.nat(), (size, a, b) => {
        const index = a % size;
        const size1 = (b % size) + 1;
        const incl = inclusionPlan(index, size);
        const cons = consistencyPlan(size1, size);
        expect(incl.ranges).toHaveLength(inclusionLength(index, size));
        expect(cons.ranges).toHaveLength(consistencyLength(size1, size));
        expect(planNodes(incl).length).toBeLessThanOrEqual(2 * 53);
        expect(planNodes(cons).length).toBeLessThanOrEqual(2 * 53);
        expectStoredIn(incl, size);
        expectStoredIn(cons, size);
      }),
      { numRuns: 200 },
    );
  });

  it('rootPlan is one range over the whole tree; planNodes deduplicates', () => {
    expect(rootPlan(0).ranges).toEqual([[0, 0]]);
    expect(planNodes(rootPlan(0))).toEqual([]);
    expect(planNodes(rootPlan(6))).toEqual([
      { level: 2, index: 0 },
      { level: 1, index: 2 },
    ]);
    expect(planNodes({ ranges: [[0, 6], [4, 6], [0, 4]] })).toHaveLength(2);
  });

  it('MerkleBuilder resumes from a frontier and reports every completed subtree once', () => {
    const store = buildTree(entriesOf(300));
    let completed = 0;
    const b = new MerkleBuilder();
    store.leafHashes.forEach((h) => {
      b.append(h, () => (completed += 1));
    });
    // Every level >= 1 node of a tree of n leaves: n minus one per frontier subtree.
    expect(completed).toBe(300 - frontierNodes(300).length);
    expect(store.nodes.size).toBe(300 + completed);

    for (const cut of [0, 1, 2, 3, 7, 64, 127, 200]) {
      const first = new MerkleBuilder();
      store.leafHashes.slice(0, cut).forEach((h) => {
        first.append(h);
      });
      const resumed = new MerkleBuilder(cut, first.frontier());
      expect(resumed.size).toBe(cut);
      store.leafHashes.slice(cut).forEach((h, i) => {
        resumed.append(h, (level, index, hash) => {
          expect(store.nodes.get(nodeKey({ level, index }))?.toString('hex')).toBe(hash.toString('hex'));
        });
        expect(resumed.root().toString('hex')).toBe(store.roots[cut + i + 1]?.toString('hex'));
      });
    }
  });

  it('MerkleBuilder keeps its own copy of appended leaf hashes', () => {
    const b = new MerkleBuilder();
    const reused = Buffer.alloc(HASH_SIZE, 7);
    b.append(reused);
    const before = b.root().toString('hex');
    reused.fill(9);
    expect(b.root().toString('hex')).toBe(before);
  });
});

// ---------------------------------------------------------------------------------------------
// Property tests on random logs

const logArb = fc.array(fc.uint8Array({ maxLength: 24 }), { minLength: 1, maxLength: 300 });

describe('properties', () => {
  it('inclusion proofs from plans verify', () => {
    fc.assert(
      fc.property(logArb, fc.nat(), fc.nat(), (entries, a, b) => {
        const store = buildTree(entries);
        const size = (a % entries.length) + 1;
        const index = b % size;
        const root = store.roots[size] ?? Buffer.alloc(0);
        const proof = resolvePlan(inclusionPlan(index, size), (id) => store.get(id));
        verifyInclusion(index, size, leafHash(entries[index] ?? new Uint8Array()), proof, root);
      }),
      { numRuns: 100 },
    );
  });

  it('consistency proofs from plans verify', () => {
    fc.assert(
      fc.property(logArb, fc.nat(), fc.nat(), (entries, a, b) => {
        const store = buildTree(entries);
        const size2 = (a % entries.length) + 1;
        const size1 = (b % size2) + 1;
        const proof = resolvePlan(consistencyPlan(size1, size2), (id) => store.get(id));
        verifyConsistency(size1, size2, store.roots[size1] ?? Buffer.alloc(0), store.roots[size2] ?? Buffer.alloc(0), proof);
      }),
      { numRuns: 100 },
    );
  });

  it('flipping any bit of a proof hash, the leaf hash or the root breaks an inclusion proof', () => {
    fc.assert(
      fc.property(logArb, fc.nat(), fc.nat(), fc.nat(), fc.nat({ max: 8 * HASH_SIZE - 1 }), (entries, a, b, t, bit) => {
        const store = buildTree(entries);
        const size = (a % entries.length) + 1;
        const index = b % size;
        const root = store.roots[size] ?? Buffer.alloc(0);
        const leaf = store.leafHashes[index] ?? Buffer.alloc(0);
        const proof = resolvePlan(inclusionPlan(index, size), (id) => store.get(id));
        const target = t % (proof.length + 2);
        if (target < proof.length) {
          const bad = proof.map((h, i) => (i === target ? flipBit(h, bit) : h));
          expectRejected(inclusion(index, size, leaf, bad, root), 'AUDIT_PROOF_INVALID', 'root_mismatch');
        } else if (target === proof.length) {
          expectRejected(inclusion(index, size, flipBit(leaf, bit), proof, root), 'AUDIT_PROOF_INVALID', 'root_mismatch');
        } else {
          expectRejected(inclusion(index, size, leaf, proof, flipBit(root, bit)), 'AUDIT_PROOF_INVALID', 'root_mismatch');
        }
      }),
      { numRuns: 100 },
    );
  });

  it('flipping any bit of a proof hash or either root breaks a consistency proof', () => {
    fc.assert(
      fc.property(logArb, fc.nat(), fc.nat(), fc.nat(), fc.nat({ max: 8 * HASH_SIZE - 1 }), (entries, a, b, t, bit) => {
        const store = buildTree(entries);
        const size2 = (a % entries.length) + 1;
        const size1 = (b % size2) + 1;
        const root1 = store.roots[size1] ?? Buffer.alloc(0);
        const root2 = store.roots[size2] ?? Buffer.alloc(0);
        const proof = resolvePlan(consistencyPlan(size1, size2), (id) => store.get(id));
        const target = t % (proof.length + 2);
        if (target < proof.length) {
          const bad = proof.map((h, i) => (i === target ? flipBit(h, bit) : h));
          expectRejected(consistency(size1, size2, root1, root2, bad), 'AUDIT_PROOF_INVALID');
        } else if (target === proof.length) {
          expectRejected(consistency(size1, size2, flipBit(root1, bit), root2, proof), 'AUDIT_PROOF_INVALID');
        } else {
          expectRejected(consistency(size1, size2, root1, flipBit(root2, bit), proof), 'AUDIT_PROOF_INVALID');
        }
      }),
      { numRuns: 100 },
    );
  });

  it('adding or removing a proof hash breaks both kinds of proof', () => {
    fc.assert(
      fc.property(logArb, fc.nat(), fc.nat(), fc.nat(), fc.uint8Array({ minLength: 32, maxLength: 32 }), (entries, a, b, pos, extra) => {
        const store = buildTree(entries);
        const get = (id: NodeId): Buffer => store.get(id);
        const size = (a % entries.length) + 1;
        const index = b % size;
        const size1 = index + 1;
        const root = store.roots[size] ?? Buffer.alloc(0);
        const root1 = store.roots[size1] ?? Buffer.alloc(0);
        const leaf = store.leafHashes[index] ?? Buffer.alloc(0);
        const incl = resolvePlan(inclusionPlan(index, size), get);
        const cons = resolvePlan(consistencyPlan(size1, size), get);
        const insert = (p: Buffer[]): Uint8Array[] => {
          const at = pos % (p.length + 1);
          return [...p.slice(0, at), extra, ...p.slice(at)];
        };
        const remove = (p: Buffer[]): Buffer[] => p.filter((_, i) => i !== pos % p.length);
        expectRejected(inclusion(index, size, leaf, insert(incl), root), 'AUDIT_PROOF_INVALID', 'proof_too_long');
        expectRejected(consistency(size1, size, root1, root, insert(cons)), 'AUDIT_PROOF_INVALID', 'proof_too_long');
        if (incl.length > 0) {
          expectRejected(inclusion(index, size, leaf, remove(incl), root), 'AUDIT_PROOF_INVALID', 'proof_too_short');
        }
        if (cons.length > 0) {
          expectRejected(consistency(size1, size, root1, root, remove(cons)), 'AUDIT_PROOF_INVALID', 'proof_too_short');
        }
      }),
      { numRuns: 100 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Huge trees: a virtual log of up to 2^53 - 1 leaves whose entries are constant between a few
// breakpoints, so any subtree hash is computable in O(breakpoints * log n) with memoisation.

function virtualTree(breaks: readonly number[]): (id: NodeId) => Buffer {
  const sorted = [...new Set(breaks)].sort((x, y) => x - y);
  const segmentOf = (leaf: number): number => sorted.filter((b) => b <= leaf).length;
  const constant = new Map<string, Buffer>();
  const mixed = new Map<string, Buffer>();
  const constantHash = (segment: number, level: number): Buffer => {
    const key = `${segment}:${level}`;
    let h = constant.get(key);
    if (h === undefined) {
      h = level === 0 ? leafHash(Buffer.from(`segment ${segment}`)) : nodeHash(constantHash(segment, level - 1), constantHash(segment, level - 1));
      constant.set(key, h);
    }
    return h;
  };
  const get = (id: NodeId): Buffer => {
    const first = id.index * 2 ** id.level;
    const last = first + 2 ** id.level - 1;
    const segment = segmentOf(first);
    if (segment === segmentOf(last)) return constantHash(segment, id.level);
    let h = mixed.get(nodeKey(id));
    if (h === undefined) {
      h = nodeHash(get({ level: id.level - 1, index: 2 * id.index }), get({ level: id.level - 1, index: 2 * id.index + 1 }));
      mixed.set(nodeKey(id), h);
    }
    return h;
  };
  return get;
}

describe('huge trees (beyond 32-bit sizes)', () => {
  const sizeArb = fc.oneof(
    fc.integer({ min: 2, max: Number.MAX_SAFE_INTEGER }),
    fc.constantFrom(2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 52 + 3, 2 ** 53 - 1, 2 ** 53 - 2),
  );

  it('plans, proofs and verifiers agree up to 2^53 - 1 leaves', () => {
    fc.assert(
      fc.property(sizeArb, fc.nat(), fc.nat(), fc.array(fc.nat(), { maxLength: 3 }), fc.nat({ max: 255 }), (size2, a, b, more, bit) => {
        const index = a % size2;
        const size1 = (b % (size2 - 1)) + 1;
        // Breakpoints isolate the proven leaf and the old tree's edge, so they differ from their neighbours.
        const get = virtualTree([index, index + 1, size1, ...more.map((x) => x % size2)]);
        const root2 = rangeRoot(0, size2, get);
        const root1 = rangeRoot(0, size1, get);
        const leaf = get({ level: 0, index });

        const incl = resolvePlan(inclusionPlan(index, size2), get);
        expect(incl).toHaveLength(inclusionLength(index, size2));
        verifyInclusion(index, size2, leaf, incl, root2);
        expectRejected(inclusion(index, size2, flipBit(leaf, bit), incl, root2), 'AUDIT_PROOF_INVALID', 'root_mismatch');

        const cons = resolvePlan(consistencyPlan(size1, size2), get);
        expect(cons).toHaveLength(consistencyLength(size1, size2));
        verifyConsistency(size1, size2, root1, root2, cons);
        expectRejected(consistency(size1, size2, flipBit(root1, bit), root2, cons), 'AUDIT_PROOF_INVALID');
      }),
      { numRuns: 100 },
    );
  });

  it('resumes a builder at 2^53 - 2 leaves and refuses to grow past the safe-integer limit', () => {
    const size = Number.MAX_SAFE_INTEGER - 1;
    const get = virtualTree([]);
    const b = new MerkleBuilder(size, frontierNodes(size).map(get));
    expect(b.root().equals(rangeRoot(0, size, get))).toBe(true);
    b.append(get({ level: 0, index: size }));
    expect(b.root().equals(rangeRoot(0, size + 1, get))).toBe(true);
    expectRejected(() => {
      b.append(get({ level: 0, index: 0 }));
    }, 'AUDIT_INVALID_RANGE', 'tree_full');
  });
});

// ---------------------------------------------------------------------------------------------
// Every error condition, explicitly

describe('rejects', () => {
  const store = buildTree(entriesOf(13));
  const get = (id: NodeId): Buffer => store.get(id);
  const root13 = store.roots[13] ?? Buffer.alloc(0);
  const root6 = store.roots[6] ?? Buffer.alloc(0);
  const leaf5 = store.leafHashes[5] ?? Buffer.alloc(0);
  const incl = resolvePlan(inclusionPlan(5, 13), get);
  const cons = resolvePlan(consistencyPlan(6, 13), get);
  const bad = [2 ** 53, 2 ** 64, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY];

  it('sanity: the unmodified proofs verify', () => {
    verifyInclusion(5, 13, leaf5, incl, root13);
    verifyConsistency(6, 13, root6, root13, cons);
  });

  it.each(bad)('non-safe-integer or negative number %s', (n) => {
    const reason = n === -1 ? 'negative' : 'not_safe_integer';
    expectRejected(inclusion(n, 13, leaf5, incl, root13), 'AUDIT_INVALID_RANGE', reason);
    expectRejected(inclusion(5, n, leaf5, incl, root13), 'AUDIT_INVALID_RANGE', reason);
    expectRejected(consistency(n, 13, root6, root13, cons), 'AUDIT_INVALID_RANGE', reason);
    expectRejected(consistency(6, n, root6, root13, cons), 'AUDIT_INVALID_RANGE', reason);
    expectRejected(() => inclusionPlan(n, 13), 'AUDIT_INVALID_RANGE', reason);
    expectRejected(() => consistencyPlan(n, 13), 'AUDIT_INVALID_RANGE', reason);
    expectRejected(() => rootPlan(n), 'AUDIT_INVALID_RANGE', reason);
    expectRejected(() => perfectDecomposition(0, n), 'AUDIT_INVALID_RANGE', reason);
    expectRejected(() => new MerkleBuilder(n), 'AUDIT_INVALID_RANGE', reason);
  });

  it('index >= size', () => {
    expectRejected(inclusion(13, 13, leaf5, incl, root13), 'AUDIT_INVALID_RANGE', 'index_beyond_size');
    expectRejected(inclusion(0, 0, leaf5, [], emptyRoot()), 'AUDIT_INVALID_RANGE', 'index_beyond_size');
    expectRejected(() => inclusionPlan(13, 13), 'AUDIT_INVALID_RANGE', 'index_beyond_size');
  });

  it('size1 > size2, and begin > end', () => {
    expectRejected(consistency(14, 13, root6, root13, cons), 'AUDIT_INVALID_RANGE', 'size1_after_size2');
    expectRejected(() => consistencyPlan(14, 13), 'AUDIT_INVALID_RANGE', 'size1_after_size2');
    expectRejected(() => perfectDecomposition(4, 3), 'AUDIT_INVALID_RANGE', 'begin_after_end');
  });

  it('hashes that are not 32 bytes', () => {
    const short = leaf5.subarray(0, 31);
    const long = Buffer.concat([leaf5, Buffer.alloc(1)]);
    for (const wrong of [short, long, Buffer.alloc(0)]) {
      expectRejected(inclusion(5, 13, wrong, incl, root13), 'AUDIT_PROOF_INVALID', 'bad_leaf_hash_length');
      expectRejected(inclusion(5, 13, leaf5, incl, wrong), 'AUDIT_PROOF_INVALID', 'bad_root_length');
      expectRejected(inclusion(5, 13, leaf5, [wrong, ...incl.slice(1)], root13), 'AUDIT_PROOF_INVALID', 'bad_proof_hash_length');
      expectRejected(consistency(6, 13, wrong, root13, cons), 'AUDIT_PROOF_INVALID', 'bad_root_length');
      expectRejected(consistency(6, 13, root6, wrong, cons), 'AUDIT_PROOF_INVALID', 'bad_root_length');
      expectRejected(consistency(6, 13, root6, root13, [...cons.slice(0, -1), wrong]), 'AUDIT_PROOF_INVALID', 'bad_proof_hash_length');
      expectRejected(consistency(0, 13, emptyRoot(), wrong, []), 'AUDIT_PROOF_INVALID', 'bad_root_length');
    }
  });

  it('extra or missing proof hashes', () => {
    expectRejected(inclusion(5, 13, leaf5, [...incl, root13], root13), 'AUDIT_PROOF_INVALID', 'proof_too_long');
    expectRejected(inclusion(5, 13, leaf5, incl.slice(1), root13), 'AUDIT_PROOF_INVALID', 'proof_too_short');
    expectRejected(inclusion(0, 1, leaf5, [leaf5], leaf5), 'AUDIT_PROOF_INVALID', 'proof_too_long');
    expectRejected(consistency(6, 13, root6, root13, [...cons, root13]), 'AUDIT_PROOF_INVALID', 'proof_too_long');
    expectRejected(consistency(6, 13, root6, root13, cons.slice(0, -1)), 'AUDIT_PROOF_INVALID', 'proof_too_short');
    expectRejected(consistency(6, 13, root6, root13, []), 'AUDIT_PROOF_INVALID', 'proof_too_short');
  });

  it('wrong roots', () => {
    expectRejected(inclusion(5, 13, leaf5, incl, root6), 'AUDIT_PROOF_INVALID', 'root_mismatch');
    expectRejected(inclusion(4, 13, leaf5, incl, root13), 'AUDIT_PROOF_INVALID', 'root_mismatch');
    expectRejected(consistency(6, 13, root13, root13, cons), 'AUDIT_PROOF_INVALID', 'root1_mismatch');
    expectRejected(consistency(6, 13, root6, root6, cons), 'AUDIT_PROOF_INVALID', 'root2_mismatch');
    expectRejected(consistency(6, 13, root13, root6, cons), 'AUDIT_PROOF_INVALID');
  });

  it('equal sizes: the proof must be empty and the roots equal', () => {
    verifyConsistency(13, 13, root13, Buffer.from(root13), []);
    verifyConsistency(1, 1, Buffer.from("don't care"), Buffer.from("don't care"), []); // RFC: nothing to check but equality
    expectRejected(consistency(13, 13, root13, root13, [root13]), 'AUDIT_PROOF_INVALID', 'proof_too_long');
    expectRejected(consistency(13, 13, root13, root6, []), 'AUDIT_PROOF_INVALID', 'root_mismatch');
  });

  it('the empty tree: only SHA-256("") is its root, and no proof is needed to extend it', () => {
    verifyConsistency(0, 0, emptyRoot(), emptyRoot(), []);
    verifyConsistency(0, 13, emptyRoot(), root13, []);
    expectRejected(consistency(0, 0, root6, root6, []), 'AUDIT_PROOF_INVALID', 'bad_empty_root');
    expectRejected(consistency(0, 0, emptyRoot(), emptyRoot(), [root6]), 'AUDIT_PROOF_INVALID', 'proof_too_long');
    expectRejected(consistency(0, 13, root6, root13, []), 'AUDIT_PROOF_INVALID', 'bad_empty_root');
    expectRejected(consistency(0, 13, emptyRoot(), root13, [root13]), 'AUDIT_PROOF_INVALID', 'proof_too_long');
  });

  it('bad builder state and bad stored nodes', () => {
    expectRejected(() => new MerkleBuilder(3, [root6]), 'AUDIT_INVALID_RANGE', 'frontier_length');
    expectRejected(() => new MerkleBuilder(1, [Buffer.alloc(31)]), 'AUDIT_INVALID_RANGE', 'bad_hash_length');
    expectRejected(() => {
      new MerkleBuilder().append(Buffer.alloc(31));
    }, 'AUDIT_INVALID_RANGE', 'bad_hash_length');
    expectRejected(() => rangeRoot(0, 2, () => Buffer.alloc(31)), 'AUDIT_PROOF_INVALID', 'bad_node_hash_length');
    expectRejected(() => perfectDecomposition(2, 6), 'AUDIT_INVALID_RANGE', 'unaligned_range');
  });

  it('messages say what is wrong', () => {
    expect(caught(inclusion(5, 13, leaf5, incl.slice(1), root13))?.message).toMatch(/proof has 3 hashes, expected 4/);
    expect(caught(inclusion(13, 13, leaf5, incl, root13))?.message).toMatch(/leaf index 13 is not in a tree of size 13/);
  });
});
