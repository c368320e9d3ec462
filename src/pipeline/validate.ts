/**
 * The structural pass: walk the yaml Document by hand so that every problem carries the
 * position of the node it is about, check types, keys and value formats, apply defaults, and
 * build a draft the graph pass (graph.ts) finishes.
 */
import { isMap, isScalar, isSeq } from 'yaml';
import type { Node as YamlNode, Scalar } from 'yaml';
import type { Problems, Source } from './source.js';
import { CORE_TAGS, nodeOffset } from './source.js';
import {
  APPROVAL_KEYS,
  BRANCH_PATTERN,
  DEFAULT_APPROVAL_VALID_SECONDS,
  DEFAULT_HEALTH_STATUS,
  DEFAULT_HEALTH_TIMEOUT_SECONDS,
  DEFAULT_TIMEOUT_SECONDS,
  ENVIRONMENT_EVIDENCE_KEYS,
  ENVIRONMENT_KEYS,
  FREEZE_KEYS,
  FREEZE_REQUIRED,
  HEALTH_KEYS,
  HEALTH_URL_PATTERN,
  MAX_APPROVAL_VALID_SECONDS,
  MAX_APPROVALS,
  MAX_HEALTH_TIMEOUT_SECONDS,
  MAX_SCHEDULE_SECONDS,
  MIN_APPROVAL_VALID_SECONDS,
  MIN_SCHEDULE_SECONDS,
  OVERRIDES_EXTENSION_PATTERN,
  WINDOW_KEYS,
  WINDOW_REQUIRED,
  EVIDENCE_KINDS,
  LABEL_PATTERN,
  MAX_RETRIES,
  MAX_STAGES,
  MAX_STEPS_PER_STAGE,
  MAX_TIMEOUT_SECONDS,
  NAME_PATTERN,
  OWNER_PATTERN,
  RESERVED_VARIABLE_PREFIX,
  SECRET_FILE_SUFFIX,
  SECRET_INJECTIONS,
  SECRET_KEYS,
  SECRET_REQUIRED,
  SECRETS_DIR,
  SEMVER_RANGE_PATTERN,
  STAGE_KEYS,
  STAGE_REQUIRED,
  STEP_KEYS,
  STEP_REQUIRED,
  SUPPORTED_VERSIONS,
  TOOL_PATTERN,
  TOP_KEYS,
  TOP_REQUIRED,
  VARIABLE_PATTERN,
  durationSeconds,
  matches,
  normalisePathHint,
  pathProblem,
  timeoutSeconds,
} from './rules.js';
import { cronProblem, timezoneProblem } from './schedule.js';
import { closest } from './suggest.js';
import type { ApprovalRules, EnvironmentDefinition, Freeze, HealthCheck, Schedule, SecretUse, StepDefinition } from './types.js';

type Value = YamlNode | null | undefined;

/** A value with the node it came from, for positions in later passes. */
export interface Located<T> {
  readonly value: T;
  readonly node: Value;
  readonly path: string;
}

export interface DraftStep {
  readonly definition: StepDefinition;
  readonly path: string;
  readonly inputs: readonly Located<string>[];
  readonly outputs: readonly Located<string>[];
}

export interface DraftStage {
  readonly name: string;
  readonly keyNode: Scalar;
  readonly path: string;
  readonly needs: readonly Located<string>[];
  readonly environment: Located<string> | undefined;
  readonly steps: readonly DraftStep[];
}

/** An environment with the nodes its cross-references need (environments.ts checks them). */
export interface DraftEnvironment {
  readonly name: string;
  readonly keyNode: Scalar;
  readonly path: string;
  readonly definition: EnvironmentDefinition;
  /** `evidence.tests`: stages that must exist and produce test evidence. */
  readonly tests: readonly Located<string>[];
  /** `evidence.environments`: declared environments deployed first (no cycles). */
  readonly after: readonly Located<string>[];
}

/** What the structural pass could make of the file; fields it could not read are absent. */
export interface Draft {
  readonly name: string | undefined;
  readonly owners: readonly string[];
  readonly environments: ReadonlyMap<string, EnvironmentDefinition>;
  /** The same environments in file order, with positions. */
  readonly environmentDrafts: readonly DraftEnvironment[];
  readonly stages: readonly DraftStage[];
}

interface Entry {
  readonly key: Scalar;
  readonly value: Value;
  readonly path: string;
}

/** `a.b`, `a["odd key"]`, `a[0]`. */
export function childPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  const part = /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? key : JSON.stringify(key);
  if (parent === '') return part.startsWith('"') ? `[${part}]` : part;
  return part.startsWith('"') ? `${parent}[${part}]` : `${parent}.${part}`;
}

const WHERE: Readonly<Record<string, string>> = {
  top: 'the top level',
  stage: 'a stage',
  step: 'a step',
  environment: 'an environment',
  approvals: "an environment's `approvals`",
  window: 'a change window',
  freeze: 'a freeze',
  'environment-evidence': "an environment's `evidence`",
  health: "an environment's `health`",
  secret: 'a secret entry',
};
/** Where each key is known, for "`x` belongs in …" hints (the first level listing it wins). */
const KEYS_OF: Readonly<Record<string, readonly string[]>> = {
  top: TOP_KEYS,
  stage: STAGE_KEYS,
  step: STEP_KEYS,
  environment: ENVIRONMENT_KEYS,
  approvals: APPROVAL_KEYS,
  window: WINDOW_KEYS,
  freeze: FREEZE_KEYS,
  'environment-evidence': ENVIRONMENT_EVIDENCE_KEYS,
  health: HEALTH_KEYS,
  secret: SECRET_KEYS,
};

/** `600` -> `10m`, `604800` -> `7d`: the largest unit that divides it. */
function formatDuration(seconds: number): string {
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60]] as const) if (seconds % size === 0) return `${seconds / size}${unit}`;
  return `${seconds}s`;
}

