/**
 * What every command shares: the parsed global options, the configuration, the read-only
 * way into the database, the trust anchor for checkpoints, and signal handling.
 */
import type { Command } from 'commander';
import { parseVerifierKey } from '../audit/index.js';
import { homeCheckpointVerifierKey } from '../app/index.js';
import type { CheckpointVerifierKey, NoteVerifier } from '../audit/index.js';
import { loadConfig } from '../config/index.js';
import type { Config } from '../config/index.js';
import { AirlockError } from '../errors/index.js';
import { createLogger } from '../observability/index.js';
import type { Logger } from '../observability/index.js';
import type { Cli, GlobalOptions } from './cli.js';
import { UsageError } from './cli.js';

/** Compile the configuration from global flags, AIRLOCK_* variables and the config file. */
export function cliConfig(cli: Cli, command: Command, extra: { listen?: string | undefined } = {}): Config {
  const g = command.optsWithGlobals<GlobalOptions>();
  const config = loadConfig({
    flags: { home: g.home, databaseUrl: g.databaseUrl, databaseSchema: g.databaseSchema, config: g.config, logLevel: g.logLevel, listen: extra.listen },
    env: cli.io.env,
    cwd: cli.io.cwd,
  });
  cli.logLevel = config.logLevel;
  return config;
}

/** Structured logs on stderr at the configured level. */
export function cliLogger(cli: Cli, config: Config): Logger {
  return createLogger(config.logLevel, cli.io.stderr);
}

export { openReader } from '../app/index.js';
export type { Reader } from '../app/index.js';

/**
 * The keys trusted to sign checkpoints: the `--key` values when given (an auditor who does
 * not trust this machine brings their own), otherwise the public half of this home's key.
 */
export async function trustedVerifiers(config: Config | undefined, keys: readonly string[] | undefined): Promise<NoteVerifier[]> {
  if (keys !== undefined && keys.length > 0) return keys.map((k) => parseVerifierKey(k));
  if (config === undefined) throw new UsageError('give the verifier key to trust with --key');
  return [(await homeVerifierKey(config)).verifier];
}

/** The home's verifier key (the vault's public copy, else an unmigrated home's key file), with a hint when there is none yet. */
export async function homeVerifierKey(config: Config): Promise<CheckpointVerifierKey> {
  try {
    return await homeCheckpointVerifierKey(config);
  } catch (err) {
    if (err instanceof AirlockError && err.details.reason === 'missing') {
      throw new AirlockError(
        'KEY_INVALID',
        `no checkpoint signing key at ${config.home}: it is created in the vault the first time \`airlock server\` or \`airlock db migrate\` runs on this home (check --home); an auditor passes the published verifier key with --key instead`,
        { ...err.details },
      );
    }
    throw err;
  }
}

/** Resolves with the first SIGINT/SIGTERM; `dispose` removes the handlers. */
export interface SignalWait {
  readonly received: Promise<NodeJS.Signals>;
  /** The first signal received, if any yet. */
  signal(): NodeJS.Signals | undefined;
  dispose(): void;
}

/**
 * Take over SIGINT and SIGTERM. A second signal while `onRepeat` is given calls it (the
 * server uses that to give up on a stuck graceful shutdown).
 */
export function waitForSignal(onRepeat?: (signal: NodeJS.Signals) => void): SignalWait {
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
  let first: NodeJS.Signals | undefined;
  let resolveFirst: (s: NodeJS.Signals) => void = () => undefined;
  const received = new Promise<NodeJS.Signals>((r) => {
    resolveFirst = r;
  });
  const handler = (signal: NodeJS.Signals): void => {
    if (first === undefined) {
      first = signal;
      resolveFirst(signal);
    } else {
      onRepeat?.(signal);
    }
  };
  for (const s of signals) process.on(s, handler);
  return {
    received,
    signal: () => first,
    dispose() {
      for (const s of signals) process.off(s, handler);
    },
  };
}

/** Sleep `ms`, or less if `stop` settles first; never keeps the process alive after `stop`. */
export async function sleepUnless(ms: number, stop: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      new Promise<void>((done) => {
        timer = setTimeout(done, ms);
      }),
      stop,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
