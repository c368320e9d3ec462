/** Test evidence: JUnit XML reports, or a step's exit code, as in-toto test-result fields. */
export { MAX_JUNIT_BYTES, parseJUnit, testResultFromExit } from './junit.js';
export type { TestResult, TestSummary } from './junit.js';
