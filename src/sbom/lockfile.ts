/**
 * npm package-lock.json (lockfileVersion 2 and 3) as a list of installed packages: their real
 * names (aliases resolved), versions, Package URLs, integrity digests, scope and the packages
 * each one resolves its dependencies to (Node's node_modules lookup, nearest first).
 */
import { ValidationError } from '../errors/index.js';

/** Largest lockfile read (a monorepo's lockfile is a few MB; this bounds memory, not use). */
export const MAX_LOCKFILE_BYTES = 64 * 1024 * 1024;

/** runtime: shipped and needed; optional: shipped when it installs; dev: build and test only. */
export type PackageScope = 'required' | 'optional' | 'dev';

/** One installed package, deduplicated by Package URL. */
export interface LockfilePackage {
  readonly name: string;
  readonly version: string;
  /** `pkg:npm/<name>@<version>` (purl spec: scope as namespace, `@` percent-encoded, lower case). */
  readonly purl: string;
  /** SLSA DigestSet from the SRI `integrity` (algorithm -> lower-case hex), when the lockfile has one. */
  readonly integrity?: Readonly<Record<string, string>>;
  readonly scope: PackageScope;
}

/** A package with its resolved dependency edges (purls), for the SBOM's dependency graph. */
export interface LockfileGraph {
  readonly root: { readonly name: string | undefined; readonly version: string | undefined; readonly dependsOn: readonly string[] };
  readonly packages: readonly (LockfilePackage & { readonly dependsOn: readonly string[] })[];
}

interface Entry {
  readonly name?: unknown;
  readonly version?: unknown;
  readonly integrity?: unknown;
  readonly link?: unknown;
  readonly dev?: unknown;
  readonly optional?: unknown;
  readonly devOptional?: unknown;
  readonly dependencies?: unknown;
  readonly optionalDependencies?: unknown;
  readonly peerDependencies?: unknown;
  readonly devDependencies?: unknown;
}

const SRI_ALGORITHMS: Readonly<Record<string, string>> = { sha1: 'sha1', sha256: 'sha256', sha384: 'sha384', sha512: 'sha512' };
const NM = 'node_modules/';

function invalid(message: string, path = 'package-lock.json'): ValidationError {
  return new ValidationError(message, [{ path, message }]);
}

/** purl spec: type `npm`, the scope (with its `@` percent-encoded) as namespace, lower case. */
export function npmPurl(name: string, version: string): string {
  const lower = name.toLowerCase();
  const slash = lower.startsWith('@') ? lower.indexOf('/') : -1;
  const path = slash > 0 ? `${encodeURIComponent(lower.slice(0, slash))}/${encodeURIComponent(lower.slice(slash + 1))}` : encodeURIComponent(lower);
  return `pkg:npm/${path}@${encodeURIComponent(version)}`;
}

/** SRI (`sha512-<base64> sha1-<base64>`, W3C Subresource Integrity) to a DigestSet in hex. */
export function integrityDigests(sri: string): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const token of sri.trim().split(/\s+/)) {
    const dash = token.indexOf('-');
    if (dash <= 0) continue;
    const alg = SRI_ALGORITHMS[token.slice(0, dash).toLowerCase()];
    // Options after "?" are allowed by SRI and carry nothing we use.
    const b64 = token.slice(dash + 1).split('?')[0] ?? '';
    if (alg === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) continue;
    out[alg] = Buffer.from(b64, 'base64').toString('hex');
  }
  return Object.keys(out).length === 0 ? undefined : out;
}

/** The package name a `node_modules/…` key installs (the last `node_modules/<name>`). */
function nameFromKey(key: string): string | undefined {
  const at = key.lastIndexOf(NM);
  if (at < 0) return undefined;
  return key.slice(at + NM.length) || undefined;
}

/** Node's lookup: `<from>/node_modules/<dep>`, then each ancestor's node_modules, then the root's. */
function resolveKey(packages: Readonly<Record<string, Entry>>, from: string, dep: string): string | undefined {
  let base = from;
  for (;;) {
    const candidate = `${base === '' ? '' : `${base}/`}${NM}${dep}`;
    if (Object.hasOwn(packages, candidate)) return candidate;
    if (base === '') return undefined;
    const at = base.lastIndexOf(NM);
    base = at <= 0 ? '' : base.slice(0, at - 1);
  }
}

function depNames(entry: Entry, withDev: boolean): string[] {
  const names = new Set<string>();
  for (const field of [entry.dependencies, entry.optionalDependencies, entry.peerDependencies, withDev ? entry.devDependencies : undefined]) {
    if (typeof field === 'object' && field !== null && !Array.isArray(field)) for (const n of Object.keys(field)) names.add(n);
  }
  return [...names].sort();
}

