/**
 * The light core of the CLI, loaded on every invocation (including --help and --version):
 * exit codes, per-invocation state and the action wrapper. Command implementations live in
 * handlers/ and are imported only when their command runs, so the database drivers, the
 * server and the crypto code are never loaded just to print help.
 */
import type { Command } from 'commander';
import type { Io } from './io.js';

/** Exit codes: the contract scripts rely on (also printed by --help and in docs/cli.md). */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** A malformed command line the parser could not catch (conflicting values). Exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Options every command accepts (defined once on the program). */
export interface GlobalOptions {
  readonly home?: string;
  readonly databaseUrl?: string;
  readonly databaseSchema?: string;
  readonly config?: string;
  readonly logLevel?: string;
}

/** Per-invocation state shared by main and the commands. */
export interface Cli {
  readonly io: Io;
  exitCode: number;
  /** The effective log level once known; `debug`/`trace` add stack traces to errors. */
  logLevel: string | undefined;
}

/** Wrap a command handler: commander passes (...positionals, options, command). */
export function act(cli: Cli, handler: (command: Command, args: readonly string[]) => Promise<number>): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    const command = args[args.length - 1] as Command;
    const positionals = args.slice(0, -2).filter((a): a is string => typeof a === 'string');
    cli.exitCode = await handler(command, positionals);
  };
}

/** Collect a repeatable option's values. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

