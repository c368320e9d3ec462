/**
 * The step executor, end to end with real processes: isolation, integrity, cleanup and the
 * signed link. Behavioural tests run once as plain processes and once under bubblewrap when
 * `bwrap` is installed; sandbox-only tests are registered only then (CI installs bubblewrap).
 */
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, verify as cryptoVerify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BlobStore, sha256Digest } from '../../src/artifacts/index.js';
import type { BlobStoreLike } from '../../src/artifacts/index.js';
import { ValidationError } from '../../src/errors/index.js';
import { ed25519LinkSigner, executeStep, FIXED_PATH, LINK_PAYLOAD_TYPE, pae, truncationMarker, verifyLink } from '../../src/runner/index.js';
import type { ExecutorDeps, LinkRecord, LinkSigner, SignedEnvelope, StepJob, StepResult } from '../../src/runner/index.js';
import { HAS_BWRAP, SANDBOX_MODES } from '../support/sandbox.js';

const MODES = SANDBOX_MODES;

const keys = generateKeyPairSync('ed25519');
const publicKey: KeyObject = keys.publicKey;
const signer: LinkSigner = ed25519LinkSigner(keys.privateKey);

interface Scratch {
  readonly dir: string;
  /** Named like an Airlock home: holds work/ and artifacts/ (and a planted sentinel in some tests). */
  readonly home: string;
  readonly workRoot: string;
  readonly blobs: BlobStore;
  cleanup(): Promise<void>;
}

async function scratch(): Promise<Scratch> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-runner-'));
  const home = join(dir, 'airlock-home');
  return {
    dir,
    home,
    workRoot: join(home, 'work'),
    blobs: new BlobStore(join(home, 'artifacts')),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

let seq = 0;
function makeJob(overrides: Partial<StepJob> = {}): StepJob {
  seq += 1;
  return {
    jobId: `job-${seq}`,
    runId: 'run-1',
    pipeline: 'web',
    stage: 'build',
    step: 'compile',
    attempt: 1,
    command: 'true',
    env: {},
    timeoutMs: 20_000,
    source: { kind: 'none' },
    inputs: [],
    outputs: [],
    requires: {},
    network: false,
    ...overrides,
  };
}

interface Ran {
  readonly result: StepResult;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
}

/** Run a job, collecting what onOutput delivered. */
async function runJob(
  s: { workRoot: string; blobs: BlobStoreLike },
  mode: 'off' | 'auto',
  job: Partial<StepJob>,
  deps: Partial<ExecutorDeps> = {},
): Promise<Ran> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const result = await executeStep(makeJob(job), {
    blobs: s.blobs,
    workRoot: s.workRoot,
    signer,
    sandbox: mode,
    onOutput: (stream, chunk) => (stream === 'stdout' ? out : err).push(chunk),
    ...deps,
  });
  return { result, stdout: Buffer.concat(out), stderr: Buffer.concat(err) };
}

function state(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? null;
  } catch {
    return null;
  }
}

