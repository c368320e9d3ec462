/**
 * The sample pipeline's outputs verified as a new user would (real CLI and server processes on
 * SQLite): `airlock verify` on the downloaded file, `@sigstore/verify` on the Sigstore bundles,
 * and Debian's `in-toto-verify` on `airlock export in-toto`. Each tampering case is refused by
 * every verifier it applies to, with a reason and a non-zero exit; online verdicts are recorded.
 */
import { spawnSync } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifySigstoreBundle } from '../../src/attest/index.js';
import { linkKeyId } from '../../src/runner/index.js';
import { EXAMPLE, makeRepo } from '../runs/support.js';
import type { CliEnv, ServerChild } from './helpers.js';
import { cliEnv, json, requireBuilt, run, startServer } from './helpers.js';
import { expectOk, setupAccount } from './identity-helpers.js';

const PASSWORD = 'provenance operator passphrase';

interface Attestation {
  predicateType: string;
  envelope: { payloadType: string; payload: string; signatures: { keyid: string; sig: string }[] };
  bundle: unknown;
}

function inTotoVerify(): string {
  const found = spawnSync('sh', ['-c', 'command -v in-toto-verify'], { encoding: 'utf8' });
  const path = found.stdout.trim();
  // Under CI the reference verifier must be there (.ci/run installs it): never skipped.
  if (path === '') throw new Error("in-toto-verify is not installed (Debian package in-toto; .ci/run installs it)");
  return path;
}