/** Why a health-check URL is unusable, or undefined. Never quotes the URL: it may hold a password. */
function urlProblem(text: string): string | undefined {
  if (!matches(HEALTH_URL_PATTERN, text)) return 'is not an absolute http:// or https:// URL';
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'is not a valid URL';
  }
  if (url.username !== '' || url.password !== '') return 'contains a user name or password';
  return undefined;
}

const OWNER_RULE = 'a user, service account or role name: lower-case letters, digits, ".", "_" or "-" (2 to 64 characters)';
const TIMEZONE_HINT = 'use an IANA time zone name such as Europe/Berlin, America/New_York or UTC';

function isNullScalar(node: Value): boolean {
  return node === null || node === undefined || (isScalar(node) && node.value === null);
}

class Walker {
  constructor(
    private readonly source: Source,
    private readonly problems: Problems,
  ) {}

  /** Where to report a node: an empty value (`key:`) is reported at its key. */
  private at(node: Value, anchor: Value, path: string, code: string, message: string, hint: string): void {
    const empty = node === null || node === undefined || (isScalar(node) && node.range != null && node.range[0] === node.range[1]);
    this.problems.at(empty ? anchor : node, path, code, message, hint, nodeOffset(anchor) ?? 0);
  }

  private sourceOf(node: Value): string {
    const range = node?.range;
    return range === undefined || range === null ? '' : this.source.text.slice(range[0], range[1]);
  }

  private describe(node: Value): string {
    if (isNullScalar(node)) return 'empty';
    if (isMap(node)) return 'a map';
    if (isSeq(node)) return 'a list';
    if (isScalar(node)) {
      const v = node.value;
      if (typeof v === 'string') return 'a string';
      if (typeof v === 'number') return 'a number';
      if (typeof v === 'boolean') return `the boolean ${String(v)}`;
    }
    return 'an alias or unsupported value';
  }

  private wrongType(node: Value, anchor: Value, path: string, expected: string, hint?: string): void {
    // Aliases and non-core tags were reported by readSource; a second problem would only repeat it.
    if (node !== null && node !== undefined && !isMap(node) && !isSeq(node) && !isScalar(node)) return;
    if ((isScalar(node) || isMap(node) || isSeq(node)) && node.tag !== undefined && !CORE_TAGS.has(node.tag)) return;
    let fix = hint;
    if (fix === undefined) {
      if (expected === 'a string' && isScalar(node) && node.value !== null) fix = `quote it: "${this.sourceOf(node).replace(/"/g, '\\"')}"`;
      else if (isNullScalar(node)) fix = `give it a value (${expected}) or remove the key`;
      else fix = `write ${expected} here (docs/pipeline.md)`;
    }
    this.at(node, anchor, path, 'wrong_type', `${path || 'the file'} must be ${expected}, not ${this.describe(node)}`, fix);
  }

  string(node: Value, anchor: Value, path: string): string | undefined {
    if (isScalar(node) && typeof node.value === 'string') return node.value;
    this.wrongType(node, anchor, path, 'a string');
    return undefined;
  }

  boolean(node: Value, anchor: Value, path: string): boolean | undefined {
    if (isScalar(node) && typeof node.value === 'boolean') return node.value;
    this.wrongType(node, anchor, path, 'true or false', isScalar(node) && typeof node.value === 'string' ? 'write true or false without quotes (YAML 1.2: yes/no/on/off are strings)' : undefined);
    return undefined;
  }

  integer(node: Value, anchor: Value, path: string): number | undefined {
    if (isScalar(node) && typeof node.value === 'number' && Number.isSafeInteger(node.value)) return node.value;
    this.wrongType(node, anchor, path, 'a whole number', isScalar(node) && typeof node.value === 'string' ? 'write the number without quotes' : undefined);
    return undefined;
  }

  /** A string matching `pattern`, else an `invalid_name` problem. */
  named(node: Value, anchor: Value, path: string, pattern: string, what: string, rule: string): string | undefined {
    const value = this.string(node, anchor, path);
    if (value === undefined) return undefined;
    if (!matches(pattern, value)) {
      this.at(node, anchor, path, 'invalid_name', `${what} ${JSON.stringify(value)} is not valid`, `use ${rule}`);
      return undefined;
    }
    return value;
  }

  /** Environment variable or secret name: `^[A-Z_][A-Z0-9_]*$`, not `AIRLOCK_*`. */
  variable(node: Value, anchor: Value, path: string, what: string): string | undefined {
    const value = this.named(node, anchor, path, VARIABLE_PATTERN, what, 'upper-case letters, digits and _, not starting with a digit (for example NPM_TOKEN), at most 128 characters');
    if (value?.startsWith(RESERVED_VARIABLE_PREFIX) === true) {
      this.at(node, anchor, path, 'reserved_name', `${what} ${value} uses the reserved prefix ${RESERVED_VARIABLE_PREFIX}`, `rename it: ${RESERVED_VARIABLE_PREFIX}* variables are set by Airlock itself and cannot be declared`);
      return undefined;
    }
    return value;
  }

  /** The pairs of a map, keys checked (strings, unique, known). A null value counts as an empty map. */
  entries(node: Value, anchor: Value, path: string, opts: { known?: readonly string[]; level?: string; duplicateCode?: string; what?: string } = {}): Entry[] | undefined {
    if (isNullScalar(node)) return [];
    if (!isMap(node)) {
      this.wrongType(node, anchor, path, 'a map (key: value lines)');
      return undefined;
    }
    const seen = new Map<string, Scalar>();
    const out: Entry[] = [];
    for (const pair of node.items) {
      const key = pair.key as Value;
      if (!isScalar(key) || typeof key.value !== 'string') {
        this.at(key, node, path, 'wrong_type', `the keys of ${path || 'the file'} must be strings, not ${this.describe(key)}`, 'quote the key');
        continue;
      }
      const name = key.value;
      const entryPath = childPath(path, name);
      const first = seen.get(name);
      if (first !== undefined) {
        const firstLine = this.problems.lineOf(first);
        const what = opts.what ?? 'key';
        this.problems.at(key, entryPath, opts.duplicateCode ?? 'duplicate_key', `${what} ${JSON.stringify(name)} is defined twice (first on line ${firstLine})`, `remove or rename one of them: YAML maps cannot repeat a ${what}`);
        continue;
      }
      seen.set(name, key);
      if (opts.known !== undefined && !opts.known.includes(name)) {
        this.problems.at(key, entryPath, 'unknown_key', `unknown key ${JSON.stringify(name)} in ${WHERE[opts.level ?? ''] ?? (path || 'the file')}`, this.unknownKeyHint(name, opts.known, opts.level));
        continue;
      }
      out.push({ key, value: pair.value as Value, path: entryPath });
    }
    return out;
  }

