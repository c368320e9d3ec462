/**
 * The vocabulary of the file: keys, name patterns, limits and value formats. The validator and
 * the JSON Schema (schema.ts) both read these, so they cannot drift apart.
 */

/** Larger files are refused before parsing (a pipeline file is small; this bounds parser work). */
export const MAX_FILE_BYTES = 1024 * 1024;
export const MAX_STAGES = 256;
export const MAX_STEPS_PER_STAGE = 256;
export const MAX_RETRIES = 10;
export const DEFAULT_TIMEOUT_SECONDS = 600;
export const MAX_TIMEOUT_SECONDS = 6 * 3600;
export const SUPPORTED_VERSIONS = [1] as const;

/** Pipeline, stage, step and environment names: safe in URLs, paths and Cedar entity ids. */
export const NAME_PATTERN = '^[a-z][a-z0-9-]{0,62}$';
/** Owners are users, service accounts or roles (the identity domain's name rule). */
export const OWNER_PATTERN = '^[a-z][a-z0-9._-]{1,63}$';
/** Runner labels. */
export const LABEL_PATTERN = '^[a-z0-9][a-z0-9._-]{0,62}$';
/** Tools named in `requires`. */
export const TOOL_PATTERN = '^[a-z][a-z0-9._-]{0,62}$';
/** Environment variable and secret names; `AIRLOCK_*` is Airlock's own. */
export const VARIABLE_PATTERN = '^[A-Z_][A-Z0-9_]{0,127}$';
export const RESERVED_VARIABLE_PREFIX = 'AIRLOCK_';
export const VARIABLE_NOT_RESERVED_PATTERN = '^(?!AIRLOCK_)[A-Z_][A-Z0-9_]{0,127}$';
/** `30s`, `10m`, `1h`, `1h30m`: hours, minutes, seconds in that order. */
export const TIMEOUT_PATTERN = '^(?=[0-9])(?:([0-9]{1,5})h)?(?:([0-9]{1,5})m)?(?:([0-9]{1,6})s)?$';

/**
 * A workspace-relative file path in normal form: segments separated by `/`, none empty, `.`
 * or `..`; no backslash, colon, control character or glob character; not under `.secrets/`
 * (secret files are never collected as outputs or placed as inputs).
 */
const SEGMENT = '(?!\\.\\.?(?:/|$))[^/\\\\:*?\\[\\]{}\\u0000-\\u001f\\u007f]+';
export const PATH_PATTERN = `^(?=.{1,1024}$)(?!\\.secrets(?:/|$))${SEGMENT}(?:/${SEGMENT})*$`;

// node-semver's range grammar (https://github.com/npm/node-semver#range-grammar), strict form.
const XR = '(?:[xX*]|0|[1-9][0-9]{0,8})';
const IDENT = '[0-9A-Za-z-]+(?:\\.[0-9A-Za-z-]+)*';
const PARTIAL = `v?${XR}(?:\\.${XR}(?:\\.${XR}(?:-${IDENT})?(?:\\+${IDENT})?)?)?`;
const SIMPLE = `(?:(?:<=|>=|<|>|=|~|\\^)\\s*)?${PARTIAL}`;
const RANGE = `(?:${PARTIAL} - ${PARTIAL}|${SIMPLE}(?: +${SIMPLE})*)`;
export const SEMVER_RANGE_PATTERN = `^${RANGE}(?: *\\|\\| *${RANGE})*$`;

/** `4h`, `30m`, `2d`, `1d12h`: days, hours, minutes, seconds in that order (environment rules). */
export const DURATION_PATTERN = '^(?=[0-9])(?:([0-9]{1,3})d)?(?:([0-9]{1,5})h)?(?:([0-9]{1,6})m)?(?:([0-9]{1,7})s)?$';
/**
 * Branch names and globs (`main`, `release/*`, `hotfix/**`): git's branch-name characters, `*`
 * for the glob; no segment starts with `.` or `-`, no `..`, no trailing `.`, no `refs/` prefix.
 */
const BRANCH_SEGMENT = '[A-Za-z0-9_*+@][A-Za-z0-9._*+@-]*';
export const BRANCH_PATTERN = `^(?=.{1,255}$)(?!refs/)(?!.*\\.\\.)(?!.*\\.$)${BRANCH_SEGMENT}(?:/${BRANCH_SEGMENT})*$`;
/** Five cron fields separated by blanks (the format is checked by cron-parser). */
export const CRON_PATTERN = '^\\s*\\S+(?:\\s+\\S+){4}\\s*$';
/** An absolute http(s) URL (the rest is checked with the WHATWG URL parser). */
export const HEALTH_URL_PATTERN = '^https?://[^\\s]+$';
/** An overrides file: a YAML file in the repository. */
export const OVERRIDES_EXTENSION_PATTERN = '\\.ya?ml$';

