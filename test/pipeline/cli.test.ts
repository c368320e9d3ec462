/** `airlock lint` and `airlock schema pipeline`, in process through the real command tree. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/index.js';
import type { Io } from '../../src/cli/index.js';

function sink(): { stream: Writable; text: () => string } {
  let buf = '';
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, done) {
      buf += chunk.toString();
      done();
    },
  });
  return { stream, text: () => buf };
}

const dir = mkdtempSync(join(tmpdir(), 'airlock-lint-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function run(args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = sink();
  const err = sink();
  const input = new PassThrough();
  input.end(stdin ?? '');
  const io: Io = { stdout: out.stream, stderr: err.stream, stdin: input, env: {}, cwd: dir, stderrIsTTY: false };
  const code = await main(['node', 'airlock', ...args], io);
  return { code, stdout: out.text(), stderr: err.text() };
}

const VALID = ['version: 1', 'pipeline: web', 'owners: [alice]', 'stages:', '  build:', '    steps:', '      - { name: a, run: make }', '      - { name: b, run: make test }', '  ship:', '    needs: [build]', '    steps:', '      - { name: c, run: ./ship.sh }', ''].join('\n');
const INVALID = VALID.replace('run: make test', 'run: make test, retries: 1').replace('needs: [build]', 'needs: [biuld]');

describe('airlock lint', () => {
  it('prints ok with the counts and exits 0 for the default ./airlock.yaml', async () => {
    writeFileSync(join(dir, 'airlock.yaml'), VALID);
    const r = await run(['lint']);
    expect(r).toMatchObject({ code: 0, stdout: 'ok: 2 stages, 3 steps\n' });
  });

  it('prints one line per problem and exits 1', async () => {
    writeFileSync(join(dir, 'bad.yaml'), INVALID);
    const r = await run(['lint', 'bad.yaml']);
    expect(r.code).toBe(1);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^bad\.yaml:8:45: retries_not_idempotent: retries: 1 needs idempotent: true \(hint: add `idempotent: true`/);
    expect(lines[1]).toMatch(/^bad\.yaml:10:13: unknown_stage: .*\(hint: did you mean `build`\?\)$/);
    expect(r.stderr).toBe('2 problem(s) in bad.yaml\n');
  });

  it('--json prints { ok, problems } only on stdout', async () => {
    writeFileSync(join(dir, 'bad.yaml'), INVALID);
    const bad = await run(['lint', 'bad.yaml', '--json']);
    expect(bad.code).toBe(1);
    const doc = JSON.parse(bad.stdout) as { ok: boolean; problems: { code: string; line: number; col: number; file: string }[] };
    expect(doc.ok).toBe(false);
    expect(doc.problems.map((p) => p.code)).toEqual(['retries_not_idempotent', 'unknown_stage']);
    expect(bad.stderr).toBe('');
    const good = await run(['lint', 'airlock.yaml', '--json']);
    expect(good.code).toBe(0);
    expect(JSON.parse(good.stdout)).toMatchObject({ ok: true, problems: [], pipeline: 'web', stages: 2, steps: 3 });
  });

  it('reads stdin for -', async () => {
    const r = await run(['lint', '-'], VALID.replace('run: ./ship.sh', 'run: "curl -u ops:Winter2024x https://x.example.com"'));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^<stdin>:12:38: hardcoded_credential: hard-coded secret assignment \(generic_secret\) in stages\.ship\.steps\[0\]\.run: … \(11 chars\)/);
    expect(r.stdout).not.toContain('Winter2024x');
  });

  it('a missing file is an error naming it (exit 1)', async () => {
    const r = await run(['lint', 'nope.yaml']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot read nope\.yaml: no such file/);
  });
});

describe('airlock schema pipeline', () => {
  it('prints the JSON Schema', async () => {
    const r = await run(['schema', 'pipeline']);
    expect(r.code).toBe(0);
    const schema = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.required).toEqual(['version', 'pipeline', 'owners', 'stages']);
  });
});