/** process.kill(pid, 0), with zombies (exited, not yet reaped by init) counted as dead. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const st = state(pid);
  return st !== null && st !== 'Z' && st !== 'X';
}

/** Live pids whose argv is exactly `argv` (works for sandboxed processes, whose own pids differ). */
function pidsRunning(...argv: string[]): number[] {
  const want = `${argv.join('\0')}\0`;
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8') === want && alive(Number(entry))) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

/** Pids whose command line contains `text` anywhere. */
function pidsWithArg(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

/** Mount a 1 MiB tmpfs; throws where this process may not mount. */
function mountTmpfs(): { path: string; release(): void } {
  const path = mkdtempSync(join(tmpdir(), 'airlock-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', path], { stdio: 'ignore' });
  } catch (err) {
    rmSync(path, { recursive: true, force: true });
    throw err;
  }
  return {
    path,
    release: () => {
      try {
        execFileSync('umount', [path], { stdio: 'ignore' });
      } finally {
        rmSync(path, { recursive: true, force: true });
      }
    },
  };
}

/**
 * Whether disk-full tests can use a real tmpfs (root with CAP_SYS_ADMIN). Probed once at
 * collection and unmounted at once; each suite mounts its own in beforeAll, so a filtered run
 * never leaves a mount behind.
 */
const CAN_MOUNT = ((): boolean => {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  try {
    mountTmpfs().release();
    return true;
  } catch {
    return false;
  }
})();

function payloadOf(envelope: SignedEnvelope): LinkRecord {
  return JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as LinkRecord;
}

/** A distinctive sleep duration so leftover processes can be found by their argv. */
function marker(): string {
  return String(900_000 + Math.floor(Math.random() * 90_000));
}

let s: Scratch;
beforeEach(async () => {
  s = await scratch();
});
afterEach(async () => {
  // Whatever happened, no workspace may be left behind.
  if (existsSync(s.workRoot)) expect(await readdir(s.workRoot)).toEqual([]);
  await s.cleanup();
});

describe.each(MODES)('executeStep (sandbox %s)', (mode) => {
  const run = (job: Partial<StepJob>, deps: Partial<ExecutorDeps> = {}): Promise<Ran> => runJob(s, mode, job, deps);

  it('gives the step exactly its declared environment plus PATH, HOME, TMPDIR, LANG', async () => {
    process.env.SECRET_IN_PARENT = 'parent-secret-value';
    process.env.AIRLOCK_HOME = s.home;
    try {
      const { result, stdout } = await run({ command: 'env', env: { DECLARED: 'declared-value-7781', AIRLOCK_RUN_ID: 'run-1' } });
      expect(result.status).toBe('succeeded');
      const vars = new Map(
        stdout
          .toString()
          .trim()
          .split('\n')
          .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as const),
      );
      // /bin/sh itself exports PWD; nothing else may appear.
      expect([...vars.keys()].sort()).toEqual(['AIRLOCK_RUN_ID', 'DECLARED', 'HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR']);
      expect(vars.get('PATH')).toBe(FIXED_PATH);
      expect(vars.get('LANG')).toBe('C.UTF-8');
      expect(vars.get('HOME')).toBe(`${vars.get('PWD')}/.home`);
      expect(vars.get('TMPDIR')).toBe(`${vars.get('PWD')}/.tmp`);
      expect(stdout.toString()).not.toContain('parent-secret-value');
      expect(result.fingerprint.envNames).toEqual(['AIRLOCK_RUN_ID', 'DECLARED', 'HOME', 'LANG', 'PATH', 'TMPDIR']);
      expect(vars.get('DECLARED')).toBe('declared-value-7781');
      // Names only in the signed record, never values.
      expect(Buffer.from(result.link.payload, 'base64').toString()).not.toContain('declared-value-7781');
    } finally {
      delete process.env.SECRET_IN_PARENT;
      delete process.env.AIRLOCK_HOME;
    }
  });

  it('runs in a fresh private workspace under workRoot and removes it afterwards', async () => {
    const { result, stdout } = await run({
      jobId: 'build-42',
      command: 'pwd; stat -c %a .; test -w . && test -d "$HOME" && test -w "$TMPDIR" && echo usable',
    });
    expect(result.status).toBe('succeeded');
    const [cwd, modeBits, usable] = stdout.toString().trim().split('\n');
    expect(cwd).toMatch(new RegExp(`^${s.workRoot}/build-42-[0-9a-f]{16}$`));
    expect(modeBits).toBe('700');
    expect(usable).toBe('usable');
    expect(existsSync(cwd!)).toBe(false);
    expect(await readdir(s.workRoot)).toEqual([]);
  });

  it('copies the source without .git and keeps links verbatim', async () => {
    const src = join(s.dir, 'checkout');
    await mkdir(join(src, '.git'), { recursive: true });
    await writeFile(join(src, '.git', 'config'), '[credential] token=ghp_secret');
    await mkdir(join(src, 'sub'));
    await writeFile(join(src, 'sub', '.git'), 'gitdir: ../.git/modules/sub');
    await writeFile(join(src, 'main.c'), 'int main(void) { return 0; }\n');
    await symlink('main.c', join(src, 'link'));
    const { result, stdout } = await run({
      source: { kind: 'dir', path: src },
      command: 'cat main.c; test ! -e .git && test ! -e sub/.git && echo no-git; readlink link',
    });
    expect(result.status).toBe('succeeded');
    expect(stdout.toString()).toBe('int main(void) { return 0; }\nno-git\nmain.c\n');
  });

  it('verifies inputs and streams binary output byte-exact through onOutput and the blob store', async () => {
    const bytes = Buffer.alloc(70_000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + (i >> 8)) & 0xff;
    bytes.set([0xc3, 0x28, 0xff, 0xfe, 0x00, 0x0a, 0x0d], 100); // invalid UTF-8, NUL, CR
    const { digest } = await s.blobs.put(bytes);
    const { result, stdout } = await run({ inputs: [{ path: 'in/data.bin', digest }], command: 'cat in/data.bin' });
    expect(result.status).toBe('succeeded');
    expect(stdout.equals(bytes)).toBe(true);
    expect(result.logs.stdout).toEqual({ digest, bytes: bytes.length, truncated: false, streamDigest: digest });
    expect((await s.blobs.readVerified(result.logs.stdout.digest!)).equals(bytes)).toBe(true);
    expect(payloadOf(result.link).materials).toEqual({ 'in/data.bin': digest });
  });

  it('refuses a tampered input before the command can run', async () => {
    const planted = join(s.dir, 'ran-marker');
    const command = `echo RAN; touch ${planted}`;
    const { digest } = await s.blobs.put(Buffer.from('the real package'));
    // Positive control: with an intact input the command runs and would leave its marker.
    const ok = await run({ inputs: [{ path: 'dist/app.tgz', digest }], command });
    expect(ok.stdout.toString()).toContain('RAN');

    await rm(planted, { force: true });
    const path = s.blobs.pathFor(digest);
    await chmod(path, 0o644);
    await writeFile(path, 'a swapped package');
    const { result, stdout, stderr } = await run({ inputs: [{ path: 'dist/app.tgz', digest }], command });
    expect(result.status).toBe('refused');
    expect(result.reason).toBe(`input dist/app.tgz: expected ${digest}, found ${sha256Digest('a swapped package')}`);
    expect(result.exitCode).toBeNull();
    expect(stdout.length + stderr.length).toBe(0);
    expect(existsSync(planted)).toBe(false);
    const link = payloadOf(result.link);
    expect(link.byproducts.status).toBe('refused');
    expect(link.materials).toEqual({ 'dist/app.tgz': digest });
  });

  it('refuses an input missing from the store', async () => {
    const digest = sha256Digest('never stored');
    const { result } = await run({ inputs: [{ path: 'a.bin', digest }], command: 'echo RAN' });
    expect(result.status).toBe('refused');
    expect(result.reason).toBe(`input a.bin: blob ${digest} is not in the artifact store`);
  });

  it('never writes an input through a symbolic link planted in the source', async () => {
    const outside = join(s.dir, 'outside');
    await mkdir(outside);
    const src = join(s.dir, 'checkout');
    await mkdir(src);
    await symlink(outside, join(src, 'dist'));
    const { digest } = await s.blobs.put(Buffer.from('pkg'));
    const { result } = await run({ source: { kind: 'dir', path: src }, inputs: [{ path: 'dist/app.tgz', digest }], command: 'echo RAN' });
    expect(result.status).toBe('refused');
    expect(result.reason).toContain('dist is a symbolic link');
    expect(await readdir(outside)).toEqual([]);
  });

  it('hashes and stores declared outputs', async () => {
    const { result } = await run({
      command: "mkdir -p dist && printf 'package' > dist/app.tgz && head -c 3000 /dev/urandom > dist/rand.bin",
      outputs: ['dist/app.tgz', 'dist/rand.bin'],
    });
    expect(result.status).toBe('succeeded');
    expect(result.outputs).toHaveLength(2);
    expect(result.outputs[0]).toEqual({ path: 'dist/app.tgz', digest: sha256Digest('package'), size: 7 });
    const rand = await s.blobs.readVerified(result.outputs[1]!.digest);
    expect(rand.length).toBe(3000);
    expect(result.outputs[1]!.digest).toBe(sha256Digest(rand));
    expect(payloadOf(result.link).products).toEqual({ 'dist/app.tgz': sha256Digest('package'), 'dist/rand.bin': sha256Digest(rand) });
  });

  it('fails when a declared output was not produced', async () => {
    const { result } = await run({ command: "printf x > made.txt", outputs: ['made.txt', 'dist/missing.txt'] });
    expect(result.status).toBe('failed');
    expect(result.exitCode).toBe(0);
    expect(result.reason).toBe('output dist/missing.txt was not produced');
    expect(result.outputs).toEqual([]);
    expect(payloadOf(result.link).products).toEqual({});
  });

  it('refuses to collect an output that links to a host file', async () => {
    const secret = join(s.dir, 'host-secret');
    await writeFile(secret, 'host credentials');
    const { result } = await run({ command: `mkdir dist && ln -s ${secret} dist/app.tgz && ln -s ${s.dir} up`, outputs: ['dist/app.tgz', 'up/host-secret'] });
    expect(result.status).toBe('failed');
    expect(result.reason).toBe('output dist/app.tgz is a symbolic link; only regular files are collected; output up/host-secret: up is a symbolic link; links are not followed');
    expect(await s.blobs.has(sha256Digest('host credentials'))).toBe(false);
  });

  it('reports a command that does not exist as exit 127', async () => {
    const { result, stderr } = await run({ command: 'airlock-no-such-command --flag' });
    expect(result.status).toBe('failed');
    expect(result.exitCode).toBe(127);
    expect(result.reason).toMatch(/^command not found/);
    expect(stderr.toString()).toContain('airlock-no-such-command');
  });

  it('reports a non-zero exit', async () => {
    const { result } = await run({ command: 'echo partial; exit 3' });
    expect(result).toMatchObject({ status: 'failed', exitCode: 3, signal: null, reason: 'the step exited with code 3' });
  });

  it('kills background children the step leaves behind when it exits', async () => {
    const a = marker();
    const b = marker();
    const { result, stdout } = await run({ command: `sleep ${a} & echo "bg $!"; sleep ${b} >/dev/null 2>&1 & exit 0` });
    expect(result.status).toBe('succeeded');
    expect(result.durationMs).toBeLessThan(5000);
    expect(pidsRunning('sleep', a)).toEqual([]);
    expect(pidsRunning('sleep', b)).toEqual([]);
    if (mode === 'off') expect(alive(Number(/bg (\d+)/.exec(stdout.toString())![1]))).toBe(false);
  });

  it('on timeout kills the whole process group, children included', async () => {
    const a = marker();
    const b = marker();
    const { result, stdout } = await run({ command: `sleep ${a} & echo "bg $!"; echo "sh $$"; sleep ${b}`, timeoutMs: 400 }, { killGraceMs: 500 });
    expect(result.status).toBe('timed_out');
    expect(result.reason).toBe('the step exceeded its timeout of 400 ms; its process group was killed');
    expect(result.signal).toBe('SIGTERM');
    expect(pidsRunning('sleep', a)).toEqual([]);
    expect(pidsRunning('sleep', b)).toEqual([]);
    if (mode === 'off') {
      expect(alive(Number(/bg (\d+)/.exec(stdout.toString())![1]))).toBe(false);
      expect(alive(Number(/sh (\d+)/.exec(stdout.toString())![1]))).toBe(false);
    }
  });

  it('escalates to SIGKILL when the group ignores SIGTERM', async () => {
    const a = marker();
    const { result } = await run({ command: `trap '' TERM; sleep ${a} & echo started; wait; wait`, timeoutMs: 300 }, { killGraceMs: 300 });
    expect(result.status).toBe('timed_out');
    expect(pidsRunning('sleep', a)).toEqual([]);
    if (mode === 'off') {
      expect(result.signal).toBe('SIGKILL');
      expect(result.durationMs).toBeGreaterThanOrEqual(600);
    } else {
      // bwrap itself does not ignore SIGTERM; its death takes the whole pid namespace along.
      expect(result.signal).toBe('SIGTERM');
    }
  });

  it('cancels on abort: the whole group dies and the result says cancelled', async () => {
    const a = marker();
    const controller = new AbortController();
    const { result } = await run(
      { command: `sleep ${a} & echo started; wait` },
      {
        signal: controller.signal,
        killGraceMs: 500,
        onOutput: (_stream, chunk) => {
          if (chunk.toString().includes('started')) controller.abort();
        },
      },
    );
    expect(result.status).toBe('cancelled');
    expect(pidsRunning('sleep', a)).toEqual([]);
    expect(payloadOf(result.link).byproducts.status).toBe('cancelled');

    const { result: early, stdout } = await run({ command: 'echo RAN' }, { signal: AbortSignal.abort() });
    expect(early.status).toBe('cancelled');
    expect(stdout.length).toBe(0);
  });

  it('keeps memory bounded for 200 MB of output and marks the truncation', async () => {
    const total = 200_000_000;
    let seen = 0;
    const before = process.memoryUsage.rss();
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage.rss());
    }, 10);
    let result: StepResult;
    try {
      ({ result } = await run({ command: `head -c ${total} /dev/zero` }, { onOutput: (_s, chunk) => (seen += chunk.length) }));
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, process.memoryUsage.rss());
    expect(result.status).toBe('succeeded');
    expect(seen).toBe(total);
    expect(peak - before).toBeLessThan(64 * 1024 * 1024);
    const kept = 16 * 1024 * 1024;
    const log = result.logs.stdout;
    expect(log.bytes).toBe(total);
    expect(log.truncated).toBe(true);
    // The link carries the digest of every byte written, not of the stored prefix.
    const full = createHash('sha256');
    const zeros = Buffer.alloc(1 << 20);
    for (let left = total; left > 0; left -= zeros.length) full.update(left >= zeros.length ? zeros : zeros.subarray(0, left));
    expect(log.streamDigest).toBe(`sha256:${full.digest('hex')}`);
    expect(payloadOf(result.link).byproducts.stdoutDigest).toBe(log.streamDigest);
    const stored = await s.blobs.readVerified(log.digest!);
    const tail = truncationMarker(kept, total - kept);
    expect(tail).toBe(`\n[airlock: output truncated after ${kept} bytes; ${total - kept} bytes dropped]\n`);
    expect(stored.length).toBe(kept + tail.length);
    expect(stored.subarray(kept).toString()).toBe(tail);
  });

  it('refuses when a required tool drifts, names the difference, and never runs the command', async () => {
    const { result, stdout } = await run({ command: 'echo RAN', requires: { node: '>=999', 'airlock-missing-tool': '*' } });
    expect(result.status).toBe('refused');
    expect(result.reason).toBe(`tool node ${process.versions.node} does not satisfy >=999; tool airlock-missing-tool was not found on PATH ${FIXED_PATH}`);
    expect(stdout.length).toBe(0);
    expect(result.fingerprint.tools).toEqual({ node: process.versions.node, 'airlock-missing-tool': null });

    const ok = await run({ command: 'echo RAN', requires: { node: `^${process.versions.node.split('.')[0]}`, sh: '*' } });
    expect(ok.result.status).toBe('succeeded');
    expect(ok.result.fingerprint).toMatchObject({
      os: process.platform,
      arch: process.arch,
      tools: { node: process.versions.node, sh: null },
      sandbox: mode === 'off' ? 'none' : 'bwrap',
      network: false,
    });
    expect(ok.result.fingerprint.kernel).toMatch(/^\d+\.\d+/);
  });

  it('signs a link that verifies, and fails verification when tampered or checked with another key', async () => {
    const { digest } = await s.blobs.put(Buffer.from('src'));
    const { result } = await run({
      command: "cat in.txt > out.txt; echo err >&2",
      inputs: [{ path: 'in.txt', digest }],
      outputs: ['out.txt'],
      attempt: 2,
    });
    const verified = verifyLink(result.link, publicKey);
    expect(verified.ok).toBe(true);
    if (!verified.ok) return;
    expect(verified.keyid).toBe(signer.keyid);
    expect(verified.link).toEqual({
      _type: 'https://airlock.dev/link/v1',
      pipeline: 'web',
      runId: 'run-1',
      stage: 'build',
      step: 'compile',
      attempt: 2,
      command: 'cat in.txt > out.txt; echo err >&2',
      materials: { 'in.txt': digest },
      products: { 'out.txt': digest },
      byproducts: {
        exitCode: 0,
        signal: null,
        status: 'succeeded',
        stdoutDigest: sha256Digest(''),
        stderrDigest: sha256Digest('err\n'),
        fingerprint: result.fingerprint,
      },
      startedAt: result.startedAt,
      finishedAt: result.finishedAt,
    });
    // Keys sorted (canonical JSON), so any verifier can recompute the bytes.
    const text = Buffer.from(result.link.payload, 'base64').toString();
    expect(text.indexOf('"_type"')).toBe(1);
    expect(text.indexOf('"attempt"')).toBeLessThan(text.indexOf('"byproducts"'));

    const forged = { ...payloadOf(result.link), products: { 'out.txt': sha256Digest('malware') } };
    const tampered = { ...result.link, payload: Buffer.from(JSON.stringify(forged)).toString('base64') };
    expect(verifyLink(tampered, publicKey)).toEqual({ ok: false, reason: 'no signature verifies with the given key' });
    expect(verifyLink({ ...result.link, payloadType: 'application/vnd.in-toto+json' }, publicKey).ok).toBe(false);
    expect(verifyLink(result.link, generateKeyPairSync('ed25519').publicKey).ok).toBe(false);
    expect(verifyLink({ ...result.link, signatures: [] }, publicKey).ok).toBe(false);
  });

  it('fails clearly when the artifact store is full (injected ENOSPC) without deadlocking the step', async () => {
    const full: BlobStoreLike = {
      put: (source) => {
        if (typeof source === 'object' && 'destroy' in source) source.destroy();
        return Promise.reject(Object.assign(new Error('write failed'), { code: 'ENOSPC' }));
      },
      open: (d) => s.blobs.open(d),
      has: (d) => s.blobs.has(d),
    };
    // 4 MB through a pipe whose store refuses everything: the step must still finish.
    const { result } = await run({ command: 'head -c 4000000 /dev/zero; printf x > out.bin', outputs: ['out.bin'] }, { blobs: full });
    expect(result.status).toBe('failed');
    expect(result.reason).toBe('output out.bin could not be stored: the artifact store is out of space; stdout could not be stored: the artifact store is out of space; stderr could not be stored: the artifact store is out of space');
    expect(result.logs.stdout.digest).toBeNull();
    expect(result.logs.stdout.bytes).toBe(4_000_000);
    expect(verifyLink(result.link, publicKey).ok).toBe(true);
  });

  if (CAN_MOUNT) {
    describe('on a full workspace file system (1 MiB tmpfs)', () => {
      let tmpfs: { path: string; release(): void };
      beforeAll(() => {
        tmpfs = mountTmpfs();
      });
      afterAll(() => {
        tmpfs.release();
      });
      const onTmpfs = (job: Partial<StepJob>): Promise<Ran> => runJob({ workRoot: join(tmpfs.path, 'work'), blobs: s.blobs }, mode, job);

      it('fails copying a source that does not fit', async () => {
        const src = join(s.dir, 'big-checkout');
        await mkdir(src);
        await writeFile(join(src, 'huge.bin'), Buffer.alloc(2 * 1024 * 1024, 1));
        const { result } = await onTmpfs({ source: { kind: 'dir', path: src }, command: 'echo RAN' });
        expect(result.status).toBe('failed');
        expect(result.reason).toBe('the workspace ran out of disk space while copying the source (ENOSPC)');
        expect(await readdir(join(tmpfs.path, 'work'))).toEqual([]);
      });

      it('fails copying an input that does not fit', async () => {
        const { digest } = await s.blobs.put(Buffer.alloc(2 * 1024 * 1024, 2));
        const { result } = await onTmpfs({ inputs: [{ path: 'big.bin', digest }], command: 'echo RAN' });
        expect(result.status).toBe('failed');
        expect(result.reason).toMatch(/^the workspace ran out of disk space while copying input big\.bin \(ENOSPC\)$/);
      });

      it('says the disk is full when the step fails filling it', async () => {
        const { result, stderr } = await onTmpfs({ command: 'head -c 2000000 /dev/zero > fill.bin' });
        expect(result.status).toBe('failed');
        expect(result.reason).toBe('the step exited with code 1; the workspace file system is full (no space left on device)');
        expect(stderr.toString()).toMatch(/No space left on device/);
        expect(await readdir(join(tmpfs.path, 'work'))).toEqual([]);
      });
    });
  }
});

