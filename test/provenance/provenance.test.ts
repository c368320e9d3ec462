/**
 * Provenance end to end on both engines: a real run on the embedded runner is attested by the
 * control plane (SLSA provenance, test result from JUnit, CycloneDX SBOM from the lockfile),
 * the evidence verifies with the published keys, and each tampering case is refused with its
 * reason. The attestation key is out of every step's reach.
 */
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CYCLONEDX_BOM, SLSA_PROVENANCE_V1, TEST_RESULT_V01, parseStatement, verifySigstoreBundle } from '../../src/attest/index.js';
import type { Envelope } from '../../src/attest/index.js';
import { linkKeyId } from '../../src/runner/index.js';
import type { RunDetail } from '../../src/runs/index.js';
import { buildServer } from '../../src/server/index.js';
import { verifyArtifact } from '../../src/verify/index.js';
import type { TrustedKey } from '../../src/verify/index.js';
import { ENGINES } from '../support/engines.js';
import { commit, makeRepo } from '../runs/support.js';
import { TestClock, openTestApp, silent } from '../server/support.js';
import type { TestApp } from '../server/support.js';

const ALICE = { kind: 'user' as const, id: 'alice' };
const junit = (failing: boolean) =>
  `<?xml version="1.0"?><testsuite name="unit" tests="2"><testcase classname="app" name="adds"/><testcase classname="app" name="subtracts">${failing ? '<failure message="off by one"/>' : ''}</testcase></testsuite>`;
const pipeline = (failing: boolean, home: string) => `version: 1
pipeline: shop
owners: [alice]
stages:
  build:
    steps:
      - name: compile
        run: mkdir -p dist && printf 'the app, built\\n' > dist/app.tgz && env && ls -la ${home} 2>&1; cat ${home}/airlock.db 2>&1 | head -c 200000 | base64 -w0; true
        outputs: [dist/app.tgz]
  test:
    needs: [build]
    steps:
      - name: unit
        run: printf '%s' '${junit(failing)}' > junit.xml
        inputs: [dist/app.tgz]
        outputs: [junit.xml]
        evidence: test
`;
const LOCKFILE = JSON.stringify({
  name: 'shop',
  version: '1.0.0',
  lockfileVersion: 3,
  requires: true,
  packages: {
    '': { name: 'shop', version: '1.0.0', dependencies: { 'left-pad': '^1.3.0' } },
    'node_modules/left-pad': { version: '1.3.0', resolved: 'https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz', integrity: 'sha512-XI5MPzVNApjAyhQzphX8BkmKsKUxD4LdyK24iZeQGinBN9yTQT3bFlCBy/aVx2HrNcqQGsdot8ghrjyrvMCoEA==' },
  },
});

