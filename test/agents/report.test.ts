/** What an agent's report must prove before it counts: tampered reports are refused. */
import { describe, expect, it } from 'vitest';
import { reportProblem } from '../../src/agents/index.js';
import type { JsonValue } from '../../src/audit/index.js';
import { linkFor, signLinkMetablock } from '../../src/intoto/index.js';
import { LINK_TYPE, ed25519LinkSigner, signLink } from '../../src/runner/index.js';
import type { LinkRecord, StepStatus } from '../../src/runner/index.js';
import type { Job, StepReport } from '../../src/runs/index.js';
import { agentKeys } from './support.js';

const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;
const IN = `sha256:${'3'.repeat(64)}`;

const job: Job = {
  stepId: '00000000-0000-4000-8000-000000000001',
  runId: 'run-1',
  runNumber: 1,
  project: 'web',
  pipeline: 'web',
  stage: 'build',
  step: 'make',
  attempt: 2,
  commit: 'c'.repeat(40),
  ref: 'main',
  traceId: 't'.repeat(32),
  command: 'make',
  env: {},
  timeoutMs: 60_000,
  inputs: [{ path: 'in.txt', digest: IN }],
  outputs: ['out.txt'],
  requires: {},
  network: false,
  environment: undefined,
  secrets: [],
};

const keys = agentKeys();

function link(overrides: Partial<LinkRecord> = {}, status: StepStatus = 'succeeded', exitCode: number | null = 0): LinkRecord {
  return {
    _type: LINK_TYPE,
    pipeline: job.pipeline,
    runId: job.runId,
    stage: job.stage,
    step: job.step,
    attempt: job.attempt,
    command: job.command,
    materials: { 'in.txt': IN },
    products: { 'out.txt': D1 },
    byproducts: { exitCode, signal: null, status, stdoutDigest: D2, stderrDigest: D2, fingerprint: { os: 'linux', arch: 'x64', kernel: '6', tools: {}, envNames: [], sandbox: 'none', network: false } },
    startedAt: '2025-01-01T00:00:00.000Z',
    finishedAt: '2025-01-01T00:00:01.000Z',
    ...overrides,
  };
}

function report(record: LinkRecord | null, over: Partial<StepReport> = {}, signer = ed25519LinkSigner(keys.privateKey)): StepReport {
  // Both links, as the executor signs them: the Airlock DSSE link and the in-toto link (docs/intoto.md).
  const intotoLink = record === null ? null : signLinkMetablock(linkFor({ ...record, exitCode: record.byproducts.exitCode, stdoutDigest: record.byproducts.stdoutDigest, stderrDigest: record.byproducts.stderrDigest }), signer);
  const evidence = record === null ? null : (JSON.parse(JSON.stringify({ link: signLink(record, signer), intotoLink })) as JsonValue);
  return { status: 'succeeded', exitCode: 0, reason: undefined, outputs: [{ path: 'out.txt', digest: D1, size: 3 }], evidence, ...over };
}

describe('reportProblem', () => {
  it('accepts a success backed by a link signed with the agent key, for this attempt, with exactly these products', () => {
    expect(reportProblem(job, report(link()), keys.publicKey)).toBeUndefined();
  });

  it('refuses an output the link does not name, a different digest, or a dropped output', () => {
    expect(reportProblem(job, report(link(), { outputs: [{ path: 'out.txt', digest: D2, size: 3 }] }), keys.publicKey)).toMatch(/not the products/);
    expect(reportProblem(job, report(link(), { outputs: [] }), keys.publicKey)).toMatch(/not the products/);
    expect(reportProblem(job, report(link(), { outputs: [{ path: 'out.txt', digest: D1, size: 3 }, { path: 'out.txt', digest: D1, size: 3 }] }), keys.publicKey)).toMatch(/more than once/);
  });

  it('refuses a link of another attempt, step, command or inputs, and a status or exit code the link contradicts', () => {
    expect(reportProblem(job, report(link({ attempt: 1 })), keys.publicKey)).toMatch(/another step attempt/);
    expect(reportProblem(job, report(link({ runId: 'run-2' })), keys.publicKey)).toMatch(/another step attempt/);
    expect(reportProblem(job, report(link({ command: 'true' })), keys.publicKey)).toMatch(/another command/);
    expect(reportProblem(job, report(link({ materials: {} })), keys.publicKey)).toMatch(/other inputs/);
    // The step failed (the link says so) but the report claims success.
    expect(reportProblem(job, report(link({ products: { 'out.txt': D1 } }, 'failed', 1)), keys.publicKey)).toMatch(/link record says failed/);
    expect(reportProblem(job, report(link({}, 'succeeded', 0), { exitCode: 3 }), keys.publicKey)).toMatch(/exit code/);
  });

  it('refuses a link signed by another key, and a success with no link', () => {
    expect(reportProblem(job, report(link(), {}, ed25519LinkSigner(agentKeys().privateKey)), keys.publicKey)).toMatch(/does not verify/);
    expect(reportProblem(job, report(null), keys.publicKey)).toMatch(/must carry the signed link/);
    // A failure with no link and no outputs is an honest "could not run".
    expect(reportProblem(job, report(null, { status: 'failed', exitCode: null, outputs: [] }), keys.publicKey)).toBeUndefined();
    expect(reportProblem(job, report(null, { status: 'failed', exitCode: null }), keys.publicKey)).toMatch(/must carry the signed link/);
  });
});
