/**
 * An environment's effective configuration: the values of its overrides file (a flat YAML map
 * of variable names to strings, versioned in the repository), their digest over RFC 8785
 * canonical JSON, and the diff between two configurations. A deployment records both, so an
 * approval can be bound to the configuration it saw.
 */
import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import { isMap, isScalar } from 'yaml';
import type { Node as YamlNode, Scalar } from 'yaml';
import { NotFoundError, ValidationError } from '../errors/index.js';
import { ALLOWABLE, findCredentials } from './credentials.js';
import { OverridesInvalidError } from './errors.js';
import { RESERVED_VARIABLE_PREFIX, VARIABLE_PATTERN, matches } from './rules.js';
import { readSource, sortProblems } from './source.js';
import type { PipelineDefinition } from './types.js';

/** The configuration a deployment to one environment gets, and its digest. */
export interface EffectiveConfig {
  /** Variable name -> value, keys in code-point order. */
  readonly config: Readonly<Record<string, string>>;
  /** `sha256:<hex>` of the RFC 8785 canonical JSON of `config`. */
  readonly digest: `sha256:${string}`;
}

/** What changed between two configurations; each list in key order. */
export interface ConfigDiff {
  readonly added: readonly { readonly key: string; readonly value: string }[];
  readonly removed: readonly { readonly key: string; readonly value: string }[];
  readonly changed: readonly { readonly key: string; readonly before: string; readonly after: string }[];
}

type Value = YamlNode | null | undefined;

const byKey = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** `sha256:<hex>` of JCS(config). */
export function configDigest(config: Readonly<Record<string, string>>): `sha256:${string}` {
  const text = canonicalize(config);
  if (text === undefined) throw new Error('unreachable: a string map always canonicalizes');
  return `sha256:${createHash('sha256').update(text, 'utf8').digest('hex')}`;
}

/**
 * Read an overrides file: a map of variable names (`^[A-Z_][A-Z0-9_]*$`, not `AIRLOCK_*`) to
 * strings. Throws OverridesInvalidError listing every problem with its line and column. A value
 * that looks like a credential is refused: the file is in the repository, and the configuration
 * and its diff are shown to approvers and recorded. Values are never quoted in problems.
 */
export function parseOverrides(text: string | Buffer, file: string): Readonly<Record<string, string>> {
  const { source, problems } = readSource(text, file);
  const values = new Map<string, string>();
  const root = source.doc?.contents as Value;
  if (source.doc !== undefined && !(isScalar(root) && root.value === null) && root !== null && root !== undefined) {
    if (!isMap(root)) {
      problems.at(root, '', 'wrong_type', 'an overrides file must be a map of variable names to strings', 'write one `NAME: "value"` line per variable');
    } else {
      const seen = new Map<string, Scalar>();
      for (const pair of root.items) {
        const key = pair.key as Value;
        const value = pair.value as Value;
        if (!isScalar(key) || typeof key.value !== 'string') {
          problems.at(key, '', 'wrong_type', 'the keys of an overrides file must be variable names', 'write NAME: "value"');
          continue;
        }
        const name = key.value;
        const first = seen.get(name);
        if (first !== undefined) {
          problems.at(key, name, 'duplicate_key', `variable ${name} is defined twice (first on line ${problems.lineOf(first)})`, 'remove one of them');
          continue;
        }
        seen.set(name, key);
        if (!matches(VARIABLE_PATTERN, name)) {
          problems.at(key, name, 'invalid_name', `variable name ${JSON.stringify(name)} is not valid`, 'use upper-case letters, digits and _, not starting with a digit (for example DATABASE_HOST), at most 128 characters');
          continue;
        }
        if (name.startsWith(RESERVED_VARIABLE_PREFIX)) {
          problems.at(key, name, 'reserved_name', `variable ${name} uses the reserved prefix ${RESERVED_VARIABLE_PREFIX}`, `rename it: ${RESERVED_VARIABLE_PREFIX}* variables are set by Airlock itself`);
          continue;
        }
        if (!isScalar(value) || typeof value.value !== 'string') {
          const scalar = isScalar(value) && value.value !== null;
          problems.at(scalar ? value : key, name, 'wrong_type', `${name} must be a string`, scalar ? 'quote the value: override values are strings' : 'give it a quoted value, or remove the line');
          continue;
        }
        const found = findCredentials(value.value, { field: 'env', name });
        const lineText = lineOf(source.text, source.lines.lineStarts, problems.lineOf(value));
        const kept = found.filter((m) => !(ALLOWABLE.has(m.kind) && lineText.includes('airlock:allow-credential')));
        if (kept.length > 0) {
          const kinds = [...new Set(kept.map((m) => m.kind))].join(', ');
          problems.at(value, name, 'hardcoded_credential', `${name} looks like a hard-coded credential (${kinds}): ${kept[0]?.redacted ?? ''}`, 'remove it from the file, store it with `airlock secret set` and declare it under the deploy step\'s `secrets:`; it is in the repository history now, so revoke and rotate it');
          continue;
        }
        values.set(name, value.value);
      }
    }
  }
  if (problems.list.length > 0) throw new OverridesInvalidError(file, sortProblems(problems.list));
  return Object.freeze(Object.fromEntries([...values].sort(([a], [b]) => byKey(a, b))));
}

