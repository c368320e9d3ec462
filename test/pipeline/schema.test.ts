/**
 * The published JSON Schema agrees with the validator: the example files validate against
 * both, structural mistakes are refused by both, and the schema names exactly the keys the
 * validator knows. No JSON Schema library is a dependency, so a small validator for the
 * keywords this schema uses is below; a test checks the schema uses no other keyword.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { lintPipeline, parsePipeline, pipelineJsonSchema } from '../../src/pipeline/index.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Schema = Record<string, unknown>;

const SUPPORTED = new Set([
  '$schema', '$id', '$defs', '$ref', 'title', 'description',
  'type', 'const', 'enum', 'pattern', 'minimum', 'maximum',
  'properties', 'required', 'additionalProperties', 'propertyNames', 'minProperties', 'maxProperties',
  'items', 'minItems', 'maxItems', 'uniqueItems', 'if', 'then', 'oneOf',
]);

function typeOf(v: Json): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

/** Errors of `value` against `schema` (the subset of draft 2020-12 listed in SUPPORTED). */
function validate(root: Schema, schema: Schema, value: Json, path = '$'): string[] {
  const errors: string[] = [];
  const fail = (msg: string): void => {
    errors.push(`${path}: ${msg}`);
  };
  if (typeof schema.$ref === 'string') {
    const target = schema.$ref.replace('#/$defs/', '');
    return validate(root, (root.$defs as Record<string, Schema>)[target]!, value, path);
  }
  const t = typeOf(value);
  if (schema.type !== undefined) {
    const types = ([] as string[]).concat(schema.type as string | string[]);
    if (!types.includes(t) && !(t === 'integer' && types.includes('number'))) return [`${path}: expected ${types.join('|')}, got ${t}`];
  }
  if ('const' in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) fail('const');
  if (Array.isArray(schema.enum) && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) fail('enum');
  if (typeof value === 'string' && typeof schema.pattern === 'string' && !new RegExp(schema.pattern, 'u').test(value)) fail(`pattern ${schema.pattern}`);
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) fail('minimum');
    if (typeof schema.maximum === 'number' && value > schema.maximum) fail('maximum');
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === 'number' && value.length < schema.minItems) fail('minItems');
    if (typeof schema.maxItems === 'number' && value.length > schema.maxItems) fail('maxItems');
    if (schema.uniqueItems === true && new Set(value.map((v) => JSON.stringify(v))).size !== value.length) fail('uniqueItems');
    if (schema.items !== undefined) value.forEach((v, i) => errors.push(...validate(root, schema.items as Schema, v, `${path}[${i}]`)));
  }
  if (t === 'object') {
    const obj = value as Record<string, Json>;
    const keys = Object.keys(obj);
    const props = (schema.properties ?? {}) as Record<string, Schema>;
    for (const r of (schema.required ?? []) as string[]) if (!(r in obj)) fail(`required ${r}`);
    if (typeof schema.minProperties === 'number' && keys.length < schema.minProperties) fail('minProperties');
    if (typeof schema.maxProperties === 'number' && keys.length > schema.maxProperties) fail('maxProperties');
    for (const k of keys) {
      if (schema.propertyNames !== undefined) errors.push(...validate(root, schema.propertyNames as Schema, k, `${path}.${k}(name)`));
      if (k in props) errors.push(...validate(root, props[k]!, obj[k]!, `${path}.${k}`));
      else if (schema.additionalProperties === false) fail(`additional property ${k}`);
      else if (typeof schema.additionalProperties === 'object') errors.push(...validate(root, schema.additionalProperties as Schema, obj[k]!, `${path}.${k}`));
    }
  }
  if (Array.isArray(schema.oneOf)) {
    const passing = (schema.oneOf as Schema[]).filter((s) => validate(root, s, value, path).length === 0).length;
    if (passing !== 1) fail(`oneOf: ${passing} branches match`);
  }
  if (schema.if !== undefined && validate(root, schema.if as Schema, value, path).length === 0 && schema.then !== undefined) {
    errors.push(...validate(root, schema.then as Schema, value, path));
  }
  return errors;
}

