/**
 * in-toto statements and predicates: builders produce what the parser accepts, canonical bytes
 * round-trip exactly, and malformed statements are refused naming the offending field.
 */
import { createHash, generateKeyPairSync } from 'node:crypto';
import canonicalize from 'canonicalize';
import { describe, expect, it } from 'vitest';
import {
  AIRLOCK_PIPELINE_BUILD_TYPE,
  CYCLONEDX_BOM,
  DSSE_ENVELOPE_MEDIA_TYPE,
  IN_TOTO_PAYLOAD_TYPE,
  IN_TOTO_STATEMENT_V1,
  SLSA_PROVENANCE_V1,
  TEST_RESULT_V01,
  VSA_V1,
  attestationSigner,
  linkByproduct,
  parseStatement,
  provenancePredicate,
  signEnvelope,
  signStatement,
  statement,
  statementBytes,
  testResultPredicate,
  verifyStatement,
  vsaPredicate,
} from '../../src/attest/index.js';
import type { ProvenanceInput, Statement } from '../../src/attest/index.js';
import { AirlockError } from '../../src/errors/index.js';
import type { ValidationError } from '../../src/errors/index.js';
import { ed25519LinkSigner, signLink } from '../../src/runner/index.js';
import type { LinkRecord } from '../../src/runner/index.js';

const SHA_A = 'a'.repeat(64);
const SHA_B = createHash('sha256').update('pipeline').digest('hex');
const COMMIT = '0123456789abcdef0123456789abcdef01234567';
const subjects = [{ name: 'dist/app.tgz', digest: { sha256: SHA_A } }];

function refusedField(fn: () => unknown): { message: string; paths: string[] } {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AirlockError);
    expect((err as AirlockError).code).toBe('VALIDATION_FAILED');
    return { message: (err as Error).message, paths: (err as ValidationError).issues.map((i) => i.path) };
  }
  throw new Error('expected a VALIDATION_FAILED refusal');
}

function roundTrip(st: Statement<object>): void {
  const bytes = statementBytes(st);
  const parsed = parseStatement(bytes);
  expect(parsed).toEqual(st);
  expect(statementBytes(parsed)).toEqual(bytes);
  expect(bytes.toString()).toBe(canonicalize(JSON.parse(bytes.toString())));
}

const link: LinkRecord = {
  _type: 'https://airlock.dev/link/v1',
  pipeline: 'app',
  runId: 'run-1',
  stage: 'build',
  step: 'compile',
  attempt: 1,
  command: 'make',
  materials: { 'src/main.c': `sha256:${SHA_A}` },
  products: { 'dist/app.tgz': `sha256:${SHA_A}` },
  byproducts: { exitCode: 0, stdoutDigest: `sha256:${SHA_A}`, stderrDigest: `sha256:${SHA_A}` },
  startedAt: '2026-03-01T12:00:00.000Z',
  finishedAt: '2026-03-01T12:01:00.000Z',
} as unknown as LinkRecord;

function provenanceInput(): ProvenanceInput {
  const linkEnvelope = signLink(link, ed25519LinkSigner(generateKeyPairSync('ed25519').privateKey));
  return {
    builderId: 'https://airlock.example.com/builders/embedded',
    repository: 'https://git.example.com/org/app.git',
    ref: 'refs/heads/main',
    commit: COMMIT,
    pipelineFile: { path: 'airlock.yaml', digest: { sha256: SHA_B } },
    parameters: { target: 'prod', count: 2 },
    trigger: { kind: 'manual', actor: 'user:alice', reason: 'release' },
    internalParameters: { runner: 'embedded', sandbox: 'bubblewrap' },
    dependencies: [{ name: 'left-pad', uri: 'pkg:npm/left-pad@1.3.0', digest: { sha512: 'b'.repeat(128) } }],
    invocationId: 'https://airlock.example.com/runs/run-1',
    startedOn: '2026-03-01T12:00:00.000Z',
    finishedOn: '2026-03-01T12:05:00.000Z',
    byproducts: [linkByproduct('links/build/compile.link', linkEnvelope)],
  };
}