describe('verifying the sample pipeline from the CLI (sqlite)', () => {
  let ctx: CliEnv;
  let server: ServerChild | undefined;
  let env: Record<string, string>;
  let scratch: string;
  const cli = (...args: string[]) => run(args, { env, timeoutMs: 60_000 });
  let digest: string;
  let attestations: Attestation[];

  beforeAll(async () => {
    requireBuilt();
    ctx = await cliEnv('sqlite');
    scratch = mkdtempSync(join(tmpdir(), 'airlock-cli-provenance-'));
    const init = await run(['init', '--admin', 'ops', '--json'], { env: ctx.env });
    expectOk(init, 'init');
    server = await startServer(ctx.env);
    env = { ...ctx.env, AIRLOCK_SERVER: server.url, AIRLOCK_CLI_CONFIG_DIR: join(scratch, 'cfg') };
    const setup = await setupAccount({ username: 'ops', setupToken: json<{ setupToken: string }>(init).setupToken, password: PASSWORD, env });
    expectOk(setup.result, 'account setup');
    expectOk(await run(['login', '--username', 'ops', '--password-stdin', '--code', await setup.totp.code()], { env, input: `${PASSWORD}\n` }), 'login');
    const repo = makeRepo({}, EXAMPLE);
    expectOk(await cli('project', 'add', 'hello', '--repo', repo.dir), 'project add');
    expectOk(await cli('run', 'hello', '--follow'), 'run');
    const runJson = json<{ stages: { steps: { step: string; result: { outputs: { path: string; digest: string }[] } | null }[] }[] }>(await cli('runs', 'show', 'hello#1', '--json'));
    digest = runJson.stages.flatMap((s) => s.steps).flatMap((s) => s.result?.outputs ?? []).find((o) => o.path === 'hello.tar')!.digest;
    // Attestations are written just after the run's last commit: wait until they are there.
    for (let i = 0; i < 100; i++) {
      const res = await fetch(`${server.url}/api/v1/attestations?subject=${digest}`, { headers: { authorization: `Bearer ${(JSON.parse(readFileSync(join(scratch, 'cfg', 'credentials.json'), 'utf8')) as { token: string }).token}` } });
      attestations = ((await res.json()) as { attestations: Attestation[] }).attestations;
      if (attestations.length >= 3) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    await ctx.drop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('airlock verify passes the downloaded artifact with its provenance, tests and SBOM, and writes a VSA', async () => {
    expectOk(await cli('artifact', 'get', digest, '-o', join(scratch, 'hello.tar')), 'artifact get');
    const policy = join(scratch, 'policy.yaml');
    // The builder id the control plane wrote (its public URL); pinned from here on.
    const prov = attestations.find((a) => a.predicateType === 'https://slsa.dev/provenance/v1')!;
    const builder = (JSON.parse(Buffer.from(prov.envelope.payload, 'base64').toString()) as { predicate: { runDetails: { builder: { id: string } } } }).predicate.runDetails.builder.id;
    expect(builder).toMatch(/\/builders\/airlock$/);
    writeFileSync(policy, `builderId: ${builder}\nrequireTests: true\nrequireSbom: true\n`);
    const r = await cli('verify', join(scratch, 'hello.tar'), '--policy', policy, '--vsa', join(scratch, 'hello.vsa.json'));
    expectOk(r, 'verify');
    expect(r.stdout).toMatch(/^PASSED: hello\.tar/m);
    expect(r.stdout).toMatch(/ok {3}tests: tests PASSED/);
    expect(r.stdout).toMatch(/ok {3}sbom: CycloneDX SBOM present/);
    const vsa = JSON.parse(readFileSync(join(scratch, 'hello.vsa.json'), 'utf8')) as { predicateType: string; predicate: { verificationResult: string; inputAttestations: unknown[] } };
    expect(vsa.predicateType).toBe('https://slsa.dev/verification_summary/v1');
    expect(vsa.predicate.verificationResult).toBe('PASSED');
    expect(vsa.predicate.inputAttestations).toHaveLength(3);
    // The policy may pin the reviewed commit and pipeline file: the provenance must name exactly those.
    const ext = (JSON.parse(Buffer.from(prov.envelope.payload, 'base64').toString()) as { predicate: { buildDefinition: { externalParameters: { commit: string; pipelineFile: { digest: { sha256: string } } } } } }).predicate.buildDefinition.externalParameters;
    writeFileSync(policy, `commits: [${ext.commit}]\npipelineDigests: ["sha256:${ext.pipelineFile.digest.sha256}"]\n`);
    const pinned = await cli('verify', join(scratch, 'hello.tar'), '--policy', policy);
    expectOk(pinned, 'verify with the commit and pipeline pinned');
    expect(pinned.stdout).toContain(`ok   commit: commit ${ext.commit}`);
    writeFileSync(policy, `commits: [${'a'.repeat(40)}]\npipelineDigests: ["${'b'.repeat(64)}"]\n`);
    const other = await cli('verify', join(scratch, 'hello.tar'), '--policy', policy);
    expect(other.code).toBe(1);
    expect(other.stdout).toMatch(/FAIL commit: commit [0-9a-f]{40} is not one the policy allows/);
    expect(other.stdout).toMatch(/FAIL pipeline: pipeline file sha256:[0-9a-f]{64} is not one the policy allows/);
    writeFileSync(policy, 'commits: [main]\n');
    const bad = await cli('verify', join(scratch, 'hello.tar'), '--policy', policy);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--policy .*commits\.0: a full commit SHA/);
  });

  it('refuses tampered evidence offline (payload, payload type, missing signature, unknown key, another artifact) with reasons and exit 1', async () => {
    const keys = json<{ keys: { kid: string; purpose: string; publicKeyPem: string }[] }>(await cli('keys', 'list', '--json')).keys;
    const pem = keys.find((k) => k.purpose === 'attestation')!.publicKeyPem;
    const keyFile = join(scratch, 'attestation.pub');
    writeFileSync(keyFile, pem);
    const evidence = (list: unknown[]): string => {
      const file = join(scratch, `evidence-${Math.random().toString(16).slice(2)}.json`);
      writeFileSync(file, JSON.stringify({ attestations: list }));
      return file;
    };
    const good = evidence(attestations);
    expectOk(await cli('verify', digest, '--attestations', good, '--key', keyFile), 'offline verify');
    const prov = attestations.find((a) => a.predicateType === 'https://slsa.dev/provenance/v1')!;
    const rest = attestations.filter((a) => a !== prov);
    const payload = Buffer.from(prov.envelope.payload, 'base64').toString().replace('"airlock.yaml"', '"other.yaml"');
    const cases: [string, unknown[], string, RegExp][] = [
      ['tampered payload', [{ ...prov, envelope: { ...prov.envelope, payload: Buffer.from(payload).toString('base64') } }, ...rest], digest, /FAIL signature/],
      ['wrong payload type', [{ ...prov, envelope: { ...prov.envelope, payloadType: 'application/json' } }, ...rest], digest, /payload type/],
      ['missing signatures', [{ ...prov, envelope: { ...prov.envelope, signatures: [] } }, ...rest], digest, /FAIL signature/],
      ['another artifact', attestations, `sha256:${'0'.repeat(64)}`, /FAIL subject/],
    ];
    for (const [name, list, d, reason] of cases) {
      const r = await cli('verify', d, '--attestations', evidence(list), '--key', keyFile);
      expect(r.code, name).toBe(1);
      expect(r.stdout, name).toMatch(/^FAILED/m);
      expect(r.stdout, name).toMatch(reason);
    }
    // A key that did not sign: every attestation is refused.
    const other = join(scratch, 'other.pub');
    writeFileSync(other, createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.alloc(32, 7)]), format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' }));
    const wrongKey = await cli('verify', digest, '--attestations', good, '--key', other);
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stdout).toMatch(/FAIL signature/);
  });

  it('records an online verdict, failed ones with their reasons', async () => {
    const policy = join(scratch, 'strict.yaml');
    writeFileSync(policy, 'repositories: [https://git.example.com/not-this-one.git]\n');
    const r = await cli('verify', digest, '--policy', policy);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/FAIL repository: source repository .* is not allowed/);
    const search = await cli('audit', 'search', '--action', 'artifacts.verify', '--json');
    expectOk(search, 'audit search');
    expect(search.stdout).toContain('not allowed');
    expect(search.stdout).toMatch(/"outcome":\s*"failed"/);
  });

  it('the Sigstore bundles verify with @sigstore/verify and our published key; a tampered one does not', () => {
    const published = (JSON.parse(spawnSync(process.execPath, ['bin/airlock.js', 'keys', 'list', '--json'], { env, encoding: 'utf8' }).stdout) as { keys: { kid: string; publicKeyPem: string }[] }).keys;
    const keys = new Map<string, ReturnType<typeof createPublicKey>>();
    for (const k of published) {
      const key = createPublicKey(k.publicKeyPem);
      // The published id is the key's own: recomputed, not trusted.
      expect(linkKeyId(key)).toBe(k.kid);
      keys.set(k.kid, key);
    }
    for (const a of attestations) expect(verifySigstoreBundle(a.bundle, keys)).toMatchObject({ ok: true });
    const b = attestations[0]!.bundle as { dsseEnvelope: { payload: string } };
    const tampered = { ...b, dsseEnvelope: { ...b.dsseEnvelope, payload: Buffer.from('{"_type":"forged"}').toString('base64') } };
    expect(verifySigstoreBundle(tampered, keys)).toMatchObject({ ok: false });
  });

  it('online, a provenance altered in the server\'s database is refused with its reason, exit 1, and the verdict recorded', async () => {
    const db = new SqliteDatabase(join(ctx.env.AIRLOCK_HOME!, 'airlock.db'));
    const row = db.prepare("SELECT id, envelope FROM attestations WHERE subject_digest = ? AND predicate_type = 'https://slsa.dev/provenance/v1'").get(digest) as { id: string; envelope: string };
    const envelope = JSON.parse(row.envelope) as { payload: string };
    // Someone with database access points the provenance at another repository.
    const forged = Buffer.from(Buffer.from(envelope.payload, 'base64').toString('utf8').replace(/"repository":"[^"]*"/, '"repository":"https://git.example.com/evil.git"')).toString('base64');
    expect(forged).not.toBe(envelope.payload);
    try {
      db.prepare('UPDATE attestations SET envelope = ? WHERE id = ?').run(JSON.stringify({ ...envelope, payload: forged }), row.id);
      const r = await cli('verify', digest);
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/^FAILED: /m);
      expect(r.stdout).toMatch(/FAIL signature: /);
      const search = await cli('audit', 'search', '--action', 'artifacts.verify', '--json');
      const events = json<{ entries: { event: { resource: string; outcome: string; details: { reasons?: string[] } } }[] }>(search).entries;
      const last = events.filter((e) => e.event.resource === `artifacts/${digest}` && e.event.outcome === 'failed').at(-1);
      expect(last?.event.details.reasons?.join(' ')).toMatch(/signature/);
    } finally {
      db.prepare('UPDATE attestations SET envelope = ? WHERE id = ?').run(row.envelope, row.id);
      db.close();
    }
    expectOk(await cli('verify', digest), 'verify after the row is restored');
  });

  it('airlock attestations writes bundles and keys that a plain @sigstore/verify script checks as a new user would; tampering is refused', async () => {
    const dir = join(scratch, 'evidence');
    const r = await cli('attestations', digest, '--out', dir, '--json');
    expectOk(r, 'attestations');
    const files = json<{ files: string[] }>(r).files;
    expect(files).toEqual(expect.arrayContaining(['provenance.sigstore.json', 'provenance.dsse.json', 'test-result.sigstore.json', 'sbom.sigstore.json', 'attestations.json']));
    const pems = files.filter((f) => f.startsWith('keys/'));
    expect(pems.length).toBeGreaterThan(0);
    const artifact = join(scratch, 'hello.tar');
    if (!existsSync(artifact)) expectOk(await cli('artifact', 'get', digest, '-o', artifact), 'artifact get');
    // The script imports nothing of Airlock's: the Sigstore libraries and node:crypto only.
    const script = 'examples/sigstore-verify/verify.mjs';
    expect(readFileSync(script, 'utf8')).not.toMatch(/from '\.\.?\//);
    const check = (bundle: string, key: string, extra: string[] = []) => spawnSync(process.execPath, [script, '--bundle', bundle, '--key', key, ...extra], { encoding: 'utf8' });
    const signer = pems.map((p) => join(dir, p)).find((p) => check(join(dir, 'provenance.sigstore.json'), p).status === 0);
    expect(signer, 'one published key verifies the provenance bundle').toBeDefined();
    for (const kind of ['provenance', 'test-result', 'sbom']) {
      const ok = check(join(dir, `${kind}.sigstore.json`), signer!, ['--artifact', artifact]);
      expect(ok.status, `${kind}: ${ok.stdout}${ok.stderr}`).toBe(0);
      expect(ok.stdout).toMatch(/^OK: https:\/\/\S+ signed by [0-9a-f]{64} for /);
    }
    // The same evidence file feeds `airlock verify` offline.
    expectOk(await cli('verify', artifact, '--attestations', join(dir, 'attestations.json'), '--key', signer!), 'verify --attestations');
    const bundle = JSON.parse(readFileSync(join(dir, 'provenance.sigstore.json'), 'utf8')) as { dsseEnvelope: { payload: string; payloadType: string } };
    const write = (name: string, b: unknown) => {
      writeFileSync(join(scratch, name), JSON.stringify(b));
      return join(scratch, name);
    };
    const payload = JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString('utf8')) as { subject: { digest: { sha256: string } }[] };
    payload.subject[0]!.digest.sha256 = '0'.repeat(64);
    const cases: [string, string, RegExp][] = [
      ['a payload changed after signing', write('tampered.json', { ...bundle, dsseEnvelope: { ...bundle.dsseEnvelope, payload: Buffer.from(JSON.stringify(payload)).toString('base64') } }), /FAIL: signature/],
      ['another payload type', write('type.json', { ...bundle, dsseEnvelope: { ...bundle.dsseEnvelope, payloadType: 'text/plain' } }), /FAIL: signature/],
    ];
    for (const [what, file, reason] of cases) {
      const bad = check(file, signer!);
      expect(bad.status, what).toBe(1);
      expect(bad.stderr, what).toMatch(reason);
    }
    const other = join(scratch, 'not-the-signer.pem');
    writeFileSync(other, createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.alloc(32, 9)]), format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' }));
    const wrongKey = check(join(dir, 'provenance.sigstore.json'), other);
    expect(wrongKey.status).toBe(1);
    expect(wrongKey.stderr).toMatch(/FAIL: signature: .*not the given key/);
    const otherFile = write('other-artifact.bin', { not: 'the artifact' });
    const wrongSubject = check(join(dir, 'provenance.sigstore.json'), signer!, ['--artifact', otherFile]);
    expect(wrongSubject.status).toBe(1);
    expect(wrongSubject.stderr).toMatch(/does not name/);
  });

  it('in-toto-verify accepts the exported run, and refuses it once a link names another artifact', async () => {
    const verifier = inTotoVerify();
    const dir = join(scratch, 'in-toto');
    expectOk(await cli('export', 'in-toto', 'hello#1', dir), 'export in-toto');
    const files = readdirSync(dir).sort();
    expect(files).toEqual(expect.arrayContaining(['root.layout', 'layout.pub', 'airlock-keys.json']));
    // The published keys travel with the export: the attestation key among them.
    const shipped = JSON.parse(readFileSync(join(dir, 'airlock-keys.json'), 'utf8')) as { keys: { purpose: string; scope: string }[] };
    // The layout is signed by the project's own key, beside the platform's attestation key.
    expect(shipped.keys.map((k) => `${k.purpose}/${k.scope}`)).toEqual(expect.arrayContaining(['attestation/', 'layout/project:hello']));
    expect(files.filter((f) => f.endsWith('.link'))).toHaveLength(3);
    const verify = () => spawnSync(verifier, ['--layout', join(dir, 'root.layout'), '--layout-keys', join(dir, 'layout.pub'), '--key-types', 'ed25519', '--link-dir', dir], { encoding: 'utf8' });
    const ok = verify();
    expect(ok.status, `${ok.stdout}\n${ok.stderr}`).toBe(0);
    // Another artifact in the test step's materials (the swapped-and-re-signed case is in
    // test/intoto): the link no longer verifies, and the run is refused.
    const testLink = files.find((f) => f.startsWith('test.check.'))!;
    const text = readFileSync(join(dir, testLink), 'utf8');
    const swapped = text.replace(/"sha256":\s*"[0-9a-f]{64}"/, `"sha256": "${'0'.repeat(64)}"`);
    expect(swapped).not.toBe(text);
    writeFileSync(join(dir, testLink), swapped);
    const bad = verify();
    expect(bad.status).not.toBe(0);
  });
});
