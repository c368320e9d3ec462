/** `airlock user …` and `airlock role …`: people and roles, over the HTTP API. */
import type { Command } from 'commander';
import type { Cli } from '../cli.js';
import { EXIT_OK, UsageError } from '../cli.js';
import { note, printJson, say } from '../io.js';
import type { RemoteOptions } from './remote.js';
import { list, seg, table, withSession } from './remote.js';

interface UserInfo {
  readonly username: string;
  readonly displayName: string | null;
  readonly email: string | null;
  readonly kind: string;
  readonly roles: readonly string[];
  readonly mfaEnrolled: boolean;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly disabledAt: string | null;
}

interface NewUser {
  readonly user: UserInfo;
  readonly setupToken: string;
  readonly setupExpiresAt: string;
}

interface RoleInfo {
  readonly name: string;
  readonly description: string;
  readonly builtin: boolean;
  readonly requiresMfa: boolean;
}

const status = (u: UserInfo): string => (u.disabledAt === null ? 'active' : `disabled ${u.disabledAt}`);

function printUser(cli: Cli, u: UserInfo): void {
  const rows: [string, string][] = [
    ['username', u.username],
    ['name', u.displayName ?? '-'],
    ['email', u.email ?? '-'],
    ['kind', u.kind],
    ['roles', list(u.roles)],
    ['MFA', u.mfaEnrolled ? 'enrolled' : 'not enrolled'],
    ['status', status(u)],
    ['created', `${u.createdAt} by ${u.createdBy}`],
  ];
  for (const [k, v] of rows) say(cli.io, `${`${k}:`.padEnd(10)}${v}`);
}

/** The one-time setup token, with what the new user must do with it. */
function printSetupToken(cli: Cli, server: string, username: string, token: string, expiresAt: string): void {
  say(cli.io, `one-time setup token for ${username} (shown only now; valid until ${expiresAt}):`);
  say(cli.io, '');
  say(cli.io, `  ${token}`);
  say(cli.io, '');
  say(cli.io, `Give it to ${username} over a trusted channel; they finish with:`);
  say(cli.io, `  airlock account setup --server ${server} --username ${username}`);
}

/** Parse `--set a,b,c` ("" means no roles). */
export function roleSet(value: string): string[] {
  return [
    ...new Set(
      value
        .split(',')
        .map((r) => r.trim())
        .filter((r) => r !== ''),
    ),
  ];
}

interface CreateUserOptions extends RemoteOptions {
  readonly role?: string[];
  readonly displayName?: string;
  readonly email?: string;
}

/** `airlock user create`: a new user and their one-time setup token. */
export async function userCreate(cli: Cli, command: Command, username: string): Promise<number> {
  const opts = command.opts<CreateUserOptions>();
  return withSession(cli, command, async (s) => {
    const body = { username, roles: opts.role ?? [], ...(opts.displayName === undefined ? {} : { displayName: opts.displayName }), ...(opts.email === undefined ? {} : { email: opts.email }) };
    const made = await s.call((c) => c.post<NewUser>('/api/v1/users', body));
    if (opts.json === true) {
      printJson(cli.io, made);
    } else {
      note(cli.io, `created user ${made.user.username} with ${made.user.roles.length === 0 ? 'no roles' : `roles ${made.user.roles.join(', ')}`}`);
      printSetupToken(cli, s.server, made.user.username, made.setupToken, made.setupExpiresAt);
    }
    return EXIT_OK;
  });
}

/** `airlock user list`. */
export async function userList(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const { users } = await s.call((c) => c.get<{ users: UserInfo[] }>('/api/v1/users'));
    if (opts.json === true) {
      printJson(cli.io, { users });
    } else {
      const rows = users.map((u) => [u.username, u.kind, list(u.roles), u.mfaEnrolled ? 'yes' : 'no', u.disabledAt === null ? 'active' : 'disabled', u.createdAt, u.email ?? '-']);
      for (const line of table(['USERNAME', 'KIND', 'ROLES', 'MFA', 'STATUS', 'CREATED', 'EMAIL'], rows)) say(cli.io, line);
    }
    return EXIT_OK;
  });
}

