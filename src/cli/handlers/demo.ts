/**
 * `airlock demo`: the whole path of a change, on embedded SQLite, without a prompt. Two people
 * (alice, a developer who is also a release manager; bob, a release manager, both with TOTP), the sample service built,
 * tested and packaged, deployed to staging and health-checked, production asked for, alice
 * refused by segregation of duties when she tries to approve her own change, bob approving with a justification on a
 * fresh TOTP login, production deployed, and the signed record and the audit log verified.
 * Everything goes through the HTTP API as those people. The server then keeps running.
 * Re-runnable: people and the sample repository are kept in `$AIRLOCK_HOME/demo`.
 */
import { execFileSync } from 'node:child_process';
import { createPublicKey, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { Secret } from 'otpauth';
import { auditAnchors, openApp } from '../../app/index.js';
import type { App } from '../../app/index.js';
import { verifyLog } from '../../audit/index.js';
import { LocalDeployer, verifyRecordFile } from '../../delivery/index.js';
import { totpAt } from '../../identity/index.js';
import { startServer } from '../../server/index.js';
import { ApiClient } from '../api-client.js';
import type { Cli } from '../cli.js';
import { EXIT_FAILED, EXIT_OK } from '../cli.js';
import { cliConfig, cliLogger, waitForSignal } from '../context.js';
import { say } from '../io.js';

const SAMPLE = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../examples/sample-service');
const PROJECT = 'sample-service';
/** The secret production's service receives (examples/sample-service/airlock.yaml). */
const SERVICE_SECRET = 'SERVICE_TOKEN';

interface DemoPerson {
  readonly username: string;
  readonly password: string;
  /** Base32 TOTP secret of the demo user (the demo home is the demo's own; 0600). */
  readonly totp: string;
  lastStep: number;
}

/** alice and bob, set up once through the real enrolment (setup token, password, TOTP). */
async function ensurePeople(app: App, dir: string): Promise<Record<'alice' | 'bob', DemoPerson>> {
  const file = join(dir, 'people.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as Record<'alice' | 'bob', DemoPerson>;
  const actor = { kind: 'system' as const, id: 'demo' };
  const make = async (username: string, roles: string[], email: string): Promise<DemoPerson> => {
    const made = await app.identity.users.create(actor, { username, roles, email });
    const password = `${username}-demo-${Math.random().toString(36).slice(2)}-passphrase`;
    const enrolment = await app.identity.users.beginSetup({ username, setupToken: made.setupToken, password });
    const secret = Buffer.from(Secret.fromBase32(enrolment.secret).bytes);
    // Enrol with the previous period's code (inside the verifier's one-step drift window), so the
    // sign-in that follows can use the current one at once: a TOTP code is single-use, and
    // otherwise a first run would wait up to 30 s for the next period.
    const earlier = new Date(app.clock().getTime() - 30_000);
    await app.identity.users.confirmSetup({ username, setupToken: made.setupToken, code: totpAt(secret, earlier) });
    return { username, password, totp: enrolment.secret, lastStep: Math.floor(earlier.getTime() / 30_000) };
  };
  // alice may approve releases too (other people's): what stops her here is segregation of duties, not her role.
  const people = { alice: await make('alice', ['developer', 'release-manager'], 'alice@demo.airlock'), bob: await make('bob', ['release-manager'], 'bob@demo.airlock') };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(file, JSON.stringify(people, null, 2), { mode: 0o600 });
  return people;
}

/** The sample service as alice's repository (her commits: she may not approve them). */
function ensureRepo(dir: string): string {
  const repo = join(dir, PROJECT);
  if (existsSync(join(repo, '.git'))) return repo;
  cpSync(SAMPLE, repo, { recursive: true });
  const env = { ...process.env, GIT_AUTHOR_NAME: 'Alice', GIT_AUTHOR_EMAIL: 'alice@demo.airlock', GIT_COMMITTER_NAME: 'Alice', GIT_COMMITTER_EMAIL: 'alice@demo.airlock' };
  for (const args of [['init', '-q', '-b', 'main'], ['add', '-A'], ['commit', '-q', '-m', 'the sample service']]) execFileSync('git', ['-C', repo, ...args], { env });
  return repo;
}

/** Log in with password and a fresh TOTP code (a code is single-use: wait for the next step if needed). */
async function login(server: string, p: DemoPerson, app: App): Promise<ApiClient> {
  let step = Math.floor(app.clock().getTime() / 30_000);
  while (step <= p.lastStep) {
    await new Promise((r) => setTimeout(r, 1000));
    step = Math.floor(app.clock().getTime() / 30_000);
  }
  const code = totpAt(Buffer.from(Secret.fromBase32(p.totp).bytes), new Date(step * 30_000));
  p.lastStep = step;
  const answer = await new ApiClient({ server }).post<{ token: string }>('/api/v1/auth/login', { username: p.username, password: p.password, code });
  return new ApiClient({ server, token: answer.token });
}

export async function demo(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<{ listen?: string; exit?: boolean }>();
  const config = cliConfig(cli, command, { listen: opts.listen });
  const logger = cliLogger(cli, config);
  const t0 = Date.now();
  const app = await openApp(config, { migrate: true, checkpointing: true, logger });
  const server = await startServer(app, { logger, host: config.listen.host, port: config.listen.port });
  await app.startRunner({ labels: ['embedded', 'linux'], concurrency: 2, reap: true });
  const out = (text: string): void => {
    say(cli.io, text);
  };
  let ok = true;
  try {
    await app.vault();
    const dir = join(config.home, 'demo');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const people = await ensurePeople(app, dir);
    const repo = ensureRepo(dir);
    if ((await app.store.db.selectFrom('projects').select('id').where('name', '=', PROJECT).executeTakeFirst()) === undefined) {
      await app.projects.add({ kind: 'system', id: 'demo' }, { name: PROJECT, repo });
    }
    // Production's credential (examples/sample-service/airlock.yaml), random and never printed.
    const stored = await app.store.db.selectFrom('secrets').innerJoin('projects', 'projects.id', 'secrets.project_id').select('secrets.id').where('projects.name', '=', PROJECT).where('secrets.name', '=', SERVICE_SECRET).where('secrets.environment', '=', 'production').where('secrets.deleted_at', 'is', null).executeTakeFirst();
    if (stored === undefined) {
      await app.secrets.set({ kind: 'system', id: 'demo' }, { name: SERVICE_SECRET, scope: { project: PROJECT, environment: 'production' }, value: Buffer.from(randomBytes(24).toString('base64url')), description: 'the sample service\'s production credential' });
    }
    out(`Airlock demo on ${server.url} (home ${config.home})`);
    out('people: alice (developer and release manager, the author), bob (release manager); both sign in with a password and TOTP');

    const alice = await login(server.url, people.alice, app);
    out('\n[1/7] alice builds, tests and packages the sample service');
    const started = await alice.post<{ id: string; number: number }>('/api/v1/runs', { project: PROJECT, reason: 'demo' });
    let run = await alice.get<{ state: string; stages: { name: string; steps: { step: string; state: string }[] }[] }>(`/api/v1/runs/${started.id}`);
    while (run.state === 'queued' || run.state === 'running') {
      await new Promise((r) => setTimeout(r, 200));
      run = await alice.get(`/api/v1/runs/${started.id}`);
    }
    for (const st of run.stages) out(`      ${st.name}: ${st.steps.map((s) => `${s.step} ${s.state}`).join(', ')}`);
    if (run.state !== 'succeeded') throw new Error(`the run ${run.state}`);
    out(`      run ${PROJECT}#${started.number} succeeded; its outputs are signed (provenance, tests, SBOM)`);

    out('\n[2/7] alice deploys it to staging (installed, started and health-checked)');
    const staging = await alice.post<{ id: string }>('/api/v1/deployments', { run: started.id, environment: 'staging', justification: 'try the new build in staging' });
    const stagingDone = await alice.post<{ state: string }>(`/api/v1/deployments/${staging.id}/deploy`, {});
    out(`      staging: ${stagingDone.state}`);
    if (stagingDone.state !== 'succeeded') throw new Error('staging did not deploy');

    out('\n[3/7] alice asks for production');
    const prod = await alice.post<{ id: string; approvals: { missing: string } }>('/api/v1/deployments', { run: started.id, environment: 'production', justification: 'ship the tested build to production' });
    out(`      request ${prod.id}: ${prod.approvals.missing || 'ready'}`);

    out('\n[4/7] alice, a release manager too, tries to approve her own change');
    try {
      await alice.post(`/api/v1/deployments/${prod.id}/approve`, { justification: 'I am sure it is fine' });
      out('      UNEXPECTED: alice approved her own change');
      ok = false;
    } catch (err) {
      out(`      refused: ${err instanceof Error ? err.message : String(err)}`);
    }

    out('\n[5/7] bob signs in with his password and a TOTP code, and approves with a justification');
    const bob = await login(server.url, people.bob, app);
    const approved = await bob.post<{ state: string }>(`/api/v1/deployments/${prod.id}/approve`, { justification: 'reviewed: same digests as staging, tests passed' });
    out(`      production request: ${approved.state}`);

    out('\n[6/7] production is deployed: the same digests staging ran');
    const prodDone = await alice.post<{ state: string }>(`/api/v1/deployments/${prod.id}/deploy`, {});
    out(`      production: ${prodDone.state}`);
    if (prodDone.state !== 'succeeded') ok = false;

    out('\n[7/7] the deployment record, and the audit log');
    const file = await alice.get<unknown>(`/api/v1/deployments/${prod.id}/record`);
    writeFileSync(join(dir, 'production-record.json'), `${JSON.stringify(file, null, 2)}\n`);
    const keys = new Map((await app.platformKeys.publicKeys()).map((k) => [k.kid, createPublicKey(k.publicKeyPem)]));
    const checked = verifyRecordFile(file, { attestation: keys, log: app.verifiers() });
    const record = checked.record;
    if (record !== undefined) {
      out(`      deployment ${record.deploymentId} of ${record.artifacts.map((a) => `${a.path} ${a.digest.slice(0, 19)}…`).join(', ')}`);
      out(`      to ${record.environment} by ${record.initiator}; approved by ${record.approvals.map((a) => `${a.approver} ("${a.justification}")`).join(', ')}; ${record.outcome}`);
      const released = record.policyDecisions.find((d) => d.action === 'secrets');
      if (released !== undefined) out(`      secrets: ${released.policies.join('; ')} (the value is in the service's environment only)`);
    }
    for (const c of checked.checks) out(`      ${c.ok ? 'ok  ' : 'FAIL'} ${c.check}: ${c.detail}`);
    out(`      record written to ${join(dir, 'production-record.json')} (check it with: airlock verify deployment FILE)`);
    await app.signCheckpoint({ kind: 'system', id: 'demo' });
    const report = await verifyLog({ db: app.store.db, verifiers: app.verifiers(), origin: config.auditOrigin, anchored: () => auditAnchors(app.store.db) });
    out(`      airlock audit verify: ${report.ok ? 'OK' : 'FAILED'}: ${report.entriesChecked} entries and ${report.checkpointsChecked} signed checkpoints checked${report.findings.length > 0 ? `, ${report.findings.length} finding(s)` : ''}`);
    ok &&= checked.ok && report.ok;
    out(`\ndone in ${((Date.now() - t0) / 1000).toFixed(1)} s. ${opts.exit === true ? 'Stopping (--exit).' : `The server keeps running at ${server.url}.`} alice's and bob's credentials are in ${join(dir, 'people.json')}.`);
    writeFileSync(join(dir, 'people.json'), JSON.stringify(people, null, 2), { mode: 0o600 });
  } catch (err) {
    ok = false;
    out(`\nthe demo stopped: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (opts.exit !== true && ok) {
    out('Ctrl-C to stop.');
    await waitForSignal(() => process.exit(1)).received;
  }
  // The deployed services stop with the demo, so a re-run starts from a clean machine.
  const deployer = new LocalDeployer({ objects: app.blobs, root: join(config.home, 'environments') });
  for (const env of ['staging', 'production']) await deployer.stop(env).catch(() => undefined);
  await server.close();
  await app.close();
  return ok ? EXIT_OK : EXIT_FAILED;
}
