/** `airlock db migrate` and `airlock db status`. */
import type { Command } from 'commander';
import { localActor, migrationStatus, openApp } from '../../app/index.js';
import { describeError } from '../../errors/index.js';
import type { MigrationState } from '../../storage/index.js';
import type { Cli } from '../cli.js';
import { EXIT_OK } from '../cli.js';
import { cliConfig, cliLogger } from '../context.js';
import { printJson, say } from '../io.js';

interface JsonOption {
  readonly json?: boolean;
}

function printStates(cli: Cli, states: readonly MigrationState[]): void {
  for (const m of states) say(cli.io, `${m.name}  ${m.executedAt === null ? 'pending' : `applied ${m.executedAt}`}`);
}

/** `airlock db migrate`: apply pending migrations and record db.migrate. */
export async function migrate(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<JsonOption>();
  const config = cliConfig(cli, command);
  const app = await openApp(config, { logger: cliLogger(cli, config) });
  try {
    const before = await app.store.migrationStatus();
    let after: readonly MigrationState[];
    try {
      after = await app.store.migrate();
    } catch (err) {
      // Best effort: if the audit tables exist, the failed attempt is on the record too.
      await app.audit
        .append({ actor: localActor(), action: 'db.migrate', resource: 'database', outcome: 'failed', reason: describeError(err) })
        .catch(() => undefined);
      throw err;
    }
    await app.seed();
    const wasApplied = new Set(before.filter((m) => m.executedAt !== null).map((m) => m.name));
    const applied = after.filter((m) => m.executedAt !== null && !wasApplied.has(m.name)).map((m) => m.name);
    const event = await app.audit.append({ actor: localActor(), action: 'db.migrate', resource: 'database', outcome: 'allowed', details: { applied } });
    const pending = after.filter((m) => m.executedAt === null).length;
    if (opts.json === true) {
      printJson(cli.io, { applied, migrations: after, pending, auditSeq: event.seq });
    } else {
      say(cli.io, applied.length === 0 ? 'the database is up to date; no migration applied' : `applied ${applied.length} migration(s): ${applied.join(', ')}`);
      say(cli.io, `recorded db.migrate as audit entry ${event.seq}`);
    }
    return EXIT_OK;
  } finally {
    await app.close();
  }
}

/** `airlock db status`: applied and pending migrations (read-only). */
export async function status(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<JsonOption>();
  const config = cliConfig(cli, command);
  const states = await migrationStatus(config);
  const pending = states.filter((m) => m.executedAt === null).length;
  if (opts.json === true) {
    printJson(cli.io, { migrations: states, pending });
  } else {
    printStates(cli, states);
    say(cli.io, pending === 0 ? 'up to date' : `${pending} pending: run \`airlock db migrate\``);
  }
  return EXIT_OK;
}
