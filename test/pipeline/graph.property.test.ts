/**
 * Properties of the stage graph: any DAG parses, in a topological order with ties in file
 * order; any graph with a cycle is refused, and the cycle named is a real one.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PipelineProblem } from '../../src/pipeline/index.js';
import { PipelineInvalidError, lintPipeline, parsePipeline } from '../../src/pipeline/index.js';

/** needs[i] lists indices of stages that stage i needs; `order` is the file order of the stages. */
interface Graph {
  readonly needs: readonly (readonly number[])[];
  readonly order: readonly number[];
}

const name = (i: number): string => `s${i}`;

function render(g: Graph): string {
  const lines = ['version: 1', 'pipeline: prop', 'owners: [alice]', 'stages:'];
  for (const i of g.order) {
    lines.push(`  ${name(i)}:`, `    needs: [${(g.needs[i] ?? []).map(name).join(', ')}]`, '    steps:', `      - { name: s, run: make ${name(i)} }`);
  }
  return `${lines.join('\n')}\n`;
}

/** A random DAG: stage i needs only stages with a smaller index; the file lists them shuffled. */
const dag: fc.Arbitrary<Graph> = fc.integer({ min: 1, max: 14 }).chain((n) =>
  fc
    .tuple(
      fc.tuple(...Array.from({ length: n }, (_, i) => fc.subarray(Array.from({ length: i }, (_, j) => j)))),
      fc.shuffledSubarray(Array.from({ length: n }, (_, i) => i), { minLength: n, maxLength: n }),
    )
    .map(([needs, order]) => ({ needs, order })),
);

/** Reference order: repeatedly take the earliest stage in the file whose needs have all run. */
function expectedOrder(g: Graph): string[] {
  const done = new Set<number>();
  const out: string[] = [];
  while (out.length < g.order.length) {
    const next = g.order.find((i) => !done.has(i) && (g.needs[i] ?? []).every((j) => done.has(j)));
    if (next === undefined) throw new Error('not a DAG');
    done.add(next);
    out.push(name(next));
  }
  return out;
}

describe('stage graph properties', () => {
  it('every DAG parses, topologically ordered with ties in file order', () => {
    fc.assert(
      fc.property(dag, (g) => {
        const def = parsePipeline(render(g));
        const order = def.stages.map((s) => s.name);
        expect(order).toEqual(expectedOrder(g));
        const position = new Map(order.map((s, k) => [s, k]));
        for (const stage of def.stages) for (const need of stage.needs) expect(position.get(need)!).toBeLessThan(position.get(stage.name)!);
      }),
      { numRuns: 200 },
    );
  });

  it('a graph with an injected cycle is refused, naming a real cycle', () => {
    const withCycle = dag.chain((g) =>
      fc
        .uniqueArray(fc.integer({ min: 0, max: g.needs.length - 1 }), { minLength: 1, maxLength: Math.min(5, g.needs.length) })
        .map((members) => {
          // members[0] needs members[1] needs ... needs members[0].
          const needs = g.needs.map((n) => [...n]);
          members.forEach((m, k) => {
            const target = members[(k + 1) % members.length]!;
            if (!needs[m]!.includes(target)) needs[m]!.push(target);
          });
          return { needs, order: g.order };
        }),
    );
    fc.assert(
      fc.property(withCycle, (g) => {
        let problems: readonly PipelineProblem[] = [];
        try {
          parsePipeline(render(g));
        } catch (err) {
          if (!(err instanceof PipelineInvalidError)) throw err;
          problems = err.problems;
        }
        const cycles = problems.filter((p) => p.code === 'cycle');
        expect(cycles.length).toBeGreaterThan(0);
        for (const p of cycles) {
          const named = /cycle: ([a-z0-9 >-]+?)(?: \(|$)/.exec(p.message)?.[1]?.split(' -> ');
          expect(named).toBeDefined();
          expect(named![0]).toBe(named![named!.length - 1]);
          for (let k = 0; k + 1 < named!.length; k++) {
            const from = Number(named![k]!.slice(1));
            const to = Number(named![k + 1]!.slice(1));
            expect(g.needs[from]).toContain(to);
          }
        }
        // Only cycle and unreachable_stage problems: nothing else is wrong with these files.
        expect(new Set(problems.map((p) => p.code))).toEqual(new Set(problems.some((p) => p.code === 'unreachable_stage') ? ['cycle', 'unreachable_stage'] : ['cycle']));
        expect(lintPipeline(render(g)).length).toBe(problems.length);
      }),
      { numRuns: 200 },
    );
  });

  it('handles a long chain without recursion limits', () => {
    const n = 256;
    const g: Graph = { needs: Array.from({ length: n }, (_, i) => (i === 0 ? [] : [i - 1])), order: Array.from({ length: n }, (_, i) => n - 1 - i) };
    expect(parsePipeline(render(g)).stages.map((s) => s.name)).toEqual(Array.from({ length: n }, (_, i) => name(i)));
  });
});