function parse(text: string): Readonly<Record<string, Entry>> & { readonly ''?: Entry } {
  if (Buffer.byteLength(text, 'utf8') > MAX_LOCKFILE_BYTES) throw invalid(`package-lock.json is larger than ${MAX_LOCKFILE_BYTES / 1024 / 1024} MiB`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalid(`package-lock.json is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw invalid('package-lock.json must be a JSON object');
  const { lockfileVersion, packages } = doc as { lockfileVersion?: unknown; packages?: unknown };
  if (lockfileVersion === 1) throw invalid('package-lock.json has lockfileVersion 1 (npm 6), which lists no installed paths; regenerate it with npm 7 or later (npm install --lockfile-version 3)', 'lockfileVersion');
  if (lockfileVersion !== 2 && lockfileVersion !== 3) throw invalid(`package-lock.json has lockfileVersion ${lockfileVersion === undefined ? 'missing' : JSON.stringify(lockfileVersion)}; versions 2 and 3 are supported`, 'lockfileVersion');
  if (typeof packages !== 'object' || packages === null || Array.isArray(packages)) throw invalid('package-lock.json has no "packages" object', 'packages');
  for (const [key, entry] of Object.entries(packages)) {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw invalid(`packages["${key.slice(0, 200)}"] must be an object`, `packages.${key.slice(0, 200)}`);
  }
  return packages as Record<string, Entry>;
}

function scopeOf(entry: Entry): PackageScope {
  if (entry.dev === true || entry.devOptional === true) return 'dev';
  if (entry.optional === true) return 'optional';
  return 'required';
}

const RANK: Readonly<Record<PackageScope, number>> = { required: 0, optional: 1, dev: 2 };

/**
 * Every installed package with its dependency edges. Only `node_modules/…` entries count:
 * links and workspace folders are the project's own code, not dependencies. A package
 * installed at several paths with one name and version is one entry, in the widest scope
 * any of its copies has.
 */
export function lockfileGraph(text: string): LockfileGraph {
  const packages = parse(text);
  const byPurl = new Map<string, { pkg: LockfilePackage; dependsOn: Set<string> }>();
  const purlOfKey = new Map<string, string>();
  for (const [key, entry] of Object.entries(packages)) {
    if (key === '' || entry.link === true) continue;
    const installedAs = nameFromKey(key);
    if (installedAs === undefined) continue;
    // An alias ("x": "npm:real@1") installs under its alias; `name` is the real package.
    const name = typeof entry.name === 'string' && entry.name !== '' ? entry.name : installedAs;
    if (typeof entry.version !== 'string' || entry.version === '') throw invalid(`packages["${key.slice(0, 200)}"] has no version`, `packages.${key.slice(0, 200)}.version`);
    const purl = npmPurl(name, entry.version);
    purlOfKey.set(key, purl);
    const integrity = typeof entry.integrity === 'string' ? integrityDigests(entry.integrity) : undefined;
    const scope = scopeOf(entry);
    const seen = byPurl.get(purl);
    if (seen === undefined) byPurl.set(purl, { pkg: { name, version: entry.version, purl, ...(integrity === undefined ? {} : { integrity }), scope }, dependsOn: new Set() });
    else if (RANK[scope] < RANK[seen.pkg.scope] || (seen.pkg.integrity === undefined && integrity !== undefined)) {
      byPurl.set(purl, { pkg: { ...seen.pkg, scope: RANK[scope] < RANK[seen.pkg.scope] ? scope : seen.pkg.scope, ...(seen.pkg.integrity === undefined && integrity !== undefined ? { integrity } : {}) }, dependsOn: seen.dependsOn });
    }
  }
  const edges = (from: string, entry: Entry, withDev: boolean): string[] => {
    const out = new Set<string>();
    for (const dep of depNames(entry, withDev)) {
      const key = resolveKey(packages, from, dep);
      const purl = key === undefined ? undefined : purlOfKey.get(key);
      if (purl !== undefined) out.add(purl);
    }
    return [...out].sort();
  };
  for (const [key, entry] of Object.entries(packages)) {
    const purl = purlOfKey.get(key);
    if (purl === undefined) continue;
    const node = byPurl.get(purl);
    for (const d of edges(key, entry, false)) if (d !== purl) node?.dependsOn.add(d);
  }
  const root = packages[''];
  return {
    root: {
      name: typeof root?.name === 'string' ? root.name : undefined,
      version: typeof root?.version === 'string' ? root.version : undefined,
      dependsOn: root === undefined ? [] : edges('', root, true),
    },
    packages: [...byPurl.values()].sort((a, b) => (a.pkg.purl < b.pkg.purl ? -1 : a.pkg.purl > b.pkg.purl ? 1 : 0)).map((n) => ({ ...n.pkg, dependsOn: [...n.dependsOn].sort() })),
  };
}

/** Every installed package (name, version, purl, integrity, scope), sorted by purl. */
export function lockfilePackages(text: string): LockfilePackage[] {
  return lockfileGraph(text).packages.map(({ dependsOn: _edges, ...p }) => p);
}
