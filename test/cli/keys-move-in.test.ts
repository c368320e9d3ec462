/**
 * Upgrading an install from before issue 5 from the command line: `airlock db migrate` moves the
 * key files into the vault (logging what it moved, never the keys), deletes them, and every
 * command keeps the same checkpoint verifier key.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkpointKeyPath, loadOrCreateCheckpointKey, openCheckpoint, parseVerifierKey } from '../../src/audit/index.js';
import type { CheckpointKeyFile } from '../../src/audit/index.js';
import { loadOrCreateSealKey, readSealKeyFile, sealKeyPath } from '../../src/identity/index.js';
import { ENGINES } from '../support/engines.js';
import { cliEnv, requireBuilt, run } from './helpers.js';
import type { CliEnv } from './helpers.js';

const ORIGIN = 'airlock.local/audit';

describe.each(ENGINES)('upgrading the key files into the vault on %s', (engine) => {
  let ctx: CliEnv;
  let ckey: CheckpointKeyFile;
  let sealBytes: Buffer;
  beforeAll(async () => {
    requireBuilt();
    ctx = await cliEnv(engine);
    ckey = await loadOrCreateCheckpointKey(ctx.home, ORIGIN);
    await loadOrCreateSealKey(ctx.home);
    sealBytes = (await readSealKeyFile(ctx.home))!;
  });
  afterAll(async () => {
    await ctx.drop();
  });

  it('`db migrate` imports both keys and deletes the files; the verifier key is unchanged', async () => {
    // Before the upgrade the home's file is the trust anchor of verifier-only commands.
    const before = await run(['audit', 'key'], { env: ctx.env });
    expect(before.stdout.trim()).toBe(ckey.verifierKey);

    const migrate = await run(['db', 'migrate'], { env: ctx.env });
    expect(migrate.code, migrate.stderr).toBe(0);
    expect(migrate.stderr).toContain(`moved the identity sealing key (TOTP seeds, token signing keys, OIDC verifiers) from ${sealKeyPath(ctx.home)} into the vault`);
    expect(migrate.stderr).toContain(`moved the audit checkpoint signing key from ${checkpointKeyPath(ctx.home)} into the vault`);
    for (const form of [sealBytes.toString('base64'), sealBytes.toString('hex')]) expect(migrate.stderr + migrate.stdout).not.toContain(form);
    expect(existsSync(sealKeyPath(ctx.home))).toBe(false);
    expect(existsSync(checkpointKeyPath(ctx.home))).toBe(false);

    const [key, keyJson, signed] = await Promise.all([
      run(['audit', 'key'], { env: ctx.env }),
      run(['audit', 'key', '--json'], { env: ctx.env }),
      run(['audit', 'checkpoint', '--sign'], { env: ctx.env }),
    ]);
    expect(key.code, key.stderr).toBe(0);
    expect(key.stdout.trim()).toBe(ckey.verifierKey);
    expect(JSON.parse(keyJson.stdout)).toEqual({ verifierKey: ckey.verifierKey, name: ORIGIN, keyId: ckey.verifierKey.split('+')[1], algorithm: 'ed25519' });
    expect(signed.code, signed.stderr).toBe(0);
    expect(openCheckpoint(signed.stdout, [parseVerifierKey(ckey.verifierKey)], ORIGIN).checkpoint.size).toBeGreaterThan(0);
    const verify = await run(['audit', 'verify'], { env: ctx.env });
    expect(verify.code, verify.stdout).toBe(0);
    // Nothing is written back.
    expect(existsSync(checkpointKeyPath(ctx.home))).toBe(false);
  });
});
