/**
 * The small part of semantic versioning (https://semver.org, ranges as in node-semver) a step's
 * tool requirements need: comparators `<`, `<=`, `>`, `>=`, `=`, caret `^`, tilde `~`, X-ranges
 * (`1.x`, `1.2.*`, partial versions) and `*`, AND by whitespace, OR by `||`. Anything else
 * (hyphen ranges, garbage) is refused rather than guessed at.
 *
 * One deliberate difference from node-semver: a pre-release version is compared by the usual
 * precedence rules but not excluded from ranges whose comparators lack a pre-release tag.
 */

/** A parsed version. Pre-release identifiers are numbers or strings; build metadata is dropped. */
export interface SemVer {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
  readonly prerelease: readonly (string | number)[];
}

type Op = '<' | '<=' | '>' | '>=' | '=';
interface Comparator {
  readonly op: Op;
  readonly version: SemVer;
}
/** A parsed range: OR of ANDs; an empty AND-set matches everything. */
export type Range = readonly (readonly Comparator[])[];

const NUM = '0|[1-9]\\d*';
const PRE_ID = '[0-9A-Za-z-]+';
const VERSION_RE = new RegExp(`^v?(${NUM})\\.(${NUM})\\.(${NUM})(?:-(${PRE_ID}(?:\\.${PRE_ID})*))?(?:\\+[0-9A-Za-z.-]+)?$`);

function parsePrerelease(text: string | undefined): (string | number)[] {
  if (text === undefined || text === '') return [];
  return text.split('.').map((id) => (/^(0|[1-9]\d*)$/.test(id) ? Number(id) : id));
}

/** Parse a full `X.Y.Z[-pre][+build]` version (a leading `v` is allowed); null if invalid. */
export function parseVersion(text: string): SemVer | null {
  const m = VERSION_RE.exec(text.trim());
  if (!m) return null;
  const [, major, minor, patch, pre] = m;
  return { major: Number(major), minor: Number(minor), patch: Number(patch), prerelease: parsePrerelease(pre) };
}

/** Format a version as `X.Y.Z[-pre]`. */
export function formatVersion(v: SemVer): string {
  return `${v.major}.${v.minor}.${v.patch}${v.prerelease.length > 0 ? `-${v.prerelease.join('.')}` : ''}`;
}

/**
 * The first version-looking token in a tool's `--version` output (`v20.11.1`, `git version
 * 2.39.2`, `GNU bash, version 5.2.15(1)-release`), normalised to `X.Y.Z`. `X.Y` becomes
 * `X.Y.0`. A `-suffix` is kept as a pre-release only when it starts with a letter (`1.0.0-rc.1`);
 * distribution revisions such as `12.2.0-14` are not pre-releases and are dropped.
 */
export function findVersion(output: string): string | null {
  const m = /(?<![\d.])v?(\d{1,9})\.(\d{1,9})(?:\.(\d{1,9}))?(?:-([A-Za-z][0-9A-Za-z-]*(?:\.[0-9A-Za-z-]+)*))?/.exec(output);
  if (!m) return null;
  const [, major, minor, patch, pre] = m;
  const version: SemVer = { major: Number(major), minor: Number(minor), patch: Number(patch ?? 0), prerelease: parsePrerelease(pre) };
  return formatVersion(version);
}

