/**
 * Credential primitives: passwords, TOTP, recovery codes, sealing, opaque tokens. Each security
 * property has a negative test: the attack is tried and must be refused.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { hash } from '@node-rs/argon2';
import type { Algorithm } from '@node-rs/argon2';
import { afterAll, describe, expect, it } from 'vitest';

import { AirlockError, ValidationError } from '../../src/errors/index.js';
import { ARGON2_OPTIONS, checkPasswordPolicy, hashPassword, needsRehash, verifyAgainstDummy, verifyPassword } from '../../src/identity/passwords.js';
import { hashRecoveryCode, newRecoveryCodes } from '../../src/identity/recovery-codes.js';
import { loadOrCreateSealKey, sealKeyFromBytes, sealKeyPath } from '../../src/identity/seal.js';
import { checkCsrf, csrfTokenFor, newApiKey, newSessionToken, newSetupToken, parseApiKey, tokenHash, tokenKind } from '../../src/identity/secret-tokens.js';
import { newTotpSecret, totpAt, totpStep, totpUri, verifyTotp } from '../../src/identity/totp.js';

const posix = process.platform !== 'win32';
const homes: string[] = [];
function tempHome(): string {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-prim-'));
  homes.push(home);
  return home;
}
afterAll(() => {
  for (const home of homes) fs.rmSync(home, { recursive: true, force: true });
});

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

async function rejected(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('passwords', () => {
  it('round-trips with argon2id at the configured cost', async () => {
    const h = await hashPassword('correct horse battery staple');
    expect(h.startsWith('$argon2id$v=19$m=65536,t=2,p=1$')).toBe(true);
    expect(h).not.toContain('correct horse');
    expect(await verifyPassword(h, 'correct horse battery staple')).toBe(true);
    expect(needsRehash(h)).toBe(false);
  });

  it('refuses a wrong password, including one differing only in case or a trailing space', async () => {
    const h = await hashPassword('correct horse battery staple');
    expect(await verifyPassword(h, 'correct horse battery stapl')).toBe(false);
    expect(await verifyPassword(h, 'Correct horse battery staple')).toBe(false);
    expect(await verifyPassword(h, 'correct horse battery staple ')).toBe(false);
    expect(await verifyPassword(h, '')).toBe(false);
  });

  it('normalises Unicode (NFKC), so composed and decomposed accents verify alike', async () => {
    const h = await hashPassword('caf\u00e9 au lait, s\u2019il vous pla\u00eet');
    expect(await verifyPassword(h, 'cafe\u0301 au lait, s\u2019il vous pla\u00eet')).toBe(true);
  });

  it('returns false (never throws) for a malformed, empty or foreign hash', async () => {
    const good = await hashPassword('correct horse battery staple');
    for (const bad of ['', 'not a hash', '$argon2id$', good.slice(0, -5), good.replace('$argon2id$', '$argon2x$'), '$2b$12$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz012345']) {
      expect(await verifyPassword(bad, 'correct horse battery staple')).toBe(false);
    }
  });

  it('refuses absurdly long input without hashing it, and never stores a hash it could not check', async () => {
    const h = await hashPassword('correct horse battery staple');
    const huge = 'x'.repeat(1_000_000);
    expect(await verifyAgainstDummy(huge)).toBe(false);
    const median = async (pw: string): Promise<number> => {
      const samples: number[] = [];
      for (let i = 0; i < 3; i++) {
        const start = performance.now();
        expect(await verifyPassword(h, pw)).toBe(false);
        samples.push(performance.now() - start);
      }
      return samples.sort((a, b) => a - b)[1]!;
    };
    // Refused before argon2 runs: far cheaper than checking an ordinary wrong password.
    expect(await median(huge)).toBeLessThan((await median('wrong password here')) / 2);
    expect(await rejected(hashPassword(huge))).toBeInstanceOf(ValidationError);
  });

  it('refuses an argon2i or argon2d hash of the right password (no algorithm downgrade)', async () => {
    // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment -- Algorithm.Argon2i; const enums cannot be read here
    const argon2i: Algorithm = 1;
    const weak = await hash('correct horse battery staple', { ...ARGON2_OPTIONS, algorithm: argon2i });
    expect(weak.startsWith('$argon2i$')).toBe(true);
    expect(await verifyPassword(weak, 'correct horse battery staple')).toBe(false);
    expect(needsRehash(weak)).toBe(true);
  });

  it('flags a hash with older parameters for rehash', async () => {
    const old = await hash('correct horse battery staple', { ...ARGON2_OPTIONS, memoryCost: 19_456 });
    expect(await verifyPassword(old, 'correct horse battery staple')).toBe(true);
    expect(needsRehash(old)).toBe(true);
    expect(needsRehash('garbage')).toBe(true);
  });

  it('verifyAgainstDummy returns false and costs about as much as a real wrong-password check', async () => {
    const h = await hashPassword('correct horse battery staple');
    expect(await verifyAgainstDummy('correct horse battery staple')).toBe(false);
    expect(await verifyAgainstDummy('airlock-dummy-password-for-timing')).toBe(false);
    // Warm both paths, then compare medians: a skipped dummy would be ~0 ms against ~30 ms.
    await verifyPassword(h, 'warm up');
    const time = async (fn: () => Promise<boolean>): Promise<number> => {
      const samples: number[] = [];
      for (let i = 0; i < 5; i++) {
        const start = performance.now();
        await fn();
        samples.push(performance.now() - start);
      }
      samples.sort((a, b) => a - b);
      return samples[2]!;
    };
    const real = await time(() => verifyPassword(h, 'wrong password here'));
    const dummy = await time(() => verifyAgainstDummy('wrong password here'));
    const ratio = dummy / real;
    // Generous bounds: on a loaded 2-core machine single runs vary; without the dummy the ratio is ~0.00002.
    expect(ratio).toBeGreaterThan(0.2);
    expect(ratio).toBeLessThan(5);
  });

  it('enforces the SP 800-63B policy and names the rule', () => {
    expect(() => checkPasswordPolicy('twelve chars')).not.toThrow();
    expect(() => checkPasswordPolicy('a'.repeat(256))).not.toThrow();
    expect(() => checkPasswordPolicy('alllowercaseandnodigits')).not.toThrow(); // no composition rules
    const short = thrown(() => checkPasswordPolicy('elevenchars'));
    expect(short).toBeInstanceOf(ValidationError);
    expect((short as ValidationError).message).toMatch(/at least 12 characters/);
    expect((short as ValidationError).issues).toEqual([{ path: 'password', message: 'must be at least 12 characters long' }]);
    expect((short as ValidationError).message).not.toContain('elevenchars');
    const long = thrown(() => checkPasswordPolicy('a'.repeat(257))) as ValidationError;
    expect(long.message).toMatch(/at most 256 characters/);
    const blank = thrown(() => checkPasswordPolicy(' '.repeat(20))) as ValidationError;
    expect(blank.message).toMatch(/whitespace/);
    expect(blank.issues[0]?.path).toBe('password');
    const both = thrown(() => checkPasswordPolicy('   ')) as ValidationError;
    expect(both.issues).toHaveLength(2);
    // Characters are code points: 12 emoji pass, though they are 24 UTF-16 units; 11 do not.
    expect(() => checkPasswordPolicy('\u{1F512}'.repeat(12))).not.toThrow();
    expect(() => checkPasswordPolicy('\u{1F512}'.repeat(11))).toThrow(ValidationError);
  });
});

describe('TOTP', () => {
  // RFC 6238 appendix B, from ../shared/reference/identity.md (8 digits, T0 = 0, 30 s).
  const seeds = {
    SHA1: Buffer.from('12345678901234567890', 'ascii'),
    SHA256: Buffer.from('12345678901234567890123456789012', 'ascii'),
    SHA512: Buffer.from('1234567890'.repeat(6) + '1234', 'ascii'),
  } as const;
  const vectors: readonly [number, string, string, string][] = [
    [59, '94287082', '46119246', '90693936'],
    [1111111109, '07081804', '68084774', '25091201'],
    [1111111111, '14050471', '67062674', '99943326'],
    [1234567890, '89005924', '91819424', '93441116'],
    [2000000000, '69279037', '90698825', '38618901'],
    [20000000000, '65353130', '77737706', '47863826'],
  ];

  it.each(vectors)('matches RFC 6238 appendix B at T=%i', (t, sha1, sha256, sha512) => {
    const time = new Date(t * 1000);
    expect(seeds.SHA512).toHaveLength(64);
    expect(totpAt(seeds.SHA1, time, { digits: 8, algorithm: 'SHA1' })).toBe(sha1);
    expect(totpAt(seeds.SHA256, time, { digits: 8, algorithm: 'SHA256' })).toBe(sha256);
    expect(totpAt(seeds.SHA512, time, { digits: 8, algorithm: 'SHA512' })).toBe(sha512);
    // Defaults are SHA1 with 6 digits: the last six of the 8-digit SHA1 value (RFC 4226 truncation).
    expect(totpAt(seeds.SHA1, time)).toBe(sha1.slice(2));
  });

  const secret = Buffer.from('3132333435363738393031323334353637383930', 'hex');
  const now = new Date('2026-03-01T12:00:10Z');
  const step = totpStep(now);
  const at = (s: number): Date => new Date(s * 30_000 + 1000);

  it('creates 160-bit secrets and an otpauth:// URI an app can enrol from', () => {
    const s = newTotpSecret();
    expect(s).toHaveLength(20);
    expect(newTotpSecret().equals(s)).toBe(false);
    const uri = new URL(totpUri(s, 'alice', 'Airlock'));
    expect(uri.protocol).toBe('otpauth:');
    expect(uri.host).toBe('totp');
    expect(decodeURIComponent(uri.pathname)).toBe('/Airlock:alice');
    expect(uri.searchParams.get('issuer')).toBe('Airlock');
    expect(uri.searchParams.get('algorithm')).toBe('SHA1');
    expect(uri.searchParams.get('digits')).toBe('6');
    expect(uri.searchParams.get('period')).toBe('30');
    expect(uri.searchParams.get('secret')).toMatch(/^[A-Z2-7]{32}$/);
  });

  it('accepts the current code and returns its step', () => {
    expect(verifyTotp(secret, totpAt(secret, now), 0, now)).toEqual({ ok: true, step });
  });

  it('accepts one step of drift either side', () => {
    expect(verifyTotp(secret, totpAt(secret, at(step - 1)), 0, now)).toEqual({ ok: true, step: step - 1 });
    expect(verifyTotp(secret, totpAt(secret, at(step + 1)), 0, now)).toEqual({ ok: true, step: step + 1 });
  });

  it('refuses codes two steps away as wrong', () => {
    expect(verifyTotp(secret, totpAt(secret, at(step - 2)), 0, now)).toEqual({ ok: false, reason: 'wrong' });
    expect(verifyTotp(secret, totpAt(secret, at(step + 2)), 0, now)).toEqual({ ok: false, reason: 'wrong' });
  });

  it('refuses a code from another secret', () => {
    expect(verifyTotp(newTotpSecret(), totpAt(secret, now), 0, now)).toEqual({ ok: false, reason: 'wrong' });
  });

  it('refuses the same code twice (replay in its step)', () => {
    const code = totpAt(secret, now);
    const first = verifyTotp(secret, code, 0, now);
    expect(first.ok).toBe(true);
    const last = first.ok ? first.step : -1;
    expect(verifyTotp(secret, code, last, new Date(now.getTime() + 5000))).toEqual({ ok: false, reason: 'replayed' });
  });

  it('refuses an older code once a newer step was used', () => {
    const older = totpAt(secret, at(step - 1));
    expect(verifyTotp(secret, older, step, now)).toEqual({ ok: false, reason: 'replayed' });
    // ...but the next step's code is still fresh.
    expect(verifyTotp(secret, totpAt(secret, at(step + 1)), step, now)).toEqual({ ok: true, step: step + 1 });
  });

  it('refuses malformed codes before computing anything', () => {
    const code = totpAt(secret, now);
    for (const bad of ['', '12345', '1234567', 'abcdef', '12345a', '١٢٣٤٥٦', '123-456', '+12345', `${code}0`]) {
      expect(verifyTotp(secret, bad, 0, now)).toEqual({ ok: false, reason: 'malformed' });
    }
    // Spaces are tolerated (apps show "123 456").
    expect(verifyTotp(secret, ` ${code.slice(0, 3)} ${code.slice(3)} `, 0, now)).toEqual({ ok: true, step });
  });
});

describe('recovery codes', () => {
  it('issues ten distinct grouped base32 codes of 100 bits', () => {
    const codes = newRecoveryCodes();
    expect(codes).toHaveLength(10);
    expect(new Set(codes).size).toBe(10);
    for (const c of codes) expect(c).toMatch(/^[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}$/);
    expect(newRecoveryCodes(3)).toHaveLength(3);
  });

  it('hashes the normalised code with SHA-256 (case, spaces and dashes ignored)', () => {
    const [code] = newRecoveryCodes(1);
    const h = hashRecoveryCode(code!);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(hashRecoveryCode(code!.toUpperCase())).toBe(h);
    expect(hashRecoveryCode(code!.replace(/-/g, ' '))).toBe(h);
    expect(hashRecoveryCode(code!.replace(/-/g, ''))).toBe(h);
    expect(hashRecoveryCode('ABCDE-fghij klmno-PQRST')).toBe(createHash('sha256').update('abcdefghijklmnopqrst').digest('hex'));
    expect(hashRecoveryCode(newRecoveryCodes(1)[0]!)).not.toBe(h);
  });
});

describe('seal', () => {
  const key = sealKeyFromBytes(randomBytes(32));
  const other = sealKeyFromBytes(randomBytes(32));

  it('round-trips under the same AAD', () => {
    const plain = Buffer.from('JBSWY3DPEHPK3PXP seed', 'utf8');
    const sealed = key.seal(plain, 'totp:u1');
    expect(sealed).toMatch(/^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]{22}$/);
    expect(key.open(sealed, 'totp:u1').equals(plain)).toBe(true);
    expect(key.open(key.seal(Buffer.alloc(0), 'x'), 'x')).toHaveLength(0);
  });

  it('uses a fresh nonce each time', () => {
    const plain = Buffer.from('same', 'utf8');
    expect(key.seal(plain, 'a')).not.toBe(key.seal(plain, 'a'));
  });

  it('never shows the plaintext in the sealed string (plain, base64, base64url, hex)', () => {
    const plain = Buffer.from('super-secret-totp-seed-0123456789', 'utf8');
    const sealed = key.seal(plain, 'totp:u1');
    for (const form of [plain.toString('utf8'), plain.toString('base64'), plain.toString('base64url'), plain.toString('hex')]) {
      expect(sealed).not.toContain(form.slice(0, 12));
    }
  });

  function expectKeyInvalid(fn: () => unknown, sealed: string): void {
    const err = thrown(fn);
    expect(err).toBeInstanceOf(AirlockError);
    expect((err as AirlockError).code).toBe('KEY_INVALID');
    expect((err as AirlockError).message).not.toContain(sealed);
    expect((err as AirlockError).details).toEqual({ reason: 'unseal_failed' });
  }

  it('refuses the wrong AAD (a value moved to another record)', () => {
    const sealed = key.seal(Buffer.from('seed of u1'), 'totp:u1');
    expectKeyInvalid(() => key.open(sealed, 'totp:u2'), sealed);
  });

  it('refuses the wrong key', () => {
    const sealed = key.seal(Buffer.from('seed of u1'), 'totp:u1');
    expectKeyInvalid(() => other.open(sealed, 'totp:u1'), sealed);
  });

  it('refuses any flipped byte in nonce, ciphertext or tag, and malformed input', () => {
    const sealed = key.seal(Buffer.from('seed of u1 with some length'), 'totp:u1');
    const parts = sealed.split('.');
    for (const i of [1, 2, 3]) {
      const bytes = Buffer.from(parts[i]!, 'base64url');
      bytes[0]! ^= 0x01;
      const tampered = parts.map((p, j) => (j === i ? bytes.toString('base64url') : p)).join('.');
      expectKeyInvalid(() => key.open(tampered, 'totp:u1'), tampered);
    }
    const truncatedTag = [parts[0], parts[1], parts[2], Buffer.from(parts[3]!, 'base64url').subarray(0, 4).toString('base64url')].join('.');
    expectKeyInvalid(() => key.open(truncatedTag, 'totp:u1'), truncatedTag);
    for (const bad of ['', 'v1', 'v2.' + parts.slice(1).join('.'), `${sealed}.x`, sealed.replace('.', '!')]) {
      expect((thrown(() => key.open(bad, 'totp:u1')) as AirlockError).code).toBe('KEY_INVALID');
    }
  });

  it('refuses a key of the wrong length', () => {
    expect((thrown(() => sealKeyFromBytes(randomBytes(16))) as AirlockError).code).toBe('KEY_INVALID');
  });

  it('creates the key file with mode 0600 in a 0700 directory, and reloads the same key', async () => {
    const home = tempHome();
    const first = await loadOrCreateSealKey(home);
    const file = sealKeyPath(home);
    expect(file).toBe(path.join(home, 'keys', 'identity-seal.key'));
    if (posix) {
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    }
    expect(Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'base64')).toHaveLength(32);
    const second = await loadOrCreateSealKey(home);
    expect(second.open(first.seal(Buffer.from('x'), 'a'), 'a').toString()).toBe('x');
  });

  it('gives concurrent first loads the same key', async () => {
    const home = tempHome();
    const [a, b] = await Promise.all([loadOrCreateSealKey(home), loadOrCreateSealKey(home)]);
    expect(b.open(a.seal(Buffer.from('x'), 'a'), 'a').toString()).toBe('x');
    expect(fs.readdirSync(path.dirname(sealKeyPath(home)))).toEqual(['identity-seal.key']);
  });

  it.runIf(posix)('refuses a key file that group or others can read', async () => {
    const home = tempHome();
    await loadOrCreateSealKey(home);
    fs.chmodSync(sealKeyPath(home), 0o644);
    const err = (await rejected(loadOrCreateSealKey(home))) as AirlockError;
    expect(err.code).toBe('KEY_INVALID');
    expect(err.details.reason).toBe('insecure_permissions');
    expect(err.message).toMatch(/chmod 600/);
    const content = fs.readFileSync(sealKeyPath(home), 'utf8').trim();
    expect(err.message).not.toContain(content);
  });

  it('refuses a key file of the wrong length without quoting it', async () => {
    const home = tempHome();
    fs.mkdirSync(path.join(home, 'keys'), { mode: 0o700 });
    const short = randomBytes(16).toString('base64');
    fs.writeFileSync(sealKeyPath(home), short, { mode: 0o600 });
    const err = (await rejected(loadOrCreateSealKey(home))) as AirlockError;
    expect(err.code).toBe('KEY_INVALID');
    expect(err.details.reason).toBe('wrong_length');
    expect(err.message).not.toContain(short);
  });
});

describe('secret tokens', () => {
  it('formats session and setup tokens with their prefix and 256 random bits', () => {
    const s = newSessionToken();
    expect(s).toMatch(/^als_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(s.slice(4), 'base64url')).toHaveLength(32);
    const u = newSetupToken();
    expect(u).toMatch(/^alsu_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(u.slice(5), 'base64url')).toHaveLength(32);
    expect(newSessionToken()).not.toBe(s);
  });

  it('formats API keys as alk_<id>_<secret> with a public 12-character id', () => {
    const { id, key } = newApiKey();
    expect(id).toMatch(/^[a-z2-7]{12}$/);
    expect(key.startsWith(`alk_${id}_`)).toBe(true);
    expect(Buffer.from(key.slice(`alk_${id}_`.length), 'base64url')).toHaveLength(32);
    expect(parseApiKey(key)).toEqual({ id, key });
    expect(newApiKey().id).not.toBe(id);
  });

  it('parseApiKey refuses near misses', () => {
    const { id, key } = newApiKey();
    const secret = key.slice(`alk_${id}_`.length);
    const nearMisses = [
      '',
      key.slice(0, -1),
      `${key}A`,
      ` ${key}`,
      `${key}\n`,
      key.replace('alk_', 'ALK_'),
      key.replace('alk_', 'alk-'),
      `alk_${id.toUpperCase()}_${secret}`,
      `alk_${id.slice(1)}_${secret}`,
      `alk_${id}0_${secret}`,
      `alk_${id}${secret}`,
      `alk_${id}_${secret.slice(0, 42)}=`,
      `alk_${id}_${secret.slice(0, 42)}B`, // last base64url char of 32 bytes can carry only 2 bits
      newSessionToken(),
    ];
    for (const text of nearMisses) expect(parseApiKey(text)).toBeUndefined();
  });

  it('hashes tokens with stable SHA-256 hex', () => {
    const t = newSessionToken();
    expect(tokenHash(t)).toMatch(/^[0-9a-f]{64}$/);
    expect(tokenHash(t)).toBe(tokenHash(t));
    expect(tokenHash(t)).not.toBe(tokenHash(newSessionToken()));
    expect(tokenHash('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'); // FIPS 180-2 vector
  });

  it('accepts the derived CSRF token and refuses anything else', () => {
    const session = newSessionToken();
    const csrf = csrfTokenFor(session);
    expect(csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(csrfTokenFor(session)).toBe(csrf);
    expect(checkCsrf(session, csrf)).toBe(true);
    expect(checkCsrf(session, undefined)).toBe(false);
    expect(checkCsrf(session, '')).toBe(false);
    expect(checkCsrf(session, csrfTokenFor(newSessionToken()))).toBe(false);
    expect(checkCsrf(session, session)).toBe(false);
    expect(checkCsrf(session, csrf.slice(0, -1))).toBe(false);
    expect(checkCsrf(session, `${csrf}x`)).toBe(false);
    expect(checkCsrf(session, csrf.toUpperCase() === csrf ? `${csrf.slice(0, -1)}!` : csrf.toUpperCase())).toBe(false);
    expect(checkCsrf('', csrfTokenFor(''))).toBe(false);
  });

  it('classifies tokens by format', () => {
    expect(tokenKind(newSessionToken())).toBe('session');
    expect(tokenKind(newSetupToken())).toBe('setup');
    expect(tokenKind(newApiKey().key)).toBe('api-key');
    expect(tokenKind('eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln')).toBe('jwt');
    expect(tokenKind('')).toBe('unknown');
    expect(tokenKind('als_short')).toBe('unknown');
    expect(tokenKind('ghp_0123456789abcdef0123456789abcdef0123')).toBe('unknown');
    expect(tokenKind('eyJ.a.b.c')).toBe('unknown');
  });
});