if (HAS_BWRAP) {
  describe('under bubblewrap', () => {
    const run = (job: Partial<StepJob>): Promise<Ran> => runJob(s, 'auto', job);
    const connect = `node -e "require('net').connect(5432,'127.0.0.1').on('connect',()=>{console.log('connected');process.exit(0)}).on('error',(e)=>{console.log(e.code);process.exit(3)})"`;

    it('has no network unless the job asks for it', async () => {
      const closed = await run({ command: `${connect}; getent hosts example.com || echo no-dns` });
      expect(closed.stdout.toString()).toMatch(/^(ECONNREFUSED|ENETUNREACH)\nno-dns\n$/);
      // Positive control: PostgreSQL does listen on the host's 127.0.0.1:5432.
      const open = await run({ command: connect, network: true });
      expect(open.stdout.toString()).toBe('connected\n');
      expect(open.result.fingerprint.network).toBe(true);
    });

    it('sees the system read-only, its workspace writable, and no capabilities', async () => {
      const { result, stdout } = await run({
        command: 'for p in /usr/x /etc/x /x; do touch $p 2>/dev/null || echo "ro $p"; done; touch ws-file && echo ws-rw; grep CapEff /proc/self/status',
      });
      expect(result.status).toBe('succeeded');
      expect(stdout.toString()).toBe('ro /usr/x\nro /etc/x\nro /x\nws-rw\nCapEff:\t0000000000000000\n');
      expect(existsSync('/usr/x')).toBe(false);
    });

    it('cannot see the Airlock home, the artifact store, the repository or host secrets', async () => {
      await mkdir(s.home, { recursive: true });
      await writeFile(join(s.home, 'sentinel'), 'airlock home contents');
      const { digest } = await s.blobs.put(Buffer.from('stored artifact'));
      const paths = [join(s.home, 'sentinel'), s.blobs.pathFor(digest), join(process.cwd(), 'package.json'), '/etc/shadow', '/root', '/home', '/work'];
      const { result, stdout } = await run({ command: paths.map((p) => `test -e ${p} && echo "visible ${p}"`).join('; ') + '; echo done' });
      expect(result.status).toBe('succeeded');
      expect(stdout.toString()).toBe('done\n');
      expect(result.fingerprint.sandbox).toBe('bwrap');
    });

    it('keeps environment values out of every command line on the host', async () => {
      const value = `s3cr3t-${marker()}`;
      const seen: number[] = [];
      const { result } = await runJob(s, 'auto', { command: 'echo go; sleep 0.3', env: { API_TOKEN: value } }, {
        onOutput: () => {
          seen.push(...pidsWithArg(value));
        },
      });
      expect(result.status).toBe('succeeded');
      expect(seen).toEqual([]);
    });
  });
}

