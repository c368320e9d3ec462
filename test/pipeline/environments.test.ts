/**
 * Environments as code: every protection rule parses to its typed, frozen form with its
 * defaults; every mistake is reported at its node with a code, a path and a hint; lint flags
 * components without owners; schedules, branch globs, the effective configuration, its digest
 * and its diff behave as docs/pipeline.md says.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isAirlockError } from '../../src/errors/index.js';
import type { PipelineDefinition, PipelineProblem } from '../../src/pipeline/index.js';
import {
  OverridesInvalidError,
  PipelineInvalidError,
  branchAllowed,
  branchMatches,
  configDiff,
  effectiveConfig,
  lintPipeline,
  parsePipeline,
  scheduleActive,
} from '../../src/pipeline/index.js';

const sha256 = (text: string): string => `sha256:${createHash('sha256').update(text).digest('hex')}`;

/** Lines 1-12 are fixed (stage build, stage test with test evidence); the environments start on line 13. */
const HEAD = [
  'version: 1',
  'pipeline: web',
  'owners: [alice]',
  'stages:',
  '  build:',
  '    steps:',
  '      - { name: compile, run: make }',
  '  test:',
  '    needs: [build]',
  '    steps:',
  '      - { name: unit, run: make test, evidence: test }',
  'environments:',
];
const envs = (...body: string[]): string => [...HEAD, ...body, ''].join('\n');
/**
 * `airlock lint` flags every environment without owners, so a fixture about another rule gives its
 * environment this line last (or `owners: [ops]` inline): the lines asserted before it stay put.
 */
const OWNERS = '    owners: [ops]';

function problems(text: string): PipelineProblem[] {
  return lintPipeline(text, 'airlock.yaml');
}

function only(text: string): PipelineProblem {
  const found = problems(text);
  expect(found, JSON.stringify(found, null, 2)).toHaveLength(1);
  return found[0]!;
}

function expectProblem(text: string, expected: { code: string; line: number; col: number; path?: string; hint?: RegExp; message?: RegExp }): PipelineProblem {
  const p = only(text);
  expect({ code: p.code, line: p.line, col: p.col }).toEqual({ code: expected.code, line: expected.line, col: expected.col });
  if (expected.path !== undefined) expect(p.path).toBe(expected.path);
  if (expected.hint !== undefined) expect(p.hint).toMatch(expected.hint);
  if (expected.message !== undefined) expect(p.message).toMatch(expected.message);
  // parsePipeline refuses the same file with the same problem.
  expect(() => parsePipeline(text)).toThrow(PipelineInvalidError);
  return p;
}

