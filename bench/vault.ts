/**
 * Vault figures: envelope encryption and decryption of one secret value, the crypto path of
 * `Vault.encrypt` / `Vault.decrypt` without the database (a fresh 256-bit data key, AES-256-GCM
 * of the value, AES-256-GCM wrap of the data key under a KEK; and the reverse). The value is
 * 64 bytes (a typical token); a 4 KiB value (a certificate, a small file) is shown beside it.
 * Also the audit hash (HMAC-SHA256) that every secret read records.
 */
import { createHmac, createSecretKey, randomBytes } from 'node:crypto';
import { newKek, openEnvelope, sealEnvelope, secretContext } from '../src/vault/envelope.js';
import type { Envelope } from '../src/vault/envelope.js';
import { QUICK, Samples, emit, now, progress, round, timeLoop } from './lib.js';

const GOAL_OPS_PER_S = 10_000;

/** Lets queued IPC messages (the emitted lines) go out between CPU-bound figures. */
const breathe = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Ops/s and per-op latency of `op` over about `ms`, after a warm-up. */
function measure(ms: number, op: (i: number) => void): { opsPerS: number; n: number; p50: number; p99: number } {
  let i = 0;
  timeLoop(Math.min(300, ms / 4), () => op(i++), 100); // warm-up (JIT)
  const t = timeLoop(ms, () => op(i++), 100);
  // Latency on a separate, shorter pass, so timing each call does not slow the throughput figure.
  const samples = new Samples();
  for (let k = 0; k < 5_000; k++) {
    const t0 = now();
    op(i++);
    samples.push(now() - t0);
  }
  const s = samples.summary();
  return { opsPerS: Math.round(t.iterations / t.elapsedS), n: t.iterations, p50: s.p50, p99: s.p99 };
}

export async function benchVault(): Promise<void> {
  const ms = QUICK ? 500 : 3000;
  const { kek } = newKek();
  const scope = 'project:payments/env:production';

  for (const size of [64, 4096]) {
    const value = randomBytes(size);
    progress(`vault: envelope encrypt, ${size}-byte value`);
    const enc = measure(ms, (i) => sealEnvelope(kek, secretContext(`sec-${i & 1023}`, 1, scope), value));
    emit({
      bench: size === 64 ? 'vault_envelope_encrypt' : 'vault_envelope_encrypt_4k',
      value: enc.opsPerS,
      unit: 'ops/s',
      valueBytes: size,
      n: enc.n,
      p50Ms: enc.p50,
      p99Ms: enc.p99,
      api: 'sealEnvelope: random DEK + AES-256-GCM value + AES-256-GCM DEK wrap (Vault.encrypt without the active-KEK read)',
      goal: `>= ${GOAL_OPS_PER_S} ops/s`,
      pass: enc.opsPerS >= GOAL_OPS_PER_S,
    });

    await breathe();
    // 1024 distinct envelopes, decrypted round-robin: each call unwraps a data key and opens a value.
    const envelopes: Envelope[] = Array.from({ length: 1024 }, (_, k) => sealEnvelope(kek, secretContext(`sec-${k}`, 1, scope), value));
    progress(`vault: envelope decrypt, ${size}-byte value`);
    const dec = measure(ms, (i) => {
      const k = i & 1023;
      const out = openEnvelope(kek, secretContext(`sec-${k}`, 1, scope), envelopes[k]!);
      if (out.length !== size) throw new Error('decrypted value has the wrong length');
    });
    emit({
      bench: size === 64 ? 'vault_envelope_decrypt' : 'vault_envelope_decrypt_4k',
      value: dec.opsPerS,
      unit: 'ops/s',
      valueBytes: size,
      n: dec.n,
      p50Ms: dec.p50,
      p99Ms: dec.p99,
      api: 'openEnvelope: AES-256-GCM DEK unwrap + AES-256-GCM value (Vault.decrypt without the row read)',
      goal: `>= ${GOAL_OPS_PER_S} ops/s`,
      pass: dec.opsPerS >= GOAL_OPS_PER_S,
    });
  }

  await breathe();
  progress('vault: audit hash (HMAC-SHA256) of a 64-byte value');
  const hmacKey = createSecretKey(randomBytes(32));
  const value = randomBytes(64);
  const h = measure(ms, () => createHmac('sha256', hmacKey).update(value).digest('hex'));
  emit({ bench: 'vault_audit_hash', value: h.opsPerS, unit: 'ops/s', valueBytes: 64, n: h.n, p50Ms: h.p50, p99Ms: h.p99, api: 'createHmac sha256 (Vault.auditHash)' });
  progress(`vault: done (${round(ms / 1000, 1)} s per figure)`);
}
