/** Layout derivation, the export's own refusals, and writing the files. */
import { generateKeyPairSync } from 'node:crypto';
import { lstatSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AirlockError } from '../../src/errors/index.js';
import { exportInToto, fnmatchEscape, inTotoKeyId, layoutFor, linkFor, signLinkMetablock, writeExport } from '../../src/intoto/index.js';
import type { LinkInput } from '../../src/intoto/index.js';
import { parsePipeline } from '../../src/pipeline/index.js';
import type { PipelineDefinition } from '../../src/pipeline/index.js';
import { ed25519LinkSigner } from '../../src/runner/index.js';
import { pipeline, projectSigner } from './support.js';

const HELLO = `version: 1
pipeline: hello
owners: [alice]
stages:
  build:
    steps:
      - name: compile
        run: make
        outputs: [dist/hello.txt]
  test:
    needs: [build]
    steps:
      - name: check
        run: sh test.sh
        inputs: [dist/hello.txt]
        runs-on: [gpu]
  package:
    needs: [test]
    steps:
      - name: tarball
        run: tar -cf hello.tar dist/hello.txt
        inputs: [dist/hello.txt]
        outputs: [hello.tar]
`;

const D = (c: string): string => `sha256:${c.repeat(64)}`;
const runner = generateKeyPairSync('ed25519');
const signer = ed25519LinkSigner(runner.privateKey);
const link = (over: Partial<LinkInput> = {}) => signLinkMetablock(linkFor({ stage: 'build', step: 'compile', command: 'x', materials: {}, products: { 'out.txt': D('a') }, exitCode: 0, stdoutDigest: D('0'), stderrDigest: D('0'), runId: 'run-1', attempt: 1, ...over }), signer);
const expires = new Date('2030-01-01T00:00:00.123Z');

describe('layoutFor', () => {
  it('chains every input to its producer through transitive needs, and closes every rule list with DISALLOW *', () => {
    const layout = layoutFor(parsePipeline(HELLO), [runner.publicKey], { expires });
    expect(layout.expires).toBe('2030-01-01T00:00:00Z');
    expect(layout.inspect).toEqual([]);
    const keyid = inTotoKeyId(runner.publicKey);
    expect(Object.keys(layout.keys)).toEqual([keyid]);
    expect(layout.keys[keyid]?.keyid).toBe(keyid);
    expect(layout.steps.map((s) => s.name)).toEqual(['build.compile', 'test.check', 'package.tarball']);
    const tarball = layout.steps[2]!;
    expect(tarball).toEqual({
      _type: 'step',
      name: 'package.tarball',
      threshold: 1,
      pubkeys: [keyid],
      expected_command: ['/bin/sh', '-c', 'tar -cf hello.tar dist/hello.txt'],
      // package needs test, test needs build: the producer is found two stages up.
      expected_materials: [['REQUIRE', 'dist/hello.txt'], ['MATCH', 'dist/hello.txt', 'WITH', 'PRODUCTS', 'FROM', 'build.compile'], ['DISALLOW', '*']],
      expected_products: [['REQUIRE', 'hello.tar'], ['CREATE', 'hello.tar'], ['DISALLOW', '*']],
    });
    expect(layout.steps[0]!.expected_materials).toEqual([['DISALLOW', '*']]);
    expect(layout.steps[1]!.expected_products).toEqual([['DISALLOW', '*']]);
  });

  it('authorises a labelled key only for steps whose runs-on it has, and refuses a step nobody may perform', () => {
    const gpu = generateKeyPairSync('ed25519').publicKey;
    const layout = layoutFor(parsePipeline(HELLO), [{ key: runner.publicKey, labels: ['linux'] }, { key: gpu, labels: ['linux', 'gpu'] }], { expires });
    const [a, b] = [inTotoKeyId(runner.publicKey), inTotoKeyId(gpu)];
    expect(layout.steps.map((s) => s.pubkeys)).toEqual([[a, b].sort(), [b], [a, b].sort()]);
    expect(() => layoutFor(parsePipeline(HELLO), [{ key: runner.publicKey, labels: ['linux'] }], { expires })).toThrow(/no runner key may perform test\.check \(runs-on: gpu\)/);
  });

  it('lists only the steps that ran, and refuses a consumer whose producer did not run or a step not in the pipeline', () => {
    const p = parsePipeline(HELLO);
    expect(layoutFor(p, [runner.publicKey], { expires, steps: [{ stage: 'build', step: 'compile' }] }).steps.map((s) => s.name)).toEqual(['build.compile']);
    expect(() => layoutFor(p, [runner.publicKey], { expires, steps: [{ stage: 'package', step: 'tarball' }] })).toThrow(/comes from build\.compile, which did not run/);
    expect(() => layoutFor(p, [runner.publicKey], { expires, steps: [{ stage: 'build', step: 'nope' }] })).toThrow(/build\.nope is not in pipeline hello/);
  });

  it('ALLOWs an output that rewrites one of the step\'s own inputs (CREATE would never consume it)', () => {
    const p = JSON.parse(JSON.stringify(parsePipeline(HELLO))) as { stages: { steps: { outputs: string[] }[] }[] };
    p.stages[2]!.steps[0]!.outputs.push('dist/hello.txt');
    const layout = layoutFor(p as unknown as PipelineDefinition, [runner.publicKey], { expires });
    expect(layout.steps[2]!.expected_products).toEqual([['REQUIRE', 'hello.tar'], ['REQUIRE', 'dist/hello.txt'], ['CREATE', 'hello.tar'], ['ALLOW', 'dist/hello.txt'], ['DISALLOW', '*']]);
  });

  it('escapes glob characters in patterns', () => {
    expect(fnmatchEscape('a*b?c[d]e')).toBe('a[*]b[?]c[[]d]e');
  });
});

