/**
 * AIRLOCK_MASTER_KEY: the key itself (hex, base64), a file (mode 0600 or stricter), or a key
 * generated into the home for embedded installs. Every refusal is checked for not echoing the
 * value or the file's contents.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AirlockError } from '../../src/errors/index.js';
import { RootKey, loadRootKey, masterKeyPath } from '../../src/vault/index.js';
import { refusal } from '../support/refusal.js';

let home: string;

beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'airlock-vault-key-'));
});
afterEach(() => {
  rmSync(home, { recursive: true, force: true });
});


/** The error says nothing of `secret`, in its message or its details. */
function expectNoEcho(err: AirlockError, secret: string): void {
  expect(err.message).not.toContain(secret);
  expect(JSON.stringify(err.details)).not.toContain(secret);
}

const keyBytes = (): Buffer => randomBytes(32);

describe('loadRootKey from AIRLOCK_MASTER_KEY', () => {
  it('accepts the key as 64 hex characters and as base64 (standard and URL alphabets), naming the same key', async () => {
    const bytes = keyBytes();
    const hex = await loadRootKey({ env: { AIRLOCK_MASTER_KEY: bytes.toString('hex') }, home });
    const hexUpper = await loadRootKey({ env: { AIRLOCK_MASTER_KEY: bytes.toString('hex').toUpperCase() }, home });
    const b64 = await loadRootKey({ env: { AIRLOCK_MASTER_KEY: `${bytes.toString('base64')}\n` }, home });
    const b64url = await loadRootKey({ env: { AIRLOCK_MASTER_KEY: bytes.toString('base64url') }, home });
    expect(hex).toMatchObject({ created: false, source: 'env-value' });
    expect(b64.source).toBe('env-value');
    expect(hex.key.id).toMatch(/^root_[0-9a-f]{16}$/);
    expect(new Set([hex.key.id, hexUpper.key.id, b64.key.id, b64url.key.id]).size).toBe(1);
    expect(RootKey.fromBytes(bytes).id).toBe(hex.key.id);
    expect(RootKey.fromBytes(keyBytes()).id).not.toBe(hex.key.id);
    // Nothing is written to the home when the key is given.
    expect(existsSync(masterKeyPath(home))).toBe(false);
  });

  it('never shows the key bytes when a RootKey is printed or serialised', async () => {
    const bytes = keyBytes();
    const { key } = await loadRootKey({ env: { AIRLOCK_MASTER_KEY: bytes.toString('base64') }, home });
    const shown = [inspect(key, { showHidden: true, depth: 5 }), JSON.stringify(key), String(Object.values(key))];
    for (const text of shown) {
      for (const form of [bytes.toString('hex'), bytes.toString('base64'), bytes.toString('base64url')]) expect(text).not.toContain(form);
      expect(text).toContain(key.id);
    }
  });

  it('reads a key file given by absolute path when it is mode 0600 or 0400', async () => {
    const bytes = keyBytes();
    const file = join(home, 'master.key');
    writeFileSync(file, `${bytes.toString('base64')}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
    const loaded = await loadRootKey({ env: { AIRLOCK_MASTER_KEY: file }, home });
    expect(loaded).toMatchObject({ created: false, source: 'env-file', path: file });
    expect(loaded.key.id).toBe(RootKey.fromBytes(bytes).id);
    chmodSync(file, 0o400);
    writeFileSync(join(home, 'hex.key'), bytes.toString('hex'), { mode: 0o400 });
    expect((await loadRootKey({ env: { AIRLOCK_MASTER_KEY: file }, home })).key.id).toBe(loaded.key.id);
    expect((await loadRootKey({ env: { AIRLOCK_MASTER_KEY: join(home, 'hex.key') }, home })).key.id).toBe(loaded.key.id);
  });

  it.each([0o644, 0o640, 0o604, 0o660])('refuses a key file with mode %o (readable or writable by others)', async (mode) => {
    const bytes = keyBytes();
    const file = join(home, 'master.key');
    writeFileSync(file, bytes.toString('base64'));
    chmodSync(file, mode);
    const err = await refusal(loadRootKey({ env: { AIRLOCK_MASTER_KEY: file }, home }));
    expect(err.code).toBe('KEY_INVALID');
    expect(err.details).toMatchObject({ reason: 'insecure_permissions', setting: 'AIRLOCK_MASTER_KEY' });
    expect(err.message).toContain(`mode ${mode.toString(8)}`);
    expect(err.message).toContain('chmod 600');
    expectNoEcho(err, bytes.toString('base64'));
  });

  it('refuses a key file that does not hold exactly one 32-byte key, without quoting it', async () => {
    const file = join(home, 'bad.key');
    for (const content of [randomBytes(31).toString('base64'), `${keyBytes().toString('hex')}00`, 'correct horse battery staple', '']) {
      writeFileSync(file, content, { mode: 0o600 });
      const err = await refusal(loadRootKey({ env: { AIRLOCK_MASTER_KEY: file }, home }));
      expect(err.code).toBe('KEY_INVALID');
      expect(err.details).toMatchObject({ reason: 'malformed' });
      if (content !== '') expectNoEcho(err, content);
    }
  });

  it('refuses a key file that does not exist', async () => {
    const err = await refusal(loadRootKey({ env: { AIRLOCK_MASTER_KEY: join(home, 'missing.key') }, home }));
    expect(err.code).toBe('KEY_INVALID');
    expect(err.details).toMatchObject({ reason: 'missing_file' });
  });

  it.each([
    ['a short password', 'hunter2-but-longer'],
    ['a relative path', 'keys/master.key'],
    ['31 bytes of hex', randomBytes(31).toString('hex')],
    ['33 bytes of base64', Buffer.alloc(33, 0x5a).toString('base64')],
    // 43 base64 characters carry 258 bits: a key whose 2 spare bits are set is not canonical.
    ['non-canonical base64', `${keyBytes().toString('base64url').slice(0, 42)}B`],
    ['hex with a stray character', `${keyBytes().toString('hex').slice(0, 63)}g`],
  ])('refuses %s as AIRLOCK_MASTER_KEY without echoing it', async (_label, value) => {
    const err = await refusal(loadRootKey({ env: { AIRLOCK_MASTER_KEY: value }, home, generate: true }));
    expect(err.code).toBe('KEY_INVALID');
    expect(err.details).toMatchObject({ reason: 'malformed', setting: 'AIRLOCK_MASTER_KEY' });
    expect(err.message).toContain('AIRLOCK_MASTER_KEY');
    expectNoEcho(err, value);
    expect(existsSync(masterKeyPath(home))).toBe(false); // a bad value never falls back to a generated key
  });

  it('refuses a set but empty AIRLOCK_MASTER_KEY instead of generating a key', async () => {
    const err = await refusal(loadRootKey({ env: { AIRLOCK_MASTER_KEY: '  ' }, home, generate: true }));
    expect(err.details).toMatchObject({ reason: 'empty' });
    expect(existsSync(masterKeyPath(home))).toBe(false);
  });
});

describe('loadRootKey in the Airlock home', () => {
  it('generates a key into keys/master.key (0600, directory 0700) in embedded mode, then reuses it', async () => {
    const first = await loadRootKey({ env: {}, home, generate: true });
    const file = masterKeyPath(home);
    expect(first).toMatchObject({ created: true, source: 'generated', path: file });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(home, 'keys')).mode & 0o777).toBe(0o700);
    const text = readFileSync(file, 'utf8').trim();
    expect(Buffer.from(text, 'base64')).toHaveLength(32);
    expect(RootKey.fromBytes(Buffer.from(text, 'base64')).id).toBe(first.key.id);

    const again = await loadRootKey({ env: {}, home, generate: true });
    expect(again).toMatchObject({ created: false, source: 'home-file' });
    expect(again.key.id).toBe(first.key.id);
    // An existing home key is used even where generation is not allowed.
    expect((await loadRootKey({ env: {}, home })).key.id).toBe(first.key.id);
    // AIRLOCK_MASTER_KEY wins over the home file.
    const other = keyBytes();
    expect((await loadRootKey({ env: { AIRLOCK_MASTER_KEY: other.toString('hex') }, home })).key.id).toBe(RootKey.fromBytes(other).id);
  });

  it('creates exactly one key when several processes start at once', async () => {
    const all = await Promise.all(Array.from({ length: 6 }, () => loadRootKey({ env: {}, home, generate: true })));
    expect(new Set(all.map((l) => l.key.id)).size).toBe(1);
    expect(all.filter((l) => l.created)).toHaveLength(1);
  });

  it('refuses a home key file others can read', async () => {
    await loadRootKey({ env: {}, home, generate: true });
    chmodSync(masterKeyPath(home), 0o644);
    const err = await refusal(loadRootKey({ env: {}, home, generate: true }));
    expect(err.details).toMatchObject({ reason: 'insecure_permissions' });
    expect(err.message).toContain(masterKeyPath(home));
  });

  it('refuses to start without a key when generation is not allowed (managed installs), creating nothing', async () => {
    const err = await refusal(loadRootKey({ env: {}, home }));
    expect(err.code).toBe('KEY_INVALID');
    expect(err.details).toMatchObject({ reason: 'missing' });
    expect(err.message).toContain('AIRLOCK_MASTER_KEY is not set');
    expect(existsSync(join(home, 'keys'))).toBe(false);
  });
});
