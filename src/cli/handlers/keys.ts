/** `airlock token rotate-signing-key`: local, like `db migrate` (whoever runs it holds the database). */
import type { Command } from 'commander';
import { localActor, openApp } from '../../app/index.js';
import type { Cli } from '../cli.js';
import { EXIT_OK } from '../cli.js';
import { cliConfig, cliLogger } from '../context.js';
import { printJson, say } from '../io.js';

export async function rotateSigningKey(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<{ json?: boolean }>();
  const config = cliConfig(cli, command);
  const app = await openApp(config, { migrate: true, logger: cliLogger(cli, config) });
  try {
    const result = await app.rotateSigningKey(localActor());
    if (opts.json === true) printJson(cli.io, result);
    else {
      say(cli.io, `new signing key ${result.kid} is in use`);
      if (result.retired.length > 0) say(cli.io, `retired ${result.retired.join(', ')}: still published until its last tokens expire (at most 1 hour)`);
    }
    return EXIT_OK;
  } finally {
    await app.close();
  }
}
