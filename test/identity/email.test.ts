/**
 * Users' e-mail addresses, on both engines: the key segregation of duties uses to tie commit
 * authors and committers to people. One address, one person (case-insensitive); admins set and
 * clear it, nobody their own (that would unmap their commits); SSO takes the IdP's address only
 * when the IdP verified it, and never one that belongs to someone else.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openApp } from '../../src/app/index.js';
import type { App } from '../../src/app/index.js';
import type { AuditEvent } from '../../src/audit/index.js';
import { isAirlockError } from '../../src/errors/index.js';
import { canonicalEmail } from '../../src/identity/index.js';
import type { Actor, UserInfo } from '../../src/identity/index.js';
import { buildServer } from '../../src/server/index.js';
import { ENGINES } from '../support/engines.js';
import { startOidcProvider, type TestOidcProvider, type TestOidcUser } from '../support/oidc-provider.js';
import { TestClock, expectError, login, makeUser, openTestApp, recordOf, rid, silent } from '../server/support.js';
import type { TestApp, TestUser } from '../server/support.js';

const PUBLIC_URL = 'http://127.0.0.1:7398';
const CALLBACK_URL = `${PUBLIC_URL}/api/v1/auth/oidc/callback`;
const SYSTEM: Actor = { kind: 'system', id: 'test' };
const ADMIN: Actor = { kind: 'user', id: 'alice' };

/** The coded error a promise rejects with (fails the test if it resolves). */
async function codeOf(p: Promise<unknown>): Promise<{ code: string; message: string; details: Readonly<Record<string, unknown>> }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isAirlockError(err)) throw new Error(`expected an AirlockError, got ${String(err)}`);
  return err;
}

describe('canonicalEmail', () => {
  it('lower-cases and trims valid addresses, as git identities are matched', () => {
    expect(canonicalEmail('  Bob@Example.COM ')).toBe('bob@example.com');
    expect(canonicalEmail('1234+Bob@users.noreply.github.com')).toBe('1234+bob@users.noreply.github.com');
    expect(canonicalEmail("o'hara.x_y-z@sub.example-corp.io")).toBe("o'hara.x_y-z@sub.example-corp.io");
    // Git often records host-only domains for local commits.
    expect(canonicalEmail('root@buildhost')).toBe('root@buildhost');
  });

  it('refuses what is not one address', () => {
    const bad: unknown[] = [
      '',
      'bob',
      'bob@',
      '@example.com',
      'bob@@example.com',
      'a b@example.com',
      'bob@exa mple.com',
      'bob@example.com\nx@y.z',
      '.bob@example.com',
      'bob.@example.com',
      'bo..b@example.com',
      'bob@-example.com',
      'bob@example-.com',
      'bob@example..com',
      'bob@example.com.',
      '"bob"@example.com',
      'bob@[127.0.0.1]',
      'Bob <bob@example.com>',
      'bøb@example.com',
      'bob@exämple.com',
      // Fullwidth commercial at: looks like @, is not.
      'bob\uff20example.com',
      `${'a'.repeat(65)}@example.com`,
      `bob@${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(60)}`,
      null,
      42,
      ['bob@example.com'],
    ];
    for (const value of bad) expect(canonicalEmail(value), JSON.stringify(value)).toBeUndefined();
    expect(canonicalEmail(`${'a'.repeat(64)}@example.com`)).toBe(`${'a'.repeat(64)}@example.com`);
  });
});

