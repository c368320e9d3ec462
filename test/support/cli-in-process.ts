/**
 * Run `airlock ...args` in this process with its own stdio and environment, as the shell
 * would see it: the exit code (2 for usage errors, 1 for coded errors), stdout and stderr.
 */
import { PassThrough } from 'node:stream';
import { CommanderError } from 'commander';
import { UsageError } from '../../src/cli/cli.js';
import { buildProgram, newCli } from '../../src/cli/index.js';
import { isAirlockError } from '../../src/errors/index.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runCliInProcess(args: readonly string[], opts: { env: Record<string, string>; cwd: string }): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const out = new PassThrough().on('data', (c: Buffer) => (stdout += c.toString()));
  const err = new PassThrough().on('data', (c: Buffer) => (stderr += c.toString()));
  const stdin = new PassThrough();
  stdin.end();
  const cli = newCli({ stdout: out, stderr: err, stdin, env: opts.env, cwd: opts.cwd, stderrIsTTY: false });
  const program = buildProgram(cli);
  let code: number;
  try {
    await program.parseAsync(['node', 'airlock', ...args]);
    code = cli.exitCode;
  } catch (e) {
    if (e instanceof CommanderError || e instanceof UsageError) code = 2;
    else if (isAirlockError(e)) code = 1;
    else throw e;
    stderr += `airlock: ${e.message}${isAirlockError(e) ? ` (${e.code})` : ''}\n`;
  }
  return { code, stdout, stderr };
}
