/**
 * A root layout derived from a pipeline: one in-toto step per pipeline step that ran, the runner
 * keys that may perform it, and artifact rules that chain every input to the step that produced
 * it. Rule semantics are in-toto 1.3's (verifylib.verify_item_rules): rules run in order over a
 * queue of the link's artifacts; MATCH, CREATE and ALLOW consume, REQUIRE fails when its path is
 * not (still) queued, DISALLOW fails when anything matching is left. A MATCH whose digests differ
 * consumes nothing, so the closing DISALLOW is what turns a swapped artifact into a failure.
 */
import type { KeyObject } from 'node:crypto';
import { AirlockError } from '../errors/index.js';
import type { PipelineDefinition, StageDefinition, StepDefinition } from '../pipeline/index.js';
import { inTotoLayoutKey } from './keys.js';
import { commandArgv, stepName } from './link.js';
import type { ArtifactRule, InTotoLayout, InTotoLayoutKey, InTotoStep } from './types.js';

/** A runner key; with `labels`, it may perform only steps whose `runs-on` labels it all has. */
export interface Functionary {
  readonly key: KeyObject;
  readonly labels?: readonly string[] | undefined;
}

export interface LayoutOptions {
  /** The steps that ran (default: every step of the pipeline). */
  readonly steps?: readonly { readonly stage: string; readonly step: string }[];
  readonly expires: Date;
  readonly readme?: string;
}

/** in-toto's `YYYY-MM-DDTHH:MM:SSZ` (ISO8601_DATETIME_SCHEMA: no fractional seconds). */
export function inTotoDate(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** fnmatch-escape a literal path: MATCH, CREATE and ALLOW take patterns, REQUIRE a plain path. */
export function fnmatchEscape(path: string): string {
  return path.replace(/[[*?]/g, (c) => `[${c}]`);
}

function functionaryOf(f: KeyObject | Functionary): Functionary {
  return 'key' in f ? f : { key: f };
}

/** Stages `stage` needs, transitively. */
function neededStages(pipeline: PipelineDefinition, stage: StageDefinition): Set<string> {
  const seen = new Set<string>();
  const todo = [...stage.needs];
  for (let name = todo.pop(); name !== undefined; name = todo.pop()) {
    if (seen.has(name)) continue;
    seen.add(name);
    todo.push(...(pipeline.stages.find((s) => s.name === name)?.needs ?? []));
  }
  return seen;
}

/** The in-toto name of the step that produced `path` for `stage` (docs/pipeline.md: exactly one). */
function producerOf(pipeline: PipelineDefinition, stage: StageDefinition, step: StepDefinition, path: string, ran: ReadonlySet<string>): string {
  const needed = neededStages(pipeline, stage);
  const producers = pipeline.stages.filter((s) => needed.has(s.name)).flatMap((s) => s.steps.filter((p) => p.outputs.includes(path)).map((p) => stepName(s.name, p.name)));
  const [producer, ...more] = producers;
  if (producer === undefined || more.length > 0) {
    throw new AirlockError('CONFLICT', `input ${path} of ${stepName(stage.name, step.name)} must be produced by exactly one step of a stage it needs; found ${producers.length}`, { step: stepName(stage.name, step.name), input: path });
  }
  if (!ran.has(producer)) throw new AirlockError('CONFLICT', `input ${path} of ${stepName(stage.name, step.name)} comes from ${producer}, which did not run`, { step: stepName(stage.name, step.name), producer });
  return producer;
}

/**
 * Materials: every input must be REQUIREd and MATCH the producer's products (same path, same
 * digest); nothing else. Products: every output REQUIREd and CREATEd (ALLOWed when the step
 * rewrites one of its own inputs: CREATE only consumes paths that are not materials); nothing else.
 */
function rulesFor(pipeline: PipelineDefinition, stage: StageDefinition, step: StepDefinition, ran: ReadonlySet<string>): { materials: ArtifactRule[]; products: ArtifactRule[] } {
  const materials: ArtifactRule[] = [
    ...step.inputs.map((p) => ['REQUIRE', p]),
    ...step.inputs.map((p) => ['MATCH', fnmatchEscape(p), 'WITH', 'PRODUCTS', 'FROM', producerOf(pipeline, stage, step, p, ran)]),
    ['DISALLOW', '*'],
  ];
  const products: ArtifactRule[] = [
    ...step.outputs.map((p) => ['REQUIRE', p]),
    ...step.outputs.map((p) => [step.inputs.includes(p) ? 'ALLOW' : 'CREATE', fnmatchEscape(p)]),
    ['DISALLOW', '*'],
  ];
  return { materials, products };
}

/** The `signed` body of the root layout for `pipeline`. Throws CONFLICT when a ran step cannot be mapped or performed. */
export function layoutFor(pipeline: PipelineDefinition, functionaries: readonly (KeyObject | Functionary)[], opts: LayoutOptions): InTotoLayout {
  const all = pipeline.stages.flatMap((stage) => stage.steps.map((step) => ({ stage, step, name: stepName(stage.name, step.name) })));
  const ran = new Set((opts.steps ?? all.map((s) => ({ stage: s.stage.name, step: s.step.name }))).map((s) => stepName(s.stage, s.step)));
  for (const name of ran) {
    if (!all.some((s) => s.name === name)) throw new AirlockError('CONFLICT', `step ${name} is not in pipeline ${pipeline.name}`, { step: name });
  }
  const keyed = functionaries.map(functionaryOf).map((f) => ({ labels: f.labels, key: inTotoLayoutKey(f.key) }));
  const keys: Record<string, InTotoLayoutKey> = {};
  const steps: InTotoStep[] = [];
  for (const { stage, step, name } of all) {
    if (!ran.has(name)) continue;
    const allowed = keyed.filter((f) => f.labels === undefined || step.runsOn.every((l) => f.labels?.includes(l) === true));
    if (allowed.length === 0) throw new AirlockError('CONFLICT', `no runner key may perform ${name} (runs-on: ${step.runsOn.join(', ') || 'any'})`, { step: name });
    const pubkeys = [...new Set(allowed.map((f) => f.key.keyid))].sort();
    for (const f of allowed) keys[f.key.keyid] = f.key;
    const rules = rulesFor(pipeline, stage, step, ran);
    steps.push({
      _type: 'step',
      name,
      threshold: 1,
      pubkeys,
      // A differing command is only a warning in in-toto; it documents what the step ran.
      expected_command: commandArgv(step.run),
      expected_materials: rules.materials,
      expected_products: rules.products,
    });
  }
  return {
    _type: 'layout',
    expires: inTotoDate(opts.expires),
    keys,
    steps,
    inspect: [],
    readme: opts.readme ?? `Airlock pipeline ${pipeline.name} (${pipeline.digest}): each step's link is signed by the runner that executed it; inputs must match the products of the step that made them.`,
  };
}
