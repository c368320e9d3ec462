/**
 * JUnit XML as test evidence: real reports from vitest and pytest, the jest-junit and legacy
 * pytest shapes, and hostile input (malformed, oversized, billion laughs, external entities)
 * refused or inert.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AirlockError } from '../../src/errors/index.js';
import { MAX_JUNIT_BYTES, parseJUnit, testResultFromExit } from '../../src/evidence/index.js';

const fixture = (name: string) => readFileSync(join(import.meta.dirname, 'fixtures', name), 'utf8');

function refusal(xml: string): AirlockError {
  try {
    parseJUnit(xml);
  } catch (err) {
    expect(err).toBeInstanceOf(AirlockError);
    expect((err as AirlockError).code).toBe('VALIDATION_FAILED');
    return err as AirlockError;
  }
  throw new Error('expected a refusal');
}

describe('parseJUnit', () => {
  it('reads a vitest report: classname.name, entities decoded, failure FAILED, skipped warned', () => {
    expect(parseJUnit(fixture('vitest.xml'))).toEqual({
      result: 'FAILED',
      passedTests: ['sample.test.ts.math > ops > adds <small> & "quoted"', 'sample.test.ts.top level'],
      warnedTests: ['sample.test.ts.math > ops > divides'],
      failedTests: ['sample.test.ts.math > ops > subtracts'],
      total: 4,
    });
  });

  it('reads a pytest report: <error> fails too, non-ASCII names survive', () => {
    expect(parseJUnit(fixture('pytest.xml'))).toEqual({
      result: 'FAILED',
      passedTests: ['tests.test_math.test_add', 'tests.test_math.TestParse.test_unicode_ünï'],
      warnedTests: ['tests.test_math.test_skip'],
      failedTests: ['tests.test_math.test_sub', 'tests.test_math.test_uses_broken'],
      total: 5,
    });
  });

  it('reads the jest-junit shape (class name repeats the name: the name alone) and a bare <testsuite> root', () => {
    expect(parseJUnit(fixture('jest-junit.xml'))).toMatchObject({ result: 'FAILED', passedTests: ['Calculator adds two numbers'], failedTests: ['Calculator divides by zero'], warnedTests: ['Calculator rounds'] });
    expect(parseJUnit(fixture('pytest-legacy.xml'))).toEqual({ result: 'PASSED', passedTests: ['tests.test_io.test_read', 'tests.test_io.test_write[utf-8]'], warnedTests: [], failedTests: [], total: 2 });
  });

  it('PASSED only when nothing failed or was skipped; WARNED when something was skipped; nested suites count', () => {
    const xml = '<testsuites><testsuite name="outer"><testcase name="a"/><testsuite name="inner"><testcase classname="k" name="b"/><testcase name="c"><skipped message="later"/></testcase></testsuite></testsuite></testsuites>';
    expect(parseJUnit(xml)).toEqual({ result: 'WARNED', passedTests: ['a', 'k.b'], warnedTests: ['c'], failedTests: [], total: 3 });
    expect(parseJUnit('<testsuite><testcase name="a"/></testsuite>').result).toBe('PASSED');
    // A report with no test case proves nothing.
    expect(parseJUnit('<testsuites><testsuite name="empty" tests="0"/></testsuites>')).toMatchObject({ result: 'FAILED', total: 0 });
  });

  it('refuses malformed XML naming the line, and documents that are not JUnit', () => {
    expect(refusal(fixture('malformed.xml')).message).toMatch(/^invalid JUnit report: malformed XML at line \d+, column \d+: .*testcase/);
    expect(refusal('').message).toContain('empty');
    expect(refusal('just some text').message).toContain('invalid JUnit report');
    expect(refusal('<html><body>tests passed</body></html>').message).toContain('the root element is <html>');
    expect(refusal('<a x="1></a>').message).toContain('malformed XML');
  });

  it('refuses reports over 10 MiB before parsing', () => {
    const big = `<testsuite>${'<testcase name="x"/>'.repeat(Math.ceil(MAX_JUNIT_BYTES / 20) + 1)}</testsuite>`;
    expect(refusal(big).message).toContain('at most 10485760');
  });

  it('leaves a billion-laughs chain inert: nothing expands, it finishes at once', () => {
    const started = process.hrtime.bigint();
    const r = parseJUnit(fixture('billion-laughs.xml'));
    expect(Number(process.hrtime.bigint() - started) / 1e6).toBeLessThan(500);
    expect(r).toEqual({ result: 'PASSED', passedTests: ['x.&lol9;', 'ok'], warnedTests: [], failedTests: [], total: 2 });
  });

  it('refuses external entities (no file read, no request), naming the reason', () => {
    const err = refusal(fixture('xxe.xml'));
    expect(err.message).toMatch(/external entit/i);
    expect(err.message).not.toContain('root:');
  });

  it('refuses pathological nesting instead of recursing without bound', () => {
    const deep = `<testsuites>${'<testsuite>'.repeat(500)}<testcase name="x"/>${'</testsuite>'.repeat(500)}</testsuites>`;
    expect(refusal(deep).code).toBe('VALIDATION_FAILED');
  });
});

describe('testResultFromExit', () => {
  it('exit 0 passed, anything else failed', () => {
    expect(testResultFromExit(0)).toEqual({ result: 'PASSED', passedTests: [], warnedTests: [], failedTests: [], total: 0 });
    expect(testResultFromExit(1).result).toBe('FAILED');
    expect(testResultFromExit(137).result).toBe('FAILED');
  });
});
