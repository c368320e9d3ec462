/**
 * The verdict on one artifact from its attestations, computed where the verifier stands (the
 * CLI, offline if given keys and attestations): the server's own opinion is never an input.
 * Checks, in order: the digest, every envelope's signatures (keys by id; a key retired before
 * the statement was made counts as expired), that each statement is about this digest, the
 * provenance (builder id, source repository, commit, pipeline file digest), test evidence
 * present and PASSED, and the SBOM when the policy asks for one.
 */
import { createHash } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import canonicalize from 'canonicalize';
import { CYCLONEDX_BOM, IN_TOTO_PAYLOAD_TYPE, SLSA_PROVENANCE_V1, TEST_RESULT_V01, VSA_V1, parseStatement, statement, verifyEnvelope, vsaPredicate } from '../attest/index.js';
import type { Envelope } from '../attest/index.js';

/** What the verifier expects; every field optional (docs/verify.md). */
export interface VerifyPolicy {
  /** Exact builder id the provenance must name. */
  readonly builderId?: string | undefined;
  /** Allowed source repositories (exact match of externalParameters.repository). */
  readonly repositories?: readonly string[] | undefined;
  /** Allowed source commits (full hex SHA, lower case): the exact change that was reviewed. */
  readonly commits?: readonly string[] | undefined;
  /** Allowed pipeline file digests (64 hex, the sha256 of airlock.yaml): the reviewed build definition. */
  readonly pipelineDigests?: readonly string[] | undefined;
  /** Default true: a PASSED test-result attestation is required. */
  readonly requireTests?: boolean | undefined;
  /** Default false. */
  readonly requireSbom?: boolean | undefined;
}

/** A key the verifier trusts, with when it stopped signing (verify-only since then). */
export interface TrustedKey {
  readonly kid: string;
  readonly key: KeyObject;
  readonly retiredAt?: string | null | undefined;
}