describe.each(ENGINES)('user e-mail addresses on %s', (engine) => {
  const clock = new TestClock();
  // The provider reads this object at every login, so a test may change what the IdP says.
  const idpUsers: Record<string, TestOidcUser> = {
    sue: { groups: ['devs'], amr: ['pwd', 'otp'], email: 'Sue.Smith@Example.com' },
    uma: { groups: ['devs'], amr: ['pwd', 'otp'], email: 'uma@example.com', emailVerified: false },
    lax: { groups: ['devs'], amr: ['pwd', 'otp'], email: 'lax@example.com', emailVerified: 'true' },
    thief: { groups: ['devs'], amr: ['pwd', 'otp'], email: 'Carol@Example.com' },
    nomail: { groups: ['devs'], amr: ['pwd', 'otp'] },
  };
  let idp: TestOidcProvider;
  let t: TestApp;
  let users: App['identity']['users'];
  let server: FastifyInstance;
  let admin: TestUser;

  beforeAll(async () => {
    idp = await startOidcProvider({ redirectUris: [CALLBACK_URL], users: idpUsers });
    t = await openTestApp(engine, {
      clock,
      config: {
        publicUrl: PUBLIC_URL,
        oidc: { issuer: idp.issuer, clientId: idp.clientId, clientSecret: idp.clientSecret, roleMapping: { devs: ['developer'] }, groupsClaim: 'groups', trustAmr: true, allowInsecure: true },
      },
    });
    users = t.app.identity.users;
    admin = await makeUser(t.app, clock, 'alice', ['admin']);
    server = await buildServer(t.app, { logger: silent });
  });

  afterAll(async () => {
    await server.close();
    await t.cleanup();
    await idp.close();
  });

  /** The domain's own record of a change to `username` (not the request's record). */
  async function changes(action: string, username: string): Promise<AuditEvent[]> {
    const found = await t.app.audit.search({ action, resource: `users/${username}`, order: 'asc', limit: 100 });
    return found.map((e) => e.event).filter((e) => e.details.method === undefined);
  }

  async function storedEmail(username: string): Promise<string | null | undefined> {
    return (await t.app.store.db.selectFrom('users').select('email').where('username', '=', username).executeTakeFirst())?.email;
  }

  async function call(method: 'POST' | 'PUT', url: string, token: string, payload: unknown): Promise<{ res: LightMyRequestResponse; id: string }> {
    const id = rid('email');
    const res = await server.inject({ method, url, headers: { 'x-request-id': id, authorization: `Bearer ${token}` }, payload: payload as Record<string, unknown> });
    return { res, id };
  }

  describe('in the identity domain', () => {
    it('creates a user with an address, stored and shown in lower case, and records it', async () => {
      const made = await users.create(ADMIN, { username: 'bob', roles: ['developer'], email: '  Bob@Example.COM ' });
      expect(made.user.email).toBe('bob@example.com');
      expect((await users.get('bob')).email).toBe('bob@example.com');
      expect((await users.list()).find((u) => u.username === 'bob')?.email).toBe('bob@example.com');
      expect(await storedEmail('bob')).toBe('bob@example.com');
      const [created] = await changes('users.create', 'bob');
      expect(created?.details).toEqual({ roles: ['developer'], email: 'bob@example.com' });
      // Without one the user simply has none.
      expect((await users.create(ADMIN, { username: 'dan', roles: [] })).user.email).toBeNull();
      expect((await users.get('dan')).email).toBeNull();
    });

    it('refuses an address another user has, whatever its case, and creates nothing', async () => {
      const taken = await codeOf(users.create(ADMIN, { username: 'bobby', roles: [], email: 'BOB@example.com' }));
      expect(taken.code).toBe('CONFLICT');
      expect(taken.message).toMatch(/email/);
      // The holder is not named to the caller.
      expect(taken.message).not.toContain('bob ');
      expect((await users.list()).some((u) => u.username === 'bobby')).toBe(false);
      expect(await changes('users.create', 'bobby')).toEqual([]);
      // Nor can an admin move it onto someone else.
      expect((await codeOf(users.setEmail(ADMIN, 'dan', 'Bob@EXAMPLE.com'))).code).toBe('CONFLICT');
      expect(await storedEmail('dan')).toBeNull();
      expect(await changes('users.email.update', 'dan')).toEqual([]);
    });

    it('refuses an invalid address, naming the field, and creates nothing', async () => {
      for (const email of ['bob', 'bob@', 'a b@example.com', 'Bob <bob@example.com>', 'bøb@example.com', `${'x'.repeat(65)}@example.com`]) {
        const err = await codeOf(users.create(ADMIN, { username: 'eve', roles: [], email }));
        expect(err.code, email).toBe('VALIDATION_FAILED');
        expect(err.details.issues).toEqual([{ path: 'email', message: 'is not a valid e-mail address' }]);
        expect((await codeOf(users.setEmail(ADMIN, 'dan', email))).code, email).toBe('VALIDATION_FAILED');
      }
      expect((await users.list()).some((u) => u.username === 'eve')).toBe(false);
      expect(await storedEmail('dan')).toBeNull();
    });

    it('lets an admin set, change and clear a user’s address, recording each change with from and to', async () => {
      expect((await users.setEmail(ADMIN, 'dan', 'Dan@Example.com')).email).toBe('dan@example.com');
      expect((await users.setEmail(ADMIN, 'dan', 'daniel@example.com')).email).toBe('daniel@example.com');
      // Freed addresses can be reused: the old one now belongs to nobody.
      expect((await users.create(ADMIN, { username: 'dana', roles: [], email: 'dan@example.com' })).user.email).toBe('dan@example.com');
      expect((await users.setEmail(ADMIN, 'dan', null)).email).toBeNull();
      expect(await storedEmail('dan')).toBeNull();
      const recorded = await changes('users.email.update', 'dan');
      expect(recorded.map((e) => [e.outcome, e.actor.id, e.details.from, e.details.to])).toEqual([
        ['allowed', 'alice', null, 'dan@example.com'],
        ['allowed', 'alice', 'dan@example.com', 'daniel@example.com'],
        ['allowed', 'alice', 'daniel@example.com', null],
      ]);
      expect((await codeOf(users.setEmail(ADMIN, 'nobody', 'x@example.com'))).code).toBe('NOT_FOUND');
    });

    it('refuses a change to your own address (it would unmap your commits), and records the refusal', async () => {
      await users.setEmail(SYSTEM, 'alice', 'alice@example.com');
      for (const next of ['someone-else@example.com', null]) {
        const err = await codeOf(users.setEmail(ADMIN, 'alice', next));
        expect(err.code).toBe('FORBIDDEN');
        expect(await storedEmail('alice')).toBe('alice@example.com');
      }
      const refused = (await changes('users.email.update', 'alice')).filter((e) => e.outcome === 'denied');
      expect(refused.map((e) => [e.actor, e.reason, e.details.from, e.details.to])).toEqual([
        [ADMIN, 'self_change', 'alice@example.com', 'someone-else@example.com'],
        [ADMIN, 'self_change', 'alice@example.com', null],
      ]);
      // A service account that happens to share the name is not the person.
      expect((await users.setEmail({ kind: 'service', id: 'alice' }, 'alice', 'alice@example.com')).email).toBe('alice@example.com');
    });

    it('never lets two users end up with one address, even when both are set at once from two replicas', async () => {
      // A second App on the same database stands for another replica.
      const replica = await openApp(t.app.config, { clock: clock.now });
      try {
        for (let i = 0; i < 6; i++) {
          await users.create(ADMIN, { username: `racer-a${i}`, roles: [] });
          await users.create(ADMIN, { username: `racer-b${i}`, roles: [] });
        }
        const outcomes = await Promise.allSettled(
          Array.from({ length: 6 }, (_, i) => [
            users.setEmail(ADMIN, `racer-a${i}`, `shared${i}@example.com`),
            replica.identity.users.setEmail(ADMIN, `racer-b${i}`, `SHARED${i}@example.com`),
            // And a creation racing both, in the same process.
            users.create(ADMIN, { username: `racer-c${i}`, roles: [], email: `Shared${i}@Example.com` }),
          ]).flat(),
        );
        for (let i = 0; i < 6; i++) {
          const round = outcomes.slice(i * 3, i * 3 + 3);
          expect(round.filter((o) => o.status === 'fulfilled'), `round ${i}`).toHaveLength(1);
          for (const o of round) if (o.status === 'rejected') expect((o.reason as { code?: string }).code).toBe('CONFLICT');
        }
        const rows = await t.app.store.db.selectFrom('users').select(['username', 'email']).where('email', 'like', 'shared%').execute();
        expect(rows).toHaveLength(6);
        expect(new Set(rows.map((r) => r.email)).size).toBe(6);
      } finally {
        await replica.close();
      }
    });

    it('people() lists every enabled user with their addresses, for segregation of duties', async () => {
      await users.create(ADMIN, { username: 'gone', roles: [], email: 'gone@example.com' });
      await users.disable(ADMIN, 'gone');
      const people = await users.people();
      const byId = new Map(people.map((p) => [p.id, p.identities]));
      expect(byId.get('bob')).toEqual(['bob@example.com']);
      expect(byId.get('alice')).toEqual(['alice@example.com']);
      expect(byId.get('dan')).toEqual([]);
      expect(byId.has('gone')).toBe(false);
      const enabled = (await users.list()).filter((u: UserInfo) => u.disabledAt === null);
      expect(people.map((p) => p.id)).toEqual(enabled.map((u) => u.username));
      for (const u of enabled) expect(byId.get(u.username), u.username).toEqual(u.email === null ? [] : [u.email]);
      // Inside a caller's transaction too.
      expect(await t.app.store.transact((tx) => users.people(tx.db))).toEqual(people);
    });
  });

  describe('over HTTP', () => {
    it('creates with an address, and lets an admin with a fresh MFA proof set and clear one', async () => {
      const token = await login(server, clock, admin);
      const made = await call('POST', '/api/v1/users', token, { username: 'hank', roles: ['developer'], email: 'Hank@Example.com' });
      expect(made.res.statusCode, made.res.body).toBe(201);
      expect(made.res.json<{ user: UserInfo }>().user.email).toBe('hank@example.com');

      const set = await call('PUT', '/api/v1/users/hank/email', token, { email: 'H.Hill@Example.com' });
      expect(set.res.statusCode, set.res.body).toBe(200);
      expect(set.res.json<UserInfo>()).toMatchObject({ username: 'hank', email: 'h.hill@example.com' });
      const ev = await recordOf(t.app, set.id);
      expect(ev).toMatchObject({ outcome: 'allowed', action: 'users.email.update', actor: { kind: 'user', id: 'alice' } });

      const cleared = await call('PUT', '/api/v1/users/hank/email', token, { email: null });
      expect(cleared.res.statusCode, cleared.res.body).toBe(200);
      expect(cleared.res.json<UserInfo>().email).toBeNull();

      expectError((await call('PUT', '/api/v1/users/hank/email', token, { email: 'not an address' })).res, 400, 'VALIDATION_FAILED');
      expectError((await call('PUT', '/api/v1/users/hank/email', token, {})).res, 400, 'VALIDATION_FAILED');
      expectError((await call('PUT', '/api/v1/users/hank/email', token, { email: 'BOB@example.com' })).res, 409, 'CONFLICT');
      expectError((await call('POST', '/api/v1/users', token, { username: 'ivy', email: 'bob@EXAMPLE.com' })).res, 409, 'CONFLICT');
      expect(await storedEmail('hank')).toBeNull();
      expect(await storedEmail('ivy')).toBeUndefined();
    });

    it('needs step-up: a stale MFA proof is refused with STEP_UP_REQUIRED and changes nothing', async () => {
      const token = await login(server, clock, admin);
      clock.advance(6 * 60_000);
      const stale = await call('PUT', '/api/v1/users/hank/email', token, { email: 'hank@example.com' });
      expectError(stale.res, 403, 'STEP_UP_REQUIRED');
      expect((await recordOf(t.app, stale.id)).outcome).toBe('denied');
      expect(await storedEmail('hank')).toBeNull();
    });

    it('refuses your own address even to an admin (no-self-role-change), recorded; a developer may change nobody’s', async () => {
      const token = await login(server, clock, admin);
      const own = await call('PUT', '/api/v1/users/alice/email', token, { email: 'alias@example.com' });
      expect(expectError(own.res, 403, 'FORBIDDEN').details?.policies).toContain('no-self-role-change');
      const ev = await recordOf(t.app, own.id);
      expect(ev).toMatchObject({ outcome: 'denied', action: 'users.email.update', actor: { kind: 'user', id: 'alice' } });
      expect(ev.details.policies).toContain('no-self-role-change');
      expect(await storedEmail('alice')).toBe('alice@example.com');

      const dev = await makeUser(t.app, clock, 'devon', ['developer']);
      const devToken = await login(server, clock, dev);
      expectError((await call('PUT', '/api/v1/users/devon/email', devToken, { email: 'devon@example.com' })).res, 403, 'FORBIDDEN');
      expectError((await call('PUT', '/api/v1/users/hank/email', devToken, { email: 'devon@example.com' })).res, 403, 'FORBIDDEN');
      expect(await storedEmail('devon')).toBeNull();
    });
  });

  describe('single sign-on', () => {
    const sso = () => {
      const s = t.app.identity.sso;
      if (s === undefined) throw new Error('SSO is not configured');
      return s;
    };
    /** One full login of `user` at the IdP, through the identity domain. */
    async function ssoLogin(user: string): Promise<void> {
      const { url, state } = await sso().begin();
      await sso().complete(new URL(await idp.login(url, user)), state);
    }

    it('adopts the IdP’s verified address (lower case) at the first login, and follows it when it changes', async () => {
      await ssoLogin('sue');
      expect(await storedEmail('sue')).toBe('sue.smith@example.com');
      expect((await users.get('sue')).email).toBe('sue.smith@example.com');
      // Unchanged: nothing more is recorded.
      await ssoLogin('sue');
      idpUsers.sue!.email = 'Sue.Jones@Example.com';
      await ssoLogin('sue');
      expect(await storedEmail('sue')).toBe('sue.jones@example.com');
      const recorded = await changes('users.email.update', 'sue');
      expect(recorded.map((e) => [e.outcome, e.actor, e.details.from, e.details.to, e.details.issuer])).toEqual([
        ['allowed', { kind: 'system', id: 'sso' }, null, 'sue.smith@example.com', idp.issuer],
        ['allowed', { kind: 'system', id: 'sso' }, 'sue.smith@example.com', 'sue.jones@example.com', idp.issuer],
      ]);
    });

    it('ignores an address the IdP does not mark verified (false, or the string "true")', async () => {
      await ssoLogin('uma');
      await ssoLogin('lax');
      expect(await storedEmail('uma')).toBeNull();
      expect(await storedEmail('lax')).toBeNull();
      // Nor does an unverified claim replace an address an admin set.
      await users.setEmail(ADMIN, 'uma', 'uma.admin-set@example.com');
      await ssoLogin('uma');
      expect(await storedEmail('uma')).toBe('uma.admin-set@example.com');
      // An IdP that sends no address leaves the stored one alone.
      await ssoLogin('nomail');
      expect(await storedEmail('nomail')).toBeNull();
    });

    it('refuses, without failing the login, a verified address that belongs to another user; recorded', async () => {
      await users.create(ADMIN, { username: 'carol', roles: [], email: 'carol@example.com' });
      await ssoLogin('thief');
      const row = await t.app.store.db.selectFrom('users').select(['id', 'email']).where('username', '=', 'thief').executeTakeFirstOrThrow();
      expect(row.email).toBeNull();
      // The login itself went through: a session exists.
      expect(await t.app.store.db.selectFrom('sessions').select('id').where('user_id', '=', row.id).execute()).toHaveLength(1);
      expect(await storedEmail('carol')).toBe('carol@example.com');
      const recorded = await changes('users.email.update', 'thief');
      expect(recorded.map((e) => [e.outcome, e.reason, e.details.to])).toEqual([['denied', 'email_in_use', 'carol@example.com']]);
      expect((await users.people()).find((p) => p.id === 'thief')?.identities).toEqual([]);
    });
  });
});
