/** Shared builders for the delivery decision tests. */
import type { Approval, ApprovalRequest, ApprovalRules } from '../../src/delivery/approvals.js';
import { bindingDigest } from '../../src/delivery/binding.js';
import type { DeploymentBinding } from '../../src/delivery/binding.js';
import type { Person } from '../../src/delivery/people.js';
import { Deployments } from '../../src/delivery/index.js';
import type { DeliveryFacts, DeployerPort, DeploymentsDeps } from '../../src/delivery/index.js';
import type { TestApp } from '../server/support.js';

export const HOUR = 3_600_000;
export const NOW = Date.parse('2025-06-02T10:00:00Z');

export const hex = (c: string): string => c.repeat(64);
export const sha = (c: string): string => c.repeat(40);

export const binding: DeploymentBinding = {
  environment: 'production',
  digests: [
    { path: 'dist/app.tgz', digest: `sha256:${hex('a')}` },
    { path: 'dist/sbom.json', digest: `sha256:${hex('b')}` },
  ],
  configDigest: `sha256:${hex('c')}`,
  commitRange: { from: sha('1'), to: sha('2') },
  runId: 'run-42',
};

export const DIGEST = bindingDigest(binding);

export const people: readonly Person[] = [
  { id: 'alice', identities: ['alice@example.com', 'Alice Liddell'] },
  { id: 'bob', identities: ['bob@example.com'] },
  { id: 'carol', identities: ['carol@example.com'] },
  { id: 'dave', identities: ['dave@example.com'] },
  { id: 'erin', identities: ['erin@example.com'] },
];

/** alice asked, triggered the run and wrote the code; dave committed; erin edited the config. */
export const request: ApprovalRequest = {
  requester: 'alice',
  triggeredBy: 'alice',
  authors: ['Alice Liddell <alice@example.com>'],
  committers: ['dave@example.com'],
  lastConfigEditor: 'erin',
  bindingDigest: DIGEST,
};

export const rules: ApprovalRules = {
  required: 1,
  roles: ['release-manager'],
  ownersRequired: false,
  owners: ['bob', 'carol'],
  validForMs: 4 * HOUR,
  justificationRequired: true,
};

export function approval(approver: string, over: Partial<Approval> = {}): Approval {
  return {
    approver,
    decision: 'approve',
    justification: 'reviewed the diff and the test evidence',
    bindingDigest: DIGEST,
    at: NOW - HOUR,
    roles: ['release-manager'],
    ...over,
  };
}

/** A person as an audit actor. */
export const as = (id: string) => ({ kind: 'user' as const, id });

/** The error a promise rejects with; fails the test if it resolves. */
export async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string; details: { code?: string } }> {
  try {
    await p;
  } catch (err) {
    return err as { code: string; message: string; details: { code?: string } };
  }
  throw new Error('expected a refusal');
}

/**
 * A deployer that installs nothing and reports one `install` step over the artifacts, for tests
 * about gates and records rather than processes; `deployed` lists what it was asked to deploy.
 */
export function recordingDeployer(now: () => Date): DeployerPort & { readonly deployed: { environment: string; deploymentId: string }[] } {
  const deployed: { environment: string; deploymentId: string }[] = [];
  return {
    deployed,
    deploy: (input) => {
      deployed.push({ environment: input.environment, deploymentId: input.deploymentId });
      const at = now().toISOString();
      return Promise.resolve({ deploymentId: input.deploymentId, environment: input.environment, pid: 0, port: 0, dir: '/nonexistent', startedAt: at, finishedAt: at, steps: [{ name: 'install', startedAt: at, finishedAt: at, exitCode: 0, digests: input.artifacts.map((a) => a.digest) }] });
    },
    rollback: () => Promise.reject(new Error('no rollback in these tests')),
  };
}

/** Deployments over a test app's own store, audit log, clock and attestation key; the facts and any other port are the test's. */
export function appDeployments(app: TestApp['app'], facts: DeliveryFacts, deps: Partial<DeploymentsDeps> = {}): Deployments {
  return new Deployments({ store: app.store, audit: app.audit, clock: app.clock, facts, signer: () => app.platformKeys.signer('attestation'), ...deps });
}
