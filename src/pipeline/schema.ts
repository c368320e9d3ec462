/**
 * The JSON Schema (draft 2020-12) of `airlock.yaml`, published by `airlock schema pipeline`
 * for editors and CI. Built from the same constants as the validator (rules.ts). What a
 * schema cannot say (YAML duplicate keys, the stage graph, inputs, declared environments, the
 * timeout's 6h ceiling, a secret named twice in its two forms or clashing with `env`, duration
 * limits, cron fields and time zones, what environment rules refer to, owners a rule needs) is
 * checked by `airlock lint` only.
 */
import type {
  APPROVAL_KEYS,
  ENVIRONMENT_EVIDENCE_KEYS,
  ENVIRONMENT_KEYS,
  FREEZE_KEYS,
  HEALTH_KEYS,
  SECRET_KEYS,
  STAGE_KEYS,
  STEP_KEYS,
  TOP_KEYS} from './rules.js';
import {
  BRANCH_PATTERN,
  CRON_PATTERN,
  DURATION_PATTERN,
  EVIDENCE_KINDS,
  FREEZE_REQUIRED,
  HEALTH_URL_PATTERN,
  LABEL_PATTERN,
  MAX_APPROVALS,
  MAX_RETRIES,
  MAX_STAGES,
  MAX_STEPS_PER_STAGE,
  NAME_PATTERN,
  OWNER_PATTERN,
  PATH_PATTERN,
  SECRET_FILE_SUFFIX,
  SECRET_INJECTIONS,
  SECRET_REQUIRED,
  SECRETS_DIR,
  SEMVER_RANGE_PATTERN,
  STAGE_REQUIRED,
  STEP_REQUIRED,
  TIMEOUT_PATTERN,
  TOOL_PATTERN,
  TOP_REQUIRED,
  VARIABLE_NOT_RESERVED_PATTERN,
  WINDOW_REQUIRED,
} from './rules.js';

type Schema = Record<string, unknown>;

const name = (description: string): Schema => ({ type: 'string', pattern: NAME_PATTERN, description });
const strings = (items: Schema, description: string): Schema => ({ type: 'array', uniqueItems: true, items, description });

function step(): Schema {
  const properties: Record<(typeof STEP_KEYS)[number], Schema> = {
    name: name('unique within the stage'),
    run: { type: 'string', pattern: '\\S', description: 'one shell command, run with sh -c' },
    env: {
      type: ['object', 'null'],
      description: 'the whole environment of the step besides AIRLOCK_* (an allowlist)',
      propertyNames: { pattern: VARIABLE_NOT_RESERVED_PATTERN },
      additionalProperties: { type: 'string' },
    },
    timeout: { type: 'string', pattern: TIMEOUT_PATTERN, description: '1s to 6h, for example 30s, 10m, 1h30m; default 10m' },
    'runs-on': strings({ type: 'string', pattern: LABEL_PATTERN }, 'runner labels the step needs; default none'),
    inputs: strings({ $ref: '#/$defs/path' }, 'files produced by one step of a stage this stage (transitively) needs'),
    outputs: strings({ $ref: '#/$defs/path' }, 'files this step produces'),
    requires: {
      type: ['object', 'null'],
      description: 'tools the runner must have: name -> semver range or "*"',
      propertyNames: { pattern: TOOL_PATTERN },
      additionalProperties: { type: 'string', pattern: SEMVER_RANGE_PATTERN },
    },
    network: { type: 'boolean', description: 'network access for the step; default false' },
    retries: { type: 'integer', minimum: 0, maximum: MAX_RETRIES, description: 'extra attempts after a failure; > 0 needs idempotent: true' },
    idempotent: { type: 'boolean', description: 'running the step twice is harmless; default false' },
    secrets: strings({ $ref: '#/$defs/secret' }, 'secrets the step receives, released when it starts'),
    evidence: { enum: [...EVIDENCE_KINDS], description: 'the step produces test evidence' },
  };
  return {
    type: 'object',
    additionalProperties: false,
    required: [...STEP_REQUIRED],
    properties,
    // Retrying a step with side effects could apply them twice.
    if: { required: ['retries'], properties: { retries: { minimum: 1 } } },
    then: { required: ['idempotent'], properties: { idempotent: { const: true } } },
  };
}

/**
 * A name (an environment variable) or `{ name, as }`. One schema for both forms without
 * anyOf: `pattern` applies only to strings, the object keywords only to objects.
 */
function secret(): Schema {
  const properties: Record<(typeof SECRET_KEYS)[number], Schema> = {
    name: { type: 'string', pattern: VARIABLE_NOT_RESERVED_PATTERN, description: 'the secret, as stored with airlock secret set' },
    as: { enum: [...SECRET_INJECTIONS], description: `env (default): the variable NAME holds the value; file: a mode-0400 file in ${SECRETS_DIR}/ holds it and NAME${SECRET_FILE_SUFFIX} its path` },
  };
  return {
    type: ['string', 'object'],
    description: `NAME for an environment variable, or { name: NAME, as: file } for a file whose path is in NAME${SECRET_FILE_SUFFIX}`,
    pattern: VARIABLE_NOT_RESERVED_PATTERN,
    additionalProperties: false,
    required: [...SECRET_REQUIRED],
    properties,
  };
}

const duration = (description: string): Schema => ({ type: 'string', pattern: DURATION_PATTERN, description });