export interface Check {
  readonly check: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface Verdict {
  readonly digest: string;
  readonly result: 'PASSED' | 'FAILED';
  readonly checks: readonly Check[];
  /** The reasons of the failed checks, in order (empty when PASSED). */
  readonly reasons: readonly string[];
  /** sha256:<hex> of each envelope that passed its signature check. */
  readonly inputAttestations: readonly string[];
}

const HEX64 = /^[0-9a-f]{64}$/;

/** sha256:<hex> of an envelope's canonical JSON: how a VSA names what it read. */
export function envelopeDigest(envelope: unknown): string {
  return `sha256:${createHash('sha256')
    .update(canonicalize(envelope) ?? '')
    .digest('hex')}`;
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** The time a statement says it was made (provenance finishedOn, else undefined). */
function madeAt(predicate: Record<string, unknown>): string | undefined {
  return str(record(record(record(predicate.runDetails).metadata)).finishedOn);
}

/**
 * Verify `digest` (sha256:<hex>) against `envelopes`. Never throws for bad evidence: every
 * problem is a failed check with its reason.
 */
export function verifyArtifact(digest: string, envelopes: readonly unknown[], keys: readonly TrustedKey[], policy: VerifyPolicy = {}): Verdict {
  const checks: Check[] = [];
  const add = (check: string, ok: boolean, detail: string): void => {
    checks.push({ check, ok, detail });
  };
  const hex = digest.startsWith('sha256:') ? digest.slice(7) : '';
  add('digest', HEX64.test(hex), HEX64.test(hex) ? digest : `"${digest.slice(0, 80)}" is not sha256:<64 hex>`);
  const keyMap = new Map(keys.map((k) => [k.kid, k.key]));
  const retired = new Map(keys.map((k) => [k.kid, k.retiredAt ?? null]));
  const accepted: string[] = [];
  const statements: { predicateType: string; predicate: Record<string, unknown> }[] = [];
  if (envelopes.length === 0) add('attestations', false, `no attestation names ${digest}`);
  envelopes.forEach((raw, i) => {
    const label = `attestation ${i + 1}`;
    const v = verifyEnvelope(raw, keyMap, { expectedPayloadType: IN_TOTO_PAYLOAD_TYPE });
    if (!v.ok) {
      add('signature', false, `${label}: ${v.reason}`);
      return;
    }
    let st;
    try {
      st = parseStatement(v.payload);
    } catch (err) {
      add('statement', false, `${label}: ${err instanceof Error ? err.message : 'not an in-toto Statement v1'}`);
      return;
    }
    const predicate = record(st.predicate);
    // A key retired before the statement was made had stopped signing then: expired.
    const when = madeAt(predicate);
    const late = v.keyids.filter((kid) => {
      const r = retired.get(kid);
      return r !== null && r !== undefined && when !== undefined && Date.parse(when) > Date.parse(r);
    });
    if (late.length > 0 && late.length === v.keyids.length) {
      add('signature', false, `${label}: signed by key ${late.join(', ')}, retired before the statement was made (${when ?? '?'}): expired`);
      return;
    }
    add('signature', true, `${label} (${st.predicateType}): signed by ${v.keyids.join(', ')}`);
    if (!st.subject.some((s) => s.digest.sha256 === hex)) {
      add('subject', false, `${label}: its subject digest does not match the artifact (${st.subject.map((s) => `sha256:${s.digest.sha256.slice(0, 12)}…`).join(', ')} vs ${digest})`);
      return;
    }
    accepted.push(envelopeDigest(raw));
    statements.push({ predicateType: st.predicateType, predicate });
  });

  const provenance = statements.filter((s) => s.predicateType === SLSA_PROVENANCE_V1);
  if (provenance.length === 0) add('provenance', false, 'no signed SLSA provenance for this digest');
  for (const p of provenance) {
    const build = record(p.predicate.buildDefinition);
    const ext = record(build.externalParameters);
    const builder = str(record(record(p.predicate.runDetails).builder).id);
    const repository = str(ext.repository);
    const commit = str(ext.commit);
    const pipelineDigest = str(record(record(ext.pipelineFile).digest).sha256);
    if (builder === undefined) add('builder', false, 'the provenance names no builder id');
    else if (policy.builderId !== undefined && builder !== policy.builderId) add('builder', false, `builder ${builder} is not the expected ${policy.builderId}`);
    else add('builder', true, builder);
    if (repository === undefined) add('repository', false, 'the provenance names no source repository');
    else if (policy.repositories !== undefined && !policy.repositories.includes(repository)) add('repository', false, `source repository ${repository} is not allowed (allowed: ${policy.repositories.join(', ')})`);
    else add('repository', true, repository);
    if (commit === undefined || !/^[0-9a-f]{40,64}$/.test(commit)) add('commit', false, commit === undefined ? 'the provenance names no commit' : `the provenance names a malformed commit ${commit.slice(0, 80)}`);
    else if (policy.commits !== undefined && !policy.commits.includes(commit)) add('commit', false, `commit ${commit} is not one the policy allows (allowed: ${policy.commits.join(', ')})`);
    else add('commit', true, `commit ${commit}`);
    if (pipelineDigest === undefined || !HEX64.test(pipelineDigest)) add('pipeline', false, pipelineDigest === undefined ? 'the provenance names no pipeline file digest' : 'the provenance names a malformed pipeline file digest');
    else if (policy.pipelineDigests !== undefined && !policy.pipelineDigests.includes(pipelineDigest)) add('pipeline', false, `pipeline file sha256:${pipelineDigest} is not one the policy allows`);
    else add('pipeline', true, `pipeline file sha256:${pipelineDigest}`);
  }

  if (policy.requireTests ?? true) {
    const tests = statements.filter((s) => s.predicateType === TEST_RESULT_V01);
    if (tests.length === 0) add('tests', false, 'no signed test-result attestation for this digest');
    for (const t of tests) {
      const result = str(t.predicate.result);
      const failed = Array.isArray(t.predicate.failedTests) ? t.predicate.failedTests.filter((x): x is string => typeof x === 'string') : [];
      add('tests', result === 'PASSED', result === 'PASSED' ? 'tests PASSED' : `tests ${result ?? 'without a result'}${failed.length > 0 ? `: ${failed.slice(0, 10).join(', ')}${failed.length > 10 ? ', …' : ''}` : ''}`);
    }
  }
  if (policy.requireSbom === true) {
    const sbom = statements.some((s) => s.predicateType === CYCLONEDX_BOM);
    add('sbom', sbom, sbom ? 'CycloneDX SBOM present' : 'no signed CycloneDX SBOM for this digest');
  }
  const reasons = checks.filter((c) => !c.ok).map((c) => `${c.check}: ${c.detail}`);
  return { digest, result: reasons.length === 0 ? 'PASSED' : 'FAILED', checks, reasons, inputAttestations: accepted };
}

/** The SLSA VSA v1 statement for a verdict (unsigned: the verifier signs it if it has a key). */
export function vsaFor(verdict: Verdict, opts: { name: string; verifierId: string; now: Date; policy?: { uri: string; digest: string } | undefined }): unknown {
  const hex = verdict.digest.startsWith('sha256:') ? verdict.digest.slice(7) : verdict.digest;
  return statement(
    [{ name: opts.name, digest: { sha256: hex } }],
    VSA_V1,
    vsaPredicate({
      verifierId: opts.verifierId,
      timeVerified: opts.now.toISOString(),
      resourceUri: opts.name,
      // Without a policy file the verifier's built-in expectations applied (docs/verify.md).
      policy: opts.policy === undefined ? { uri: 'https://airlock.dev/verify/default-policy/v1' } : { uri: opts.policy.uri, digest: { sha256: opts.policy.digest } },
      inputAttestations: verdict.inputAttestations.map((d) => ({ digest: { sha256: d.slice(7) } })),
      verificationResult: verdict.result,
      // Level 2: the control plane signs provenance with a key no step holds. Level 3 also
      // needs isolated runs, which depends on the runner's sandbox: not claimed.
      verifiedLevels: verdict.result === 'PASSED' ? ['SLSA_BUILD_LEVEL_2'] : [],
      slsaVersion: '1.0',
    }),
  );
}

export type { Envelope };
