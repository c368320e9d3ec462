/**
 * `airlock freeze ENV`, `freeze list` and `freeze lift ID` definitions. Definitions only: each
 * action imports its handler when it runs. The program does not use positional options, so in
 * `freeze lift ID --reason R --json` commander hands --reason and --json to `freeze`, which knows
 * them too: the list and lift handlers read options merged up the command chain, and refuse the
 * ones only `freeze ENV` takes. An environment cannot be called `list` or `lift`.
 */
import { InvalidArgumentError } from 'commander';
import type { Command } from 'commander';
import type { RemoteOptionsAdder } from './artifact-commands.js';
import type { Cli } from './cli.js';
import { act } from './cli.js';
import { isoTime } from './parse.js';

const UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86_400 };
/** As the server's limit: one occurrence lasts at most 31 days. */
const MAX_DURATION_SECONDS = 31 * 86_400;

/** `2d`, `48h`, `90m`, `3600s` as whole seconds, from 1 s to 31 days. */
export function parseDuration(value: string): number {
  const m = /^([0-9]{1,7})([smhd])$/.exec(value.trim());
  if (m === null) throw new InvalidArgumentError('must be a whole number with a unit: s, m, h or d (e.g. 3600s, 90m, 48h, 2d)');
  const seconds = Number(m[1]) * (UNIT_SECONDS[m[2] ?? ''] ?? 0);
  if (seconds < 1 || seconds > MAX_DURATION_SECONDS) throw new InvalidArgumentError('must be from 1s to 31d');
  return seconds;
}

const FREEZE_JSON = 'print the freeze as JSON: {id,environment,kind,from,until,reason,cron,timezone,durationSeconds,createdBy,activeNow,next}';

export function registerFreezeCommands(program: Command, cli: Cli, remote: RemoteOptionsAdder): void {
  const handlers = () => import('./handlers/freeze.js');

  // --reason and --until are checked by the handler, not required here: commander would ask
  // every subcommand (list, lift) for a parent's required option.
  const freeze = remote(
    program
      .command('freeze')
      .description('freeze an environment: deployments to it are refused while the freeze is in force (recorded). One-off with --until; recurring with --cron, --timezone and --duration')
      .argument('<environment>', 'the environment, e.g. production')
      .option('--reason <text>', 'why (required; at least 5 characters; recorded and shown when a deploy is refused)')
      .option('--until <time>', 'ISO 8601 end of the freeze (required for a one-off freeze; for a recurring one, default: until lifted)', isoTime)
      .option('--from <time>', 'ISO 8601 start (default now)', isoTime)
      .option('--cron <expr>', 'recurring: when each occurrence starts, a cron expression such as "0 18 * * 5" (Fridays 18:00)')
      .option('--timezone <zone>', 'recurring: the IANA time zone the cron expression is read in, e.g. Europe/Paris')
      .option('--duration <d>', 'recurring: how long each occurrence lasts, e.g. 2d, 48h, 90m, 3600s (at most 31d)', parseDuration),
    FREEZE_JSON,
  )
    .addHelpText(
      'after',
      '\nA deploy is refused while any freeze is in force; freezes declared in airlock.yaml apply as well.\n' +
        'See them with `airlock freeze list`; end one early with `airlock freeze lift ID --reason …`.\n\n' +
        'Examples:\n' +
        '  $ airlock freeze production --until 2025-01-06T08:00:00Z --reason "year-end freeze"\n' +
        '  $ airlock freeze production --cron "0 18 * * 5" --timezone Europe/Paris --duration 62h --reason "no deploys over the weekend"\n' +
        '  $ airlock freeze staging --cron "0 9 * * 1" --timezone UTC --duration 2h --from 2025-03-01T00:00:00Z --until 2025-06-30T00:00:00Z --reason "Monday demo"',
    )
    .action(act(cli, async (command, args) => (await handlers()).freezeAdd(cli, command, args[0] ?? '')));

  remote(
    freeze
      .command('list')
      .description('freezes in force or to come, newest first, with whether each applies now and, for a recurring one, its next occurrence')
      .option('--env <environment>', 'only this environment')
      .option('--all', 'include lifted freezes'),
    'print {"freezes":[{id,environment,kind,from,until,reason,cron,timezone,durationSeconds,activeNow,next,liftedAt,...}]}',
  )
    .addHelpText('after', '\nExamples:\n  $ airlock freeze list\n  $ airlock freeze list --env production --all --json')
    .action(act(cli, async (command) => (await handlers()).freezeList(cli, command)));

  remote(
    freeze
      .command('lift')
      .description('lift a freeze: deployments it refused may go ahead again at once (recorded with your reason)')
      .argument('<id>', 'the freeze id (from `airlock freeze list`)')
      .option('--reason <text>', 'why it is lifted (required; at least 5 characters; recorded)'),
    FREEZE_JSON,
  )
    .addHelpText('after', '\nA freeze that is already lifted cannot be lifted again (exit 1, CONFLICT).\n\nExample:\n  $ airlock freeze lift 3f6c…-… --reason "release shipped early, freeze no longer needed"')
    .action(act(cli, async (command, args) => (await handlers()).freezeLift(cli, command, args[0] ?? '')));
}
