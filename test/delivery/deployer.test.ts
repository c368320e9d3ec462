/** LocalDeployer: real installs of examples/sample-service, real processes, real rollbacks. */
import { execFileSync, spawn } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/artifacts/index.js';
import type { DeployArtifact, DeployResult } from '../../src/delivery/deployer.js';
import { LocalDeployer } from '../../src/delivery/deployer.js';
import { runHealthCheck } from '../../src/delivery/health.js';
import { AirlockError, ConflictError, ValidationError } from '../../src/errors/index.js';
import { groupAlive, killGroup } from '../../src/runner/index.js';

const SAMPLE = fileURLToPath(new URL('../../examples/sample-service/', import.meta.url));
const TAR_FLAGS = ['--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '--mode=644', '--sort=name'];

let dir: string;
let root: string;
let blobs: BlobStore;
let deployer: LocalDeployer;
const environments = new Set<string>();
const pids = new Set<number>();
const artifacts = new Map<string, DeployArtifact>();
const deployed = new Map<string, DeployResult>();

/** Pack the sample service as its build stage does, with `version` in VERSION. */
async function buildService(version: string): Promise<DeployArtifact> {
  const src = join(dir, `src-${version}`);
  await mkdir(src, { recursive: true });
  for (const file of ['server.js', 'package.json']) await copyFile(join(SAMPLE, file), join(src, file));
  await writeFile(join(src, 'VERSION'), `${version}\n`);
  const out = join(src, 'service.tar');
  execFileSync('tar', [...TAR_FLAGS, '-cf', out, 'server.js', 'VERSION', 'package.json'], { cwd: src });
  const { digest } = await blobs.put(out);
  return { path: 'dist/service.tar', digest };
}

async function get(port: number, path = '/'): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: (await res.text()).trim() };
}

/** GET until the freshly started service answers (it needs a moment to listen). */
async function waitFor(port: number, path = '/'): Promise<{ status: number; body: string }> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await get(port, path);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

async function deploy(id: string, environment: string, version: string, extra: { command?: string; env?: Record<string, string>; port?: number } = {}): Promise<DeployResult> {
  environments.add(environment);
  const artifact = artifacts.get(version) ?? (await buildService(version));
  artifacts.set(version, artifact);
  const result = await deployer.deploy({ deploymentId: id, environment, artifacts: [artifact], env: extra.env ?? {}, command: extra.command, port: extra.port });
  pids.add(result.pid);
  deployed.set(id, result);
  return result;
}

/** Whether a process exists and is not a zombie (a container's pid 1 may never reap orphans). */
async function running(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return !['Z', 'X'].includes(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? '');
  } catch {
    return false;
  }
}

async function leftovers(environment: string): Promise<string[]> {
  return (await readdir(join(root, environment, 'releases'))).filter((name) => name.startsWith('.'));
}

async function refusal(p: Promise<unknown>): Promise<AirlockError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AirlockError);
  return err as AirlockError;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-deployer-'));
  root = join(dir, 'home', 'environments');
  blobs = new BlobStore(join(dir, 'home', 'artifacts'));
  deployer = new LocalDeployer({ objects: blobs, root, killGraceMs: 2000 });
});

afterAll(async () => {
  for (const environment of environments) await deployer.stop(environment).catch(() => undefined);
  for (const pid of pids) await killGroup(pid, 500);
  await rm(dir, { recursive: true, force: true });
});

