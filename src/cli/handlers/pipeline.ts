/**
 * `airlock lint [file]` and `airlock schema pipeline`: check a pipeline file offline (structure,
 * stage graph, hard-coded credentials) and publish its JSON Schema. No server, no database.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { AirlockError, NotFoundError } from '../../errors/index.js';
import { lintPipelineWithDefinition, pipelineJsonSchema } from '../../pipeline/index.js';
import type { Cli } from '../cli.js';
import { EXIT_FAILED, EXIT_OK } from '../cli.js';
import { printJson, say } from '../io.js';

/** The exact bytes of FILE (or stdin for "-"): the digest is over bytes, not decoded text. */
async function readBytes(cli: Cli, file: string): Promise<Buffer> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of cli.io.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    return Buffer.concat(chunks);
  }
  const path = resolve(cli.io.cwd, file);
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new NotFoundError(`cannot read ${file}: no such file (run airlock lint in the repository root, or name the file)`, { path });
    throw new AirlockError('INTERNAL', `cannot read ${file} (${code})`, { path });
  }
}

/** `airlock lint [file]`: one line per problem and exit 1, or "ok: N stages, M steps" and exit 0. */
export async function lint(cli: Cli, command: Command, file = 'airlock.yaml'): Promise<number> {
  const opts = command.opts<{ json?: boolean }>();
  const label = file === '-' ? '<stdin>' : file;
  const { problems, definition } = lintPipelineWithDefinition(await readBytes(cli, file), label);
  const ok = problems.length === 0;
  if (opts.json === true) {
    printJson(cli.io, {
      ok,
      problems,
      ...(ok && definition !== undefined ? { pipeline: definition.name, digest: definition.digest, stages: definition.stages.length, steps: countSteps(definition.stages) } : {}),
    });
    return ok ? EXIT_OK : EXIT_FAILED;
  }
  for (const p of problems) say(cli.io, `${p.file}:${p.line}:${p.col}: ${p.code}: ${p.message} (hint: ${p.hint})`);
  if (!ok) {
    cli.io.stderr.write(`${problems.length} problem(s) in ${label}\n`);
    return EXIT_FAILED;
  }
  const stages = definition?.stages ?? [];
  say(cli.io, `ok: ${stages.length} stages, ${countSteps(stages)} steps`);
  return EXIT_OK;
}

function countSteps(stages: readonly { steps: readonly unknown[] }[]): number {
  return stages.reduce((n, s) => n + s.steps.length, 0);
}

/** `airlock schema pipeline`: the JSON Schema of airlock.yaml (always JSON). */
export function schema(cli: Cli, _command: Command): Promise<number> {
  printJson(cli.io, pipelineJsonSchema());
  return Promise.resolve(EXIT_OK);
}
