/**
 * What a deployment ships, as one digest. An approval names this digest, so it approves exactly
 * these artifacts, this effective configuration and this commit range for this environment and
 * run: a new commit, artifact or config yields another digest and the approval no longer counts.
 */
import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import { ValidationError } from '../errors/index.js';
import type { FieldIssue } from '../errors/index.js';

/** Domain separation: a binding digest can never equal the digest of another kind of document. */
export const BINDING_TYPE = 'https://airlock.dev/delivery/binding/v1';

export interface ArtifactDigest {
  readonly path: string;
  /** `sha256:<64 hex>` */
  readonly digest: string;
}

export interface CommitRange {
  /** The commit last deployed to the environment; absent for a first deployment. */
  readonly from?: string;
  readonly to: string;
}

export interface DeploymentBinding {
  readonly environment: string;
  /** Sorted by path (UTF-16 code units), paths unique. */
  readonly digests: readonly ArtifactDigest[];
  readonly configDigest: string;
  readonly commitRange: CommitRange;
  readonly runId: string;
}

const SHA256 = /^sha256:[0-9a-f]{64}$/i;
const COMMIT = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/i;

export function isSha256Digest(value: unknown): value is string {
  return typeof value === 'string' && SHA256.test(value);
}

function nonEmpty(value: unknown): value is string {
  return typeof value === 'string' && value.trim() !== '';
}

/** Validates and normalises (lower-case hex, digests sorted by path); throws naming every bad field. */
export function makeBinding(input: DeploymentBinding): DeploymentBinding {
  const issues: FieldIssue[] = [];
  if (!nonEmpty(input.environment)) issues.push({ path: 'environment', message: 'must be a non-empty string' });
  if (!nonEmpty(input.runId)) issues.push({ path: 'runId', message: 'must be a non-empty string' });
  if (!isSha256Digest(input.configDigest)) issues.push({ path: 'configDigest', message: 'must be sha256:<64 hex digits>' });
  const range = input.commitRange as CommitRange | undefined;
  if (typeof range?.to !== 'string' || !COMMIT.test(range.to)) {
    issues.push({ path: 'commitRange.to', message: 'must be a full commit SHA (40 or 64 hex digits)' });
  }
  if (range?.from !== undefined && (typeof range.from !== 'string' || !COMMIT.test(range.from))) {
    issues.push({ path: 'commitRange.from', message: 'must be a full commit SHA (40 or 64 hex digits) or absent' });
  }
  const digests: ArtifactDigest[] = [];
  const seen = new Set<string>();
  (Array.isArray(input.digests) ? input.digests : []).forEach((raw: ArtifactDigest | null, i) => {
    const d: Partial<ArtifactDigest> = raw ?? {};
    if (!nonEmpty(d.path)) issues.push({ path: `digests[${i}].path`, message: 'must be a non-empty string' });
    else if (seen.has(d.path)) issues.push({ path: `digests[${i}].path`, message: `duplicate path ${JSON.stringify(d.path)}` });
    else seen.add(d.path);
    if (!isSha256Digest(d.digest)) issues.push({ path: `digests[${i}].digest`, message: 'must be sha256:<64 hex digits>' });
    if (nonEmpty(d.path) && isSha256Digest(d.digest)) digests.push({ path: d.path, digest: d.digest.toLowerCase() });
  });
  if (!Array.isArray(input.digests)) issues.push({ path: 'digests', message: 'must be an array' });
  if (issues.length > 0) throw new ValidationError(`invalid deployment binding: ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`, issues);
  digests.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const { from, to } = input.commitRange;
  const commitRange: CommitRange = from === undefined ? { to: to.toLowerCase() } : { from: from.toLowerCase(), to: to.toLowerCase() };
  return Object.freeze({
    environment: input.environment,
    digests: Object.freeze(digests.map((d) => Object.freeze(d))),
    configDigest: input.configDigest.toLowerCase(),
    commitRange: Object.freeze(commitRange),
    runId: input.runId,
  });
}

/** The RFC 8785 canonical JSON that is hashed (kept with the record so anyone can recompute). */
export function bindingDocument(binding: DeploymentBinding): string {
  const b = makeBinding(binding);
  const text = canonicalize({ _type: BINDING_TYPE, ...b });
  if (text === undefined) throw new TypeError('deployment binding cannot be serialised');
  return text;
}

/** `sha256:<hex>` of the canonical binding document; independent of the input order of digests. */
export function bindingDigest(binding: DeploymentBinding): string {
  return `sha256:${createHash('sha256').update(bindingDocument(binding), 'utf8').digest('hex')}`;
}
