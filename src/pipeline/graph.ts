/**
 * The graph pass: `needs` must name stages, form no cycle and leave no stage waiting forever;
 * `environment` must be declared; every input must come from exactly one step of a stage the
 * consumer (transitively) needs. Also the topological order the runner follows.
 */
import type { Problems } from './source.js';
import type { Draft, DraftStage, DraftStep, Located } from './validate.js';
import { closest } from './suggest.js';

/** Strongly connected components (Tarjan, iterative: no recursion depth limit), each in discovery order. */
function components(count: number, edges: readonly (readonly number[])[]): number[][] {
  const index = new Array<number>(count).fill(-1);
  const low = new Array<number>(count).fill(0);
  const onStack = new Array<boolean>(count).fill(false);
  const stack: number[] = [];
  const out: number[][] = [];
  let next = 0;
  for (let root = 0; root < count; root++) {
    if (index[root] !== -1) continue;
    const work: [number, number][] = [[root, 0]];
    while (work.length > 0) {
      const frame = work[work.length - 1];
      if (frame === undefined) break;
      const [v, i] = frame;
      if (i === 0) {
        index[v] = low[v] = next++;
        stack.push(v);
        onStack[v] = true;
      }
      const targets = edges[v] ?? [];
      if (i < targets.length) {
        frame[1] = i + 1;
        const w = targets[i] ?? 0;
        if (index[w] === -1) work.push([w, 0]);
        else if (onStack[w] === true) low[v] = Math.min(low[v] ?? 0, index[w] ?? 0);
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent !== undefined) low[parent[0]] = Math.min(low[parent[0]] ?? 0, low[v] ?? 0);
      if (low[v] === index[v]) {
        const component: number[] = [];
        let w: number | undefined;
        do {
          w = stack.pop();
          if (w === undefined) break;
          onStack[w] = false;
          component.push(w);
        } while (w !== v);
        out.push(component);
      }
    }
  }
  return out;
}

/** The shortest cycle through `start` inside `members` (breadth-first over `needs` edges). */
function cycleThrough(start: number, members: ReadonlySet<number>, edges: readonly (readonly number[])[]): number[] {
  const previous = new Map<number, number>();
  const queue = [start];
  for (let head = 0; head < queue.length; head++) {
    const v = queue[head] ?? start;
    for (const w of edges[v] ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path = [v];
        for (let u = v; u !== start; ) {
          u = previous.get(u) ?? start;
          path.push(u);
        }
        return path.reverse();
      }
      if (!previous.has(w) && w !== start) {
        previous.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start];
}

/** A binary min-heap of stage indices: ready stages leave in file order. */
class MinHeap {
  private readonly items: number[] = [];
  get size(): number {
    return this.items.length;
  }
  push(x: number): void {
    const a = this.items;
    a.push(x);
    for (let i = a.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if ((a[p] ?? 0) <= x) break;
      a[i] = a[p] ?? 0;
      a[p] = x;
      i = p;
    }
  }
  pop(): number | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && (a[l] ?? 0) < (a[m] ?? 0)) m = l;
        if (r < a.length && (a[r] ?? 0) < (a[m] ?? 0)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m] ?? 0, a[i] ?? 0];
        i = m;
      }
    }
    return top;
  }
}

/** Check the stage graph; returns stage indices in run order, or undefined when the graph is broken. */
export function checkGraph(draft: Draft, problems: Problems): number[] | undefined {
  const stages = draft.stages;
  const byName = new Map<string, number>();
  stages.forEach((s, i) => byName.set(s.name, i));
  const edges: number[][] = stages.map(() => []);
  const edgeNodes = new Map<string, Located<string>>();
  const broken = new Set<number>();

  stages.forEach((stage, i) => {
    for (const need of stage.needs) {
      const j = byName.get(need.value);
      if (j === undefined) {
        const guess = closest(need.value, byName.keys());
        problems.at(need.node, need.path, 'unknown_stage', `stage ${stage.name} needs ${JSON.stringify(need.value)}, which is not a stage of this pipeline`, guess !== undefined ? `did you mean \`${guess}\`?` : `name one of: ${[...byName.keys()].join(', ')}`);
        broken.add(i);
        continue;
      }
      (edges[i] ?? []).push(j);
      edgeNodes.set(`${i}>${j}`, need);
    }
  });

  const cyclic = new Set<number>();
  for (const component of components(stages.length, edges)) {
    const only = component[0];
    const selfLoop = component.length === 1 && only !== undefined && (edges[only] ?? []).includes(only);
    if (component.length < 2 && !selfLoop) continue;
    for (const v of component) cyclic.add(v);
    const start = Math.min(...component);
    const cycle = cycleThrough(start, new Set(component), edges);
    const names = [...cycle, start].map((v) => stages[v]?.name ?? '?');
    const closing = edgeNodes.get(`${start}>${cycle[1] ?? start}`);
    const others = component.length > cycle.length ? ` (${component.length} stages are caught in it)` : '';
    problems.at(closing?.node ?? stages[start]?.keyNode, closing?.path ?? stages[start]?.path ?? 'stages', 'cycle', `stages need each other in a cycle: ${names.join(' -> ')}${others}`, 'remove one of these `needs` entries: a stage can only need stages that run before it');
  }

  // A stage that waits, directly or not, on a cycle or an unknown stage can never run.
  const blocked = new Map<number, number>();
  let changed = true;
  const bad = (j: number): boolean => broken.has(j) || cyclic.has(j) || blocked.has(j);
  while (changed) {
    changed = false;
    stages.forEach((_, i) => {
      if (bad(i)) return;
      const culprit = (edges[i] ?? []).find(bad);
      if (culprit !== undefined) {
        blocked.set(i, culprit);
        changed = true;
      }
    });
  }
  for (const [i, j] of [...blocked].sort((a, b) => a[0] - b[0])) {
    const stage = stages[i];
    const culprit = stages[j];
    if (stage === undefined || culprit === undefined) continue;
    const why = cyclic.has(j) ? 'is in a cycle' : broken.has(j) ? 'needs a stage that does not exist' : 'can never run';
    problems.at(stage.keyNode, stage.path, 'unreachable_stage', `stage ${stage.name} can never run: it needs ${culprit.name}, which ${why}`, `fix ${culprit.name} first (see the problem reported there), or remove it from the needs of ${stage.name}`);
  }

  for (const stage of stages) {
    const env = stage.environment;
    if (env !== undefined && !draft.environments.has(env.value)) {
      const guess = closest(env.value, draft.environments.keys());
      const declared = [...draft.environments.keys()];
      problems.at(env.node, env.path, 'unknown_environment', `stage ${stage.name} deploys to ${JSON.stringify(env.value)}, which is not declared under \`environments:\``, guess !== undefined ? `did you mean \`${guess}\`?` : declared.length === 0 ? `declare it: environments: { ${env.value}: {} }` : `declare it under \`environments:\` or use one of: ${declared.join(', ')}`);
    }
  }

  checkInputs(stages, edges, problems);

  if (broken.size > 0 || cyclic.size > 0) return undefined;
  return topologicalOrder(stages.length, edges);
}

