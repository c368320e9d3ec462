/**
 * `airlock verify DIGEST_OR_FILE` (and its `deployment FILE` form, handled in delivery.ts) and `airlock keys list|rotate`. Verification happens here,
 * with keys the user chose (`--key`) or fetched from the server's published list: the server
 * supplies evidence, never the verdict. Online, the verdict is then recorded by the server.
 */
import { createHash, createPublicKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { CYCLONEDX_BOM, SLSA_PROVENANCE_V1, TEST_RESULT_V01, VSA_V1 } from '../../attest/index.js';
import { linkKeyId } from '../../runner/index.js';
import { verifyArtifact, vsaFor } from '../../verify/index.js';
import type { TrustedKey, Verdict, VerifyPolicy } from '../../verify/index.js';
import { ApiClient } from '../api-client.js';
import type { Cli } from '../cli.js';
import { EXIT_FAILED, EXIT_OK, UsageError } from '../cli.js';
import { readCredentials } from '../credentials.js';
import { note, printJson, say } from '../io.js';
import { packageVersion } from '../version.js';
import type { RemoteOptions } from './remote.js';
import { requireServer, table, withSession } from './remote.js';

interface VerifyOptions extends RemoteOptions {
  readonly policy?: string;
  readonly key?: string[];
  readonly logKey?: string[];
  readonly attestations?: string;
  readonly vsa?: string;
}

/** One published key, as GET /api/v1/keys answers. */
export interface PublishedKey {
  readonly kid: string;
  readonly purpose: string;
  readonly scope: string;
  readonly algorithm: string;
  readonly publicKeyPem: string;
  readonly createdAt: string;
  readonly retiredAt: string | null;
  readonly status: string;
}

const policySchema = z
  .object({
    builderId: z.string().min(1).optional(),
    repositories: z.array(z.string().min(1)).min(1).optional(),
    commits: z.array(z.string().regex(/^[0-9a-f]{40,64}$/, 'a full commit SHA in lower-case hex')).min(1).optional(),
    pipelineDigests: z.array(z.string().regex(/^(sha256:)?[0-9a-f]{64}$/, 'sha256 of airlock.yaml: 64 lower-case hex').transform((d) => d.replace(/^sha256:/, ''))).min(1).optional(),
    requireTests: z.boolean().optional(),
    requireSbom: z.boolean().optional(),
  })
  .strict();

async function readPolicy(cli: Cli, file: string): Promise<{ policy: VerifyPolicy; digest: string; uri: string }> {
  const path = resolve(cli.io.cwd, file);
  const text = await readFile(path, 'utf8');
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new UsageError(`--policy ${file}: not YAML or JSON (${err instanceof Error ? err.message.split('\n')[0] : 'parse error'})`);
  }
  const parsed = policySchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new UsageError(`--policy ${file}: ${first === undefined ? 'invalid' : `${first.path.join('.') || '(top level)'}: ${first.message}`} (fields: builderId, repositories, commits, pipelineDigests, requireTests, requireSbom)`);
  }
  return { policy: parsed.data, digest: createHash('sha256').update(text).digest('hex'), uri: `file://${path}` };
}