  private unknownKeyHint(name: string, known: readonly string[], level: string | undefined): string {
    const guess = closest(name, known);
    if (guess !== undefined) return `did you mean \`${guess}\`?`;
    for (const [other, keys] of Object.entries(KEYS_OF)) {
      if (other !== level && keys.includes(name)) return `\`${name}\` belongs in ${WHERE[other] ?? other}, not ${WHERE[level ?? ''] ?? 'here'}`;
    }
    return `known keys here: ${known.join(', ')}`;
  }

  required(entries: readonly Entry[], required: readonly string[], anchor: Value, path: string, level: string): void {
    for (const key of required) {
      if (!entries.some((e) => e.key.value === key)) {
        this.problems.at(anchor, childPath(path, key), 'missing_key', `${WHERE[level] ?? path} is missing \`${key}\``, `add \`${key}:\` (docs/pipeline.md)`);
      }
    }
  }

  /** The items of a list; `each` reads one item. Repeated values are reported as `duplicate_entry`. */
  list<T>(node: Value, anchor: Value, path: string, each: (item: Value, path: string) => T | undefined, opts: { nonEmpty?: string; unique?: boolean; keyOf?: (value: T) => string } = {}): Located<T>[] | undefined {
    if (!isSeq(node)) {
      const single = isScalar(node) && typeof node.value === 'string' ? `write a list: [${this.sourceOf(node)}]` : undefined;
      this.wrongType(node, anchor, path, 'a list', single);
      return undefined;
    }
    const out: Located<T>[] = [];
    const seen = new Map<unknown, number>();
    node.items.forEach((raw, index) => {
      const item = raw as Value;
      const itemPath = childPath(path, index);
      const value = each(item, itemPath);
      if (value === undefined) return;
      if (opts.unique === true) {
        const key = opts.keyOf === undefined ? value : opts.keyOf(value);
        const first = seen.get(key);
        if (first !== undefined) {
          this.problems.at(item, itemPath, 'duplicate_entry', `${JSON.stringify(key)} is listed twice in ${path} (also at index ${first})`, 'remove the repeated entry');
          return;
        }
        seen.set(key, index);
      }
      out.push({ value, node: item, path: itemPath });
    });
    if (opts.nonEmpty !== undefined && out.length === 0 && node.items.length === 0) {
      this.at(node, anchor, path, 'empty', `${path} is empty`, opts.nonEmpty);
    }
    return out;
  }

  // --- the file ------------------------------------------------------------------------------

  pipeline(): Draft {
    const doc = this.source.doc;
    const root = doc?.contents as Value;
    const draft: { name: string | undefined; owners: string[]; environments: Map<string, EnvironmentDefinition>; environmentDrafts: DraftEnvironment[]; stages: DraftStage[] } = {
      name: undefined,
      owners: [],
      environments: new Map(),
      environmentDrafts: [],
      stages: [],
    };
    if (isNullScalar(root) && !isScalar(root)) {
      this.problems.atOffset(0, '', 'missing_key', 'the file is empty', 'start from the example in docs/pipeline.md (`version: 1`, `pipeline:`, `owners:`, `stages:`)');
      return draft;
    }
    const entries = this.entries(root, root, '', { known: TOP_KEYS, level: 'top' });
    if (entries === undefined) return draft;
    this.required(entries, TOP_REQUIRED, root, '', 'top');
    for (const e of entries) {
      switch (e.key.value) {
        case 'version': {
          const v = this.integer(e.value, e.key, e.path);
          if (v !== undefined && !(SUPPORTED_VERSIONS as readonly number[]).includes(v)) {
            this.at(e.value, e.key, e.path, 'unsupported_version', `version ${v} is not supported`, `this Airlock reads version ${SUPPORTED_VERSIONS.join(', ')}`);
          }
          break;
        }
        case 'pipeline':
          draft.name = this.named(e.value, e.key, e.path, NAME_PATTERN, 'the pipeline name', 'a lower-case letter, then lower-case letters, digits or "-" (at most 63 characters)');
          break;
        case 'owners':
          draft.owners =
            this.list(e.value, e.key, e.path, (item, p) => this.named(item, e.key, p, OWNER_PATTERN, 'owner', OWNER_RULE), {
              nonEmpty: 'name at least one owner (a user or a role): someone must answer for this pipeline',
              unique: true,
            })?.map((o) => o.value) ?? [];
          break;
        case 'environments':
          for (const env of this.environments(e)) {
            draft.environments.set(env.name, env.definition);
            draft.environmentDrafts.push(env);
          }
          break;
        case 'stages':
          draft.stages = this.stages(e);
          break;
        default:
          break;
      }
    }
    return draft;
  }

  private environments(e: Entry): DraftEnvironment[] {
    const envs = this.entries(e.value, e.key, e.path, { what: 'environment', duplicateCode: 'duplicate_name' });
    return (envs ?? []).map((env) => this.environment(env));
  }

