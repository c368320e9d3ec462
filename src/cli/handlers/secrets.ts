/** `airlock secret …`: the vault over the HTTP API (values from stdin or a file, never an argument). */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
// The API answers with the domain's shapes: typed from the domain, erased at run time.
import { AirlockError } from '../../errors/index.js';
import type { SecretInfo } from '../../secrets/index.js';
import type { Cli } from '../cli.js';
import { EXIT_OK, UsageError } from '../cli.js';
import { note, printJson, say } from '../io.js';
import type { RemoteOptions } from './remote.js';
import { seg, table, withSession } from './remote.js';

interface ScopeOptions extends RemoteOptions {
  readonly project?: string;
  readonly environment?: string;
}


const scopeOf = (o: ScopeOptions) => ({ ...(o.project === undefined ? {} : { project: o.project }), ...(o.environment === undefined ? {} : { environment: o.environment }) });
const scopeQuery = (o: ScopeOptions): string => {
  const q = new URLSearchParams(scopeOf(o));
  return q.size === 0 ? '' : `?${q.toString()}`;
};

/** The value from --from-file, else stdin; one trailing newline from a terminal or echo is dropped. */
async function readValue(cli: Cli, fromFile: string | undefined): Promise<Buffer> {
  if (fromFile !== undefined) return readFile(resolve(cli.io.cwd, fromFile));
  const chunks: Buffer[] = [];
  for await (const chunk of cli.io.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  const all = Buffer.concat(chunks);
  return all.length > 0 && all[all.length - 1] === 0x0a ? all.subarray(0, all[all.length - 2] === 0x0d ? -2 : -1) : all;
}

export async function secretSet(cli: Cli, command: Command, name: string): Promise<number> {
  const opts = command.opts<ScopeOptions & { fromFile?: string; description?: string; owner?: string; rotateEveryDays?: number; expires?: string }>();
  const value = await readValue(cli, opts.fromFile);
  if (value.length === 0) throw new UsageError('no value: pipe it on stdin (printf %s "$VALUE" | airlock secret set NAME) or pass --from-file FILE');
  return withSession(cli, command, async (s) => {
    const body = {
      name,
      valueBase64: value.toString('base64'),
      ...scopeOf(opts),
      ...(opts.description === undefined ? {} : { description: opts.description }),
      ...(opts.owner === undefined ? {} : { owner: opts.owner }),
      ...(opts.rotateEveryDays === undefined ? {} : { rotationIntervalDays: opts.rotateEveryDays }),
      ...(opts.expires === undefined ? {} : { expiresAt: opts.expires }),
    };
    const info = await s.call((c) => c.post<SecretInfo>('/api/v1/secrets', body));
    if (opts.json === true) printJson(cli.io, info);
    else say(cli.io, `stored ${info.name} version ${info.currentVersion} (${info.scope}); the value is encrypted and was not printed`);
    return EXIT_OK;
  });
}

export async function secretList(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const { secrets } = await s.call((c) => c.get<{ secrets: SecretInfo[] }>('/api/v1/secrets'));
    if (opts.json === true) printJson(cli.io, { secrets });
    else for (const line of table(['NAME', 'SCOPE', 'VERSION', 'OWNER', 'LAST READ', 'EXPIRES'], secrets.map((x) => [x.name, x.scope, String(x.currentVersion), x.owner, x.lastReadAt ?? '-', x.expiresAt ?? '-']))) say(cli.io, line);
    return EXIT_OK;
  });
}

export async function secretVersions(cli: Cli, command: Command, name: string): Promise<number> {
  const opts = command.opts<ScopeOptions>();
  return withSession(cli, command, async (s) => {
    const { versions } = await s.call((c) => c.get<{ versions: { version: number; size: number; createdAt: string; createdBy: string; kekId: string }[] }>(`/api/v1/secrets/${seg(name)}/versions${scopeQuery(opts)}`));
    if (opts.json === true) printJson(cli.io, { versions });
    else for (const line of table(['VERSION', 'SIZE', 'CREATED', 'BY', 'KEK'], versions.map((v) => [String(v.version), String(v.size), v.createdAt, v.createdBy, v.kekId]))) say(cli.io, line);
    return EXIT_OK;
  });
}

