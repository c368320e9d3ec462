import { describe, expect, it } from 'vitest';
import { compareVersions, findVersion, parseRange, parseVersion, RangeSyntaxError, satisfies } from '../../src/runner/index.js';

// Expectations agree with node-semver 7 `satisfies(v, r, { includePrerelease: true })`; the
// whole grid of these ranges and versions was cross-checked against it when this was written.
const CASES: [range: string, inside: string[], outside: string[]][] = [
  ['*', ['0.0.0', '1.2.3', '99.0.0'], []],
  ['', ['0.0.0', '20.11.1'], []],
  ['1', ['1.0.0', '1.9.9'], ['0.9.9', '2.0.0']],
  ['1.x', ['1.0.0', '1.9.9'], ['2.0.0']],
  ['1.2', ['1.2.0', '1.2.9'], ['1.1.9', '1.3.0']],
  ['1.2.x', ['1.2.3'], ['1.3.0']],
  ['1.2.3', ['1.2.3'], ['1.2.4', '1.2.2']],
  ['=1.2.3', ['1.2.3'], ['1.2.4']],
  ['v1.2.3', ['1.2.3'], ['1.2.2']],
  ['^1.2.3', ['1.2.3', '1.9.9'], ['1.2.2', '2.0.0']],
  ['^0.2.3', ['0.2.3', '0.2.9'], ['0.3.0', '0.2.2']],
  ['^0.0.3', ['0.0.3'], ['0.0.4', '0.0.2']],
  ['^1.2', ['1.2.0', '1.9.9'], ['1.1.0', '2.0.0']],
  ['^0', ['0.0.0', '0.9.9'], ['1.0.0']],
  ['^0.0', ['0.0.0', '0.0.9'], ['0.1.0']],
  ['~1.2.3', ['1.2.3', '1.2.9'], ['1.3.0', '1.2.2']],
  ['~1.2', ['1.2.0'], ['1.3.0']],
  ['~1', ['1.0.0', '1.9.9'], ['2.0.0']],
  ['~>1.2', ['1.2.5'], ['1.3.0']],
  ['>=1.2', ['1.2.0', '5.0.0'], ['1.1.9']],
  ['>1.2', ['1.3.0'], ['1.2.9']],
  ['>1', ['2.0.0'], ['1.9.9']],
  ['>1.2.3', ['1.2.4'], ['1.2.3']],
  ['<=1.2', ['1.2.9'], ['1.3.0']],
  ['<1.2', ['1.1.9'], ['1.2.0']],
  ['<=1', ['1.9.9'], ['2.0.0']],
  ['<1.2.3', ['1.2.2'], ['1.2.3']],
  ['>= 20', ['20.0.0', '22.1.0'], ['18.19.0']],
  ['>=20 <22', ['20.11.1', '21.5.0'], ['22.0.0', '19.9.9']],
  ['1.x || >=3', ['1.5.0', '3.0.0'], ['2.5.0']],
  ['<*', [], ['0.0.0', '1.0.0']],
  ['>*', [], ['1.0.0']],
  ['>=1.2.3-rc.1', ['1.2.3-rc.2', '1.2.3'], ['1.2.3-alpha', '1.2.2']],
];

describe('satisfies', () => {
  for (const [range, inside, outside] of CASES) {
    it(`"${range}"`, () => {
      for (const v of inside) expect(satisfies(v, range), `${v} in ${range}`).toBe(true);
      for (const v of outside) expect(satisfies(v, range), `${v} not in ${range}`).toBe(false);
    });
  }

  it('refuses ranges it does not understand instead of guessing', () => {
    for (const bad of ['1.2.3 - 2.0.0', '>=abc', '>=1.2.3.4', '!1', '^^1', 'latest']) {
      expect(() => parseRange(bad), bad).toThrow(RangeSyntaxError);
    }
  });

  it('an unparseable version never satisfies', () => {
    expect(satisfies('not-a-version', '*')).toBe(false);
  });
});

describe('compareVersions (semver 2.0.0 section 11)', () => {
  it('orders the spec example chain', () => {
    const chain = ['1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-alpha.beta', '1.0.0-beta', '1.0.0-beta.2', '1.0.0-beta.11', '1.0.0-rc.1', '1.0.0', '2.0.0', '2.1.0', '2.1.1'];
    for (let i = 0; i + 1 < chain.length; i++) {
      expect(compareVersions(parseVersion(chain[i]!)!, parseVersion(chain[i + 1]!)!), `${chain[i]} < ${chain[i + 1]}`).toBe(-1);
      expect(compareVersions(parseVersion(chain[i + 1]!)!, parseVersion(chain[i]!)!)).toBe(1);
    }
    expect(compareVersions(parseVersion('1.0.0+build.1')!, parseVersion('1.0.0')!)).toBe(0);
  });
});

describe('findVersion', () => {
  it.each([
    ['v20.11.1\n', '20.11.1'],
    ['git version 2.39.2\n', '2.39.2'],
    ['GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)', '5.2.15'],
    ['Python 3.11', '3.11.0'],
    ['gcc (Debian 12.2.0-14) 12.2.0', '12.2.0'],
    ['tool 1.0.0-rc.1 (beta)', '1.0.0-rc.1'],
    ['openjdk 17.0.9 2023-10-17', '17.0.9'],
  ])('%j -> %s', (output, version) => {
    expect(findVersion(output)).toBe(version);
  });

  it('null when there is no version', () => {
    expect(findVersion('usage: tool [options]')).toBeNull();
  });
});
