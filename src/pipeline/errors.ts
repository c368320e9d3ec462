import { AirlockError } from '../errors/index.js';
import type { PipelineProblem } from './types.js';

/** The file is not a valid pipeline; `problems` lists every problem found, in file order. */
export class PipelineInvalidError extends AirlockError {
  readonly problems: readonly PipelineProblem[];

  constructor(file: string, problems: readonly PipelineProblem[]) {
    const first = problems[0];
    const lead = first === undefined ? '' : `; first: ${first.file}:${first.line}:${first.col}: ${first.code}: ${first.message}`;
    super('VALIDATION_FAILED', `${file} is not a valid pipeline: ${problems.length} problem(s)${lead}`, { problems });
    this.problems = problems;
  }
}

/** An environment's overrides file is not a flat map of variable names to strings; `problems` lists why. */
export class OverridesInvalidError extends AirlockError {
  readonly problems: readonly PipelineProblem[];

  constructor(file: string, problems: readonly PipelineProblem[]) {
    const first = problems[0];
    const lead = first === undefined ? '' : `; first: ${first.file}:${first.line}:${first.col}: ${first.code}: ${first.message}`;
    super('VALIDATION_FAILED', `${file} is not a valid overrides file: ${problems.length} problem(s)${lead}`, { problems });
    this.problems = problems;
  }
}
