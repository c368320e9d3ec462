/**
 * parsePipeline / lintPipeline: the valid examples compile to the expected definition, and
 * every kind of problem is reported with its code, exact line and column, path and a hint.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isAirlockError } from '../../src/errors/index.js';
import type { PipelineProblem } from '../../src/pipeline/index.js';
import { PipelineInvalidError, lintPipeline, parsePipeline } from '../../src/pipeline/index.js';

const fixture = (name: string): Buffer => readFileSync(new URL(`./fixtures/${name}`, import.meta.url));
const sha256 = (bytes: Buffer | string): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

const step = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  env: {},
  timeoutSeconds: 600,
  retries: 0,
  idempotent: false,
  runsOn: [],
  inputs: [],
  outputs: [],
  secrets: [],
  requires: {},
  network: false,
  evidence: undefined,
  ...over,
});

/** An environment with every default applied (docs/pipeline.md, "Environment"). */
const environment = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  protected: false,
  owners: [],
  approvals: { required: over.protected === true ? 1 : 0, roles: [], owners: false, validForSeconds: 4 * 3600, justification: true, rollback: false },
  branches: [],
  windows: [],
  freezes: [],
  evidence: { tests: [], environments: [], provenance: true },
  health: undefined,
  overrides: undefined,
  secrets: [],
  ...over,
});

describe('a valid file', () => {
  it('parses the documented example into the expected definition', () => {
    const bytes = fixture('web.airlock.yaml');
    const def = parsePipeline(bytes, 'web.airlock.yaml');
    expect(def).toEqual({
      version: 1,
      name: 'web',
      owners: ['alice', 'team-web'],
      environments: {
        staging: environment({ owners: ['team-web'], health: { kind: 'http', url: 'http://127.0.0.1:8080/health', status: 200, timeoutSeconds: 10 } }),
        production: environment({
          protected: true,
          owners: ['bob', 'release-managers'],
          approvals: { required: 2, roles: ['release-manager'], owners: true, validForSeconds: 4 * 3600, justification: true, rollback: false },
          branches: ['main', 'release/*'],
          windows: [{ cron: '0 9 * * 1-5', timezone: 'Europe/Berlin', durationSeconds: 8 * 3600 }],
          freezes: [{ cron: '0 0 20 12 *', timezone: 'Europe/Berlin', durationSeconds: 14 * 86400, reason: 'year-end freeze' }],
          evidence: { tests: ['test'], environments: ['staging'], provenance: true },
          health: { kind: 'command', command: './scripts/smoke.sh', timeoutSeconds: 120 },
          overrides: 'deploy/production.yaml',
        }),
      },
      // deploy is written first in the file but needs test, which needs build.
      stages: [
        {
          name: 'build',
          needs: [],
          environment: undefined,
          steps: [
            step({
              name: 'compile',
              run: 'npm ci && npm run build',
              env: { NODE_ENV: 'production' },
              runsOn: ['linux'],
              outputs: ['dist/app.tgz'],
              requires: { node: '>=20', git: '*' },
              network: true,
            }),
          ],
        },
        {
          name: 'test',
          needs: ['build'],
          environment: undefined,
          steps: [
            step({ name: 'unit', run: 'npm test', inputs: ['dist/app.tgz'], retries: 2, idempotent: true, secrets: [{ name: 'NPM_TOKEN', as: 'env' }], evidence: 'test', timeoutSeconds: 5400 }),
            step({ name: 'lint', run: 'npm run lint\nnpm run typecheck\n' }),
          ],
        },
        { name: 'deploy', needs: ['test'], environment: 'staging', steps: [step({ name: 'ship', run: './deploy.sh', secrets: [{ name: 'DEPLOY_TOKEN', as: 'env' }] })] },
      ],
      digest: sha256(bytes),
    });
    expect(lintPipeline(bytes)).toEqual([]);
  });

  it('applies every default to a minimal file', () => {
    const def = parsePipeline(fixture('minimal.airlock.yaml'));
    expect(def.environments).toEqual({});
    expect(def.stages).toEqual([{ name: 'build', needs: [], environment: undefined, steps: [step({ name: 'make', run: 'make' })] }]);
  });

  it('orders a diamond topologically, ties in file order', () => {
    const def = parsePipeline(fixture('release.airlock.yaml'));
    expect(def.stages.map((s) => s.name)).toEqual(['build', 'unit', 'scan', 'staging', 'production']);
    expect(def.environments.staging).toEqual(environment({ owners: ['alice'] }));
    // A protected environment without an approvals block needs one approver.
    expect(def.environments.production).toEqual(environment({ protected: true, owners: ['platform.oncall'] }));
    const compile = def.stages[0]!.steps[0]!;
    expect(compile.timeoutSeconds).toBe(900);
    expect(compile.requires).toEqual({ node: '>=20 <23', npm: '^10.2.0', git: '*' });
    expect(def.stages[2]!.steps[0]!.timeoutSeconds).toBe(30);
  });

  it('returns frozen records', () => {
    const def = parsePipeline(fixture('web.airlock.yaml'));
    expect(Object.isFrozen(def)).toBe(true);
    expect(Object.isFrozen(def.stages)).toBe(true);
    expect(Object.isFrozen(def.stages[0]!.steps[0]!.env)).toBe(true);
    const production = def.environments.production!;
    for (const part of [production, production.owners, production.approvals, production.approvals.roles, production.branches, production.windows, production.windows[0], production.freezes, production.evidence, production.evidence.tests, production.health]) {
      expect(Object.isFrozen(part)).toBe(true);
    }
    expect(() => {
      (def.stages as unknown as unknown[]).push({});
    }).toThrow(TypeError);
  });

  it('digests the exact bytes: a string, a Buffer and a byte order mark', () => {
    const text = fixture('minimal.airlock.yaml').toString('utf8');
    expect(parsePipeline(text).digest).toBe(sha256(text));
    const withBom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]);
    const def = parsePipeline(withBom);
    expect(def.digest).toBe(sha256(withBom));
    expect(def.digest).not.toBe(sha256(text));
    // Columns are counted after the mark, as an editor shows them.
    const bad = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('version: 2\n')]);
    expect(lintPipeline(bad).find((p) => p.code === 'unsupported_version')).toMatchObject({ line: 1, col: 10 });
  });
});

