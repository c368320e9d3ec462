/**
 * Figure 1: what this machine can do at all, measured in the same run as the log figures so
 * that they can be read relative to it: SHA-256 throughput and the single-commit fsync rate.
 */
import { execFileSync } from 'node:child_process';
import { createHash, hash as oneShotHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { QUICK, emit, progress, round, timeLoop, timedCommits } from './lib.js';

/** Which code was measured: HEAD, plus "+dirty" when src/ has uncommitted changes. */
function revision(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
    return dirty ? `${head}+dirty` : head;
  } catch {
    return 'unknown';
  }
}

export async function referenceFigures(dir: string): Promise<void> {
  const hashMs = QUICK ? 500 : 2000;
  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', node: process.version, rev: revision() };

  progress('reference: SHA-256 on 1 MiB buffers');
  const mib = randomBytes(1024 * 1024);
  timeLoop(200, () => createHash('sha256').update(mib).digest()); // warm-up
  const big = timeLoop(hashMs, () => createHash('sha256').update(mib).digest());
  emit({
    bench: 'ref_sha256_1mib',
    value: round((big.iterations * mib.length) / 1e6 / big.elapsedS, 1),
    unit: 'MB/s',
    bufferBytes: mib.length,
    durationS: round(big.elapsedS, 2),
    api: 'createHash',
    ...machine,
  });

  progress('reference: SHA-256 on 65-byte inputs (the size of an interior node: 0x01 || left || right)');
  const small = randomBytes(65);
  timeLoop(200, () => createHash('sha256').update(small).digest(), 100);
  const s = timeLoop(hashMs, () => createHash('sha256').update(small).digest(), 100);
  emit({
    bench: 'ref_sha256_65b',
    value: Math.round(s.iterations / s.elapsedS),
    unit: 'hashes/s',
    inputBytes: 65,
    durationS: round(s.elapsedS, 2),
    api: 'createHash',
  });
  // The one-shot API (Node >= 20.12) skips the Hash object; shown for the hot-path comparison.
  timeLoop(200, () => oneShotHash('sha256', small, 'buffer'), 100);
  const o = timeLoop(hashMs, () => oneShotHash('sha256', small, 'buffer'), 100);
  emit({
    bench: 'ref_sha256_65b_oneshot',
    value: Math.round(o.iterations / o.elapsedS),
    unit: 'hashes/s',
    inputBytes: 65,
    durationS: round(o.elapsedS, 2),
    api: 'crypto.hash',
  });

  progress('reference: write 100 bytes + fsync, in a loop');
  const file = join(dir, 'fsync-probe.bin');
  const fd = openSync(file, 'w');
  const payload = randomBytes(100);
  try {
    const { latency: lat, seconds } = await timedCommits(QUICK ? 1000 : 3000, () => {
      writeSync(fd, payload);
      fsyncSync(fd);
    });
    const sum = lat.summary();
    emit({
      bench: 'ref_fsync_commit',
      value: Math.round(lat.count / seconds),
      unit: 'commits/s',
      n: lat.count,
      durationS: round(seconds, 2),
      p50: sum.p50,
      p99: sum.p99,
      latencyUnit: 'ms',
      method: 'append 100 B + fsync',
    });
  } finally {
    closeSync(fd);
    unlinkSync(file);
  }
}