function compareIds(a: string | number, b: string | number): number {
  if (typeof a === 'number' && typeof b === 'number') return Math.sign(a - b);
  if (typeof a === 'number') return -1; // numeric identifiers sort before alphanumeric ones
  if (typeof b === 'number') return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Precedence per semver 2.0.0 section 11: -1, 0 or 1. */
export function compareVersions(a: SemVer, b: SemVer): number {
  for (const [x, y] of [
    [a.major, b.major],
    [a.minor, b.minor],
    [a.patch, b.patch],
  ] as const) {
    if (x !== y) return Math.sign(x - y);
  }
  // A release outranks any of its pre-releases.
  if (a.prerelease.length === 0) return b.prerelease.length === 0 ? 0 : 1;
  if (b.prerelease.length === 0) return -1;
  const n = Math.max(a.prerelease.length, b.prerelease.length);
  for (let i = 0; i < n; i++) {
    const x = a.prerelease[i];
    const y = b.prerelease[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const c = compareIds(x, y);
    if (c !== 0) return c;
  }
  return 0;
}

/** Thrown for a range this module does not understand. */
export class RangeSyntaxError extends Error {
  constructor(range: string, why: string) {
    super(`invalid version range "${range}": ${why}`);
    this.name = 'RangeSyntaxError';
  }
}

const PART = '\\*|x|X|0|[1-9]\\d*';
const TOKEN_RE = new RegExp(`^(<=|>=|<|>|=|\\^|~>?)?v?(${PART})(?:\\.(${PART})(?:\\.(${PART})(?:-(${PRE_ID}(?:\\.${PRE_ID})*))?(?:\\+[0-9A-Za-z.-]+)?)?)?$`);

const v = (major: number, minor: number, patch: number, prerelease: readonly (string | number)[] = []): SemVer => ({ major, minor, patch, prerelease });
/** The lowest possible version at or above X.Y.Z, used for exclusive upper bounds (`<2.0.0-0`). */
const floor = (major: number, minor: number, patch: number): SemVer => v(major, minor, patch, [0]);
const NOTHING: Comparator[] = [{ op: '<', version: floor(0, 0, 0) }];

function wild(part: string | undefined): boolean {
  return part === undefined || part === '*' || part === 'x' || part === 'X';
}

/** Desugar one token (`^1.2`, `>=20`, `1.x`) into plain comparators. */
function desugar(range: string, token: string): Comparator[] {
  const m = TOKEN_RE.exec(token);
  if (!m) throw new RangeSyntaxError(range, `cannot read "${token}"`);
  const [, rawOp, ma, mi, pa, pre] = m;
  const op = rawOp === '~>' ? '~' : (rawOp ?? '');
  // Once a part is a wildcard, the parts after it are too (`1.x.3` means `1.x`).
  const M = wild(ma) ? null : Number(ma);
  const m2 = M === null || wild(mi) ? null : Number(mi);
  const p = m2 === null || wild(pa) ? null : Number(pa);
  const prerelease = p === null ? [] : parsePrerelease(pre);
  if (M === null) return op === '<' || op === '>' ? NOTHING : [];
  switch (op) {
    case '':
    case '=':
      if (m2 === null) return [{ op: '>=', version: v(M, 0, 0) }, { op: '<', version: floor(M + 1, 0, 0) }];
      if (p === null) return [{ op: '>=', version: v(M, m2, 0) }, { op: '<', version: floor(M, m2 + 1, 0) }];
      return [{ op: '=', version: v(M, m2, p, prerelease) }];
    case '^': {
      const low = { op: '>=' as const, version: v(M, m2 ?? 0, p ?? 0, prerelease) };
      if (M > 0 || m2 === null) return [low, { op: '<', version: floor(M + 1, 0, 0) }];
      if (m2 > 0 || p === null) return [low, { op: '<', version: floor(0, m2 + 1, 0) }];
      return [low, { op: '<', version: floor(0, 0, p + 1) }];
    }
    case '~':
      if (m2 === null) return [{ op: '>=', version: v(M, 0, 0) }, { op: '<', version: floor(M + 1, 0, 0) }];
      return [{ op: '>=', version: v(M, m2, p ?? 0, prerelease) }, { op: '<', version: floor(M, m2 + 1, 0) }];
    case '>':
      if (m2 === null) return [{ op: '>=', version: v(M + 1, 0, 0) }];
      if (p === null) return [{ op: '>=', version: v(M, m2 + 1, 0) }];
      return [{ op: '>', version: v(M, m2, p, prerelease) }];
    case '>=':
      return [{ op: '>=', version: v(M, m2 ?? 0, p ?? 0, prerelease) }];
    case '<':
      if (m2 === null) return [{ op: '<', version: floor(M, 0, 0) }];
      if (p === null) return [{ op: '<', version: floor(M, m2, 0) }];
      return [{ op: '<', version: v(M, m2, p, prerelease) }];
    case '<=':
      if (m2 === null) return [{ op: '<', version: floor(M + 1, 0, 0) }];
      if (p === null) return [{ op: '<', version: floor(M, m2 + 1, 0) }];
      return [{ op: '<=', version: v(M, m2, p, prerelease) }];
    default:
      throw new RangeSyntaxError(range, `unknown operator "${op}"`);
  }
}

/** Parse a range; throws `RangeSyntaxError` for anything outside the supported grammar. */
export function parseRange(range: string): Range {
  if (range.length > 256) throw new RangeSyntaxError(range.slice(0, 32), 'longer than 256 characters');
  return range.split('||').map((alternative) => {
    // `>= 20` is common in the wild: glue an operator to the version that follows it.
    const tokens = alternative.trim().replace(/(<=|>=|<|>|=|\^|~>?)\s+/g, '$1').split(/\s+/).filter((t) => t !== '');
    if (tokens.includes('-')) throw new RangeSyntaxError(range, 'hyphen ranges are not supported; use ">=A <=B"');
    return tokens.flatMap((token) => desugar(range, token));
  });
}

function test(c: Comparator, version: SemVer): boolean {
  const cmp = compareVersions(version, c.version);
  switch (c.op) {
    case '<':
      return cmp < 0;
    case '<=':
      return cmp <= 0;
    case '>':
      return cmp > 0;
    case '>=':
      return cmp >= 0;
    case '=':
      return cmp === 0;
  }
}

/** Whether `version` (a full version string or parsed) is in `range`. Invalid version: false. */
export function satisfies(version: string | SemVer, range: string | Range): boolean {
  const parsed = typeof version === 'string' ? parseVersion(version) : version;
  if (parsed === null) return false;
  const sets = typeof range === 'string' ? parseRange(range) : range;
  return sets.some((set) => set.every((c) => test(c, parsed)));
}