describe('in-toto statements', () => {
  it('builds SLSA provenance v1 with the source first among resolved dependencies and links as byproducts', () => {
    const input = provenanceInput();
    const predicate = provenancePredicate(input);
    expect(predicate.buildDefinition.buildType).toBe(AIRLOCK_PIPELINE_BUILD_TYPE);
    expect(predicate.buildDefinition.externalParameters).toEqual({
      repository: input.repository,
      ref: 'refs/heads/main',
      commit: COMMIT,
      pipelineFile: { path: 'airlock.yaml', digest: { sha256: SHA_B } },
      parameters: { target: 'prod', count: 2 },
      trigger: { kind: 'manual', actor: 'user:alice', reason: 'release' },
    });
    expect(predicate.buildDefinition.resolvedDependencies).toEqual([
      { uri: 'git+https://git.example.com/org/app.git@refs/heads/main', digest: { gitCommit: COMMIT } },
      { name: 'left-pad', uri: 'pkg:npm/left-pad@1.3.0', digest: { sha512: 'b'.repeat(128) } },
    ]);
    expect(predicate.runDetails.builder).toEqual({ id: input.builderId });
    expect(predicate.runDetails.metadata).toEqual({ invocationId: input.invocationId, startedOn: input.startedOn, finishedOn: input.finishedOn });
    const byproduct = predicate.runDetails.byproducts[0]!;
    expect(byproduct.mediaType).toBe(DSSE_ENVELOPE_MEDIA_TYPE);
    // The byproduct carries the link envelope, and its digest is over exactly those bytes.
    const content = Buffer.from(byproduct.content!, 'base64');
    expect(byproduct.digest).toEqual({ sha256: createHash('sha256').update(content).digest('hex') });
    expect(JSON.parse(content.toString())).toMatchObject({ payloadType: 'application/vnd.airlock.link+json' });
    const st = statement(subjects, SLSA_PROVENANCE_V1, predicate);
    expect(st._type).toBe(IN_TOTO_STATEMENT_V1);
    roundTrip(st);
  });

  it('builds test results and verification summaries that parse and round-trip', () => {
    const tr = testResultPredicate({ result: 'WARNED', configuration: [{ name: 'airlock.yaml', digest: { sha256: SHA_B } }], url: 'https://airlock.example.com/runs/run-1', passedTests: ['a'], warnedTests: ['b'], failedTests: [] });
    roundTrip(statement(subjects, TEST_RESULT_V01, tr));
    const vsa = vsaPredicate({
      verifierId: 'https://airlock.example.com/verifier',
      timeVerified: '2026-03-01T12:06:00Z',
      resourceUri: 'pkg:generic/app@1.0.0',
      policy: { uri: 'https://airlock.example.com/policies/release', digest: { sha256: SHA_B } },
      inputAttestations: [{ uri: 'https://airlock.example.com/attestations/1', digest: { sha256: SHA_A } }],
      verificationResult: 'PASSED',
      verifiedLevels: ['SLSA_BUILD_LEVEL_3'],
      slsaVersion: '1.0',
    });
    expect(vsa.verifier).toEqual({ id: 'https://airlock.example.com/verifier' });
    roundTrip(statement(subjects, VSA_V1, vsa));
    roundTrip(statement(subjects, CYCLONEDX_BOM, { bomFormat: 'CycloneDX', specVersion: '1.6', components: [{ name: 'left-pad', version: '1.3.0' }] }));
  });

  it('signs statements into in-toto envelopes and verifies before parsing', () => {
    const signer = attestationSigner(generateKeyPairSync('ed25519').privateKey);
    const keys = new Map([[signer.kid, signer.publicKey]]);
    const st = statement(subjects, SLSA_PROVENANCE_V1, provenancePredicate(provenanceInput()));
    const env = signStatement(st, signer);
    expect(env.payloadType).toBe(IN_TOTO_PAYLOAD_TYPE);
    expect(verifyStatement(env, keys)).toEqual({ ok: true, statement: st, keyids: [signer.kid] });
    expect(verifyStatement(env, keys, { predicateType: VSA_V1 })).toEqual({ ok: false, reason: `predicate type ${SLSA_PROVENANCE_V1} is not ${VSA_V1}` });
    // A correctly signed payload that is not a statement is still refused, naming the field.
    const bogus = signEnvelope(IN_TOTO_PAYLOAD_TYPE, Buffer.from('{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"https://x/y","predicate":{}}'), signer);
    const result = verifyStatement(bogus, keys);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toBe('invalid in-toto statement: subject must name at least one subject');
  });

  it('refuses malformed statements naming the field', () => {
    const good = JSON.parse(statementBytes(statement(subjects, 'https://example.com/p/v1', { a: 1 })).toString()) as Record<string, unknown>;
    const parse = (edit: (s: Record<string, unknown>) => void) => () => {
      const copy = structuredClone(good);
      edit(copy);
      return parseStatement(Buffer.from(JSON.stringify(copy)));
    };
    expect(refusedField(() => parseStatement(Buffer.from('{not json'))).paths).toEqual(['payload']);
    expect(refusedField(() => parseStatement(Buffer.from('[]'))).paths).toEqual(['(root)']);
    expect(refusedField(parse((s) => (s._type = 'https://in-toto.io/Statement/v0.1'))).message).toBe('invalid in-toto statement: _type must be https://in-toto.io/Statement/v1');
    expect(refusedField(parse((s) => (s.subject = 'x'))).paths).toEqual(['subject']);
    expect(refusedField(parse((s) => (s.subject = [{ name: '', digest: { sha256: SHA_A } }]))).paths).toEqual(['subject[0].name']);
    expect(refusedField(parse((s) => (s.subject = [{ name: 'a', digest: { sha256: SHA_A.toUpperCase() } }]))).message).toBe('invalid in-toto statement: subject[0].digest.sha256 must be 64 lowercase hex characters');
    expect(refusedField(parse((s) => (s.subject = [{ name: 'a', digest: { sha256: 'abc' } }]))).paths).toEqual(['subject[0].digest.sha256']);
    expect(refusedField(parse((s) => (s.subject = [{ name: 'a', digest: { sha512: 'b'.repeat(128) } }]))).paths).toEqual(['subject[0].digest.sha256']);
    expect(refusedField(parse((s) => (s.subject = [{ name: 'a' }]))).paths).toEqual(['subject[0].digest']);
    expect(refusedField(parse((s) => delete s.predicateType)).paths).toEqual(['predicateType']);
    expect(refusedField(parse((s) => (s.predicateType = 'not a uri'))).paths).toEqual(['predicateType']);
    expect(refusedField(parse((s) => (s.predicate = [1]))).paths).toEqual(['predicate']);
    expect(refusedField(parse((s) => (s.predicate = null))).paths).toEqual(['predicate']);
  });

  it('refuses known predicates with missing or malformed fields', () => {
    const provenance = JSON.parse(JSON.stringify(provenancePredicate(provenanceInput()))) as { buildDefinition: Record<string, unknown>; runDetails: { builder: Record<string, unknown>; metadata: Record<string, unknown> } };
    const withPredicate = (type: string, predicate: unknown) => () => parseStatement(Buffer.from(JSON.stringify({ _type: IN_TOTO_STATEMENT_V1, subject: subjects, predicateType: type, predicate })));
    const p1 = structuredClone(provenance);
    delete p1.buildDefinition.buildType;
    expect(refusedField(withPredicate(SLSA_PROVENANCE_V1, p1)).paths).toEqual(['predicate.buildDefinition.buildType']);
    const p2 = structuredClone(provenance);
    p2.runDetails.builder.id = 42;
    expect(refusedField(withPredicate(SLSA_PROVENANCE_V1, p2)).paths).toEqual(['predicate.runDetails.builder.id']);
    const p3 = structuredClone(provenance);
    p3.runDetails.metadata.startedOn = 'yesterday';
    expect(refusedField(withPredicate(SLSA_PROVENANCE_V1, p3)).paths).toEqual(['predicate.runDetails.metadata.startedOn']);
    const p4 = structuredClone(provenance);
    p4.buildDefinition.resolvedDependencies = [{ name: 'only a name' }];
    expect(refusedField(withPredicate(SLSA_PROVENANCE_V1, p4)).message).toContain('predicate.buildDefinition.resolvedDependencies[0] must have at least one of uri, digest, content');
    expect(refusedField(withPredicate(TEST_RESULT_V01, { result: 'OK', configuration: [], passedTests: [], warnedTests: [], failedTests: [] })).paths).toEqual(['predicate.result']);
    expect(refusedField(withPredicate(VSA_V1, { verifier: { id: 'https://v' }, timeVerified: '2026-03-01T12:00:00Z', resourceUri: 'x', policy: {}, inputAttestations: [], verificationResult: 'PASSED', verifiedLevels: [], slsaVersion: '1.0' })).paths).toEqual(['predicate.policy']);
    expect(refusedField(withPredicate(CYCLONEDX_BOM, { specVersion: '1.6' })).paths).toEqual(['predicate.bomFormat']);
  });

  it('builders refuse bad input naming the field, and never sign what the parser would refuse', () => {
    expect(refusedField(() => statement([], 'https://x/y', {})).paths).toEqual(['subject']);
    expect(refusedField(() => statement([{ name: 'a', digest: { sha256: 'zz' } }], 'https://x/y', {})).paths).toEqual(['subject[0].digest.sha256']);
    expect(refusedField(() => statement(subjects, 'https://x/y', { n: Number.NaN })).paths).toEqual(['predicate.n']);
    expect(refusedField(() => statement(subjects, 'https://x/y', { when: new Date() })).paths).toEqual(['predicate.when']);
    expect(refusedField(() => statement(subjects, 'https://x/y', { list: [undefined] })).paths).toEqual(['predicate.list[0]']);
    expect(refusedField(() => statement(subjects, SLSA_PROVENANCE_V1, { buildDefinition: {} })).paths).toEqual(expect.arrayContaining(['predicate.buildDefinition.buildType', 'predicate.runDetails']));
    expect(refusedField(() => provenancePredicate({ ...provenanceInput(), commit: 'main' })).paths).toEqual(['commit']);
    expect(refusedField(() => provenancePredicate({ ...provenanceInput(), pipelineFile: { path: 'airlock.yaml', digest: { sha256: 'x' } } })).paths).toEqual(['pipelineFile.digest.sha256']);
    expect(refusedField(() => provenancePredicate({ ...provenanceInput(), finishedOn: '2026-03-01T11:00:00.000Z' })).paths).toEqual(['finishedOn']);
    expect(refusedField(() => provenancePredicate({ ...provenanceInput(), builderId: 'embedded' })).paths).toEqual(['predicate.runDetails.builder.id']);
    expect(refusedField(() => testResultPredicate({ result: 'PASSED', configuration: [], passedTests: ['a'], warnedTests: [], failedTests: ['b'] })).message).toBe('invalid test result: predicate.result is PASSED but failedTests is not empty');
    expect(refusedField(() => vsaPredicate({ verifierId: 'https://v', timeVerified: 'now', resourceUri: 'x', policy: { uri: 'https://p' }, inputAttestations: [], verificationResult: 'PASSED', verifiedLevels: [], slsaVersion: '1.0' })).paths).toEqual(['predicate.timeVerified']);
  });

  it('drops undefined members rather than signing something that reads back differently', () => {
    const st = statement(subjects, 'https://x/y', { a: 1, b: undefined });
    expect(st.predicate).toEqual({ a: 1 });
    expect(Object.keys(st.predicate)).toEqual(['a']);
    roundTrip(st);
  });
});
