/**
 * The environment pass: what an environment's rules name must exist and be satisfiable
 * (evidence from stages that produce test results, lower environments without a cycle), and
 * the ownership check `airlock lint` adds.
 */
import type { Problems } from './source.js';
import { closest } from './suggest.js';
import type { Draft, DraftEnvironment } from './validate.js';

/** Cross-references of `environments.*.evidence`; problems make the file invalid. */
export function checkEnvironments(draft: Draft, problems: Problems): void {
  const stages = new Map(draft.stages.map((s) => [s.name, s]));
  for (const env of draft.environmentDrafts) {
    for (const t of env.tests) {
      const stage = stages.get(t.value);
      if (stage === undefined) {
        const guess = closest(t.value, stages.keys());
        problems.at(t.node, t.path, 'unknown_stage', `environment ${env.name} requires test results of stage ${JSON.stringify(t.value)}, which does not exist`, guess !== undefined ? `did you mean \`${guess}\`?` : `name a stage of this pipeline: ${[...stages.keys()].join(', ')}`);
      } else if (!stage.steps.some((s) => s.definition.evidence === 'test')) {
        // Such a stage never produces a test result, so the gate could never open.
        problems.at(t.node, t.path, 'no_test_evidence', `stage ${t.value} has no step with \`evidence: test\`, so it never produces the test results environment ${env.name} requires`, `mark the step that runs the tests in stage ${t.value} with \`evidence: test\`, or remove ${t.value} from evidence.tests`);
      }
    }
    for (const a of env.after) {
      if (a.value === env.name) {
        problems.at(a.node, a.path, 'environment_cycle', `environment ${env.name} requires a deployment to itself first`, `remove ${env.name} from its own evidence.environments; list the lower environments (for example staging) instead`);
      } else if (!draft.environments.has(a.value)) {
        const guess = closest(a.value, draft.environments.keys());
        problems.at(a.node, a.path, 'unknown_environment', `environment ${env.name} requires a deployment to ${JSON.stringify(a.value)} first, which is not declared under \`environments:\``, guess !== undefined ? `did you mean \`${guess}\`?` : `declare it under \`environments:\` or remove it from evidence.environments`);
      }
    }
  }
  reportCycles(draft.environmentDrafts, problems);
}

/**
 * Environments that each require a deployment to the other first could never be deployed.
 * Reported once per cycle, at the first environment (in file order) that is on it.
 */
function reportCycles(envs: readonly DraftEnvironment[], problems: Problems): void {
  const index = new Map(envs.map((e, i) => [e.name, i]));
  const reported = new Set<number>();
  envs.forEach((env, start) => {
    if (reported.has(start)) return;
    // Breadth-first from start's requirements back to start: the shortest cycle through it.
    const previous = new Map<number, number>();
    const queue: number[] = [];
    for (const a of env.after) {
      const j = index.get(a.value);
      if (j !== undefined && j !== start && !previous.has(j)) {
        previous.set(j, start);
        queue.push(j);
      }
    }
    for (let head = 0; head < queue.length; head++) {
      const v = queue[head] ?? start;
      for (const a of envs[v]?.after ?? []) {
        const w = index.get(a.value);
        if (w === undefined || w === v) continue;
        if (w === start) {
          const cycle = [v];
          for (let u = v; u !== start; ) {
            u = previous.get(u) ?? start;
            cycle.push(u);
          }
          cycle.reverse();
          // Earlier environments of this cycle were checked first, so none of them is on it.
          if (cycle.some((c) => c < start)) return;
          for (const c of cycle) reported.add(c);
          const first = cycle[1] ?? start;
          const entry = env.after.find((x) => index.get(x.value) === first) ?? env.after[0];
          const names = [...cycle, start].map((c) => envs[c]?.name ?? '?');
          problems.at(entry?.node, entry?.path ?? env.path, 'environment_cycle', `environments require each other to be deployed first: ${names.join(' -> ')}`, 'remove one of them from the other\'s evidence.environments: promotion runs from lower to higher environments');
          return;
        }
        if (!previous.has(w)) {
          previous.set(w, v);
          queue.push(w);
        }
      }
    }
  });
}

/**
 * `airlock lint` only: every environment without owners. Someone must answer for each
 * environment (for a protected one, also approve changes to its rules); the file stays valid so
 * existing pipelines keep running.
 */
export function ownerProblems(draft: Draft, problems: Problems): void {
  for (const env of draft.environmentDrafts) {
    if (env.definition.owners.length > 0) continue;
    if (env.definition.protected) {
      problems.at(env.keyNode, env.path, 'no_owner', `protected environment ${env.name} has no owners`, `add \`owners: [...]\` to environment ${env.name}: the users or roles who answer for it and approve changes to its rules`);
    } else {
      problems.at(env.keyNode, env.path, 'no_owner', `environment ${env.name} has no owners`, `add \`owners: [...]\` to environment ${env.name}: the users or roles who answer for it`);
    }
  }
}
