/**
 * What the commands that talk to an Airlock server share: which server (`--server`, else
 * AIRLOCK_SERVER, else the stored login's), which credential (AIRLOCK_TOKEN, else the stored
 * login, sent only to the server that issued it), automatic step-up at a terminal, and hints
 * that tell a person what to run when they are not signed in.
 */
import type { Command } from 'commander';
import { AirlockError, isAirlockError } from '../../errors/index.js';
import { ApiClient, isLoopback, normaliseServerUrl } from '../api-client.js';
import type { Cli } from '../cli.js';
import { UsageError } from '../cli.js';
import { readCredentials, writeCredentials } from '../credentials.js';
import type { StoredCredentials } from '../credentials.js';
import { note } from '../io.js';
import { createPrompter } from '../prompt.js';
import type { Prompter } from '../prompt.js';

/** Options every remote command takes. */
export interface RemoteOptions {
  readonly server?: string;
  readonly json?: boolean;
}

/** A session as the server issues it at login and step-up (bearer mode). */
export interface SessionAnswer {
  readonly username: string;
  readonly sessionId: string;
  readonly expiresAt: string;
  readonly idleExpiresAt: string;
  readonly token: string;
}

/** GET /api/v1/auth/whoami. */
export interface WhoamiAnswer {
  readonly kind: string;
  readonly name: string;
  readonly roles: readonly string[];
  readonly authMethod: string;
  readonly sessionId?: string;
  readonly loginMethod?: string;
  readonly mfa?: boolean;
  readonly mfaAt?: string | null;
  readonly stepUpValidUntil?: string | null;
}

/** The server to talk to: `--server`, else AIRLOCK_SERVER, else the stored login's, else undefined. */
export function chooseServer(cli: Cli, opts: RemoteOptions, stored: StoredCredentials | undefined): string | undefined {
  if (opts.server !== undefined) return normaliseServerUrl(opts.server, '--server');
  const env = cli.io.env.AIRLOCK_SERVER;
  if (env !== undefined && env !== '') return normaliseServerUrl(env, 'AIRLOCK_SERVER');
  return stored?.server;
}

/** Like {@link chooseServer}, but a missing server is a usage error naming the fix. */
export function requireServer(cli: Cli, opts: RemoteOptions, stored: StoredCredentials | undefined): string {
  const server = chooseServer(cli, opts, stored);
  if (server === undefined) throw new UsageError('no Airlock server given: pass --server <url> (or set AIRLOCK_SERVER)');
  return server;
}

/** Plain http beyond this machine exposes passwords and tokens to the network. */
export function warnIfPlaintext(cli: Cli, server: string): void {
  if (server.startsWith('http:') && !isLoopback(server)) {
    note(cli.io, `warning: ${server} is plain http; credentials and tokens cross the network unencrypted (use https)`);
  }
}

/** Login hint for messages. */
export function loginHint(server: string | undefined, username: string | undefined): string {
  return `airlock login${server === undefined ? ' --server <url>' : ` --server ${server}`} --username ${username ?? '<name>'}`;
}

/** An authenticated conversation with one server. */
export interface Session {
  readonly server: string;
  readonly client: ApiClient;
  /** The stored login in use (undefined when the credential came from AIRLOCK_TOKEN). */
  readonly login: StoredCredentials | undefined;
  readonly prompter: Prompter;
  /**
   * Run `call`. A refusal for want of a fresh MFA proof (STEP_UP_REQUIRED) is answered, when a
   * person is at the terminal and signed in with a session, by asking for a code, stepping up
   * and retrying once; otherwise the server's message (which says to run `airlock step-up`)
   * is the error. UNAUTHENTICATED gets a hint naming the login command.
   */
  call<T>(call: (client: ApiClient) => Promise<T>): Promise<T>;
}

