/**
 * `executeStep`: one attempt of one step, from a fresh workspace to a signed link record.
 *
 * Order matters: everything that can refuse (tool versions, input hashes) happens before the
 * command can run, so a refused step provably did nothing. The link is signed after the
 * workspace is gone, from values the executor measured itself, never from the step's say-so.
 */
import { performance } from 'node:perf_hooks';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import type { Writable } from 'node:stream';
import { AirlockError, NotFoundError } from '../errors/index.js';
import { isNoSpaceError } from '../artifacts/index.js';
import { machine, probeTool, requirementProblem } from './fingerprint.js';
import { LINK_TYPE, signLink } from './link.js';
import { SecretMasker } from './masking.js';
import { LogCapture } from './logs.js';
import { runProcess } from './process.js';
import type { ProcessOutcome } from './process.js';
import { buildLaunch, findBwrap } from './sandbox.js';
import type { EnvironmentFingerprint, ExecutorDeps, LinkRecord, LogRecord, StepJob, StepResult, StepStatus } from './types.js';
import { FIXED_PATH, validateDeps, validateJob } from './validate.js';
import { collectOutput, copySource, createHomeAndTmp, createWorkspace, isFull, placeInput, removeWorkspace, WorkspacePathError } from './workspace.js';

export const DEFAULT_MAX_LOG_BYTES = 16 * 1024 * 1024;
export const DEFAULT_KILL_GRACE_MS = 2000;

/** Ends the attempt early with a status and a reason. */
class Stop extends Error {
  constructor(
    readonly status: StepStatus,
    readonly reason: string,
  ) {
    super(reason);
  }
}

function errno(err: unknown): string {
  return (err as NodeJS.ErrnoException | null)?.code ?? 'unknown error';
}

/** A failure while writing into the workspace, worded for the step author. */
function writeFailure(what: string, err: unknown): Stop {
  if (isNoSpaceError(err)) return new Stop('failed', `the workspace ran out of disk space while ${what} (ENOSPC)`);
  if (err instanceof AirlockError) return new Stop('failed', `${what} failed: ${err.message}`);
  return new Stop('failed', `${what} failed (${errno(err)})`);
}

const sandboxChecks = new Map<string, Promise<string | null>>();

/**
 * Run bubblewrap once per process with the real options: on a host where it cannot create
 * namespaces we refuse steps rather than quietly run them unsandboxed.
 */
