/**
 * Identity and access through the real CLI against a real server: the first admin (`init`),
 * account setup with TOTP, login, roles and step-up, a service account's key exchanged for a JWT
 * that stops working when the key is revoked, and logout. The whole flow runs on SQLite and the
 * core of it on PostgreSQL. A stand-in HTTP server covers the answers a real one cannot be made to
 * give on demand (stale step-up, lock-out, a proxy's page) and the client's refusals.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/storage/index.js';
import type { CliEnv, RunResult, ServerChild } from './helpers.js';
import { cliEnv, json, requireBuilt, run, startServer } from './helpers.js';
import type { StandIn , Authenticator} from './identity-helpers.js';
import { converse, errorBody, expectOk, setupAccount, standIn } from './identity-helpers.js';

const ADMIN_PASSWORD = 'correct horse battery staple admin';
const BOB_PASSWORD = 'bobs very long passphrase 1234';
const JWT_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

interface Whoami {
  server: string;
  kind: string;
  name: string;
  roles: string[];
  mfa?: boolean;
  stepUpValidUntil?: string | null;
}

/** Every CLI command this feature adds (each must answer --help). */
const NEW_COMMANDS = [
  ['init'],
  ['account'],
  ['account', 'setup'],
  ['login'],
  ['whoami'],
  ['logout'],
  ['step-up'],
  ['token'],
  ['token', 'exchange'],
  ['user'],
  ['user', 'create'],
  ['user', 'list'],
  ['user', 'show'],
  ['user', 'disable'],
  ['user', 'roles'],
  ['user', 'reset'],
  ['role'],
  ['role', 'list'],
  ['role', 'create'],
  ['service-account'],
  ['service-account', 'create'],
  ['service-account', 'list'],
  ['service-account', 'disable'],
  ['service-account', 'key'],
  ['service-account', 'key', 'create'],
  ['service-account', 'key', 'list'],
  ['service-account', 'key', 'revoke'],
  ['policy'],
  ['policy', 'get'],
  ['policy', 'set'],
  ['policy', 'versions'],
];

