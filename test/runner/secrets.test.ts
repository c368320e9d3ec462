/**
 * Secrets released to a step: injected as env or 0400 files, removed when the step ends, and
 * masked in every form in both the streamed and the stored output.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/artifacts/index.js';
import { ed25519LinkSigner, executeStep } from '../../src/runner/index.js';
import type { StepJob } from '../../src/runner/index.js';

const signer = ed25519LinkSigner(generateKeyPairSync('ed25519').privateKey);
const SECRET = 'hunter2-Zq8pL0vX-s3cr3t';

describe('secrets in a step', () => {
  let dir: string;
  let blobs: BlobStore;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-secrets-step-'));
    blobs = new BlobStore(join(dir, 'artifacts'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function run(command: string, secrets: StepJob['secrets']) {
    const out: Buffer[] = [];
    const result = await executeStep(
      { jobId: `j-${Math.random().toString(36).slice(2)}`, runId: 'r', pipeline: 'p', stage: 's', step: 't', attempt: 1, command, env: {}, timeoutMs: 20_000, source: { kind: 'none' }, inputs: [], outputs: [], requires: {}, network: false, secrets },
      { blobs, workRoot: join(dir, 'work'), signer, sandbox: 'auto', onOutput: (_s, c) => out.push(c) },
    );
    const stored = result.logs.stdout.digest === null ? Buffer.alloc(0) : await blobs.readVerified(result.logs.stdout.digest);
    return { result, streamed: Buffer.concat(out).toString('utf8'), stored: stored.toString('utf8') };
  }

  it('injects an env secret and masks it (plain, base64, hex, URL- and JSON-encoded) in streamed and stored output', async () => {
    const cmd = [
      'echo "plain=$DB_PASSWORD"',
      'printf %s "$DB_PASSWORD" | base64',
      'printf %s "$DB_PASSWORD" | od -An -tx1 | tr -d " \\n"; echo',
      'printf "{\\"p\\":\\"%s\\"}\\n" "$DB_PASSWORD"',
    ].join('; ');
    const { result, streamed, stored } = await run(cmd, [{ name: 'DB_PASSWORD', value: Buffer.from(SECRET), as: 'env' }]);
    expect(result.status).toBe('succeeded');
    for (const text of [streamed, stored]) {
      expect(text).toContain('plain=***');
      for (const form of [SECRET, Buffer.from(SECRET).toString('base64'), Buffer.from(SECRET).toString('hex')]) expect(text).not.toContain(form);
    }
    expect(result.fingerprint.envNames).toContain('DB_PASSWORD');
    expect(JSON.stringify(result)).not.toContain(SECRET);
  });

  it('places a file secret at <NAME>_FILE with mode 0400 and removes it with the workspace', async () => {
    const { result, streamed } = await run('stat -c %a "$TLS_KEY_FILE"; wc -c < "$TLS_KEY_FILE"; echo "$TLS_KEY_FILE"', [{ name: 'TLS_KEY', value: Buffer.from(`-----BEGIN KEY-----\n${SECRET}\n-----END KEY-----\n`), as: 'file' }]);
    expect(result.status).toBe('succeeded');
    const [mode, size, path] = streamed.trim().split('\n');
    expect(mode).toBe('400');
    expect(Number(size)).toBe(SECRET.length + 39);
    const { existsSync } = await import('node:fs');
    expect(existsSync(path!)).toBe(false);
  });
});
