/**
 * Local deployments: install a release's artifacts by digest under
 * `<root>/<environment>/releases/<deploymentId>/`, replace the environment's running process
 * with one started from it, and remember which process that is in `current.json`.
 *
 * Layout of a release directory:
 *   artifacts/<path>   each artifact, copied from the object store and re-hashed on the way
 *   app/               tar artifacts unpacked (the service's working directory)
 *   home/              $HOME of the service
 *   release.json       what was installed (paths, digests, command; never env values)
 *   service.log        the service's stdout and stderr
 *
 * Threats handled here: bytes that do not match their digest (refused, nothing installed),
 * archives that write outside the release (absolute or `..` members, links: refused before
 * extraction), environment names that would leave `<root>` (validated), Airlock's own
 * environment reaching the service (scrubbed), and a recycled pid making `stop` kill a stranger
 * (the process start time is recorded and checked).
 */
import { arch, hostname, platform, release } from 'node:os';
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { copyBlobVerified, isSha256Digest, syncDirectory } from '../artifacts/index.js';
import { AirlockError, ConflictError, ValidationError } from '../errors/index.js';
import type { FieldIssue } from '../errors/index.js';
import type { Logger } from '../observability/index.js';
import { FIXED_PATH, groupAlive, killGroup } from '../runner/index.js';

/** An object store read that re-hashes while streaming and errors at the end on a mismatch. */
export interface VerifyingObjects {
  open(digest: string): Promise<Readable>;
}

export interface LocalDeployerDeps {
  readonly objects: VerifyingObjects;
  /** `$AIRLOCK_HOME/environments`; every deployment stays inside `<root>/<environment>`. */
  readonly root: string;
  readonly logger?: Logger;
  readonly clock?: () => Date;
  /** SIGTERM → SIGKILL grace when stopping a release (default 5 s). */
  readonly killGraceMs?: number;
  /** Interface services listen on (default 127.0.0.1). */
  readonly host?: string;
}

export interface DeployArtifact {
  /** Workspace-relative path, as the pipeline named the output (`dist/service.tar`). */
  readonly path: string;
  readonly digest: string;
}

export interface DeployInput {
  readonly deploymentId: string;
  readonly environment: string;
  readonly artifacts: readonly DeployArtifact[];
  /** Run with `sh -c` in `app/`; default: `node server.js` (the sample service). */
  readonly command?: string;
  /** The service's whole environment besides PATH, HOME, LANG, HOST and PORT. */
  readonly env: Readonly<Record<string, string>>;
  /** Default: a free local port. */
  readonly port?: number;
}

export interface RollbackTarget {
  readonly deploymentId: string;
  readonly artifacts: readonly DeployArtifact[];
  /** Default: the command the release was installed with. */
  readonly command?: string;
  readonly env?: Readonly<Record<string, string>>;
  readonly port?: number;
}

/** One thing the deployment did, in the deployment record's step format. */
export interface DeployStep {
  readonly name: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly exitCode: number | null;
  readonly digests: readonly string[];
}

export interface DeployResult {
  readonly deploymentId: string;
  readonly environment: string;
  readonly pid: number;
  readonly port: number;
  /** The release directory. */
  readonly dir: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly steps: readonly DeployStep[];
}

/** What `current.json` holds: the process serving an environment. */
export interface CurrentRelease {
  readonly environment: string;
  readonly deploymentId: string;
  readonly pid: number;
  readonly port: number;
  readonly dir: string;
  readonly startedAt: string;
  /** /proc start time of `pid` (clock ticks since boot), so a recycled pid is never signalled. */
  readonly processStart: string | null;
  readonly rollback: boolean;
}

export interface StopResult {
  readonly deploymentId: string;
  readonly pid: number;
  /** Whether a live process was found and stopped (false: it had already exited). */
  readonly stopped: boolean;
}

interface ReleaseManifest {
  readonly deploymentId: string;
  readonly environment: string;
  readonly artifacts: readonly DeployArtifact[];
  readonly command: string | null;
  readonly envNames: readonly string[];
  readonly installedAt: string;
}

