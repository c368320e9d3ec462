/**
 * Running a launched step as its own process group and making sure nothing of it survives.
 *
 * The shell is spawned detached (a new session, so a new process group whose id is its pid).
 * On timeout or cancel the whole group gets SIGTERM, then SIGKILL after a grace period; when
 * the shell exits on its own the same sweep removes any background children it left. A
 * process that calls setsid() leaves the group; only the sandbox (pid namespace) catches it.
 */
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import type { LogCapture } from './logs.js';
import type { Launch } from './sandbox.js';

export interface ProcessOutcome {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly timedOut: boolean;
  readonly cancelled: boolean;
  /** Set when the process could not be started at all. */
  readonly spawnError: NodeJS.ErrnoException | undefined;
}

const POLL_MS = 25;
/** After the group is gone, give up on stdout/stderr closing once they are quiet this long. */
const STDIO_QUIET_MS = 500;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Whether any live (non-zombie) process is in group `pgid`. kill(-pgid, 0) alone counts
 * zombies whose parent never reaps them (a container's pid 1 may not), so on Linux /proc is
 * consulted to ignore them.
 */
export async function groupAlive(pgid: number): Promise<boolean> {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  if (process.platform !== 'linux') return true;
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return true;
  }
  const stats = await Promise.all(
    entries.filter((e) => /^\d+$/.test(e)).map((pid) => readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')),
  );
  for (const stat of stats) {
    // Fields after the command name (which may contain spaces and parentheses): state ppid pgrp.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X') return true;
  }
  return false;
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: already gone
  }
}

/** SIGTERM the group, wait up to `graceMs` for it to go, then SIGKILL whatever remains. */
export async function killGroup(pgid: number, graceMs: number): Promise<void> {
  if (!(await groupAlive(pgid))) return;
  signalGroup(pgid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    await sleep(POLL_MS);
    if (!(await groupAlive(pgid))) return;
  }
  signalGroup(pgid, 'SIGKILL');
  for (let i = 0; i < 40 && (await groupAlive(pgid)); i++) await sleep(POLL_MS);
}

/** Run a launch to completion with timeout and cancellation; logs flow into the captures. */
export async function runProcess(opts: {
  readonly launch: Launch;
  readonly cwd: string;
  readonly timeoutMs: number;
  readonly killGraceMs: number;
  readonly signal: AbortSignal | undefined;
  readonly stdout: LogCapture;
  readonly stderr: LogCapture;
}): Promise<ProcessOutcome> {
  const { launch } = opts;
  const child = spawn(launch.file, [...launch.args], {
    cwd: opts.cwd,
    env: { ...launch.env },
    detached: true,
    stdio: launch.fdArgs === null ? ['ignore', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe', 'pipe'],
  });
  const spawned = new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    child.once('spawn', () => {
      resolve(undefined);
    });
    child.once('error', (err) => {
      resolve(err);
    });
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
    });
  });
  const { stdout, stderr } = child;
  if (stdout === null || stderr === null) throw new Error('spawn did not create stdout/stderr pipes');
  const stdioClosed = Promise.all(
    [stdout, stderr].map(
      (s) =>
        new Promise<void>((resolve) => {
          s.once('close', () => {
            resolve();
          });
        }),
    ),
  );
  opts.stdout.attach(stdout);
  opts.stderr.attach(stderr);
  if (launch.fdArgs !== null) {
    const fd3 = child.stdio[3] as Writable;
    fd3.on('error', () => undefined); // EPIPE if bwrap dies before reading: its exit says why
    fd3.end(launch.fdArgs);
  }

  const spawnError = await spawned;
  if (spawnError !== undefined || child.pid === undefined) {
    stdout.destroy();
    stderr.destroy();
    return { exitCode: null, signal: null, timedOut: false, cancelled: false, spawnError: spawnError ?? new Error('no pid') };
  }
  const pgid = child.pid;

  let timedOut = false;
  let cancelled = false;
  let killing: Promise<void> | undefined;
  const stop = (why: 'timeout' | 'cancel'): void => {
    if (timedOut || cancelled) return;
    if (why === 'timeout') timedOut = true;
    else cancelled = true;
    killing = killGroup(pgid, opts.killGraceMs);
  };
  const timer = setTimeout(() => {
    stop('timeout');
  }, opts.timeoutMs);
  const onAbort = (): void => {
    stop('cancel');
  };
  if (opts.signal?.aborted === true) onAbort();
  else opts.signal?.addEventListener('abort', onAbort, { once: true });

  const exit = await exited;
  clearTimeout(timer);
  opts.signal?.removeEventListener('abort', onAbort);
  await killing;
  // Background children the shell left behind die here, even after a clean exit.
  await killGroup(pgid, opts.killGraceMs);
  // A process that escaped the group could hold the pipes open forever: stop waiting once
  // nothing has arrived for a while (but keep waiting while the store is still draining).
  let last = '';
  for (;;) {
    const closed = await Promise.race([stdioClosed.then(() => true), sleep(STDIO_QUIET_MS).then(() => false)]);
    if (closed) break;
    const now = `${opts.stdout.progress}/${opts.stderr.progress}`;
    if (now === last && !now.includes(':1')) {
      stdout.destroy();
      stderr.destroy();
      break;
    }
    last = now;
  }
  return { exitCode: exit.code, signal: exit.signal, timedOut, cancelled, spawnError: undefined };
}
