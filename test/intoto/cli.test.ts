/**
 * `airlock export in-toto RUN DIR` end to end: the CLI handler calls the route, the route builds
 * the export from (stubbed) application deps over a real executed run, the files land in DIR and
 * in-toto-verify accepts them; a run the export refuses writes nothing.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Command } from 'commander';
import Fastify from 'fastify';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cli } from '../../src/cli/cli.js';
import { act } from '../../src/cli/cli.js';
import { exportInTotoRun } from '../../src/cli/handlers/intoto.js';
import { NotFoundError } from '../../src/errors/index.js';
import type { ExportStep } from '../../src/intoto/index.js';
import { toHttpError } from '../../src/server/errors.js';
import { intotoRoutes } from '../../src/server/intoto-routes.js';
import type { StepResult } from '../../src/runner/index.js';
import { honestRun, inTotoVerify, pipeline, projectSigner, runnerKeys, scratch } from './support.js';
import type { Scratch } from './support.js';

let s: Scratch;
let server: FastifyInstance;
let url: string;
let honest: { build: StepResult; test: StepResult };
const p = pipeline();
const runner = runnerKeys();
const project = projectSigner();
const runs = new Map<string, ExportStep[]>();
const dirs: string[] = [];

beforeAll(async () => {
  s = await scratch();
  honest = await honestRun(s, p, runner.signer);
  const stored = (r: StepResult) => JSON.parse(JSON.stringify(r.intotoLink)) as unknown;
  runs.set('run-1', [
    { stage: 'build', step: 'compile', link: stored(honest.build), runner: 'embedded' },
    { stage: 'test', step: 'check', link: stored(honest.test), runner: 'embedded' },
  ]);
  // A run whose test step never produced a link (its runner crashed).
  runs.set('run-2', [{ stage: 'test', step: 'check', link: null, runner: 'agent:gpu-1' }]);
  // A run whose stored evidence is run-1's link (a copied database row).
  runs.set('run-3', [{ stage: 'build', step: 'compile', link: stored(honest.build), runner: 'embedded' }]);
  server = Fastify();
  server.setErrorHandler((err, _request, reply) => {
    const mapped = toHttpError(err);
    return reply.code(mapped.status).send(mapped.body);
  });
  await server.register(
    intotoRoutes({
      resolveRun: (run) => {
        // `project#number` resolves like Runs.resolveId; run-2 answers under its id only.
        const id = run === 'ship#1' ? 'run-1' : run;
        if (!runs.has(id)) return Promise.reject(new NotFoundError(`no run ${run}`));
        return Promise.resolve(id);
      },
      runEvidence: (runId) => Promise.resolve({ pipeline: p, steps: runs.get(runId) ?? [] }),
      functionaryKeys: () => Promise.resolve([runner.publicKey]),
      layoutSigner: () => Promise.resolve(project),
    }),
  );
  url = await server.listen({ host: '127.0.0.1', port: 0 });
});

afterAll(async () => {
  await server.close();
  await s.cleanup();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string; error?: unknown }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  const c: Cli = { io: { stdout, stderr, stdin: new PassThrough(), env: { AIRLOCK_TOKEN: 'test-token' }, cwd: tmpdir(), stderrIsTTY: false }, exitCode: -1, logLevel: undefined };
  // The registration the lead adds to program.ts, reproduced for the test.
  const command = new Command('in-toto').argument('<run>').argument('<dir>').option('--server <url>').option('--json').option('--force').exitOverride();
  command.action(act(c, async (cmd, a) => exportInTotoRun(c, cmd, a[0] ?? '', a[1] ?? '')));
  try {
    await command.parseAsync(args, { from: 'user' });
  } catch (error) {
    return { code: c.exitCode, stdout: out, stderr: err, error };
  }
  return { code: c.exitCode, stdout: out, stderr: err };
}

describe('airlock export in-toto', () => {
  it('writes the export of a run (by project#number) that in-toto-verify accepts', async () => {
    const dir = join(await mkdtemp(join(tmpdir(), 'airlock-intoto-cli-')), 'evidence');
    dirs.push(dir);
    const r = await cli(['ship#1', dir, '--server', url, '--json']);
    expect(r.error).toBeUndefined();
    expect(r.code).toBe(0);
    const answer = JSON.parse(r.stdout) as { dir: string; files: string[]; verify: string };
    expect(answer.dir).toBe(dir);
    expect((await readdir(dir)).sort()).toEqual([...answer.files].sort());
    expect(answer.verify).toContain('in-toto-verify --layout');
    expect(inTotoVerify(dir).code).toBe(0);
    // A second export into the same directory is refused unless --force.
    const again = await cli(['ship#1', dir, '--server', url]);
    expect(again.error).toMatchObject({ code: 'CONFLICT' });
    const forced = await cli(['ship#1', dir, '--server', url, '--force']);
    expect(forced.code).toBe(0);
    expect(forced.stderr).toContain('verify with: in-toto-verify');
    expect(inTotoVerify(dir).code).toBe(0);
  });

  it('a run the export cannot vouch for, or an unknown run, writes nothing', async () => {
    const dir = join(await mkdtemp(join(tmpdir(), 'airlock-intoto-cli-')), 'evidence');
    dirs.push(dir);
    const incomplete = await cli(['run-2', dir, '--server', url]);
    expect(incomplete.error).toMatchObject({ code: 'CONFLICT', message: expect.stringMatching(/test\.check has no in-toto link/) as unknown });
    const copied = await cli(['run-3', dir, '--server', url]);
    expect(copied.error).toMatchObject({ code: 'INTEGRITY_FAILED', message: expect.stringMatching(/build\.compile is for another run/) as unknown });
    expect(await readdir(join(dir, '..'))).toEqual([]);
    const unknown = await cli(['nope', dir, '--server', url]);
    expect(unknown.error).toMatchObject({ code: 'NOT_FOUND' });
  });
});