describe('LocalDeployer', () => {
  it('installs the sample service by digest, starts it on a free port and records it', async () => {
    const result = await deploy('d-1', 'staging', '1.0.0');
    expect(result.dir).toBe(join(root, 'staging', 'releases', 'd-1'));
    expect(await waitFor(result.port)).toEqual({ status: 200, body: '1.0.0' });
    expect((await get(result.port, '/healthz')).body).toBe('ok');
    const artifact = artifacts.get('1.0.0')!;
    expect(result.steps.map((s) => [s.name, s.exitCode])).toEqual([
      ['fetch', 0],
      ['extract', 0],
      ['stop', null],
      ['start', null],
    ]);
    expect(result.steps[0]!.digests).toEqual([artifact.digest]);
    expect(Date.parse(result.finishedAt)).toBeGreaterThanOrEqual(Date.parse(result.startedAt));
    expect(await readFile(join(result.dir, 'artifacts', 'dist', 'service.tar'))).toEqual(await blobs.readVerified(artifact.digest));

    const current = await deployer.current('staging');
    expect(current).toMatchObject({ environment: 'staging', deploymentId: 'd-1', pid: result.pid, port: result.port, dir: result.dir, running: true, rollback: false });
    expect((await stat(join(root, 'staging', 'current.json'))).mode & 0o777).toBe(0o600);
    // The manifest names what was installed, never env values.
    expect(JSON.parse(await readFile(join(result.dir, 'release.json'), 'utf8'))).toMatchObject({ deploymentId: 'd-1', artifacts: [artifact], command: null });
  });

  it('passes an HTTP health check against the running release', async () => {
    const { port, dir: cwd } = deployed.get('d-1')!;
    const health = await runHealthCheck({ url: `http://127.0.0.1:${port}/healthz`, status: 200, timeoutMs: 2000 }, { env: {}, cwd, timeoutMs: 5000 });
    expect(health).toMatchObject({ ok: true, attempts: 1 });
    expect(health.detail).toContain('answered 200');
  });

  it('a second deploy replaces the first: the old process group is gone', async () => {
    const first = deployed.get('d-1')!;
    const second = await deploy('d-2', 'staging', '2.0.0');
    expect(await waitFor(second.port)).toEqual({ status: 200, body: '2.0.0' });
    expect(second.pid).not.toBe(first.pid);
    expect(await groupAlive(first.pid)).toBe(false);
    expect(second.steps.find((s) => s.name === 'stop')?.exitCode).toBe(0);
    expect((await deployer.current('staging'))?.deploymentId).toBe('d-2');
  });

  it('refuses a second deploy with an id already used in the environment', async () => {
    const err = await refusal(deployer.deploy({ deploymentId: 'd-1', environment: 'staging', artifacts: [artifacts.get('1.0.0')!], env: {} }));
    expect(err).toBeInstanceOf(ConflictError);
    expect((await deployer.current('staging'))?.deploymentId).toBe('d-2');
  });

  it('reports a failing health check and rolls back to the previous version', async () => {
    const current = deployed.get('d-2')!;
    const health = await runHealthCheck({ url: `http://127.0.0.1:${current.port}/missing`, status: 200, timeoutMs: 1000 }, { env: {}, cwd: current.dir, timeoutMs: 1000, retries: 1, intervalMs: 50 });
    expect(health.ok).toBe(false);
    expect(health.attempts).toBe(2);
    expect(health.detail).toContain('answered 404, expected 200');

    const back = await deployer.rollback('staging', { deploymentId: 'd-1', artifacts: [artifacts.get('1.0.0')!] });
    pids.add(back.pid);
    expect(await waitFor(back.port)).toEqual({ status: 200, body: '1.0.0' });
    expect(await groupAlive(current.pid)).toBe(false);
    // The old release directory still held exactly these bytes: reused, not fetched again.
    expect(back.steps.map((s) => s.name)).toEqual(['reuse', 'extract', 'stop', 'start']);
    expect(await deployer.current('staging')).toMatchObject({ deploymentId: 'd-1', pid: back.pid, rollback: true, running: true });
  });

  it('rolls back from the object store when the release directory is gone', async () => {
    await rm(join(root, 'staging', 'releases', 'd-2'), { recursive: true, force: true });
    const back = await deployer.rollback('staging', { deploymentId: 'd-2', artifacts: [artifacts.get('2.0.0')!] });
    pids.add(back.pid);
    expect(back.steps[0]?.name).toBe('fetch');
    expect(await waitFor(back.port)).toEqual({ status: 200, body: '2.0.0' });
  });

  it('does not trust an edited release directory on rollback: verified bytes are unpacked again', async () => {
    const release = join(root, 'staging', 'releases', 'd-1');
    const tar = join(release, 'artifacts', 'dist', 'service.tar');
    await chmod(tar, 0o600);
    await writeFile(tar, 'not the tested tarball');
    await writeFile(join(release, 'app', 'VERSION'), 'evil\n');
    const back = await deployer.rollback('staging', { deploymentId: 'd-1', artifacts: [artifacts.get('1.0.0')!] });
    pids.add(back.pid);
    expect(back.steps[0]?.name).toBe('fetch');
    expect(await waitFor(back.port)).toEqual({ status: 200, body: '1.0.0' });
    expect(await readFile(tar)).toEqual(await blobs.readVerified(artifacts.get('1.0.0')!.digest));
  });

  it('refuses a corrupt blob: nothing is installed and the running release keeps running', async () => {
    const before = (await deployer.current('staging'))!;
    const artifact = await buildService('3.0.0');
    const path = blobs.pathFor(artifact.digest);
    await chmod(path, 0o644);
    const bytes = await readFile(path);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 600) ^ 0xff, bytes.length - 600);
    await writeFile(path, bytes);

    const err = await refusal(deployer.deploy({ deploymentId: 'd-3', environment: 'staging', artifacts: [artifact], env: {} }));
    expect(err.code).toBe('STORAGE_FAILED');
    expect(err.details.reason).toBe('blob_corrupt');
    expect(await readdir(join(root, 'staging', 'releases'))).not.toContain('d-3');
    expect(await leftovers('staging')).toEqual([]);
    expect(await deployer.current('staging')).toMatchObject({ deploymentId: before.deploymentId, pid: before.pid, running: true });
    expect((await get(before.port)).status).toBe(200);
  });

  it.each([
    ['a ../ member', ['-P', '-cf', 'evil.tar', '../escaped.txt'], 'has a ".." segment'],
    ['an absolute member', ['-P', '-cf', 'evil.tar', 'ABS/abs.txt'], 'is an absolute path'],
    ['a symlink member', ['-cf', 'evil.tar', 'link'], 'not a regular file or directory'],
  ])('refuses a tar with %s before unpacking anything', async (_name, args, why) => {
    const work = join(dir, `evil-${why.length}`, 'inner');
    await mkdir(work, { recursive: true });
    await writeFile(join(work, '..', 'escaped.txt'), 'x');
    const abs = join(dir, `abs-${why.length}.txt`);
    await writeFile(abs, 'y');
    await rm(join(work, 'link'), { force: true });
    execFileSync('ln', ['-s', '/etc', join(work, 'link')]);
    execFileSync('tar', args.map((a) => a.replace('ABS/abs.txt', abs)), { cwd: work });
    const { digest } = await blobs.put(join(work, 'evil.tar'));
    await rm(abs);
    environments.add('evil');

    const err = await refusal(deployer.deploy({ deploymentId: 'e-1', environment: 'evil', artifacts: [{ path: 'dist/service.tar', digest }], env: {} }));
    expect(err.code).toBe('INTEGRITY_FAILED');
    expect(err.details.reason).toBe('archive_unsafe');
    expect(err.message).toContain(why);
    expect(await readdir(join(root, 'evil', 'releases'))).toEqual([]);
    // Nothing landed next to the release, where "../escaped.txt" unpacked into app/ would go.
    await expect(stat(join(root, 'evil', 'releases', 'escaped.txt'))).rejects.toThrow();
    expect(await deployer.current('evil')).toBeUndefined();
  });

  it('refuses names and paths that would leave the environment root', async () => {
    const artifact = artifacts.get('1.0.0')!;
    for (const environment of ['../staging', 'Staging', '', 'a/b', 'x'.repeat(64)]) {
      const err = await refusal(deployer.deploy({ deploymentId: 'x-1', environment, artifacts: [artifact], env: {} }));
      expect(err).toBeInstanceOf(ValidationError);
    }
    const bad = await refusal(
      deployer.deploy({
        deploymentId: '../x',
        environment: 'staging',
        artifacts: [
          { path: '../outside.tar', digest: artifact.digest },
          { path: '/abs.tar', digest: 'sha256:../../etc' },
        ],
        env: { PATH: '/tmp', 'BAD-NAME': 'x' },
      }),
    );
    expect(bad).toBeInstanceOf(ValidationError);
    expect((bad.details.issues as { path: string }[]).map((i) => i.path)).toEqual(['deploymentId', 'artifacts[0].path', 'artifacts[1].path', 'artifacts[1].digest', 'env.PATH', 'env.BAD-NAME']);
    await expect(deployer.stop('../staging')).rejects.toBeInstanceOf(ValidationError);
    await expect(deployer.rollback('..', { deploymentId: 'd-1', artifacts: [artifact] })).rejects.toBeInstanceOf(ValidationError);
  });

  it('gives the service only the environment it is given, on the requested port', async () => {
    process.env.AIRLOCK_DEPLOYER_TEST_SECRET = 'must-not-leak';
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const address = probe.address();
        probe.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
      });
    });
    try {
      const result = await deploy('i-1', 'isolated', '1.0.0', { command: 'env > ../env.txt && exec node server.js', env: { GREETING: 'hi' }, port });
      expect(result.port).toBe(port);
      expect(await waitFor(port)).toEqual({ status: 200, body: '1.0.0' });
      const env = (await readFile(join(result.dir, 'env.txt'), 'utf8')).split('\n');
      expect(env).toContain('GREETING=hi');
      expect(env).toContain(`PORT=${port}`);
      expect(env.join('\n')).not.toContain('must-not-leak');
      expect(env.filter((l) => l.startsWith('AIRLOCK_'))).toEqual([]);
      // The command is remembered for rollback; the env values are not written anywhere.
      expect(JSON.parse(await readFile(join(result.dir, 'release.json'), 'utf8'))).toMatchObject({ command: 'env > ../env.txt && exec node server.js', envNames: ['GREETING'] });
    } finally {
      delete process.env.AIRLOCK_DEPLOYER_TEST_SECRET;
    }
  });

  it('stop ends the whole process group, including children the service started', async () => {
    const result = await deploy('c-1', 'children', '1.0.0', { command: 'sleep 300 & echo $! > ../child.pid; exec node server.js' });
    await waitFor(result.port);
    const child = Number((await readFile(join(result.dir, 'child.pid'), 'utf8')).trim());
    expect(await groupAlive(result.pid)).toBe(true);
    expect(await deployer.stop('children')).toEqual({ deploymentId: 'c-1', pid: result.pid, stopped: true });
    expect(await groupAlive(result.pid)).toBe(false);
    expect(await running(child)).toBe(false);
    expect(await deployer.current('children')).toBeUndefined();
    expect(await deployer.stop('children')).toBeUndefined();
  });

  it('never signals a recycled pid: a live process with another start time is left alone', async () => {
    const stranger = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
    const pid = stranger.pid!;
    pids.add(pid);
    environments.add('recycled');
    await mkdir(join(root, 'recycled'), { recursive: true });
    const fake = { environment: 'recycled', deploymentId: 'r-1', pid, port: 1, dir: '/nowhere', startedAt: new Date().toISOString(), processStart: '1', rollback: false };
    await writeFile(join(root, 'recycled', 'current.json'), JSON.stringify(fake));
    expect(await deployer.current('recycled')).toMatchObject({ pid, running: false });
    expect(await deployer.stop('recycled')).toEqual({ deploymentId: 'r-1', pid, stopped: false });
    expect(await groupAlive(pid)).toBe(true);
    await killGroup(pid, 500);
  });

  it('refuses an unreadable current.json rather than guessing which process to stop', async () => {
    environments.add('garbled');
    await mkdir(join(root, 'garbled'), { recursive: true });
    await writeFile(join(root, 'garbled', 'current.json'), '{"pid": 1}');
    const err = await refusal(deployer.stop('garbled'));
    expect(err.details.reason).toBe('current_unreadable');
    await rm(join(root, 'garbled', 'current.json'));
  });

  it('leaves no process behind once every environment is stopped', async () => {
    for (const environment of environments) await deployer.stop(environment);
    for (const pid of pids) expect(await groupAlive(pid)).toBe(false);
    expect(pids.size).toBeGreaterThanOrEqual(6);
  });
});
