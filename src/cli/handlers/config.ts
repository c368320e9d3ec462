/** `airlock config show`: the effective configuration, with secrets redacted. */
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { redactedConfig } from '../../config/index.js';
import type { Cli } from '../cli.js';
import { EXIT_OK } from '../cli.js';
import { cliConfig } from '../context.js';
import { printJson } from '../io.js';

/** `airlock config show`: the effective configuration, redacted. */
export function show(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<{ json?: boolean }>();
  const redacted = redactedConfig(cliConfig(cli, command));
  // An unset config file shows as null rather than vanishing from the output.
  const shown = { ...redacted, configFile: redacted.configFile ?? null };
  if (opts.json === true) printJson(cli.io, shown);
  else cli.io.stdout.write(stringify(shown));
  return Promise.resolve(EXIT_OK);
}