describe('exportInToto refuses what in-toto-verify would wrongly accept or cannot read', () => {
  const p = pipeline();
  const base = { pipeline: p, functionaries: [runner.publicKey], layoutSigner: projectSigner(), now: new Date(), runId: 'run-1' };
  const build = link();
  const test = link({ stage: 'test', step: 'check', materials: { 'out.txt': D('a') }, products: { 'report.txt': D('b') } });
  const code = (f: () => unknown): string | undefined => {
    try {
      f();
      return undefined;
    } catch (err) {
      return err instanceof AirlockError ? `${err.code}: ${err.message}` : String(err);
    }
  };

  it('exports the layout, its key and one link per step, named as in-toto-verify looks for them', () => {
    const { files } = exportInToto({ ...base, steps: [{ stage: 'build', step: 'compile', link: build }, { stage: 'test', step: 'check', link: test }] });
    const keyid = inTotoKeyId(runner.publicKey).slice(0, 8);
    expect(files.map((f) => f.name)).toEqual(['root.layout', 'layout.pub', `build.compile.${keyid}.link`, `test.check.${keyid}.link`]);
    expect(JSON.parse(files[2]!.content)).toEqual(build);
  });

  it('refuses a step without a link, a failed step, a link of another step or run, a malformed link and a step listed twice', () => {
    const ok = { stage: 'build', step: 'compile', link: build };
    expect(code(() => exportInToto({ ...base, steps: [ok, { stage: 'test', step: 'check', link: null, runner: 'agent:gpu-1' }] }))).toMatch(/^CONFLICT: step test\.check has no in-toto link .*on agent:gpu-1/);
    // in-toto does not look at return values: a failed test step would otherwise verify.
    expect(code(() => exportInToto({ ...base, steps: [ok, { stage: 'test', step: 'check', link: link({ stage: 'test', step: 'check', materials: { 'out.txt': D('a') }, products: {}, exitCode: 1 }) }] }))).toMatch(/^CONFLICT: step test\.check did not succeed \(return value 1\)/);
    // in-toto finds links by file name only: build's link filed as test's must not pass.
    expect(code(() => exportInToto({ ...base, steps: [ok, { stage: 'test', step: 'check', link: build }] }))).toMatch(/^INTEGRITY_FAILED: .*test\.check names step build\.compile/);
    expect(code(() => exportInToto({ ...base, steps: [{ stage: 'build', step: 'compile', link: link({ runId: 'run-0' }) }] }))).toMatch(/^INTEGRITY_FAILED: .*is for another run/);
    expect(code(() => exportInToto({ ...base, steps: [{ stage: 'build', step: 'compile', link: { signed: build.signed, signatures: [] } }] }))).toMatch(/^INTEGRITY_FAILED: .*not a signed metablock/);
    expect(code(() => exportInToto({ ...base, steps: [{ stage: 'build', step: 'compile', link: { ...build, signed: { ...build.signed, extra: 1 } } }] }))).toMatch(/^INTEGRITY_FAILED: .*malformed: fields must be exactly/);
    expect(code(() => exportInToto({ ...base, steps: [ok, ok] }))).toMatch(/^CONFLICT: step build\.compile is listed twice/);
  });
});

describe('writeExport', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const fresh = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), 'airlock-intoto-write-'));
    dirs.push(d);
    return d;
  };

  it('writes 0644 files into a new directory, refuses a non-empty one unless told, and never follows a planted symlink', async () => {
    const root = await fresh();
    const dir = join(root, 'out', 'nested');
    const old = process.umask(0o077);
    try {
      await writeExport(dir, [{ name: 'root.layout', content: 'L' }, { name: 'layout.pub', content: 'K' }]);
    } finally {
      process.umask(old);
    }
    expect((await readdir(dir)).sort()).toEqual(['layout.pub', 'root.layout']);
    expect(lstatSync(join(dir, 'root.layout')).mode & 0o777).toBe(0o644);
    await expect(writeExport(dir, [{ name: 'root.layout', content: 'M' }])).rejects.toMatchObject({ code: 'CONFLICT', message: expect.stringMatching(/is not empty.*--force/) as unknown });
    expect(readFileSync(join(dir, 'root.layout'), 'utf8')).toBe('L');
    const victim = join(root, 'victim');
    writeFileSync(victim, 'keep');
    symlinkSync(victim, join(dir, 'x.link'));
    await writeExport(dir, [{ name: 'root.layout', content: 'M' }, { name: 'x.link', content: 'new' }], { overwrite: true });
    expect(readFileSync(join(dir, 'root.layout'), 'utf8')).toBe('M');
    expect(readFileSync(victim, 'utf8')).toBe('keep');
    expect(lstatSync(join(dir, 'x.link')).isSymbolicLink()).toBe(false);
    expect(readFileSync(join(dir, 'layout.pub'), 'utf8')).toBe('K'); // others are left alone
  });

  it('refuses names that are not plain file names, before writing anything', async () => {
    const dir = await fresh();
    for (const name of ['../evil', 'a/b', '.hidden', '', '..', 'a..b', 'x\n']) {
      await expect(writeExport(join(dir, 'sub'), [{ name: 'ok.link', content: '' }, { name, content: '' }]), name).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    }
    expect(await readdir(dir)).toEqual([]);
    await expect(writeExport(dir, [{ name: 'a', content: '' }, { name: 'a', content: '' }])).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
  });
});
