/**
 * The export against the reference verifier: `in-toto-verify` (Debian in-toto 1.3) accepts an
 * honest run built by the real executor, and rejects a swapped artifact, a link by a key the
 * layout does not authorise, a forged signature, and a tampered, expired or wrongly keyed layout.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Digest } from '../../src/artifacts/index.js';
import { exportInToto, inTotoKeyId, inTotoPublicKey, signMetablock, writeExport } from '../../src/intoto/index.js';
import type { ExportStep, InTotoLink, Metablock } from '../../src/intoto/index.js';
import { parsePipeline } from '../../src/pipeline/index.js';
import type { PipelineDefinition } from '../../src/pipeline/index.js';
import type { StepResult } from '../../src/runner/index.js';
import { PIPELINE, execute, honestRun, inTotoVerify, inTotoVerifyPath, jobFor, pipeline, projectSigner, runnerKeys, scratch } from './support.js';
import type { Keys, Scratch } from './support.js';

let s: Scratch;
let p: PipelineDefinition;
let runner: Keys;
let project: ReturnType<typeof projectSigner>;
let honest: { build: StepResult; test: StepResult };
const dirs: string[] = [];

beforeAll(async () => {
  s = await scratch();
  p = pipeline();
  runner = runnerKeys();
  project = projectSigner();
  honest = await honestRun(s, p, runner.signer);
});

afterAll(async () => {
  await s.cleanup();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const steps = (build: unknown, test: unknown): ExportStep[] => [
  { stage: 'build', step: 'compile', link: build },
  { stage: 'test', step: 'check', link: test },
];

/** Export and write into a fresh directory. */
async function exported(links: ExportStep[], opts: { functionaries?: Parameters<typeof exportInToto>[0]['functionaries']; now?: Date } = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-intoto-export-'));
  dirs.push(dir);
  const { files } = exportInToto({ pipeline: p, steps: links, functionaries: opts.functionaries ?? [runner.publicKey], layoutSigner: project, now: opts.now ?? new Date(), runId: 'run-1' });
  await writeExport(dir, files);
  return dir;
}

const asJson = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;

