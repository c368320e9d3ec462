/**
 * Drive the real CLI: `node bin/airlock.js ...` as a child process, exactly as a user or a
 * script runs it. The compiled CLI in dist/ is used (npm test builds it first).
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { freshDatabase } from '../support/engines.js';
import type { Engine } from '../../src/storage/index.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BIN = join(ROOT, 'bin/airlock.js');

/** Fail early and clearly when the CLI has not been compiled. */
export function requireBuilt(): void {
  if (!existsSync(join(ROOT, 'dist/src/cli/index.js'))) {
    throw new Error('dist/src/cli/index.js is missing: run `npm run build` first (`npm test` does it for you)');
  }
}

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Written to stdin, which is then closed. */
  readonly input?: string;
  readonly cwd?: string;
  readonly timeoutMs?: number;
}

/** The environment without any AIRLOCK_* setting of the machine running the tests. */
function childEnv(extra: Readonly<Record<string, string | undefined>> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AIRLOCK_') && k !== 'NODE_OPTIONS') env[k] = v;
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/** Spawn the CLI without waiting for it. */
export function start(args: readonly string[], options: RunOptions = {}): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, [BIN, ...args], { cwd: options.cwd ?? ROOT, env: childEnv(options.env), stdio: 'pipe' });
}

/** Collect a child's output until it exits. */
export function finished(child: ChildProcessWithoutNullStreams, timeoutMs = 20_000): Promise<RunResult> {
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((done, fail) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`airlock did not exit within ${timeoutMs} ms; stdout: ${stdout}; stderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', fail);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      done({ code, signal, stdout, stderr });
    });
  });
}

/** Run `airlock ...args` to completion. */
export function run(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const child = start(args, options);
  const result = finished(child, options.timeoutMs);
  child.stdin.end(options.input ?? '');
  return result;
}

/** Parse stdout as exactly one JSON document (typed by the caller: it is test data). */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
export function json<T = Record<string, unknown>>(r: RunResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`stdout is not one JSON document (exit ${String(r.code)}): ${r.stdout}\nstderr: ${r.stderr}`);
  }
}

/** A fresh home and database for one engine, as AIRLOCK_* variables. */
export interface CliEnv {
  readonly env: Readonly<Record<string, string>>;
  readonly home: string;
  readonly engine: Engine;
  readonly schema: string | undefined;
  drop(): Promise<void>;
}

export async function cliEnv(engine: Engine): Promise<CliEnv> {
  const { config, home, drop } = await freshDatabase(engine);
  const env: Record<string, string> = { AIRLOCK_HOME: home };
  let schema: string | undefined;
  if (config.kind === 'postgres') {
    schema = config.schema;
    env.AIRLOCK_DATABASE_URL = config.url;
    env.AIRLOCK_MASTER_KEY = process.env.AIRLOCK_MASTER_KEY ?? '';
    if (schema !== undefined) env.AIRLOCK_DATABASE_SCHEMA = schema;
  }
  return { env, home, engine, schema, drop };
}

/** A running `airlock server` child. */
export interface ServerChild {
  readonly url: string;
  readonly child: ChildProcessWithoutNullStreams;
  /** Send `signal` and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<RunResult>;
}

/** Start `airlock server --listen 127.0.0.1:0` and wait for its "listening on" line. */
export async function startServer(env: Readonly<Record<string, string>>, extraArgs: readonly string[] = []): Promise<ServerChild> {
  const child = start(['server', '--listen', '127.0.0.1:0', ...extraArgs], { env });
  child.stdin.end();
  const result = finished(child, 30_000);
  const url = await new Promise<string>((done, fail) => {
    let seen = '';
    const onData = (d: Buffer | string): void => {
      seen += d.toString();
      const m = /^airlock listening on (http:\/\/\S+)$/m.exec(seen);
      if (m?.[1] !== undefined) {
        child.stdout.off('data', onData);
        done(m[1]);
      }
    };
    child.stdout.on('data', onData);
    result.then(
      (r) => {
        fail(new Error(`server exited (${String(r.code)}) before listening: ${r.stderr}`));
      },
      fail,
    );
  });
  return {
    url,
    child,
    stop: (signal = 'SIGTERM') => {
      child.kill(signal);
      return result;
    },
  };
}