/** A file around one stage body; lines 1-6 are fixed, the body starts on line 7. */
function file(...body: string[]): string {
  return ['version: 1', 'pipeline: web', 'owners: [alice]', 'stages:', '  build:', '    steps:', ...body, ''].join('\n');
}
const okStep = ['      - name: compile', '        run: make'];

function only(text: string): PipelineProblem {
  const problems = lintPipeline(text, 'ci/airlock.yaml');
  expect(problems, JSON.stringify(problems, null, 2)).toHaveLength(1);
  const p = problems[0]!;
  expect(p.file).toBe('ci/airlock.yaml');
  expect(p.hint.length).toBeGreaterThan(10);
  expect(p.message.length).toBeGreaterThan(10);
  return p;
}

function expectProblem(text: string, expected: { code: string; line: number; col: number; path?: string; hint?: RegExp; message?: RegExp }): void {
  const p = only(text);
  expect({ code: p.code, line: p.line, col: p.col }).toEqual({ code: expected.code, line: expected.line, col: expected.col });
  if (expected.path !== undefined) expect(p.path).toBe(expected.path);
  if (expected.hint !== undefined) expect(p.hint).toMatch(expected.hint);
  if (expected.message !== undefined) expect(p.message).toMatch(expected.message);
}

describe('problems: the file and its YAML', () => {
  it('yaml_syntax, at the position the yaml parser gives', () => {
    // The yaml parser notices the missing quote at the end of the input.
    expectProblem(file('      - name: compile', '        run: "make'), { code: 'yaml_syntax', line: 9, col: 1, message: /Missing closing "quote/, hint: /close the quote/ });
  });
  it('yaml_syntax for tabs', () => {
    expectProblem(['version: 1', 'stages:', '\tbuild: {}', ''].join('\n'), { code: 'yaml_syntax', line: 3, col: 1, hint: /spaces, not tabs/ });
  });
  it('yaml_syntax for a second document', () => {
    expectProblem(`${file(...okStep)}---\nversion: 1\n`, { code: 'yaml_syntax', line: 9, col: 1, hint: /one document/ });
  });
  it('encoding: not UTF-8', () => {
    const bytes = Buffer.concat([Buffer.from(file(...okStep)), Buffer.from('# caf'), Buffer.from([0xe9]), Buffer.from('\n')]);
    expectProblem(bytes as unknown as string, { code: 'encoding', line: 9, col: 6, hint: /UTF-8/ });
  });
  it('too_large', () => {
    const big = file(...okStep) + `# ${'x'.repeat(1024 * 1024)}\n`;
    expectProblem(big, { code: 'too_large', line: 1, col: 1 });
  });
  it('empty file', () => {
    expectProblem('# nothing here\n', { code: 'missing_key', line: 1, col: 1, hint: /docs\/pipeline\.md/ });
  });
  it('a file that is not a map', () => {
    expectProblem('- a\n- b\n', { code: 'wrong_type', line: 1, col: 1, message: /must be a map/ });
  });
  it('alias_not_allowed', () => {
    expectProblem(file('      - name: compile', '        run: &cmd make', '      - name: again', '        run: *cmd'), { code: 'alias_not_allowed', line: 10, col: 14, hint: /write the value out/ });
  });
  it('tag_not_allowed', () => {
    expectProblem(file('      - name: compile', '        run: !!binary bWFrZQ=='), { code: 'tag_not_allowed', line: 8, col: 23, message: /!!binary/ });
  });
  it('duplicate_key, at the second occurrence', () => {
    expectProblem(file('      - name: compile', '        run: make', '        run: make test'), { code: 'duplicate_key', line: 9, col: 9, path: 'stages.build.steps[0].run', message: /first on line 8/ });
  });
});

describe('problems: keys and types', () => {
  it('unknown_key, suggesting the closest known key', () => {
    expectProblem(file(...okStep, '        timout: 10m'), { code: 'unknown_key', line: 9, col: 9, path: 'stages.build.steps[0].timout', hint: /did you mean `timeout`\?/ });
  });
  it('unknown_key: runs_on for runs-on', () => {
    expectProblem(file(...okStep, '        runs_on: [linux]'), { code: 'unknown_key', line: 9, col: 9, hint: /did you mean `runs-on`\?/ });
  });
  it('unknown_key: a step key at stage level says where it belongs', () => {
    const text = ['version: 1', 'pipeline: web', 'owners: [alice]', 'stages:', '  build:', '    network: true', '    steps:', ...okStep, ''].join('\n');
    expectProblem(text, { code: 'unknown_key', line: 6, col: 5, path: 'stages.build.network', hint: /belongs in a step/ });
  });
  it('missing_key: a step without run', () => {
    expectProblem(file('      - name: compile'), { code: 'missing_key', line: 7, col: 9, path: 'stages.build.steps[0].run', hint: /add `run:`/ });
  });
  it('missing_key: no owners', () => {
    expectProblem(['version: 1', 'pipeline: web', 'stages:', '  build:', '    steps:', ...okStep, ''].join('\n'), { code: 'missing_key', line: 1, col: 1, path: 'owners' });
  });
  it('missing_key: a stage without steps is reported at the stage', () => {
    const text = ['version: 1', 'pipeline: web', 'owners: [alice]', 'stages:', '  build:', '    steps:', ...okStep, '  test:', '    needs: [build]', ''].join('\n');
    expectProblem(text, { code: 'missing_key', line: 9, col: 3, path: 'stages.test.steps' });
  });
  it('wrong_type: a number where a string is expected, with the quoted fix', () => {
    expectProblem(file(...okStep, '        timeout: 600'), { code: 'wrong_type', line: 9, col: 18, path: 'stages.build.steps[0].timeout', hint: /quote it: "600"/ });
  });
  it('wrong_type: an env value that is not a string, without echoing the value', () => {
    const p = only(file(...okStep, '        env: { PIN: 918273 }'));
    expect(p).toMatchObject({ code: 'wrong_type', line: 9, col: 21, path: 'stages.build.steps[0].env.PIN', hint: 'quote the value: env values are strings' });
    expect(JSON.stringify(p)).not.toContain('918273');
  });
  it('wrong_type: a string where a list is expected', () => {
    expectProblem(file(...okStep, '        runs-on: linux'), { code: 'wrong_type', line: 9, col: 18, hint: /write a list: \[linux\]/ });
  });
  it('wrong_type: yes is not a boolean in YAML 1.2', () => {
    expectProblem(file(...okStep, '        network: yes'), { code: 'wrong_type', line: 9, col: 18, hint: /true or false/ });
  });
  it('wrong_type: an empty value is reported at its key', () => {
    expectProblem(file('      - name: compile', '        run:'), { code: 'wrong_type', line: 8, col: 9, path: 'stages.build.steps[0].run' });
  });
  it('wrong_type: an empty list item where a step belongs', () => {
    expectProblem(file(...okStep, '      -'), { code: 'wrong_type', line: 9, col: 8, path: 'stages.build.steps[1]', hint: /- name: …/ });
  });
  it('empty: no owners', () => {
    expectProblem(['version: 1', 'pipeline: web', 'owners: []', 'stages:', '  build:', '    steps:', ...okStep, ''].join('\n'), { code: 'empty', line: 3, col: 9, hint: /at least one owner/ });
  });
  it('empty: a blank command', () => {
    expectProblem(file('      - name: compile', '        run: "  "'), { code: 'empty', line: 8, col: 14 });
  });
  it('unsupported_version', () => {
    expectProblem(file(...okStep).replace('version: 1', 'version: 2'), { code: 'unsupported_version', line: 1, col: 10 });
  });
  it('invalid_value: evidence kind', () => {
    expectProblem(file(...okStep, '        evidence: coverage'), { code: 'invalid_value', line: 9, col: 19, hint: /test/ });
  });
});

describe('problems: names', () => {
  it('invalid_name: pipeline', () => {
    expectProblem(file(...okStep).replace('pipeline: web', 'pipeline: Web_App'), { code: 'invalid_name', line: 2, col: 11, path: 'pipeline' });
  });
  it('invalid_name: step', () => {
    expectProblem(file('      - name: Compile Step', '        run: make'), { code: 'invalid_name', line: 7, col: 15 });
  });
  it('invalid_name: secret', () => {
    expectProblem(file(...okStep, '        secrets: [npm-token]'), { code: 'invalid_name', line: 9, col: 19, path: 'stages.build.steps[0].secrets[0]', hint: /NPM_TOKEN/ });
  });
  it('invalid_name: env variable', () => {
    expectProblem(file(...okStep, '        env: { node-env: production }'), { code: 'invalid_name', line: 9, col: 16 });
  });
  it('reserved_name: AIRLOCK_* env variable', () => {
    expectProblem(file(...okStep, '        env:', '          AIRLOCK_RUN_ID: x'), { code: 'reserved_name', line: 10, col: 11, hint: /set by Airlock itself/ });
  });
  it('reserved_name: AIRLOCK_* secret', () => {
    expectProblem(file(...okStep, '        secrets: [AIRLOCK_TOKEN]'), { code: 'reserved_name', line: 9, col: 19 });
  });
  it('env_secret_conflict', () => {
    expectProblem(file(...okStep, '        env: { NPM_TOKEN: x }', '        secrets: [NPM_TOKEN]'), { code: 'env_secret_conflict', line: 10, col: 19 });
  });
  it('duplicate_entry', () => {
    expectProblem(file(...okStep, '        runs-on: [linux, gpu, linux]'), { code: 'duplicate_entry', line: 9, col: 31, path: 'stages.build.steps[0].runs-on[2]' });
  });
  it('duplicate_name: two steps of a stage', () => {
    expectProblem(file(...okStep, '      - name: compile', '        run: make again'), { code: 'duplicate_name', line: 9, col: 15, path: 'stages.build.steps[1].name', message: /stages\.build\.steps\[0\]/ });
  });
  it('duplicate_name: a stage defined twice', () => {
    const text = ['version: 1', 'pipeline: web', 'owners: [alice]', 'stages:', '  build:', '    steps:', ...okStep, '  build:', '    steps:', ...okStep, ''].join('\n');
    expectProblem(text, { code: 'duplicate_name', line: 9, col: 3, path: 'stages.build', message: /stage "build" is defined twice \(first on line 5\)/ });
  });
});

describe('problems: values', () => {
  it.each([
    ['10', /not a duration/],
    ['10 m', /not a duration/],
    ['0s', /zero/],
    ['6h1s', /6h limit/],
  ])('invalid_timeout: %s', (value, message) => {
    expectProblem(file(...okStep, `        timeout: "${value}"`), { code: 'invalid_timeout', line: 9, col: 18, hint: /30s, 10m, 1h/, message });
  });
  it('invalid_timeout accepts the limit exactly', () => {
    expect(lintPipeline(file(...okStep, '        timeout: 6h'))).toEqual([]);
    expect(lintPipeline(file(...okStep, '        timeout: 5h59m60s'))).toEqual([]);
  });
  it('out_of_range: retries', () => {
    expectProblem(file(...okStep, '        idempotent: true', '        retries: 11'), { code: 'out_of_range', line: 10, col: 18 });
  });
  it('retries_not_idempotent', () => {
    expectProblem(file(...okStep, '        retries: 2'), { code: 'retries_not_idempotent', line: 9, col: 18, hint: /idempotent: true/ });
    expectProblem(file(...okStep, '        retries: 2', '        idempotent: false'), { code: 'retries_not_idempotent', line: 9, col: 18 });
    expect(lintPipeline(file(...okStep, '        retries: 0'))).toEqual([]);
  });
  it.each([
    ['/etc/passwd', /absolute/],
    ['../secrets.txt', /leaves the workspace/],
    ['dist/../../x', /leaves the workspace/],
    ['./dist/app.tgz', /normal form/],
    ['dist//app.tgz', /normal form/],
    ['dist/', /ends with/],
    ['dist\\app.tgz', /backslash/],
    ['dist/*.tgz', /glob/],
    ['C:/app.tgz', /absolute/],
  ])('invalid_path: %s', (value, message) => {
    expectProblem(file(...okStep, `        outputs: ['${value}']`), { code: 'invalid_path', line: 9, col: 19, message });
  });
  it('invalid_path suggests the normal form', () => {
    expect(only(file(...okStep, '        outputs: [./dist/app.tgz]')).hint).toMatch(/dist\/app\.tgz$/);
  });
  it.each(['>=20', '^1.2.0', '~3.11', '1.x || >=2.5.0', '*', '1.2.3 - 2.3.4', '>= 20.1.0 <21', '20', '=1.0.0-rc.1+build.5'])('accepts the semver range %s', (range) => {
    expect(lintPipeline(file(...okStep, `        requires: { node: "${range}" }`))).toEqual([]);
  });
  it.each(['latest', '>=20 ||', '20.x.y', 'node>=20', ''])('invalid_range: %j', (range) => {
    expectProblem(file(...okStep, `        requires: { node: "${range}" }`), { code: 'invalid_range', line: 9, col: 27, hint: /"\*" for any version/ });
  });
});

/** A file with several stages: `stages` maps a name to [needs, extra lines]. */
function graph(stages: Record<string, string>): string {
  const lines = ['version: 1', 'pipeline: web', 'owners: [alice]', 'environments:', '  staging: { owners: [alice] }', 'stages:'];
  for (const [name, needs] of Object.entries(stages)) {
    lines.push(`  ${name}:`, `    needs: [${needs}]`, '    steps:', `      - { name: s, run: make ${name} }`);
  }
  return `${lines.join('\n')}\n`;
}

describe('problems: the stage graph', () => {
  it('unknown_stage, with a suggestion', () => {
    // line 7 "  build:", 8 needs, ...; test starts on line 11.
    expectProblem(graph({ build: '', test: 'biuld' }), { code: 'unknown_stage', line: 12, col: 13, path: 'stages.test.needs[0]', hint: /did you mean `build`\?/ });
  });
  it('cycle, naming it', () => {
    const problems = lintPipeline(graph({ build: 'test', test: 'build' }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ code: 'cycle', line: 8, col: 13, path: 'stages.build.needs[0]' });
    expect(problems[0]!.message).toContain('build -> test -> build');
  });
  it('cycle: a stage that needs itself', () => {
    expectProblem(graph({ build: 'build' }), { code: 'cycle', line: 8, col: 13, message: /build -> build/ });
  });
  it('unreachable_stage: behind a cycle', () => {
    const problems = lintPipeline(graph({ a: 'b', b: 'a', deploy: 'a' }));
    expect(problems.map((p) => [p.code, p.line, p.col])).toEqual([
      ['cycle', 8, 13],
      ['unreachable_stage', 15, 3],
    ]);
    expect(problems[1]!.message).toBe('stage deploy can never run: it needs a, which is in a cycle');
    expect(problems[1]!.hint).toMatch(/fix a first/);
  });
  it('unreachable_stage: behind an unknown stage, transitively', () => {
    const problems = lintPipeline(graph({ build: 'nope', test: 'build', deploy: 'test' }));
    expect(problems.map((p) => [p.code, p.line, p.col, p.path])).toEqual([
      ['unknown_stage', 8, 13, 'stages.build.needs[0]'],
      ['unreachable_stage', 11, 3, 'stages.test'],
      ['unreachable_stage', 15, 3, 'stages.deploy'],
    ]);
    expect(problems[2]!.message).toMatch(/needs test, which can never run/);
  });
  it('unknown_environment', () => {
    const text = graph({ build: '' }).replace('    steps:', '    environment: stagign\n    steps:');
    expectProblem(text, { code: 'unknown_environment', line: 9, col: 18, path: 'stages.build.environment', hint: /did you mean `staging`\?/ });
  });
  it('input_not_produced: produced by a stage that is not needed', () => {
    const text = graph({ build: '', test: '' }).replace('{ name: s, run: make build }', '{ name: s, run: make build, outputs: [app.tgz] }').replace('{ name: s, run: make test }', '{ name: s, run: make test, inputs: [app.tgz] }');
    expectProblem(text, { code: 'input_not_produced', line: 14, col: 45, path: 'stages.test.steps[0].inputs[0]', hint: /add build to the `needs` of test/ });
  });
  it('input_not_produced: produced by nobody', () => {
    const text = graph({ build: '' }).replace('{ name: s, run: make build }', '{ name: s, run: make build, inputs: [app.tgz] }');
    expectProblem(text, { code: 'input_not_produced', line: 10, col: 46, hint: /outputs:/ });
  });
  it('input_not_produced: inputs come only from earlier stages', () => {
    const text = graph({ build: '' }).replace('      - { name: s, run: make build }', '      - { name: s, run: make build, outputs: [app.tgz] }\n      - { name: t, run: make t, inputs: [app.tgz] }');
    expectProblem(text, { code: 'input_not_produced', line: 11, col: 42, hint: /same stage/ });
  });
  it('inputs from a transitively needed stage are fine', () => {
    const text = graph({ build: '', test: 'build', deploy: 'test' }).replace('{ name: s, run: make build }', '{ name: s, run: make build, outputs: [app.tgz] }').replace('{ name: s, run: make deploy }', '{ name: s, run: make deploy, inputs: [app.tgz] }');
    expect(lintPipeline(text)).toEqual([]);
  });
  it('ambiguous_input: produced by two needed steps', () => {
    const text = graph({ a: '', b: '', c: 'a, b' })
      .replace('{ name: s, run: make a }', '{ name: s, run: make a, outputs: [app.tgz] }')
      .replace('{ name: s, run: make b }', '{ name: s, run: make b, outputs: [app.tgz] }')
      .replace('{ name: s, run: make c }', '{ name: s, run: make c, inputs: [app.tgz] }');
    expectProblem(text, { code: 'ambiguous_input', line: 18, col: 42, message: /a\.s, b\.s/ });
  });
  it('too_many stages', () => {
    const stages: Record<string, string> = {};
    for (let i = 0; i < 257; i++) stages[`s${i}`] = '';
    const problems = lintPipeline(graph(stages));
    expect(problems.map((p) => [p.code, p.line, p.col])).toEqual([['too_many', 6 + 256 * 4 + 1, 3]]);
  });
});

describe('parsePipeline errors', () => {
  it('throws PipelineInvalidError with every problem, in file order', () => {
    const text = file('      - name: Compile', '        run: make', '        retries: 3', '        outputs: [../x]').replace('version: 1', 'version: 9');
    let caught: unknown;
    try {
      parsePipeline(text, 'x.yaml');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(PipelineInvalidError);
    if (!isAirlockError(caught)) throw new Error('not an AirlockError');
    expect(caught.code).toBe('VALIDATION_FAILED');
    const problems = (caught.details as { problems: PipelineProblem[] }).problems;
    expect(problems.map((p) => `${p.line}:${p.col}:${p.code}`)).toEqual(['1:10:unsupported_version', '7:15:invalid_name', '9:18:retries_not_idempotent', '10:19:invalid_path']);
    expect(caught.message).toMatch(/^x\.yaml is not a valid pipeline: 4 problem\(s\); first: x\.yaml:1:10: unsupported_version/);
  });

  it('does not run the credential scan (lint does)', () => {
    const text = file('      - name: compile', '        run: mysql --password=hunter2secret');
    expect(() => parsePipeline(text)).not.toThrow();
    expect(lintPipeline(text).map((p) => p.code)).toEqual(['hardcoded_credential']);
  });
});

describe('secrets: a name (env) or { name, as: env | file }', () => {
  const secretsOf = (...lines: string[]) => parsePipeline(file(...okStep, ...lines)).stages[0]!.steps[0]!.secrets;

  it('reads both forms, block and flow, in order, defaulting `as` to env', () => {
    expect(secretsOf('        secrets:', '          - DB_PASSWORD', '          - name: TLS_KEY', '            as: file', '          - { name: NPM_TOKEN, as: env }', '          - { name: API_KEY }')).toEqual([
      { name: 'DB_PASSWORD', as: 'env' },
      { name: 'TLS_KEY', as: 'file' },
      { name: 'NPM_TOKEN', as: 'env' },
      { name: 'API_KEY', as: 'env' },
    ]);
    const def = parsePipeline(file(...okStep, '        secrets: [{ name: TLS_KEY, as: file }]'));
    expect(Object.isFrozen(def.stages[0]!.steps[0]!.secrets[0])).toBe(true);
  });
  it('a file secret may share its name with an env variable it does not set', () => {
    expect(secretsOf('        env: { TLS_KEY: "not the secret" }', '        secrets: [{ name: TLS_KEY, as: file }]')).toEqual([{ name: 'TLS_KEY', as: 'file' }]);
  });
  it('invalid_value: `as` other than env or file', () => {
    expectProblem(file(...okStep, '        secrets: [{ name: TLS_KEY, as: path }]'), { code: 'invalid_value', line: 9, col: 40, path: 'stages.build.steps[0].secrets[0].as', message: /"path"/, hint: /env, file/ });
  });
  it('wrong_type: `as` that is not a string', () => {
    expectProblem(file(...okStep, '        secrets: [{ name: TLS_KEY, as: true }]'), { code: 'wrong_type', line: 9, col: 40, path: 'stages.build.steps[0].secrets[0].as' });
  });
  it('unknown_key in a secret entry, with a suggestion', () => {
    expectProblem(file(...okStep, '        secrets:', '          - name: TLS_KEY', '            ass: file'), { code: 'unknown_key', line: 11, col: 13, path: 'stages.build.steps[0].secrets[0].ass', message: /in a secret entry/, hint: /did you mean `as`\?/ });
  });
  it('unknown_key in a secret entry that is nothing like a known key lists them', () => {
    expectProblem(file(...okStep, '        secrets: [{ name: TLS_KEY, mode: "0400" }]'), { code: 'unknown_key', line: 9, col: 36, hint: /known keys here: name, as/ });
  });
  it('`as` at step level says where it belongs', () => {
    expectProblem(file(...okStep, '        as: file'), { code: 'unknown_key', line: 9, col: 9, path: 'stages.build.steps[0].as', hint: /belongs in a secret entry/ });
  });
  it('missing_key: a map without name', () => {
    expectProblem(file(...okStep, '        secrets: [{ as: file }]'), { code: 'missing_key', line: 9, col: 19, path: 'stages.build.steps[0].secrets[0].name', message: /a secret entry is missing `name`/ });
  });
  it('invalid_name and reserved_name in the map form', () => {
    expectProblem(file(...okStep, '        secrets: [{ name: tls-key, as: file }]'), { code: 'invalid_name', line: 9, col: 27, path: 'stages.build.steps[0].secrets[0].name', hint: /NPM_TOKEN/ });
    expectProblem(file(...okStep, '        secrets: [{ name: AIRLOCK_KEY, as: file }]'), { code: 'reserved_name', line: 9, col: 27, path: 'stages.build.steps[0].secrets[0].name', hint: /set by Airlock itself/ });
  });
  it('wrong_type: a list or an empty entry', () => {
    expectProblem(file(...okStep, '        secrets: [[TLS_KEY]]'), { code: 'wrong_type', line: 9, col: 19, path: 'stages.build.steps[0].secrets[0]', hint: /\{ name: NAME, as: file \}/ });
    // An empty item is reported at its list's key, as in every other list.
    expectProblem(file(...okStep, '        secrets:', '          -'), { code: 'wrong_type', path: 'stages.build.steps[0].secrets[0]', line: 9, col: 9 });
  });
  it('wrong_type: secrets that is not a list', () => {
    expectProblem(file(...okStep, '        secrets: TLS_KEY'), { code: 'wrong_type', line: 9, col: 18, hint: /write a list: \[TLS_KEY\]/ });
  });
  it('duplicate_entry: one name twice, in either form', () => {
    expectProblem(file(...okStep, '        secrets: [TLS_KEY, { name: TLS_KEY, as: file }]'), { code: 'duplicate_entry', line: 9, col: 28, path: 'stages.build.steps[0].secrets[1]', message: /"TLS_KEY" is listed twice .* \(also at index 0\)/ });
    expectProblem(file(...okStep, '        secrets: [{ name: A, as: file }, { name: A, as: file }]'), { code: 'duplicate_entry', line: 9, col: 42 });
  });
  it('env_secret_conflict: a file secret whose path variable is also in env', () => {
    expectProblem(file(...okStep, '        env: { TLS_KEY_FILE: /etc/ssl/key.pem }', '        secrets: [{ name: TLS_KEY, as: file }]'), { code: 'env_secret_conflict', line: 10, col: 19, message: /TLS_KEY_FILE is both the path of file secret TLS_KEY and a plain env variable/ });
  });
  it('env_secret_conflict: an env secret in the map form', () => {
    expectProblem(file(...okStep, '        env: { NPM_TOKEN: x }', '        secrets: [{ name: NPM_TOKEN }]'), { code: 'env_secret_conflict', line: 10, col: 19 });
  });
  it('secret_variable_conflict: a file secret and an env secret that would set one variable', () => {
    expectProblem(file(...okStep, '        secrets: [{ name: TLS_KEY, as: file }, TLS_KEY_FILE]'), { code: 'secret_variable_conflict', line: 9, col: 48, path: 'stages.build.steps[0].secrets[1]', message: /TLS_KEY_FILE would hold both the value of secret TLS_KEY_FILE and the path of file secret TLS_KEY/ });
  });
  it('invalid_path: inputs and outputs under .secrets/ (reserved for secret files)', () => {
    expectProblem(file(...okStep, '        outputs: [.secrets/TLS_KEY]'), { code: 'invalid_path', line: 9, col: 19, message: /is inside \.secrets\//, hint: /outside \.secrets\//u });
    expectProblem(file(...okStep, '        outputs: [.secrets]'), { code: 'invalid_path', line: 9, col: 19 });
    // Only the top-level directory is reserved.
    expect(lintPipeline(file(...okStep, '        outputs: [dist/.secrets/x, .secrets-list]'))).toEqual([]);
  });
});