describe.each(ENGINES)('provenance on %s', (engine) => {
  let t: TestApp;
  const clock = new TestClock();
  let repo: { dir: string };
  let home: string;

  beforeAll(async () => {
    t = await openTestApp(engine, { clock });
    home = t.app.config.home;
    await t.app.startRunner({ labels: ['embedded'], concurrency: 2, reap: false });
    repo = makeRepo({ 'airlock.yaml': pipeline(false, home), 'package-lock.json': LOCKFILE });
    await t.app.projects.add(ALICE, { name: 'shop', repo: repo.dir });
  }, 60_000);

  afterAll(async () => {
    await t.cleanup();
  });

  /** Run to the end. A succeeded run is attested in the transaction that ends it: no waiting. */
  async function runToEnd(ref = 'main'): Promise<RunDetail> {
    const started = await t.app.runs.start(ALICE, { project: 'shop', ref });
    for (let i = 0; i < 300; i++) {
      const r = await t.app.runs.show(started.id);
      if (r.state === 'succeeded') {
        // Whoever sees the run succeeded sees its evidence too.
        expect((await t.app.audit.search({ action: 'provenance.attest', resource: `runs/${r.id}`, limit: 1 })).map((e) => e.event.outcome)).toEqual(['allowed']);
        return r;
      }
      if (['failed', 'cancelled'].includes(r.state)) return r;
      await new Promise((res) => setTimeout(res, 20));
    }
    throw new Error('the run did not finish');
  }

  const outputOf = (run: RunDetail, path: string): string => {
    for (const st of run.stages) for (const s of st.steps) for (const o of (s.result as { outputs?: { path: string; digest: string }[] } | null)?.outputs ?? []) if (o.path === path) return o.digest;
    throw new Error(`no output ${path}`);
  };

  async function trusted(): Promise<TrustedKey[]> {
    return (await t.app.platformKeys.publicKeys()).filter((k) => k.purpose === 'attestation').map((k) => ({ kid: k.kid, key: createPublicKey(k.publicKeyPem), retiredAt: k.retiredAt }));
  }

  it('attests every output of a succeeded run, and the evidence verifies with the published keys', async () => {
    const run = await runToEnd();
    expect(run.state, JSON.stringify(run.stages)).toBe('succeeded');
    const digest = outputOf(run, 'dist/app.tgz');
    const atts = await t.app.provenance.list({ subject: digest });
    const failures = await t.app.audit.search({ action: 'provenance.attest', outcome: 'failed', limit: 10 });
    expect(failures.map((f) => f.event.reason)).toEqual([]);
    expect(atts.map((a) => a.predicateType).sort()).toEqual([CYCLONEDX_BOM, SLSA_PROVENANCE_V1, TEST_RESULT_V01].sort());
    const prov = parseStatement(Buffer.from(atts.find((a) => a.predicateType === SLSA_PROVENANCE_V1)!.envelope.payload, 'base64'));
    const p = prov.predicate as { buildDefinition: { externalParameters: Record<string, unknown>; resolvedDependencies: { uri?: string }[] }; runDetails: { builder: { id: string }; metadata: { invocationId: string }; byproducts: { name?: string }[] } };
    expect(p.buildDefinition.externalParameters).toMatchObject({ repository: repo.dir, commit: run.commit, pipelineFile: { path: 'airlock.yaml', digest: { sha256: run.pipelineDigest.slice(7) } } });
    expect(p.buildDefinition.resolvedDependencies.map((d) => d.uri)).toEqual(expect.arrayContaining([`git+file://${repo.dir}@main`, 'pkg:npm/left-pad@1.3.0']));
    expect(p.runDetails.builder.id).toBe(`${t.app.config.publicUrl}/builders/airlock`);
    expect(p.runDetails.metadata.invocationId).toBe(run.id);
    expect(p.runDetails.byproducts.map((b) => b.name).sort()).toEqual(['build/compile.link.json', 'test/unit.link.json']);

    const verdict = verifyArtifact(digest, atts.map((a) => a.envelope), await trusted(), { builderId: `${t.app.config.publicUrl}/builders/airlock`, repositories: [repo.dir], requireSbom: true });
    expect(verdict.reasons).toEqual([]);
    expect(verdict.result).toBe('PASSED');
    // The same signatures as Sigstore bundles verify too (key hint, no transparency log).
    const keys = new Map((await trusted()).map((k) => [k.kid, k.key]));
    for (const a of atts) expect(verifySigstoreBundle(a.bundle, keys)).toMatchObject({ ok: true });
    // Recorded once, by the control plane; a second attempt adds nothing.
    expect(await t.app.provenance.attestRun(run.id)).toEqual({ written: 0 });
    const events = await t.app.audit.search({ action: 'provenance.attest', limit: 10 });
    expect(events.filter((e) => e.event.resource === `runs/${run.id}`)).toHaveLength(1);
  });

  it('refuses tampering: payload, payload type, wrong or unknown key, another digest, a key retired before signing, a repository not allowed', async () => {
    const run = await runToEnd();
    const digest = outputOf(run, 'dist/app.tgz');
    const envelopes = (await t.app.provenance.list({ subject: digest })).map((a) => a.envelope);
    const keys = await trusted();
    const failing = (envs: readonly unknown[], k: readonly TrustedKey[] = keys, d = digest, policy = {}) => {
      const v = verifyArtifact(d, envs, k, policy);
      expect(v.result).toBe('FAILED');
      return v.reasons.join('\n');
    };
    const prov = envelopes.find((e) => parseStatement(Buffer.from(e.payload, 'base64')).predicateType === SLSA_PROVENANCE_V1)!;
    const others = envelopes.filter((e) => e !== prov);
    const altered: Envelope = { ...prov, payload: Buffer.from(Buffer.from(prov.payload, 'base64').toString().replace(run.commit, 'f'.repeat(40))).toString('base64') };
    expect(failing([altered, ...others])).toMatch(/signature/);
    expect(failing([{ ...prov, payloadType: 'application/json' }, ...others])).toMatch(/payload type/);
    const stranger = generateKeyPairSync('ed25519').publicKey;
    expect(failing(envelopes, [{ kid: linkKeyId(stranger), key: stranger }])).toMatch(/signature: attestation 1: .*(unknown|trusted)/);
    // The right key under the wrong id is still not trusted for the signature's id.
    expect(failing(envelopes, [{ kid: 'f'.repeat(64), key: keys[0]!.key }])).toMatch(/signature/);
    expect(failing(envelopes, keys, `sha256:${'0'.repeat(64)}`)).toMatch(/subject: attestation 1: its subject digest does not match/);
    expect(failing(envelopes, keys.map((k) => ({ ...k, retiredAt: new Date(Date.parse(run.createdAt) - 3_600_000).toISOString() })))).toMatch(/retired before the statement was made .*expired/);
    expect(failing(envelopes, keys, digest, { repositories: ['https://example.com/other.git'] })).toMatch(/repository: source repository .* is not allowed/);
    expect(failing([], keys)).toMatch(/attestations: no attestation names/);
  });

  it('a run whose tests fail is attested FAILED, and verification names the failed test', async () => {
    commit(repo.dir, { 'airlock.yaml': pipeline(true, home) }, 'a failing test');
    const run = await runToEnd();
    expect(run.state).toBe('succeeded');
    const digest = outputOf(run, 'dist/app.tgz');
    const atts = await t.app.provenance.list({ subject: digest, runId: run.id });
    const v = verifyArtifact(digest, atts.map((a) => a.envelope), await trusted());
    expect(v.result).toBe('FAILED');
    expect(v.reasons.join('\n')).toMatch(/tests: tests FAILED: app\.subtracts/);
    commit(repo.dir, { 'airlock.yaml': pipeline(false, home) }, 'fixed');
  });

  it('keeps the attestation key out of every step\'s reach: not in its environment, its files or any answer its token gets', async () => {
    const run = await runToEnd();
    const signer = await t.app.platformKeys.signer('attestation');
    const row = await t.app.store.db.selectFrom('platform_keys').selectAll().where('kid', '=', signer.kid).executeTakeFirstOrThrow();
    const der = await (await t.app.vault()).openBlob(`platform-key:attestation:${signer.kid}`, row.private_sealed);
    const seed = der.subarray(der.length - 32);
    const forms = [der, seed].flatMap((b) => [b.toString('base64'), b.toString('hex'), b.toString('base64url')]);
    const logs = await t.app.runs.logs(run.id, undefined);
    const text = logs.chunks.map((c) => c.data.toString('latin1')).join('');
    expect(text).toContain('AIRLOCK_RUN_ID='); // the step did print its environment
    for (const f of forms) expect(text.includes(f), 'key material in step output').toBe(false);
    // The step's own token: the public keys only; attestations and rotation refused.
    const job = (await t.app.runs.show(run.id)).stages[0]!.steps[0]!;
    const token = (await t.app.providedEnv({ ...(await t.app.runs.job(job.id)) }, 'probe')).AIRLOCK_TOKEN!;
    const server = await buildServer(t.app, { logger: silent });
    try {
      const answers = [
        await server.inject({ method: 'GET', url: '/api/v1/keys', headers: { authorization: `Bearer ${token}` } }),
        await server.inject({ method: 'GET', url: `/api/v1/attestations?run=${run.id}`, headers: { authorization: `Bearer ${token}` } }),
        await server.inject({ method: 'POST', url: '/api/v1/keys/rotate', headers: { authorization: `Bearer ${token}` }, payload: { purpose: 'attestation' } }),
      ];
      expect(answers.map((a) => a.statusCode)).toEqual([200, 403, 403]);
      for (const a of answers) for (const f of forms) expect(a.body.includes(f)).toBe(false);
    } finally {
      await server.close();
    }
  });
});
