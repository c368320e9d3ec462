/** `airlock secret rewrap`: local, like `db migrate` (it needs the database and the root key). */
import type { Command } from 'commander';
import { localActor, openApp } from '../../app/index.js';
import type { Cli } from '../cli.js';
import { EXIT_OK } from '../cli.js';
import { cliConfig, cliLogger } from '../context.js';
import { note, printJson, say } from '../io.js';

/** Rotate the key-encryption key, then re-wrap every data key under it, batch by batch (no downtime). */
export async function rewrap(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<{ json?: boolean; rotate: boolean }>();
  const config = cliConfig(cli, command);
  const app = await openApp(config, { migrate: true, logger: cliLogger(cli, config) });
  try {
    const vault = await app.vault();
    const kek = opts.rotate ? await vault.rotateKek() : undefined;
    const result = await vault.rewrap({ onProgress: (p) => { note(cli.io, `rewrapped ${p.rewrapped} data key(s) in ${p.batches} batch(es); ${p.remaining} to go`); } });
    await app.audit.append({ actor: localActor(), action: 'secrets.rewrap', resource: 'vault', outcome: 'allowed', details: { newKek: kek ?? null, kekId: result.kekId, rewrapped: result.rewrapped, batches: result.batches } });
    if (opts.json === true) printJson(cli.io, { rotatedTo: kek ?? null, ...result });
    else say(cli.io, `${kek === undefined ? '' : `new key-encryption key ${kek}; `}${result.rewrapped} data key(s) now wrapped by ${result.kekId}`);
    return EXIT_OK;
  } finally {
    await app.close();
  }
}
