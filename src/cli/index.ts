/**
 * The `airlock` command line: a thin adapter that parses arguments (commander), compiles the
 * configuration, calls the domains and maps the outcome to output and an exit code.
 *
 * Exit codes: 0 success; 1 the command failed or verification found a problem; 2 usage error
 * (unknown command or option, bad option value, invalid configuration). Commander never exits
 * the process itself (exitOverride): `main` returns the code and bin/airlock.js sets it.
 */
import { CommanderError } from 'commander';
import { ValidationError, isAirlockError } from '../errors/index.js';
import type { Cli } from './cli.js';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError } from './cli.js';
import type { Io } from './io.js';
import { processIo } from './io.js';
import { buildProgram } from './program.js';

export type { Cli } from './cli.js';
export type { Io } from './io.js';
export { buildProgram, CLI_ACTOR_KINDS, CLI_OUTCOMES } from './program.js';

/** A fresh per-invocation state. */
export function newCli(io: Io = processIo()): Cli {
  return { io, exitCode: EXIT_OK, logLevel: undefined };
}

/** Run the CLI on `argv` (as process.argv: node, script, args...) and return the exit code. */
export async function main(argv: string[], io: Io = processIo()): Promise<number> {
  const cli = newCli(io);
  const program = buildProgram(cli);
  try {
    await program.parseAsync(argv);
    return cli.exitCode;
  } catch (err) {
    const level = cli.logLevel ?? program.opts<{ logLevel?: string }>().logLevel ?? io.env.AIRLOCK_LOG_LEVEL;
    return report(io, err, level === 'debug' || level === 'trace');
  }
}

/** Print `err` once, as `airlock: <message> (<CODE>)`, and choose the exit code. */
function report(io: Io, err: unknown, debug: boolean): number {
  const write = (text: string): void => {
    io.stderr.write(`${text}\n`);
  };
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
    // `airlock help` exits 0; help shown because a subcommand is missing is a usage error.
    if (err.code === 'commander.help') return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    const [first = '', ...rest] = err.message.replace(/^error: /, '').trimEnd().split('\n');
    write(`airlock: ${first} (USAGE)`);
    for (const line of rest) write(line);
    write('run `airlock --help` (or `airlock <command> --help`) for usage');
    return EXIT_USAGE;
  }
  if (err instanceof UsageError) {
    write(`airlock: ${err.message} (USAGE)`);
    return EXIT_USAGE;
  }
  if (isAirlockError(err)) {
    write(`airlock: ${err.message} (${err.code})`);
    if (err instanceof ValidationError) for (const i of err.issues) write(`  ${i.path}: ${i.message}`);
    if (debug) writeStack(write, err);
    return err.code === 'CONFIG_INVALID' ? EXIT_USAGE : EXIT_FAILED;
  }
  // Not one of ours: its text may quote data or SQL, so it is shown only at debug level.
  write('airlock: internal error (INTERNAL)');
  if (debug) writeStack(write, err);
  else write('rerun with --log-level debug for details');
  return EXIT_FAILED;
}

function writeStack(write: (text: string) => void, err: unknown): void {
  let current: unknown = err;
  for (let depth = 0; current !== undefined && depth < 5; depth++) {
    const text = current instanceof Error ? (current.stack ?? current.message) : JSON.stringify(current);
    write(depth === 0 ? text : `caused by: ${text}`);
    current = current instanceof Error ? current.cause : undefined;
  }
}

