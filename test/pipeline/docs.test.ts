/** The example in docs/pipeline.md is a valid file, and the docs list every problem code the code emits. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { lintPipeline, parsePipeline } from '../../src/pipeline/index.js';

const doc = readFileSync(new URL('../../docs/pipeline.md', import.meta.url), 'utf8');
const source = (name: string): string => readFileSync(new URL(`../../src/pipeline/${name}`, import.meta.url), 'utf8');

describe('docs/pipeline.md', () => {
  it('has an example that parses and lints clean', () => {
    const example = /## Example\n\n```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(example).toBeDefined();
    expect(lintPipeline(example!)).toEqual([]);
    expect(parsePipeline(example!).stages.map((s) => s.name)).toEqual(['build', 'test', 'deploy']);
  });

  it('documents every problem code and credential kind', () => {
    // Every snake_case string literal in these files is a problem code or a credential kind.
    const emitted = new Set<string>(['empty']);
    for (const file of ['source.ts', 'validate.ts', 'graph.ts', 'environments.ts', 'config.ts', 'credentials.ts']) {
      for (const m of source(file).matchAll(/'([a-z]+(?:_[a-z]+)+)'/g)) emitted.add(m[1]!);
    }
    expect(emitted.size).toBeGreaterThan(40);
    expect([...emitted].filter((c) => !doc.includes(`\`${c}\``))).toEqual([]);
  });
});
