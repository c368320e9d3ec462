/**
 * Signing in from the command line: `airlock init` (the first admin, locally), `account setup`,
 * `login`, `whoami`, `logout`, `step-up` and `token exchange`. Secrets typed here (setup token,
 * password, codes, API key) are read from the terminal with echo off or from stdin, never taken
 * as arguments (shell history), and never printed.
 */
import type { Command } from 'commander';
import { localActor, openApp } from '../../app/index.js';
import { AirlockError, ValidationError, isAirlockError } from '../../errors/index.js';
import { ApiClient } from '../api-client.js';
import type { Cli } from '../cli.js';
import { EXIT_OK } from '../cli.js';
import { cliConfig, cliLogger } from '../context.js';
import { deleteCredentials, readCredentials, writeCredentials } from '../credentials.js';
import type { StoredCredentials } from '../credentials.js';
import { note, printJson, say } from '../io.js';
import { createPrompter } from '../prompt.js';
import type { Prompter } from '../prompt.js';
import type { RemoteOptions, SessionAnswer, WhoamiAnswer } from './remote.js';
import { chooseServer, list, loginHint, requireServer, stepUpSession, warnIfPlaintext, withSession } from './remote.js';

/** How many times a person at a terminal may retype a mismatched password or a wrong code. */
const TTY_ATTEMPTS = 3;

async function withPrompter<T>(cli: Cli, body: (p: Prompter) => Promise<T>): Promise<T> {
  const prompter = createPrompter(cli.io);
  try {
    return await body(prompter);
  } finally {
    prompter.close();
  }
}

function required(value: string, what: string, path: string): string {
  if (value.trim() === '') throw new ValidationError(`${what} must not be empty`, [{ path, message: 'empty' }]);
  return value;
}

// --- init (local) -------------------------------------------------------------------------

interface InitOptions {
  readonly admin: string;
  readonly displayName?: string;
  readonly json?: boolean;
}

/** `airlock init`: create the first admin directly in the database and print its setup token once. */
export async function init(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<InitOptions>();
  const config = cliConfig(cli, command);
  const app = await openApp(config, { migrate: true, logger: cliLogger(cli, config) });
  let made;
  try {
    made = await app.identity.users.init(localActor(), { username: opts.admin, displayName: opts.displayName });
  } finally {
    await app.close();
  }
  if (opts.json === true) {
    printJson(cli.io, { username: made.user.username, setupToken: made.setupToken, setupExpiresAt: made.setupExpiresAt });
    return EXIT_OK;
  }
  say(cli.io, `created the first administrator, ${made.user.username}`);
  say(cli.io, '');
  say(cli.io, `one-time setup token (shown only now; valid until ${made.setupExpiresAt}):`);
  say(cli.io, '');
  say(cli.io, `  ${made.setupToken}`);
  say(cli.io, '');
  say(cli.io, 'Start the server, then choose a password and enrol an authenticator app with:');
  say(cli.io, `  airlock account setup --server ${config.publicUrl} --username ${made.user.username}`);
  return EXIT_OK;
}

// --- account setup -------------------------------------------------------------------------

interface SetupOptions extends RemoteOptions {
  readonly username: string;
}

async function newPassword(cli: Cli, prompter: Prompter): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    const first = required(await prompter.hidden('New password: ', 'the new password'), 'the password', 'password');
    const second = await prompter.hidden('New password again: ', 'the new password again');
    if (first === second) return first;
    if (!prompter.interactive || attempt >= TTY_ATTEMPTS) throw new ValidationError('the two passwords differ', [{ path: 'password', message: 'the confirmation does not match' }]);
    note(cli.io, 'the two passwords differ; try again');
  }
}