const ENVIRONMENT_RE = /^[a-z][a-z0-9-]{0,62}$/;
const DEPLOYMENT_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Set by the deployer, never by the caller. */
const RESERVED_ENV = ['PATH', 'HOME', 'LANG', 'HOST', 'PORT'];
const DEFAULT_KILL_GRACE_MS = 5_000;
const TAR_TIMEOUT_MS = 120_000;
const MAX_ARTIFACTS = 256;

function validationError(message: string, issues: FieldIssue[]): ValidationError {
  return new ValidationError(message, issues);
}

/** Refuse a name that is not an environment name before it becomes a path. */
export function assertEnvironmentName(environment: unknown, field = 'environment'): asserts environment is string {
  if (typeof environment !== 'string' || !ENVIRONMENT_RE.test(environment)) {
    throw validationError('invalid environment name', [{ path: field, message: 'must match ^[a-z][a-z0-9-]{0,62}$' }]);
  }
}

function pathProblem(path: unknown): string | null {
  if (typeof path !== 'string' || path === '') return 'must be a non-empty string';
  if (path.length > 1024) return 'must be at most 1024 characters';
  if (path.includes('\0') || path.includes('\\')) return 'must not contain NUL or backslash';
  if (isAbsolute(path)) return 'must be relative';
  if (path.split('/').some((p) => p === '' || p === '.' || p === '..')) return 'must be normalised: no empty, "." or ".." segments';
  return null;
}

function validateArtifacts(artifacts: readonly DeployArtifact[], issues: FieldIssue[]): void {
  const list: unknown = artifacts;
  if (!Array.isArray(list) || artifacts.length === 0) {
    issues.push({ path: 'artifacts', message: 'must list at least one artifact' });
    return;
  }
  if (artifacts.length > MAX_ARTIFACTS) issues.push({ path: 'artifacts', message: `must list at most ${MAX_ARTIFACTS} artifacts` });
  const seen = new Set<string>();
  artifacts.forEach((a, i) => {
    const problem = pathProblem(a.path);
    if (problem !== null) issues.push({ path: `artifacts[${i}].path`, message: problem });
    else if (seen.has(a.path)) issues.push({ path: `artifacts[${i}].path`, message: `duplicates another artifact (${a.path})` });
    seen.add(a.path);
    if (!isSha256Digest(a.digest)) issues.push({ path: `artifacts[${i}].digest`, message: 'must be "sha256:" followed by 64 lower-case hex digits' });
  });
}

function validateEnv(env: Readonly<Record<string, string>>, issues: FieldIssue[]): void {
  for (const [name, value] of Object.entries(env)) {
    if (!ENV_NAME_RE.test(name)) issues.push({ path: `env.${name}`, message: 'name must be letters, digits and "_", not starting with a digit' });
    else if (RESERVED_ENV.includes(name)) issues.push({ path: `env.${name}`, message: 'is set by the deployer and cannot be overridden' });
    if (typeof value !== 'string' || value.includes('\0')) issues.push({ path: `env.${name}`, message: 'value must be a string without NUL' });
  }
}

function validatePort(port: number | undefined, issues: FieldIssue[]): void {
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65_535)) issues.push({ path: 'port', message: 'must be an integer from 1 to 65535' });
}

function validateCommand(command: string | undefined, issues: FieldIssue[]): void {
  if (command !== undefined && (typeof command !== 'string' || command.trim() === '' || command.includes('\0'))) {
    issues.push({ path: 'command', message: 'must be a non-empty string without NUL' });
  }
}

function validateDeploymentId(id: unknown, issues: FieldIssue[]): void {
  if (typeof id !== 'string' || !DEPLOYMENT_ID_RE.test(id)) {
    issues.push({ path: 'deploymentId', message: 'must be 1-128 characters of letters, digits, ".", "_" or "-", starting with a letter or digit' });
  }
}

/** Artifacts unpacked into app/ (GNU tar detects the compression when reading). */
function isTar(path: string): boolean {
  return /\.(tar|tar\.gz|tgz)$/.test(path);
}

/** Run a command without a shell; resolves with its exit code and (bounded) output. */
function run(file: string, args: readonly string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    execFile(
      file,
      [...args],
      { cwd, env: { PATH: FIXED_PATH, LC_ALL: 'C' }, timeout: TAR_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
        resolvePromise({ code, stdout, stderr });
      },
    );
  });
}

