/**
 * File secrets (`as: file`): a 0400 file at `<NAME>_FILE` the step can read, masked in its
 * output, and unlinked when the step ends however it ends, even when the workspace itself
 * cannot be removed. `.secrets/` is reserved: not planted by the source, never an output.
 */
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/artifacts/index.js';
import type { BlobStoreLike } from '../../src/artifacts/index.js';
import { ed25519LinkSigner, executeStep } from '../../src/runner/index.js';
import type { StepJob, StepResult } from '../../src/runner/index.js';
import { SANDBOX_MODES } from '../support/sandbox.js';

const signer = ed25519LinkSigner(generateKeyPairSync('ed25519').privateKey);
const KEY = `-----BEGIN KEY-----\nQm9ndXMta2V5LWZvci10ZXN0cw-Zq8pL0vX\n-----END KEY-----\n`;
const BODY = 'Qm9ndXMta2V5LWZvci10ZXN0cw-Zq8pL0vX';
const PASSWORD = 'Tr4v3rs3-p4ss-Wd91';

const MODES = SANDBOX_MODES;

let dir: string;
let blobs: BlobStore;
let workRoot: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-secret-files-'));
  blobs = new BlobStore(join(dir, 'artifacts'));
  workRoot = join(dir, 'work');
});
afterAll(async () => {
  // Undo any immutable flag a test left, so the scratch directory can go.
  execFileSync('chattr', ['-R', '-i', dir], { stdio: 'ignore' });
  await rm(dir, { recursive: true, force: true });
});

let seq = 0;
function job(command: string, over: Partial<StepJob> = {}): StepJob {
  seq += 1;
  return {
    jobId: `sf-${seq}`,
    runId: 'r',
    pipeline: 'p',
    stage: 's',
    step: 't',
    attempt: 1,
    command,
    env: {},
    timeoutMs: 20_000,
    source: { kind: 'none' },
    inputs: [],
    outputs: [],
    requires: {},
    network: false,
    secrets: [
      { name: 'TLS_KEY', value: Buffer.from(KEY), as: 'file' },
      { name: 'DB_PASSWORD', value: Buffer.from(PASSWORD), as: 'env' },
    ],
    ...over,
  };
}

async function run(j: StepJob, sandbox: 'off' | 'auto', opts: { signal?: AbortSignal; onLine?: (text: string) => void } = {}): Promise<{ result: StepResult; streamed: string; stored: string }> {
  let streamed = '';
  const result = await executeStep(j, {
    blobs,
    workRoot,
    signer,
    sandbox,
    killGraceMs: 200,
    signal: opts.signal,
    onOutput: (_s, c) => {
      streamed += c.toString('utf8');
      opts.onLine?.(streamed);
    },
  });
  const stored = result.logs.stdout.digest === null ? '' : (await blobs.readVerified(result.logs.stdout.digest)).toString('utf8');
  return { result, streamed, stored };
}

/** The `path=` line a step printed. */
const printedPath = (text: string): string => {
  const path = /^path=(.+)$/m.exec(text)?.[1];
  expect(path).toBeDefined();
  return path!;
};

describe.each(MODES)('file secrets (sandbox %s)', (sandbox) => {
  it('arrive at <NAME>_FILE with mode 0400 under .secrets/, readable by the step and masked in its output', async () => {
    const { result, streamed, stored } = await run(
      job('echo "path=$TLS_KEY_FILE"; echo "mode=$(stat -c %a "$TLS_KEY_FILE")"; echo "dir=$(stat -c %a "$(dirname "$TLS_KEY_FILE")")"; cat "$TLS_KEY_FILE"; echo "sha=$(sha256sum < "$TLS_KEY_FILE" | cut -c1-64)"; echo "env=${TLS_KEY:-unset} pw=$DB_PASSWORD"'),
      sandbox,
    );
    expect(result.status, result.reason).toBe('succeeded');
    const path = printedPath(streamed);
    expect(path).toMatch(/\/sf-\d+-[0-9a-f]{16}\/\.secrets\/TLS_KEY$/);
    expect(streamed).toContain('mode=400');
    expect(streamed).toContain('dir=700');
    // The step read exactly the value (its digest is not the value, so it is not masked).
    expect(streamed).toContain(`sha=${createHash('sha256').update(KEY).digest('hex')}`);
    // The file form does not also put the value in the environment; the env form does.
    expect(streamed).toContain('env=unset pw=***');
    for (const text of [streamed, stored]) {
      expect(text).toMatch(/^\*\*\*sha=/m); // `cat` of the whole file, its final newline included
      expect(text).not.toContain(BODY);
      expect(text).not.toContain(PASSWORD);
    }
    expect(result.fingerprint.envNames).toEqual(expect.arrayContaining(['TLS_KEY_FILE', 'DB_PASSWORD']));
    expect(result.fingerprint.envNames).not.toContain('TLS_KEY');
    expect(existsSync(path)).toBe(false);
    expect(JSON.stringify(result)).not.toContain(BODY);
  });

  it('are gone after a failing step', async () => {
    const { result, streamed } = await run(job('echo "path=$TLS_KEY_FILE"; test -r "$TLS_KEY_FILE" && exit 3'), sandbox);
    expect(result.status).toBe('failed');
    expect(result.reason).toMatch(/exited with code 3/);
    expect(existsSync(printedPath(streamed))).toBe(false);
  });

  it('are gone after a step that timed out', async () => {
    const { result, streamed } = await run(job('echo "path=$TLS_KEY_FILE"; sleep 30', { timeoutMs: 500 }), sandbox);
    expect(result.status).toBe('timed_out');
    expect(existsSync(printedPath(streamed))).toBe(false);
  });

  it('are gone after a cancelled step', async () => {
    const controller = new AbortController();
    const { result, streamed } = await run(job('echo "path=$TLS_KEY_FILE"; sleep 30'), sandbox, {
      signal: controller.signal,
      onLine: (text) => {
        if (text.includes('path=')) controller.abort();
      },
    });
    expect(result.status).toBe('cancelled');
    expect(existsSync(printedPath(streamed))).toBe(false);
  });
});

