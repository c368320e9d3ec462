import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bindingDigest, bindingDocument, makeBinding } from '../../src/delivery/binding.js';
import type { DeploymentBinding } from '../../src/delivery/binding.js';
import { ValidationError } from '../../src/errors/index.js';
import { binding, hex, sha } from './fixtures.js';

describe('deployment binding', () => {
  it('hashes the RFC 8785 canonical document, typed for domain separation', () => {
    // Written out by hand: keys sorted, no whitespace; an offline verifier recomputes exactly this.
    const expected =
      '{"_type":"https://airlock.dev/delivery/binding/v1",' +
      `"commitRange":{"from":"${sha('1')}","to":"${sha('2')}"},` +
      `"configDigest":"sha256:${hex('c')}",` +
      `"digests":[{"digest":"sha256:${hex('a')}","path":"dist/app.tgz"},{"digest":"sha256:${hex('b')}","path":"dist/sbom.json"}],` +
      '"environment":"production","runId":"run-42"}';
    expect(bindingDocument(binding)).toBe(expected);
    expect(bindingDigest(binding)).toBe(`sha256:${createHash('sha256').update(expected).digest('hex')}`);
    expect(bindingDigest(binding)).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('sorts digests by path and lower-cases hex, so equal content gives one digest', () => {
    const shuffled: DeploymentBinding = {
      ...binding,
      digests: [...binding.digests].reverse().map((d) => ({ ...d, digest: d.digest.toUpperCase().replace('SHA256', 'sha256') })),
      configDigest: binding.configDigest.toUpperCase().replace('SHA256', 'sha256'),
    };
    expect(bindingDigest(shuffled)).toBe(bindingDigest(binding));
    expect(makeBinding(shuffled).digests.map((d) => d.path)).toEqual(['dist/app.tgz', 'dist/sbom.json']);
  });

  it('omits an absent range start (first deployment) and distinguishes it', () => {
    const first = { ...binding, commitRange: { to: sha('2') } };
    expect(bindingDocument(first)).not.toContain('"from"');
    expect(bindingDigest(first)).not.toBe(bindingDigest(binding));
  });

  it('refuses malformed bindings, naming every field', () => {
    let err: unknown;
    try {
      makeBinding({
        environment: '',
        digests: [
          { path: 'a', digest: `sha256:${hex('a')}` },
          { path: 'a', digest: `sha256:${hex('b')}` },
          { path: 'b', digest: 'sha1:abc' },
        ],
        configDigest: hex('c'),
        commitRange: { from: 'main', to: 'abc123' },
        runId: '',
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).issues.map((i) => i.path).sort()).toEqual(
      ['commitRange.from', 'commitRange.to', 'configDigest', 'digests[1].path', 'digests[2].digest', 'environment', 'runId'].sort(),
    );
  });

  it('any change to what ships changes the digest; reordering does not (fast-check)', () => {
    const hexChar = fc.constantFrom(...'0123456789abcdef'.split(''));
    const digest = fc.string({ unit: hexChar, minLength: 64, maxLength: 64 }).map((h) => `sha256:${h}`);
    const commit = fc.string({ unit: hexChar, minLength: 40, maxLength: 40 });
    const name = fc.string({ unit: fc.constantFrom(...'abz/._-09é'.split('')), minLength: 1, maxLength: 8 });
    const arb: fc.Arbitrary<DeploymentBinding> = fc.record({
      environment: fc.constantFrom('staging', 'production', 'eu-prod'),
      digests: fc.uniqueArray(fc.record({ path: name, digest }), { selector: (d) => d.path, minLength: 1, maxLength: 5 }),
      configDigest: digest,
      commitRange: fc.record({ from: commit, to: commit }),
      runId: name,
    });
    type Mutation = (b: DeploymentBinding, d: string, c: string) => DeploymentBinding;
    const mutations: Mutation[] = [
      (b) => ({ ...b, environment: `${b.environment}-x` }),
      (b) => ({ ...b, runId: `${b.runId}x` }),
      (b, d) => ({ ...b, configDigest: d }),
      (b, d) => ({ ...b, digests: b.digests.map((x, i) => (i === 0 ? { ...x, digest: d } : x)) }),
      (b) => ({ ...b, digests: b.digests.map((x, i) => (i === 0 ? { ...x, path: `${x.path}/x` } : x)) }),
      (b, d) => ({ ...b, digests: [...b.digests, { path: '\u0000added', digest: d }] }),
      (b) => ({ ...b, digests: b.digests.slice(1) }),
      (b, _d, c) => ({ ...b, commitRange: { ...b.commitRange, to: c } }),
      (b, _d, c) => ({ ...b, commitRange: { ...b.commitRange, from: c } }),
    ];
    fc.assert(
      fc.property(arb, digest, commit, fc.integer({ min: 0, max: mutations.length - 1 }), (b, d, c, m) => {
        const changed = mutations[m]!(b, d, c);
        fc.pre(JSON.stringify(makeBinding(changed)) !== JSON.stringify(makeBinding(b)));
        expect(bindingDigest(changed)).not.toBe(bindingDigest(b));
        expect(bindingDigest({ ...b, digests: [...b.digests].reverse() })).toBe(bindingDigest(b));
      }),
      { numRuns: 300 },
    );
  });
});
