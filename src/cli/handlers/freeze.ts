/**
 * `airlock freeze ENV`, `freeze list`, `freeze lift ID` over the HTTP API. The server checks
 * every rule again; these checks only turn an incomplete command line into a usage error
 * (exit 2) that names the flag, before anything is sent.
 */
import type { Command } from 'commander';
import { UNTIL_LIFTED } from '../../delivery/index.js';
// The API answers with the domain's shapes: typed from the domain, erased at run time.
import type { FreezeInfo } from '../../delivery/index.js';
import type { Cli } from '../cli.js';
import { EXIT_OK, UsageError } from '../cli.js';
import { printJson, say } from '../io.js';
import type { RemoteOptions } from './remote.js';
import { seg, table, withSession } from './remote.js';

interface FreezeOptions extends RemoteOptions {
  readonly reason?: string;
  readonly until?: string;
  readonly from?: string;
  readonly cron?: string;
  readonly timezone?: string;
  readonly duration?: number;
}

/** Options only `airlock freeze ENV` takes: given to list or lift, they are a mistake, not to be ignored. */
const ADD_ONLY = ['until', 'from', 'cron', 'timezone', 'duration'] as const;

/**
 * A subcommand's options merged with those commander gave its parent `freeze` (which also
 * knows --reason, --server and --json), refusing the ones that mean nothing to `sub`. The
 * result stands in for the command: withSession reads --server from `opts()` too.
 */
function merged(command: Command, sub: string, refused: readonly string[]): Command {
  const opts = command.optsWithGlobals<Record<string, unknown>>();
  const wrong = refused.filter((k) => opts[k] !== undefined).map((k) => `--${k}`);
  if (wrong.length > 0) throw new UsageError(`${wrong.join(', ')} ${wrong.length === 1 ? 'is not an option' : 'are not options'} of \`airlock freeze ${sub}\` (see airlock freeze ${sub} --help)`);
  return { opts: () => opts } as unknown as Command;
}

/** 223200 -> 62h: the largest unit that divides it. */
function duration(seconds: number): string {
  for (const [unit, size] of [['d', 86_400], ['h', 3600], ['m', 60]] as const) if (seconds % size === 0) return `${seconds / size}${unit}`;
  return `${seconds}s`;
}

const until = (f: FreezeInfo): string => (f.until === UNTIL_LIFTED ? 'until lifted' : `until ${f.until}`);

function schedule(f: FreezeInfo): string {
  return f.kind === 'recurring' ? `${f.cron ?? '?'} (${f.timezone ?? '?'}) for ${duration(f.durationSeconds ?? 0)}` : 'once';
}

/** `airlock freeze ENV`: one-off (--until) or recurring (--cron, --timezone, --duration). */
export async function freezeAdd(cli: Cli, command: Command, environment: string): Promise<number> {
  const opts = command.opts<FreezeOptions>();
  if (opts.reason === undefined) throw new UsageError('--reason is required: say why the environment is frozen (recorded, and shown when a deploy is refused)');
  const recurring = opts.cron !== undefined || opts.timezone !== undefined || opts.duration !== undefined;
  if (recurring) {
    const missing = (['cron', 'timezone', 'duration'] as const).filter((k) => opts[k] === undefined).map((k) => `--${k}`);
    if (missing.length > 0) throw new UsageError(`a recurring freeze needs --cron, --timezone and --duration together: missing ${missing.join(', ')}`);
  } else if (opts.until === undefined) {
    throw new UsageError('--until is required for a one-off freeze (or give --cron, --timezone and --duration for a recurring one)');
  }
  if (opts.from !== undefined && opts.until !== undefined && Date.parse(opts.from) >= Date.parse(opts.until)) throw new UsageError('--until must be after --from');
  return withSession(cli, command, async (s) => {
    const body = {
      reason: opts.reason,
      ...(opts.until === undefined ? {} : { until: opts.until }),
      ...(opts.from === undefined ? {} : { from: opts.from }),
      ...(recurring ? { cron: opts.cron, timezone: opts.timezone, durationSeconds: opts.duration } : {}),
    };
    const f = await s.call((c) => c.post<FreezeInfo>(`/api/v1/environments/${seg(environment)}/freezes`, body));
    if (opts.json === true) printJson(cli.io, f);
    else if (f.kind === 'one-off') {
      say(cli.io, `froze ${f.environment} from ${f.from} ${until(f)} (${f.reason}); deployments to it are refused until then`);
      say(cli.io, `freeze ${f.id}; lift it early with: airlock freeze lift ${f.id} --reason '…'`);
    } else {
      say(cli.io, `froze ${f.environment} at ${schedule(f)}, from ${f.from} ${until(f)} (${f.reason})`);
      say(cli.io, f.next === undefined ? 'no occurrence is left' : `${f.activeNow ? 'in force now, until' : `next: ${f.next.from} to`} ${f.next.until}`);
      say(cli.io, `freeze ${f.id}; lift it with: airlock freeze lift ${f.id} --reason '…'`);
    }
    return EXIT_OK;
  });
}

/** `airlock freeze list [--env E] [--all]`. */
export async function freezeList(cli: Cli, command: Command): Promise<number> {
  const session = merged(command, 'list', [...ADD_ONLY, 'reason']);
  const opts = session.opts<RemoteOptions & { env?: string; all?: boolean }>();
  const q = new URLSearchParams({ ...(opts.env === undefined ? {} : { environment: opts.env }), ...(opts.all === true ? { all: 'true' } : {}) });
  return withSession(cli, session, async (s) => {
    const { freezes } = await s.call((c) => c.get<{ freezes: FreezeInfo[] }>(`/api/v1/freezes${q.size === 0 ? '' : `?${q.toString()}`}`));
    if (opts.json === true) printJson(cli.io, { freezes });
    else if (freezes.length === 0) say(cli.io, opts.all === true ? 'no freezes' : 'no freezes (lifted ones are shown with --all)');
    else {
      const rows = freezes.map((f) => [
        f.id,
        f.environment,
        schedule(f),
        f.from,
        f.until === UNTIL_LIFTED ? 'until lifted' : f.until,
        f.liftedAt === undefined ? (f.activeNow ? 'FROZEN' : 'no') : `lifted ${f.liftedAt}`,
        f.next === undefined ? '-' : `${f.next.from}..${f.next.until}`,
        f.reason,
      ]);
      for (const line of table(['ID', 'ENVIRONMENT', 'SCHEDULE', 'FROM', 'UNTIL', 'NOW', 'NEXT', 'REASON'], rows)) say(cli.io, line);
    }
    return EXIT_OK;
  });
}

/** `airlock freeze lift ID --reason R`. */
export async function freezeLift(cli: Cli, command: Command, id: string): Promise<number> {
  const session = merged(command, 'lift', ADD_ONLY);
  const opts = session.opts<RemoteOptions & { reason?: string }>();
  if (opts.reason === undefined) throw new UsageError('--reason is required: say why the freeze is lifted (recorded)');
  return withSession(cli, session, async (s) => {
    const f = await s.call((c) => c.post<FreezeInfo>(`/api/v1/freezes/${seg(id)}/lift`, { reason: opts.reason }));
    if (opts.json === true) printJson(cli.io, f);
    else say(cli.io, `lifted freeze ${f.id} of ${f.environment} (${f.reason}) at ${f.liftedAt ?? '?'}; it no longer refuses deployments`);
    return EXIT_OK;
  });
}