describe('environment rules: the parsed form', () => {
  it('applies the defaults to an empty and to a protected environment', () => {
    const def = parsePipeline(envs('  dev:', '  prod: { protected: true, owners: [bob] }'));
    expect(def.environments.dev).toEqual({
      protected: false,
      owners: [],
      approvals: { required: 0, roles: [], owners: false, validForSeconds: 14400, justification: true, rollback: false },
      branches: [],
      windows: [],
      freezes: [],
      evidence: { tests: [], environments: [], provenance: true },
      health: undefined,
      overrides: undefined,
      secrets: [],
    });
    expect(def.environments.prod?.approvals.required).toBe(1);
    expect(def.environments.prod?.owners).toEqual(['bob']);
  });

  it('reads every key', () => {
    const def = parsePipeline(
      envs(
        '  staging: {}',
        '  prod:',
        '    protected: true',
        '    owners: [bob, release-managers]',
        '    approvals:',
        '      required: 3',
        '      roles: [release-manager, admin]',
        '      owners: true',
        '      validFor: 1d12h',
        '      justification: false',
        '      rollback: true',
        '    branches: [main, "release/*"]',
        '    windows:',
        '      - cron: "  30 8   * *  MON-FRI "',
        '        timezone: America/New_York',
        '        duration: 9h30m',
        '    freezes:',
        '      - { cron: "0 18 * * 5", timezone: UTC, duration: 2d14h, reason: weekend }',
        '    evidence: { tests: [test], environments: [staging], provenance: false }',
        '    health: { url: "https://app.example.com/healthz", status: 204, timeout: 30s }',
        '    overrides: deploy/prod.yml',
        '    secrets: [DB_PASSWORD, TLS_KEY]',
      ),
    );
    expect(def.environments.prod).toEqual({
      protected: true,
      owners: ['bob', 'release-managers'],
      approvals: { required: 3, roles: ['release-manager', 'admin'], owners: true, validForSeconds: 36 * 3600, justification: false, rollback: true },
      branches: ['main', 'release/*'],
      // Blanks are normalised: the stored expression is the one cron-parser read.
      windows: [{ cron: '30 8 * * MON-FRI', timezone: 'America/New_York', durationSeconds: 9.5 * 3600 }],
      freezes: [{ cron: '0 18 * * 5', timezone: 'UTC', durationSeconds: 2 * 86400 + 14 * 3600, reason: 'weekend' }],
      evidence: { tests: ['test'], environments: ['staging'], provenance: false },
      health: { kind: 'http', url: 'https://app.example.com/healthz', status: 204, timeoutSeconds: 30 },
      overrides: 'deploy/prod.yml',
      secrets: ['DB_PASSWORD', 'TLS_KEY'],
    });
    expect(Object.isFrozen(def.environments.prod?.freezes[0])).toBe(true);
    expect(Object.isFrozen(def.environments.prod?.approvals.roles)).toBe(true);
  });

  it('a command health check defaults its timeout', () => {
    const def = parsePipeline(envs('  prod:', '    health: { command: ./smoke.sh }'));
    expect(def.environments.prod?.health).toEqual({ kind: 'command', command: './smoke.sh', timeoutSeconds: 10 });
  });

  it('keeps existing files valid: `protected` alone parses as before', () => {
    const text = envs('  staging:', '  production: { protected: true }');
    const def = parsePipeline(text);
    expect(def.environments.production?.protected).toBe(true);
    expect(def.environments.staging?.protected).toBe(false);
    expect(def.digest).toBe(sha256(text));
  });
});