/** Step up the stored session with `code`, store the rotated token, and use it from now on. */
export async function stepUpSession(cli: Cli, client: ApiClient, login: StoredCredentials, code: string): Promise<StoredCredentials> {
  const s = await client.post<SessionAnswer>('/api/v1/auth/step-up', { code: code.trim() });
  // The old token was revoked by the server (session fixation defence): keep only the new one.
  const next: StoredCredentials = { server: login.server, username: s.username, token: s.token, sessionId: s.sessionId, expiresAt: s.expiresAt };
  client.setToken(next.token);
  await writeCredentials(cli.io.env, next);
  return next;
}

function withLoginHint(err: AirlockError, server: string, login: StoredCredentials | undefined, fromEnv: boolean): AirlockError {
  const hint = fromEnv
    ? 'the token in AIRLOCK_TOKEN was refused; exchange a new one with `airlock token exchange`'
    : `${login === undefined ? 'not logged in' : `the session of ${login.username} has expired or was revoked`}: run \`${loginHint(server, login?.username)}\``;
  return new AirlockError('UNAUTHENTICATED', `${err.message} (${hint})`, { ...err.details });
}

/**
 * Open an authenticated session for `command`, run `body`, and release stdin afterwards.
 * Refuses before any request when there is no credential for the chosen server.
 */
export async function withSession<T>(cli: Cli, command: Command, body: (session: Session) => Promise<T>): Promise<T> {
  const opts = command.opts<RemoteOptions>();
  const envToken = cli.io.env.AIRLOCK_TOKEN;
  const fromEnv = envToken !== undefined && envToken !== '';
  const stored = fromEnv ? undefined : await readCredentials(cli.io.env);
  const server = chooseServer(cli, opts, stored);
  if (server === undefined) {
    if (fromEnv) throw new UsageError('AIRLOCK_TOKEN is set but no server is: pass --server <url> (or set AIRLOCK_SERVER)');
    throw new AirlockError('UNAUTHENTICATED', `not logged in: run \`${loginHint(undefined, undefined)}\``);
  }
  // A stored token is only ever sent to the server that issued it.
  let login = stored !== undefined && stored.server === server ? stored : undefined;
  if (!fromEnv && login === undefined) {
    const other = stored === undefined ? '' : ` (the stored login is for ${stored.server})`;
    throw new AirlockError('UNAUTHENTICATED', `not logged in to ${server}${other}: run \`${loginHint(server, stored?.username)}\``);
  }
  warnIfPlaintext(cli, server);
  const client = new ApiClient({ server, token: fromEnv ? envToken : login?.token });
  const prompter = createPrompter(cli.io);
  const session: Session = {
    server,
    client,
    get login() {
      return login;
    },
    prompter,
    call: async <R>(call: (c: ApiClient) => Promise<R>): Promise<R> => {
      // A wrong step-up code is the server's answer about the code, not about the session.
      let stepUpFailure: unknown;
      try {
        try {
          return await call(client);
        } catch (err) {
          if (!isAirlockError(err) || err.code !== 'STEP_UP_REQUIRED' || !prompter.interactive || login === undefined) throw err;
          note(cli.io, `${err.message.replace(/: run .*$/, '')}.`);
          const code = await prompter.line('Enter the 6-digit code from your authenticator app to step up: ', 'the TOTP code');
          try {
            login = await stepUpSession(cli, client, login, code);
          } catch (failure) {
            stepUpFailure = failure;
            throw failure;
          }
          note(cli.io, 'stepped up; retrying');
          return await call(client);
        }
      } catch (err) {
        if (err !== stepUpFailure && isAirlockError(err) && err.code === 'UNAUTHENTICATED') throw withLoginHint(err, server, login, fromEnv);
        throw err;
      }
    },
  };
  try {
    return await body(session);
  } finally {
    prompter.close();
  }
}

/** Path segment for a name taken from the command line. */
export function seg(value: string): string {
  return encodeURIComponent(value);
}

/** Left-aligned columns with a header row, two spaces apart. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd(),
  );
}

/** Comma-separated list, or a dash when empty. */
export function list(values: readonly string[]): string {
  return values.length === 0 ? '-' : values.join(',');
}
