/**
 * A CycloneDX SBOM from an npm lockfile, built with the CycloneDX library's models and JSON
 * serializer. Deterministic: no timestamp, components and lists sorted, and the serial number
 * a UUID v5 (RFC 9562 §5.5) of the lockfile's SHA-256 and the subject, so the same lockfile
 * and subject always give the same bytes, and a different lockfile a different serial.
 */
import { createHash } from 'node:crypto';
import { Enums, Models, Serialize, Spec } from '@cyclonedx/cyclonedx-library';
import { lockfileGraph } from './lockfile.js';
import type { PackageScope } from './lockfile.js';

/** The CycloneDX specification version of every SBOM written here. */
export const SBOM_SPEC_VERSION = '1.5';

const HASHES: Readonly<Record<string, Enums.HashAlgorithm>> = {
  sha1: Enums.HashAlgorithm['SHA-1'],
  sha256: Enums.HashAlgorithm['SHA-256'],
  sha384: Enums.HashAlgorithm['SHA-384'],
  sha512: Enums.HashAlgorithm['SHA-512'],
};

// Development dependencies build and test the artifact but are not in it: "excluded".
const SCOPES: Readonly<Record<PackageScope, Enums.ComponentScope>> = {
  required: Enums.ComponentScope.Required,
  optional: Enums.ComponentScope.Optional,
  dev: Enums.ComponentScope.Excluded,
};

/** RFC 9562 name-based UUID (version 5, SHA-1) in the URL namespace. */
function uuidV5Url(name: string): string {
  const namespace = Buffer.from('6ba7b8119dad11d180b400c04fd430c8', 'hex');
  const h = createHash('sha1').update(namespace).update(name, 'utf8').digest().subarray(0, 16);
  h[6] = ((h[6] ?? 0) & 0x0f) | 0x50;
  h[8] = ((h[8] ?? 0) & 0x3f) | 0x80;
  const hex = h.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * A CycloneDX 1.5 JSON BOM (as a parsed object) for the application `subject` whose
 * dependencies `lockfileText` (package-lock.json, lockfileVersion 2 or 3) pins. Every
 * installed package is a component with its purl, hashes from `integrity` and a scope
 * (development dependencies `excluded`, optional ones `optional`); `dependencies` is the
 * graph as Node resolves it. Throws VALIDATION_FAILED for a lockfile it cannot read.
 */
export function sbomFromLockfile(lockfileText: string, subject: { name: string; version: string }): Record<string, unknown> {
  return JSON.parse(sbomJson(lockfileText, subject)) as Record<string, unknown>;
}

/** The same BOM as {@link sbomFromLockfile}, serialised (two-space indent, sorted lists). */
export function sbomJson(lockfileText: string, subject: { name: string; version: string }): string {
  const graph = lockfileGraph(lockfileText);
  const lockDigest = createHash('sha256').update(lockfileText, 'utf8').digest('hex');
  const root = new Models.Component(Enums.ComponentType.Application, subject.name, {
    version: subject.version,
    // Not a purl: the subject is this project at a commit, not a published npm package.
    bomRef: `airlock:subject:${subject.name}@${subject.version}`,
  });
  const bom = new Models.Bom({ serialNumber: `urn:uuid:${uuidV5Url(`https://airlock.dev/sbom/npm/${lockDigest}/${encodeURIComponent(subject.name)}@${encodeURIComponent(subject.version)}`)}` });
  bom.metadata.component = root;
  bom.metadata.tools.components.add(new Models.Component(Enums.ComponentType.Application, 'airlock', { group: 'airlock.dev' }));
  const components = new Map<string, Models.Component>();
  for (const p of graph.packages) {
    const slash = p.name.startsWith('@') ? p.name.indexOf('/') : -1;
    const hashes = new Models.HashDictionary();
    for (const [alg, hex] of Object.entries(p.integrity ?? {})) {
      const algorithm = HASHES[alg];
      if (algorithm !== undefined) hashes.set(algorithm, hex);
    }
    const c = new Models.Component(Enums.ComponentType.Library, slash > 0 ? p.name.slice(slash + 1) : p.name, {
      ...(slash > 0 ? { group: p.name.slice(0, slash) } : {}),
      version: p.version,
      purl: p.purl,
      bomRef: p.purl,
      scope: SCOPES[p.scope],
      hashes,
    });
    components.set(p.purl, c);
    bom.components.add(c);
  }
  for (const p of graph.packages) {
    const c = components.get(p.purl);
    for (const d of p.dependsOn) {
      const target = components.get(d);
      if (c !== undefined && target !== undefined) c.dependencies.add(target.bomRef);
    }
  }
  for (const d of graph.root.dependsOn) {
    const target = components.get(d);
    if (target !== undefined) root.dependencies.add(target.bomRef);
  }
  const serializer = new Serialize.JsonSerializer(new Serialize.JSON.Normalize.Factory(Spec.Spec1dot5));
  return serializer.serialize(bom, { sortLists: true, space: 2 });
}