  private environment(env: Entry): DraftEnvironment {
    this.named(env.key, env.key, env.path, NAME_PATTERN, 'environment name', 'a lower-case letter, then lower-case letters, digits or "-" (at most 63 characters)');
    const name = String(env.key.value);
    const settings = this.entries(env.value, env.key, env.path, { known: ENVIRONMENT_KEYS, level: 'environment' }) ?? [];
    let isProtected = false;
    let owners: string[] = [];
    let approvals: { rules: Partial<ApprovalRules>; required?: Entry; owners?: Entry } = { rules: {} };
    let branches: string[] = [];
    let windows: Schedule[] = [];
    let freezes: Freeze[] = [];
    let evidence: { tests: Located<string>[]; after: Located<string>[]; provenance: boolean } = { tests: [], after: [], provenance: true };
    let health: HealthCheck | undefined;
    let overrides: string | undefined;
    let secrets: string[] = [];
    for (const s of settings) {
      switch (s.key.value) {
        case 'protected':
          isProtected = this.boolean(s.value, s.key, s.path) ?? false;
          break;
        case 'owners':
          owners = (this.list(s.value, s.key, s.path, (item, p) => this.named(item, s.key, p, OWNER_PATTERN, 'owner', OWNER_RULE), { nonEmpty: 'name at least one owner (a user or a role), or remove the key', unique: true }) ?? []).map((o) => o.value);
          break;
        case 'approvals':
          approvals = this.approvals(s);
          break;
        case 'branches':
          branches = (this.list(s.value, s.key, s.path, (item, p) => this.branch(item, s.key, p), { nonEmpty: 'list at least one branch, or remove `branches` to allow deployments from any branch', unique: true }) ?? []).map((b) => b.value);
          break;
        case 'windows':
          windows = (this.list(s.value, s.key, s.path, (item, p) => this.schedule(item, s.key, p, 'window')) ?? []).map((w) => w.value);
          break;
        case 'freezes':
          freezes = (this.list(s.value, s.key, s.path, (item, p) => this.schedule(item, s.key, p, 'freeze')) ?? []).flatMap((f) => ('reason' in f.value ? [f.value] : []));
          break;
        case 'evidence':
          evidence = this.environmentEvidence(s);
          break;
        case 'health':
          health = this.health(s);
          break;
        case 'overrides':
          overrides = this.overrides(s);
          break;
        case 'secrets':
          secrets = (this.list(s.value, s.key, s.path, (item, p) => this.variable(item, s.key, p, 'secret name'), { nonEmpty: 'name at least one secret, or remove `secrets`', unique: true }) ?? []).map((v) => v.value);
          break;
        default:
          break;
      }
    }
    const rules = approvals.rules;
    // "Nobody ships to production alone": a protected environment always needs an approver.
    if (isProtected && rules.required === 0 && approvals.required !== undefined) {
      this.at(approvals.required.value, approvals.required.key, approvals.required.path, 'out_of_range', 'a protected environment needs at least 1 approval', 'set `required:` to 1 or more, or remove it (a protected environment defaults to 1)');
    }
    if (rules.owners === true && owners.length === 0 && approvals.owners !== undefined) {
      this.at(approvals.owners.value, approvals.owners.key, approvals.owners.path, 'no_owner', `approvals.owners: true needs owners, but environment ${name} has none`, `add \`owners: [...]\` to environment ${name}, or remove \`owners: true\` from its approvals`);
    }
    const definition: EnvironmentDefinition = Object.freeze({
      protected: isProtected,
      owners: Object.freeze(owners),
      approvals: Object.freeze({
        required: rules.required ?? (isProtected ? 1 : 0),
        roles: Object.freeze([...(rules.roles ?? [])]),
        owners: rules.owners ?? false,
        validForSeconds: rules.validForSeconds ?? DEFAULT_APPROVAL_VALID_SECONDS,
        justification: rules.justification ?? true,
        rollback: rules.rollback ?? false,
      }),
      branches: Object.freeze(branches),
      windows: Object.freeze(windows),
      freezes: Object.freeze(freezes),
      evidence: Object.freeze({ tests: Object.freeze(evidence.tests.map((t) => t.value)), environments: Object.freeze(evidence.after.map((a) => a.value)), provenance: evidence.provenance }),
      health,
      overrides,
      secrets: Object.freeze(secrets),
    });
    return { name, keyNode: env.key, path: env.path, definition, tests: evidence.tests, after: evidence.after };
  }

  /** A duration string (`30m`, `4h`, `2d`) from `min` to `max` seconds, else `invalid_duration`. */
  private duration(node: Value, anchor: Value, path: string, min: number, max: number): number | undefined {
    const range = `from ${formatDuration(min)} to ${formatDuration(max)}`;
    if (isScalar(node) && typeof node.value === 'number') {
      this.wrongType(node, anchor, path, 'a duration', `add a unit: a duration ${range} such as 30s, 10m, 4h or 2d`);
      return undefined;
    }
    const text = this.string(node, anchor, path);
    if (text === undefined) return undefined;
    const seconds = durationSeconds(text);
    if (seconds === undefined || seconds < min || seconds > max) {
      const why = seconds === undefined ? `${JSON.stringify(text)} is not a duration` : `${text} is ${seconds < min ? `shorter than ${formatDuration(min)}` : `longer than ${formatDuration(max)}`}`;
      this.at(node, anchor, path, 'invalid_duration', `${path}: ${why}`, `write a duration ${range}: days, hours, minutes, seconds in that order (30s, 10m, 4h, 1h30m, 2d)`);
      return undefined;
    }
    return seconds;
  }