/** `airlock account setup`: redeem a setup token, choose a password, enrol TOTP, receive recovery codes. */
export async function accountSetup(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<SetupOptions>();
  const server = requireServer(cli, opts, await readCredentials(cli.io.env).catch(() => undefined));
  warnIfPlaintext(cli, server);
  const client = new ApiClient({ server });
  const username = opts.username;
  return withPrompter(cli, async (prompter) => {
    const setupToken = required((await prompter.hidden('Setup token: ', 'the setup token')).trim(), 'the setup token', 'setupToken');
    const password = await newPassword(cli, prompter);
    const enrolment = await client.post<{ otpauthUri: string; secret: string }>('/api/v1/auth/setup', { username, setupToken, password });

    note(cli.io, '');
    note(cli.io, 'Enrol this account in your authenticator app (scan the QR code, or enter the secret by hand):');
    if (cli.io.stderrIsTTY) {
      const { default: QRCode } = await import('qrcode');
      note(cli.io, await QRCode.toString(enrolment.otpauthUri, { type: 'terminal', small: true }));
    }
    note(cli.io, `otpauth URI: ${enrolment.otpauthUri}`);
    note(cli.io, `secret: ${enrolment.secret}`);
    note(cli.io, '');

    let recoveryCodes: string[] | undefined;
    for (let attempt = 1; recoveryCodes === undefined; attempt++) {
      const code = (await prompter.line('Enter the 6-digit code from your authenticator app: ', 'the 6-digit code')).trim();
      try {
        ({ recoveryCodes } = await client.post<{ recoveryCodes: string[] }>('/api/v1/auth/setup/confirm', { username, setupToken, code }));
      } catch (err) {
        if (!(isAirlockError(err) && err.code === 'VALIDATION_FAILED' && prompter.interactive && attempt < TTY_ATTEMPTS)) throw err;
        note(cli.io, err.message);
      }
    }

    if (opts.json === true) {
      printJson(cli.io, { otpauthUri: enrolment.otpauthUri, recoveryCodes });
    } else {
      note(cli.io, 'Recovery codes: each can be used once instead of a TOTP code if you lose your device.');
      note(cli.io, 'Store them now in a safe place (a password manager); they will not be shown again.');
      for (const c of recoveryCodes) say(cli.io, c);
    }
    note(cli.io, `account ${username} is ready; sign in with: ${loginHint(server, username)}`);
    return EXIT_OK;
  });
}

// --- login, whoami, logout, step-up ----------------------------------------------------------

interface LoginOptions extends RemoteOptions {
  readonly username: string;
  readonly code?: string;
  readonly passwordStdin?: boolean;
}

/** `airlock login`: password and TOTP code for a session token, stored for later commands. */
export async function login(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<LoginOptions>();
  const stored = await readCredentials(cli.io.env).catch(() => undefined);
  const server = requireServer(cli, opts, stored);
  warnIfPlaintext(cli, server);
  return withPrompter(cli, async (prompter) => {
    const ask = prompter.interactive && opts.passwordStdin !== true;
    const password = required(await prompter.hidden(ask ? `Password for ${opts.username}: ` : '', 'the password'), 'the password', 'password');
    const code = required(opts.code ?? (await prompter.line('TOTP code (or a recovery code): ', 'the TOTP code')), 'the code', 'code').trim();
    const client = new ApiClient({ server });
    const s = await client.post<SessionAnswer>('/api/v1/auth/login', { username: opts.username, password, code, mode: 'bearer' });
    const creds: StoredCredentials = { server, username: s.username, token: s.token, sessionId: s.sessionId, expiresAt: s.expiresAt };
    const path = await writeCredentials(cli.io.env, creds);
    if (opts.json === true) {
      printJson(cli.io, { server, username: s.username, sessionId: s.sessionId, expiresAt: s.expiresAt, idleExpiresAt: s.idleExpiresAt, credentialsFile: path });
    } else {
      say(cli.io, `logged in as ${s.username} until ${s.expiresAt}`);
      note(cli.io, `session stored in ${path}; it ends after ${s.idleExpiresAt === s.expiresAt ? 'its lifetime' : `inactivity (next deadline ${s.idleExpiresAt})`} or with \`airlock logout\``);
    }
    return EXIT_OK;
  });
}

/** `airlock whoami`: the signed-in identity, its roles and MFA freshness. */
export async function whoami(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (session) => {
    const me = await session.call((c) => c.get<WhoamiAnswer>('/api/v1/auth/whoami'));
    if (opts.json === true) {
      printJson(cli.io, { server: session.server, ...me, ...(session.login === undefined ? {} : { sessionExpiresAt: session.login.expiresAt }) });
      return EXIT_OK;
    }
    const rows: [string, string][] = [
      ['name', me.name],
      ['kind', me.kind],
      ['roles', list(me.roles)],
    ];
    if (me.kind === 'user') {
      rows.push(['MFA', me.mfa === true ? `yes (last proved ${me.mfaAt ?? '?'})` : 'no']);
      rows.push(['step-up', typeof me.stepUpValidUntil === 'string' ? `valid until ${me.stepUpValidUntil}` : 'not fresh (sensitive actions will ask for `airlock step-up`)']);
      if (session.login !== undefined) rows.push(['session', `${session.login.sessionId}, expires ${session.login.expiresAt}`]);
    }
    rows.push(['auth', me.authMethod], ['server', session.server]);
    for (const [k, v] of rows) say(cli.io, `${`${k}:`.padEnd(9)}${v}`);
    return EXIT_OK;
  });
}