/** sha256:<hex> of a file, streamed (artifacts can be large). */
async function fileDigest(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

/** Keys pinned on the command line: PEM public keys; key ids computed here, never taken on trust. */
export async function pinnedKeys(cli: Cli, files: readonly string[]): Promise<TrustedKey[]> {
  const keys: TrustedKey[] = [];
  for (const f of files) {
    let key: KeyObject;
    try {
      key = createPublicKey(await readFile(resolve(cli.io.cwd, f), 'utf8'));
    } catch {
      throw new UsageError(`--key ${f}: not a PEM public key`);
    }
    if (key.asymmetricKeyType !== 'ed25519') throw new UsageError(`--key ${f}: an Ed25519 public key is required`);
    keys.push({ kid: linkKeyId(key), key });
  }
  return keys;
}

function publishedToTrusted(keys: readonly PublishedKey[]): TrustedKey[] {
  return keys
    .filter((k) => k.purpose === 'attestation')
    .map((k) => {
      const key = createPublicKey(k.publicKeyPem);
      // The id is recomputed from the key: a server cannot pass one key off under another id.
      return { kid: linkKeyId(key), key, retiredAt: k.retiredAt };
    });
}

function printVerdict(cli: Cli, name: string, verdict: Verdict): void {
  say(cli.io, `${verdict.result === 'PASSED' ? 'PASSED' : 'FAILED'}: ${name} (${verdict.digest})`);
  for (const c of verdict.checks) say(cli.io, `  ${c.ok ? 'ok  ' : 'FAIL'} ${c.check}: ${c.detail}`);
}

/** `airlock verify ARTIFACT`, or `airlock verify deployment FILE` (an exported deployment record). */
export async function verify(cli: Cli, command: Command, target: string, recordFile?: string): Promise<number> {
  const opts = command.opts<VerifyOptions>();
  if (recordFile !== undefined) {
    if (target !== 'deployment') throw new UsageError(`airlock verify takes one artifact (a file or sha256:<hex>), or \`deployment FILE\`; got "${target.slice(0, 80)}" and "${recordFile.slice(0, 80)}"`);
    return (await import('./delivery.js')).verifyDeployment(cli, command, recordFile);
  }
  if (opts.logKey !== undefined) throw new UsageError('--log-key is for `airlock verify deployment FILE`, not for an artifact');
  const isDigest = /^sha256:[0-9a-f]{64}$/.test(target);
  if (!isDigest && target.startsWith('sha256:')) throw new UsageError(`${target.slice(0, 80)} is not sha256:<64 lower-case hex>`);
  const name = isDigest ? target : basename(target);
  const digest = isDigest ? target : await fileDigest(resolve(cli.io.cwd, target)).catch(() => {
    throw new UsageError(target === 'deployment' ? 'airlock verify deployment FILE: give the record file (from `airlock deployments export ID FILE`)' : `${target}: no such file (give a file or sha256:<hex>)`);
  });
  const policy = opts.policy === undefined ? undefined : await readPolicy(cli, opts.policy);
  const pinned = await pinnedKeys(cli, opts.key ?? []);

  const finish = (verdict: Verdict): Promise<void> => emit(cli, opts, name, verdict, policy);
  if (opts.attestations !== undefined) {
    // Offline: evidence from a file, keys from --key only. Nothing is recorded (no server).
    if (pinned.length === 0) throw new UsageError('--attestations needs at least one --key: offline, the keys must come from you');
    const text = await readFile(resolve(cli.io.cwd, opts.attestations), 'utf8');
    const envelopes = envelopesOf(JSON.parse(text) as unknown);
    const verdict = verifyArtifact(digest, envelopes, pinned, policy?.policy);
    await finish(verdict);
    note(cli.io, 'offline: the verdict was not recorded on any server');
    return verdict.result === 'PASSED' ? EXIT_OK : EXIT_FAILED;
  }
  return withSession(cli, command, async (s) => {
    const { attestations } = await s.call((c) => c.get<{ attestations: { envelope: unknown }[] }>(`/api/v1/attestations?subject=${encodeURIComponent(digest)}`));
    const keys = pinned.length > 0 ? pinned : publishedToTrusted((await s.call((c) => c.get<{ keys: PublishedKey[] }>('/api/v1/keys'))).keys);
    const verdict = verifyArtifact(digest, attestations.map((a) => a.envelope), keys, policy?.policy);
    await finish(verdict);
    // The verdict goes on the record: who verified what, when, and why it failed.
    await s.call((c) => c.post('/api/v1/verifications', { digest, name, result: verdict.result, reasons: verdict.reasons.slice(0, 50).map((r) => r.slice(0, 500)) }));
    return verdict.result === 'PASSED' ? EXIT_OK : EXIT_FAILED;
  });
}

/** The envelopes of an attestations file: the API's answer, an array of envelopes, or Sigstore bundles. */
function envelopesOf(raw: unknown): unknown[] {
  const list = Array.isArray(raw) ? raw : typeof raw === 'object' && raw !== null && Array.isArray((raw as { attestations?: unknown }).attestations) ? (raw as { attestations: unknown[] }).attestations : undefined;
  if (list === undefined) throw new UsageError('--attestations: expected a JSON array of DSSE envelopes or Sigstore bundles, or the answer of GET /api/v1/attestations');
  return list.map((a: unknown): unknown => {
    if (typeof a !== 'object' || a === null) return a;
    const o = a as Record<string, unknown>;
    if (o.envelope !== undefined) return o.envelope;
    if (o.dsseEnvelope !== undefined) return o.dsseEnvelope;
    return a;
  });
}

async function emit(cli: Cli, opts: VerifyOptions, name: string, verdict: Verdict, policy: { digest: string; uri: string } | undefined): Promise<void> {
  const vsa = vsaFor(verdict, { name, verifierId: `https://airlock.dev/verifier/cli@${packageVersion()}`, now: new Date(), policy });
  if (opts.vsa !== undefined) await writeFile(resolve(cli.io.cwd, opts.vsa), `${JSON.stringify(vsa, null, 2)}\n`, { mode: 0o644 });
  if (opts.json === true) printJson(cli.io, { ...verdict, name, vsa });
  else {
    printVerdict(cli, name, verdict);
    if (opts.vsa !== undefined) note(cli.io, `wrote the SLSA verification summary to ${opts.vsa}`);
  }
}

export async function keysList(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  const server = requireServer(cli, opts, await readCredentials(cli.io.env));
  // Public: anyone may fetch the keys to verify with (promise 5).
  const { keys } = await new ApiClient({ server }).get<{ keys: PublishedKey[] }>('/api/v1/keys');
  if (opts.json === true) printJson(cli.io, { keys });
  else for (const line of table(['KID', 'PURPOSE', 'SCOPE', 'STATUS', 'CREATED', 'RETIRED'], keys.map((k) => [k.kid, k.purpose, k.scope === '' ? 'platform' : k.scope, k.status, k.createdAt, k.retiredAt ?? '-']))) say(cli.io, line);
  return EXIT_OK;
}

export async function keysRotate(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions & { purpose: string; project?: string }>();
  if ((opts.purpose === 'layout') !== (opts.project !== undefined)) throw new UsageError('a layout key belongs to one project: use --purpose layout with --project NAME (and --project only then)');
  return withSession(cli, command, async (s) => {
    const answer = await s.call((c) => c.post<{ kid: string; retired: string | null }>('/api/v1/keys/rotate', { purpose: opts.purpose, ...(opts.project === undefined ? {} : { project: opts.project }) }));
    if (opts.json === true) printJson(cli.io, answer);
    else say(cli.io, `new ${opts.purpose} key ${answer.kid}; ${answer.retired === null ? 'no key was retired' : `${answer.retired} is now verify-only`}`);
    return EXIT_OK;
  });
}

/** Short file-name stems for the predicate types the control plane signs. */
const PREDICATE_STEMS: Readonly<Record<string, string>> = {
  [SLSA_PROVENANCE_V1]: 'provenance',
  [TEST_RESULT_V01]: 'test-result',
  [CYCLONEDX_BOM]: 'sbom',
  [VSA_V1]: 'vsa',
};

/**
 * `airlock attestations DIGEST --out DIR`: the artifact's signed evidence as files other tools
 * read: one Sigstore bundle v0.3 and one DSSE envelope per attestation, the API's answer (for
 * `airlock verify --attestations`), and the published attestation keys as PEM files named by
 * kid. Nothing here is trusted by Airlock itself; it is what an outside verifier starts from.
 */
export async function attestationsExport(cli: Cli, command: Command, digest: string): Promise<number> {
  const opts = command.opts<RemoteOptions & { out: string }>();
  if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new UsageError(`${digest}: give the artifact's digest as sha256:<64 lower-case hex> (see airlock artifact list)`);
  const out = resolve(cli.io.cwd, opts.out);
  return withSession(cli, command, async (s) => {
    const answer = await s.call((c) => c.get<{ attestations: { predicateType: string; kid: string; envelope: unknown; bundle: unknown }[] }>(`/api/v1/attestations?subject=${encodeURIComponent(digest)}`));
    if (answer.attestations.length === 0) throw new UsageError(`no attestations name ${digest}: was it built by a run that succeeded?`);
    const { keys } = await s.call((c) => c.get<{ keys: PublishedKey[] }>('/api/v1/keys'));
    await mkdir(resolve(out, 'keys'), { recursive: true });
    const files: string[] = [];
    const write = async (name: string, body: string): Promise<void> => {
      await writeFile(resolve(out, name), body);
      files.push(name);
    };
    const seen = new Map<string, number>();
    for (const a of answer.attestations) {
      const stem = PREDICATE_STEMS[a.predicateType] ?? 'attestation';
      const n = (seen.get(stem) ?? 0) + 1;
      seen.set(stem, n);
      const base = n === 1 ? stem : `${stem}-${n}`;
      await write(`${base}.sigstore.json`, `${JSON.stringify(a.bundle, null, 2)}\n`);
      await write(`${base}.dsse.json`, `${JSON.stringify(a.envelope, null, 2)}\n`);
    }
    await write('attestations.json', `${JSON.stringify(answer, null, 2)}\n`);
    for (const k of keys.filter((x) => x.purpose === 'attestation')) await write(`keys/${k.kid}.pem`, k.publicKeyPem.endsWith('\n') ? k.publicKeyPem : `${k.publicKeyPem}\n`);
    if (opts.json === true) printJson(cli.io, { digest, dir: out, files });
    else {
      for (const f of files) say(cli.io, resolve(out, f));
      note(cli.io, `wrote ${files.length} file(s); check a bundle without Airlock: node examples/sigstore-verify/verify.mjs --bundle ${resolve(out, 'provenance.sigstore.json')} --key ${resolve(out, 'keys')}/<kid>.pem --artifact FILE`);
    }
    return EXIT_OK;
  });
}