const schema = pipelineJsonSchema();
const check = (text: string): string[] => validate(schema, schema, parse(text) as Json);
const fixture = (name: string): string => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

function keywords(node: unknown, out: Set<string>, inProperties = false): Set<string> {
  if (Array.isArray(node)) for (const n of node) keywords(n, out);
  else if (node !== null && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (!inProperties) out.add(k);
      // Under properties/$defs the keys are names, not keywords.
      keywords(v, out, !inProperties && (k === 'properties' || k === '$defs'));
    }
  }
  return out;
}

describe('the pipeline JSON Schema', () => {
  it('is draft 2020-12 and uses only keywords the test validator implements', () => {
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    const used = [...keywords(schema, new Set())].filter((k) => !SUPPORTED.has(k));
    expect(used).toEqual([]);
  });

  it.each(['web.airlock.yaml', 'minimal.airlock.yaml', 'release.airlock.yaml'])('%s validates against both the schema and the validator', (name) => {
    const text = fixture(name);
    expect(check(text)).toEqual([]);
    expect(lintPipeline(text)).toEqual([]);
  });

  const base = fixture('minimal.airlock.yaml');
  const variants: readonly [string, string][] = [
    ['unknown top-level key', `${base}owner: [bob]\n`],
    ['missing owners', base.replace('owners: [alice]\n', '')],
    ['empty owners', base.replace('owners: [alice]', 'owners: []')],
    ['version 2', base.replace('version: 1', 'version: 2')],
    ['bad pipeline name', base.replace('pipeline: tiny', 'pipeline: Tiny')],
    ['unknown step key', base.replace('run: make', 'run: make\n        timout: 10m')],
    ['bad timeout', base.replace('run: make', 'run: make\n        timeout: 10')],
    ['retries without idempotent', base.replace('run: make', 'run: make\n        retries: 2')],
    ['retries out of range', base.replace('run: make', 'run: make\n        retries: 11\n        idempotent: true')],
    ['absolute output', base.replace('run: make', 'run: make\n        outputs: [/abs]')],
    ['dot-dot output', base.replace('run: make', 'run: make\n        outputs: [a/../b]')],
    ['reserved env', base.replace('run: make', 'run: make\n        env: { AIRLOCK_X: "1" }')],
    ['numeric env value', base.replace('run: make', 'run: make\n        env: { PORT: 80 }')],
    ['bad secret name', base.replace('run: make', 'run: make\n        secrets: [npm_token]')],
    ['reserved secret name', base.replace('run: make', 'run: make\n        secrets: [AIRLOCK_TOKEN]')],
    ['bad secret name in the map form', base.replace('run: make', 'run: make\n        secrets: [{ name: tls-key, as: file }]')],
    ['unknown secret injection', base.replace('run: make', 'run: make\n        secrets: [{ name: TLS_KEY, as: path }]')],
    ['unknown key in a secret entry', base.replace('run: make', 'run: make\n        secrets: [{ name: TLS_KEY, mode: file }]')],
    ['secret entry without name', base.replace('run: make', 'run: make\n        secrets: [{ as: file }]')],
    ['secret entry that is a number', base.replace('run: make', 'run: make\n        secrets: [5]')],
    ['repeated secret map', base.replace('run: make', 'run: make\n        secrets: [{ name: A, as: file }, { name: A, as: file }]')],
    ['output under .secrets/', base.replace('run: make', 'run: make\n        outputs: [.secrets/key]')],
    ['bad semver range', base.replace('run: make', 'run: make\n        requires: { node: latest }')],
    ['bad evidence', base.replace('run: make', 'run: make\n        evidence: coverage')],
    ['string network', base.replace('run: make', 'run: make\n        network: "false"')],
    ['duplicate list entry', base.replace('run: make', 'run: make\n        runs-on: [a, a]')],
    ['no steps', base.replace(/ {4}steps:[\s\S]*$/, '    steps: []\n')],
    ['blank run', base.replace('run: make', 'run: "  "')],
    ['unknown environment key', `${base}environments:\n  prod: { owners: [alice], protect: true }\n`],
    ['unknown approvals key', `${base}environments:\n  prod: { owners: [alice], approvals: { quorum: 2 } }\n`],
    ['approvals out of range', `${base}environments:\n  prod: { owners: [alice], approvals: { required: 11 } }\n`],
    ['duration without a unit', `${base}environments:\n  prod: { owners: [alice], approvals: { validFor: 4 } }\n`],
    ['duration in the wrong order', `${base}environments:\n  prod: { owners: [alice], approvals: { validFor: 30m4h } }\n`],
    ['bad owner', `${base}environments:\n  prod: { owners: [alice, Bob] }\n`],
    ['empty branches', `${base}environments:\n  prod: { owners: [alice], branches: [] }\n`],
    ['branch with a space', `${base}environments:\n  prod: { owners: [alice], branches: ["release 1"] }\n`],
    ['window without timezone', `${base}environments:\n  prod: { owners: [alice], windows: [{ cron: "0 9 * * 1-5", duration: 8h }] }\n`],
    ['cron with six fields', `${base}environments:\n  prod: { owners: [alice], windows: [{ cron: "0 0 9 * * 1-5", timezone: UTC, duration: 8h }] }\n`],
    ['freeze without reason', `${base}environments:\n  prod: { owners: [alice], freezes: [{ cron: "0 0 * * 5", timezone: UTC, duration: 2d }] }\n`],
    ['unknown evidence key', `${base}environments:\n  prod: { owners: [alice], evidence: { test: [build] } }\n`],
    ['health with both forms', `${base}environments:\n  prod: { owners: [alice], health: { command: ./check, url: "http://x/" } }\n`],
    ['health with neither form', `${base}environments:\n  prod: { owners: [alice], health: { timeout: 10s } }\n`],
    ['status on a command', `${base}environments:\n  prod: { owners: [alice], health: { command: ./check, status: 200 } }\n`],
    ['ftp health url', `${base}environments:\n  prod: { owners: [alice], health: { url: "ftp://x/" } }\n`],
    ['status out of range', `${base}environments:\n  prod: { owners: [alice], health: { url: "http://x/", status: 700 } }\n`],
    ['overrides not yaml', `${base}environments:\n  prod: { owners: [alice], overrides: deploy/prod.env }\n`],
    ['overrides outside the repository', `${base}environments:\n  prod: { owners: [alice], overrides: ../prod.yaml }\n`],
  ];
  it.each(variants)('%s: refused by both', (_label, text) => {
    expect(check(text)).not.toEqual([]);
    expect(lintPipeline(text)).not.toEqual([]);
  });

  it('accepts what the validator accepts in edge cases', () => {
    for (const text of [
      base.replace('run: make', 'run: make\n        retries: 2\n        idempotent: true'),
      base.replace('run: make', 'run: make\n        retries: 0'),
      base.replace('run: make', 'run: make\n        env:\n        requires:'),
      `${base}environments:\n  staging:\n    owners: [alice]\n  prod: { protected: false, owners: [alice] }\n`,
      `${base}environments:\n  prod: { approvals:, evidence:, windows: [], freezes: [], owners: [alice] }\n`,
      `${base}environments:\n  prod: { approvals: { required: 0, validFor: 1d12h }, branches: ["**", "v*.*"], health: { url: "https://x.example/health", timeout: 1s }, owners: [alice] }\n`,
      `${base}environments:\n  prod: { windows: [{ cron: "*/15 8-18 * JAN-NOV MON-FRI", timezone: America/New_York, duration: 15m }], overrides: deploy/prod.yml, owners: [alice] }\n`,
      base.replace('run: make', 'run: make\n        outputs: [a.b/c-d_e/.hidden]'),
      base.replace('run: make', 'run: make\n        outputs: [dist/.secrets/x, .secrets-list]'),
      base.replace('run: make', 'run: make\n        secrets: [DB_PASSWORD, { name: TLS_KEY, as: file }, { name: NPM_TOKEN, as: env }, { name: API_KEY }]'),
    ]) {
      expect(check(text)).toEqual([]);
      expect(lintPipeline(text)).toEqual([]);
    }
    // Environments without owners (empty, `{}`) still validate against the schema, as they still
    // parse; only `airlock lint` flags them.
    const unowned = `${base}environments:\n  staging:\n  prod: {}\n`;
    expect(check(unowned)).toEqual([]);
    expect(() => parsePipeline(unowned)).not.toThrow();
    expect(lintPipeline(unowned).map((p) => [p.code, p.path])).toEqual([
      ['no_owner', 'environments.staging'],
      ['no_owner', 'environments.prod'],
    ]);
  });

  it('names exactly the keys the validator knows', () => {
    const defs = schema.$defs as Record<string, { properties: Record<string, unknown> }>;
    const stepKeys = Object.keys(defs.step!.properties);
    for (const key of stepKeys) {
      const text = base.replace('run: make', `run: make\n        ${key}: null`);
      // Known keys are never "unknown" (null may be the wrong type, but not an unknown key).
      expect(lintPipeline(text).map((p) => p.code)).not.toContain('unknown_key');
    }
    expect(stepKeys.sort()).toEqual(['env', 'evidence', 'idempotent', 'inputs', 'name', 'network', 'outputs', 'requires', 'retries', 'run', 'runs-on', 'secrets', 'timeout']);
    expect(Object.keys(defs.stage!.properties).sort()).toEqual(['environment', 'needs', 'steps']);
    expect(Object.keys(defs.secret!.properties).sort()).toEqual(['as', 'name']);
    for (const key of Object.keys(defs.secret!.properties)) {
      const text = base.replace('run: make', `run: make\n        secrets: [{ name: A, ${key}: null }]`);
      expect(lintPipeline(text).map((p) => p.code)).not.toContain('unknown_key');
    }
    expect(Object.keys(schema.properties as object).sort()).toEqual(['environments', 'owners', 'pipeline', 'stages', 'version']);
    const envKeys = Object.keys(defs.environment!.properties);
    expect(envKeys.sort()).toEqual(['approvals', 'branches', 'evidence', 'freezes', 'health', 'overrides', 'owners', 'protected', 'secrets', 'windows']);
    for (const key of envKeys) {
      const text = `${base}environments:\n  prod:\n    ${key}: null\n`;
      expect(lintPipeline(text).map((p) => p.code)).not.toContain('unknown_key');
    }
    const env = defs.environment!.properties as Record<string, { properties?: Record<string, unknown> }>;
    expect(Object.keys(env.approvals!.properties!).sort()).toEqual(['justification', 'owners', 'required', 'roles', 'rollback', 'validFor']);
    expect(Object.keys(env.evidence!.properties!).sort()).toEqual(['environments', 'provenance', 'tests']);
    expect(Object.keys(env.health!.properties!).sort()).toEqual(['command', 'status', 'timeout', 'url']);
    expect(Object.keys(defs.window!.properties).sort()).toEqual(['cron', 'duration', 'timezone']);
    expect(Object.keys(defs.freeze!.properties).sort()).toEqual(['cron', 'duration', 'reason', 'timezone']);
    for (const [key, sub] of [['approvals', 'required'], ['approvals', 'validFor'], ['evidence', 'tests'], ['health', 'timeout']] as const) {
      const text = `${base}environments:\n  prod:\n    ${key}: { ${sub}: null }\n`;
      expect(lintPipeline(text).map((p) => p.code)).not.toContain('unknown_key');
    }
  });
});
