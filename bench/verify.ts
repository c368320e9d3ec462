/**
 * Figures 5 and 6: verifying the whole log, and proof generation / verification at its size.
 */
import { randomInt } from 'node:crypto';
import { AuditLog, loadVerifierKey, verifyConsistency, verifyInclusion, verifyLog } from '../src/audit/index.js';
import type { ConsistencyProof, InclusionProof } from '../src/audit/index.js';
import { openStore } from '../src/storage/index.js';
import { QUICK, Samples, emit, now, peakRssMiB, progress, round } from './lib.js';
import { ORIGIN } from './sqlite.js';

const VERIFY_GOAL_S = 10;
const PROOF_P99_GOAL_MS = 10;
const PROOF_VERIFY_GOAL_US = 100;

/** Figure 5, step 2: verifyLog over the whole log against its signed checkpoint. */
export async function verifyFigure(path: string, home: string): Promise<void> {
  const store = await openStore({ kind: 'sqlite', path });
  try {
    const { verifier } = await loadVerifierKey(home, ORIGIN);
    let nextReport = 0;
    const t0 = now();
    const report = await verifyLog({
      db: store.db,
      verifiers: [verifier],
      origin: ORIGIN,
      onProgress: (checked, total) => {
        if (checked >= nextReport) {
          progress(`verify: ${checked} / ${total} after ${round((now() - t0) / 1000, 1)} s`);
          nextReport = checked + total / 5;
        }
      },
    });
    const seconds = (now() - t0) / 1000;
    const n = report.treeSize;
    // The goal is stated for 1,000,000 entries; a quick run scales it by size.
    const goalS = (VERIFY_GOAL_S * n) / 1_000_000;
    emit({
      bench: 'sqlite_verify_log',
      value: round(seconds, 2),
      unit: 's',
      engine: 'sqlite',
      n,
      entriesPerS: Math.round(n / seconds),
      ok: report.ok,
      findings: report.findings.length,
      checkpointsChecked: report.checkpointsChecked,
      latestCheckpointSize: report.latestCheckpoint?.size ?? null,
      peakRssMiB: peakRssMiB(),
      goal: QUICK ? `<= ${round(goalS, 2)} s (10 s per 1M entries, scaled)` : `<= ${VERIFY_GOAL_S} s for 1,000,000 entries`,
      pass: report.ok && seconds <= goalS && report.checkpointsChecked > 0,
    });
    if (!report.ok) progress(`verify findings: ${JSON.stringify(report.findings.slice(0, 5))}`);
  } finally {
    await store.close();
  }
}

/** Figure 6: proof generation through AuditLog (the server's path), and client-side verification. */
export async function proofFigures(path: string): Promise<void> {
  const store = await openStore({ kind: 'sqlite', path });
  try {
    const log = new AuditLog(store);
    const n = (await log.head()).size;
    const runs = 2000;

    // Warm the read connection's page cache and the JIT the way a running server is warm.
    for (let i = 0; i < 200; i++) await log.inclusionProof(randomInt(n));

    progress(`proofs: ${runs} inclusion proofs at random indices of a ${n}-entry tree`);
    const inclusion: InclusionProof[] = [];
    const incLat = new Samples();
    for (let i = 0; i < runs; i++) {
      const idx = randomInt(n);
      const t0 = now();
      const p = await log.inclusionProof(idx);
      incLat.push(now() - t0);
      if (inclusion.length < 100) inclusion.push(p);
    }
    const inc = incLat.summary();
    emit({
      bench: 'proof_inclusion_generate',
      value: inc.p50,
      unit: 'ms (p50)',
      engine: 'sqlite',
      treeSize: n,
      n: runs,
      p50: inc.p50,
      p99: inc.p99,
      max: inc.max,
      latencyUnit: 'ms',
      goal: `p99 <= ${PROOF_P99_GOAL_MS} ms`,
      pass: inc.p99 <= PROOF_P99_GOAL_MS,
    });

    progress(`proofs: ${runs} consistency proofs from random sizes to ${n}`);
    const consistency: ConsistencyProof[] = [];
    const conLat = new Samples();
    for (let i = 0; i < runs; i++) {
      const size1 = 1 + randomInt(n - 1);
      const t0 = now();
      const p = await log.consistencyProof(size1);
      conLat.push(now() - t0);
      if (consistency.length < 100) consistency.push(p);
    }
    const con = conLat.summary();
    emit({
      bench: 'proof_consistency_generate',
      value: con.p50,
      unit: 'ms (p50)',
      engine: 'sqlite',
      treeSize: n,
      n: runs,
      p50: con.p50,
      p99: con.p99,
      max: con.max,
      latencyUnit: 'ms',
      goal: `p99 <= ${PROOF_P99_GOAL_MS} ms`,
      pass: con.p99 <= PROOF_P99_GOAL_MS,
    });

    const verifyRuns = QUICK ? 20_000 : 100_000;
    progress(`proofs: verifying ${verifyRuns} inclusion and ${verifyRuns} consistency proofs`);
    // Every proof is checked once first: a benchmark of a verifier that rejects is meaningless.
    for (const p of inclusion) verifyInclusion(p.leafIndex, p.treeSize, p.leafHash, p.proof, p.rootHash);
    for (const p of consistency) verifyConsistency(p.size1, p.size2, p.root1, p.root2, p.proof);
    const verifyAll = <P>(proofs: readonly P[], check: (p: P) => void): number => {
      for (let i = 0; i < 2000; i++) check(proofs[i % proofs.length] as P);
      const t0 = now();
      for (let i = 0; i < verifyRuns; i++) check(proofs[i % proofs.length] as P);
      return ((now() - t0) * 1000) / verifyRuns;
    };
    const incUs = verifyAll(inclusion, (p) => {
      verifyInclusion(p.leafIndex, p.treeSize, p.leafHash, p.proof, p.rootHash);
    });
    const avgLen = (proofs: readonly { proof: readonly Buffer[] }[]): number => round(proofs.reduce((s, p) => s + p.proof.length, 0) / proofs.length, 1);
    emit({
      bench: 'proof_inclusion_verify',
      value: round(incUs, 2),
      unit: 'µs/proof',
      treeSize: n,
      n: verifyRuns,
      avgProofHashes: avgLen(inclusion),
      goal: `<= ${PROOF_VERIFY_GOAL_US} µs`,
      pass: incUs <= PROOF_VERIFY_GOAL_US,
    });
    const conUs = verifyAll(consistency, (p) => {
      verifyConsistency(p.size1, p.size2, p.root1, p.root2, p.proof);
    });
    emit({
      bench: 'proof_consistency_verify',
      value: round(conUs, 2),
      unit: 'µs/proof',
      treeSize: n,
      n: verifyRuns,
      avgProofHashes: avgLen(consistency),
      goal: `<= ${PROOF_VERIFY_GOAL_US} µs`,
      pass: conUs <= PROOF_VERIFY_GOAL_US,
    });
  } finally {
    await store.close();
  }
}