/** `airlock logout`: end the session on the server and delete the stored token. */
export async function logout(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  const stored = await readCredentials(cli.io.env);
  const server = chooseServer(cli, opts, stored);
  if (stored === undefined || (server !== undefined && server !== stored.server)) {
    if (opts.json === true) printJson(cli.io, { loggedOut: false, server: server ?? null });
    else note(cli.io, server === undefined || stored === undefined ? 'not logged in' : `not logged in to ${server} (the stored login is for ${stored.server})`);
    return EXIT_OK;
  }
  const client = new ApiClient({ server: stored.server, token: stored.token });
  let serverEnded = true;
  try {
    await client.post('/api/v1/auth/logout');
  } catch (err) {
    // Already expired or revoked: nothing left to end on the server; forget it here too. Any
    // other failure keeps the token, so that logging out can be retried and really end it.
    if (!(isAirlockError(err) && err.code === 'UNAUTHENTICATED')) {
      throw new AirlockError(isAirlockError(err) ? err.code : 'INTERNAL', `${isAirlockError(err) ? err.message : 'logout failed'}; the session is still valid and the stored login was kept (run \`airlock logout\` again)`, isAirlockError(err) ? { ...err.details } : {});
    }
    serverEnded = false;
  }
  await deleteCredentials(cli.io.env);
  if (opts.json === true) printJson(cli.io, { loggedOut: true, server: stored.server, username: stored.username, sessionWasValid: serverEnded });
  else say(cli.io, `logged out ${stored.username} from ${stored.server}${serverEnded ? '' : ' (the session had already ended)'}`);
  return EXIT_OK;
}

interface StepUpOptions extends RemoteOptions {
  readonly code?: string;
}

/** `airlock step-up`: prove MFA again for sensitive actions; the session token is rotated. */
export async function stepUp(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<StepUpOptions>();
  if (cli.io.env.AIRLOCK_TOKEN !== undefined && cli.io.env.AIRLOCK_TOKEN !== '') {
    throw new AirlockError('FORBIDDEN', 'step-up is for people signed in with `airlock login`; AIRLOCK_TOKEN is set');
  }
  return withSession(cli, command, async (session) => {
    const current = session.login;
    if (current === undefined) throw new AirlockError('UNAUTHENTICATED', `not logged in: run \`${loginHint(session.server, undefined)}\``);
    const code = required(opts.code ?? (await session.prompter.line('Enter the 6-digit code from your authenticator app: ', 'the TOTP code')), 'the code', 'code');
    const next = await stepUpSession(cli, session.client, current, code);
    const me = await session.call((c) => c.get<WhoamiAnswer>('/api/v1/auth/whoami'));
    const until = me.stepUpValidUntil ?? null;
    if (opts.json === true) printJson(cli.io, { username: next.username, sessionId: next.sessionId, expiresAt: next.expiresAt, stepUpValidUntil: until });
    else say(cli.io, `stepped up ${next.username}: sensitive actions allowed until ${until ?? '(unknown)'}`);
    return EXIT_OK;
  });
}

// --- token exchange ---------------------------------------------------------------------------

interface TokenOptions extends RemoteOptions {
  readonly ttl?: number;
}

interface TokenAnswer {
  readonly accessToken: string;
  readonly tokenType: string;
  readonly expiresAt: string;
  readonly serviceAccount: string;
}

/** `airlock token exchange`: a service account's API key (env or stdin) for a short-lived JWT. */
export async function tokenExchange(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<TokenOptions>();
  const server = requireServer(cli, opts, await readCredentials(cli.io.env).catch(() => undefined));
  warnIfPlaintext(cli, server);
  const fromEnv = cli.io.env.AIRLOCK_API_KEY;
  const apiKey =
    fromEnv !== undefined && fromEnv !== ''
      ? fromEnv
      : await withPrompter(cli, (p) => p.hidden(p.interactive ? 'API key: ' : '', 'the API key')).catch((err: unknown) => {
          if (isAirlockError(err) && err.code === 'VALIDATION_FAILED') return '';
          throw err;
        });
  if (apiKey.trim() === '') throw new ValidationError('no API key: set AIRLOCK_API_KEY or write the key on stdin', [{ path: 'apiKey', message: 'missing' }]);
  // No session token is sent: the key alone is the credential.
  const client = new ApiClient({ server });
  const t = await client.post<TokenAnswer>('/api/v1/auth/token', { apiKey: apiKey.trim(), ...(opts.ttl === undefined ? {} : { ttlSeconds: opts.ttl }) });
  if (opts.json === true) {
    printJson(cli.io, t);
  } else {
    say(cli.io, t.accessToken);
    note(cli.io, `token for service account ${t.serviceAccount}, valid until ${t.expiresAt}`);
  }
  return EXIT_OK;
}
