/**
 * in-toto Statement v1 and the predicates Airlock speaks (SLSA Provenance v1, test results,
 * verification summaries, CycloneDX). Builders and the parser share one set of checks, so
 * what we sign is exactly what we would accept from someone else.
 */
import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import type { JsonValue } from '../audit/index.js';
import { ValidationError } from '../errors/index.js';
import type { FieldIssue } from '../errors/index.js';

export const IN_TOTO_STATEMENT_V1 = 'https://in-toto.io/Statement/v1';
export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
export const TEST_RESULT_V01 = 'https://in-toto.io/attestation/test-result/v0.1';
export const VSA_V1 = 'https://slsa.dev/verification_summary/v1';
export const CYCLONEDX_BOM = 'https://cyclonedx.org/bom';
/** Our buildType: what externalParameters and internalParameters mean for an Airlock pipeline run. */
export const AIRLOCK_PIPELINE_BUILD_TYPE = 'https://airlock.dev/buildtypes/pipeline/v1';
/** Media type of a DSSE envelope carried as a byproduct (the step link records). */
export const DSSE_ENVELOPE_MEDIA_TYPE = 'application/vnd.dsse.envelope.v1+json';

/** Algorithm -> lowercase hex. */
export type DigestSet = Readonly<Record<string, string>>;

export interface Subject {
  readonly name: string;
  readonly digest: DigestSet & { readonly sha256: string };
}

/** in-toto ResourceDescriptor: at least one of uri, digest, content. `content` is base64. */
export interface ResourceDescriptor {
  readonly name?: string;
  readonly uri?: string;
  readonly digest?: DigestSet;
  readonly content?: string;
  readonly downloadLocation?: string;
  readonly mediaType?: string;
  readonly annotations?: Readonly<Record<string, JsonValue>>;
}

export interface Statement<P extends object = Readonly<Record<string, unknown>>> {
  readonly _type: typeof IN_TOTO_STATEMENT_V1;
  readonly subject: readonly Subject[];
  readonly predicateType: string;
  readonly predicate: P;
}

// --- checks shared by builders and the parser --------------------------------------------

const HEX_RE = /^(?:[0-9a-f]{2})+$/;
const SHA256_RE = /^[0-9a-f]{64}$/;
const GIT_OBJECT_RE = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;
const URI_RE = /^[A-Za-z][A-Za-z0-9+.-]*:\S+$/;
const ALGORITHM_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;
const TIMESTAMP_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Lengths of the digests whose size is fixed; anything else must still be lowercase hex. */
const DIGEST_HEX_LENGTHS: Readonly<Record<string, readonly number[]>> = { sha256: [64], sha384: [96], sha512: [128], sha1: [40], sha224: [56], gitCommit: [40, 64], gitTree: [40, 64], gitBlob: [40, 64] };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

class Checker {
  readonly issues: FieldIssue[] = [];

  fail(path: string, message: string): false {
    this.issues.push({ path, message });
    return false;
  }

  text(path: string, value: unknown, max = 4096): value is string {
    if (typeof value !== 'string' || value === '') return this.fail(path, 'must be a non-empty string');
    if (value.length > max) return this.fail(path, `must be at most ${max} characters`);
    return true;
  }

  optionalText(path: string, value: unknown, max = 4096): void {
    if (value !== undefined) this.text(path, value, max);
  }

  uri(path: string, value: unknown): value is string {
    if (!this.text(path, value)) return false;
    return URI_RE.test(value) || this.fail(path, 'must be an absolute URI');
  }

  timestamp(path: string, value: unknown): value is string {
    if (typeof value !== 'string' || !TIMESTAMP_RE.test(value) || !Number.isFinite(Date.parse(value))) return this.fail(path, 'must be an RFC 3339 timestamp');
    return true;
  }

  object(path: string, value: unknown): value is Record<string, unknown> {
    return isRecord(value) || this.fail(path, 'must be a JSON object');
  }

  array(path: string, value: unknown): value is unknown[] {
    return Array.isArray(value) || this.fail(path, 'must be an array');
  }

  textArray(path: string, value: unknown): void {
    if (!this.array(path, value)) return;
    value.forEach((v, i) => {
      this.text(`${path}[${i}]`, v);
    });
  }