/** Kahn's algorithm; among ready stages the earliest in the file goes first. */
function topologicalOrder(count: number, edges: readonly (readonly number[])[]): number[] {
  const waiting = new Array<number>(count).fill(0);
  const dependents: number[][] = Array.from({ length: count }, () => []);
  edges.forEach((targets, i) => {
    for (const j of targets) {
      waiting[i] = (waiting[i] ?? 0) + 1;
      dependents[j]?.push(i);
    }
  });
  const ready = new MinHeap();
  waiting.forEach((n, i) => {
    if (n === 0) ready.push(i);
  });
  const order: number[] = [];
  for (let v = ready.pop(); v !== undefined; v = ready.pop()) {
    order.push(v);
    for (const d of dependents[v] ?? []) {
      waiting[d] = (waiting[d] ?? 0) - 1;
      if (waiting[d] === 0) ready.push(d);
    }
  }
  return order;
}

/** Every stage `i` (transitively) needs, not including itself unless through a cycle. */
function ancestors(i: number, edges: readonly (readonly number[])[]): Set<number> {
  const seen = new Set<number>();
  const todo = [...(edges[i] ?? [])];
  for (let v = todo.pop(); v !== undefined; v = todo.pop()) {
    if (seen.has(v)) continue;
    seen.add(v);
    todo.push(...(edges[v] ?? []));
  }
  return seen;
}

function checkInputs(stages: readonly DraftStage[], edges: readonly (readonly number[])[], problems: Problems): void {
  const producers = new Map<string, { stage: number; step: DraftStep }[]>();
  stages.forEach((stage, i) => {
    for (const step of stage.steps) {
      for (const out of step.outputs) {
        const list = producers.get(out.value) ?? [];
        list.push({ stage: i, step });
        producers.set(out.value, list);
      }
    }
  });
  const label = (p: { stage: number; step: DraftStep }): string => `${stages[p.stage]?.name ?? '?'}.${p.step.definition.name}`;
  stages.forEach((stage, i) => {
    const needed = ancestors(i, edges);
    for (const step of stage.steps) {
      for (const input of step.inputs) {
        const all = producers.get(input.value) ?? [];
        const usable = all.filter((p) => needed.has(p.stage) && p.stage !== i);
        if (usable.length === 1) continue;
        if (usable.length > 1) {
          problems.at(input.node, input.path, 'ambiguous_input', `input ${input.value} is produced by more than one step: ${usable.map(label).join(', ')}`, 'make exactly one of those steps list it under `outputs:` (rename the other file)');
          continue;
        }
        const sameStage = all.find((p) => p.stage === i);
        const elsewhere = all.find((p) => p.stage !== i);
        let hint: string;
        if (elsewhere !== undefined) hint = `it is produced by ${label(elsewhere)}: add ${stages[elsewhere.stage]?.name ?? '?'} to the \`needs\` of ${stage.name}`;
        else if (sameStage !== undefined) hint = `it is produced by ${label(sameStage)} in the same stage; inputs come only from stages this one needs: move that step to an earlier stage`;
        else hint = `list it under \`outputs:\` of a step in a stage that ${stage.name} needs, or remove it`;
        problems.at(input.node, input.path, 'input_not_produced', `input ${input.value} of ${stage.name}.${step.definition.name} is not produced by any stage ${stage.name} needs`, hint);
      }
    }
  });
}