function defineIdentitySuite(engine: Engine, full: boolean): void {
  describe(`identity CLI on ${engine}`, () => {
    // The SQLite pass runs everything; the PostgreSQL pass the storage-dependent core only
    // (the rest is engine-independent client behaviour). Not registered, so never "skipped".
    const itFull = (name: string, fn: () => Promise<void>, timeout?: number): void => {
      if (full) it(name, fn, timeout);
    };
    let ctx: CliEnv;
    let server: ServerChild | undefined;
    let url = '';
    let scratch: string;
    let adminEnv: Record<string, string>;
    let bobEnv: Record<string, string>;
    let adminTotp: Authenticator;
    let bobTotp: Authenticator;
    let bobSetupToken: string;
    let apiKey: string;
    let keyId: string;
    let jwt: string;
    let adminSessionToken: string;
    const admin = (...args: string[]) => run(args, { env: adminEnv });
    const bob = (...args: string[]) => run(args, { env: bobEnv });
    const credentialsFile = (env: Record<string, string>): string => join(env.AIRLOCK_CLI_CONFIG_DIR!, 'credentials.json');
    const whoamiWith = (token: string) => fetch(`${url}/api/v1/auth/whoami`, { headers: { authorization: `Bearer ${token}` } });

    beforeAll(async () => {
      requireBuilt();
      ctx = await cliEnv(engine);
      scratch = mkdtempSync(join(tmpdir(), 'airlock-cli-identity-'));
      // Each person has their own CLI configuration directory (not created yet: login creates it 0700).
      adminEnv = { ...ctx.env, AIRLOCK_CLI_CONFIG_DIR: join(scratch, 'admin', 'airlock') };
      bobEnv = { AIRLOCK_CLI_CONFIG_DIR: join(scratch, 'bob', 'airlock') };
    });
    afterAll(async () => {
      await server?.stop();
      await ctx.drop();
      rmSync(scratch, { recursive: true, force: true });
    });

    it('init creates the first admin locally and prints the setup token once; a second init is refused', async () => {
      const first = await run(['init', '--admin', 'admin', '--display-name', 'First Admin', '--json'], { env: ctx.env });
      expectOk(first, 'init');
      const made = json<{ username: string; setupToken: string; setupExpiresAt: string }>(first);
      expect(made.username).toBe('admin');
      expect(made.setupToken.length).toBeGreaterThanOrEqual(20);
      expect(Date.parse(made.setupExpiresAt)).toBeGreaterThan(Date.now());
      adminEnv.SETUP_TOKEN = made.setupToken;

      const again = await run(['init', '--admin', 'mallory'], { env: ctx.env });
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/^airlock: .*already initialised.* \(CONFLICT\)$/m);
      expect(again.stdout).toBe('');

      server = await startServer(ctx.env);
      url = server.url;
      adminEnv.AIRLOCK_SERVER = url;
      bobEnv.AIRLOCK_SERVER = url;
    });

    it('account setup redeems the token, enrols TOTP and prints recovery codes once', async () => {
      const setupToken = adminEnv.SETUP_TOKEN!;
      delete adminEnv.SETUP_TOKEN;
      const { result, totp } = await setupAccount({ username: 'admin', setupToken, password: ADMIN_PASSWORD, env: adminEnv });
      expectOk(result, 'account setup');
      adminTotp = totp;
      const out = json<{ otpauthUri: string; recoveryCodes: string[] }>(result);
      expect(out.otpauthUri).toMatch(/^otpauth:\/\/totp\/.*secret=/);
      expect(Object.keys(out).sort()).toEqual(['otpauthUri', 'recoveryCodes']);
      expect(out.recoveryCodes.length).toBeGreaterThanOrEqual(8);
      expect(result.stdout + result.stderr).not.toContain(ADMIN_PASSWORD);
      expect(result.stdout + result.stderr).not.toContain(setupToken);

      // The token is spent: redeeming it again is refused.
      const reuse = converse(['account', 'setup', '--username', 'admin'], { env: adminEnv });
      for (const l of [setupToken, ADMIN_PASSWORD, ADMIN_PASSWORD]) reuse.line(l);
      reuse.end();
      const refused = await reuse.result;
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/\(UNAUTHENTICATED\)$/m);
    });

    it('login stores a 0600 session file without the password and never prints the password', async () => {
      const r = await run(['login', '--username', 'admin', '--password-stdin', '--code', await adminTotp.code()], { env: adminEnv, input: `${ADMIN_PASSWORD}\n` });
      expectOk(r, 'login');
      expect(r.stdout).toMatch(/^logged in as admin until \d{4}-\d\d-\d\dT[\d:.]+Z$/m);
      expect(r.stdout + r.stderr).not.toContain(ADMIN_PASSWORD);

      const file = credentialsFile(adminEnv);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(statSync(adminEnv.AIRLOCK_CLI_CONFIG_DIR!).mode & 0o777).toBe(0o700);
      const text = readFileSync(file, 'utf8');
      expect(text).not.toContain(ADMIN_PASSWORD);
      const stored = JSON.parse(text) as Record<string, string>;
      expect(Object.keys(stored).sort()).toEqual(['expiresAt', 'server', 'sessionId', 'token', 'username']);
      expect(stored).toMatchObject({ server: url, username: 'admin' });
      adminSessionToken = stored.token!;
      expect(r.stdout + r.stderr).not.toContain(adminSessionToken);
    });

    it('whoami shows the admin, human and JSON', async () => {
      const [human, machine] = await Promise.all([admin('whoami'), admin('whoami', '--json')]);
      expectOk(human, 'whoami');
      expect(human.stdout).toMatch(/^name: +admin$/m);
      expect(human.stdout).toMatch(/^roles: +admin$/m);
      expect(human.stdout).toMatch(/^MFA: +yes/m);
      const me = json<Whoami>(machine);
      expect(me).toMatchObject({ server: url, kind: 'user', name: 'admin', roles: ['admin'], mfa: true });
    });

    it('creates bob, who sets up his account and logs in', async () => {
      const r = await admin('user', 'create', 'bob', '--role', 'developer', '--json');
      expectOk(r, 'user create');
      const made = json<{ user: { username: string; roles: string[] }; setupToken: string }>(r);
      expect(made.user).toMatchObject({ username: 'bob', roles: ['developer'] });
      bobSetupToken = made.setupToken;

      const { result, totp } = await setupAccount({ username: 'bob', setupToken: bobSetupToken, password: BOB_PASSWORD, env: bobEnv });
      expectOk(result, 'bob account setup');
      bobTotp = totp;
      const login = await run(['login', '--username', 'bob', '--password-stdin', '--code', await bobTotp.code()], { env: bobEnv, input: `${BOB_PASSWORD}\n` });
      expectOk(login, 'bob login');
      expect(login.stdout).toContain('logged in as bob until ');
    });

    it('bob cannot grant himself admin (FORBIDDEN, exit 1), and his roles are unchanged', async () => {
      const r = await bob('user', 'roles', 'bob', '--set', 'admin');
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^airlock: .* \(FORBIDDEN\)$/m);
      expect(r.stdout).toBe('');
      const me = json<Whoami>(await bob('whoami', '--json'));
      expect(me.roles).toEqual(['developer']);
    });

    it('the admin steps up (token rotated, old one revoked) and then changes bob\'s roles', async () => {
      const before = readFileSync(credentialsFile(adminEnv), 'utf8');
      const up = await admin('step-up', '--code', await adminTotp.code(), '--json');
      expectOk(up, 'step-up');
      const stepped = json<{ username: string; stepUpValidUntil: string | null }>(up);
      expect(stepped.username).toBe('admin');
      expect(Date.parse(stepped.stepUpValidUntil ?? '')).toBeGreaterThan(Date.now());
      const after = JSON.parse(readFileSync(credentialsFile(adminEnv), 'utf8')) as { token: string };
      expect(after.token).not.toBe((JSON.parse(before) as { token: string }).token);
      expect((await whoamiWith(adminSessionToken)).status).toBe(401);
      adminSessionToken = after.token;

      const r = await admin('user', 'roles', 'bob', '--set', 'developer,security-auditor', '--json');
      expectOk(r, 'user roles');
      expect(json<{ roles: string[] }>(r).roles).toEqual(['developer', 'security-auditor']);
      expect(json<Whoami>(await bob('whoami', '--json')).roles).toEqual(['developer', 'security-auditor']);
    });

    it('a service account key is exchanged for a JWT that works until the key is revoked', async () => {
      const created = await admin('service-account', 'create', 'ci', '--role', 'developer', '--description', 'CI pipeline', '--json');
      expectOk(created, 'service-account create');
      expect(json(created)).toMatchObject({ name: 'ci', roles: ['developer'] });

      const key = await admin('service-account', 'key', 'create', 'ci', '--description', 'test key', '--expires-in-days', '30');
      expectOk(key, 'key create');
      apiKey = key.stdout.trim();
      expect(apiKey).toMatch(/^alk_\S+$/);
      expect(key.stderr).toContain('will not be shown again');
      expect(key.stderr).not.toContain(apiKey);

      const list = await admin('service-account', 'key', 'list', 'ci', '--json');
      expectOk(list, 'key list');
      const keys = json<{ keys: { id: string; revokedAt: string | null }[] }>(list).keys;
      expect(keys).toHaveLength(1);
      keyId = keys[0]!.id;
      expect(list.stdout).not.toContain(apiKey);

      // No login needed: the key is the credential, read from the environment, never an argument.
      const exchanged = await run(['token', 'exchange'], { env: { AIRLOCK_SERVER: url, AIRLOCK_API_KEY: apiKey } });
      expectOk(exchanged, 'token exchange');
      jwt = exchanged.stdout.trim();
      expect(jwt).toMatch(JWT_RE);
      expect(exchanged.stderr).toContain('service account ci');
      expect(exchanged.stderr).not.toContain(apiKey);

      const res = await whoamiWith(jwt);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ kind: 'service', name: 'ci', roles: ['developer'] });

      const revoked = await admin('service-account', 'key', 'revoke', 'ci', keyId);
      expectOk(revoked, 'key revoke');
      expect((await whoamiWith(jwt)).status).toBe(401);
      const again = await run(['token', 'exchange', '--server', url], { env: {}, input: `${apiKey}\n` });
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/\(UNAUTHENTICATED\)$/m);
    });

    itFull('lists, shows and reads everything as JSON and as text', async () => {
      const results = await Promise.all([
        admin('user', 'list', '--json'),
        admin('user', 'list'),
        admin('user', 'show', 'bob', '--json'),
        admin('user', 'show', 'bob'),
        admin('role', 'list', '--json'),
        admin('role', 'list'),
        admin('service-account', 'list', '--json'),
        admin('service-account', 'key', 'list', 'ci'),
        admin('policy', 'versions', '--json'),
        admin('policy', 'get', '--json'),
        admin('policy', 'get'),
      ]);
      results.forEach((r, i) => expectOk(r, `read ${i}`));
      const [users, usersText, bobJson, bobText, roles, rolesText, accounts, keysText, versions, policyJson, policyText] = results as [RunResult, ...RunResult[]];
      expect(json<{ users: { username: string }[] }>(users).users.map((u) => u.username)).toEqual(['admin', 'bob']);
      expect(usersText!.stdout).toMatch(/^bob +local +developer,security-auditor +yes +active/m);
      expect(json(bobJson!)).toMatchObject({ username: 'bob', mfaEnrolled: true, disabledAt: null });
      expect(bobText!.stdout).toMatch(/^roles: +developer,security-auditor$/m);
      expect(json<{ roles: { name: string }[] }>(roles!).roles.map((r) => r.name)).toContain('security-auditor');
      expect(rolesText!.stdout).toMatch(/^admin +built-in +yes/m);
      expect(json<{ serviceAccounts: { name: string }[] }>(accounts!).serviceAccounts.map((a) => a.name)).toEqual(['ci']);
      expect(keysText!.stdout).toMatch(new RegExp(`^${keyId} +revoked`, 'm'));
      expect(json<{ versions: unknown[] }>(versions!).versions.length).toBeGreaterThanOrEqual(1);
      const active = json<{ version: number; policies: Record<string, string> }>(policyJson!);
      expect(Object.keys(active.policies)).toContain('step-up-required');
      expect(policyText!.stdout).toContain(`// version ${active.version}, sha256:`);
      expect(policyText!.stdout).toContain('@id("step-up-required")');
    });

    itFull('policy set replaces the set from .cedar files as a new version; a broken file is refused', async () => {
      const active = json<{ version: number; policies: Record<string, string> }>(await admin('policy', 'get', '--json'));
      const ids = Object.keys(active.policies);
      const half = Math.ceil(ids.length / 2);
      const files = [ids.slice(0, half), ids.slice(half)].map((group, i) => {
        const f = join(scratch, `part${i}.cedar`);
        writeFileSync(f, group.map((id) => active.policies[id]).join('\n\n'));
        return f;
      });
      const set = await admin('policy', 'set', ...files, '--reason', 'round trip through the CLI', '--json');
      expectOk(set, 'policy set');
      expect(json<{ version: number }>(set).version).toBe(active.version + 1);
      const versions = json<{ versions: { version: number; reason: string }[] }>(await admin('policy', 'versions', '--json')).versions;
      expect(versions.find((v) => v.version === active.version + 1)?.reason).toBe('round trip through the CLI');

      const broken = join(scratch, 'broken.cedar');
      writeFileSync(broken, '@id("oops") permit (principal, action, resource) when { ;');
      const refused = await admin('policy', 'set', broken, '--reason', 'should fail');
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/\((POLICY_INVALID|VALIDATION_FAILED)\)$/m);
      const missing = await admin('policy', 'set', join(scratch, 'nope.cedar'), '--reason', 'x');
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain('(NOT_FOUND)');
    });

    itFull('refuses a replayed TOTP code and a wrong password without echoing the password', async () => {
      const replay = await run(['login', '--username', 'bob', '--password-stdin', '--code', bobTotp.usedCode()], { env: bobEnv, input: `${BOB_PASSWORD}\n` });
      expect(replay.code).toBe(1);
      expect(replay.stderr).toMatch(/\(UNAUTHENTICATED\)$/m);
      const wrong = await run(['login', '--username', 'bob', '--password-stdin', '--code', '000000'], { env: bobEnv, input: 'not-the-password-xyz\n' });
      expect(wrong.code).toBe(1);
      expect(wrong.stdout + wrong.stderr).not.toContain('not-the-password-xyz');
      // Bob's earlier session is still the stored one and still works.
      expectOk(await bob('whoami'), 'bob whoami after failed logins');
    });

    itFull('refuses a credentials file other users can read, naming the fix (exit 2)', async () => {
      const file = credentialsFile(bobEnv);
      chmodSync(file, 0o644);
      try {
        const r = await bob('whoami');
        expect(r.code).toBe(2);
        expect(r.stderr).toMatch(/^airlock: the credentials file .* is accessible by other users \(mode 0644\).*chmod 600.* \(CONFIG_INVALID\)$/m);
      } finally {
        chmodSync(file, 0o600);
      }
    });

    itFull('user reset issues a new setup token and revokes the sessions; disable locks bob out', async () => {
      const reset = await admin('user', 'reset', 'bob', '--json');
      expectOk(reset, 'user reset');
      expect(json<{ setupToken: string }>(reset).setupToken).not.toBe(bobSetupToken);
      const stale = await bob('whoami');
      expect(stale.code).toBe(1);
      expect(stale.stderr).toMatch(/session of bob has expired or was revoked.*airlock login .*--username bob.*\(UNAUTHENTICATED\)$/m);

      const disabled = await admin('user', 'disable', 'bob', '--json');
      expectOk(disabled, 'user disable');
      expect(json<{ disabledAt: string | null }>(disabled).disabledAt).not.toBeNull();
    });

    it('logout ends the session on the server and locally; whoami then fails (exit 1)', async () => {
      const out = await admin('logout');
      expectOk(out, 'logout');
      expect(out.stdout).toContain('logged out admin');
      expect(existsSync(credentialsFile(adminEnv))).toBe(false);
      expect((await whoamiWith(adminSessionToken)).status).toBe(401);

      const who = await admin('whoami');
      expect(who.code).toBe(1);
      expect(who.stderr).toMatch(/^airlock: not logged in.*airlock login --server .* \(UNAUTHENTICATED\)$/m);
      expect(who.stdout).toBe('');
      // Logging out twice is harmless.
      expectOk(await admin('logout'), 'second logout');
    });
  });
}