  digestSet(path: string, value: unknown, requireSha256 = false): void {
    if (!this.object(path, value)) return;
    const entries = Object.entries(value);
    if (entries.length === 0) this.fail(path, 'must name at least one digest');
    for (const [alg, hex] of entries) {
      if (!ALGORITHM_RE.test(alg)) {
        this.fail(path, `has an invalid algorithm name ${JSON.stringify(alg.slice(0, 40))}`);
        continue;
      }
      const lengths = DIGEST_HEX_LENGTHS[alg];
      if (typeof hex !== 'string' || !HEX_RE.test(hex) || (lengths !== undefined && !lengths.includes(hex.length))) {
        this.fail(`${path}.${alg}`, lengths === undefined ? 'must be lowercase hex' : `must be ${lengths.join(' or ')} lowercase hex characters`);
      }
    }
    if (requireSha256 && !('sha256' in value)) this.fail(`${path}.sha256`, 'is required');
  }

  descriptor(path: string, value: unknown): void {
    if (!this.object(path, value)) return;
    this.optionalText(`${path}.name`, value.name);
    if (value.uri !== undefined) this.uri(`${path}.uri`, value.uri);
    if (value.digest !== undefined) this.digestSet(`${path}.digest`, value.digest);
    if (value.content !== undefined && (typeof value.content !== 'string' || !BASE64_RE.test(value.content))) this.fail(`${path}.content`, 'must be base64');
    if (value.downloadLocation !== undefined) this.uri(`${path}.downloadLocation`, value.downloadLocation);
    this.optionalText(`${path}.mediaType`, value.mediaType, 256);
    if (value.annotations !== undefined) this.object(`${path}.annotations`, value.annotations);
    if (value.uri === undefined && value.digest === undefined && value.content === undefined) this.fail(path, 'must have at least one of uri, digest, content');
  }

  descriptors(path: string, value: unknown): void {
    if (!this.array(path, value)) return;
    value.forEach((d, i) => {
      this.descriptor(`${path}[${i}]`, d);
    });
  }

  oneOf<T extends string>(path: string, value: unknown, allowed: readonly T[]): value is T {
    return (typeof value === 'string' && (allowed as readonly string[]).includes(value)) || this.fail(path, `must be one of ${allowed.join(', ')}`);
  }

  /** Turns the issues into the coded error, naming every field in the message. */
  throwIfAny(what: string): void {
    if (this.issues.length === 0) return;
    const listed = this.issues.slice(0, 5).map((i) => `${i.path} ${i.message}`).join('; ');
    const more = this.issues.length > 5 ? ` (and ${this.issues.length - 5} more)` : '';
    throw new ValidationError(`invalid ${what}: ${listed}${more}`, this.issues);
  }
}

/**
 * A deep copy that is plain JSON, or an issue naming where it is not: NaN, undefined in an
 * array, a Date or Buffer would serialise differently from what the caller meant to sign.
 */
function plainJson(c: Checker, path: string, value: unknown, depth = 0): JsonValue | undefined {
  if (depth > 64) {
    c.fail(path, 'is nested too deeply');
    return undefined;
  }
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (Number.isFinite(value)) return value;
    c.fail(path, 'must be a finite number');
    return undefined;
  }
  if (Array.isArray(value)) return value.map((v, i) => plainJson(c, `${path}[${i}]`, v, depth + 1) ?? null);
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, JsonValue> = {};
    for (const [k, v] of Object.entries(value)) {
      if (v === undefined) continue;
      const copied = plainJson(c, `${path}.${k}`, v, depth + 1);
      if (copied !== undefined) out[k] = copied;
    }
    return out;
  }
  c.fail(path, 'must be plain JSON (no undefined, functions, Dates or Buffers)');
  return undefined;
}

function checkProvenance(c: Checker, p: Record<string, unknown>): void {
  if (c.object('predicate.buildDefinition', p.buildDefinition)) {
    const b = p.buildDefinition;
    c.uri('predicate.buildDefinition.buildType', b.buildType);
    c.object('predicate.buildDefinition.externalParameters', b.externalParameters);
    if (b.internalParameters !== undefined) c.object('predicate.buildDefinition.internalParameters', b.internalParameters);
    if (b.resolvedDependencies !== undefined) c.descriptors('predicate.buildDefinition.resolvedDependencies', b.resolvedDependencies);
  }
  if (c.object('predicate.runDetails', p.runDetails)) {
    const r = p.runDetails;
    if (c.object('predicate.runDetails.builder', r.builder)) c.uri('predicate.runDetails.builder.id', r.builder.id);
    if (r.metadata !== undefined && c.object('predicate.runDetails.metadata', r.metadata)) {
      c.optionalText('predicate.runDetails.metadata.invocationId', r.metadata.invocationId);
      if (r.metadata.startedOn !== undefined) c.timestamp('predicate.runDetails.metadata.startedOn', r.metadata.startedOn);
      if (r.metadata.finishedOn !== undefined) c.timestamp('predicate.runDetails.metadata.finishedOn', r.metadata.finishedOn);
    }
    if (r.byproducts !== undefined) c.descriptors('predicate.runDetails.byproducts', r.byproducts);
  }
}