describe('airlock lint: components without an owner', () => {
  it('flags a protected environment without owners, at its key, in lint only', () => {
    const text = envs('  staging: { owners: [ops] }', '  production: { protected: true }');
    const p = expectLintOnly(text, { code: 'no_owner', line: 14, col: 3, path: 'environments.production' });
    expect(p.message).toBe('protected environment production has no owners');
    expect(p.hint).toMatch(/add `owners: \[\.\.\.\]` to environment production: .* approve changes to its rules/);
    // With owners it is clean.
    expect(problems(envs('  staging: { owners: [ops] }', '  production: { protected: true, owners: [bob] }'))).toEqual([]);
  });

  it('flags an unprotected environment without owners too, at its key, in lint only', () => {
    const text = envs('  staging:', '  production: { protected: true, owners: [bob] }');
    const p = expectLintOnly(text, { code: 'no_owner', line: 13, col: 3, path: 'environments.staging' });
    expect(p.message).toBe('environment staging has no owners');
    expect(p.hint).toBe('add `owners: [...]` to environment staging: the users or roles who answer for it');
    // Every form of an environment without owners: empty, `{}`, and rules without `owners`.
    const several = envs('  dev: {}', '  staging:', '  qa:', '    branches: [main]');
    expect(problems(several).map((q) => [q.code, q.message, q.line, q.col])).toEqual([
      ['no_owner', 'environment dev has no owners', 13, 3],
      ['no_owner', 'environment staging has no owners', 14, 3],
      ['no_owner', 'environment qa has no owners', 15, 3],
    ]);
    expect(Object.keys(parsePipeline(several).environments)).toEqual(['dev', 'staging', 'qa']);
  });

  it('refuses a pipeline whose owners list is empty or missing', () => {
    const empty = [...HEAD.slice(0, 2), 'owners: []', ...HEAD.slice(3, 11), ''].join('\n');
    expectProblem(empty, { code: 'empty', line: 3, col: 9, path: 'owners', hint: /at least one owner/ });
    const missing = [...HEAD.slice(0, 2), ...HEAD.slice(3, 11), ''].join('\n');
    expectProblem(missing, { code: 'missing_key', line: 1, col: 1, path: 'owners' });
  });

  it('refuses approvals.owners: true in an environment without owners (an approval nobody could give)', () => {
    const text = envs('  prod:', '    approvals: { owners: true }');
    // parsePipeline refuses the approval rule; lint also flags the environment itself at its key.
    expect(problems(text).map((p) => [p.code, p.line, p.col, p.path])).toEqual([
      ['no_owner', 13, 3, 'environments.prod'],
      ['no_owner', 14, 26, 'environments.prod.approvals.owners'],
    ]);
    let caught: unknown;
    try {
      parsePipeline(text);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(PipelineInvalidError);
    const refused = (caught as PipelineInvalidError).problems;
    expect(refused.map((p) => [p.code, p.line, p.col, p.path])).toEqual([['no_owner', 14, 26, 'environments.prod.approvals.owners']]);
    expect(refused[0]?.hint).toMatch(/add `owners: \[\.\.\.\]`/);
    expect(problems(envs('  prod:', '    approvals: { owners: true }', OWNERS))).toEqual([]);
  });
});

function expectLintOnly(text: string, expected: { code: string; line: number; col: number; path: string }): PipelineProblem {
  const p = only(text);
  expect({ code: p.code, line: p.line, col: p.col, path: p.path }).toEqual(expected);
  expect(() => parsePipeline(text)).not.toThrow();
  return p;
}

describe('environment rules: problems', () => {
  it('unknown_key suggests the closest key, or where it belongs', () => {
    expectProblem(envs('  prod:', '    aprovals: { required: 1 }', OWNERS), { code: 'unknown_key', line: 14, col: 5, path: 'environments.prod.aprovals', hint: /did you mean `approvals`\?/ });
    expectProblem(envs('  prod:', '    approvals: { validfor: 1h }', OWNERS), { code: 'unknown_key', line: 14, col: 18, hint: /did you mean `validFor`\?/ });
    expectProblem(envs('  prod:', '    windows: [{ cron: "0 9 * * *", timezone: UTC, duration: 1h, reason: x }]', OWNERS), { code: 'unknown_key', line: 14, col: 65, hint: /`reason` belongs in a freeze, not a change window/ });
    expectProblem(envs('  prod:', '    timeout: 10m', OWNERS), { code: 'unknown_key', line: 14, col: 5, hint: /belongs in a step/ });
  });

  it('out_of_range: approvals.required outside 0-10, or 0 in a protected environment', () => {
    expectProblem(envs('  prod:', '    approvals:', '      required: 11', OWNERS), { code: 'out_of_range', line: 15, col: 17, path: 'environments.prod.approvals.required', hint: /0 to 10/ });
    expectProblem(envs('  prod:', '    protected: true', '    owners: [bob]', '    approvals: { required: 0 }'), { code: 'out_of_range', line: 16, col: 28, message: /protected environment needs at least 1 approval/ });
    expectProblem(envs('  prod:', '    approvals: { required: "2" }', OWNERS), { code: 'wrong_type', line: 14, col: 28, hint: /without quotes/ });
  });

  it('invalid_duration: validFor outside 1m-7d, or not a duration', () => {
    expectProblem(envs('  prod:', '    approvals: { validFor: 8d }', OWNERS), { code: 'invalid_duration', line: 14, col: 28, path: 'environments.prod.approvals.validFor', message: /longer than 7d/, hint: /from 1m to 7d/ });
    expectProblem(envs('  prod:', '    approvals: { validFor: 30s }', OWNERS), { code: 'invalid_duration', line: 14, col: 28, message: /shorter than 1m/ });
    expectProblem(envs('  prod:', '    approvals: { validFor: 4 hours }', OWNERS), { code: 'invalid_duration', line: 14, col: 28, message: /"4 hours" is not a duration/ });
    expectProblem(envs('  prod:', '    approvals: { validFor: 4 }', OWNERS), { code: 'wrong_type', line: 14, col: 28, hint: /add a unit/ });
  });

  it('invalid_name for roles and environment owners; empty lists are refused', () => {
    expectProblem(envs('  prod:', '    approvals: { roles: [Admin] }', OWNERS), { code: 'invalid_name', line: 14, col: 26, path: 'environments.prod.approvals.roles[0]' });
    expectProblem(envs('  prod:', '    approvals: { roles: [] }', OWNERS), { code: 'empty', line: 14, col: 25 });
    expectProblem(envs('  prod:', '    owners: [bob, x]'), { code: 'invalid_name', line: 14, col: 19, path: 'environments.prod.owners[1]' });
    expectProblem(envs('  prod:', '    owners: [bob, bob]'), { code: 'duplicate_entry', line: 14, col: 19 });
    // An empty list leaves the environment without owners: refused, and flagged by lint at its key too.
    const empty = envs('  prod:', '    owners: []');
    expect(problems(empty).map((p) => [p.code, p.line, p.col, p.path])).toEqual([
      ['no_owner', 13, 3, 'environments.prod'],
      ['empty', 14, 13, 'environments.prod.owners'],
    ]);
    expect(() => parsePipeline(empty)).toThrow(PipelineInvalidError);
  });

  it('invalid_branch, with a hint for refs/heads/; an empty list is refused', () => {
    expectProblem(envs('  prod:', '    branches: [refs/heads/main]', OWNERS), { code: 'invalid_branch', line: 14, col: 16, path: 'environments.prod.branches[0]', hint: /without refs\/heads\/: main/ });
    expectProblem(envs('  prod:', '    branches: [main, "feature/../x"]', OWNERS), { code: 'invalid_branch', line: 14, col: 22 });
    expectProblem(envs('  prod:', '    branches: [main, "a b"]', OWNERS), { code: 'invalid_branch', line: 14, col: 22 });
    expectProblem(envs('  prod:', '    branches: []', OWNERS), { code: 'empty', line: 14, col: 15, hint: /remove `branches`/ });
    expectProblem(envs('  prod:', '    branches: main', OWNERS), { code: 'wrong_type', line: 14, col: 15, hint: /write a list: \[main\]/ });
  });

  const window = (cron: string, extra = 'timezone: Europe/Berlin, duration: 1h'): string => envs('  prod:', '    windows:', `      - { cron: ${cron}, ${extra} }`, OWNERS);
  // `      - { cron: ` is 16 characters: the cron value starts at column 17 of line 15.
  it.each([
    ['"0 9 * * 1-5 *"', /has 6 field\(s\); write 5/],
    ['"0 9 * *"', /has 4 field\(s\)/],
    ['"@daily"', /is a macro/],
    ['"61 9 * * *"', /not a valid cron expression: Constraint error, got value 61 expected range 0-59/],
    ['"0 24 * * *"', /expected range 0-23/],
    ['"0 9 * 13 *"', /expected range 1-12/],
    ['"0 9 * * 8"', /expected range 0-7/],
    ['"H 9 * * *"', /uses H/],
    ['"0 9 ? * 1"', /write \* instead of \?/],
    ['"0 9 1 * 1"', /both day of month and day of week/],
    ['"0 0 30 2 *"', /not a valid cron expression/],
    ['"9-5 * * * *"', /Invalid range/],
    ['"*/0 * * * *"', /not a valid cron expression/],
  ])('invalid_cron: %s', (cron, message) => {
    expectProblem(window(cron), { code: 'invalid_cron', line: 15, col: 17, path: 'environments.prod.windows[0].cron', message, hint: /5 fields/ });
  });

  it('invalid_timezone, and the cron is still checked', () => {
    expectProblem(window('"0 9 * * 1-5"', 'timezone: Mars/Olympus, duration: 1h'), { code: 'invalid_timezone', line: 15, col: 42, path: 'environments.prod.windows[0].timezone', message: /"Mars\/Olympus" is not a known IANA time zone/, hint: /Europe\/Berlin/ });
    const both = problems(window('"0 99 * * *"', 'timezone: Nowhere, duration: 1h'));
    expect(both.map((p) => p.code)).toEqual(['invalid_cron', 'invalid_timezone']);
  });

  it('schedules: durations, required keys and a freeze reason', () => {
    expectProblem(window('"0 9 * * *"', 'timezone: UTC, duration: 32d'), { code: 'invalid_duration', line: 15, col: 55, message: /longer than 31d/ });
    expectProblem(window('"0 9 * * *"', 'timezone: UTC'), { code: 'missing_key', line: 15, col: 9, path: 'environments.prod.windows[0].duration', message: /a change window is missing `duration`/ });
    expectProblem(envs('  prod:', '    freezes:', '      - { cron: "0 0 * * 5", timezone: UTC, duration: 2d }', OWNERS), { code: 'missing_key', line: 15, col: 9, path: 'environments.prod.freezes[0].reason' });
    expectProblem(envs('  prod:', '    freezes:', '      - { cron: "0 0 * * 5", timezone: UTC, duration: 2d, reason: " " }', OWNERS), { code: 'empty', line: 15, col: 67 });
    expectProblem(envs('  prod:', '    windows: ["0 9 * * *"]', OWNERS), { code: 'wrong_type', line: 14, col: 15, hint: /cron: / });
  });

  it('evidence.tests: the stage must exist and produce test evidence', () => {
    expectProblem(envs('  prod:', '    evidence: { tests: [tset] }', OWNERS), { code: 'unknown_stage', line: 14, col: 25, path: 'environments.prod.evidence.tests[0]', hint: /did you mean `test`\?/ });
    expectProblem(envs('  prod:', '    evidence: { tests: [build] }', OWNERS), { code: 'no_test_evidence', line: 14, col: 25, message: /stage build has no step with `evidence: test`/ });
  });

  it('evidence.environments: declared, not itself, no cycle', () => {
    expectProblem(envs('  prod:', '    evidence: { environments: [stagign] }', OWNERS, '  staging: { owners: [ops] }'), { code: 'unknown_environment', line: 14, col: 32, hint: /did you mean `staging`\?/ });
    expectProblem(envs('  prod:', '    evidence: { environments: [prod] }', OWNERS), { code: 'environment_cycle', line: 14, col: 32, message: /requires a deployment to itself/ });
    // a -> b -> c -> a, reported once, at a's entry.
    expectProblem(
      envs('  a:', '    evidence: { environments: [b] }', OWNERS, '  b:', '    evidence: { environments: [c] }', OWNERS, '  c:', '    evidence: { environments: [a] }', OWNERS),
      { code: 'environment_cycle', line: 14, col: 32, path: 'environments.a.evidence.environments[0]', message: /a -> b -> c -> a/ },
    );
    expect(problems(envs('  dev: { owners: [ops] }', '  staging:', '    evidence: { environments: [dev] }', OWNERS, '  prod:', '    evidence: { environments: [staging, dev] }', OWNERS))).toEqual([]);
  });

  it('health: exactly one of command and url; url rules; status and timeout ranges', () => {
    expectProblem(envs('  prod:', '    health: { command: ./x, url: "http://a/" }', OWNERS), { code: 'conflicting_keys', line: 14, col: 29, path: 'environments.prod.health.url' });
    expectProblem(envs('  prod:', '    health: { timeout: 5s }', OWNERS), { code: 'missing_key', line: 14, col: 13, message: /`command` or `url`/ });
    expectProblem(envs('  prod:', '    health:', OWNERS), { code: 'missing_key', line: 14, col: 5 });
    expectProblem(envs('  prod:', '    health: { command: ./x, status: 200 }', OWNERS), { code: 'conflicting_keys', line: 14, col: 29, hint: /exits 0/ });
    expectProblem(envs('  prod:', '    health: { command: "  " }', OWNERS), { code: 'empty', line: 14, col: 24 });
    expectProblem(envs('  prod:', '    health: { url: "ftp://a/" }', OWNERS), { code: 'invalid_url', line: 14, col: 20, message: /not an absolute http/ });
    expectProblem(envs('  prod:', '    health: { url: "http://a/", status: 700 }', OWNERS), { code: 'out_of_range', line: 14, col: 41 });
    expectProblem(envs('  prod:', '    health: { url: "http://a/", timeout: 11m }', OWNERS), { code: 'invalid_duration', line: 14, col: 42, message: /longer than 10m/ });
  });

  it('health: a URL with a password is refused without repeating it', () => {
    const p = expectProblem(envs('  prod:', '    health: { url: "https://ops:S3cretPassw0rd@app.example.com/health" }', OWNERS), { code: 'invalid_url', line: 14, col: 20, message: /user name or password/ });
    expect(JSON.stringify(p)).not.toContain('S3cretPassw0rd');
  });

  it('health: the command is scanned for hard-coded credentials like `run`', () => {
    const found = problems(envs('  prod:', '    health: { command: "curl -u ops:Winter2024x https://x.example.com/health" }', OWNERS));
    expect(found.map((p) => [p.code, p.kind, p.path])).toEqual([['hardcoded_credential', 'generic_secret', 'environments.prod.health.command']]);
    expect(JSON.stringify(found)).not.toContain('Winter2024x');
  });

  it('overrides: a normal repository path to a YAML file', () => {
    expectProblem(envs('  prod:', '    overrides: ./deploy/prod.yaml', OWNERS), { code: 'invalid_path', line: 14, col: 16, path: 'environments.prod.overrides', hint: /deploy\/prod\.yaml/ });
    expectProblem(envs('  prod:', '    overrides: ../shared/prod.yaml', OWNERS), { code: 'invalid_path', line: 14, col: 16 });
    expectProblem(envs('  prod:', '    overrides: deploy/prod.env', OWNERS), { code: 'invalid_path', line: 14, col: 16, message: /not a \.yaml or \.yml file/ });
  });

  it('secrets: variable names, each once, not AIRLOCK_*, not an empty list', () => {
    expectProblem(envs('  prod:', '    secrets: [DB_PASSWORD, db_host]', OWNERS), { code: 'invalid_name', line: 14, col: 28, path: 'environments.prod.secrets[1]' });
    expectProblem(envs('  prod:', '    secrets: [DB_PASSWORD, DB_PASSWORD]', OWNERS), { code: 'duplicate_entry', line: 14, col: 28 });
    expectProblem(envs('  prod:', '    secrets: [AIRLOCK_TOKEN]', OWNERS), { code: 'reserved_name', line: 14, col: 15, path: 'environments.prod.secrets[0]' });
    expectProblem(envs('  prod:', '    secrets: []', OWNERS), { code: 'empty', line: 14, col: 14, path: 'environments.prod.secrets' });
  });

  it('a stage must deploy to a declared environment', () => {
    const text = [...HEAD.slice(0, 8), '    environment: prd', ...HEAD.slice(8), '  prod: { owners: [ops] }', ''].join('\n');
    expectProblem(text, { code: 'unknown_environment', line: 9, col: 18, path: 'stages.test.environment', hint: /did you mean `prod`\?/ });
  });

  it('reports every problem at once', () => {
    const found = problems(envs('  prod:', '    approvals: { required: 11, validFor: 9d }', '    branches: ["a b"]', '    evidence: { tests: [nope] }', OWNERS));
    expect(found.map((p) => p.code)).toEqual(['out_of_range', 'invalid_duration', 'invalid_branch', 'unknown_stage']);
  });
});

describe('schedules and branches at deploy time', () => {
  const weekdays = { cron: '0 9 * * 1-5', timezone: 'Europe/Berlin', durationSeconds: 8 * 3600 };

  it('a window is active from its start (inclusive) to its end (exclusive), in its time zone', () => {
    // Monday 2024-01-15, Berlin is UTC+1 in winter.
    expect(scheduleActive(weekdays, new Date('2024-01-15T07:59:59Z'))).toBe(false);
    expect(scheduleActive(weekdays, new Date('2024-01-15T08:00:00Z'))).toBe(true);
    expect(scheduleActive(weekdays, new Date('2024-01-15T15:59:59.999Z'))).toBe(true);
    expect(scheduleActive(weekdays, new Date('2024-01-15T16:00:00Z'))).toBe(false);
    // Saturday: no occurrence that day.
    expect(scheduleActive(weekdays, new Date('2024-01-20T10:00:00Z'))).toBe(false);
    // Summer time: UTC+2.
    expect(scheduleActive(weekdays, new Date('2024-07-01T06:59:59Z'))).toBe(false);
    expect(scheduleActive(weekdays, new Date('2024-07-01T07:00:00Z'))).toBe(true);
  });

  it('a freeze longer than its recurrence period or across a year end stays active', () => {
    const yearEnd = { cron: '0 0 20 12 *', timezone: 'Europe/Berlin', durationSeconds: 14 * 86400 };
    expect(scheduleActive(yearEnd, new Date('2024-12-19T22:59:59Z'))).toBe(false);
    expect(scheduleActive(yearEnd, new Date('2024-12-19T23:00:00Z'))).toBe(true);
    expect(scheduleActive(yearEnd, new Date('2025-01-02T12:00:00Z'))).toBe(true);
    expect(scheduleActive(yearEnd, new Date('2025-01-02T23:00:00Z'))).toBe(false);
    const overlapping = { cron: '0 * * * *', timezone: 'UTC', durationSeconds: 3 * 3600 };
    expect(scheduleActive(overlapping, new Date('2024-01-01T05:59:00Z'))).toBe(true);
  });

  it('branch globs: * within a segment, ** across, everything else literal', () => {
    expect(branchMatches('release/*', 'release/1.2')).toBe(true);
    expect(branchMatches('release/*', 'release/1.2/fix')).toBe(false);
    expect(branchMatches('release/*', 'release')).toBe(false);
    expect(branchMatches('release/**', 'release/1.2/fix')).toBe(true);
    expect(branchMatches('main', 'main')).toBe(true);
    expect(branchMatches('main', 'main2')).toBe(false);
    expect(branchMatches('main', 'xmain')).toBe(false);
    expect(branchMatches('v1.2', 'v1x2')).toBe(false);
    expect(branchMatches('v*.x', 'v3.x')).toBe(true);
    expect(branchAllowed([], 'anything/at/all')).toBe(true);
    expect(branchAllowed(['main', 'release/*'], 'feature/x')).toBe(false);
    expect(branchAllowed(['main', 'release/*'], 'release/2')).toBe(true);
  });
});

describe('effective configuration', () => {
  const pipeline = parsePipeline(envs('  staging:', '  prod:', '    overrides: deploy/prod.yaml'));

  it('is the overrides file, with a digest over its RFC 8785 canonical JSON', () => {
    const { config, digest } = effectiveConfig(pipeline, 'prod', 'REPLICAS: "3"\n# comment\nDATABASE_HOST: db.internal\nEMPTY: ""\n');
    expect(config).toEqual({ DATABASE_HOST: 'db.internal', EMPTY: '', REPLICAS: '3' });
    expect(Object.keys(config)).toEqual(['DATABASE_HOST', 'EMPTY', 'REPLICAS']);
    expect(Object.isFrozen(config)).toBe(true);
    expect(digest).toBe(sha256('{"DATABASE_HOST":"db.internal","EMPTY":"","REPLICAS":"3"}'));
    // Order, quoting, comments and flow style do not change the configuration or its digest.
    expect(effectiveConfig(pipeline, 'prod', Buffer.from("{ EMPTY: '', DATABASE_HOST: \"db.internal\", REPLICAS: '3' }")).digest).toBe(digest);
    expect(effectiveConfig(pipeline, 'prod', 'REPLICAS: "4"\nDATABASE_HOST: db.internal\nEMPTY: ""\n').digest).not.toBe(digest);
  });

  it('is empty for an environment without overrides, and for an empty file', () => {
    expect(effectiveConfig(pipeline, 'staging')).toEqual({ config: {}, digest: sha256('{}') });
    expect(effectiveConfig(pipeline, 'prod', '# nothing yet\n')).toEqual({ config: {}, digest: sha256('{}') });
  });

  it('reads a stored definition from before the environment rules', () => {
    const old = JSON.parse('{"version":1,"name":"web","owners":["alice"],"environments":{"prod":{"protected":true}},"stages":[],"digest":"sha256:00"}') as PipelineDefinition;
    expect(effectiveConfig(old, 'prod').config).toEqual({});
  });

  it('refuses an undeclared environment, including names on Object.prototype', () => {
    for (const name of ['production', 'constructor', '__proto__', 'toString']) {
      let caught: unknown;
      try {
        effectiveConfig(pipeline, name);
      } catch (err) {
        caught = err;
      }
      expect(isAirlockError(caught) && caught.code).toBe('NOT_FOUND');
    }
  });

  it('refuses a declared file without its content, and content for an environment without a file', () => {
    expect(() => effectiveConfig(pipeline, 'prod')).toThrow(/declares overrides file deploy\/prod\.yaml, but its content was not given/);
    expect(() => effectiveConfig(pipeline, 'staging', 'A: "1"\n')).toThrow(/declares no overrides file/);
    try {
      effectiveConfig(pipeline, 'prod');
    } catch (err) {
      expect(isAirlockError(err) && err.code).toBe('VALIDATION_FAILED');
    }
  });

  function overrideProblems(text: string): PipelineProblem[] {
    try {
      effectiveConfig(pipeline, 'prod', text);
    } catch (err) {
      expect(err).toBeInstanceOf(OverridesInvalidError);
      expect((err as OverridesInvalidError).code).toBe('VALIDATION_FAILED');
      expect((err as OverridesInvalidError).message).toMatch(/^deploy\/prod\.yaml is not a valid overrides file/);
      return [...(err as OverridesInvalidError).problems];
    }
    throw new Error('expected the overrides to be refused');
  }

  it('refuses a bad overrides file, naming the file, line and column of each problem', () => {
    const found = overrideProblems('REPLICAS: 3\ndb_host: x\nAIRLOCK_RUN: x\nA: "1"\nA: "2"\nB:\nC: [x]\n');
    expect(found.map((p) => [p.file, p.line, p.col, p.code, p.path])).toEqual([
      ['deploy/prod.yaml', 1, 11, 'wrong_type', 'REPLICAS'],
      ['deploy/prod.yaml', 2, 1, 'invalid_name', 'db_host'],
      ['deploy/prod.yaml', 3, 1, 'reserved_name', 'AIRLOCK_RUN'],
      ['deploy/prod.yaml', 5, 1, 'duplicate_key', 'A'],
      ['deploy/prod.yaml', 6, 1, 'wrong_type', 'B'],
      ['deploy/prod.yaml', 7, 1, 'wrong_type', 'C'],
    ]);
    expect(found[0]?.hint).toMatch(/quote the value/);
    expect(overrideProblems('- A\n- B\n').map((p) => p.code)).toEqual(['wrong_type']);
    expect(overrideProblems('A: &x "1"\nB: *x\n').map((p) => p.code)).toContain('alias_not_allowed');
    expect(overrideProblems('A: "1\n').map((p) => p.code)).toEqual(['yaml_syntax']);
    expect(overrideProblems('A: !!binary aGk=\n').map((p) => p.code)).toContain('tag_not_allowed');
  });

  it('refuses a credential in the overrides file without repeating it', () => {
    // Assembled at run time so the repository holds no token-shaped literal.
    const token = ['ghp', 'aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6'].join('_');
    for (const text of [`DB_PASSWORD: Hunter2Hunter2\n`, `GITHUB: ${token}\n`, `DATABASE_URL: "postgres://app:Tr0ub4dor@db/app"\n`, `X: ${token} # airlock:allow-credential\n`]) {
      const found = overrideProblems(text);
      expect(found.map((p) => p.code)).toEqual(['hardcoded_credential']);
      const shown = JSON.stringify(found);
      expect(shown).not.toContain('Hunter2Hunter2');
      expect(shown).not.toContain(token);
      expect(shown).not.toContain('Tr0ub4dor');
    }
    // A heuristic finding can be waved through on its line; a recognised token format cannot (above).
    expect(effectiveConfig(pipeline, 'prod', 'SESSION_SECRET: not-a-secret-just-a-name # airlock:allow-credential\n').config).toEqual({ SESSION_SECRET: 'not-a-secret-just-a-name' });
  });
});

describe('configDiff', () => {
  it('lists added, removed and changed keys in key order', () => {
    const diff = configDiff({ A: '1', B: '2', D: 'x', Z: 'z' }, { C: '3', A: '1', B: '20', Y: 'y' });
    expect(diff).toEqual({
      added: [
        { key: 'C', value: '3' },
        { key: 'Y', value: 'y' },
      ],
      removed: [
        { key: 'D', value: 'x' },
        { key: 'Z', value: 'z' },
      ],
      changed: [{ key: 'B', before: '2', after: '20' }],
    });
    expect(Object.isFrozen(diff.added)).toBe(true);
  });

  it('treats a first deployment as all added, and an unchanged configuration as no change', () => {
    expect(configDiff(undefined, { B: '', A: 'a' })).toEqual({ added: [{ key: 'A', value: 'a' }, { key: 'B', value: '' }], removed: [], changed: [] });
    expect(configDiff({ A: '1' }, { A: '1' })).toEqual({ added: [], removed: [], changed: [] });
    // An empty string is a value, not an absence.
    expect(configDiff({ A: '' }, {})).toEqual({ added: [], removed: [{ key: 'A', value: '' }], changed: [] });
  });
});
