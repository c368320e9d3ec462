/** `airlock service-account …`: non-human identities and their API keys, over the HTTP API. */
import type { Command } from 'commander';
// The API answers with the domain's shapes: typed from the domain, erased at run time.
import type { ApiKeyInfo, ServiceAccountInfo } from '../../identity/index.js';
import type { Cli } from '../cli.js';
import { EXIT_OK } from '../cli.js';
import { note, printJson, say } from '../io.js';
import type { RemoteOptions } from './remote.js';
import { list, seg, table, withSession } from './remote.js';



const path = (name: string): string => `/api/v1/service-accounts/${seg(name)}`;

interface CreateOptions extends RemoteOptions {
  readonly role?: string[];
  readonly description?: string;
}

/** `airlock service-account create`. */
export async function serviceAccountCreate(cli: Cli, command: Command, name: string): Promise<number> {
  const opts = command.opts<CreateOptions>();
  return withSession(cli, command, async (s) => {
    const body = { name, roles: opts.role ?? [], ...(opts.description === undefined ? {} : { description: opts.description }) };
    const sa = await s.call((c) => c.post<ServiceAccountInfo>('/api/v1/service-accounts', body));
    if (opts.json === true) printJson(cli.io, sa);
    else say(cli.io, `created service account ${sa.name} with ${sa.roles.length === 0 ? 'no roles' : `roles ${sa.roles.join(', ')}`}; give it an API key with: airlock service-account key create ${sa.name}`);
    return EXIT_OK;
  });
}

/** `airlock service-account list`. */
export async function serviceAccountList(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const { serviceAccounts } = await s.call((c) => c.get<{ serviceAccounts: ServiceAccountInfo[] }>('/api/v1/service-accounts'));
    if (opts.json === true) {
      printJson(cli.io, { serviceAccounts });
    } else {
      const rows = serviceAccounts.map((a) => [a.name, list(a.roles), a.disabledAt === null ? 'active' : 'disabled', a.createdAt, a.description]);
      for (const line of table(['NAME', 'ROLES', 'STATUS', 'CREATED', 'DESCRIPTION'], rows)) say(cli.io, line);
    }
    return EXIT_OK;
  });
}

/** `airlock service-account disable`: its keys and tokens stop working. */
export async function serviceAccountDisable(cli: Cli, command: Command, name: string): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const sa = await s.call((c) => c.post<ServiceAccountInfo>(`${path(name)}/disable`));
    if (opts.json === true) printJson(cli.io, sa);
    else say(cli.io, `disabled service account ${sa.name}; its keys and tokens no longer work`);
    return EXIT_OK;
  });
}

interface KeyCreateOptions extends RemoteOptions {
  readonly description?: string;
  readonly expiresInDays?: number;
}

/** `airlock service-account key create`: the key is printed once, alone on stdout. */
export async function keyCreate(cli: Cli, command: Command, name: string): Promise<number> {
  const opts = command.opts<KeyCreateOptions>();
  return withSession(cli, command, async (s) => {
    const body = { ...(opts.description === undefined ? {} : { description: opts.description }), ...(opts.expiresInDays === undefined ? {} : { expiresInDays: opts.expiresInDays }) };
    const made = await s.call((c) => c.post<{ apiKey: string; key: ApiKeyInfo }>(`${path(name)}/keys`, body));
    if (opts.json === true) {
      printJson(cli.io, made);
    } else {
      note(cli.io, `created key ${made.key.id} for ${made.key.serviceAccount}${made.key.expiresAt === null ? ' (no expiry)' : `, expires ${made.key.expiresAt}`}`);
      note(cli.io, 'Store the key now (for example in your CI secret store): it will not be shown again.');
      say(cli.io, made.apiKey);
    }
    return EXIT_OK;
  });
}

/** `airlock service-account key list`: metadata only, never key text. */
export async function keyList(cli: Cli, command: Command, name: string): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const { keys } = await s.call((c) => c.get<{ keys: ApiKeyInfo[] }>(`${path(name)}/keys`));
    if (opts.json === true) {
      printJson(cli.io, { keys });
    } else {
      const state = (k: ApiKeyInfo): string => (k.revokedAt !== null ? 'revoked' : k.expiresAt !== null && Date.parse(k.expiresAt) <= Date.now() ? 'expired' : 'active');
      const rows = keys.map((k) => [k.id, state(k), k.createdAt, k.expiresAt ?? '-', k.lastUsedAt ?? '-', k.description]);
      for (const line of table(['KEY ID', 'STATUS', 'CREATED', 'EXPIRES', 'LAST USED', 'DESCRIPTION'], rows)) say(cli.io, line);
    }
    return EXIT_OK;
  });
}

/** `airlock service-account key revoke`. */
export async function keyRevoke(cli: Cli, command: Command, name: string, keyId: string): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const key = await s.call((c) => c.delete<ApiKeyInfo>(`${path(name)}/keys/${seg(keyId)}`));
    if (opts.json === true) printJson(cli.io, key);
    else say(cli.io, `revoked key ${key.id} of ${key.serviceAccount}; tokens exchanged with it stop working now`);
    return EXIT_OK;
  });
}
