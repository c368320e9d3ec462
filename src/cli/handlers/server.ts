/** `airlock server`: run the HTTP API until SIGINT/SIGTERM, then shut down gracefully. */
import type { Command } from 'commander';
import { openApp } from '../../app/index.js';
import type { AuditEventInput } from '../../audit/index.js';
import { AirlockError, describeError } from '../../errors/index.js';
import { startServer } from '../../server/index.js';
import type { Cli } from '../cli.js';
import { EXIT_OK } from '../cli.js';
import { cliConfig, cliLogger, waitForSignal } from '../context.js';
import { say } from '../io.js';
import { packageVersion } from '../version.js';

interface ServerOptions {
  readonly listen?: string;
  readonly migrate: boolean;
  readonly runner: boolean;
  readonly runnerLabel?: string[];
}

/** The server records its own lifecycle under this actor. */
const SERVER_ACTOR: AuditEventInput['actor'] = { kind: 'system', id: 'server' };

/** `airlock server`: serve until SIGINT/SIGTERM, then shut down gracefully (exit 0). */
export async function runServer(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<ServerOptions>();
  const config = cliConfig(cli, command, { listen: opts.listen });
  const logger = cliLogger(cli, config);
  // Signals are taken over before anything starts, so one that arrives during start-up still
  // leads to an orderly stop (and a system.server.stop entry) instead of an abrupt death.
  const signals = waitForSignal((signal) => {
    logger.error({ signal }, 'second signal during shutdown: exiting without finishing it');
    process.exit(1);
  });
  try {
    const app = await openApp(config, { migrate: opts.migrate, checkpointing: true, logger });
    if (!opts.migrate) {
      const pending = (await app.store.migrationStatus()).filter((m) => m.executedAt === null);
      if (pending.length > 0) {
        await app.close();
        throw new AirlockError('STORAGE_FAILED', `the database has ${pending.length} pending migration(s) and --no-migrate was given; run \`airlock db migrate\` first`, {
          pending: pending.map((m) => m.name),
        });
      }
    }
    // A wrong AIRLOCK_MASTER_KEY stops the server here, before it serves anything.
    try {
      await app.vault();
    } catch (err) {
      await app.close();
      throw err;
    }
    const listen = `${config.listen.host}:${config.listen.port}`;
    const base = { actor: SERVER_ACTOR, resource: 'server' } as const;
    let server: Awaited<ReturnType<typeof startServer>>;
    try {
      await app.audit.append({ ...base, action: 'system.server.start', outcome: 'allowed', details: { listen, version: packageVersion(), pid: process.pid } });
      try {
        server = await startServer(app, { logger, host: config.listen.host, port: config.listen.port });
      } catch (err) {
        // Every recorded start has a matching stop, even when the port could not be bound.
        await app.audit
          .append({ ...base, action: 'system.server.stop', outcome: 'failed', reason: `could not start: ${describeError(err)}`, details: { listen } })
          .catch(() => undefined);
        throw err;
      }
    } catch (err) {
      await app.close().catch(() => undefined);
      throw err;
    }
    await app.startRunner({ labels: opts.runnerLabel ?? ['embedded', 'linux'], concurrency: opts.runner ? 2 : 0, reap: true });
    logger.info({ url: server.url }, `airlock listening on ${server.url}`);
    if (!(await app.identity.users.hasAdmin())) {
      logger.warn('no admin exists yet: run `airlock init --admin <username>` to create the first one (there is no default password)');
    }
    say(cli.io, `airlock listening on ${server.url}`);

    const signal = await signals.received;
    logger.info({ signal }, 'shutting down: draining requests, then signing the final checkpoint');
    let failure: Error | undefined;
    const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));
    try {
      await server.close();
    } catch (err) {
      failure = asError(err);
    }
    try {
      await app.audit.append({
        ...base,
        action: 'system.server.stop',
        outcome: failure === undefined ? 'allowed' : 'failed',
        ...(failure === undefined ? {} : { reason: `closing the listener failed: ${describeError(failure)}` }),
        details: { signal },
      });
    } catch (err) {
      failure ??= asError(err);
    }
    try {
      // Stops the checkpoint cadence, signs a checkpoint covering system.server.stop, drains writes.
      await app.close();
    } catch (err) {
      failure ??= asError(err);
    }
    if (failure !== undefined) throw failure;
    logger.info('stopped');
    return EXIT_OK;
  } finally {
    signals.dispose();
  }
}
