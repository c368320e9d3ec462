import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, it, expect } from 'vitest';

import { AirlockError } from '../../src/errors/index.js';
import { openCheckpoint, parseVerifierKey, signNote, formatCheckpoint } from '../../src/audit/checkpoint.js';
import { checkpointKeyPath, loadOrCreateCheckpointKey, loadVerifierKey } from '../../src/audit/keys.js';

const NAME = 'airlock.example/audit';
const posix = process.platform !== 'win32';

const homes: string[] = [];

function tempHome(): string {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-'));
  homes.push(home);
  return home;
}

afterAll(() => {
  for (const home of homes) fs.rmSync(home, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<AirlockError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof AirlockError) return err;
    throw err;
  }
  throw new Error('expected an AirlockError, but the promise resolved');
}

/** Writes a key file as a user might, with owner-only permissions unless told otherwise. */
function writeKeyFile(home: string, content: string, mode = 0o600): string {
  const file = checkpointKeyPath(home);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, content, { mode });
  fs.chmodSync(file, mode);
  return file;
}

/** Every base64 body line of a PEM, so a test can assert none of it leaked into a message. */
function pemBodyLines(pem: string): string[] {
  return pem.split('\n').filter((l) => l !== '' && !l.startsWith('-----'));
}

describe('loadOrCreateCheckpointKey', () => {
  it('creates an Ed25519 PKCS#8 key with mode 0600 in a 0700 keys directory', async () => {
    const home = tempHome();
    const key = await loadOrCreateCheckpointKey(home, NAME);
    expect(key.created).toBe(true);
    expect(key.path).toBe(path.join(home, 'keys', 'audit-checkpoint.pem'));
    if (posix) {
      expect(fs.statSync(key.path).mode & 0o777).toBe(0o600);
      expect(fs.statSync(path.dirname(key.path)).mode & 0o777).toBe(0o700);
    }
    const pem = fs.readFileSync(key.path, 'utf8');
    expect(pem.startsWith('-----BEGIN PRIVATE KEY-----\n')).toBe(true);
    // No temporary files are left behind.
    expect(fs.readdirSync(path.dirname(key.path))).toEqual(['audit-checkpoint.pem']);

    expect(key.publicKey).toHaveLength(32);
    expect(key.signer.name).toBe(NAME);
    const verifier = parseVerifierKey(key.verifierKey);
    expect(verifier.keyId.equals(key.signer.keyId)).toBe(true);
    const cp = { origin: NAME, size: 3, rootHash: Buffer.alloc(32, 9), extensions: [] };
    const note = signNote(formatCheckpoint(cp), [key.signer]);
    expect(openCheckpoint(note, [verifier], NAME).checkpoint).toEqual(cp);
  });

  it('returns the same key on the next load', async () => {
    const home = tempHome();
    const first = await loadOrCreateCheckpointKey(home, NAME);
    const pem = fs.readFileSync(first.path, 'utf8');
    const second = await loadOrCreateCheckpointKey(home, NAME);
    expect(second.created).toBe(false);
    expect(second.publicKey.equals(first.publicKey)).toBe(true);
    expect(second.verifierKey).toBe(first.verifierKey);
    expect(fs.readFileSync(first.path, 'utf8')).toBe(pem);
  });

  it('returns one key to concurrent first calls in the same home', async () => {
    const home = tempHome();
    const results = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateCheckpointKey(home, NAME)));
    const keys = new Set(results.map((r) => r.publicKey.toString('hex')));
    expect(keys.size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(fs.readdirSync(path.join(home, 'keys'))).toEqual(['audit-checkpoint.pem']);
  });

  it.runIf(posix)('refuses a key file readable by others, and says how to fix it', async () => {
    const home = tempHome();
    const { path: file } = await loadOrCreateCheckpointKey(home, NAME);
    const pem = fs.readFileSync(file, 'utf8');
    for (const mode of [0o644, 0o640, 0o604, 0o620, 0o660]) {
      fs.chmodSync(file, mode);
      const err = await rejection(loadOrCreateCheckpointKey(home, NAME));
      expect(err.code).toBe('KEY_INVALID');
      expect(err.details).toEqual({ reason: 'insecure_permissions', path: file });
      expect(err.message).toContain(`chmod 600 ${file}`);
      for (const line of pemBodyLines(pem)) expect(err.message).not.toContain(line);
    }
    // The key was not replaced: fixing the mode brings the same key back.
    fs.chmodSync(file, 0o600);
    expect((await loadOrCreateCheckpointKey(home, NAME)).created).toBe(false);
    expect(fs.readFileSync(file, 'utf8')).toBe(pem);
  });

  it('refuses RSA and EC private keys', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const pems = [
      rsa.export({ format: 'pem', type: 'pkcs8' }).toString(),
      rsa.export({ format: 'pem', type: 'pkcs1' }).toString(),
      ec.export({ format: 'pem', type: 'pkcs8' }).toString(),
      ec.export({ format: 'pem', type: 'sec1' }).toString(),
    ];
    for (const pem of pems) {
      const home = tempHome();
      const file = writeKeyFile(home, pem);
      const err = await rejection(loadOrCreateCheckpointKey(home, NAME));
      expect(err.code).toBe('KEY_INVALID');
      expect(err.details).toEqual({ reason: 'wrong_key_type', path: file });
      for (const line of pemBodyLines(pem)) expect(err.message).not.toContain(line);
      expect(JSON.stringify(err.details)).not.toContain(pemBodyLines(pem)[0]);
      expect(fs.readFileSync(file, 'utf8')).toBe(pem); // never overwritten
    }
  });

  it('refuses an unparsable, truncated, public-only or encrypted key file without quoting it', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const good = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const contents = [
      'not a key at all: c2VjcmV0LW1hdGVyaWFs\n',
      good.slice(0, 60),
      '',
      publicKey.export({ format: 'pem', type: 'spki' }).toString(),
      privateKey.export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'pw' }).toString(),
    ];
    for (const content of contents) {
      const home = tempHome();
      const file = writeKeyFile(home, content);
      const err = await rejection(loadOrCreateCheckpointKey(home, NAME));
      expect(err.code).toBe('KEY_INVALID');
      expect(err.details).toEqual({ reason: 'unreadable', path: file });
      expect(err.cause).toBeUndefined();
      for (const line of pemBodyLines(content)) expect(err.message).not.toContain(line);
      expect(err.message).not.toContain('c2VjcmV0LW1hdGVyaWFs');
      expect(fs.readFileSync(file, 'utf8')).toBe(content);
    }
  });

  it('refuses a directory where the key file should be', async () => {
    const home = tempHome();
    fs.mkdirSync(checkpointKeyPath(home), { recursive: true });
    const err = await rejection(loadOrCreateCheckpointKey(home, NAME));
    expect(err.details.reason).toBe('unreadable');
  });

  it('validates the key name before creating anything', async () => {
    const home = tempHome();
    const err = await rejection(loadOrCreateCheckpointKey(home, 'bad name'));
    expect(err.code).toBe('KEY_INVALID');
    expect(err.details.reason).toBe('bad_name');
    expect(fs.existsSync(path.join(home, 'keys'))).toBe(false);
  });
});

