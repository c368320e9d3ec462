/**
 * `executeStep`: one attempt of one step, from a fresh workspace to a signed link record.
 *
 * Order matters: everything that can refuse (tool versions, input hashes) happens before the
 * command can run, so a refused step provably did nothing. The link is signed after the
 * workspace is gone, from values the executor measured itself, never from the step's say-so.
 */
import { performance } from 'node:perf_hooks';
import { chmod, lstat, mkdir, rmdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import type { Writable } from 'node:stream';
import { AirlockError, NotFoundError } from '../errors/index.js';
import { isNoSpaceError } from '../artifacts/index.js';
import { linkFor, signLinkMetablock } from '../intoto/index.js';
import { machine, probeTool, requirementProblem } from './fingerprint.js';
import { LINK_TYPE, signLink } from './link.js';
import { SecretMasker } from './masking.js';
import { LogCapture } from './logs.js';
import { runProcess } from './process.js';
import type { ProcessOutcome } from './process.js';
import { buildLaunch, findBwrap } from './sandbox.js';
import type { EnvironmentFingerprint, ExecutorDeps, LinkRecord, LogRecord, StepJob, StepResult, StepStatus } from './types.js';
import { FIXED_PATH, RESERVED_ENV, validateDeps, validateJob } from './validate.js';
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

/** Where file secrets go; no input or output may name a path in it. */
const SECRETS_DIR = '.secrets';
const underSecrets = (path: string): boolean => path === SECRETS_DIR || path.startsWith(`${SECRETS_DIR}/`);

/** The variable a secret sets: its own name, or `<NAME>_FILE` for a file. */
const secretVariable = (s: { name: string; as: 'env' | 'file' }): string => (s.as === 'file' ? `${s.name}_FILE` : s.name);

/** Why the job's secrets cannot be injected (a name the step's environment cannot take), or null. */
function secretsProblem(secrets: NonNullable<StepJob['secrets']>): string | null {
  const seen = new Set<string>();
  for (const s of secrets) {
    if (!/^[A-Z_][A-Z0-9_]{0,127}$/.test(s.name) || s.name.startsWith('AIRLOCK_')) return `secret name ${s.name.slice(0, 128)} is not a valid environment variable name`;
    const as: unknown = s.as; // the job may come over the wire from a server
    if (as !== 'env' && as !== 'file') return `secret ${s.name} must be injected as env or file`;
    const variable = secretVariable(s);
    // The executor's own PATH/HOME/TMPDIR/LANG must not be replaced by a secret's value.
    if ((RESERVED_ENV as readonly string[]).includes(variable)) return `secret ${s.name} would replace ${variable}, which the runner sets`;
    if (seen.has(variable)) return `two secrets would set ${variable}`;
    seen.add(variable);
  }
  return null;
}

/**
 * Secrets as env values, or as 0400 files in `.secrets/` whose paths go in `<NAME>_FILE`.
 * Called after the source and inputs are in place, so neither can plant or replace them.
 */
async function placeSecrets(workspace: string, secrets: NonNullable<StepJob['secrets']>, placed: string[]): Promise<Record<string, string>> {
  const env: Record<string, string> = {};
  const dir = join(workspace, SECRETS_DIR);
  if (secrets.some((s) => s.as === 'file')) {
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (err) {
      if (errno(err) === 'EEXIST') throw new Stop('refused', `the source tree has a ${SECRETS_DIR} entry, which the runner reserves for secret files; the step was not run`);
      throw err;
    }
  }
  for (const s of secrets) {
    if (s.as === 'env') {
      env[s.name] = s.value.toString('utf8');
    } else {
      const path = join(dir, s.name);
      placed.push(s.name);
      // `wx`: never follow or reuse something already at the path.
      await writeFile(path, s.value, { mode: 0o400, flag: 'wx' });
      env[secretVariable(s)] = path;
    }
  }
  return env;
}

/**
 * Unlink the placed secret files and their directory. Runs as soon as the process group is
 * gone and again before the workspace is removed, so no secret outlives the step even when the
 * workspace cannot be removed. A `.secrets` the step replaced by something else is not entered:
 * this runs outside the sandbox and must not follow the step's links.
 */
async function removeSecretFiles(workspace: string, names: readonly string[]): Promise<boolean> {
  if (names.length === 0) return true;
  const dir = join(workspace, SECRETS_DIR);
  const st = await lstat(dir).catch(() => null);
  if (st === null || !st.isDirectory()) return true;
  await chmod(dir, 0o700).catch(() => undefined); // a step's `chmod 500 .secrets` must not pin them
  let removed = true;
  for (const name of names) {
    try {
      await unlink(join(dir, name));
    } catch (err) {
      if (errno(err) !== 'ENOENT') removed = false;
    }
  }
  await rmdir(dir).catch(() => undefined); // not empty if the step wrote there: the workspace removal takes it
  return removed;
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
  const secretFiles: string[] = [];
  let secretsRemoved = true;

  const checkCancelled = (when: string): void => {
    if (deps.signal?.aborted === true) throw new Stop('cancelled', `cancelled ${when}; the command never ran`);
  };

  try {
    if (deps.sandbox === 'required' && bwrap === null) throw new Stop('refused', 'the sandbox is required but bwrap was not found on PATH; the step was not run');
    const reserved = [...job.inputs.filter((i) => underSecrets(i.path)).map((i) => `input ${i.path}`), ...job.outputs.filter(underSecrets).map((o) => `output ${o}`)];
    if (reserved.length > 0) throw new Stop('refused', `${reserved.join(', ')}: ${SECRETS_DIR}/ is reserved for secret files, which are never collected or replaced; the step was not run`);
    const secretProblem = secretsProblem(job.secrets ?? []);
    if (secretProblem !== null) throw new Stop('refused', `${secretProblem}; the step was not run`);
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

    try {
      Object.assign(env, await placeSecrets(ws, job.secrets ?? [], secretFiles));
    } catch (err) {
      if (err instanceof Stop) throw err;
      throw writeFailure('placing secrets', err);
    }

    const launch = await buildLaunch({ bwrap, workspace: ws, env, network: job.network, argv: ['/bin/sh', '-c', job.command] });
    const outcome = await runProcess({ launch, cwd: ws, timeoutMs: job.timeoutMs, killGraceMs, signal: deps.signal, stdout, stderr });
    // The process group is gone (any exit, timeout or cancel): the secret files go now, before outputs are read.
    secretsRemoved = await removeSecretFiles(ws, secretFiles);
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
    if (workspace !== undefined) {
      // Again for a step stopped between placing and running; the unlink does not depend on the removal below.
      secretsRemoved = (await removeSecretFiles(workspace, secretFiles)) && secretsRemoved;
      const workspaceRemoved = await removeWorkspace(workspace);
      if (workspaceRemoved) secretsRemoved = true;
    }
  }
  if (!secretsRemoved) {
    // The value stays on this host's disk: say so, and never call the attempt clean.
    if (status === 'succeeded') outputs.length = 0;
    status = status === 'succeeded' ? 'failed' : status;
    reason = [reason, `the secret files in ${SECRETS_DIR}/ could not be removed from the workspace; remove ${workspace ?? 'it'} by hand`].filter((r) => r !== undefined).join('; ');
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
  const record = buildLinkRecord(job, { status, exitCode, signal, outputs, fingerprint, logs, startedAt, finishedAt });
  const link = signLink(record, deps.signer);
  // The same measurements as an in-toto v0.9 link, for third-party verification (docs/intoto.md).
  const intotoLink = signLinkMetablock(
    linkFor({ stage: job.stage, step: job.step, command: job.command, materials: record.materials, products: record.products, exitCode, stdoutDigest: record.byproducts.stdoutDigest, stderrDigest: record.byproducts.stderrDigest, runId: job.runId, attempt: job.attempt }),
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
    intotoLink,
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
