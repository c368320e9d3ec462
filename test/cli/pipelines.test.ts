/**
 * Pipelines from the command line, as a new user runs them: lint, schema, project add, run
 * --follow, runs show, logs; and a server killed mid-run whose run still ends (never stuck).
 * Real processes on SQLite (the runs suite covers both engines in process).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLE, makeRepo } from '../runs/support.js';
import type { CliEnv, ServerChild } from './helpers.js';
import { cliEnv, json, requireBuilt, run, start, startServer } from './helpers.js';
import type { Authenticator } from './identity-helpers.js';
import { expectOk, setupAccount } from './identity-helpers.js';

const PASSWORD = 'pipelines operator passphrase';

interface RunJson {
  id: string;
  number: number;
  state: string;
  reason: string | null;
  commit: string;
  stages: { name: string; state: string; steps: { step: string; state: string; reason: string | null; runner: string | null }[] }[];
}

describe('pipelines from the CLI (sqlite)', () => {
  let ctx: CliEnv;
  let server: ServerChild | undefined;
  let env: Record<string, string>;
  let scratch: string;
  let totp: Authenticator;
  const cli = (...args: string[]) => run(args, { env, timeoutMs: 60_000 });

  beforeAll(async () => {
    requireBuilt();
    ctx = await cliEnv('sqlite');
    scratch = mkdtempSync(join(tmpdir(), 'airlock-cli-pipelines-'));
    const serverEnv = { ...ctx.env, AIRLOCK_RUNNER_LEASE_SECONDS: '2' };
    const init = await run(['init', '--admin', 'ops', '--json'], { env: serverEnv });
    expectOk(init, 'init');
    server = await startServer(serverEnv);
    env = { ...serverEnv, AIRLOCK_SERVER: server.url, AIRLOCK_CLI_CONFIG_DIR: join(scratch, 'cfg') };
    const setup = await setupAccount({ username: 'ops', setupToken: json<{ setupToken: string }>(init).setupToken, password: PASSWORD, env });
    expectOk(setup.result, 'account setup');
    totp = setup.totp;
    expectOk(await run(['login', '--username', 'ops', '--password-stdin', '--code', await totp.code()], { env, input: `${PASSWORD}\n` }), 'login');
  }, 90_000);

  afterAll(async () => {
    await server?.stop();
    await ctx.drop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('lints the example clean, and refuses a hard-coded credential naming file:line:col', async () => {
    const ok = await cli('lint', join(EXAMPLE, 'airlock.yaml'));
    expectOk(ok, 'lint');
    const leaky = join(scratch, 'leaky.yaml');
    writeFileSync(leaky, 'version: 1\npipeline: leaky\nowners: [ops]\nstages:\n  build:\n    steps:\n      - name: push\n        run: git push https://x:ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5@github.com/o/r.git\n');
    const bad = await cli('lint', leaky);
    expect(bad.code).toBe(1);
    expect(bad.stdout + bad.stderr).toMatch(/leaky\.yaml:8:\d+: hardcoded_credential/);
    expect(bad.stdout + bad.stderr).not.toContain('ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5');
    const schema = await cli('schema', 'pipeline');
    expectOk(schema, 'schema');
    expect(json<{ $schema: string }>(schema).$schema).toMatch(/json-schema/);
  });

  it('adds the example project, runs it with --follow, and tells the whole story', async () => {
    const repo = makeRepo({}, EXAMPLE);
    expectOk(await cli('project', 'add', 'hello', '--repo', repo.dir), 'project add');
    const r = await cli('run', 'hello', '--reason', 'first run', '--param', 'channel=beta', '--follow');
    expectOk(r, 'run --follow');
    expect(r.stdout).toContain('1 test passed');
    expect(r.stdout).toMatch(/run hello#1 succeeded/);
    const show = await cli('runs', 'show', 'hello#1');
    expectOk(show, 'runs show');
    expect(show.stdout).toMatch(/^run hello#1 {2}SUCCEEDED/m);
    expect(show.stdout).toContain(repo.head);
    expect(show.stdout).toMatch(/author: +Ada Author <ada@example.com>; committer Cy Committer <cy@example.com>/);
    expect(show.stdout).toMatch(/trigger: +ops, reason: first run, params: channel=beta/);
    expect(show.stdout).toMatch(/outputs: dist\/hello\.txt=sha256:/);
    const asJson = json<RunJson>(await cli('runs', 'show', 'hello#1', '--json'));
    expect(asJson.stages.map((s) => s.state)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    const logs = await cli('logs', 'hello#1');
    expectOk(logs, 'logs');
    expect(logs.stdout).toContain('1 test passed');
    // The step's own stderr stays stderr, and it saw the commit Airlock provided.
    expect(logs.stderr).toContain(`building at ${repo.head}`);
    const list = json<{ runs: { number: number; state: string }[] }>(await cli('runs', 'list', '--json'));
    expect(list.runs[0]).toMatchObject({ number: 1, state: 'succeeded' });
  });

  it('runs the secret example: the declared step gets the value, its logs show only the mask', async () => {
    const repo = makeRepo({}, join(EXAMPLE, '..', 'secret-pipeline'));
    expectOk(await cli('project', 'add', 'secret-demo', '--repo', repo.dir), 'project add');
    const value = 'Zx9-s3cr3t-Pa55w0rd-41';
    expectOk(await run(['secret', 'set', 'DB_PASSWORD', '--project', 'secret-demo'], { env, input: value }), 'secret set');
    const key = '-----BEGIN DEMO KEY-----\nZx9-client-K3y-body-77\n-----END DEMO KEY-----\n';
    writeFileSync(join(scratch, 'client-key.pem'), key);
    expectOk(await run(['secret', 'set', 'DB_CLIENT_KEY', '--project', 'secret-demo', '--from-file', join(scratch, 'client-key.pem')], { env }), 'secret set (file)');
    const r = await cli('run', 'secret-demo', '--follow');
    expectOk(r, 'run');
    expect(r.stdout).toContain('connecting as app with password ***');
    expect(r.stdout).toContain('"password":"***"');
    expect(r.stdout).toContain(`client key file mode 400, ${key.length} bytes:\n***`);
    expect(r.stdout).toContain('DB_PASSWORD here is not set, DB_CLIENT_KEY_FILE is not set');
    for (const form of [value, Buffer.from(value).toString('base64'), Buffer.from(`app:${value}`).toString('base64'), 'Zx9-client-K3y-body-77']) expect(r.stdout + r.stderr).not.toContain(form);
    const logs = await cli('logs', 'secret-demo#1');
    expect(logs.stdout + logs.stderr).not.toContain(value);
    const listed = await cli('secret', 'list');
    expect(listed.stdout).toMatch(/DB_PASSWORD/);
    expect(listed.stdout).not.toContain(value);
    // An investigator holding a leaked value matches it to the record without the value being stored.
    const hash = await run(['secret', 'audit-hash', '--json'], { env, input: value });
    expectOk(hash, 'audit-hash');
    const usage = json<{ usage: { action: string; seq: number }[] }>(await cli('secret', 'usage', 'DB_PASSWORD', '--project', 'secret-demo', '--json')).usage;
    const written = json<{ entries: { event: { action: string; details: { valueHmac?: string } } }[] }>(await cli('audit', 'search', '--action', 'secrets.write', '--json')).entries.filter((e) => e.event.details.valueHmac !== undefined);
    expect(usage.map((u) => u.action)).toEqual(expect.arrayContaining(['secrets.write', 'secrets.release']));
    expect(written.map((e) => e.event.details.valueHmac)).toContain(json<{ auditHash: string }>(hash).auditHash);
    expect(hash.stdout).not.toContain(value);
    // versions: metadata only; delete: gone from the list, refused to steps, versions kept encrypted.
    const versions = await cli('secret', 'versions', 'DB_PASSWORD', '--project', 'secret-demo', '--json');
    expectOk(versions, 'versions');
    expect(json<{ versions: { version: number; size: number }[] }>(versions).versions).toEqual([expect.objectContaining({ version: 1, size: value.length })]);
    expect(versions.stdout).not.toContain(value);
    expectOk(await run(['secret', 'set', 'THROWAWAY', '--project', 'secret-demo'], { env, input: 'throwaway-value-0001' }), 'secret set throwaway');
    expectOk(await cli('secret', 'delete', 'THROWAWAY', '--project', 'secret-demo'), 'delete');
    expect((await cli('secret', 'list')).stdout).not.toMatch(/THROWAWAY/);
    const gone = await cli('secret', 'versions', 'THROWAWAY', '--project', 'secret-demo');
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/no secret THROWAWAY/);
  });

  it('rotates a secret with a command, keeps the old version when the command fails or prints nothing, and reports usage', async () => {
    const failing = await cli('secret', 'rotate', 'DB_PASSWORD', '--project', 'secret-demo', '--command', 'echo provider down >&2; exit 3');
    expect(failing.code).toBe(1);
    expect(failing.stderr).toMatch(/exited 3; nothing was changed .*the failure is recorded.*\(ROTATION_FAILED\)/);
    const silent = await cli('secret', 'rotate', 'DB_PASSWORD', '--project', 'secret-demo', '--command', 'true');
    expect(silent.code).toBe(1);
    expect(silent.stderr).toMatch(/printed nothing/);
    const failures = json<{ usage: { action: string; outcome: string; reason: string; version: unknown }[] }>(await cli('secret', 'usage', 'DB_PASSWORD', '--project', 'secret-demo', '--json')).usage.filter((u) => u.action === 'secrets.rotate');
    expect(failures.map((u) => [u.outcome, u.version, u.reason])).toEqual([
      ['failed', 1, 'rotation failed, version 1 stays current: the rotation command printed nothing'],
      ['failed', 1, 'rotation failed, version 1 stays current: the rotation command exited 3'],
    ]);
    const ok = await cli('secret', 'rotate', 'DB_PASSWORD', '--project', 'secret-demo', '--command', 'echo rotated-Value-0042', '--json');
    expectOk(ok, 'rotate');
    expect(json<{ currentVersion: number }>(ok).currentVersion).toBe(2);
    expect(ok.stdout + ok.stderr).not.toContain('rotated-Value-0042');
    const usage = await cli('secret', 'usage', 'DB_PASSWORD', '--project', 'secret-demo', '--json');
    expectOk(usage, 'usage');
    const actions = json<{ usage: { action: string; outcome: string }[] }>(usage).usage.map((u) => `${u.action}:${u.outcome}`);
    expect(actions).toEqual(expect.arrayContaining(['secrets.write:allowed', 'secrets.release:allowed']));
    // Key rotation while the server runs: every data key moves to the new KEK, values stay readable.
    const rewrapped = await run(['secret', 'rewrap', '--json'], { env: { ...ctx.env } });
    expectOk(rewrapped, 'rewrap');
    const r = json<{ rotatedTo: string; kekId: string; rewrapped: number }>(rewrapped);
    expect(r.kekId).toBe(r.rotatedTo);
    expect(r.rewrapped).toBeGreaterThanOrEqual(2);
    const after = await cli('run', 'secret-demo', '--follow');
    expectOk(after, 'run after rewrap');
    expect(after.stdout).toContain('connecting as app with password ***');
  });

  it('a run whose server is killed mid-step ends failed (lost) after restart; it is never left running', async () => {
    const repo = makeRepo({ 'airlock.yaml': 'version: 1\npipeline: slow\nowners: [ops]\nstages:\n  wait:\n    steps:\n      - { name: sleep, run: "sleep 60", timeout: 5m }\n' });
    expectOk(await cli('project', 'add', 'slow', '--repo', repo.dir), 'project add');
    const started = await cli('run', 'slow', '--json');
    expectOk(started, 'run');
    const id = json<RunJson>(started).id;
    for (let i = 0; i < 50; i++) {
      const s = json<RunJson>(await cli('runs', 'show', id, '--json'));
      if (s.stages[0]?.steps[0]?.state === 'running') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    server!.child.kill('SIGKILL');
    await new Promise((r) => server!.child.once('exit', r));
    server = await startServer({ ...ctx.env, AIRLOCK_RUNNER_LEASE_SECONDS: '2' });
    env.AIRLOCK_SERVER = server.url;
    // The stored login names the old URL (new port): log in again against the restarted server.
    expectOk(await run(['login', '--username', 'ops', '--password-stdin', '--code', await totp.code()], { env, input: `${PASSWORD}\n` }), 'login again');
    let final: RunJson | undefined;
    for (let i = 0; i < 60; i++) {
      final = json<RunJson>(await cli('runs', 'show', id, '--json'));
      if (final.state !== 'running') break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(final?.state).toBe('failed');
    expect(final?.stages[0]?.steps[0]).toMatchObject({ state: 'lost' });
    expect(final?.reason).toMatch(/stopped renewing its lease/);
  }, 60_000);
  it('runs the example on a remote agent started in another process (server with --no-runner)', async () => {
    const remoteEnv = { ...ctx.env, AIRLOCK_RUNNER_LEASE_SECONDS: '2' };
    // Only the agent may take work: stop the server that has an embedded runner.
    await server?.stop();
    server = undefined;
    // A second server on the same database, which runs nothing itself.
    const noRunner = await startServer(remoteEnv, ['--no-runner']);
    // The same database, so the signed-in session works here too (no second TOTP code needed).
    const stored = JSON.parse(readFileSync(join(env.AIRLOCK_CLI_CONFIG_DIR!, 'credentials.json'), 'utf8')) as { token: string };
    const opsEnv = { ...env, AIRLOCK_SERVER: noRunner.url, AIRLOCK_TOKEN: stored.token };
    const tokenRun = await run(['agent', 'token', 'create', '--json'], { env: opsEnv });
    expectOk(tokenRun, 'agent token create');
    const token = json<{ token: string }>(tokenRun).token;
    const agent = start(['agent', '--server', noRunner.url, '--token', token, '--name', 'remote-1', '--state', join(scratch, 'agent-state')], { env: { ...remoteEnv } });
    try {
      await new Promise<void>((ok, fail) => {
        let seen = '';
        agent.stdout.on('data', (d: Buffer) => {
          seen += d.toString();
          if (seen.includes('waiting for jobs')) ok();
        });
        agent.on('exit', (code) => fail(new Error(`agent exited ${String(code)}`)));
      });
      const repo = makeRepo({}, EXAMPLE);
      expectOk(await run(['project', 'add', 'hello-remote', '--repo', repo.dir], { env: opsEnv }), 'project add');
      const r = await run(['run', 'hello-remote', '--follow', '--json'], { env: opsEnv, timeoutMs: 60_000 });
      expectOk(r, 'run on the agent');
      const detail = json<RunJson>(r);
      expect(detail.state).toBe('succeeded');
      expect(detail.stages.flatMap((st) => st.steps.map((x) => x.runner))).toEqual(['agent:remote-1', 'agent:remote-1', 'agent:remote-1']);
      // The agent receives only the secrets of its job, and masks them like the embedded runner.
      const secretRun = await run(['run', 'secret-demo', '--follow'], { env: opsEnv, timeoutMs: 60_000 });
      expectOk(secretRun, 'secret run on the agent');
      expect(secretRun.stdout).toContain('connecting as app with password ***');
      expect(secretRun.stdout).toContain('DB_PASSWORD here is not set');
    } finally {
      // The agent first (it finishes its long poll and reports), then the server.
      const exited = new Promise((done) => agent.once('exit', done));
      agent.kill('SIGTERM');
      await exited;
      await noRunner.stop();
    }
  }, 90_000);

});