describe('loadVerifierKey', () => {
  it('returns the public half matching the signing key', async () => {
    const home = tempHome();
    const key = await loadOrCreateCheckpointKey(home, NAME);
    const pub = await loadVerifierKey(home, NAME);
    expect(pub.verifierKey).toBe(key.verifierKey);
    expect(pub.publicKey.equals(key.publicKey)).toBe(true);
    expect(pub.path).toBe(key.path);
    expect(pub.verifier.keyId.equals(key.signer.keyId)).toBe(true);
    expect(Object.keys(pub).sort()).toEqual(['path', 'publicKey', 'verifier', 'verifierKey']);
  });

  it('does not create a key, and reports a missing one', async () => {
    const home = tempHome();
    const err = await rejection(loadVerifierKey(home, NAME));
    expect(err.code).toBe('KEY_INVALID');
    expect(err.details).toEqual({ reason: 'missing', path: checkpointKeyPath(home) });
    expect(fs.existsSync(path.join(home, 'keys'))).toBe(false);
  });

  it.runIf(posix)('applies the same permission check', async () => {
    const home = tempHome();
    const { path: file } = await loadOrCreateCheckpointKey(home, NAME);
    fs.chmodSync(file, 0o644);
    const err = await rejection(loadVerifierKey(home, NAME));
    expect(err.details.reason).toBe('insecure_permissions');
  });
});