function archiveRefused(path: string, why: string): AirlockError {
  return new AirlockError('INTEGRITY_FAILED', `archive ${path} was refused: ${why}`, { reason: 'archive_unsafe', path });
}

/**
 * List an archive and refuse anything that could write outside the directory it is unpacked
 * into: absolute names, `..` segments, and links (a symlink member followed by a member written
 * through it is the classic escape). Only regular files and directories pass.
 */
async function checkArchive(file: string, label: string): Promise<void> {
  // escape quoting: one line per member (a newline in a name is shown as \n), and "/" and "."
  // are printed as themselves, so the segment checks below see the real structure.
  const names = await run('tar', ['--quoting-style=escape', '-tf', file], dirname(file));
  if (names.code !== 0) throw archiveRefused(label, 'it is not a readable tar archive');
  const verbose = await run('tar', ['--quoting-style=escape', '-tvf', file], dirname(file));
  if (verbose.code !== 0) throw archiveRefused(label, 'it is not a readable tar archive');
  const nameLines = names.stdout.split('\n').filter((l) => l !== '');
  const typeLines = verbose.stdout.split('\n').filter((l) => l !== '');
  if (nameLines.length !== typeLines.length) throw archiveRefused(label, 'its listing is inconsistent');
  for (const line of typeLines) {
    const type = line[0];
    if (type !== '-' && type !== 'd') throw archiveRefused(label, `it contains a member that is not a regular file or directory (type "${type ?? '?'}")`);
  }
  for (const name of nameLines) {
    if (name.startsWith('/')) throw archiveRefused(label, `member ${JSON.stringify(name)} is an absolute path`);
    if (name.split('/').includes('..')) throw archiveRefused(label, `member ${JSON.stringify(name)} has a ".." segment`);
  }
}

async function hashFile(path: string): Promise<string | undefined> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  } catch {
    return undefined;
  }
  return `sha256:${hash.digest('hex')}`;
}

/** Start time of a process in clock ticks since boot (Linux), or null when unknown. */
async function processStartTime(pid: number): Promise<string | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name: state(3) ppid pgrp … starttime is field 22.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

/** A port nobody listens on right now (the kernel's choice for port 0). */
function freePort(host: string): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => {
        resolvePromise(port);
      });
    });
  });
}

async function writeFileAtomic(path: string, data: string): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDirectory(dirname(path));
}

function parseCurrent(text: string, environment: string): CurrentRelease {
  const bad = (): AirlockError =>
    new AirlockError('STORAGE_FAILED', `current.json of environment ${environment} is unreadable; stop its process by hand and remove the file`, { reason: 'current_unreadable', environment });
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw bad();
  }
  const v = value as Partial<CurrentRelease> | null;
  if (
    v === null ||
    typeof v !== 'object' ||
    v.environment !== environment ||
    typeof v.deploymentId !== 'string' ||
    !Number.isSafeInteger(v.pid) ||
    (v.pid ?? 0) <= 1 ||
    !Number.isInteger(v.port) ||
    typeof v.dir !== 'string' ||
    typeof v.startedAt !== 'string' ||
    !(v.processStart === null || typeof v.processStart === 'string')
  ) {
    throw bad();
  }
  return { ...(v as CurrentRelease), rollback: v.rollback === true };
}

/**
 * Installs and runs releases on this machine.
 *
 * @example
 * const deployer = new LocalDeployer({ objects: blobs, root: join(home, 'environments') });
 * const result = await deployer.deploy({ deploymentId: 'd-1', environment: 'staging', artifacts, env: {} });
 * const health = await runHealthCheck({ url: `http://127.0.0.1:${result.port}/healthz`, status: 200, timeoutMs: 2000 }, { env: {}, cwd: result.dir, timeoutMs: 10_000 });
 */
