/**
 * The whole command tree in one place (docs/cli.md follows it). Definitions only: each action
 * imports its handler when it runs, so `--help` and `--version` load commander and nothing else.
 */
import { Command, Option } from 'commander';
import type { Cli } from './cli.js';
import { act, collect } from './cli.js';
import { boundedInt, isoTime, nonNegativeInt, positiveInt } from './parse.js';
import { packageVersion } from './version.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** Mirrors ACTOR_KINDS and OUTCOMES of src/audit (kept literal here to keep start-up light; a test checks they match). */
export const CLI_ACTOR_KINDS = ['user', 'service', 'workload', 'system', 'anonymous'] as const;
export const CLI_OUTCOMES = ['allowed', 'denied', 'failed'] as const;
/** Most rows one search or tail prints (the log's own cap on a query). */
const MAX_ROWS = 10_000;

export const EXIT_CODES_HELP = `
Exit codes:
  0  success
  1  the command failed, or verification found a problem
  2  usage error: unknown command or option, bad option value, invalid configuration`;

const JSON_HELP = 'print the result as one JSON document on stdout';

/** Build the command tree for one invocation. */
export function buildProgram(cli: Cli): Command {
  const program = new Command('airlock');
  // Settings copied into every subcommand when it is created, so they come first.
  program
    .exitOverride()
    .configureOutput({
      writeOut: (text) => cli.io.stdout.write(text),
      writeErr: (text) => cli.io.stderr.write(text),
      // Errors are printed once, by main, in the `airlock: <message> (<CODE>)` form.
      outputError: () => undefined,
    })
    .configureHelp({ showGlobalOptions: true })
    .helpOption('-h, --help', 'show help for the command');
  program
    .description('Airlock control plane: server, database and tamper-evident audit log')
    .version(packageVersion(), '-V, --version', 'print the version and exit')
    .option('--home <dir>', 'Airlock home: database file, keys, state (env AIRLOCK_HOME, default ./.airlock)')
    .option('--database-url <url>', 'postgres://... or sqlite:<path> (env AIRLOCK_DATABASE_URL; default SQLite in the home)')
    .option('--database-schema <name>', 'PostgreSQL schema to use (env AIRLOCK_DATABASE_SCHEMA)')
    .option('--config <file>', 'YAML or JSON configuration file (env AIRLOCK_CONFIG)')
    .addOption(new Option('--log-level <level>', 'log level on stderr; debug adds stack traces to errors (env AIRLOCK_LOG_LEVEL)').choices(LOG_LEVELS))
    .addHelpText('afterAll', EXIT_CODES_HELP);

  // --- server -------------------------------------------------------------------------------
  program
    .command('server')
    .description('run the Airlock API server until SIGINT or SIGTERM (records system.server.start and system.server.stop)')
    .option('--listen <host:port>', 'address to listen on (env AIRLOCK_LISTEN, default 127.0.0.1:7300; port 0 picks a free port)')
    .option('--no-migrate', 'do not apply pending database migrations at start-up')
    .addHelpText(
      'after',
      '\nPrints "airlock listening on <url>" on stdout once it accepts connections. On SIGINT or SIGTERM it stops\n' +
        'accepting requests, finishes those in flight, records system.server.stop, signs a final checkpoint covering\n' +
        'every entry and exits 0. A second signal abandons the graceful shutdown (exit 1).',
    )
    .action(act(cli, async (command) => (await import('./handlers/server.js')).runServer(cli, command)));

  // --- db -----------------------------------------------------------------------------------
  const db = program.command('db').description('database schema: apply and inspect migrations');
  db.command('migrate')
    .description('apply pending migrations (records a db.migrate audit event naming them)')
    .option('--json', JSON_HELP)
    .action(act(cli, async (command) => (await import('./handlers/db.js')).migrate(cli, command)));
  db.command('status')
    .description('list migrations with when each was applied and how many are pending (read-only; exit 0 either way)')
    .option('--json', JSON_HELP)
    .action(act(cli, async (command) => (await import('./handlers/db.js')).status(cli, command)));

  // --- audit --------------------------------------------------------------------------------
  const audit = program.command('audit').description('the tamper-evident audit log: verify it, read it, prove and export entries');

  audit
    .command('key')
    .description("print this home's checkpoint verifier key (<name>+<key id>+<base64 key>) to publish to auditors")
    .option('--json', JSON_HELP)
    .action(act(cli, async (command) => (await import('./handlers/audit.js')).key(cli, command)));

  audit
    .command('verify')
    .description('verify the whole stored log against its signed checkpoints (read-only; exit 1 on any finding)')
    .option('--checkpoint <file>', "also verify against a signed checkpoint note kept outside the database (the auditor's anchor)")
    .option('--key <vkey>', "trust this verifier key instead of the home's key (repeatable)", collect)
    .option('--progress', 'report progress on stderr even when it is not a terminal')
    .option('--json', 'print the verification report as JSON')
    .action(act(cli, async (command) => (await import('./handlers/audit.js')).verify(cli, command)));

  const proof = audit.command('proof').description('RFC 9162 inclusion and consistency proofs: produce them, and verify them offline');
  proof
    .command('inclusion')
    .description('prove that entry --seq is in the tree of --size entries')
    .requiredOption('--seq <n>', 'sequence number of the entry', nonNegativeInt)
    .option('--size <m>', 'tree size to prove against (default: the latest signed checkpoint covering the entry, else the current size)', nonNegativeInt)
    .option('--json', 'print the proof document as JSON (input for `airlock audit proof verify`)')
    .action(act(cli, async (command) => (await import('./handlers/proof.js')).inclusion(cli, command)));
  proof
    .command('consistency')
    .description('prove that the tree of --from entries is a prefix of the tree of --to entries')
    .requiredOption('--from <m>', 'older tree size (for example the size of a checkpoint you kept)', nonNegativeInt)
    .option('--to <n>', 'newer tree size (default: the latest signed checkpoint if at least --from, else the current size)', nonNegativeInt)
    .option('--json', 'print the proof document as JSON')
    .action(act(cli, async (command) => (await import('./handlers/proof.js')).consistency(cli, command)));
  proof
    .command('verify')
    .description('verify a proof document offline; with --checkpoint, also that its root and size are the signed ones')
    .argument('<file>', 'proof document from `airlock audit proof inclusion|consistency --json`, or - for stdin')
    .option('--checkpoint <notefile>', 'signed checkpoint note the proof must agree with')
    .option('--key <vkey>', "verifier key trusted for --checkpoint instead of the home's key (repeatable)", collect)
    .option('--json', JSON_HELP)
    .action(act(cli, async (command, args) => (await import('./handlers/proof.js')).verifyProof(cli, command, args[0] ?? '-')));

  audit
    .command('checkpoint')
    .description('print the latest signed checkpoint note (or sign one now with --sign)')
    .option('--sign', 'sign a checkpoint of the current tree now (records audit.checkpoint.sign first, so it is covered)')
    .option('--json', JSON_HELP)
    .action(act(cli, async (command) => (await import('./handlers/audit.js')).checkpoint(cli, command)));

  audit
    .command('tail')
    .description('print the last entries of the log, optionally following new ones')
    .option('-n, --lines <count>', `number of entries to print first (0 to ${MAX_ROWS})`, boundedInt(MAX_ROWS), 20)
    .option('-f, --follow', 'keep printing new entries (polls every 500 ms) until SIGINT or SIGTERM')
    .option('--json', 'print JSON Lines: one {"seq","leafHash","event"} object per line')
    .action(act(cli, async (command) => (await import('./handlers/audit.js')).tail(cli, command)));

  audit
    .command('search')
    .description('find entries by actor, action, resource, outcome and time (oldest first)')
    .option('--actor <id>', `actor id, or KIND:ID (kinds: ${CLI_ACTOR_KINDS.join(', ')})`)
    .option('--action <action>', 'exact action, or a prefix ending in * (for example "db.*")')
    .option('--resource <resource>', 'exact resource, or a prefix ending in *')
    .addOption(new Option('--outcome <outcome>', 'outcome').choices(CLI_OUTCOMES))
    .option('--since <time>', 'entries at or after this ISO 8601 date or time (UTC unless an offset is given)', isoTime)
    .option('--until <time>', 'entries before this ISO 8601 date or time', isoTime)
    .option('--limit <n>', `at most this many entries (1 to ${MAX_ROWS})`, positiveInt(MAX_ROWS), 100)
    .option('--json', 'print {"count","entries":[{"seq","leafHash","event"}]}')
    .action(act(cli, async (command) => (await import('./handlers/audit.js')).search(cli, command)));

  audit
    .command('export')
    .description('write entries with inclusion proofs against a signed checkpoint as JSON Lines, verifiable offline')
    .option('--from <seq>', 'first sequence number (default 0)', nonNegativeInt)
    .option('--to <seq>', 'stop before this sequence number (default: the current tree size)', nonNegativeInt)
    .option('-o, --output <file>', 'write to FILE (mode 0600) instead of stdout')
    .option('--progress', 'report progress on stderr even when it is not a terminal')
    .option('--json', 'with -o, print the summary as JSON (without -o, stdout carries the export itself)')
    .addHelpText(
      'after',
      '\nLine 1: {"type":"airlock.audit.export/v1","origin","checkpoint","treeSize","rootHash","verifierKey","from","to"};\n' +
        'then one {"type":"entry","seq","event","leafHash","inclusionProof"} per entry. When no signed checkpoint covers\n' +
        "the range yet, one is signed first (this needs the home's signing key).",
    )
    .action(act(cli, async (command) => (await import('./handlers/export.js')).runExport(cli, command)));

  audit
    .command('verify-export')
    .description('verify an export offline: checkpoint signature, every leaf hash and inclusion proof, contiguous seqs')
    .argument('<file>', 'export file, or - for stdin')
    .option('--key <vkey>', "verifier key to trust (repeatable; default: the home's key; never the key the export names)", collect)
    .option('--progress', 'report progress on stderr even when it is not a terminal')
    .option('--json', 'print the verification result as JSON')
    .action(act(cli, async (command, args) => (await import('./handlers/export.js')).runVerifyExport(cli, command, args[0] ?? '-')));

  // --- config -------------------------------------------------------------------------------
  const config = program.command('config').description('inspect the configuration');
  config
    .command('show')
    .description('print the effective configuration (flags > AIRLOCK_* environment > config file > defaults); never the database password')
    .option('--json', JSON_HELP)
    .action(act(cli, async (command) => (await import('./handlers/config.js')).show(cli, command)));

  return program;
}