/** `airlock secret reveal`: needs the permission, a fresh MFA proof and a justification; recorded. */
export async function secretReveal(cli: Cli, command: Command, name: string): Promise<number> {
  const opts = command.opts<ScopeOptions & { justification: string; version?: number }>();
  return withSession(cli, command, async (s) => {
    const body = { justification: opts.justification, ...scopeOf(opts), ...(opts.version === undefined ? {} : { version: opts.version }) };
    const r = await s.call((c) => c.post<{ name: string; version: number; valueBase64: string }>(`/api/v1/secrets/${seg(name)}/reveal`, body));
    if (opts.json === true) printJson(cli.io, r);
    else {
      note(cli.io, `revealed ${r.name} version ${r.version}; this read is recorded with your justification`);
      cli.io.stdout.write(Buffer.from(r.valueBase64, 'base64'));
    }
    return EXIT_OK;
  });
}

export async function secretDelete(cli: Cli, command: Command, name: string): Promise<number> {
  const opts = command.opts<ScopeOptions>();
  return withSession(cli, command, async (s) => {
    await s.call((c) => c.delete<unknown>(`/api/v1/secrets/${seg(name)}${scopeQuery(opts)}`));
    if (opts.json === true) printJson(cli.io, { deleted: name });
    else say(cli.io, `deleted ${name}; its versions stay encrypted for the record`);
    return EXIT_OK;
  });
}

/** `airlock secret audit-hash`: the vault's HMAC of a value (from stdin), to match against audit entries. */
export async function secretAuditHash(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions & { fromFile?: string }>();
  const value = await readValue(cli, opts.fromFile);
  if (value.length === 0) throw new UsageError('no value: pipe it on stdin or pass --from-file FILE');
  return withSession(cli, command, async (s) => {
    const r = await s.call((c) => c.post<{ auditHash: string }>('/api/v1/secrets/audit-hash', { valueBase64: value.toString('base64') }));
    if (opts.json === true) printJson(cli.io, r);
    else say(cli.io, r.auditHash);
    return EXIT_OK;
  });
}

export async function secretUsage(cli: Cli, command: Command, name: string): Promise<number> {
  const opts = command.opts<ScopeOptions>();
  return withSession(cli, command, async (s) => {
    const { usage } = await s.call((c) => c.get<{ usage: { seq: number; time: string; action: string; actor: string; outcome: string; version: unknown; reason: string }[] }>(`/api/v1/secrets/${seg(name)}/usage${scopeQuery(opts)}`));
    if (opts.json === true) printJson(cli.io, { usage });
    else for (const line of table(['TIME', 'ACTION', 'BY', 'OUTCOME', 'VERSION', 'SEQ'], usage.map((u) => [u.time, u.action, u.actor, u.outcome + (u.reason === '' ? '' : ` (${u.reason})`), typeof u.version === 'number' ? String(u.version) : '-', String(u.seq)]))) say(cli.io, line);
    return EXIT_OK;
  });
}

/**
 * `airlock secret rotate NAME --command CMD`: CMD (for example a script calling a provider's
 * API) prints the new value on stdout; it becomes the next version. A command that fails or
 * prints nothing changes nothing: the old version stays current.
 */
export async function secretRotate(cli: Cli, command: Command, name: string): Promise<number> {
  const opts = command.opts<ScopeOptions & { command: string }>();
  const { spawn } = await import('node:child_process');
  const result = await new Promise<{ code: number | null; value: Buffer }>((done, fail) => {
    const child = spawn('/bin/sh', ['-c', opts.command], { stdio: ['ignore', 'pipe', 'inherit'], env: cli.io.env });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.on('error', fail);
    child.on('close', (code) => {
      done({ code, value: Buffer.concat(chunks) });
    });
  });
  const { value } = result;
  const trimmed = value.length > 0 && value[value.length - 1] === 0x0a ? value.subarray(0, -1) : value;
  const failure = result.code === null ? 'the rotation command was killed by a signal' : result.code !== 0 ? `the rotation command exited ${String(result.code)}` : trimmed.length === 0 ? 'the rotation command printed nothing' : undefined;
  return withSession(cli, command, async (s) => {
    if (failure !== undefined) {
      // Recorded on the server (the secret's usage shows it), then reported; nothing else changes.
      await s.call((c) => c.post(`/api/v1/secrets/${seg(name)}/rotation-failures`, { reason: failure, ...scopeOf(opts) }));
      throw new AirlockError('ROTATION_FAILED', `${failure}; nothing was changed (the current version stays; the failure is recorded)`);
    }
    const info = await s.call((c) => c.post<SecretInfo>('/api/v1/secrets', { name, valueBase64: trimmed.toString('base64'), ...scopeOf(opts) }));
    if (opts.json === true) printJson(cli.io, info);
    else say(cli.io, `rotated ${info.name}: version ${info.currentVersion} is current`);
    return EXIT_OK;
  });
}