const TEST_RESULTS = ['PASSED', 'WARNED', 'FAILED'] as const;
const VERIFICATION_RESULTS = ['PASSED', 'FAILED'] as const;

function checkTestResult(c: Checker, p: Record<string, unknown>): void {
  c.oneOf('predicate.result', p.result, TEST_RESULTS);
  c.descriptors('predicate.configuration', p.configuration);
  if (p.url !== undefined) c.uri('predicate.url', p.url);
  c.textArray('predicate.passedTests', p.passedTests);
  c.textArray('predicate.warnedTests', p.warnedTests);
  c.textArray('predicate.failedTests', p.failedTests);
  // A pass that lists failures is a contradiction a reader must not have to resolve.
  if (p.result === 'PASSED' && Array.isArray(p.failedTests) && p.failedTests.length > 0) c.fail('predicate.result', 'is PASSED but failedTests is not empty');
}

function checkVsa(c: Checker, p: Record<string, unknown>): void {
  if (c.object('predicate.verifier', p.verifier)) c.uri('predicate.verifier.id', p.verifier.id);
  c.timestamp('predicate.timeVerified', p.timeVerified);
  c.text('predicate.resourceUri', p.resourceUri);
  if (c.object('predicate.policy', p.policy)) {
    const pol = p.policy;
    if (pol.uri !== undefined) c.uri('predicate.policy.uri', pol.uri);
    if (pol.digest !== undefined) c.digestSet('predicate.policy.digest', pol.digest);
    if (pol.uri === undefined && pol.digest === undefined) c.fail('predicate.policy', 'must have a uri or a digest');
  }
  if (c.array('predicate.inputAttestations', p.inputAttestations)) {
    p.inputAttestations.forEach((a, i) => {
      const path = `predicate.inputAttestations[${i}]`;
      if (!c.object(path, a)) return;
      if (a.uri !== undefined) c.text(`${path}.uri`, a.uri);
      c.digestSet(`${path}.digest`, a.digest);
    });
  }
  c.oneOf('predicate.verificationResult', p.verificationResult, VERIFICATION_RESULTS);
  c.textArray('predicate.verifiedLevels', p.verifiedLevels);
  c.oneOf('predicate.slsaVersion', p.slsaVersion, ['1.0']);
}

function checkCycloneDx(c: Checker, p: Record<string, unknown>): void {
  if (p.bomFormat !== 'CycloneDX') c.fail('predicate.bomFormat', 'must be "CycloneDX"');
  c.text('predicate.specVersion', p.specVersion, 16);
}

const PREDICATE_CHECKS: Readonly<Record<string, (c: Checker, p: Record<string, unknown>) => void>> = {
  [SLSA_PROVENANCE_V1]: checkProvenance,
  [TEST_RESULT_V01]: checkTestResult,
  [VSA_V1]: checkVsa,
  [CYCLONEDX_BOM]: checkCycloneDx,
};

function checkStatement(c: Checker, value: unknown): void {
  if (!c.object('(root)', value)) return;
  if (value._type !== IN_TOTO_STATEMENT_V1) c.fail('_type', `must be ${IN_TOTO_STATEMENT_V1}`);
  if (c.array('subject', value.subject)) {
    if (value.subject.length === 0) c.fail('subject', 'must name at least one subject');
    value.subject.forEach((s, i) => {
      if (!c.object(`subject[${i}]`, s)) return;
      c.text(`subject[${i}].name`, s.name);
      c.digestSet(`subject[${i}].digest`, s.digest, true);
    });
  }
  c.uri('predicateType', value.predicateType);
  if (c.object('predicate', value.predicate) && typeof value.predicateType === 'string') PREDICATE_CHECKS[value.predicateType]?.(c, value.predicate);
}

// --- builders ----------------------------------------------------------------------------

/** A Statement v1 over `subjects`; refuses (VALIDATION_FAILED, naming the field) what parseStatement would refuse. */
export function statement<P extends object>(subjects: readonly { readonly name: string; readonly digest: { readonly sha256: string } }[], predicateType: string, predicate: P): Statement<P> {
  const c = new Checker();
  const copied = plainJson(c, 'predicate', predicate);
  const st = { _type: IN_TOTO_STATEMENT_V1, subject: subjects.map((s) => ({ name: s.name, digest: { ...s.digest } })), predicateType, predicate: copied };
  c.throwIfAny('in-toto statement');
  checkStatement(c, st);
  c.throwIfAny('in-toto statement');
  return st as unknown as Statement<P>;
}

