/** Boundary checks for a job and the executor's options; every bad field is reported at once. */
import { KeyObject } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { isSha256Digest } from '../artifacts/index.js';
import { ConfigError, ValidationError } from '../errors/index.js';
import type { FieldIssue } from '../errors/index.js';
import { parseRange, RangeSyntaxError } from './semver.js';
import type { ExecutorDeps, StepJob } from './types.js';

/** Set by the executor, never by a job. */
export const RESERVED_ENV = ['PATH', 'HOME', 'TMPDIR', 'LANG'] as const;
export const FIXED_PATH = '/usr/local/bin:/usr/bin:/bin';

const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const JOB_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const TOOL_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;

/** Why `path` is not a plain workspace-relative path, or null if it is one. */
export function relativePathProblem(path: unknown): string | null {
  if (typeof path !== 'string' || path === '') return 'must be a non-empty string';
  if (path.length > 1024) return 'must be at most 1024 characters';
  if (path.includes('\0')) return 'must not contain NUL';
  if (isAbsolute(path)) return 'must be relative to the workspace';
  const parts = path.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return 'must be normalised: no empty, "." or ".." segments';
  return null;
}

function nonEmpty(value: unknown): boolean {
  return typeof value === 'string' && value.length > 0 && value.length <= 256 && !value.includes('\0');
}

/** Validate a job; throws `ValidationError` naming every offending field. */
export function validateJob(job: StepJob): void {
  const issues: FieldIssue[] = [];
  const bad = (path: string, message: string): void => {
    issues.push({ path, message });
  };
  if (typeof job.jobId !== 'string' || !JOB_ID_RE.test(job.jobId)) bad('jobId', 'must be 1-128 characters of letters, digits, ".", "_" or "-", starting with a letter or digit');
  for (const key of ['runId', 'pipeline', 'stage', 'step'] as const) {
    if (!nonEmpty(job[key])) bad(key, 'must be a non-empty string of at most 256 characters');
  }
  if (!Number.isSafeInteger(job.attempt) || job.attempt < 0) bad('attempt', 'must be a non-negative integer');
  if (typeof job.command !== 'string' || job.command.trim() === '' || job.command.includes('\0')) bad('command', 'must be a non-empty string without NUL');
  if (!Number.isSafeInteger(job.timeoutMs) || job.timeoutMs <= 0 || job.timeoutMs > 2 ** 31 - 1) bad('timeoutMs', 'must be a positive integer of milliseconds below 2^31');
  if (typeof job.network !== 'boolean') bad('network', 'must be a boolean');

  for (const [name, value] of Object.entries(job.env)) {
    if (!ENV_NAME_RE.test(name)) bad(`env.${name}`, 'name must be letters, digits and "_", not starting with a digit');
    else if ((RESERVED_ENV as readonly string[]).includes(name)) bad(`env.${name}`, 'is set by the executor and cannot be overridden');
    if (typeof value !== 'string' || value.includes('\0')) bad(`env.${name}`, 'value must be a string without NUL');
  }

  if (job.source.kind === 'dir') {
    if (typeof job.source.path !== 'string' || !isAbsolute(job.source.path)) bad('source.path', 'must be an absolute path');
  } else if ((job.source as { kind: unknown }).kind !== 'none') {
    bad('source.kind', 'must be "dir" or "none"');
  }

  const inputPaths = new Set<string>();
  job.inputs.forEach((input, i) => {
    const problem = relativePathProblem(input.path);
    if (problem !== null) bad(`inputs[${i}].path`, problem);
    else if (inputPaths.has(input.path)) bad(`inputs[${i}].path`, `duplicates another input (${input.path})`);
    inputPaths.add(input.path);
    if (!isSha256Digest(input.digest)) bad(`inputs[${i}].digest`, 'must be "sha256:" followed by 64 lower-case hex digits');
  });
  const outputPaths = new Set<string>();
  job.outputs.forEach((output, i) => {
    const problem = relativePathProblem(output);
    if (problem !== null) bad(`outputs[${i}]`, problem);
    else if (outputPaths.has(output)) bad(`outputs[${i}]`, `duplicates another output (${output})`);
    outputPaths.add(output);
  });

  for (const [tool, range] of Object.entries(job.requires)) {
    if (!TOOL_RE.test(tool)) bad(`requires.${tool}`, 'tool name must be a plain command name (letters, digits, ".", "_", "+", "-")');
    try {
      if (typeof range !== 'string') throw new RangeSyntaxError(String(range), 'not a string');
      parseRange(range);
    } catch (err) {
      bad(`requires.${tool}`, err instanceof RangeSyntaxError ? err.message : 'invalid version range');
    }
  }
  if (issues.length > 0) throw new ValidationError(`invalid step job: ${issues.map((i) => i.path).join(', ')}`, issues);
}

/** Check the executor's own options; a bad one names the setting. */
export function validateDeps(deps: ExecutorDeps): void {
  if (typeof deps.workRoot !== 'string' || !isAbsolute(deps.workRoot)) throw new ConfigError('workRoot', 'must be an absolute path');
  if (deps.maxLogBytes !== undefined && (!Number.isSafeInteger(deps.maxLogBytes) || deps.maxLogBytes < 0)) {
    throw new ConfigError('maxLogBytes', 'must be a non-negative integer');
  }
  if (deps.killGraceMs !== undefined && (!Number.isSafeInteger(deps.killGraceMs) || deps.killGraceMs < 0)) {
    throw new ConfigError('killGraceMs', 'must be a non-negative integer');
  }
  // Checked before the step runs: the in-toto link's key id comes from it (docs/intoto.md).
  const pub: unknown = (deps.signer as { publicKey?: unknown } | undefined)?.publicKey;
  if (!(pub instanceof KeyObject) || pub.asymmetricKeyType !== 'ed25519') throw new ConfigError('signer.publicKey', 'must be the Ed25519 public key of the link signer');
  const sandbox: unknown = deps.sandbox; // callers in plain JavaScript exist (the CLI's config)
  if (sandbox !== undefined && sandbox !== 'auto' && sandbox !== 'required' && sandbox !== 'off') {
    throw new ConfigError('sandbox', 'must be "auto", "required" or "off"');
  }
}
