/**
 * The delivery commands in process against a listening server, on both engines: deploy where
 * nothing is needed, ask where an approval is, approve (refused without step-up, and for the
 * requester), deploy, list, show, export, `verify deployment` with fetched and with pinned
 * keys (offline), a tampered record (exit 1), a freeze, and usage errors (exit 2).
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatVerifierKey } from '../../src/audit/index.js';
import type { DeploymentSummary, DeploymentView, RecordFile } from '../../src/delivery/index.js';
import { runCliInProcess } from '../support/cli-in-process.js';
import type { CliResult } from '../support/cli-in-process.js';
import { ENGINES } from '../support/engines.js';
import { nextCode } from '../server/support.js';
import { openDeliveryServer } from './http-fixture.js';
import type { DeliveryServer } from './http-fixture.js';

const WHY = 'checked the diff, tests and provenance';


describe.each(ENGINES)('delivery commands on %s', (engine) => {
  let d: DeliveryServer;
  let url: string;
  let dir: string;

  beforeAll(async () => {
    d = await openDeliveryServer(engine);
    await d.server.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(d.server.server.address() as AddressInfo).port}`;
    dir = mkdtempSync(join(tmpdir(), 'airlock-delivery-cli-'));
  }, 60_000);

  afterAll(async () => {
    await d.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Run `airlock ...args` in process as `who` (AIRLOCK_TOKEN), or with no credential at all. */
  function airlock(who: string | undefined, ...args: string[]): Promise<CliResult> {
    return runCliInProcess(args, { env: { HOME: dir, AIRLOCK_HOME: join(dir, 'home'), ...(who === undefined ? {} : { AIRLOCK_SERVER: url, AIRLOCK_TOKEN: d.tokens[who] ?? '' }) }, cwd: dir });
  }
  async function stepUp(who: string): Promise<void> {
    const res = await d.server.inject({ method: 'POST', url: '/api/v1/auth/step-up', headers: { authorization: `Bearer ${d.tokens[who] ?? ''}` }, payload: { code: nextCode(d.clock, d.users[who]!) } });
    expect(res.statusCode, res.body).toBe(201);
    d.tokens[who] = res.json<{ token: string }>().token;
  }
  const idIn = (text: string): string => /deployment ([0-9a-f-]{36})/.exec(text)?.[1] ?? '';

  it('deploys at once where nothing is needed; asks, approves and deploys where an approval is; exports and verifies the record', async () => {
    const staging = await airlock('rita', 'deploy', d.runId, 'staging', '--justification', 'ship the checkout fix', '--ticket', 'OPS-7');
    expect(staging, staging.stderr).toMatchObject({ code: 0 });
    expect(staging.stdout).toMatch(/to staging: succeeded/);
    expect(d.deployed.at(-1)?.environment).toBe('staging');

    d.clock.advance(1000);
    const asked = await airlock('rita', 'deploy', d.runId, 'production', '--justification', 'ship the checkout fix');
    expect(asked.code, asked.stderr).toBe(0);
    const id = idIn(asked.stdout);
    expect(asked.stdout).toMatch(/waiting for: /);
    expect(asked.stdout).toContain(`airlock approve ${id} --justification`);
    expect(d.deployed.at(-1)?.environment).toBe('staging');

    // Without a fresh MFA proof (and no terminal to ask at) the server's message says what to run.
    d.clock.advance(6 * 60_000);
    const stale = await airlock('bob', 'approve', id, '--justification', WHY);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(/airlock step-up.*STEP_UP_REQUIRED/);
    await stepUp('rita');
    const self = await airlock('rita', 'approve', id, '--justification', WHY);
    expect(self.code).toBe(1);
    expect(self.stderr).toMatch(/does not count: .*\(FORBIDDEN\)/);
    await stepUp('bob');
    const approved = await airlock('bob', 'approve', id, '--justification', WHY);
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toContain(`ready: airlock deployments deploy ${id}`);

    const shipped = await airlock('rita', 'deployments', 'deploy', id);
    expect(shipped.code, shipped.stderr).toBe(0);
    expect(shipped.stdout).toMatch(/to production: succeeded/);

    const listed = await airlock('dev', 'deployments', 'list', '--environment', 'production', '--json');
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as { deployments: DeploymentSummary[] }).deployments.map((x) => x.id)).toEqual([id]);
    const table = await airlock('dev', 'deployments', 'list', '--project', 'shop');
    expect(table.stdout.split('\n')[0]).toMatch(/^ID\s+PROJECT\s+ENVIRONMENT\s+STATE/);
    const shown = await airlock('dev', 'deployments', 'show', id);
    expect(shown.stdout).toMatch(/counted {2}bob at .*: checked the diff/);
    expect(shown.stdout).toMatch(/state: +succeeded/);
    const json = await airlock('dev', 'deployments', 'show', id, '--json');
    expect((JSON.parse(json.stdout) as DeploymentView).approvals.counted.map((c) => c.approver)).toEqual(['bob']);

    const exported = await airlock('dev', 'deployments', 'export', id, 'record.json');
    expect(exported.code, exported.stderr).toBe(0);
    const again = await airlock('dev', 'deployments', 'export', id, 'record.json');
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('--force');

    // Keys fetched from the server (ids recomputed here).
    const fetched = await airlock('dev', 'verify', 'deployment', 'record.json');
    expect(fetched.code, fetched.stdout + fetched.stderr).toBe(0);
    expect(fetched.stdout).toMatch(/^PASSED: record\.json \(deployment .* to production: succeeded\)/);
    for (const check of ['signature', 'audit event', 'inclusion', 'approvals']) expect(fetched.stdout).toMatch(new RegExp(`ok +${check}: `));

    // Offline: pinned keys, no server and no credential at all.
    const keys = (await d.server.inject({ method: 'GET', url: '/api/v1/keys' })).json<{ keys: { purpose: string; publicKeyPem: string }[] }>().keys;
    keys.filter((k) => k.purpose === 'attestation').forEach((k, i) => writeFileSync(join(dir, `att-${i}.pem`), k.publicKeyPem));
    const pinned = await airlock(undefined, 'verify', 'deployment', 'record.json', '--key', 'att-0.pem', '--log-key', d.t.app.key.verifierKey, '--json');
    expect(pinned.code, pinned.stderr).toBe(0);
    expect(JSON.parse(pinned.stdout)).toMatchObject({ ok: true, record: { deploymentId: id, approvals: [{ approver: 'bob' }] } });

    // A record whose approver was edited fails, naming the broken links; exit 1.
    const file = JSON.parse(readFileSync(join(dir, 'record.json'), 'utf8')) as RecordFile;
    const statement = JSON.parse(Buffer.from(file.envelope.payload, 'base64').toString('utf8')) as { predicate: { approvals: { approver: string }[] } };
    statement.predicate.approvals[0]!.approver = 'mallory';
    writeFileSync(join(dir, 'forged.json'), JSON.stringify({ ...file, envelope: { ...file.envelope, payload: Buffer.from(JSON.stringify(statement)).toString('base64') } }));
    const forged = await airlock(undefined, 'verify', 'deployment', 'forged.json', '--key', 'att-0.pem', '--log-key', d.t.app.key.verifierKey);
    expect(forged.code).toBe(1);
    expect(forged.stdout).toMatch(/^FAILED: forged\.json/);
    expect(forged.stdout).toMatch(/FAIL signature: /);
    expect(forged.stdout).toMatch(/FAIL audit event: /);
    // Another log's key does not vouch for this log's checkpoint.
    const { publicKey } = generateKeyPairSync('ed25519');
    const otherKey = formatVerifierKey(d.t.app.key.signer.name, Buffer.from(publicKey.export({ format: 'jwk' }).x ?? '', 'base64url'));
    const otherLog = await airlock(undefined, 'verify', 'deployment', 'record.json', '--key', 'att-0.pem', '--log-key', otherKey);
    expect(otherLog.code, otherLog.stderr).toBe(1);
    expect(otherLog.stdout).toMatch(/FAIL inclusion: /);
    expect(otherLog.stdout).toMatch(/ok +signature: /);
  });

  it('--no-wait only files the request; deny refuses it; a freeze keeps deploy from deploying and says why', async () => {
    const count = d.deployed.length;
    const filed = await airlock('rita', 'deploy', d.runId, 'staging', '--justification', 'file it for later', '--no-wait', '--json');
    expect(filed.code, filed.stderr).toBe(0);
    const view = JSON.parse(filed.stdout) as DeploymentView;
    expect(view).toMatchObject({ state: 'requested', gate: { allowed: true } });
    expect(d.deployed).toHaveLength(count);

    await stepUp('bob');
    const denied = await airlock('bob', 'deny', view.id, '--justification', 'not during the sale');
    expect(denied.code, denied.stderr).toBe(0);
    expect(denied.stdout).toMatch(/state: refused/);

    const until = new Date(d.clock.now().getTime() + 3_600_000).toISOString();
    const frozen = await airlock('rita', 'freeze', 'staging', '--until', until, '--reason', 'end of quarter freeze');
    expect(frozen.code, frozen.stderr).toBe(0);
    expect(frozen.stdout).toContain(`until ${until}`);
    const blocked = await airlock('rita', 'deploy', d.runId, 'staging', '--justification', 'ship during the freeze?');
    expect(blocked.code, blocked.stderr).toBe(0);
    expect(blocked.stdout).toMatch(/blocked: .*fro?zen/i);
    expect(d.deployed).toHaveLength(count);
    const forced = await airlock('rita', 'deployments', 'deploy', idIn(blocked.stdout));
    expect(forced.code).toBe(1);
    expect(forced.stderr).toMatch(/refused: .*\(FORBIDDEN\)/);
    expect(d.deployed).toHaveLength(count);
  });

  it('break-glass needs a second person; the incident it opens is listed and closed with a postmortem file; rollback says when there is nothing to return to', async () => {
    for (const who of ['rita', 'bob']) await stepUp(who);
    const asked = await airlock('dev', 'deploy', d.runId, 'production', '--justification', 'hotfix for the outage');
    const id = idIn(asked.stdout);
    const first = await airlock('bob', 'break-glass', id, '--justification', 'payments down, INC-77');
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(`airlock break-glass ${id} --justification`);
    const alone = await airlock('bob', 'break-glass', id, '--justification', 'payments down, INC-77');
    expect(alone.code).toBe(1);
    expect(alone.stderr).toMatch(/second person .*\(FORBIDDEN\)/);
    const second = await airlock('rita', 'break-glass', id, '--justification', 'confirmed with the incident lead', '--json');
    expect(second.code, second.stderr).toBe(0);
    const granted = JSON.parse(second.stdout) as { granted: boolean; participants: string[]; incident: string; deployment: DeploymentView };
    expect(granted).toMatchObject({ granted: true, participants: ['bob', 'rita'], deployment: { state: 'succeeded' } });

    const listed = await airlock('bob', 'incidents', 'list', '--open');
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain(granted.incident);
    writeFileSync(join(dir, 'postmortem.md'), 'A config push broke payments; two release managers broke the glass. OPS-9 adds a canary.\n');
    const closed = await airlock('bob', 'incidents', 'close', granted.incident, '--postmortem', 'postmortem.md');
    expect(closed.code, closed.stderr).toBe(0);
    expect(closed.stdout).toMatch(/closed by bob/);
    const shown = await airlock('bob', 'incidents', 'show', granted.incident, '--json');
    expect(JSON.parse(shown.stdout)).toMatchObject({ state: 'closed', postmortem: expect.stringMatching(/^A config push/) as string });
    const missing = await airlock('bob', 'incidents', 'close', granted.incident, '--postmortem', 'nope.md');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read \/.*\/nope\.md: no such file/);

    const back = await airlock('rita', 'rollback', 'staging', '--project', 'shop', '--justification', 'staging misbehaves since noon');
    expect(back.code).toBe(1);
    expect(back.stderr).toMatch(/no earlier one to roll back to \(CONFLICT\)/);
    const noProject = await airlock('rita', 'rollback', 'staging', '--justification', 'staging misbehaves since noon');
    expect(noProject.code).toBe(2);
    expect(noProject.stderr).toContain('--project');
  });

  it('usage errors exit 2 naming the flag or argument', async () => {
    const cases: [string[], RegExp][] = [
      [['freeze', 'staging', '--until', 'tomorrow', '--reason', 'why not'], /--until/],
      [['freeze', 'staging', '--reason', 'why not'], /--until/],
      [['deploy', d.runId, 'staging'], /--justification/],
      [['approve', 'x'], /--justification/],
      [['verify', 'something', 'else'], /deployment FILE/],
      [['verify', 'deployment'], /record file/],
      [['verify', 'deployment', 'missing.json', '--log-key', 'x'], /missing\.json: no such file/],
      [['verify', 'deployment', 'record.json', '--log-key', 'not-a-key', '--key', 'att-0.pem'], /--log-key/],
      [['verify', 'deployment', 'record.json', '--vsa', 'v.json'], /--vsa/],
      [['verify', 'app.tgz', '--log-key', 'x'], /--log-key/],
    ];
    for (const [args, message] of cases) {
      const r = await airlock('dev', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
  });
});