export const MAX_APPROVALS = 10;
export const DEFAULT_APPROVAL_VALID_SECONDS = 4 * 3600;
export const MIN_APPROVAL_VALID_SECONDS = 60;
export const MAX_APPROVAL_VALID_SECONDS = 7 * 86400;
export const MIN_SCHEDULE_SECONDS = 60;
export const MAX_SCHEDULE_SECONDS = 31 * 86400;
export const DEFAULT_HEALTH_TIMEOUT_SECONDS = 10;
export const MAX_HEALTH_TIMEOUT_SECONDS = 600;
export const DEFAULT_HEALTH_STATUS = 200;

export const TOP_KEYS = ['version', 'pipeline', 'owners', 'environments', 'stages'] as const;
export const TOP_REQUIRED = ['version', 'pipeline', 'owners', 'stages'] as const;
export const ENVIRONMENT_KEYS = ['protected', 'owners', 'approvals', 'branches', 'windows', 'freezes', 'evidence', 'health', 'overrides', 'secrets'] as const;
export const APPROVAL_KEYS = ['required', 'roles', 'owners', 'validFor', 'justification', 'rollback'] as const;
export const WINDOW_KEYS = ['cron', 'timezone', 'duration'] as const;
export const WINDOW_REQUIRED = ['cron', 'timezone', 'duration'] as const;
export const FREEZE_KEYS = ['cron', 'timezone', 'duration', 'reason'] as const;
export const FREEZE_REQUIRED = ['cron', 'timezone', 'duration', 'reason'] as const;
export const ENVIRONMENT_EVIDENCE_KEYS = ['tests', 'environments', 'provenance'] as const;
export const HEALTH_KEYS = ['command', 'url', 'status', 'timeout'] as const;
export const STAGE_KEYS = ['needs', 'environment', 'steps'] as const;
export const STAGE_REQUIRED = ['steps'] as const;
export const STEP_KEYS = ['name', 'run', 'env', 'timeout', 'runs-on', 'inputs', 'outputs', 'requires', 'network', 'retries', 'idempotent', 'secrets', 'evidence'] as const;
export const STEP_REQUIRED = ['name', 'run'] as const;
export const EVIDENCE_KINDS = ['test'] as const;
/** A `secrets:` entry written as a map: `{ name: TLS_KEY, as: file }`. */
export const SECRET_KEYS = ['name', 'as'] as const;
export const SECRET_REQUIRED = ['name'] as const;
/** How a step receives a secret: the variable itself, or a 0400 file whose path is in `<NAME>_FILE`. */
export const SECRET_INJECTIONS = ['env', 'file'] as const;
export const SECRET_FILE_SUFFIX = '_FILE';
/** Where the runner places file secrets; reserved, so no input or output can name a file there. */
export const SECRETS_DIR = '.secrets';

const compiled = new Map<string, RegExp>();
/** Test a value against one of the patterns above (compiled once). */
export function matches(pattern: string, value: string): boolean {
  let re = compiled.get(pattern);
  if (re === undefined) {
    re = new RegExp(pattern, 'u');
    compiled.set(pattern, re);
  }
  return re.test(value);
}

/** Seconds for a timeout string, or undefined when it is not in the `1h30m10s` form. */
export function timeoutSeconds(value: string): number | undefined {
  const m = new RegExp(TIMEOUT_PATTERN, 'u').exec(value);
  if (m === null) return undefined;
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

/** Seconds for a duration string (`2d`, `4h`, `1h30m`), or undefined when it is not one. */
export function durationSeconds(value: string): number | undefined {
  const m = new RegExp(DURATION_PATTERN, 'u').exec(value);
  if (m === null) return undefined;
  return Number(m[1] ?? 0) * 86400 + Number(m[2] ?? 0) * 3600 + Number(m[3] ?? 0) * 60 + Number(m[4] ?? 0);
}

/** Why a path is not a normal workspace-relative file path, or undefined when it is one. */
export function pathProblem(value: string): string | undefined {
  if (value === '') return 'is empty';
  if (value.startsWith('/') || /^[A-Za-z]:/.test(value)) return 'is absolute';
  if (value.includes('\\')) return 'contains a backslash';
  const segments = value.split('/');
  if (segments.includes('..')) return 'leaves the workspace (`..`)';
  if (value.endsWith('/')) return 'ends with `/` (name a file, not a directory)';
  if (segments.includes('.') || segments.includes('')) return 'is not in normal form (`./`, `//`)';
  if (/[*?[\]{}]/.test(value)) return 'contains a glob character (name each file)';
  if (value.length > 1024) return 'is longer than 1024 characters';
  if (segments[0] === SECRETS_DIR) return `is inside ${SECRETS_DIR}/, where the runner places secret files`;
  if (!matches(PATH_PATTERN, value)) return 'contains a colon or a control character';
  return undefined;
}

/** The path in normal form the author probably meant (for hints). */
export function normalisePathHint(value: string): string {
  return value
    .replace(/\\/g, '/')
    .split('/')
    .filter((s) => s !== '' && s !== '.')
    .join('/');
}