  private approvals(e: Entry): { rules: Partial<ApprovalRules>; required?: Entry; owners?: Entry } {
    const out: { rules: { -readonly [K in keyof ApprovalRules]?: ApprovalRules[K] }; required?: Entry; owners?: Entry } = { rules: {} };
    for (const f of this.entries(e.value, e.key, e.path, { known: APPROVAL_KEYS, level: 'approvals' }) ?? []) {
      switch (f.key.value) {
        case 'required': {
          const n = this.integer(f.value, f.key, f.path);
          if (n !== undefined && (n < 0 || n > MAX_APPROVALS)) this.at(f.value, f.key, f.path, 'out_of_range', `required: ${n} is out of range`, `use 0 to ${MAX_APPROVALS} distinct approvers`);
          else if (n !== undefined) {
            out.rules.required = n;
            out.required = f;
          }
          break;
        }
        case 'roles':
          out.rules.roles = (this.list(f.value, f.key, f.path, (item, p) => this.named(item, f.key, p, OWNER_PATTERN, 'role', 'a role name: lower-case letters, digits, ".", "_" or "-" (2 to 64 characters)'), { nonEmpty: 'list at least one role, or remove `roles` to accept approvers of any role', unique: true }) ?? []).map((r) => r.value);
          break;
        case 'owners': {
          const b = this.boolean(f.value, f.key, f.path);
          if (b !== undefined) {
            out.rules.owners = b;
            out.owners = f;
          }
          break;
        }
        case 'validFor': {
          const seconds = this.duration(f.value, f.key, f.path, MIN_APPROVAL_VALID_SECONDS, MAX_APPROVAL_VALID_SECONDS);
          if (seconds !== undefined) out.rules.validForSeconds = seconds;
          break;
        }
        case 'justification': {
          const b = this.boolean(f.value, f.key, f.path);
          if (b !== undefined) out.rules.justification = b;
          break;
        }
        case 'rollback': {
          const b = this.boolean(f.value, f.key, f.path);
          if (b !== undefined) out.rules.rollback = b;
          break;
        }
        default:
          break;
      }
    }
    return out;
  }