describe('in-toto-verify over an Airlock export', () => {
  it('the reference verifier is installed (apt-get install -y in-toto)', () => {
    expect(inTotoVerifyPath()).toMatch(/in-toto-verify$/);
  });

  it('accepts an honest two-stage run', async () => {
    const dir = await exported(steps(asJson(honest.build.intotoLink), asJson(honest.test.intotoLink)));
    const keyid = inTotoKeyId(runner.publicKey).slice(0, 8);
    expect((await readdir(dir)).sort()).toEqual([`build.compile.${keyid}.link`, 'layout.pub', 'root.layout', `test.check.${keyid}.link`]);
    const verdict = inTotoVerify(dir);
    expect(verdict.output).toMatch(/passed all verification/);
    expect(verdict.code).toBe(0);
  });

  it('rejects a consumer whose material differs from the producer product, even re-signed by the legitimate runner key', async () => {
    const forged: Metablock<InTotoLink> = asJson(honest.test.intotoLink);
    const swapped = { ...forged.signed, materials: { 'out.txt': { sha256: sha256Digest(Buffer.from('evil\n')).slice(7) } } };
    const dir = await exported(steps(asJson(honest.build.intotoLink), signMetablock(swapped, runner.signer)));
    const verdict = inTotoVerify(dir);
    expect(verdict.code).toBe(1);
    expect(verdict.output).toMatch(/DISALLOW \*' matched the following artifacts: \['out\.txt'\]/);
  });

  it('rejects a run where the consumer really executed on a swapped artifact', async () => {
    const evil = await s.blobs.put(Buffer.from('hello 42 (not what build made)\n'));
    const test = await execute(s, jobFor(p, 'test', 'check', [{ path: 'out.txt', digest: evil.digest }]), runner.signer);
    expect(test.status).toBe('succeeded'); // the step itself cannot tell
    const dir = await exported(steps(asJson(honest.build.intotoLink), asJson(test.intotoLink)));
    const verdict = inTotoVerify(dir);
    expect(verdict.code).toBe(1);
    expect(verdict.output).toMatch(/RuleVerificationError/);
  });

  it('rejects a producer whose product was swapped after the consumer used it', async () => {
    const forged: Metablock<InTotoLink> = asJson(honest.build.intotoLink);
    const swapped = { ...forged.signed, products: { 'out.txt': { sha256: '0'.repeat(64) } } };
    const verdict = inTotoVerify(await exported(steps(signMetablock(swapped, runner.signer), asJson(honest.test.intotoLink))));
    expect(verdict.code).toBe(1);
    expect(verdict.output).toMatch(/DISALLOW/);
  });

  it('rejects a link signed by a runner key the layout does not list', async () => {
    const rogue = runnerKeys();
    const test = await execute(s, jobFor(p, 'test', 'check', [{ path: 'out.txt', digest: honest.build.outputs[0]!.digest }]), rogue.signer);
    const verdict = inTotoVerify(await exported(steps(asJson(honest.build.intotoLink), asJson(test.intotoLink))));
    expect(verdict.code).toBe(1);
    expect(verdict.output).toMatch(/Step 'test\.check' requires '1' link metadata file\(s\), found '0'/);
  });

  it('rejects an unauthorised link filed under an authorised key id, and a signature forged under that key id', async () => {
    const rogue = runnerKeys();
    const rogueLink = signMetablock(asJson(honest.test.intotoLink).signed, rogue.signer);
    const dir = await exported(steps(asJson(honest.build.intotoLink), asJson(honest.test.intotoLink)));
    const linkFile = join(dir, `test.check.${inTotoKeyId(runner.publicKey).slice(0, 8)}.link`);
    writeFileSync(linkFile, JSON.stringify(rogueLink));
    let verdict = inTotoVerify(dir);
    expect(verdict.code).toBe(1);
    expect(verdict.output).toMatch(/ThresholdVerificationError|requires at least '1' links validly signed/);
    // The rogue signature, relabelled with the authorised key id.
    writeFileSync(linkFile, JSON.stringify({ ...rogueLink, signatures: [{ keyid: inTotoKeyId(runner.publicKey), sig: rogueLink.signatures[0]!.sig }] }));
    verdict = inTotoVerify(dir);
    expect(verdict.code).toBe(1);
    expect(verdict.output).toMatch(/requires at least '1' links validly signed/);
  });

  it('rejects a link edited after signing (a product added)', async () => {
    const dir = await exported(steps(asJson(honest.build.intotoLink), asJson(honest.test.intotoLink)));
    const file = join(dir, `build.compile.${inTotoKeyId(runner.publicKey).slice(0, 8)}.link`);
    const block = JSON.parse(readFileSync(file, 'utf8')) as { signed: { products: Record<string, unknown> } };
    block.signed.products['extra.bin'] = { sha256: '1'.repeat(64) };
    writeFileSync(file, JSON.stringify(block));
    expect(inTotoVerify(dir).code).toBe(1);
  });

  it('rejects a layout edited after signing, one verified with another key, and an expired one', async () => {
    let dir = await exported(steps(asJson(honest.build.intotoLink), asJson(honest.test.intotoLink)));
    const layoutFile = join(dir, 'root.layout');
    const root = JSON.parse(readFileSync(layoutFile, 'utf8')) as { signed: { steps: { expected_materials: string[][] }[] } };
    root.signed.steps[1]!.expected_materials = [['ALLOW', '*']]; // loosen the rules
    writeFileSync(layoutFile, JSON.stringify(root));
    let verdict = inTotoVerify(dir);
    expect(verdict.code).toBe(1);
    expect(verdict.output).toMatch(/SignatureVerificationError|Invalid signature/);

    dir = await exported(steps(asJson(honest.build.intotoLink), asJson(honest.test.intotoLink)));
    writeFileSync(join(dir, 'other.pub'), JSON.stringify(inTotoPublicKey(runner.publicKey)));
    verdict = inTotoVerify(dir, 'other.pub');
    expect(verdict.code).toBe(1);
    expect(verdict.output).toMatch(/No signature found for key/);

    dir = await exported(steps(asJson(honest.build.intotoLink), asJson(honest.test.intotoLink)), { now: new Date(Date.now() - 400 * 24 * 3600 * 1000) });
    verdict = inTotoVerify(dir);
    expect(verdict.code).toBe(1);
    expect(verdict.output).toMatch(/Layout expired/);
  });

  it('authorises per runs-on label: only a key with the step\'s labels may perform it', async () => {
    // The same pipeline with the test step pinned to gpu runners.
    const pinned = parsePipeline(PIPELINE.replace("        inputs: [out.txt]\n", "        inputs: [out.txt]\n        runs-on: [gpu]\n"));
    const gpu = runnerKeys();
    const functionaries = [{ key: runner.publicKey, labels: ['linux'] }, { key: gpu.publicKey, labels: ['linux', 'gpu'] }];
    const input = [{ path: 'out.txt', digest: honest.build.outputs[0]!.digest }];
    const onGpu = await execute(s, jobFor(pinned, 'test', 'check', input), gpu.signer);
    const onLinux = await execute(s, jobFor(pinned, 'test', 'check', input), runner.signer);
    const dirFor = async (test: StepResult): Promise<string> => {
      const dir = await mkdtemp(join(tmpdir(), 'airlock-intoto-export-'));
      dirs.push(dir);
      const { files } = exportInToto({ pipeline: pinned, steps: steps(asJson(honest.build.intotoLink), asJson(test.intotoLink)), functionaries, layoutSigner: project, now: new Date(), runId: 'run-1' });
      await writeExport(dir, files);
      return dir;
    };
    expect(inTotoVerify(await dirFor(onGpu)).code).toBe(0);
    const verdict = inTotoVerify(await dirFor(onLinux));
    expect(verdict.code).toBe(1);
    expect(verdict.output).toMatch(/Step 'test\.check' requires '1' link metadata file/);
  });
});
