/** parsePipeline and lintPipeline: the two ways in. */
import { scanSource } from './credentials.js';
import { checkEnvironments, ownerProblems } from './environments.js';
import { PipelineInvalidError } from './errors.js';
import { checkGraph } from './graph.js';
import type { Source } from './source.js';
import { Problems, readSource, sortProblems } from './source.js';
import type { PipelineDefinition, PipelineProblem, StageDefinition } from './types.js';
import { walkPipeline } from './validate.js';

interface Analysis {
  readonly source: Source;
  readonly problems: PipelineProblem[];
  readonly definition: PipelineDefinition | undefined;
  /** What `airlock lint` adds to validation besides the credential scan (ownership). */
  readonly advisories: PipelineProblem[];
}

function analyse(text: string | Buffer, file: string): Analysis {
  const { source, problems } = readSource(text, file);
  if (source.doc === undefined) return { source, problems: sortProblems(problems.list), definition: undefined, advisories: [] };
  const draft = walkPipeline(source, problems);
  const order = checkGraph(draft, problems);
  checkEnvironments(draft, problems);
  const advisories = new Problems(source.file, source.lines);
  ownerProblems(draft, advisories);
  if (problems.list.length > 0 || order === undefined || draft.name === undefined) {
    return { source, problems: sortProblems(problems.list), definition: undefined, advisories: advisories.list };
  }
  const stages: StageDefinition[] = order.map((i) => {
    const s = draft.stages[i];
    if (s === undefined) throw new Error('unreachable: stage index out of range');
    return Object.freeze({
      name: s.name,
      needs: Object.freeze(s.needs.map((n) => n.value)),
      environment: s.environment?.value,
      steps: Object.freeze(s.steps.map((step) => step.definition)),
    });
  });
  const definition: PipelineDefinition = Object.freeze({
    version: 1,
    name: draft.name,
    owners: Object.freeze([...draft.owners]),
    environments: Object.freeze(Object.fromEntries(draft.environments)),
    stages: Object.freeze(stages),
    digest: source.digest,
  });
  return { source, problems: [], definition, advisories: advisories.list };
}

/**
 * Parse and validate an `airlock.yaml` file (docs/pipeline.md).
 * Throws PipelineInvalidError (code VALIDATION_FAILED) listing every problem found.
 *
 * @example
 * const def = parsePipeline(await readFile('airlock.yaml'));
 * for (const stage of def.stages) console.log(stage.name, stage.steps.length);
 */
export function parsePipeline(text: string | Buffer, file = 'airlock.yaml'): PipelineDefinition {
  const { problems, definition } = analyse(text, file);
  if (definition === undefined) throw new PipelineInvalidError(file, problems);
  return definition;
}

/** Everything parsePipeline checks plus the hard-coded credential scan and ownership (an environment without owners); [] when the file is clean. */
export function lintPipeline(text: string | Buffer, file = 'airlock.yaml'): PipelineProblem[] {
  return lintPipelineWithDefinition(text, file).problems;
}

/** lintPipeline, also returning the definition when the file is valid (the CLI prints its size). */
export function lintPipelineWithDefinition(text: string | Buffer, file = 'airlock.yaml'): { problems: PipelineProblem[]; definition: PipelineDefinition | undefined } {
  const { source, problems, definition, advisories } = analyse(text, file);
  return { problems: sortProblems([...problems, ...advisories, ...scanSource(source)]), definition };
}