function lineOf(text: string, starts: readonly number[], line: number): string {
  return text.slice(starts[line - 1] ?? 0, starts[line] ?? text.length);
}

/**
 * The effective configuration of a deployment of `pipeline` to `environment`: the values of its
 * overrides file (`overrideText`, read by the caller from the deployed commit), or none when the
 * environment declares no file. Pure; the caller records the digest and the diff.
 *
 * @example
 * const { config, digest } = effectiveConfig(pipeline, 'production', await readAt(sha, env.overrides));
 */
export function effectiveConfig(pipeline: PipelineDefinition, environment: string, overrideText?: string | Buffer): EffectiveConfig {
  const env = Object.hasOwn(pipeline.environments, environment) ? pipeline.environments[environment] : undefined;
  if (env === undefined) throw new NotFoundError(`environment ${JSON.stringify(environment)} is not declared in pipeline ${pipeline.name}`, { environment, pipeline: pipeline.name });
  // Older stored definitions predate `overrides`; treat a missing field as none declared.
  const path = (env as { overrides?: string }).overrides;
  let config: Readonly<Record<string, string>>;
  if (path === undefined) {
    if (overrideText !== undefined) {
      throw new ValidationError(`environment ${environment} declares no overrides file, but overrides were given`, [{ path: `environments.${environment}.overrides`, message: 'not declared; add `overrides: <path>` to the environment or pass none' }]);
    }
    config = Object.freeze({});
  } else {
    // A declared file that cannot be read must not silently become an empty configuration.
    if (overrideText === undefined) throw new ValidationError(`environment ${environment} declares overrides file ${path}, but its content was not given`, [{ path: `environments.${environment}.overrides`, message: `read ${path} from the deployed commit and pass its content` }]);
    config = parseOverrides(overrideText, path);
  }
  return Object.freeze({ config, digest: configDigest(config) });
}

/** What changed from `before` (undefined: the first deployment) to `after`. */
export function configDiff(before: Readonly<Record<string, string>> | undefined, after: Readonly<Record<string, string>>): ConfigDiff {
  const old = before ?? {};
  const added: { key: string; value: string }[] = [];
  const removed: { key: string; value: string }[] = [];
  const changed: { key: string; before: string; after: string }[] = [];
  for (const key of Object.keys(after).sort(byKey)) {
    const value = after[key] ?? '';
    if (!Object.hasOwn(old, key)) added.push(Object.freeze({ key, value }));
    else if (old[key] !== value) changed.push(Object.freeze({ key, before: old[key] ?? '', after: value }));
  }
  for (const key of Object.keys(old).sort(byKey)) {
    if (!Object.hasOwn(after, key)) removed.push(Object.freeze({ key, value: old[key] ?? '' }));
  }
  return Object.freeze({ added: Object.freeze(added), removed: Object.freeze(removed), changed: Object.freeze(changed) });
}
