/** `airlock agent` (run a remote runner) and `airlock agent token create` (enrol one). */
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { AirlockError } from '../../errors/index.js';
import { createLogger } from '../../observability/index.js';
import { agentLoop, defaultStateDir, loadState, nameFromHost, register, saveState } from '../agent-loop.js';
import type { AgentState } from '../agent-loop.js';
import { normaliseServerUrl } from '../api-client.js';
import type { Cli, GlobalOptions } from '../cli.js';
import { EXIT_OK, UsageError } from '../cli.js';
import { waitForSignal } from '../context.js';
import { note, printJson, say } from '../io.js';
import type { RemoteOptions } from './remote.js';
import { warnIfPlaintext, withSession } from './remote.js';

interface AgentOptions {
  readonly server?: string;
  readonly token?: string;
  readonly name?: string;
  readonly state?: string;
  readonly sandbox?: 'auto' | 'off';
}

/** `airlock agent`: register on first start, then take jobs until SIGINT/SIGTERM. */
export async function runAgentCommand(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<AgentOptions>();
  const g = command.optsWithGlobals<GlobalOptions>();
  const level = g.logLevel ?? cli.io.env.AIRLOCK_LOG_LEVEL ?? 'info';
  cli.logLevel = level;
  const log = createLogger(level, cli.io.stderr);
  const stateDir = resolve(cli.io.cwd, opts.state ?? defaultStateDir(cli.io.env));
  const server = opts.server === undefined ? undefined : normaliseServerUrl(opts.server, '--server');
  const token = opts.token ?? (cli.io.env.AIRLOCK_AGENT_TOKEN === '' ? undefined : cli.io.env.AIRLOCK_AGENT_TOKEN);

  // Signals first: one that arrives while registering still ends the process in order.
  const signals = waitForSignal((signal) => {
    log.error({ signal }, 'second signal: exiting without reporting the running step');
    process.exit(1);
  });
  const stop = new AbortController();
  void signals.received.then((signal) => {
    log.info({ signal }, 'stopping: no new jobs; cancelling the running step');
    stop.abort();
  });
  try {
    let state: AgentState | undefined = await loadState(stateDir);
    if (state === undefined) {
      if (server === undefined) throw new UsageError(`this agent is not registered yet (no state in ${stateDir}): pass --server <url> and --token <registration token>`);
      if (token === undefined) throw new UsageError('this agent is not registered yet: pass --token <registration token> (or set AIRLOCK_AGENT_TOKEN); an operator creates one with `airlock agent token create`');
      warnIfPlaintext(cli, server);
      state = await register(server, token.trim(), opts.name ?? nameFromHost(hostname()));
      await saveState(stateDir, state);
      note(cli.io, `registered as agent ${state.name} (service account ${state.serviceAccount}, labels ${state.labels.length === 0 ? '-' : state.labels.join(',')}); credentials kept in ${stateDir}`);
    } else {
      if (server !== undefined && server !== state.server) throw new UsageError(`this agent is registered with ${state.server}, not ${server}; use another --state directory to register elsewhere`);
      if (opts.name !== undefined && opts.name !== state.name) throw new UsageError(`this agent is registered as ${state.name}; --name cannot rename it`);
      if (token !== undefined) note(cli.io, `already registered as agent ${state.name}; the registration token was not used`);
    }
    say(cli.io, `airlock agent ${state.name} waiting for jobs from ${state.server}`);
    try {
      await agentLoop({ state, stateDir, log, stop: stop.signal, sandbox: opts.sandbox ?? 'auto' });
    } catch (err) {
      if (err instanceof AirlockError && (err.code === 'UNAUTHENTICATED' || err.code === 'FORBIDDEN')) {
        throw new AirlockError(err.code, `${err.message} (the server refused this agent: it may have been disabled or its key revoked; register again with a new token and another --state directory)`);
      }
      throw err;
    }
    log.info('stopped');
    return EXIT_OK;
  } finally {
    signals.dispose();
  }
}

interface TokenCreateOptions extends RemoteOptions {
  readonly label?: string[];
  readonly expiresInMinutes?: number;
}

/** `airlock agent token create`: the token is printed once, alone on stdout. */
export async function agentTokenCreate(cli: Cli, command: Command): Promise<number> {
  // `--server` after `agent token create` is parsed by `agent`, which has an option of that name.
  const inherited = command.optsWithGlobals<RemoteOptions>().server;
  if (command.opts<RemoteOptions>().server === undefined && inherited !== undefined) command.setOptionValue('server', inherited);
  const opts = command.opts<TokenCreateOptions>();
  return withSession(cli, command, async (s) => {
    const body = { labels: opts.label ?? [], ...(opts.expiresInMinutes === undefined ? {} : { expiresInMinutes: opts.expiresInMinutes }) };
    const made = await s.call((c) => c.post<{ token: string; tokenId: string; labels: string[]; expiresAt: string }>('/api/v1/agents/registration-tokens', body));
    if (opts.json === true) {
      printJson(cli.io, made);
    } else {
      note(cli.io, `registration token ${made.tokenId} for an agent with labels ${made.labels.length === 0 ? '-' : made.labels.join(',')}; single use, expires ${made.expiresAt}`);
      note(cli.io, `On the agent machine: airlock agent --server ${s.server} --token <token>`);
      say(cli.io, made.token);
    }
    return EXIT_OK;
  });
}