defineIdentitySuite('sqlite', true);
// PostgreSQL at 127.0.0.1:5432 is real and never skipped (test/support/engines.ts).
defineIdentitySuite('postgres', false);

describe('identity CLI: client behaviour', () => {
  let fake: StandIn;
  let scratch: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    requireBuilt();
    fake = await standIn();
    scratch = mkdtempSync(join(tmpdir(), 'airlock-cli-client-'));
    env = { AIRLOCK_CLI_CONFIG_DIR: join(scratch, 'cfg') };
  });
  afterAll(async () => {
    await fake.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('answers --help for every new command with a description', async () => {
    const results = await Promise.all(NEW_COMMANDS.map((path) => run([...path, '--help'])));
    NEW_COMMANDS.forEach((path, i) => {
      const r = results[i]!;
      expect(r.code, path.join(' ')).toBe(0);
      expect(r.stdout, path.join(' ')).toContain(`Usage: airlock ${path.join(' ')}`);
    });
    expect(results[NEW_COMMANDS.findIndex((p) => p.join(' ') === 'token exchange')]!.stdout).toContain('AIRLOCK_API_KEY');
  });

  it('needs a server: a usage error (exit 2) naming --server and AIRLOCK_SERVER', async () => {
    const [login, exchange, bad] = await Promise.all([
      run(['login', '--username', 'alice', '--code', '123456'], { env, input: 'pw\n' }),
      run(['token', 'exchange'], { env: { ...env, AIRLOCK_API_KEY: 'alk_x' } }),
      run(['login', '--username', 'alice', '--server', 'ftp://example.com'], { env }),
    ]);
    for (const r of [login, exchange]) {
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^airlock: no Airlock server given: pass --server <url> \(or set AIRLOCK_SERVER\) \(USAGE\)$/m);
    }
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('https://');
  });

  it('names the server it cannot reach, and never prints the password or the key', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const [login, exchange] = await Promise.all([
      run(['login', '--username', 'alice', '--server', dead, '--password-stdin', '--code', '123456'], { env, input: 'hunter2-password\n' }),
      run(['token', 'exchange', '--server', dead], { env: { ...env, AIRLOCK_API_KEY: 'alk_secretkeymaterial' } }),
    ]);
    for (const r of [login, exchange]) {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^airlock: cannot reach the Airlock server at ${dead.replace(/\./g, '\\.')}.* \\(SERVER_UNREACHABLE\\)$`, 'm'));
      expect(r.stdout + r.stderr).not.toContain('hunter2-password');
      expect(r.stdout + r.stderr).not.toContain('secretkeymaterial');
    }
  });

  it('passes the server\'s error code and message through, with the retry time for TOO_MANY_ATTEMPTS', async () => {
    fake.answer({ status: 429, headers: { 'retry-after': '120' }, body: errorBody('TOO_MANY_ATTEMPTS', 'too many failed attempts; try again in 120 s', { retryAfterSeconds: 120 }) });
    const r = await run(['login', '--username', 'alice', '--server', fake.url, '--password-stdin', '--code', '123456'], { env, input: 'pw-one-two-three\n' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^airlock: too many failed attempts; try again in 120 s \(at \d{4}-\d\d-\d\dT[\d:.]+Z\) \(TOO_MANY_ATTEMPTS\)$/m);
    const sent = JSON.parse(fake.seen.at(-1)!.body) as Record<string, unknown>;
    expect(sent).toEqual({ username: 'alice', password: 'pw-one-two-three', code: '123456', mode: 'bearer' });
    expect(existsSync(join(env.AIRLOCK_CLI_CONFIG_DIR!, 'credentials.json'))).toBe(false);

    fake.answer({ status: 400, body: errorBody('VALIDATION_FAILED', 'invalid request', { issues: [{ path: 'password', message: 'must be at least 12 characters long' }] }) });
    const v = await run(['login', '--username', 'alice', '--server', fake.url, '--password-stdin', '--code', '1'], { env, input: 'short\n' });
    expect(v.code).toBe(1);
    expect(v.stderr).toMatch(/^airlock: invalid request \(VALIDATION_FAILED\)\n {2}password: must be at least 12 characters long$/m);

    fake.answer({ status: 502, headers: { 'content-type': 'text/html' }, body: '<html>Bad gateway</html>' });
    const proxy = await run(['token', 'exchange', '--server', fake.url], { env: { ...env, AIRLOCK_API_KEY: 'alk_x' } });
    expect(proxy.code).toBe(1);
    expect(proxy.stderr).toMatch(/HTTP 502 without an Airlock error body.*\(BAD_RESPONSE\)$/m);

    fake.answer({ status: 302, headers: { location: 'http://evil.example/' } });
    const redirect = await run(['token', 'exchange', '--server', fake.url], { env: { ...env, AIRLOCK_API_KEY: 'alk_x' } });
    expect(redirect.code).toBe(1);
    expect(redirect.stderr).toMatch(/redirect, which is not followed.*\(BAD_RESPONSE\)$/m);
  });

  it('stores the login, sends the token only to the server that issued it, and fails STEP_UP_REQUIRED without a terminal', async () => {
    fake.answer({ status: 201, body: JSON.stringify({ username: 'alice', sessionId: 's1', expiresAt: '2099-01-01T00:00:00.000Z', idleExpiresAt: '2099-01-01T00:00:00.000Z', csrfToken: 'c', token: 'sess_token_value_123' }) });
    const login = await run(['login', '--username', 'alice', '--server', fake.url, '--password-stdin', '--code', '123456'], { env, input: 'pw-one-two-three\n' });
    expectOk(login, 'login against the stand-in');
    expect(login.stdout + login.stderr).not.toContain('sess_token_value_123');

    // Another server: the stored token is not sent there; the command refuses before any request.
    const other = await standIn();
    try {
      const r = await run(['whoami', '--server', other.url], { env });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`not logged in to ${other.url.replace(/\./g, '\\.')} \\(the stored login is for ${fake.url.replace(/\./g, '\\.')}\\).*\\(UNAUTHENTICATED\\)$`, 'm'));
      expect(other.seen).toHaveLength(0);
    } finally {
      await other.close();
    }

    const before = fake.seen.length;
    fake.answer({ status: 403, body: errorBody('STEP_UP_REQUIRED', 'users.roles.update needs a fresh MFA proof: run `airlock step-up` (or POST /api/v1/auth/step-up) and retry within 5 minutes') });
    const r = await run(['user', 'roles', 'bob', '--set', ''], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^airlock: users\.roles\.update needs a fresh MFA proof: run `airlock step-up`.* \(STEP_UP_REQUIRED\)$/m);
    const sent = fake.seen.slice(before);
    // Exactly one request (no step-up attempt without a terminal), with the stored bearer token and "" as no roles.
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ method: 'PUT', url: '/api/v1/users/bob/roles' });
    expect(sent[0]!.headers.authorization).toBe('Bearer sess_token_value_123');
    expect(JSON.parse(sent[0]!.body)).toEqual({ roles: [] });

    // Logout with an already-ended session still forgets it locally.
    fake.answer({ status: 401, body: errorBody('UNAUTHENTICATED', 'authentication required: the credentials are missing, invalid or expired') });
    const out = await run(['logout'], { env });
    expectOk(out, 'logout');
    expect(out.stdout).toContain('(the session had already ended)');
    expect(existsSync(join(env.AIRLOCK_CLI_CONFIG_DIR!, 'credentials.json'))).toBe(false);
  });

  it('refuses a credentials file that is a symbolic link', async () => {
    const dir = join(scratch, 'linked');
    const target = join(scratch, 'elsewhere.json');
    writeFileSync(target, JSON.stringify({ server: fake.url, username: 'a', token: 't', sessionId: 's', expiresAt: 'x' }), { mode: 0o600 });
    mkdirSync(dir, { mode: 0o700 });
    symlinkSync(target, join(dir, 'credentials.json'));
    const r = await run(['whoami'], { env: { AIRLOCK_CLI_CONFIG_DIR: dir } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/symbolic link.*\(CONFIG_INVALID\)$/m);
  });
});

function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => done(port));
    });
  });
}
