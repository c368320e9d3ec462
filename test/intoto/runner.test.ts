/**
 * The runner side: every attempt carries an in-toto link signed by the runner's key, kept in the
 * step's evidence, and an agent's report is refused when that link does not verify with the
 * agent's registered key or disagrees with the job and the reported outputs.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reportProblem } from '../../src/agents/index.js';
import type { JsonValue } from '../../src/audit/index.js';
import { inTotoKeyId, signMetablock, verifyMetablock } from '../../src/intoto/index.js';
import type { InTotoLink, Metablock } from '../../src/intoto/index.js';
import type { PipelineDefinition } from '../../src/pipeline/index.js';
import { executeStep } from '../../src/runner/index.js';
import type { LinkSigner, StepJob, StepResult } from '../../src/runner/index.js';
import { reportOf } from '../../src/runs/index.js';
import type { Job, StepReport } from '../../src/runs/index.js';
import { execute, honestRun, jobFor, pipeline, runnerKeys, scratch } from './support.js';
import type { Keys, Scratch } from './support.js';

let s: Scratch;
let p: PipelineDefinition;
let agent: Keys;
let honest: { build: StepResult; test: StepResult };
let testJob: StepJob;

beforeAll(async () => {
  s = await scratch();
  p = pipeline();
  agent = runnerKeys();
  honest = await honestRun(s, p, agent.signer);
  testJob = jobFor(p, 'test', 'check', [{ path: 'out.txt', digest: honest.build.outputs[0]!.digest }]);
});
afterAll(() => s.cleanup());

describe('executeStep signs an in-toto link', () => {
  it('with the runner key, from what the executor measured', () => {
    const block = honest.test.intotoLink;
    expect(verifyMetablock(block, agent.publicKey)).toEqual({ ok: true, keyid: inTotoKeyId(agent.publicKey) });
    const out = honest.build.outputs[0]!;
    expect(block.signed).toEqual({
      _type: 'link',
      name: 'test.check',
      command: ['/bin/sh', '-c', p.stages[1]!.steps[0]!.run],
      materials: { 'out.txt': { sha256: out.digest.slice(7) } },
      products: { 'report.txt': { sha256: honest.test.outputs[0]!.digest.slice(7) } },
      byproducts: { 'return-value': 0, stdout: honest.test.logs.stdout.streamDigest, stderr: honest.test.logs.stderr.streamDigest },
      environment: { 'airlock-run-id': 'run-1', 'airlock-attempt': 1 },
    });
    expect(honest.build.intotoLink.signed.products).toEqual({ 'out.txt': { sha256: out.digest.slice(7) } });
  });

  it('for a failed or refused attempt too (no products)', async () => {
    const failed = await execute(s, { ...jobFor(p, 'build', 'compile', []), command: 'echo partial > out.txt; exit 3' }, agent.signer);
    expect(failed.status).toBe('failed');
    expect(failed.intotoLink.signed).toMatchObject({ products: {}, byproducts: { 'return-value': 3 } });
    const refused = await execute(s, jobFor(p, 'test', 'check', [{ path: 'out.txt', digest: `sha256:${'9'.repeat(64)}` }]), agent.signer);
    expect(refused.status).toBe('refused');
    expect(verifyMetablock(refused.intotoLink, agent.publicKey).ok).toBe(true);
    expect(refused.intotoLink.signed.byproducts['return-value']).toBeNull();
  });

  it('refuses, before running anything, a signer without its Ed25519 public key', async () => {
    const bare = { keyid: agent.signer.keyid, sign: (d: Buffer) => agent.signer.sign(d) } as unknown as LinkSigner;
    await expect(executeStep(jobFor(p, 'build', 'compile', []), { blobs: s.blobs, workRoot: s.workRoot, signer: bare, onOutput: () => undefined, sandbox: 'off' })).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringMatching(/signer\.publicKey/) as unknown });
  });

  it('keeps the link in the step evidence', () => {
    const evidence = reportOf(honest.test).evidence as { intotoLink: unknown };
    expect(evidence.intotoLink).toEqual(JSON.parse(JSON.stringify(honest.test.intotoLink)));
  });
});

describe("an agent's report must carry a matching in-toto link signed by the agent's key", () => {
  const job = (): Job => ({
    stepId: '00000000-0000-4000-8000-000000000009',
    runId: testJob.runId,
    runNumber: 1,
    project: 'ship',
    pipeline: testJob.pipeline,
    stage: testJob.stage,
    step: testJob.step,
    attempt: testJob.attempt,
    commit: 'c'.repeat(40),
    ref: 'main',
    traceId: 't'.repeat(32),
    command: testJob.command,
    env: {},
    timeoutMs: testJob.timeoutMs,
    inputs: testJob.inputs,
    outputs: [...testJob.outputs],
    requires: {},
    network: false,
    environment: undefined,
    secrets: [],
  });
  /** The honest report with its in-toto link replaced. */
  const withLink = (intotoLink: unknown): StepReport => {
    const r = reportOf(honest.test);
    return { ...r, evidence: { ...(r.evidence as Record<string, JsonValue>), intotoLink: JSON.parse(JSON.stringify(intotoLink ?? null)) as JsonValue } };
  };
  const resigned = (edit: (l: InTotoLink) => unknown, signer: LinkSigner = agent.signer): Metablock<unknown> => signMetablock(edit(honest.test.intotoLink.signed), signer);

  it('accepts the honest report', () => {
    expect(reportProblem(job(), reportOf(honest.test), agent.publicKey)).toBeUndefined();
  });

  it('refuses a missing link, another key, and a signature forged under the agent key id', () => {
    expect(reportProblem(job(), withLink(undefined), agent.publicKey)).toBe('the in-toto link is missing');
    expect(reportProblem(job(), withLink(resigned((l) => l, runnerKeys().signer)), agent.publicKey)).toMatch(/^the in-toto link does not verify with the runner's key: no signature by key/);
    const rogue = generateKeyPairSync('ed25519').privateKey;
    const forged = { signatures: [{ keyid: inTotoKeyId(agent.publicKey), sig: sign(null, Buffer.from('{}'), rogue).toString('hex') }], signed: honest.test.intotoLink.signed };
    expect(reportProblem(job(), withLink(forged), agent.publicKey)).toMatch(/does not verify/);
  });

  it('refuses a link (even signed by the agent) whose materials, products, exit code, step, attempt or shape disagree', () => {
    const cases: [Metablock<unknown>, RegExp][] = [
      [resigned((l) => ({ ...l, materials: { 'out.txt': { sha256: '0'.repeat(64) } } })), /names other materials than the job inputs/],
      [resigned((l) => ({ ...l, products: {} })), /names other products than the reported outputs/],
      [resigned((l) => ({ ...l, byproducts: { ...l.byproducts, 'return-value': 1 } })), /disagree on the exit code/],
      [resigned((l) => ({ ...l, environment: { ...l.environment, 'airlock-attempt': 2 } })), /another run or attempt/],
      [resigned((l) => ({ ...l, command: ['/bin/sh', '-c', 'true'] })), /another command/],
      [resigned((l) => ({ ...l, extra: 'x' })), /malformed: fields must be exactly/],
      [JSON.parse(JSON.stringify(honest.build.intotoLink)) as Metablock<unknown>, /names step build\.compile, not test\.check/],
    ];
    for (const [block, reason] of cases) expect(reportProblem(job(), withLink(block), agent.publicKey), String(reason)).toMatch(reason);
  });
});