/** An environment and its protection rules. */
function environment(): Schema {
  const approvals: Record<(typeof APPROVAL_KEYS)[number], Schema> = {
    required: { type: 'integer', minimum: 0, maximum: MAX_APPROVALS, description: 'distinct approvers needed; default 1 when protected, else 0 (at least 1 when protected)' },
    roles: { ...strings({ type: 'string', pattern: OWNER_PATTERN }, 'an approver must hold one of these roles; default any'), minItems: 1 },
    owners: { type: 'boolean', description: 'one approver must be an owner of the environment; default false' },
    validFor: duration('how long an approval holds, 1m to 7d; default 4h'),
    justification: { type: 'boolean', description: 'approvals and denials need a justification; default true' },
    rollback: { type: 'boolean', description: 'a rollback to a release this environment already ran needs approvals too; default false (it was approved when it first shipped)' },
  };
  const freeze: Record<(typeof FREEZE_KEYS)[number], Schema> = {
    cron: { type: 'string', pattern: CRON_PATTERN, description: '5 fields: minute hour day-of-month month day-of-week; each occurrence starts the period' },
    timezone: { type: 'string', description: 'IANA time zone the cron fields are read in, e.g. Europe/Berlin' },
    duration: duration('how long each occurrence lasts, 1m to 31d'),
    reason: { type: 'string', pattern: '\\S', description: 'why deployments are frozen' },
  };
  const evidence: Record<(typeof ENVIRONMENT_EVIDENCE_KEYS)[number], Schema> = {
    tests: strings(name('a stage'), 'stages whose test results must be PASSED'),
    environments: strings(name('an environment'), 'environments the same artifacts must have been deployed to first'),
    provenance: { type: 'boolean', description: 'provenance must verify; default true' },
  };
  const health: Record<(typeof HEALTH_KEYS)[number], Schema> = {
    command: { type: 'string', pattern: '\\S', description: 'shell command; exit 0 is healthy' },
    url: { type: 'string', pattern: HEALTH_URL_PATTERN, description: 'http(s) URL, no user or password' },
    status: { type: 'integer', minimum: 100, maximum: 599, description: 'expected HTTP status; default 200' },
    timeout: duration('1s to 10m; default 10s'),
  };
  const properties: Record<(typeof ENVIRONMENT_KEYS)[number], Schema> = {
    protected: { type: 'boolean', description: 'default false' },
    owners: { ...strings({ type: 'string', pattern: OWNER_PATTERN }, 'users or roles who answer for the environment'), minItems: 1 },
    approvals: { type: ['object', 'null'], additionalProperties: false, properties: approvals },
    branches: { ...strings({ type: 'string', pattern: BRANCH_PATTERN }, 'branch globs allowed to deploy (* within a segment, ** across); default any'), minItems: 1 },
    windows: { type: 'array', items: { $ref: '#/$defs/window' }, description: 'deployments only while one is active; default always' },
    freezes: { type: 'array', items: { $ref: '#/$defs/freeze' }, description: 'deployments refused while one is active' },
    evidence: { type: ['object', 'null'], additionalProperties: false, properties: evidence },
    health: {
      type: 'object',
      additionalProperties: false,
      properties: health,
      description: '{ command } or { url, status, timeout }',
      oneOf: [{ required: ['command'] }, { required: ['url'] }],
      if: { required: ['status'] },
      then: { required: ['url'] },
    },
    overrides: { type: 'string', pattern: `^(?=.*\\.ya?ml$)${PATH_PATTERN.slice(1)}`, description: 'repository path of a YAML file with this environment\'s values' },
    secrets: strings({ type: 'string', pattern: VARIABLE_NOT_RESERVED_PATTERN }, 'secrets the deployed service receives as environment variables, released only to a deployment that passed its gates'),
  };
  const { reason: _reason, ...window } = freeze;
  return {
    environment: { type: ['object', 'null'], additionalProperties: false, properties },
    window: { type: 'object', additionalProperties: false, required: [...WINDOW_REQUIRED], properties: window },
    freeze: { type: 'object', additionalProperties: false, required: [...FREEZE_REQUIRED], properties: freeze },
  };
}

/** The JSON Schema of the pipeline file. A fresh object on each call. */
export function pipelineJsonSchema(): Schema {
  const stage: Record<(typeof STAGE_KEYS)[number], Schema> = {
    needs: strings({ type: 'string' }, 'stages that must succeed before this one starts'),
    environment: { type: 'string', description: 'a declared environment this stage deploys to' },
    steps: { type: 'array', minItems: 1, maxItems: MAX_STEPS_PER_STAGE, items: { $ref: '#/$defs/step' }, description: 'run in order' },
  };
  const top: Record<(typeof TOP_KEYS)[number], Schema> = {
    version: { type: 'integer', const: 1 },
    pipeline: name('the pipeline name'),
    owners: { ...strings({ type: 'string', pattern: OWNER_PATTERN }, 'users or roles who answer for the pipeline'), minItems: 1 },
    environments: {
      type: ['object', 'null'],
      propertyNames: { pattern: NAME_PATTERN },
      additionalProperties: { $ref: '#/$defs/environment' },
    },
    stages: {
      type: 'object',
      minProperties: 1,
      maxProperties: MAX_STAGES,
      propertyNames: { pattern: NAME_PATTERN },
      additionalProperties: { $ref: '#/$defs/stage' },
    },
  };
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'urn:airlock:schema:pipeline:1',
    title: 'Airlock pipeline file (airlock.yaml), version 1',
    description: 'See docs/pipeline.md. `airlock lint` also checks the stage graph, inputs, environments, owners and hard-coded credentials.',
    type: 'object',
    additionalProperties: false,
    required: [...TOP_REQUIRED],
    properties: top,
    $defs: {
      ...environment(),
      stage: { type: 'object', additionalProperties: false, required: [...STAGE_REQUIRED], properties: stage },
      step: step(),
      secret: secret(),
      path: { type: 'string', pattern: PATH_PATTERN, description: `workspace-relative file path in normal form (no .., no leading /, not under ${SECRETS_DIR}/)` },
    },
  };
}
