/**
 * `airlock deploy`, `approve`, `deny`, `break-glass`, `rollback`, `deployments …`, `incidents …` over the HTTP API, and
 * `airlock verify deployment FILE`, which checks an exported record here, offline, with keys
 * the user brings (or fetched from the server's published ones, key ids recomputed).
 */
import { createPublicKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { parseVerifierKey } from '../../audit/index.js';
import type { NoteVerifier } from '../../audit/index.js';
import { verifyRecordFile } from '../../delivery/index.js';
// The API answers with the domain's shapes: typed from the domain, erased at run time.
import type { DeploymentSummary, DeploymentView, IncidentView, RecordFile } from '../../delivery/index.js';
import { linkKeyId } from '../../runner/index.js';
import { ApiClient } from '../api-client.js';
import type { Cli } from '../cli.js';
import { EXIT_FAILED, EXIT_OK, UsageError } from '../cli.js';
import { readCredentials } from '../credentials.js';
import { note, printJson, readInput, say } from '../io.js';
import type { RemoteOptions, Session } from './remote.js';
import { requireServer, seg, table, withSession } from './remote.js';
import { pinnedKeys } from './verify.js';

/** How a person at the terminal moves a request on: who must approve, then the deploy. */
function nextSteps(cli: Cli, v: DeploymentView): void {
  if (v.state !== 'requested' && v.state !== 'approved') return;
  if (!v.approvals.satisfied) {
    say(cli.io, `waiting for: ${v.approvals.missing || 'approvals'}`);
    say(cli.io, `an approver (not you, nor anyone who wrote or triggered this change) runs:`);
    say(cli.io, `  airlock approve ${v.id} --justification 'WHY IT IS SAFE TO SHIP'`);
  }
  const approvalsReason = v.approvals.missing || 'approvals are missing';
  for (const r of v.gate.reasons) if (v.approvals.satisfied || r !== approvalsReason) say(cli.io, `blocked: ${r}`);
  say(cli.io, `then deploy with: airlock deployments deploy ${v.id}`);
}

function printOutcome(cli: Cli, v: DeploymentView): number {
  const ok = v.state === 'succeeded';
  say(cli.io, `deployment ${v.id} of ${v.project} (run ${v.runId}) to ${v.environment}: ${v.state}${v.reason === null ? '' : ` (${v.reason})`}`);
  if (v.recordDigest !== null) say(cli.io, `record ${v.recordDigest}; export it with: airlock deployments export ${v.id} record.json`);
  return ok ? EXIT_OK : EXIT_FAILED;
}

async function deployNow(s: Session, id: string): Promise<DeploymentView> {
  return s.call((c) => c.post<DeploymentView>(`/api/v1/deployments/${seg(id)}/deploy`));
}

/**
 * `airlock deploy RUN ENV`: ask; when nothing stands in the way (no approvals needed, no
 * freeze), deploy at once and print the outcome; otherwise say what is missing and how to
 * get it. The gate is the server's: the deploy call re-checks it.
 */
export async function deploy(cli: Cli, command: Command, run: string, environment: string): Promise<number> {
  const opts = command.opts<RemoteOptions & { justification: string; ticket?: string; wait: boolean }>();
  return withSession(cli, command, async (s) => {
    const body = { run, environment, justification: opts.justification, ...(opts.ticket === undefined ? {} : { ticket: opts.ticket }) };
    const requested = await s.call((c) => c.post<DeploymentView>('/api/v1/deployments', body));
    if (opts.wait && requested.gate.allowed) {
      if (opts.json !== true) note(cli.io, `requested deployment ${requested.id}; nothing else is needed: deploying`);
      const done = await deployNow(s, requested.id);
      if (opts.json === true) {
        printJson(cli.io, done);
        return done.state === 'succeeded' ? EXIT_OK : EXIT_FAILED;
      }
      return printOutcome(cli, done);
    }
    if (opts.json === true) printJson(cli.io, requested);
    else {
      say(cli.io, `requested deployment ${requested.id}: ${requested.project} run ${requested.runId} to ${requested.environment} (binding ${requested.bindingDigest})`);
      nextSteps(cli, requested);
    }
    return EXIT_OK;
  });
}

/** `airlock approve|deny ID`: a justified decision; step-up is asked for at a terminal. */
export async function decide(cli: Cli, command: Command, id: string, decision: 'approve' | 'deny'): Promise<number> {
  const opts = command.opts<RemoteOptions & { justification: string }>();
  return withSession(cli, command, async (s) => {
    const v = await s.call((c) => c.post<DeploymentView>(`/api/v1/deployments/${seg(id)}/${decision}`, { justification: opts.justification }));
    if (opts.json === true) printJson(cli.io, v);
    else {
      say(cli.io, `${decision === 'approve' ? 'approved' : 'denied'} deployment ${v.id} to ${v.environment} (recorded with your justification, signed as an attestation of ${v.bindingDigest})`);
      say(cli.io, `state: ${v.state}; counted approvals: ${v.approvals.counted.map((c) => c.approver).join(', ') || 'none'}`);
      if (v.state === 'approved' && v.gate.allowed) say(cli.io, `ready: airlock deployments deploy ${v.id}`);
      else if (v.state === 'requested' || v.state === 'approved') nextSteps(cli, v);
    }
    return EXIT_OK;
  });
}

export async function deploymentsList(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions & { project?: string; environment?: string; limit?: number }>();
  const q = new URLSearchParams({ ...(opts.project === undefined ? {} : { project: opts.project }), ...(opts.environment === undefined ? {} : { environment: opts.environment }), ...(opts.limit === undefined ? {} : { limit: String(opts.limit) }) });
  return withSession(cli, command, async (s) => {
    const { deployments } = await s.call((c) => c.get<{ deployments: DeploymentSummary[] }>(`/api/v1/deployments${q.size === 0 ? '' : `?${q.toString()}`}`));
    if (opts.json === true) printJson(cli.io, { deployments });
    else for (const line of table(['ID', 'PROJECT', 'ENVIRONMENT', 'STATE', 'REQUESTED BY', 'CREATED', 'FINISHED'], deployments.map((d) => [d.id, d.project, d.environment, d.state, d.requestedBy, d.createdAt, d.finishedAt ?? '-']))) say(cli.io, line);
    return EXIT_OK;
  });
}

export async function deploymentsShow(cli: Cli, command: Command, id: string): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const v = await s.call((c) => c.get<DeploymentView>(`/api/v1/deployments/${seg(id)}`));
    if (opts.json === true) {
      printJson(cli.io, v);
      return EXIT_OK;
    }
    say(cli.io, `deployment:   ${v.id}`);
    say(cli.io, `what:         ${v.project} run ${v.runId} to ${v.environment}`);
    say(cli.io, `state:        ${v.state}${v.reason === null ? '' : ` (${v.reason})`}`);
    say(cli.io, `requested:    ${v.createdAt} by ${v.requestedBy}${v.ticket === null ? '' : `, ticket ${v.ticket}`}`);
    say(cli.io, `why:          ${v.justification}`);
    say(cli.io, `commits:      ${v.commitRange.from ?? '(first deployment)'}..${v.commitRange.to}`);
    say(cli.io, `config:       ${v.configDigest}`);
    const diff = [...v.configDiff.added.map((d) => `+ ${d.key}=${d.value}`), ...v.configDiff.removed.map((d) => `- ${d.key}`), ...v.configDiff.changed.map((d) => `~ ${d.key}: ${d.before} -> ${d.after}`)];
    say(cli.io, `config diff:  ${diff.length === 0 ? '(none since the last deployment)' : diff.join('\n              ')}`);
    say(cli.io, `binding:      ${v.bindingDigest}`);
    if (v.finishedAt !== null) say(cli.io, `finished:     ${v.finishedAt}`);
    if (v.recordDigest !== null) say(cli.io, `record:       ${v.recordDigest}`);
    if (v.rollbackOf !== null) say(cli.io, `rollback of:  ${v.rollbackOf}`);
    if (v.breakGlass) say(cli.io, 'break-glass:  yes (two people bypassed approvals or a freeze; see airlock incidents list)');
    if (v.rulesChanged) say(cli.io, "rules:        changed since the last deployment: an owner under the previous rules must approve");
    say(cli.io, 'artifacts:');
    for (const line of table(['PATH', 'DIGEST'], v.artifacts.map((a) => [a.path, a.digest]))) say(cli.io, `  ${line}`);
    say(cli.io, `approvals:    ${v.approvals.satisfied ? 'satisfied' : `missing: ${v.approvals.missing}`}`);
    for (const c of v.approvals.counted) say(cli.io, `  counted  ${c.approver} at ${new Date(c.at).toISOString()}: ${c.justification}`);
    for (const d of v.approvals.denials) say(cli.io, `  DENIED   ${d.approver} at ${new Date(d.at).toISOString()}: ${d.justification}`);
    for (const r of v.approvals.refused) say(cli.io, `  refused  ${r.approver} (${r.decision}) at ${new Date(r.at).toISOString()}: ${r.reason.code}: ${r.reason.message}`);
    if (v.state === 'requested' || v.state === 'approved') say(cli.io, `deploy now:   ${v.gate.allowed ? `allowed (airlock deployments deploy ${v.id})` : `no: ${v.gate.reasons.join('; ')}`}`);
    return EXIT_OK;
  });
}