describe('sandbox selection', () => {
  it('auto falls back to a plain process without bwrap and says so; required refuses', async () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      const auto = await runJob(s, 'auto', { command: 'echo RAN' });
      expect(auto.result.status).toBe('succeeded');
      expect(auto.result.fingerprint.sandbox).toBe('none');
      expect(payloadOf(auto.result.link).byproducts.fingerprint.sandbox).toBe('none');

      const required = await runJob(s, 'auto', { command: 'echo RAN' }, { sandbox: 'required' });
      expect(required.result.status).toBe('refused');
      expect(required.result.reason).toBe('the sandbox is required but bwrap was not found on PATH; the step was not run');
      expect(required.stdout.length).toBe(0);
    } finally {
      process.env.PATH = path;
    }
  });
});

describe('link envelope (DSSE v1)', () => {
  it('PAE matches the DSSE specification example', () => {
    // https://github.com/secure-systems-lab/dsse/blob/master/protocol.md (test vector)
    expect(pae('http://example.com/HelloWorld', Buffer.from('hello world')).toString()).toBe('DSSEv1 29 http://example.com/HelloWorld 11 hello world');
  });

  it('signatures are Ed25519 over the PAE, checkable without Airlock code', async () => {
    const { result } = await runJob(s, 'off', { command: 'true' });
    expect(result.link.payloadType).toBe(LINK_PAYLOAD_TYPE);
    const payload = Buffer.from(result.link.payload, 'base64');
    const sig = Buffer.from(result.link.signatures[0]!.sig, 'base64');
    expect(cryptoVerify(null, pae(LINK_PAYLOAD_TYPE, payload), publicKey, sig)).toBe(true);
    expect(cryptoVerify(null, payload, publicKey, sig)).toBe(false);
  });

  it('rejects malformed envelopes', () => {
    expect(verifyLink(null, publicKey).ok).toBe(false);
    expect(verifyLink({ payloadType: LINK_PAYLOAD_TYPE, payload: '!!not base64', signatures: [{ keyid: '', sig: '' }] }, publicKey).ok).toBe(false);
  });
});

describe('job validation', () => {
  it('names every bad field and runs nothing', async () => {
    const err = await executeStep(
      makeJob({
        jobId: '../escape',
        command: '',
        env: { PATH: '/tmp/evil', 'BAD-NAME': 'x' },
        inputs: [{ path: '../outside', digest: 'sha256:nope' }],
        outputs: ['/etc/passwd', 'a/./b'],
        requires: { 'node;rm': '>=1', git: '1.2.3 - 2' },
        timeoutMs: 0,
      }),
      { blobs: s.blobs, workRoot: s.workRoot, signer, onOutput: () => undefined },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).issues.map((i) => i.path).sort()).toEqual(
      ['command', 'env.BAD-NAME', 'env.PATH', 'inputs[0].digest', 'inputs[0].path', 'jobId', 'outputs[0]', 'outputs[1]', 'requires.git', 'requires.node;rm', 'timeoutMs'].sort(),
    );
    expect(existsSync(s.workRoot)).toBe(false);
  });
});
