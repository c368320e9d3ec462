/**
 * Policy text in files: the shipped default set and schema under policies/, and any directory
 * of .cedar files (for `airlock policy test --policies DIR`). Each policy carries an
 * `@id("...")` annotation that becomes its id; ids are unique across all files.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AirlockError, NotFoundError } from '../errors/index.js';
import { annotatedId, cedar, cedarMessage, lineAt } from './cedar.js';

/** Policy id -> Cedar text of exactly that one policy. */
export type PolicySource = Readonly<Record<string, string>>;

/** One file of Cedar policies. */
export interface PolicyFile {
  readonly file: string;
  readonly text: string;
}

/**
 * Ids appear in decisions, audit events and logs: keep them printable and unambiguous. The
 * leading character excludes `__proto__` and friends, which must never become object keys.
 */
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Why `id` is not a usable policy id, or undefined when it is. */
export function policyIdProblem(id: string): string | undefined {
  return ID_RE.test(id) ? undefined : 'ids are 1 to 128 characters of letters, digits, ".", "_", ":" and "-", starting with a letter or digit';
}

/**
 * Split Cedar files into one entry per policy, keyed by its `@id`. Throws POLICY_INVALID naming
 * the file and line of a syntax error, a policy without an id, a template, or a duplicate id.
 * @example parsePolicyFiles([{ file: 'extra.cedar', text: '@id("ci") permit (principal in Airlock::Role::"ci", action == Airlock::Action::"runs.read", resource);' }])
 */
export function parsePolicyFiles(texts: readonly PolicyFile[]): PolicySource {
  const out = new Map<string, string>();
  const where = new Map<string, string>();
  for (const { file, text } of texts) {
    const parts = cedar.policySetTextToParts(text);
    if (parts.type === 'failure') {
      const first = parts.errors[0];
      const at = first?.sourceLocations?.[0];
      const loc = at === undefined ? file : `${file}:${lineAt(text, at.start)}`;
      throw new AirlockError('POLICY_INVALID', `${loc}: ${first === undefined ? 'cannot parse' : cedarMessage(first)}`, {
        file,
        issues: parts.errors.map(cedarMessage),
      });
    }
    if (parts.policy_templates.length > 0) {
      throw new AirlockError('POLICY_INVALID', `${file}: policy templates (?principal, ?resource) are not supported; write static policies`, { file });
    }
    let from = 0;
    for (const policy of parts.policies) {
      // Cedar returns each policy as a slice of the file, so its position gives a line number.
      const offset = text.indexOf(policy, from);
      if (offset >= 0) from = offset + policy.length;
      const loc = offset >= 0 ? `${file}:${lineAt(text, offset)}` : file;
      const id = annotatedId(policy);
      if (id === undefined) throw new AirlockError('POLICY_INVALID', `${loc}: the policy has no @id("...") annotation; every policy needs a unique id`, { file });
      const problem = policyIdProblem(id);
      if (problem !== undefined) throw new AirlockError('POLICY_INVALID', `${loc}: invalid policy id "${id}": ${problem}`, { file, policyId: id });
      const previous = where.get(id);
      if (previous !== undefined) {
        throw new AirlockError('POLICY_INVALID', `duplicate policy id "${id}" at ${previous} and ${loc}; ids must be unique across all files`, { policyId: id });
      }
      out.set(id, policy);
      where.set(id, loc);
    }
  }
  return Object.freeze(Object.fromEntries(out));
}

/** The .cedar files of `dir` (not recursive), in name order. */
export function readPolicyFiles(dir: string): PolicyFile[] {
  const path = resolve(dir);
  let names: string[];
  try {
    names = readdirSync(path).filter((n) => n.endsWith('.cedar')).sort();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new NotFoundError(`policy directory ${path} does not exist`, { path });
    throw new AirlockError('INTERNAL', `cannot read policy directory ${path} (${code})`, { path });
  }
  if (names.length === 0) throw new AirlockError('POLICY_INVALID', `no .cedar files in ${path}`, { path });
  return names.map((name) => ({ file: name, text: readFileSync(join(path, name), 'utf8') }));
}

/** The policies of every .cedar file in `dir`. */
export function readPolicyDirectory(dir: string): PolicySource {
  return parsePolicyFiles(readPolicyFiles(dir));
}

let root: string | undefined;

/**
 * The directory holding package.json, found by walking up from this module: src/policy under
 * vitest and tsx, dist/src/policy after a build. The shipped policies/ folder sits beside it.
 */
export function packageRoot(): string {
  if (root !== undefined) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) {
      root = dir;
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new AirlockError('INTERNAL', 'cannot find the Airlock installation (no package.json above the policy module)');
    dir = parent;
  }
}

/** The shipped policies/ directory. */
export function defaultPolicyDir(): string {
  const dir = join(packageRoot(), 'policies');
  if (!existsSync(dir)) throw new AirlockError('INTERNAL', `the shipped policy directory ${dir} is missing; reinstall Airlock`, { path: dir });
  return dir;
}

let schemaText: string | undefined;

/** The Cedar schema (human format) every policy set is validated against. */
export function policySchemaText(): string {
  schemaText ??= readFileSync(join(defaultPolicyDir(), 'airlock.cedarschema'), 'utf8');
  return schemaText;
}

let defaults: PolicySource | undefined;

/** The shipped default policy set (policies/*.cedar), one entry per `@id`. */
export function defaultPolicies(): PolicySource {
  defaults ??= readPolicyDirectory(defaultPolicyDir());
  return defaults;
}