/** RFC 8785 canonical JSON bytes: the DSSE payload of a statement. */
export function statementBytes(st: Statement<object>): Buffer {
  const text = canonicalize(st);
  if (text === undefined) throw new ValidationError('invalid in-toto statement: it cannot be serialised', [{ path: '(root)', message: 'cannot be serialised' }]);
  return Buffer.from(text, 'utf8');
}

/** Parses and checks a statement from an (already signature-verified) payload. */
export function parseStatement(payload: Buffer): Statement {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new ValidationError('invalid in-toto statement: payload is not valid JSON', [{ path: 'payload', message: 'is not valid JSON' }]);
  }
  const c = new Checker();
  checkStatement(c, value);
  c.throwIfAny('in-toto statement');
  return value as Statement;
}

/** `sha256:<hex>` of a subject, as the attestations table indexes it. */
export function subjectDigest(subject: Subject): string {
  return `sha256:${subject.digest.sha256}`;
}

// --- SLSA Provenance v1 ------------------------------------------------------------------

export interface ProvenanceInput {
  /** Default {@link AIRLOCK_PIPELINE_BUILD_TYPE}. */
  readonly buildType?: string;
  /** URI of the build platform, e.g. `https://airlock.example.com/builders/embedded`. */
  readonly builderId: string;
  readonly builderVersion?: Readonly<Record<string, string>>;
  readonly repository: string;
  readonly ref: string;
  /** Full commit id (40 or 64 hex). */
  readonly commit: string;
  readonly pipelineFile: { readonly path: string; readonly digest: { readonly sha256: string } };
  readonly parameters: Readonly<Record<string, JsonValue>>;
  /** What started the run (kind, actor, reason). */
  readonly trigger: Readonly<Record<string, JsonValue>>;
  readonly internalParameters?: Readonly<Record<string, JsonValue>>;
  /** Lockfile packages etc. as ResourceDescriptors (name, purl uri, digest); after the source itself. */
  readonly dependencies?: readonly ResourceDescriptor[];
  readonly invocationId: string;
  readonly startedOn: string;
  readonly finishedOn: string;
  /** Step link records etc.; see {@link linkByproduct}. */
  readonly byproducts?: readonly ResourceDescriptor[];
}

export interface ProvenancePredicate {
  readonly buildDefinition: {
    readonly buildType: string;
    readonly externalParameters: Pick<ProvenanceInput, 'repository' | 'ref' | 'commit' | 'pipelineFile' | 'parameters' | 'trigger'>;
    readonly internalParameters: Readonly<Record<string, JsonValue>>;
    readonly resolvedDependencies: readonly ResourceDescriptor[];
  };
  readonly runDetails: {
    readonly builder: { readonly id: string; readonly version?: Readonly<Record<string, string>> };
    readonly metadata: { readonly invocationId: string; readonly startedOn: string; readonly finishedOn: string };
    readonly byproducts: readonly ResourceDescriptor[];
  };
}