  private branch(node: Value, anchor: Value, path: string): string | undefined {
    const value = this.string(node, anchor, path);
    if (value === undefined || matches(BRANCH_PATTERN, value)) return value;
    const stripped = value.replace(/^refs\/heads\//, '');
    const hint = stripped !== value && matches(BRANCH_PATTERN, stripped) ? `write the branch name without refs/heads/: ${stripped}` : 'write a branch name or glob such as main, release/* or hotfix/** (`*` matches within a segment, `**` across segments)';
    this.at(node, anchor, path, 'invalid_branch', `branch pattern ${JSON.stringify(value)} is not valid`, hint);
    return undefined;
  }

  /** One change window or recurring freeze: `{ cron, timezone, duration }` (+ `reason` for a freeze). */
  private schedule(node: Value, anchor: Value, path: string, level: 'window' | 'freeze'): Schedule | Freeze | undefined {
    if (!isMap(node)) {
      this.wrongType(node, anchor, path, 'a map', `write { cron: "0 9 * * 1-5", timezone: Europe/Berlin, duration: 8h${level === 'freeze' ? ', reason: …' : ''} }`);
      return undefined;
    }
    const fields = this.entries(node, node, path, { known: level === 'window' ? WINDOW_KEYS : FREEZE_KEYS, level }) ?? [];
    this.required(fields, level === 'window' ? WINDOW_REQUIRED : FREEZE_REQUIRED, node, path, level);
    let cron: Entry | undefined;
    let cronText: string | undefined;
    let timezone: string | undefined;
    let timezoneOk = true;
    let duration: number | undefined;
    let reason: string | undefined;
    for (const f of fields) {
      switch (f.key.value) {
        case 'cron':
          cron = f;
          cronText = this.string(f.value, f.key, f.path);
          break;
        case 'timezone': {
          timezone = this.string(f.value, f.key, f.path);
          const why = timezone === undefined ? undefined : timezoneProblem(timezone);
          if (why !== undefined) this.at(f.value, f.key, f.path, 'invalid_timezone', `timezone ${why}`, TIMEZONE_HINT);
          timezoneOk = timezone !== undefined && why === undefined;
          break;
        }
        case 'duration':
          duration = this.duration(f.value, f.key, f.path, MIN_SCHEDULE_SECONDS, MAX_SCHEDULE_SECONDS);
          break;
        case 'reason':
          reason = this.string(f.value, f.key, f.path);
          if (reason?.trim() === '') {
            this.at(f.value, f.key, f.path, 'empty', 'the freeze reason is empty', 'say why deployments are frozen (it is shown to whoever is refused)');
            reason = undefined;
          }
          break;
        default:
          break;
      }
    }
    let cronOk = false;
    if (cron !== undefined && cronText !== undefined) {
      // The fields are read in the window's time zone; an unknown zone was reported above.
      const why = cronProblem(cronText, timezoneOk && timezone !== undefined ? timezone : 'UTC');
      if (why !== undefined) this.at(cron.value, cron.key, cron.path, 'invalid_cron', `${cron.path}: ${why}`, 'write 5 fields, minute hour day-of-month month day-of-week: "0 9 * * 1-5" with duration: 8h is weekdays 9:00 to 17:00');
      cronOk = why === undefined;
    }
    if (!cronOk || !timezoneOk || timezone === undefined || cronText === undefined || duration === undefined) return undefined;
    const base = { cron: cronText.trim().split(/\s+/).join(' '), timezone, durationSeconds: duration };
    if (level === 'window') return Object.freeze(base);
    return reason === undefined ? undefined : Object.freeze({ ...base, reason });
  }

  private environmentEvidence(e: Entry): { tests: Located<string>[]; after: Located<string>[]; provenance: boolean } {
    const out = { tests: [] as Located<string>[], after: [] as Located<string>[], provenance: true };
    for (const f of this.entries(e.value, e.key, e.path, { known: ENVIRONMENT_EVIDENCE_KEYS, level: 'environment-evidence' }) ?? []) {
      switch (f.key.value) {
        case 'tests':
          out.tests = this.list(f.value, f.key, f.path, (item, p) => this.string(item, f.key, p), { unique: true }) ?? [];
          break;
        case 'environments':
          out.after = this.list(f.value, f.key, f.path, (item, p) => this.string(item, f.key, p), { unique: true }) ?? [];
          break;
        case 'provenance':
          out.provenance = this.boolean(f.value, f.key, f.path) ?? true;
          break;
        default:
          break;
      }
    }
    return out;
  }

  /** `{ command }` or `{ url, status, timeout }`: exactly one of command and url. */
  private health(e: Entry): HealthCheck | undefined {
    const fields = this.entries(e.value, e.key, e.path, { known: HEALTH_KEYS, level: 'health' });
    if (fields === undefined) return undefined;
    const find = (key: string): Entry | undefined => fields.find((f) => f.key.value === key);
    const command = find('command');
    const url = find('url');
    const statusEntry = find('status');
    if (command === undefined && url === undefined) {
      this.at(e.value, e.key, e.path, 'missing_key', 'health needs `command` or `url`', 'write { command: ./healthcheck.sh } or { url: "http://127.0.0.1:8080/health", status: 200, timeout: 10s }');
      return undefined;
    }
    if (command !== undefined && url !== undefined) {
      const later = (nodeOffset(url.key) ?? 0) > (nodeOffset(command.key) ?? 0) ? url : command;
      this.problems.at(later.key, later.path, 'conflicting_keys', 'health has both `command` and `url`', 'keep one: a health check is either a command or an HTTP request');
      return undefined;
    }
    if (command !== undefined && statusEntry !== undefined) {
      this.problems.at(statusEntry.key, statusEntry.path, 'conflicting_keys', '`status` applies to a `url` health check, not a `command`', 'remove `status`: a command is healthy when it exits 0');
      return undefined;
    }
    let ok = true;
    let timeout = DEFAULT_HEALTH_TIMEOUT_SECONDS;
    const timeoutEntry = find('timeout');
    if (timeoutEntry !== undefined) {
      const seconds = this.duration(timeoutEntry.value, timeoutEntry.key, timeoutEntry.path, 1, MAX_HEALTH_TIMEOUT_SECONDS);
      if (seconds === undefined) ok = false;
      else timeout = seconds;
    }
    if (command !== undefined) {
      const text = this.string(command.value, command.key, command.path);
      if (text?.trim() === '') this.at(command.value, command.key, command.path, 'empty', 'the health command is empty', 'write the shell command that checks the deployment (exit 0 is healthy)');
      return ok && text !== undefined && text.trim() !== '' ? Object.freeze({ kind: 'command' as const, command: text, timeoutSeconds: timeout }) : undefined;
    }
    if (url === undefined) return undefined;
    let status = DEFAULT_HEALTH_STATUS;
    if (statusEntry !== undefined) {
      const n = this.integer(statusEntry.value, statusEntry.key, statusEntry.path);
      if (n !== undefined && (n < 100 || n > 599)) this.at(statusEntry.value, statusEntry.key, statusEntry.path, 'out_of_range', `status ${n} is not an HTTP status`, 'use the status a healthy deployment answers with, 100 to 599 (default 200)');
      if (n === undefined || n < 100 || n > 599) ok = false;
      else status = n;
    }
    const text = this.string(url.value, url.key, url.path);
    // `{port}` stands for the port the deployed service was started on (docs/pipeline.md).
    const why = text === undefined ? undefined : urlProblem(text.replaceAll('{port}', '1'));
    if (text !== undefined && why !== undefined) {
      // Not echoed: a URL with a password in it must not be repeated in logs.
      this.at(url.value, url.key, url.path, 'invalid_url', `health.url ${why}`, why.includes('password') ? 'remove the user and password: a health URL is stored and shown; check an endpoint that needs no credentials' : 'write an absolute http:// or https:// URL, for example "http://127.0.0.1:8080/health"');
    }
    return ok && text !== undefined && why === undefined ? Object.freeze({ kind: 'http' as const, url: text, status, timeoutSeconds: timeout }) : undefined;
  }

  private overrides(e: Entry): string | undefined {
    const value = this.string(e.value, e.key, e.path);
    if (value === undefined) return undefined;
    const why = pathProblem(value) ?? (matches(OVERRIDES_EXTENSION_PATTERN, value) ? undefined : 'is not a .yaml or .yml file');
    if (why === undefined) return value;
    const fixed = normalisePathHint(value);
    this.at(e.value, e.key, e.path, 'invalid_path', `overrides path ${JSON.stringify(value)} ${why}`, why.includes('yaml') ? 'name the YAML file that holds this environment\'s values, for example deploy/production.yaml' : `write the file's path relative to the repository root, in normal form${fixed === '' || fixed === value ? '' : `: ${fixed}`}`);
    return undefined;
  }

  private stages(e: Entry): DraftStage[] {
    const stages = this.entries(e.value, e.key, e.path, { what: 'stage', duplicateCode: 'duplicate_name' });
    if (stages === undefined) return [];
    if (stages.length === 0) this.at(e.value, e.key, e.path, 'empty', 'the pipeline has no stages', 'add at least one stage with one step');
    if (stages.length > MAX_STAGES) {
      this.problems.at(stages[MAX_STAGES]?.key, e.path, 'too_many', `the pipeline has ${stages.length} stages; the limit is ${MAX_STAGES}`, 'merge stages or split the pipeline');
    }
    const out: DraftStage[] = [];
    for (const s of stages.slice(0, MAX_STAGES)) {
      this.named(s.key, s.key, s.path, NAME_PATTERN, 'stage name', 'a lower-case letter, then lower-case letters, digits or "-" (at most 63 characters)');
      const name = String(s.key.value);
      const fields = this.entries(s.value, s.key, s.path, { known: STAGE_KEYS, level: 'stage' });
      if (fields === undefined) continue;
      this.required(fields, STAGE_REQUIRED, s.key, s.path, 'stage');
      let needs: Located<string>[] = [];
      let environment: Located<string> | undefined;
      let steps: DraftStep[] = [];
      for (const f of fields) {
        switch (f.key.value) {
          case 'needs':
            needs = this.list(f.value, f.key, f.path, (item, p) => this.string(item, f.key, p), { unique: true }) ?? [];
            break;
          case 'environment': {
            const env = this.string(f.value, f.key, f.path);
            if (env !== undefined) environment = { value: env, node: f.value, path: f.path };
            break;
          }
          case 'steps':
            steps = this.steps(f);
            break;
          default:
            break;
        }
      }
      out.push({ name, keyNode: s.key, path: s.path, needs, environment, steps });
    }
    return out;
  }

  private steps(f: Entry): DraftStep[] {
    const items =
      this.list(f.value, f.key, f.path, (item, p) => this.step(item, p), {
        nonEmpty: 'add at least one step (`- name: …` with `run: …`)',
      }) ?? [];
    if (items.length > MAX_STEPS_PER_STAGE) {
      this.problems.at(items[MAX_STEPS_PER_STAGE]?.node, f.path, 'too_many', `the stage has ${items.length} steps; the limit is ${MAX_STEPS_PER_STAGE}`, 'split the stage');
    }
    const seen = new Map<string, Located<DraftStep>>();
    const out: DraftStep[] = [];
    for (const item of items) {
      const name = item.value.definition.name;
      const first = name === '' ? undefined : seen.get(name);
      if (first !== undefined) {
        const nameNode = isMap(item.node) ? (item.node.get('name', true) as Value) : item.node;
        this.problems.at(nameNode, childPath(item.path, 'name'), 'duplicate_name', `two steps of this stage are named ${JSON.stringify(name)} (also ${first.path})`, 'give each step of a stage its own name: runs, logs and attestations refer to steps by name');
        continue;
      }
      seen.set(name, item);
      out.push(item.value);
    }
    return out;
  }

  private step(node: Value, path: string): DraftStep | undefined {
    if (isNullScalar(node)) {
      this.problems.at(node, path, 'wrong_type', `${path} is empty: a step must be a map`, 'write the step as `- name: …` with `run: …` below it');
      return undefined;
    }
    const fields = this.entries(node, node, path, { known: STEP_KEYS, level: 'step' });
    if (fields === undefined) return undefined;
    this.required(fields, STEP_REQUIRED, node, path, 'step');
    let name: string | undefined;
    let run: string | undefined;
    let env: [string, string][] = [];
    let timeout = DEFAULT_TIMEOUT_SECONDS;
    let retries = 0;
    let retriesEntry: Entry | undefined;
    let idempotent = false;
    let runsOn: string[] = [];
    let inputs: Located<string>[] = [];
    let outputs: Located<string>[] = [];
    let secrets: Located<SecretUse>[] = [];
    let requires: [string, string][] = [];
    let network = false;
    let evidence: 'test' | undefined;
    for (const f of fields) {
      switch (f.key.value) {
        case 'name':
          this.named(f.value, f.key, f.path, NAME_PATTERN, 'step name', 'a lower-case letter, then lower-case letters, digits or "-" (at most 63 characters)');
          // Keep even an invalid name: duplicates and the graph pass still need to see the step.
          name = isScalar(f.value) && typeof f.value.value === 'string' ? f.value.value : undefined;
          break;
        case 'run':
          run = this.string(f.value, f.key, f.path);
          if (run?.trim() === '') this.at(f.value, f.key, f.path, 'empty', 'the command is empty', 'write the shell command the step runs (it is run with sh -c)');
          break;
        case 'env':
          env = this.env(f);
          break;
        case 'timeout': {
          const text = this.string(f.value, f.key, f.path);
          if (text === undefined) break;
          const seconds = timeoutSeconds(text);
          if (seconds === undefined || seconds < 1 || seconds > MAX_TIMEOUT_SECONDS) {
            const why = seconds === undefined ? `${JSON.stringify(text)} is not a duration` : `${text} is ${seconds < 1 ? 'zero' : 'longer than the 6h limit'}`;
            this.at(f.value, f.key, f.path, 'invalid_timeout', `timeout ${why}`, 'write a duration from 1s to 6h: 30s, 10m, 1h, 1h30m (default 10m)');
          } else timeout = seconds;
          break;
        }
        case 'retries': {
          const n = this.integer(f.value, f.key, f.path);
          if (n !== undefined && (n < 0 || n > MAX_RETRIES)) {
            this.at(f.value, f.key, f.path, 'out_of_range', `retries ${n} is out of range`, `use 0 to ${MAX_RETRIES}`);
          } else if (n !== undefined) {
            retries = n;
            retriesEntry = f;
          }
          break;
        }
        case 'idempotent':
          idempotent = this.boolean(f.value, f.key, f.path) ?? false;
          break;
        case 'network':
          network = this.boolean(f.value, f.key, f.path) ?? false;
          break;
        case 'runs-on':
          runsOn = (this.list(f.value, f.key, f.path, (item, p) => this.named(item, f.key, p, LABEL_PATTERN, 'runner label', 'lower-case letters, digits, ".", "_" or "-"'), { unique: true }) ?? []).map((l) => l.value);
          break;
        case 'inputs':
          inputs = this.paths(f);
          break;
        case 'outputs':
          outputs = this.paths(f);
          break;
        case 'secrets':
          secrets = this.list(f.value, f.key, f.path, (item, p) => this.secret(item, f.key, p), { unique: true, keyOf: (s) => s.name }) ?? [];
          break;
        case 'requires':
          requires = this.requires(f);
          break;
        case 'evidence': {
          const kind = this.string(f.value, f.key, f.path);
          if (kind !== undefined && !(EVIDENCE_KINDS as readonly string[]).includes(kind)) {
            this.at(f.value, f.key, f.path, 'invalid_value', `evidence ${JSON.stringify(kind)} is not a known kind`, `use one of: ${EVIDENCE_KINDS.join(', ')} (or leave it out)`);
          } else if (kind === 'test') evidence = kind;
          break;
        }
        default:
          break;
      }
    }
    // Retrying a step that is not idempotent could apply its side effects twice (a double deploy).
    if (retriesEntry !== undefined && retries > 0 && !idempotent) {
      this.at(retriesEntry.value, retriesEntry.key, retriesEntry.path, 'retries_not_idempotent', `retries: ${retries} needs idempotent: true`, 'add `idempotent: true` if running the step twice is harmless, or remove `retries`');
    }
    this.secretConflicts(secrets, env);
    // The definition is only used when the whole file is valid; otherwise the draft still feeds
    // the graph pass, so a step with a bad field does not also make its outputs disappear.
    if (!isMap(node)) return undefined;
    name ??= '';
    const definition: StepDefinition = Object.freeze({
      name,
      run: run ?? '',
      env: Object.freeze(Object.fromEntries(env)),
      timeoutSeconds: timeout,
      retries,
      idempotent,
      runsOn: Object.freeze(runsOn),
      inputs: Object.freeze(inputs.map((i) => i.value)),
      outputs: Object.freeze(outputs.map((o) => o.value)),
      secrets: Object.freeze(secrets.map((s) => s.value)),
      requires: Object.freeze(Object.fromEntries(requires)),
      network,
      evidence,
    });
    return { definition, path, inputs, outputs };
  }

  /** One `secrets:` entry: `NAME` (an env variable) or `{ name: NAME, as: env | file }`. */
  private secret(node: Value, anchor: Value, path: string): SecretUse | undefined {
    if (!isMap(node)) {
      if (isScalar(node) && !isNullScalar(node)) {
        const name = this.variable(node, anchor, path, 'secret name');
        return name === undefined ? undefined : Object.freeze({ name, as: 'env' as const });
      }
      this.wrongType(node, anchor, path, 'a secret name or a map with `name` and `as`', 'write NAME (an environment variable) or { name: NAME, as: file }');
      return undefined;
    }
    const fields = this.entries(node, node, path, { known: SECRET_KEYS, level: 'secret' });
    if (fields === undefined) return undefined;
    this.required(fields, SECRET_REQUIRED, node, path, 'secret');
    let name: string | undefined;
    let as: SecretUse['as'] = 'env';
    let ok = true;
    for (const f of fields) {
      if (f.key.value === 'name') {
        name = this.variable(f.value, f.key, f.path, 'secret name');
      } else if (f.key.value === 'as') {
        const how = this.string(f.value, f.key, f.path);
        if (how !== undefined && (SECRET_INJECTIONS as readonly string[]).includes(how)) as = how as SecretUse['as'];
        else {
          ok = false;
          if (how !== undefined) this.at(f.value, f.key, f.path, 'invalid_value', `as: ${JSON.stringify(how)} is not a way to receive a secret`, `use one of: ${SECRET_INJECTIONS.join(', ')} (env is the default; file puts the value in ${SECRETS_DIR}/NAME and its path in NAME${SECRET_FILE_SUFFIX})`);
        }
      }
    }
    return name === undefined || !ok ? undefined : Object.freeze({ name, as });
  }

  /** The variable a secret sets must not be set twice: by `env:` or by another secret. */
  private secretConflicts(secrets: readonly Located<SecretUse>[], env: readonly [string, string][]): void {
    const setBy = new Map<string, string>();
    for (const s of secrets) {
      const variable = s.value.as === 'file' ? `${s.value.name}${SECRET_FILE_SUFFIX}` : s.value.name;
      const how = s.value.as === 'file' ? `the path of file secret ${s.value.name}` : `the value of secret ${s.value.name}`;
      if (env.some(([k]) => k === variable)) {
        this.problems.at(s.node, s.path, 'env_secret_conflict', `${variable} is both ${how} and a plain env variable of this step`, `remove ${variable} from \`env:\`; ${how} is injected under that name`);
        continue;
      }
      const other = setBy.get(variable);
      if (other !== undefined) {
        this.problems.at(s.node, s.path, 'secret_variable_conflict', `${variable} would hold both ${how} and ${other}`, `rename one secret, or receive both the same way: a file secret NAME sets NAME${SECRET_FILE_SUFFIX}`);
        continue;
      }
      setBy.set(variable, how);
    }
  }

  private env(f: Entry): [string, string][] {
    const out: [string, string][] = [];
    for (const v of this.entries(f.value, f.key, f.path, { what: 'variable' }) ?? []) {
      const name = this.variable(v.key, v.key, v.path, 'variable name');
      // Not echoed in the hint: an env value may be a credential that belongs under `secrets:`.
      const value = isScalar(v.value) && typeof v.value.value === 'string' ? v.value.value : undefined;
      if (value === undefined) this.wrongType(v.value, v.key, v.path, 'a string', isScalar(v.value) && v.value.value !== null ? 'quote the value: env values are strings' : undefined);
      if (name !== undefined && value !== undefined) out.push([name, value]);
    }
    return out;
  }

  private paths(f: Entry): Located<string>[] {
    const each = (item: Value, p: string): string | undefined => {
      const value = this.string(item, f.key, p);
      if (value === undefined) return undefined;
      const why = pathProblem(value);
      if (why === undefined) return value;
      const fixed = normalisePathHint(value);
      const hint = why.includes(SECRETS_DIR)
        ? `choose a path outside ${SECRETS_DIR}/: the runner reserves it for secret files, which are never collected or replaced`
        : why.includes('..') || fixed === ''
          ? 'name a file inside the workspace, relative to its root (for example dist/app.tgz)'
          : `write it relative to the workspace root, in normal form: ${fixed}`;
      this.problems.at(item, p, 'invalid_path', `path ${JSON.stringify(value)} ${why}`, hint);
      return undefined;
    };
    return this.list(f.value, f.key, f.path, each, { unique: true }) ?? [];
  }

  private requires(f: Entry): [string, string][] {
    const out: [string, string][] = [];
    for (const t of this.entries(f.value, f.key, f.path, { what: 'tool' }) ?? []) {
      const tool = this.named(t.key, t.key, t.path, TOOL_PATTERN, 'tool name', 'lower-case letters, digits, ".", "_" or "-", starting with a letter');
      const range = this.string(t.value, t.key, t.path);
      if (range !== undefined && !matches(SEMVER_RANGE_PATTERN, range)) {
        this.at(t.value, t.key, t.path, 'invalid_range', `${JSON.stringify(range)} is not a semver range`, 'write a range such as ">=20", "^1.2.0", "~3.11", "1.x || >=2.5.0", or "*" for any version');
      } else if (tool !== undefined && range !== undefined) out.push([tool, range]);
    }
    return out;
  }
}

/** Run the structural pass over a parsed source. */
export function walkPipeline(source: Source, problems: Problems): Draft {
  return new Walker(source, problems).pipeline();
}