export class LocalDeployer {
  private readonly root: string;
  private readonly clock: () => Date;
  private readonly killGraceMs: number;
  private readonly host: string;
  /** One deployment at a time per environment (in this process). */
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly deps: LocalDeployerDeps) {
    this.root = resolve(deps.root);
    this.clock = deps.clock ?? (() => new Date());
    this.killGraceMs = deps.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
    this.host = deps.host ?? '127.0.0.1';
  }

  /**
   * Where a release of `environment` runs: host, platform and runtime, and the directory. Goes
   * into the deployment record, so an auditor can tell which machine an outcome belongs to.
   */
  fingerprint(environment: string): Readonly<Record<string, string>> {
    return { host: hostname(), platform: `${platform()}-${arch()}`, kernel: release(), runtime: `node ${process.version}`, directory: this.environmentDir(environment) };
  }

  /** `<root>/<environment>`, after validating the name. */
  environmentDir(environment: string): string {
    assertEnvironmentName(environment);
    return join(this.root, environment);
  }

  /** Install `artifacts` as a new release and make it the environment's running process. */
  deploy(input: DeployInput): Promise<DeployResult> {
    const issues: FieldIssue[] = [];
    validateDeploymentId(input.deploymentId, issues);
    if (typeof input.environment !== 'string' || !ENVIRONMENT_RE.test(input.environment)) issues.push({ path: 'environment', message: 'must match ^[a-z][a-z0-9-]{0,62}$' });
    validateArtifacts(input.artifacts, issues);
    validateEnv(input.env, issues);
    validatePort(input.port, issues);
    validateCommand(input.command, issues);
    if (issues.length > 0) return Promise.reject(validationError('invalid deployment', issues));
    return this.exclusive(input.environment, async () => {
      const releaseDir = join(this.environmentDir(input.environment), 'releases', input.deploymentId);
      if (await exists(releaseDir)) throw new ConflictError(`release ${input.deploymentId} already exists in environment ${input.environment}`, { deploymentId: input.deploymentId, environment: input.environment });
      return this.install({ ...input, command: input.command ?? null, port: input.port, rollback: false, reuse: false });
    });
  }

  /**
   * Run a previous release again: its directory when the artifacts there still hash to the
   * expected digests, otherwise a fresh install from the object store. The app directory is
   * always unpacked again from verified artifacts, so edits made to it since are discarded.
   */
  rollback(environment: string, to: RollbackTarget): Promise<DeployResult> {
    const issues: FieldIssue[] = [];
    if (typeof environment !== 'string' || !ENVIRONMENT_RE.test(environment)) issues.push({ path: 'environment', message: 'must match ^[a-z][a-z0-9-]{0,62}$' });
    validateDeploymentId(to.deploymentId, issues);
    validateArtifacts(to.artifacts, issues);
    validateEnv(to.env ?? {}, issues);
    validatePort(to.port, issues);
    validateCommand(to.command, issues);
    if (issues.length > 0) return Promise.reject(validationError('invalid rollback', issues));
    return this.exclusive(environment, async () => {
      const manifest = await this.readManifest(join(this.environmentDir(environment), 'releases', to.deploymentId));
      const command = to.command ?? manifest?.command ?? null;
      return this.install({ deploymentId: to.deploymentId, environment, artifacts: to.artifacts, env: to.env ?? {}, command, port: to.port, rollback: true, reuse: true });
    });
  }

  /** Stop the environment's process (SIGTERM, then SIGKILL after the grace period). */
  async stop(environment: string): Promise<StopResult | undefined> {
    assertEnvironmentName(environment);
    return this.exclusive(environment, () => this.stopCurrent(environment));
  }

  /** The environment's current release and whether its process is still alive. */
  async current(environment: string): Promise<(CurrentRelease & { readonly running: boolean }) | undefined> {
    const cur = await this.readCurrent(environment);
    if (cur === undefined) return undefined;
    return { ...cur, running: await this.isOurs(cur) };
  }

  private async exclusive<T>(environment: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(environment) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.locks.set(environment, settled);
    try {
      return await next;
    } finally {
      if (this.locks.get(environment) === settled) this.locks.delete(environment);
    }
  }

  private async install(req: {
    deploymentId: string;
    environment: string;
    artifacts: readonly DeployArtifact[];
    env: Readonly<Record<string, string>>;
    command: string | null;
    port: number | undefined;
    rollback: boolean;
    reuse: boolean;
  }): Promise<DeployResult> {
    const envDir = this.environmentDir(req.environment);
    const releases = join(envDir, 'releases');
    const releaseDir = join(releases, req.deploymentId);
    await mkdir(releases, { recursive: true, mode: 0o700 });
    const startedAt = this.clock();
    const steps: DeployStep[] = [];
    const step = async <T>(name: string, digests: readonly string[], fn: () => Promise<T>, exitCode: (value: T) => number | null = () => 0): Promise<T> => {
      const began = this.clock().toISOString();
      const value = await fn();
      steps.push({ name, startedAt: began, finishedAt: this.clock().toISOString(), exitCode: exitCode(value), digests });
      return value;
    };

    // Build the release in a private staging directory and rename it into place at the end:
    // a refused or failed install leaves nothing under releases/<id>.
    const staging = join(releases, `.${req.deploymentId}.${randomBytes(6).toString('hex')}.staging`);
    await mkdir(staging, { mode: 0o700 });
    try {
      await mkdir(join(staging, 'artifacts'), { mode: 0o700 });
      await mkdir(join(staging, 'app'), { mode: 0o700 });
      await mkdir(join(staging, 'home'), { mode: 0o700 });
      const digests = req.artifacts.map((a) => a.digest);
      const reused = req.reuse ? await this.reusableArtifacts(releaseDir, req.artifacts) : false;
      await step(reused ? 'reuse' : 'fetch', digests, async () => {
        for (const artifact of req.artifacts) {
          const dest = join(staging, 'artifacts', artifact.path);
          await mkdir(dirname(dest), { recursive: true, mode: 0o700 });
          const source = reused ? { open: () => Promise.resolve(createReadStream(join(releaseDir, 'artifacts', artifact.path)) as Readable) } : this.deps.objects;
          // Hashed on our side as it streams, whatever the store says; a mismatch leaves no file.
          await copyBlobVerified(source, artifact.digest, dest, 0o400);
        }
      });
      for (const artifact of req.artifacts.filter((a) => isTar(a.path))) {
        await step('extract', [artifact.digest], async () => {
          const file = join(staging, 'artifacts', artifact.path);
          await checkArchive(file, artifact.path);
          const out = await run('tar', ['-xf', file, '-C', join(staging, 'app'), '--no-same-owner', '--no-same-permissions', '--no-overwrite-dir'], staging);
          if (out.code !== 0) throw archiveRefused(artifact.path, `tar exited with ${out.code ?? 'a signal'}`);
          return out.code;
        }, (code) => code);
      }
      const manifest: ReleaseManifest = {
        deploymentId: req.deploymentId,
        environment: req.environment,
        artifacts: req.artifacts.map((a) => ({ path: a.path, digest: a.digest })),
        command: req.command,
        envNames: Object.keys(req.env).sort(),
        installedAt: this.clock().toISOString(),
      };
      await writeFile(join(staging, 'release.json'), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      this.deps.logger?.warn({ environment: req.environment, deploymentId: req.deploymentId, code: (err as AirlockError).code }, 'release refused');
      throw err;
    }

    // Installed: only now touch what is running.
    let previous: StopResult | undefined;
    try {
      previous = await step('stop', [], () => this.stopCurrent(req.environment), (r) => (r === undefined ? null : 0));
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      throw err;
    }
    if (await exists(releaseDir)) {
      const old = join(releases, `.${req.deploymentId}.${randomBytes(6).toString('hex')}.old`);
      await rename(releaseDir, old);
      await rm(old, { recursive: true, force: true });
    }
    await rename(staging, releaseDir);
    await syncDirectory(releases);

    const port = req.port ?? (await freePort(this.host));
    const started = await step('start', req.artifacts.map((a) => a.digest), () => this.start(releaseDir, req.command, req.env, port), () => null);
    const current: CurrentRelease = {
      environment: req.environment,
      deploymentId: req.deploymentId,
      pid: started.pid,
      port,
      dir: releaseDir,
      startedAt: this.clock().toISOString(),
      processStart: await processStartTime(started.pid),
      rollback: req.rollback,
    };
    await writeFileAtomic(join(envDir, 'current.json'), `${JSON.stringify(current, null, 2)}\n`);
    const finishedAt = this.clock();
    this.deps.logger?.info(
      { environment: req.environment, deploymentId: req.deploymentId, pid: started.pid, port, replaced: previous?.deploymentId, rollback: req.rollback },
      req.rollback ? 'release rolled back' : 'release deployed',
    );
    return {
      deploymentId: req.deploymentId,
      environment: req.environment,
      pid: started.pid,
      port,
      dir: releaseDir,
      startedAt: startedAt.toISOString(),
      finishedAt: finishedAt.toISOString(),
      steps,
    };
  }

  /** Whether the old release directory holds exactly these artifacts, byte for byte. */
  private async reusableArtifacts(releaseDir: string, artifacts: readonly DeployArtifact[]): Promise<boolean> {
    const manifest = await this.readManifest(releaseDir);
    if (manifest === undefined) return false;
    const key = (list: readonly DeployArtifact[]): string => JSON.stringify(list.map((a) => [a.path, a.digest]).sort());
    if (key(manifest.artifacts) !== key(artifacts)) return false;
    for (const artifact of artifacts) {
      if ((await hashFile(join(releaseDir, 'artifacts', artifact.path))) !== artifact.digest) return false;
    }
    return true;
  }

  private async readManifest(releaseDir: string): Promise<ReleaseManifest | undefined> {
    try {
      const value = JSON.parse(await readFile(join(releaseDir, 'release.json'), 'utf8')) as Partial<ReleaseManifest>;
      if (!Array.isArray(value.artifacts) || !(value.command === null || typeof value.command === 'string')) return undefined;
      return value as ReleaseManifest;
    } catch {
      return undefined;
    }
  }

  private async start(releaseDir: string, command: string | null, env: Readonly<Record<string, string>>, port: number): Promise<{ pid: number }> {
    const app = join(releaseDir, 'app');
    const nodeDir = dirname(process.execPath);
    // The whole environment: nothing of Airlock's own (database URL, root key) reaches the service.
    const childEnv: Record<string, string> = {
      ...env,
      PATH: `${nodeDir}:${FIXED_PATH}`,
      HOME: join(releaseDir, 'home'),
      LANG: 'C.UTF-8',
      HOST: this.host,
      PORT: String(port),
    };
    const [file, args] = command === null ? [process.execPath, ['server.js']] : ['/bin/sh', ['-c', command]];
    const log = await open(join(releaseDir, 'service.log'), 'a', 0o600);
    try {
      // Detached: its own session and process group, so stop() can signal everything it started.
      const child = spawn(file, args, { cwd: app, env: childEnv, detached: true, stdio: ['ignore', log.fd, log.fd] });
      const error = await new Promise<NodeJS.ErrnoException | undefined>((resolvePromise) => {
        child.once('spawn', () => {
          resolvePromise(undefined);
        });
        child.once('error', resolvePromise);
      });
      if (error !== undefined || child.pid === undefined) {
        throw new AirlockError('INTERNAL', `the service could not be started (${error?.code ?? 'no pid'})`, { reason: 'start_failed' });
      }
      child.unref();
      return { pid: child.pid };
    } finally {
      await log.close();
    }
  }

  private async readCurrent(environment: string): Promise<CurrentRelease | undefined> {
    const path = join(this.environmentDir(environment), 'current.json');
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return parseCurrent(text, environment);
  }

  /**
   * Whether `cur.pid`'s group is still the one we started. A live pid with another start time
   * was recycled: our group is gone (the kernel never reuses a pid that is still a group id).
   */
  private async isOurs(cur: CurrentRelease): Promise<boolean> {
    const start = await processStartTime(cur.pid);
    if (start !== null && cur.processStart !== null && start !== cur.processStart) return false;
    return groupAlive(cur.pid);
  }

  private async stopCurrent(environment: string): Promise<StopResult | undefined> {
    const cur = await this.readCurrent(environment);
    if (cur === undefined) return undefined;
    const alive = await this.isOurs(cur);
    if (alive) await killGroup(cur.pid, this.killGraceMs);
    if (alive && (await groupAlive(cur.pid))) {
      throw new AirlockError('INTERNAL', `the process of release ${cur.deploymentId} in ${environment} did not stop`, { reason: 'stop_failed', pid: cur.pid });
    }
    await rm(join(this.environmentDir(environment), 'current.json'), { force: true });
    this.deps.logger?.info({ environment, deploymentId: cur.deploymentId, pid: cur.pid, stopped: alive }, 'release stopped');
    return { deploymentId: cur.deploymentId, pid: cur.pid, stopped: alive };
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
