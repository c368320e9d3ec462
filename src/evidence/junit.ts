/**
 * Test evidence from JUnit XML (the de facto report format of vitest, jest-junit, pytest,
 * surefire, go-junit-report). Reports come out of a step, so they are hostile input: bounded
 * in size and depth, checked for well-formedness first, and no entity is expanded beyond the
 * five XML predefines and character references (a DTD's entities, including a billion-laughs
 * chain or an external file, stay literal text). Nothing is fetched.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { ValidationError } from '../errors/index.js';

export type TestResult = 'PASSED' | 'WARNED' | 'FAILED';

/** The in-toto test-result predicate's fields, from one report. */
export interface TestSummary {
  readonly result: TestResult;
  readonly passedTests: readonly string[];
  readonly warnedTests: readonly string[];
  readonly failedTests: readonly string[];
  readonly total: number;
}

/** Largest report accepted (UTF-8 bytes). */
export const MAX_JUNIT_BYTES = 10 * 1024 * 1024;
/** Deepest element nesting accepted (suites nest a few levels; 100 is the parser's own cap). */
const MAX_DEPTH = 64;

type Node = Record<string, unknown>;

function invalid(message: string): ValidationError {
  return new ValidationError(`invalid JUnit report: ${message}`, [{ path: 'junit', message }]);
}

const PREDEFINED: Readonly<Record<string, string>> = { lt: '<', gt: '>', amp: '&', apos: "'", quot: '"' };

/** Decode the XML predefined entities and character references; leave anything else as written. */
function decode(raw: string): string {
  return raw.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|lt|gt|amp|apos|quot);/g, (whole, ref: string) => {
    if (!ref.startsWith('#')) return PREDEFINED[ref] ?? whole;
    const code = ref.startsWith('#x') ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
    return code > 0 && code <= 0x10ffff && !(code >= 0xd800 && code <= 0xdfff) ? String.fromCodePoint(code) : whole;
  });
}

function attr(node: Node, name: string): string | undefined {
  const v = node[`@_${name}`];
  return typeof v === 'string' ? decode(v) : undefined;
}

function children(node: Node, name: string): Node[] {
  const v = node[name];
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).map((c) => (typeof c === 'object' && c !== null ? (c as Node) : {}));
}

/** `classname.name`, or `name` alone when the class name is empty or repeats it (jest-junit). */
function testName(tc: Node): string {
  const name = (attr(tc, 'name') ?? '').trim();
  const classname = (attr(tc, 'classname') ?? '').trim();
  if (classname === '' || classname === name) return name === '' ? '(unnamed test)' : name;
  return name === '' ? classname : `${classname}.${name}`;
}

/**
 * Read a JUnit XML report (`<testsuites>` or a single `<testsuite>` at the root; suites may
 * nest). A test case with `<failure>` or `<error>` failed; with `<skipped>` it is a warning;
 * otherwise it passed. The result is FAILED if any failed, else WARNED if any was skipped,
 * else PASSED; a report with no test cases at all is FAILED (it proves nothing). Malformed or
 * oversized input is refused with VALIDATION_FAILED naming the problem.
 */
export function parseJUnit(xml: string): TestSummary {
  const bytes = Buffer.byteLength(xml, 'utf8');
  if (bytes > MAX_JUNIT_BYTES) throw invalid(`the report is ${bytes} bytes; at most ${MAX_JUNIT_BYTES} (10 MiB) are read`);
  const text = xml.replace(/^\uFEFF/, '');
  if (text.trim() === '') throw invalid('the report is empty');
  // The parser alone accepts unclosed and mismatched tags; the validator (deprecated in
  // favour of a package we do not ship) is the well-formedness check of this same library.
  // eslint-disable-next-line @typescript-eslint/no-deprecated
  const valid = XMLValidator.validate(text);
  if (valid !== true) throw invalid(`malformed XML at line ${valid.err.line}, column ${valid.err.col}: ${valid.err.msg}`);
  let doc: Node;
  try {
    doc = new XMLParser({
      ignoreAttributes: false,
      attributeNamePrefix: '@_',
      // Entities are decoded by `decode` (predefined and numeric only): never a DTD's.
      processEntities: false,
      htmlEntities: false,
      parseTagValue: false,
      parseAttributeValue: false,
      ignoreDeclaration: true,
      ignorePiTags: true,
      maxNestedTags: MAX_DEPTH,
      isArray: (name, _path, _leaf, isAttribute) => !isAttribute && (name === 'testsuite' || name === 'testcase'),
    }).parse(text) as Node;
  } catch (err) {
    throw invalid((err as Error).message.slice(0, 300));
  }
  const roots = Object.keys(doc).filter((k) => !k.startsWith('?') && !k.startsWith('!'));
  const rootName = roots[0];
  if (roots.length !== 1 || rootName === undefined || (rootName !== 'testsuites' && rootName !== 'testsuite')) {
    throw invalid(`the root element is <${rootName ?? 'none'}>, not <testsuites> or <testsuite>`);
  }
  const passed: string[] = [];
  const warned: string[] = [];
  const failed: string[] = [];
  const visit = (suite: Node): void => {
    for (const tc of children(suite, 'testcase')) {
      const name = testName(tc);
      if (tc.failure !== undefined || tc.error !== undefined) failed.push(name);
      else if (tc.skipped !== undefined) warned.push(name);
      else passed.push(name);
    }
    for (const inner of children(suite, 'testsuite')) visit(inner);
  };
  for (const top of children(doc, rootName)) visit(top);
  const total = passed.length + warned.length + failed.length;
  const result: TestResult = failed.length > 0 || total === 0 ? 'FAILED' : warned.length > 0 ? 'WARNED' : 'PASSED';
  return { result, passedTests: passed, warnedTests: warned, failedTests: failed, total };
}

/** Without a report, the exit code is the only evidence: 0 passed, anything else failed. */
export function testResultFromExit(exitCode: number): TestSummary {
  return { result: exitCode === 0 ? 'PASSED' : 'FAILED', passedTests: [], warnedTests: [], failedTests: [], total: 0 };
}