/** `airlock user show`. */
export async function userShow(cli: Cli, command: Command, username: string): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const user = await s.call((c) => c.get<UserInfo>(`/api/v1/users/${seg(username)}`));
    if (opts.json === true) printJson(cli.io, user);
    else printUser(cli, user);
    return EXIT_OK;
  });
}

/** `airlock user disable`: the user can no longer sign in; their sessions are revoked. */
export async function userDisable(cli: Cli, command: Command, username: string): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const user = await s.call((c) => c.post<UserInfo>(`/api/v1/users/${seg(username)}/disable`));
    if (opts.json === true) printJson(cli.io, user);
    else say(cli.io, `disabled ${user.username}; their sessions are revoked`);
    return EXIT_OK;
  });
}

interface RolesOptions extends RemoteOptions {
  readonly set: string;
}

/** `airlock user roles --set`: replace the roles (sensitive: step-up). */
export async function userRoles(cli: Cli, command: Command, username: string): Promise<number> {
  const opts = command.opts<RolesOptions>();
  return withSession(cli, command, async (s) => {
    const roles = roleSet(opts.set);
    const user = await s.call((c) => c.put<UserInfo>(`/api/v1/users/${seg(username)}/roles`, { roles }));
    if (opts.json === true) printJson(cli.io, user);
    else say(cli.io, `${user.username} now has ${user.roles.length === 0 ? 'no roles' : `roles ${user.roles.join(', ')}`}`);
    return EXIT_OK;
  });
}

interface EmailOptions extends RemoteOptions {
  readonly clear?: boolean;
}

/** `airlock user email <address> | --clear`: the address that ties commits to the user (sensitive: step-up). */
export async function userEmail(cli: Cli, command: Command, username: string, address: string | undefined): Promise<number> {
  const opts = command.opts<EmailOptions>();
  if (address !== undefined && opts.clear === true) throw new UsageError('give an address or --clear, not both');
  if (address === undefined && opts.clear !== true) throw new UsageError('give the new address, or --clear to remove it');
  return withSession(cli, command, async (s) => {
    const user = await s.call((c) => c.put<UserInfo>(`/api/v1/users/${seg(username)}/email`, { email: address ?? null }));
    if (opts.json === true) printJson(cli.io, user);
    else say(cli.io, user.email === null ? `${user.username} has no e-mail address now` : `${user.username} now has e-mail address ${user.email}`);
    return EXIT_OK;
  });
}

/** `airlock user reset`: revoke every credential and issue a new setup token. */
export async function userReset(cli: Cli, command: Command, username: string): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const reset = await s.call((c) => c.post<{ setupToken: string; setupExpiresAt: string }>(`/api/v1/users/${seg(username)}/reset`));
    if (opts.json === true) {
      printJson(cli.io, { username, ...reset });
    } else {
      note(cli.io, `reset ${username}: password, TOTP enrolment, recovery codes and sessions are revoked`);
      printSetupToken(cli, s.server, username, reset.setupToken, reset.setupExpiresAt);
    }
    return EXIT_OK;
  });
}

/** `airlock role list`. */
export async function roleList(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const { roles } = await s.call((c) => c.get<{ roles: RoleInfo[] }>('/api/v1/roles'));
    if (opts.json === true) {
      printJson(cli.io, { roles });
    } else {
      const rows = roles.map((r) => [r.name, r.builtin ? 'built-in' : 'custom', r.requiresMfa ? 'yes' : 'no', r.description]);
      for (const line of table(['ROLE', 'TYPE', 'MFA', 'DESCRIPTION'], rows)) say(cli.io, line);
    }
    return EXIT_OK;
  });
}

interface RoleCreateOptions extends RemoteOptions {
  readonly description: string;
  readonly requiresMfa?: boolean;
}

/** `airlock role create`: a custom role (permissions come from policies). */
export async function roleCreate(cli: Cli, command: Command, name: string): Promise<number> {
  const opts = command.opts<RoleCreateOptions>();
  return withSession(cli, command, async (s) => {
    const role = await s.call((c) => c.post<RoleInfo>('/api/v1/roles', { name, description: opts.description, requiresMfa: opts.requiresMfa === true }));
    if (opts.json === true) printJson(cli.io, role);
    else say(cli.io, `created role ${role.name}${role.requiresMfa ? ' (holders must use MFA)' : ''}; grant it permissions with a Cedar policy (airlock policy set)`);
    return EXIT_OK;
  });
}
