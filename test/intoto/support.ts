/**
 * Fixtures for the in-toto tests: a real two-stage run through the executor, and the reference
 * verifier (Debian's in-toto 1.3). A missing verifier is a failure, never a skip: CI installs it
 * (.ci/run), and a machine without it cannot claim the export interoperates.
 */
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { accessSync, constants, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobStore } from '../../src/artifacts/index.js';
import type { InTotoSigner } from '../../src/intoto/index.js';
import { parsePipeline } from '../../src/pipeline/index.js';
import type { PipelineDefinition } from '../../src/pipeline/index.js';
import { ed25519LinkSigner, executeStep } from '../../src/runner/index.js';
import type { LinkSigner, StepJob, StepResult } from '../../src/runner/index.js';

/** The executable on PATH, or undefined. */
export function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

const MISSING = 'in-toto-verify is not installed: apt-get install -y in-toto (Debian in-toto 1.3); these tests never skip';

export function inTotoVerifyPath(): string {
  const path = onPath('in-toto-verify');
  if (path === undefined) throw new Error(MISSING);
  return path;
}

/** The Python interpreter the in-toto scripts run under (their shebang): it has securesystemslib. */
export function inTotoPython(): string {
  const first = readFileSync(inTotoVerifyPath(), 'utf8').split('\n')[0] ?? '';
  const m = /^#!\s*(\S+)(?:\s+(\S+))?/.exec(first);
  if (m?.[1] === undefined) throw new Error(`cannot find the interpreter of ${inTotoVerifyPath()}`);
  return m[1].endsWith('/env') && m[2] !== undefined ? m[2] : m[1];
}

export interface Verdict {
  readonly code: number | null;
  readonly output: string;
}

/** `in-toto-verify` over an export in `dir`, with in-toto 1.3's flags. */
export function inTotoVerify(dir: string, layoutKey = 'layout.pub'): Verdict {
  const r = spawnSync(inTotoVerifyPath(), ['--layout', 'root.layout', '--layout-keys', layoutKey, '--key-types', 'ed25519', '--link-dir', dir, '--verbose'], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  if (r.error !== undefined) throw r.error;
  return { code: r.status, output: `${r.stdout}${r.stderr}` };
}

export const PIPELINE = `version: 1
pipeline: ship
owners: [alice]
stages:
  build:
    steps:
      - name: compile
        run: echo "hello $((6*7))" > out.txt
        outputs: [out.txt]
  test:
    needs: [build]
    steps:
      - name: check
        run: grep -q 'hello 42' out.txt && sha256sum out.txt > report.txt
        inputs: [out.txt]
        outputs: [report.txt]
`;

export function pipeline(): PipelineDefinition {
  return parsePipeline(PIPELINE);
}

export interface Keys {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly signer: LinkSigner;
}

export function runnerKeys(): Keys {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey, signer: ed25519LinkSigner(privateKey) };
}

export function projectSigner(): InTotoSigner & { readonly privateKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey, sign: (data) => ed25519LinkSigner(privateKey).sign(data) };
}

export interface Scratch {
  readonly dir: string;
  readonly blobs: BlobStore;
  readonly workRoot: string;
  cleanup(): Promise<void>;
}

export async function scratch(): Promise<Scratch> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-intoto-'));
  return { dir, blobs: new BlobStore(join(dir, 'artifacts')), workRoot: join(dir, 'work'), cleanup: () => rm(dir, { recursive: true, force: true }) };
}

let seq = 0;

/** The job the scheduler would hand out for `stage/step` of PIPELINE. */
export function jobFor(p: PipelineDefinition, stage: string, step: string, inputs: StepJob['inputs'], runId = 'run-1', attempt = 1): StepJob {
  const def = p.stages.find((s) => s.name === stage)?.steps.find((s) => s.name === step);
  if (def === undefined) throw new Error(`no step ${stage}/${step}`);
  seq += 1;
  return {
    jobId: `intoto-${seq}`,
    runId,
    pipeline: p.name,
    stage,
    step,
    attempt,
    command: def.run,
    env: {},
    timeoutMs: 30_000,
    source: { kind: 'none' },
    inputs,
    outputs: [...def.outputs],
    requires: {},
    network: false,
  };
}

export async function execute(s: Scratch, job: StepJob, signer: LinkSigner): Promise<StepResult> {
  return executeStep(job, { blobs: s.blobs, workRoot: s.workRoot, signer, onOutput: () => undefined, sandbox: 'off' });
}

/** The honest run: build, then test consuming build's out.txt by its recorded digest. */
export async function honestRun(s: Scratch, p: PipelineDefinition, signer: LinkSigner): Promise<{ build: StepResult; test: StepResult }> {
  const build = await execute(s, jobFor(p, 'build', 'compile', []), signer);
  if (build.status !== 'succeeded') throw new Error(`build failed: ${build.reason ?? ''}`);
  const out = build.outputs.find((o) => o.path === 'out.txt');
  if (out === undefined) throw new Error('build produced no out.txt');
  const test = await execute(s, jobFor(p, 'test', 'check', [{ path: 'out.txt', digest: out.digest }]), signer);
  if (test.status !== 'succeeded') throw new Error(`test failed: ${test.reason ?? ''}`);
  return { build, test };
}
