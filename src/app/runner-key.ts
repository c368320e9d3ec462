/**
 * The embedded runner's link-signing key: Ed25519, `$AIRLOCK_HOME/keys/embedded-runner.pem`,
 * mode 0600. It signs what the runner saw (link records); the provenance key of the artifacts
 * work is separate, so a step that could reach this file still cannot sign provenance.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { chmod, mkdir, open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { AirlockError } from '../errors/index.js';

export interface RunnerSigner {
  readonly keyid: string;
  readonly publicKeyPem: string;
  /** Also names the key in in-toto links and layouts (docs/intoto.md). */
  readonly publicKey: KeyObject;
  sign(pae: Buffer): Buffer;
}

export async function loadOrCreateRunnerKey(home: string): Promise<RunnerSigner> {
  const dir = join(home, 'keys');
  const path = join(dir, 'embedded-runner.pem');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    const handle = await open(path, 'wx', 0o600);
    try {
      await handle.writeFile(generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const info = await stat(path);
  if ((info.mode & 0o077) !== 0) throw new AirlockError('KEY_INVALID', `${path} is readable by group or others; run chmod 600 ${path}`);
  await chmod(path, 0o600);
  const privateKey = createPrivateKey(await readFile(path));
  const publicKeyPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
  const keyid = `sha256:${createHash('sha256').update(createPublicKey(privateKey).export({ type: 'spki', format: 'der' })).digest('hex')}`;
  return { keyid, publicKeyPem, publicKey: createPublicKey(privateKey), sign: (pae) => sign(null, pae, privateKey) };
}
