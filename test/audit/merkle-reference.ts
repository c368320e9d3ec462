/**
 * Naive recursive RFC 6962 §2.1 reference: MTH, PATH and PROOF exactly as the RFC writes them,
 * on slices of the data. Deliberately shares no code with src/audit/merkle.ts, so the two can
 * cross-check each other. Quadratic and slow: for small trees in tests only.
 */
import { createHash } from 'node:crypto';

function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** The largest power of two smaller than n (n > 1). */
function splitOf(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** MTH(D[n]) (RFC 6962 §2.1). */
export function refMth(d: readonly Uint8Array[]): Buffer {
  const n = d.length;
  if (n === 0) return sha256();
  const [only] = d;
  if (n === 1 && only !== undefined) return sha256(Buffer.from([0x00]), only);
  const k = splitOf(n);
  return sha256(Buffer.from([0x01]), refMth(d.slice(0, k)), refMth(d.slice(k)));
}

/** PATH(m, D[n]) (RFC 6962 §2.1.1). */
export function refPath(m: number, d: readonly Uint8Array[]): Buffer[] {
  const n = d.length;
  if (n <= 1) return [];
  const k = splitOf(n);
  if (m < k) return [...refPath(m, d.slice(0, k)), refMth(d.slice(k))];
  return [...refPath(m - k, d.slice(k)), refMth(d.slice(0, k))];
}

/** SUBPROOF(m, D[n], b) (RFC 6962 §2.1.2). */
function refSubproof(m: number, d: readonly Uint8Array[], b: boolean): Buffer[] {
  const n = d.length;
  if (m === n) return b ? [] : [refMth(d)];
  const k = splitOf(n);
  if (m <= k) return [...refSubproof(m, d.slice(0, k), b), refMth(d.slice(k))];
  return [...refSubproof(m - k, d.slice(k), false), refMth(d.slice(0, k))];
}

/** PROOF(m, D[n]) = SUBPROOF(m, D[n], true) (RFC 6962 §2.1.2), for 0 < m <= n. */
export function refProof(m: number, d: readonly Uint8Array[]): Buffer[] {
  return refSubproof(m, d, true);
}