/** `airlock deployments deploy ID`: deploy a request (the server re-checks every gate). Exit 1 unless it succeeded. */
export async function deploymentsDeploy(cli: Cli, command: Command, id: string): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const v = await deployNow(s, id);
    if (opts.json === true) {
      printJson(cli.io, v);
      return v.state === 'succeeded' ? EXIT_OK : EXIT_FAILED;
    }
    return printOutcome(cli, v);
  });
}

/** `airlock deployments export ID FILE`: the record file, as the server proves it (verify it with `airlock verify deployment`). */
export async function deploymentsExport(cli: Cli, command: Command, id: string, file: string): Promise<number> {
  const opts = command.opts<RemoteOptions & { force?: boolean }>();
  const dest = resolve(cli.io.cwd, file);
  return withSession(cli, command, async (s) => {
    const record = await s.call((c) => c.get<RecordFile>(`/api/v1/deployments/${seg(id)}/record`));
    try {
      await writeFile(dest, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o644, flag: opts.force === true ? 'w' : 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new UsageError(`${file} exists: choose another file or pass --force to replace it`);
      throw err;
    }
    if (opts.json === true) printJson(cli.io, { deploymentId: id, path: dest, format: record.format });
    else say(cli.io, `wrote ${file}; check it anywhere with: airlock verify deployment ${file}`);
    return EXIT_OK;
  });
}

interface VerifyDeploymentOptions extends RemoteOptions {
  readonly key?: string[];
  readonly logKey?: string[];
  readonly policy?: string;
  readonly attestations?: string;
  readonly vsa?: string;
}

/** PEM public keys from --key (ids recomputed): the same reading as `airlock verify --key`. */
async function attestationKeys(cli: Cli, files: readonly string[]): Promise<Map<string, KeyObject>> {
  return new Map((await pinnedKeys(cli, files)).map((k) => [k.kid, k.key]));
}

function logKeys(values: readonly string[]): NoteVerifier[] {
  return values.map((v) => {
    try {
      return parseVerifierKey(v.trim());
    } catch (err) {
      throw new UsageError(`--log-key ${v.slice(0, 40)}: ${err instanceof Error ? err.message : 'not a verifier key'} (the form of \`airlock audit key\`: <name>+<key id>+<base64 key>)`);
    }
  });
}

/**
 * `airlock verify deployment FILE`: the record's signature, the audit event naming its
 * digest, the event's inclusion proof, and the signed checkpoint the proof leads to. Keys
 * not given are fetched from the server: attestation keys are public, the log's verifier key
 * needs a sign-in. Exit 1 when any check fails.
 */
export async function verifyDeployment(cli: Cli, command: Command, file: string): Promise<number> {
  const opts = command.opts<VerifyDeploymentOptions>();
  for (const [flag, value] of [['--policy', opts.policy], ['--attestations', opts.attestations], ['--vsa', opts.vsa]] as const) {
    if (value !== undefined) throw new UsageError(`${flag} is for verifying an artifact, not a deployment record`);
  }
  let text: string;
  try {
    text = await readFile(resolve(cli.io.cwd, file), 'utf8');
  } catch {
    throw new UsageError(`${file}: no such file (export one with: airlock deployments export ID FILE)`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text) as unknown;
  } catch {
    parsed = undefined;
  }
  let attestation = await attestationKeys(cli, opts.key ?? []);
  let log = logKeys(opts.logKey ?? []);
  if (log.length === 0) {
    await withSession(cli, command, async (s) => {
      const { verifierKey } = await s.call((c) => c.get<{ verifierKey: string }>('/api/v1/audit/key'));
      log = logKeys([verifierKey]);
      if (attestation.size === 0) attestation = await publishedKeys(s.client);
    });
  } else if (attestation.size === 0) {
    // Public: anyone may fetch the keys to verify with.
    const server = requireServer(cli, opts, await readCredentials(cli.io.env));
    attestation = await publishedKeys(new ApiClient({ server }));
  }
  const result = verifyRecordFile(parsed, { attestation, log });
  if (opts.json === true) printJson(cli.io, { ok: result.ok, checks: result.checks, record: result.record ?? null });
  else {
    say(cli.io, `${result.ok ? 'PASSED' : 'FAILED'}: ${file}${result.record === undefined ? '' : ` (deployment ${result.record.deploymentId} of ${result.record.project} to ${result.record.environment}: ${result.record.outcome})`}`);
    for (const c of result.checks) say(cli.io, `  ${c.ok ? 'ok  ' : 'FAIL'} ${c.check}: ${c.detail}`);
    if (opts.key === undefined || opts.logKey === undefined) note(cli.io, 'keys not given with --key/--log-key were fetched from the server: pin them for a check that does not trust it');
  }
  return result.ok ? EXIT_OK : EXIT_FAILED;
}

/** The server's published attestation keys, ids recomputed from the keys (a server cannot pass one key off under another id). */
async function publishedKeys(client: ApiClient): Promise<Map<string, KeyObject>> {
  const { keys } = await client.get<{ keys: { purpose: string; publicKeyPem: string }[] }>('/api/v1/keys');
  const out = new Map<string, KeyObject>();
  for (const k of keys.filter((x) => x.purpose === 'attestation')) {
    const key = createPublicKey(k.publicKeyPem);
    out.set(linkKeyId(key), key);
  }
  return out;
}

/** `airlock break-glass ID`: one of the two people; the second one's call deploys. */
export async function breakGlass(cli: Cli, command: Command, id: string): Promise<number> {
  const opts = command.opts<RemoteOptions & { justification: string }>();
  return withSession(cli, command, async (s) => {
    const r = await s.call((c) => c.post<{ deployment: DeploymentView; granted: boolean; participants: string[]; incident?: string }>(`/api/v1/deployments/${seg(id)}/break-glass`, { justification: opts.justification }));
    if (opts.json === true) {
      printJson(cli.io, r);
      return !r.granted || r.deployment.state === 'succeeded' ? EXIT_OK : EXIT_FAILED;
    }
    if (!r.granted) {
      say(cli.io, `break-glass requested for deployment ${r.deployment.id} to ${r.deployment.environment} (recorded as a high-severity event)`);
      say(cli.io, 'a second person holding the break-glass permission must now run, within the hour:');
      say(cli.io, `  airlock break-glass ${r.deployment.id} --justification 'WHY THIS CANNOT WAIT'`);
      return EXIT_OK;
    }
    say(cli.io, `break-glass granted by ${r.participants.join(' and ')}; incident ${r.incident ?? '?'} stays open until a postmortem: airlock incidents close ${r.incident ?? 'ID'} --postmortem FILE`);
    return printOutcome(cli, r.deployment);
  });
}

/** `airlock rollback ENV --project P [--to ID]`. */
export async function rollback(cli: Cli, command: Command, environment: string): Promise<number> {
  const opts = command.opts<RemoteOptions & { project: string; to?: string; justification: string }>();
  return withSession(cli, command, async (s) => {
    const v = await s.call((c) => c.post<DeploymentView>(`/api/v1/environments/${seg(environment)}/rollback`, { project: opts.project, justification: opts.justification, ...(opts.to === undefined ? {} : { to: opts.to }) }));
    if (opts.json === true) {
      printJson(cli.io, v);
      return v.state === 'succeeded' || v.state === 'requested' ? EXIT_OK : EXIT_FAILED;
    }
    if (v.state === 'requested') {
      say(cli.io, `rollback ${v.id} of ${v.environment} (from ${v.rollbackOf ?? '?'}) needs approvals under this environment's rules`);
      nextSteps(cli, v);
      return EXIT_OK;
    }
    say(cli.io, `rolled back from ${v.rollbackOf ?? '?'}`);
    return printOutcome(cli, v);
  });
}

export async function incidentsList(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions & { open?: boolean }>();
  return withSession(cli, command, async (s) => {
    const { incidents } = await s.call((c) => c.get<{ incidents: IncidentView[] }>(`/api/v1/incidents${opts.open === true ? '?open=true' : ''}`));
    if (opts.json === true) printJson(cli.io, { incidents });
    else for (const line of table(['ID', 'KIND', 'STATE', 'DEPLOYMENT', 'OPENED', 'BY'], incidents.map((i) => [i.id, i.kind, i.state, i.deploymentId ?? '-', i.openedAt, i.openedBy]))) say(cli.io, line);
    return EXIT_OK;
  });
}

export async function incidentsShow(cli: Cli, command: Command, id: string): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const i = await s.call((c) => c.get<IncidentView>(`/api/v1/incidents/${seg(id)}`));
    if (opts.json === true) printJson(cli.io, i);
    else {
      say(cli.io, `incident:   ${i.id} (${i.kind}, ${i.state})`);
      say(cli.io, `opened:     ${i.openedAt} by ${i.openedBy}${i.deploymentId === null ? '' : `, deployment ${i.deploymentId}`}`);
      say(cli.io, `summary:    ${i.summary}`);
      say(cli.io, i.postmortem === null ? 'postmortem: (none yet: airlock incidents close ID --postmortem FILE)' : `closed:     ${i.closedAt ?? ''} by ${i.closedBy ?? ''}\npostmortem:\n${i.postmortem}`);
    }
    return EXIT_OK;
  });
}

export async function incidentsClose(cli: Cli, command: Command, id: string): Promise<number> {
  const opts = command.opts<RemoteOptions & { postmortem: string }>();
  const text = await readInput(cli.io, opts.postmortem);
  return withSession(cli, command, async (s) => {
    const i = await s.call((c) => c.post<IncidentView>(`/api/v1/incidents/${seg(id)}/postmortem`, { postmortem: text }));
    if (opts.json === true) printJson(cli.io, i);
    else say(cli.io, `incident ${i.id} closed by ${i.closedBy ?? ''} with a postmortem of ${i.postmortem?.length ?? 0} characters (recorded)`);
    return EXIT_OK;
  });
}

