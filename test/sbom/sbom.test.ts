/**
 * CycloneDX SBOMs and provenance dependencies from npm lockfiles: this repository's own
 * lockfile (real, large), a small v3 lockfile with every tricky entry (nested versions,
 * aliases, links, optional and dev packages, SHA-1 integrity, none), a v2 one, and v1 refused.
 * The BOM validates against the CycloneDX 1.5 JSON schema and is byte-for-byte deterministic.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AirlockError } from '../../src/errors/index.js';
import { SBOM_SPEC_VERSION, integrityDigests, lockfilePackages, npmPurl, sbomFromLockfile, sbomJson } from '../../src/sbom/index.js';

const ROOT = resolve(import.meta.dirname, '../..');
const fixture = (name: string) => readFileSync(join(import.meta.dirname, 'fixtures', name), 'utf8');
const MAIN = readFileSync(join(ROOT, 'package-lock.json'), 'utf8');
const subject = { name: 'shop', version: '0123456789abcdef0123456789abcdef01234567' };

interface Bom {
  specVersion: string;
  serialNumber: string;
  metadata: { component: { name: string; version: string; 'bom-ref': string }; timestamp?: string };
  components: { name: string; group?: string; version: string; purl: string; 'bom-ref': string; scope?: string; hashes?: { alg: string; content: string }[] }[];
  dependencies: { ref: string; dependsOn?: string[] }[];
}

const hexOf = (sri: string) => Buffer.from(sri.slice(sri.indexOf('-') + 1), 'base64').toString('hex');

/** The CycloneDX 1.5 JSON schema, with the library's copies of the schemas it references. */
function schemaValidator(): (doc: unknown) => { ok: boolean; errors: unknown } {
  const require = createRequire(import.meta.url);
  const dir = join(ROOT, 'node_modules/@cyclonedx/cyclonedx-library/res/schema');
  const load = (f: string) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Record<string, unknown>;
  const AjvClass = require('ajv') as new (o: object) => { addSchema(s: object, key?: string): unknown; addFormat(n: string, f: boolean): unknown; compile(s: object): ((d: unknown) => boolean) & { errors?: unknown } };
  const addFormats = require('ajv-formats') as (a: unknown) => unknown;
  const ajv = new AjvClass({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addFormat('iri-reference', true);
  ajv.addFormat('idn-email', true);
  for (const [file, ref] of [['spdx.SNAPSHOT.schema.json', 'http://cyclonedx.org/schema/spdx.SNAPSHOT.schema.json'], ['jsf-0.82.SNAPSHOT.schema.json', 'http://cyclonedx.org/schema/jsf-0.82.SNAPSHOT.schema.json']] as const) {
    const { $id: _id, ...s } = load(file);
    ajv.addSchema(s, ref);
  }
  const validate = ajv.compile(load('bom-1.5.SNAPSHOT.schema.json'));
  return (doc) => ({ ok: validate(doc), errors: validate.errors });
}

describe('lockfilePackages', () => {
  it("parses this repository's lockfile: known packages with correct purls and integrity", () => {
    const lock = JSON.parse(MAIN) as { packages: Record<string, { version: string; integrity?: string; dev?: boolean }> };
    const pkgs = lockfilePackages(MAIN);
    expect(pkgs.length).toBeGreaterThan(100);
    const byPurl = new Map(pkgs.map((p) => [p.purl, p]));
    for (const [name, key, scope] of [
      ['@cyclonedx/cyclonedx-library', 'node_modules/@cyclonedx/cyclonedx-library', 'required'],
      ['fast-xml-parser', 'node_modules/fast-xml-parser', 'required'],
      ['zod', 'node_modules/zod', 'required'],
      ['vitest', 'node_modules/vitest', 'dev'],
    ] as const) {
      const entry = lock.packages[key]!;
      const purl = `pkg:npm/${name.replace('@', '%40')}@${entry.version}`;
      expect(byPurl.get(purl), purl).toEqual({ name, version: entry.version, purl, integrity: { sha512: hexOf(entry.integrity!) }, scope });
    }
    // Sorted and unique.
    expect(pkgs.map((p) => p.purl)).toEqual([...new Set(pkgs.map((p) => p.purl))].sort());
  });

  it('resolves aliases, skips links and workspaces, merges duplicates into the widest scope', () => {
    const pkgs = lockfilePackages(fixture('lock-v3.json'));
    expect(pkgs.map((p) => [p.purl, p.scope])).toEqual([
      ['pkg:npm/%40acme/http@2.0.1', 'required'],
      ['pkg:npm/fsevents@2.3.3', 'optional'],
      ['pkg:npm/jsonstream@1.3.5', 'required'],
      ['pkg:npm/left-pad@1.3.0', 'required'],
      ['pkg:npm/left-pad@2.0.0', 'required'],
      ['pkg:npm/ms@2.1.3', 'required'],
      ['pkg:npm/semver@7.0.0%2Bbuild.5', 'dev'],
      ['pkg:npm/string-width@4.2.3', 'required'],
      ['pkg:npm/tester@0.1.0', 'dev'],
    ]);
    const http = pkgs.find((p) => p.name === '@acme/http')!;
    expect(Object.keys(http.integrity!).sort()).toEqual(['sha1', 'sha512']);
    expect(http.integrity!.sha1).toMatch(/^[0-9a-f]{40}$/);
    expect(pkgs.find((p) => p.name === 'semver')!.integrity).toBeUndefined();
    // The real name of an alias, not the name it is installed under.
    expect(pkgs.find((p) => p.purl.includes('string-width'))!.name).toBe('string-width');
    expect(lockfilePackages(fixture('lock-v2.json'))).toEqual([{ name: 'ms', version: '2.1.3', purl: 'pkg:npm/ms@2.1.3', integrity: { sha512: hexOf('sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==') }, scope: 'required' }]);
  });

  it('refuses lockfile v1 and unreadable input with messages naming the problem', () => {
    const refuse = (text: string): AirlockError => {
      try {
        lockfilePackages(text);
      } catch (err) {
        expect((err as AirlockError).code).toBe('VALIDATION_FAILED');
        return err as AirlockError;
      }
      throw new Error('expected a refusal');
    };
    expect(refuse(fixture('lock-v1.json')).message).toMatch(/lockfileVersion 1 .*npm 7 or later/);
    expect(refuse('{ not json').message).toContain('not valid JSON');
    expect(refuse('{"lockfileVersion": 3}').message).toContain('no "packages" object');
    expect(refuse('{"lockfileVersion": 9, "packages": {}}').message).toContain('lockfileVersion 9');
    expect(refuse('{"lockfileVersion": 3, "packages": {"node_modules/x": {}}}').message).toContain('has no version');
  });

  it('builds purls and digests by the specs', () => {
    expect(npmPurl('@Angular/Core', '17.0.0-rc.1')).toBe('pkg:npm/%40angular/core@17.0.0-rc.1');
    expect(npmPurl('lodash', '4.17.21')).toBe('pkg:npm/lodash@4.17.21');
    expect(integrityDigests('sha512-AAEC sha1-AAEC md5-AAEC')).toEqual({ sha512: '000102', sha1: '000102' });
    expect(integrityDigests('sha384-AAEC?opt=1')).toEqual({ sha384: '000102' });
    expect(integrityDigests('md5-AAEC')).toBeUndefined();
  });
});

describe('sbomFromLockfile', () => {
  it('writes a schema-valid CycloneDX 1.5 BOM of this repository', () => {
    const bom = sbomFromLockfile(MAIN, subject) as unknown as Bom;
    expect(SBOM_SPEC_VERSION).toBe('1.5');
    expect(bom.specVersion).toBe('1.5');
    const validate = schemaValidator();
    const verdict = validate(bom);
    expect(verdict.errors).toBeNull();
    expect(verdict.ok).toBe(true);
    // The validator is not vacuous: a bad serial number or component type fails it.
    expect(validate({ ...bom, serialNumber: 'urn:uuid:not-a-uuid' }).ok).toBe(false);
    expect(validate({ ...bom, components: [{ type: 'gadget', name: 'x' }] }).ok).toBe(false);
    const lib = bom.components.find((c) => c.purl.startsWith('pkg:npm/%40cyclonedx/cyclonedx-library@'))!;
    expect(lib).toMatchObject({ group: '@cyclonedx', name: 'cyclonedx-library', scope: 'required', 'bom-ref': lib.purl });
    expect(lib.hashes).toEqual([{ alg: 'SHA-512', content: expect.stringMatching(/^[0-9a-f]{128}$/) as string }]);
    expect(bom.components.find((c) => c.name === 'vitest')!.scope).toBe('excluded');
  });

  it('lists every package with hashes, scopes and the dependency graph as Node resolves it', () => {
    const bom = sbomFromLockfile(fixture('lock-v3.json'), subject) as unknown as Bom;
    expect(schemaValidator()(bom).ok).toBe(true);
    expect(bom.metadata.component).toMatchObject({ name: 'shop', version: subject.version });
    expect(bom.metadata.timestamp).toBeUndefined();
    expect(bom.components.map((c) => [c.purl, c.scope])).toEqual(expect.arrayContaining([['pkg:npm/fsevents@2.3.3', 'optional'], ['pkg:npm/tester@0.1.0', 'excluded'], ['pkg:npm/ms@2.1.3', 'required']]));
    expect(bom.components).toHaveLength(9);
    const deps = new Map(bom.dependencies.map((d) => [d.ref, d.dependsOn ?? []]));
    // @acme/http gets its own nested left-pad 2, not the root's 1.3.
    expect(deps.get('pkg:npm/%40acme/http@2.0.1')).toEqual(['pkg:npm/left-pad@2.0.0', 'pkg:npm/ms@2.1.3']);
    expect(deps.get('pkg:npm/tester@0.1.0')).toEqual(['pkg:npm/ms@2.1.3', 'pkg:npm/semver@7.0.0%2Bbuild.5']);
    expect(deps.get(bom.metadata.component['bom-ref'])).toEqual(['pkg:npm/%40acme/http@2.0.1', 'pkg:npm/fsevents@2.3.3', 'pkg:npm/jsonstream@1.3.5', 'pkg:npm/left-pad@1.3.0', 'pkg:npm/string-width@4.2.3', 'pkg:npm/tester@0.1.0']);
    expect(bom.components.find((c) => c.name === 'semver')!.hashes).toBeUndefined();
  });

  it('is deterministic: the same lockfile and subject give the same bytes; anything else another serial', () => {
    const a = sbomJson(fixture('lock-v3.json'), subject);
    expect(sbomJson(fixture('lock-v3.json'), subject)).toBe(a);
    const serial = (JSON.parse(a) as Bom).serialNumber;
    expect(serial).toMatch(/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect((JSON.parse(sbomJson(fixture('lock-v3.json'), { ...subject, version: 'other' })) as Bom).serialNumber).not.toBe(serial);
    expect((JSON.parse(sbomJson(fixture('lock-v3.json').replace('"2.0.1"', '"2.0.2"'), subject)) as Bom).serialNumber).not.toBe(serial);
  });

  it('refuses a v1 lockfile rather than writing an empty BOM', () => {
    expect(() => sbomFromLockfile(fixture('lock-v1.json'), subject)).toThrow(/lockfileVersion 1/);
  });
});