function sandboxProblem(bwrap: string, workspace: string): Promise<string | null> {
  let check = sandboxChecks.get(bwrap);
  if (check === undefined) {
    check = (async () => {
      const launch = await buildLaunch({ bwrap, workspace, env: { PATH: FIXED_PATH }, network: false, argv: ['/bin/sh', '-c', 'exit 0'] });
      return new Promise<string | null>((resolve) => {
        const child = spawn(launch.file, [...launch.args], { cwd: workspace, env: {}, stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
        let err = '';
        child.stderr?.on('data', (chunk: Buffer) => {
          if (err.length < 2000) err += chunk.toString('utf8');
        });
        const fd3 = child.stdio[3] as Writable;
        fd3.on('error', () => undefined);
        fd3.end(launch.fdArgs);
        child.once('error', (e) => {
          resolve(`bwrap could not be started (${errno(e)})`);
        });
        child.once('close', (code) => {
          resolve(code === 0 ? null : `bwrap does not work on this host: ${err.trim().split('\n')[0] ?? `exit ${code}`}`);
        });
      });
    })();
    sandboxChecks.set(bwrap, check);
    // A failure may be transient (a full /tmp); do not remember it forever.
    void check.then((problem) => {
      if (problem !== null) sandboxChecks.delete(bwrap);
    });
  }
  return check;
}

function exitReason(outcome: ProcessOutcome, timeoutMs: number): { status: StepStatus; reason: string | undefined } {
  if (outcome.spawnError !== undefined) return { status: 'failed', reason: `the step could not be started (${errno(outcome.spawnError)})` };
  if (outcome.cancelled) return { status: 'cancelled', reason: 'cancelled while running; its process group was killed' };
  if (outcome.timedOut) return { status: 'timed_out', reason: `the step exceeded its timeout of ${timeoutMs} ms; its process group was killed` };
  if (outcome.signal !== null) return { status: 'failed', reason: `the step was killed by signal ${outcome.signal}` };
  switch (outcome.exitCode) {
    case 0:
      return { status: 'succeeded', reason: undefined };
    case 127:
      return { status: 'failed', reason: 'command not found: /bin/sh exited with 127 (stderr names the missing command)' };
    case 126:
      return { status: 'failed', reason: 'command not executable: /bin/sh exited with 126 (permission denied or not a program)' };
    default:
      return { status: 'failed', reason: `the step exited with code ${outcome.exitCode}` };
  }
}

/**
 * Run one step attempt in a fresh, scrubbed workspace and return what it did, with a signed
 * link record. Throws only for an invalid job or options (`ValidationError`, `ConfigError`)
 * or a signer failure; everything the step or its inputs do wrong is a result.
 *
 * @example
 * const result = await executeStep(job, { blobs, workRoot, signer, onOutput: (s, c) => ws.send(c) });
 * if (result.status !== 'succeeded') console.error(result.reason);
 */
/** Secrets as env values, or as 0400 files whose paths go in `<NAME>_FILE`. */
async function placeSecrets(workspace: string, secrets: NonNullable<StepJob['secrets']>): Promise<Record<string, string>> {
  const env: Record<string, string> = {};
  for (const s of secrets) {
    if (!/^[A-Z_][A-Z0-9_]{0,63}$/.test(s.name) || s.name.startsWith('AIRLOCK_')) throw new AirlockError('VALIDATION_FAILED', `secret name ${s.name.slice(0, 64)} is not a valid environment variable name`);
  }
  const files = secrets.filter((s) => s.as === 'file');
  if (files.length > 0) await mkdir(join(workspace, '.secrets'), { mode: 0o700 });
  for (const s of secrets) {
    if (s.as === 'env') {
      env[s.name] = s.value.toString('utf8');
    } else {
      const path = join(workspace, '.secrets', s.name);
      await writeFile(path, s.value, { mode: 0o400, flag: 'wx' });
      env[`${s.name}_FILE`] = path;
    }
  }
  return env;
}

export async function executeStep(job: StepJob, deps: ExecutorDeps): Promise<StepResult> {
  validateJob(job);
  validateDeps(deps);
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const maxLogBytes = deps.maxLogBytes ?? DEFAULT_MAX_LOG_BYTES;
  const killGraceMs = deps.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
  const bwrap = deps.sandbox === 'off' ? null : await findBwrap();
  const onOutput = (stream: 'stdout' | 'stderr', chunk: Buffer): void => {
    deps.onOutput(stream, chunk);
  };
  // Released secrets and the step's own workload token are credentials: masked in all output.
  const secretValues = [...(job.secrets ?? []).map((s) => s.value), ...(job.env.AIRLOCK_TOKEN === undefined ? [] : [Buffer.from(job.env.AIRLOCK_TOKEN)])];
  const masker = () => (secretValues.length === 0 ? undefined : new SecretMasker(secretValues));
  const stdout = new LogCapture('stdout', deps.blobs, maxLogBytes, onOutput, masker());
  const stderr = new LogCapture('stderr', deps.blobs, maxLogBytes, onOutput, masker());

  const tools: Record<string, string | null> = Object.fromEntries(Object.keys(job.requires).map((t) => [t, null]));
  let env: Record<string, string> = { ...job.env };
  let status: StepStatus;
  let reason: string | undefined;
  let exitCode: number | null = null;
  let signal: string | null = null;
  const outputs: { path: string; digest: string; size: number }[] = [];
  let workspace: string | undefined;

  const checkCancelled = (when: string): void => {
    if (deps.signal?.aborted === true) throw new Stop('cancelled', `cancelled ${when}; the command never ran`);
  };

  try {
    if (deps.sandbox === 'required' && bwrap === null) throw new Stop('refused', 'the sandbox is required but bwrap was not found on PATH; the step was not run');
    checkCancelled('before the step started');
    try {
      workspace = await createWorkspace(deps.workRoot, job.jobId);
    } catch (err) {
      throw writeFailure('creating the workspace', err);
    }
    const ws = workspace;
    let dirs: { home: string; tmp: string };
    try {
      dirs = await createHomeAndTmp(ws);
    } catch (err) {
      throw writeFailure('creating HOME and TMPDIR', err);
    }
    env = { ...job.env, PATH: FIXED_PATH, HOME: dirs.home, TMPDIR: dirs.tmp, LANG: 'C.UTF-8' };
    try {
      Object.assign(env, await placeSecrets(ws, job.secrets ?? []));
    } catch (err) {
      throw writeFailure('placing secrets', err);
    }

    if (bwrap !== null) {
      const problem = await sandboxProblem(bwrap, ws);
      if (problem !== null) throw new Stop('refused', `the sandbox is unavailable, so the step was not run: ${problem}`);
    }

    // Preconditions: tool versions, in the same launch context the command will get.
    const problems: string[] = [];
    for (const [tool, range] of Object.entries(job.requires)) {
      const probe = await probeTool(tool, { bwrap, workspace: ws, env });
      tools[tool] = probe.version;
      const problem = requirementProblem(tool, range, probe, FIXED_PATH);
      if (problem !== null) problems.push(problem);
    }
    if (problems.length > 0) throw new Stop('refused', problems.join('; '));
    checkCancelled('while checking preconditions');

    if (job.source.kind === 'dir') {
      try {
        await copySource(job.source.path, ws);
      } catch (err) {
        if (err instanceof WorkspacePathError) throw new Stop('failed', `source ${job.source.path}: ${err.message}`);
        throw writeFailure('copying the source', err);
      }
    }

    for (const input of job.inputs) {
      try {
        await placeInput(deps.blobs, ws, input.path, input.digest);
      } catch (err) {
        if (err instanceof AirlockError && err.details.reason === 'blob_corrupt') {
          throw new Stop('refused', `input ${input.path}: expected ${input.digest}, found ${String(err.details.actual)}`);
        }
        if (err instanceof NotFoundError) throw new Stop('refused', `input ${input.path}: blob ${input.digest} is not in the artifact store`);
        if (err instanceof WorkspacePathError) throw new Stop('refused', `input ${err.message}`);
        throw writeFailure(`copying input ${input.path}`, err);
      }
    }
    checkCancelled('while preparing inputs');

    const launch = await buildLaunch({ bwrap, workspace: ws, env, network: job.network, argv: ['/bin/sh', '-c', job.command] });
    const outcome = await runProcess({ launch, cwd: ws, timeoutMs: job.timeoutMs, killGraceMs, signal: deps.signal, stdout, stderr });
    exitCode = outcome.exitCode;
    signal = outcome.signal;
    ({ status, reason } = exitReason(outcome, job.timeoutMs));
    if (status === 'failed' && outcome.spawnError === undefined && (await isFull(ws))) {
      reason = `${reason ?? 'failed'}; the workspace file system is full (no space left on device)`;
    }

    if (status === 'succeeded') {
      const missing: string[] = [];
      for (const path of job.outputs) {
        try {
          const blob = await collectOutput(deps.blobs, ws, path);
          outputs.push({ path, digest: blob.digest, size: blob.size });
        } catch (err) {
          if (err instanceof WorkspacePathError) missing.push(`output ${err.message}`);
          else if (isNoSpaceError(err)) missing.push(`output ${path} could not be stored: the artifact store is out of space`);
          else if (err instanceof AirlockError) missing.push(`output ${path} could not be stored: ${err.message}`);
          else missing.push(`output ${path} could not be read (${errno(err)})`);
        }
      }
      if (missing.length > 0) {
        status = 'failed';
        reason = missing.join('; ');
        outputs.length = 0; // a failed step produces nothing
      }
    }
  } catch (err) {
    if (!(err instanceof Stop)) throw err;
    status = err.status;
    reason = err.reason;
  } finally {
    if (workspace !== undefined) await removeWorkspace(workspace);
  }

  const logs = { stdout: await stdout.finish(), stderr: await stderr.finish() };
  const logProblems = [stdout, stderr]
    .filter((c) => c.storeError !== undefined)
    .map((c) => {
      const why = isNoSpaceError(c.storeError) ? 'the artifact store is out of space' : c.storeError instanceof AirlockError ? c.storeError.message : errno(c.storeError);
      return `${c.name} could not be stored: ${why}`;
    });
  if (logProblems.length > 0) {
    if (status === 'succeeded') {
      status = 'failed';
      outputs.length = 0;
      reason = logProblems.join('; ');
    } else {
      reason = [reason, ...logProblems].filter((r) => r !== undefined).join('; ');
    }
  }

  const fingerprint: EnvironmentFingerprint = Object.freeze({
    ...machine(),
    tools: Object.freeze({ ...tools }),
    envNames: Object.freeze(Object.keys(env).sort()),
    sandbox: bwrap === null ? 'none' : 'bwrap',
    network: job.network,
  });
  const finishedAt = new Date().toISOString();
  const link = signLink(
    buildLinkRecord(job, { status, exitCode, signal, outputs, fingerprint, logs, startedAt, finishedAt }),
    deps.signer,
  );
  return Object.freeze({
    status,
    exitCode,
    signal,
    reason,
    startedAt,
    finishedAt,
    durationMs: Math.round(performance.now() - t0),
    outputs: Object.freeze(outputs.map((o) => Object.freeze(o))),
    fingerprint,
    logs: Object.freeze(logs),
    link,
  });
}

function buildLinkRecord(
  job: StepJob,
  r: {
    status: StepStatus;
    exitCode: number | null;
    signal: string | null;
    outputs: readonly { path: string; digest: string }[];
    fingerprint: EnvironmentFingerprint;
    logs: { stdout: LogRecord; stderr: LogRecord };
    startedAt: string;
    finishedAt: string;
  },
): LinkRecord {
  return {
    _type: LINK_TYPE,
    pipeline: job.pipeline,
    runId: job.runId,
    stage: job.stage,
    step: job.step,
    attempt: job.attempt,
    command: job.command,
    materials: Object.fromEntries(job.inputs.map((i) => [i.path, i.digest])),
    products: Object.fromEntries(r.outputs.map((o) => [o.path, o.digest])),
    byproducts: {
      exitCode: r.exitCode,
      signal: r.signal,
      status: r.status,
      // The full streams, not the stored (possibly truncated) copies.
      stdoutDigest: r.logs.stdout.streamDigest,
      stderrDigest: r.logs.stderr.streamDigest,
      fingerprint: r.fingerprint,
    },
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
  };
}
