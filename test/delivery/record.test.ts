/**
 * Deployment records verified offline on both engines: signed with the platform key, named by
 * an audit event, proven included in the log and anchored by a signed checkpoint. Editing the
 * record, the event, or swapping the checkpoint key each fails its own check.
 */
import { generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeInclusionProof } from '../../src/audit/index.js';
import { recordDigest, signRecord, verifyRecordFile } from '../../src/delivery/index.js';
import type { DeploymentRecord, RecordFile } from '../../src/delivery/index.js';
import { ed25519Verifier } from '../../src/audit/index.js';
import { ENGINES } from '../support/engines.js';
import { openTestApp } from '../server/support.js';
import type { TestApp } from '../server/support.js';

const RECORD: DeploymentRecord = {
  deploymentId: 'dep-1',
  project: 'shop',
  environment: 'production',
  initiator: 'alice',
  justification: 'release 1.4.2 with the checkout fix',
  approvals: [{ approver: 'bob', justification: 'reviewed the diff and the test evidence', at: '2026-11-25T10:00:00.000Z' }],
  commitRange: { from: 'a'.repeat(40), to: 'b'.repeat(40) },
  artifacts: [{ path: 'shop.tar', digest: `sha256:${'c'.repeat(64)}` }],
  config: { digest: `sha256:${'d'.repeat(64)}`, diff: { added: ['FEATURE_X'], removed: [], changed: ['REPLICAS'] } },
  fingerprint: { os: 'linux', arch: 'x64' },
  steps: [{ name: 'deploy', startedAt: '2026-11-25T10:01:00.000Z', finishedAt: '2026-11-25T10:01:05.000Z', exitCode: 0, digests: [] }],
  policyDecisions: [{ action: 'deployments.create', allowed: true, policies: ['role-release-manager'] }],
  exceptions: [],
  outcome: 'succeeded',
  startedAt: '2026-11-25T10:01:00.000Z',
  finishedAt: '2026-11-25T10:01:06.000Z',
};

describe.each(ENGINES)('deployment records on %s', (engine) => {
  let t: TestApp;
  let file: RecordFile;
  let keys: { attestation: Map<string, KeyObject>; log: ReturnType<TestApp['app']['verifiers']> };

  beforeAll(async () => {
    t = await openTestApp(engine);
    const signer = await t.app.platformKeys.signer('attestation');
    const envelope = signRecord(RECORD, signer);
    const event = await t.app.audit.append({ actor: { kind: 'system', id: 'delivery' }, action: 'deployments.record', resource: 'deployments/dep-1', outcome: 'allowed', details: { recordDigest: recordDigest(envelope) } });
    const checkpoint = await t.app.signCheckpoint({ kind: 'system', id: 'test' });
    const proof = await t.app.audit.inclusionProof(event.seq, checkpoint.size);
    file = { format: 'airlock-deployment-record/v1', envelope, audit: { event, inclusion: encodeInclusionProof(proof), checkpoint: checkpoint.note } };
    keys = { attestation: new Map([[signer.kid, signer.publicKey]]), log: t.app.verifiers() };
  }, 60_000);

  afterAll(async () => {
    await t.cleanup();
  });

  const roundTrip = (f: unknown): unknown => JSON.parse(JSON.stringify(f));

  it('verifies offline: signature, the audit event naming it, inclusion under a signed checkpoint', () => {
    const v = verifyRecordFile(roundTrip(file), keys);
    expect(v.checks.filter((c) => !c.ok)).toEqual([]);
    expect(v.ok).toBe(true);
    expect(v.record).toMatchObject({ deploymentId: 'dep-1', environment: 'production', approvals: [{ approver: 'bob' }] });
  });

  it('catches an edited record, an edited audit event, another record under the event, and a checkpoint from another key', () => {
    const failed = (f: unknown, k = keys) => {
      const v = verifyRecordFile(f, k);
      expect(v.ok).toBe(false);
      return v.checks.filter((c) => !c.ok).map((c) => `${c.check}: ${c.detail}`).join('\n');
    };
    const payload = JSON.parse(Buffer.from(file.envelope.payload, 'base64').toString()) as { predicate: { approvals: { approver: string }[] } };
    payload.predicate.approvals[0]!.approver = 'mallory';
    const editedRecord = { ...file, envelope: { ...file.envelope, payload: Buffer.from(JSON.stringify(payload)).toString('base64') } };
    expect(failed(editedRecord)).toMatch(/signature: /);
    expect(failed(editedRecord)).toMatch(/audit event: the audit event names sha256:.*, not this record/);

    const editedEvent = roundTrip(file) as RecordFile;
    (editedEvent.audit.event as { reason?: string }).reason = 'inserted later';
    expect(failed(editedEvent)).toMatch(/inclusion: the audit event does not hash to the proof leaf/);

    // A checkpoint verifier for the same log name but another key: the note does not open.
    const raw = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' }).subarray(12);
    const stranger = ed25519Verifier(t.app.config.auditOrigin, Buffer.from(raw));
    expect(failed(roundTrip(file), { ...keys, log: [stranger] })).toMatch(/inclusion: /);

    expect(failed({ format: 'something-else' })).toMatch(/format: not an airlock-deployment-record\/v1 file/);
  });
});