/** SLSA Provenance v1 for a pipeline run; the first resolved dependency is the source at its commit. */
export function provenancePredicate(input: ProvenanceInput): ProvenancePredicate {
  const c = new Checker();
  c.text('repository', input.repository);
  c.text('ref', input.ref, 1024);
  if (typeof input.commit !== 'string' || !GIT_OBJECT_RE.test(input.commit)) c.fail('commit', 'must be a full commit id (40 or 64 lowercase hex)');
  c.text('pipelineFile.path', input.pipelineFile.path);
  if (typeof input.pipelineFile.digest.sha256 !== 'string' || !SHA256_RE.test(input.pipelineFile.digest.sha256)) c.fail('pipelineFile.digest.sha256', 'must be 64 lowercase hex characters');
  c.text('invocationId', input.invocationId);
  c.timestamp('startedOn', input.startedOn);
  c.timestamp('finishedOn', input.finishedOn);
  if (c.issues.length === 0 && Date.parse(input.finishedOn) < Date.parse(input.startedOn)) c.fail('finishedOn', 'is before startedOn');
  c.throwIfAny('provenance input');
  const predicate: ProvenancePredicate = {
    buildDefinition: {
      buildType: input.buildType ?? AIRLOCK_PIPELINE_BUILD_TYPE,
      externalParameters: {
        repository: input.repository,
        ref: input.ref,
        commit: input.commit,
        pipelineFile: { path: input.pipelineFile.path, digest: { sha256: input.pipelineFile.digest.sha256 } },
        parameters: input.parameters,
        trigger: input.trigger,
      },
      internalParameters: input.internalParameters ?? {},
      // A repository given as a local path becomes a file: URI (the field must be an absolute URI).
      resolvedDependencies: [{ uri: `git+${/^[a-z][a-z0-9+.-]*:/i.test(input.repository) ? input.repository : `file://${input.repository}`}@${input.ref}`, digest: { gitCommit: input.commit } }, ...(input.dependencies ?? [])],
    },
    runDetails: {
      builder: { id: input.builderId, ...(input.builderVersion === undefined ? {} : { version: input.builderVersion }) },
      metadata: { invocationId: input.invocationId, startedOn: input.startedOn, finishedOn: input.finishedOn },
      byproducts: input.byproducts ?? [],
    },
  };
  return checkedPredicate(c, 'provenance input', predicate, checkProvenance) as ProvenancePredicate;
}

/**
 * A predicate as plain JSON, checked by its own validator: whatever an input carries that is not
 * JSON (a function, a Date, a cycle) or breaks the predicate's rules throws, naming `label`.
 */
function checkedPredicate(c: Checker, label: string, predicate: object, check: (c: Checker, value: Record<string, unknown>) => void): unknown {
  const copied = plainJson(c, 'predicate', predicate) as Record<string, unknown> | undefined;
  c.throwIfAny(label);
  if (copied !== undefined) check(c, copied);
  c.throwIfAny(label);
  return copied;
}

/**
 * A signed link record as a provenance byproduct: the envelope's RFC 8785 bytes as `content`
 * and their SHA-256 as `digest`, so a verifier can check the link with its own key.
 */
export function linkByproduct(name: string, linkEnvelope: object): ResourceDescriptor {
  const text = canonicalize(linkEnvelope);
  if (text === undefined) throw new ValidationError('invalid link envelope: it cannot be serialised', [{ path: 'linkEnvelope', message: 'cannot be serialised' }]);
  const bytes = Buffer.from(text, 'utf8');
  return { name, digest: { sha256: createHash('sha256').update(bytes).digest('hex') }, mediaType: DSSE_ENVELOPE_MEDIA_TYPE, content: bytes.toString('base64') };
}

// --- test results ------------------------------------------------------------------------

export interface TestResultPredicate {
  readonly result: 'PASSED' | 'WARNED' | 'FAILED';
  readonly configuration: readonly ResourceDescriptor[];
  readonly url?: string;
  readonly passedTests: readonly string[];
  readonly warnedTests: readonly string[];
  readonly failedTests: readonly string[];
}

export function testResultPredicate(input: TestResultPredicate): TestResultPredicate {
  return checkedPredicate(new Checker(), 'test result', {
    result: input.result,
    configuration: input.configuration,
    ...(input.url === undefined ? {} : { url: input.url }),
    passedTests: input.passedTests,
    warnedTests: input.warnedTests,
    failedTests: input.failedTests,
  }, checkTestResult) as TestResultPredicate;
}

// --- verification summary ----------------------------------------------------------------

export interface VsaInput {
  readonly verifierId: string;
  readonly timeVerified: string;
  readonly resourceUri: string;
  readonly policy: { readonly uri?: string; readonly digest?: DigestSet };
  readonly inputAttestations: readonly { readonly uri?: string; readonly digest: DigestSet }[];
  readonly verificationResult: 'PASSED' | 'FAILED';
  readonly verifiedLevels: readonly string[];
  readonly slsaVersion: '1.0';
}

export interface VsaPredicate {
  readonly verifier: { readonly id: string };
  readonly timeVerified: string;
  readonly resourceUri: string;
  readonly policy: { readonly uri?: string; readonly digest?: DigestSet };
  readonly inputAttestations: readonly { readonly uri?: string; readonly digest: DigestSet }[];
  readonly verificationResult: 'PASSED' | 'FAILED';
  readonly verifiedLevels: readonly string[];
  readonly slsaVersion: '1.0';
}

export function vsaPredicate(input: VsaInput): VsaPredicate {
  return checkedPredicate(new Checker(), 'verification summary', {
    verifier: { id: input.verifierId },
    timeVerified: input.timeVerified,
    resourceUri: input.resourceUri,
    policy: input.policy,
    inputAttestations: input.inputAttestations,
    verificationResult: input.verificationResult,
    verifiedLevels: input.verifiedLevels,
    slsaVersion: input.slsaVersion,
  }, checkVsa) as VsaPredicate;
}