describe('file secrets outlive nothing', () => {
  it('are unlinked as soon as the process ends, before outputs are read and independently of the workspace removal', async () => {
    // A store that looks at the workspace at the moment the output is collected.
    let streamed = '';
    const seen: { secret: boolean; workspace: boolean }[] = [];
    const spy: BlobStoreLike = {
      put: (source) => {
        const path = /^path=(.+)$/m.exec(streamed)?.[1];
        if (path !== undefined) seen.push({ secret: existsSync(path), workspace: existsSync(join(path, '..', '..', 'report.txt')) });
        return blobs.put(source);
      },
      open: (digest) => blobs.open(digest),
      has: (digest) => blobs.has(digest),
    };
    const result = await executeStep(job('echo "path=$TLS_KEY_FILE"; echo done > report.txt', { outputs: ['report.txt'] }), {
      blobs: spy,
      workRoot,
      signer,
      sandbox: 'off',
      onOutput: (_s, c) => {
        streamed += c.toString('utf8');
      },
    });
    expect(result.status, result.reason).toBe('succeeded');
    expect(result.outputs.map((o) => o.path)).toEqual(['report.txt']);
    expect(seen).toEqual([{ secret: false, workspace: true }]);
  });

  it('a step that pins its secret file is reported failed, never clean', async () => {
    const { result, streamed } = await run(job('echo "path=$TLS_KEY_FILE"; chattr +i "$TLS_KEY_FILE"'), 'off');
    const path = printedPath(streamed);
    expect(existsSync(path)).toBe(true);
    expect(result.status).toBe('failed');
    expect(result.reason).toMatch(/secret files in \.secrets\/ could not be removed/);
    execFileSync('chattr', ['-i', path]);
    await rm(join(path, '..', '..'), { recursive: true, force: true });
  });

  it('does not follow a .secrets the step replaced with a link when cleaning up', async () => {
    const victim = join(dir, 'victim');
    await mkdir(victim, { recursive: true });
    await writeFile(join(victim, 'TLS_KEY'), 'host file');
    const { result } = await run(job(`mv .secrets .moved && ln -s ${victim} .secrets`), 'off');
    expect(result.status, result.reason).toBe('succeeded');
    expect(await readFile(join(victim, 'TLS_KEY'), 'utf8')).toBe('host file');
  });

  it('refuses an output or input under .secrets/ before anything runs', async () => {
    const out = await run(job('cp "$TLS_KEY_FILE" .secrets/copy', { outputs: ['.secrets/copy'] }), 'off');
    expect(out.result.status).toBe('refused');
    expect(out.result.reason).toMatch(/output \.secrets\/copy: \.secrets\/ is reserved for secret files/);
    expect(out.result.outputs).toEqual([]);
    expect(out.streamed).toBe('');
    const input = await run(job('true', { inputs: [{ path: '.secrets/TLS_KEY', digest: `sha256:${'0'.repeat(64)}` }] }), 'off');
    expect(input.result.status).toBe('refused');
    expect(input.result.reason).toMatch(/input \.secrets\/TLS_KEY/);
  });

  it('refuses a source tree that already has .secrets (it could pre-plant or replace the files)', async () => {
    const source = join(dir, 'source-with-secrets');
    await mkdir(join(source, '.secrets'), { recursive: true });
    await writeFile(join(source, '.secrets', 'TLS_KEY'), 'planted');
    const { result, streamed } = await run(job('cat "$TLS_KEY_FILE"', { source: { kind: 'dir', path: source } }), 'off');
    expect(result.status).toBe('refused');
    expect(result.reason).toMatch(/source tree has a \.secrets entry/);
    expect(streamed).toBe('');
  });

  it('refuses secrets that would replace a variable the runner sets, or set one variable twice', async () => {
    const home = await run(job('echo "$HOME"', { secrets: [{ name: 'HOME', value: Buffer.from('/attacker'), as: 'env' }] }), 'off');
    expect(home.result.status).toBe('refused');
    expect(home.result.reason).toMatch(/would replace HOME/);
    const clash = await run(job('true', { secrets: [{ name: 'TLS_KEY', value: Buffer.from('a'), as: 'file' }, { name: 'TLS_KEY_FILE', value: Buffer.from('/etc/shadow'), as: 'env' }] }), 'off');
    expect(clash.result.status).toBe('refused');
    expect(clash.result.reason).toMatch(/two secrets would set TLS_KEY_FILE/);
  });
});
