/**
 * The whole command tree in one place (docs/cli.md follows it). Definitions only: each action
 * imports its handler when it runs, so `--help` and `--version` load commander and nothing else.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import type { Cli } from './cli.js';
import { act, collect } from './cli.js';
import { boundedInt, isoTime, nonNegativeInt, positiveInt } from './parse.js';
import { packageVersion } from './version.js';
import { registerArtifactCommands } from './artifact-commands.js';
import { registerDeliveryCommands } from './delivery-commands.js';
import { registerFreezeCommands } from './freeze-commands.js';

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
const SERVER_HELP = 'Airlock server URL (env AIRLOCK_SERVER; default: the server of `airlock login`)';
/** 1, 2, 3, ...: the server bounds these counts itself, and its error names the allowed range. */
function anyPositive(value: string): number {
  const n = nonNegativeInt(value);
  if (n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

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
    .option('--no-runner', 'do not run pipeline steps in this process (leave them to remote agents)')
    .option('--runner-label <label>', 'a label of the embedded runner (repeatable; default embedded, linux); steps run here only if it has all their runs-on labels', collect)
    .addHelpText(
      'after',
      '\nPrints "airlock listening on <url>" on stdout once it accepts connections. On SIGINT or SIGTERM it stops\n' +
        'accepting requests, finishes those in flight, records system.server.stop, signs a final checkpoint covering\n' +
        'every entry and exits 0. A second signal abandons the graceful shutdown (exit 1).',
    )
    .action(act(cli, async (command) => (await import('./handlers/server.js')).runServer(cli, command)));

  program
    .command('demo')
    .description('the whole path of a change on embedded SQLite, no prompts: alice builds and tests the sample service, deploys it to staging, asks for production, cannot approve her own change; bob approves with TOTP; production deploys; the signed record and the audit log are verified. Then the server keeps running')
    .option('--listen <host:port>', 'address to listen on (env AIRLOCK_LISTEN, default 127.0.0.1:7300; port 0 picks a free port)')
    .option('--exit', 'stop the server when the demo is done instead of leaving it running')
    .addHelpText('after', '\nRe-runnable: alice, bob and the sample repository are kept in $AIRLOCK_HOME/demo (people.json holds their demo credentials, 0600).')
    .action(act(cli, async (command) => (await import('./handlers/demo.js')).demo(cli, command)));

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

  // --- identity (first admin locally; everything else over the HTTP API) ---------------------
  program
    .command('init')
    .description('create the first administrator of a new installation (local: opens the database) and print their one-time setup token')
    .requiredOption('--admin <username>', "the administrator's username (lower-case letters, digits, . _ -)")
    .option('--display-name <text>', "the administrator's full name")
    .option('--json', 'print {"username","setupToken","setupExpiresAt"}')
    .addHelpText(
      'after',
      '\nRefused once any administrator exists. The setup token is shown once; the administrator redeems it with\n' +
        '`airlock account setup`.\n\nExample:\n  $ airlock init --admin alice --display-name "Alice Liddell"',
    )
    .action(act(cli, async (command) => (await import('./handlers/identity.js')).init(cli, command)));

  const account = program.command('account').description('your own account: finish setting it up');
  remote(
    account
      .command('setup')
      .description('redeem a setup token: choose a password, enrol an authenticator app (TOTP), receive recovery codes')
      .requiredOption('--username <name>', 'the username the setup token was issued for'),
    'print {"otpauthUri","recoveryCodes"} at the end',
  )
    .addHelpText(
      'after',
      '\nAsks for the setup token and the new password (twice) with echo off, shows a QR code to scan, then asks for\n' +
        'the first 6-digit code. When stdin is not a terminal, reads token, password, password again and code as\n' +
        'lines from stdin (the secret is printed as "secret: <BASE32>" on stderr).\n\n' +
        'Example:\n  $ airlock account setup --server https://airlock.example.com --username alice',
    )
    .action(act(cli, async (command) => (await import('./handlers/identity.js')).accountSetup(cli, command)));

  remote(
    program
      .command('login')
      .description('sign in with password and TOTP code; the session token is stored for later commands (mode 0600)')
      .requiredOption('--username <name>', 'your username')
      .option('--code <totp>', 'the current 6-digit code (or a recovery code); asked for when omitted')
      .option('--password-stdin', 'read the password as the first line of stdin instead of asking'),
  )
    .addHelpText(
      'after',
      '\nThe session is stored in $AIRLOCK_CLI_CONFIG_DIR, $XDG_CONFIG_HOME/airlock or ~/.config/airlock\n' +
        '(credentials.json, mode 0600), with the server URL; it is only ever sent to that server.\n\n' +
        'Examples:\n  $ airlock login --server https://airlock.example.com --username alice\n' +
        '  $ pass show airlock | airlock login --username alice --password-stdin --code 123456',
    )
    .action(act(cli, async (command) => (await import('./handlers/identity.js')).login(cli, command)));

  remote(program.command('whoami').description('show who you are signed in as: name, kind, roles, MFA and step-up freshness'))
    .action(act(cli, async (command) => (await import('./handlers/identity.js')).whoami(cli, command)));

  remote(program.command('logout').description('end the session on the server and delete the stored token'))
    .action(act(cli, async (command) => (await import('./handlers/identity.js')).logout(cli, command)));

  remote(
    program
      .command('step-up')
      .description('prove MFA again (TOTP code) so that sensitive actions are allowed for the next 5 minutes')
      .option('--code <totp>', 'the current 6-digit code; asked for when omitted'),
  )
    .addHelpText(
      'after',
      '\nSensitive actions (changing roles or policies, approving, revealing secrets) need an MFA proof less than\n' +
        '5 minutes old. At a terminal, any command refused with STEP_UP_REQUIRED asks for a code and retries once.\n\n' +
        'Example:\n  $ airlock step-up && airlock user roles bob --set developer,security-auditor',
    )
    .action(act(cli, async (command) => (await import('./handlers/identity.js')).stepUp(cli, command)));

  const token = program.command('token').description('short-lived tokens: exchange an API key; rotate the signing key');
  token
    .command('rotate-signing-key')
    .description('retire the key that signs service and workload tokens and start a new one (local: needs the database and $AIRLOCK_HOME/keys)')
    .option('--json', 'print {"kid","retired"}')
    .addHelpText('after', '\nTokens signed by the retired key stay valid until they expire: the key stays in /.well-known/jwks.json until then.')
    .action(act(cli, async (command) => (await import('./handlers/keys.js')).rotateSigningKey(cli, command)));
  remote(
    token
      .command('exchange')
      .description('exchange a service account API key (env AIRLOCK_API_KEY, else stdin) for a short-lived JWT, printed on stdout')
      .option('--ttl <seconds>', 'requested lifetime in seconds (default and limits set by the server)', anyPositive),
    'print {"accessToken","tokenType","expiresAt","serviceAccount"}',
  )
    .addHelpText(
      'after',
      '\nThe key is never taken as an argument (it would land in shell history and process listings).\n\n' +
        'Example:\n  $ export AIRLOCK_TOKEN="$(AIRLOCK_API_KEY=$CI_AIRLOCK_KEY airlock token exchange --server https://airlock.example.com)"',
    )
    .action(act(cli, async (command) => (await import('./handlers/identity.js')).tokenExchange(cli, command)));

  // --- users and roles ------------------------------------------------------------------------
  const user = program.command('user').description('people: create, list, disable, assign roles and e-mail addresses, reset credentials');
  remote(
    user
      .command('create')
      .description('create a user and print their one-time setup token')
      .argument('<username>', 'lower-case letters, digits, . _ - (2 to 64 characters)')
      .option('--role <role>', 'grant this role (repeatable)', collect)
      .option('--display-name <text>', 'full name')
      .option('--email <address>', 'the address they commit with (ties their commits to them for segregation of duties; unique)'),
  )
    .addHelpText('after', '\nExample:\n  $ airlock user create bob --role developer --display-name "Bob Builder" --email bob@example.com')
    .action(act(cli, async (command, args) => (await import('./handlers/users.js')).userCreate(cli, command, args[0] ?? '')));
  remote(user.command('list').description('list users with their roles, MFA enrolment and status'))
    .action(act(cli, async (command) => (await import('./handlers/users.js')).userList(cli, command)));
  remote(user.command('show').description('show one user').argument('<username>', 'the user'))
    .action(act(cli, async (command, args) => (await import('./handlers/users.js')).userShow(cli, command, args[0] ?? '')));
  remote(user.command('disable').description('disable a user and revoke their sessions').argument('<username>', 'the user'))
    .action(act(cli, async (command, args) => (await import('./handlers/users.js')).userDisable(cli, command, args[0] ?? '')));
  remote(
    user
      .command('roles')
      .description("replace a user's roles (a sensitive action: needs a fresh step-up)")
      .argument('<username>', 'the user')
      .requiredOption('--set <roles>', 'comma-separated roles; "" removes every role'),
  )
    .addHelpText('after', '\nExamples:\n  $ airlock user roles bob --set developer,security-auditor\n  $ airlock user roles bob --set ""')
    .action(act(cli, async (command, args) => (await import('./handlers/users.js')).userRoles(cli, command, args[0] ?? '')));
  remote(
    user
      .command('email')
      .description("set or clear the address a user commits with (a sensitive action: needs a fresh step-up; never your own)")
      .argument('<username>', 'the user')
      .argument('[address]', 'the new address (stored in lower case; unique among users)')
      .option('--clear', 'remove the address instead'),
  )
    .addHelpText('after', '\nExamples:\n  $ airlock user email bob bob@example.com\n  $ airlock user email bob --clear')
    .action(act(cli, async (command, args) => (await import('./handlers/users.js')).userEmail(cli, command, args[0] ?? '', args[1])));
  remote(
    user
      .command('reset')
      .description("reset a user's credentials: revoke password, TOTP, recovery codes and sessions; print a new setup token")
      .argument('<username>', 'the user'),
  ).action(act(cli, async (command, args) => (await import('./handlers/users.js')).userReset(cli, command, args[0] ?? '')));

  const role = program.command('role').description('roles: the built-in five and custom ones (permissions live in Cedar policies)');
  remote(role.command('list').description('list roles'))
    .action(act(cli, async (command) => (await import('./handlers/users.js')).roleList(cli, command)));
  remote(
    role
      .command('create')
      .description('create a custom role (grant it permissions with `airlock policy set`)')
      .argument('<name>', 'role name')
      .requiredOption('--description <text>', 'what the role is for')
      .option('--requires-mfa', 'holders must sign in with MFA'),
  )
    .addHelpText('after', '\nExample:\n  $ airlock role create db-admin --description "runs database migrations" --requires-mfa')
    .action(act(cli, async (command, args) => (await import('./handlers/users.js')).roleCreate(cli, command, args[0] ?? '')));

  // --- service accounts -------------------------------------------------------------------------
  const sa = program.command('service-account').description('service accounts (CI, automation) and their API keys');
  remote(
    sa
      .command('create')
      .description('create a service account')
      .argument('<name>', 'lower-case letters, digits, . _ - (2 to 64 characters)')
      .option('--role <role>', 'grant this role (repeatable)', collect)
      .option('--description <text>', 'what it is for'),
  )
    .addHelpText('after', '\nExample:\n  $ airlock service-account create ci --role developer --description "GitHub Actions"')
    .action(act(cli, async (command, args) => (await import('./handlers/service-accounts.js')).serviceAccountCreate(cli, command, args[0] ?? '')));
  remote(sa.command('list').description('list service accounts'))
    .action(act(cli, async (command) => (await import('./handlers/service-accounts.js')).serviceAccountList(cli, command)));
  remote(sa.command('disable').description('disable a service account: its keys and tokens stop working').argument('<name>', 'the service account'))
    .action(act(cli, async (command, args) => (await import('./handlers/service-accounts.js')).serviceAccountDisable(cli, command, args[0] ?? '')));
  const key = sa.command('key').description("a service account's API keys");
  remote(
    key
      .command('create')
      .description('create an API key and print it once (alk_...)')
      .argument('<name>', 'the service account')
      .option('--description <text>', 'where the key is used')
      .option('--expires-in-days <n>', 'days until the key expires (default: never; the server sets the limit)', anyPositive),
  )
    .addHelpText('after', '\nExample:\n  $ airlock service-account key create ci --description "GitHub Actions" --expires-in-days 90 > ci.key')
    .action(act(cli, async (command, args) => (await import('./handlers/service-accounts.js')).keyCreate(cli, command, args[0] ?? '')));
  remote(key.command('list').description("list a service account's keys (never the key text)").argument('<name>', 'the service account'))
    .action(act(cli, async (command, args) => (await import('./handlers/service-accounts.js')).keyList(cli, command, args[0] ?? '')));
  remote(
    key
      .command('revoke')
      .description('revoke an API key now (tokens exchanged with it stop working too)')
      .argument('<name>', 'the service account')
      .argument('<keyId>', 'the key id from `key list`'),
  ).action(act(cli, async (command, args) => (await import('./handlers/service-accounts.js')).keyRevoke(cli, command, args[0] ?? '', args[1] ?? '')));

  // --- pipelines -----------------------------------------------------------------------------
  program
    .command('lint')
    .description('validate a pipeline file (default ./airlock.yaml): schema, stage graph, and hard-coded credentials')
    .argument('[file]', 'the pipeline file', 'airlock.yaml')
    .option('--json', 'print {"ok","problems":[{file,line,col,path,code,message,hint}]}')
    .addHelpText('after', '\nExit codes: 0 clean, 1 problems found (each printed as file:line:col: code: message), 2 usage error.')
    .action(act(cli, async (command, args) => (await import('./handlers/pipeline.js')).lint(cli, command, args[0])));
  const schemaCmd = program.command('schema').description('print published JSON Schemas');
  schemaCmd
    .command('pipeline')
    .description('the JSON Schema (draft 2020-12) of airlock.yaml')
    .action(act(cli, async (command) => (await import('./handlers/pipeline.js')).schema(cli, command)));

  const project = program.command('project').description('projects: git repositories that hold an airlock.yaml');
  remote(project.command('add').description('register a git repository (a local path or a URL) as a project').argument('<name>', 'project name').requiredOption('--repo <path-or-url>', 'the repository'))
    .addHelpText('after', '\nExample:\n  $ airlock project add web --repo https://git.example.com/web.git')
    .action(act(cli, async (command, args) => (await import('./handlers/runs.js')).projectAdd(cli, command, args[0] ?? '')));
  remote(project.command('list').description('list projects')).action(act(cli, async (command) => (await import('./handlers/runs.js')).projectList(cli, command)));

  remote(
    program
      .command('run')
      .description('run a project\'s pipeline at a commit: resolve the ref, read airlock.yaml from that commit, run every stage')
      .argument('<project>', 'project name')
      .option('--ref <ref>', 'branch, tag or commit (default HEAD of the repository)')
      .option('--reason <text>', 'why: recorded with the run')
      .option('--param <key=value>', 'a run parameter (repeatable)', collect)
      .option('--wait', 'wait for the run to end; exit 1 unless it succeeded')
      .option('-f, --follow', 'stream the output of every step until the run ends (implies --wait)'),
  )
    .addHelpText('after', '\nExample:\n  $ airlock run web --ref main --reason "release 1.4" --follow')
    .action(act(cli, async (command, args) => (await import('./handlers/runs.js')).runStart(cli, command, args[0] ?? '')));

  const runsCmd = program.command('runs').description('runs: list, inspect, cancel');
  remote(runsCmd.command('list').description('the newest runs').option('--project <name>', 'only this project').option('--limit <n>', 'at most this many (default 50, at most 500)', positiveInt(500)))
    .action(act(cli, async (command) => (await import('./handlers/runs.js')).runsList(cli, command)));
  remote(runsCmd.command('show').description('the whole story of a run: commit, trigger, stages, steps, outputs, reasons').argument('<run>', 'run id, or project#number'))
    .action(act(cli, async (command, args) => (await import('./handlers/runs.js')).runsShow(cli, command, args[0] ?? '')));
  remote(runsCmd.command('cancel').description('cancel a queued or running run').argument('<run>', 'run id, or project#number').option('--reason <text>', 'why: recorded'))
    .action(act(cli, async (command, args) => (await import('./handlers/runs.js')).runsCancel(cli, command, args[0] ?? '')));
  remote(program.command('logs').description('the stored output of every step of a run').argument('<run>', 'run id, or project#number').option('-f, --follow', 'keep streaming until the run ends'), 'not applicable: output is the raw log')
    .action(act(cli, async (command, args) => (await import('./handlers/runs.js')).logs(cli, command, args[0] ?? '')));

  // --- agent ------------------------------------------------------------------------------------
  const agent = program
    .command('agent')
    .description('run a remote agent: register once with a one-time token, then take and run pipeline jobs until SIGINT or SIGTERM')
    .option('--server <url>', 'Airlock server URL (first start only; later starts read it from the state file)')
    .option('--token <token>', 'one-time registration token from `airlock agent token create` (first start only; env AIRLOCK_AGENT_TOKEN)')
    .option('--name <name>', 'agent name (first start only; default: this host name)')
    .option('--state <dir>', 'state directory: API key and signing key, mode 0600 (default $XDG_STATE_HOME/airlock-agent or ~/.local/state/airlock-agent)')
    .addOption(new Option('--sandbox <mode>', 'auto: run steps under bubblewrap when it is installed; off: plain processes').choices(['auto', 'off']).default('auto'))
    .addHelpText(
      'after',
      '\nPrints "airlock agent <name> waiting for jobs from <url>" on stdout once registered. Reconnects with back-off\n' +
        '(1 s doubling to 30 s) while the server is unreachable. On SIGINT or SIGTERM it takes no new job, cancels the\n' +
        'running step, reports it and exits 0.\n\n' +
        'Example:\n  $ airlock agent --server https://airlock.example.com --token "$(cat agent.token)" --name build-1',
    )
    .action(act(cli, async (command) => (await import('./handlers/agent.js')).runAgentCommand(cli, command)));
  const agentToken = agent.command('token').description('one-time registration tokens for new agents');
  remote(
    agentToken
      .command('create')
      .description('create a one-time registration token (printed once) for an agent with these labels (needs MFA: admin or operator)')
      .option('--label <label>', 'a label the agent will have; a step runs on agents that have all of its runs-on labels (repeatable)', collect)
      .option('--expires-in-minutes <n>', 'minutes until the token expires (default 60; the server allows at most 10080)', anyPositive),
    'print {"token","tokenId","labels","expiresAt"}',
  )
    .addHelpText('after', '\nExample:\n  $ airlock agent token create --label linux --label big > agent.token')
    .action(act(cli, async (command) => (await import('./handlers/agent.js')).agentTokenCreate(cli, command)));

  // --- secrets --------------------------------------------------------------------------------
  const secret = program.command('secret').description('the secrets vault: encrypted, scoped, versioned values released only to steps that declare them');
  const scoped = (c: Command): Command => c.option('--project <name>', 'project scope (default: global)').option('--environment <name>', 'environment scope (needs --project)');
  remote(
    scoped(
      secret
        .command('set')
        .description('store a new version of a secret; the value comes from stdin or --from-file, never from an argument')
        .argument('<name>', 'upper-case name, as the step sees it (e.g. DB_PASSWORD)')
        .option('--from-file <file>', 'read the value from this file instead of stdin')
        .option('--description <text>', 'what it is for')
        .option('--owner <name>', 'who answers for it: a user, service account or role (default: you, on first set)')
        .option('--rotate-every-days <n>', 'rotation interval in days (overdue rotations are flagged)', positiveInt(3650))
        .option('--expires <iso-time>', 'the value expires at this time (a step asking for it after then is refused)'),
    ),
  )
    .addHelpText('after', '\nExample:\n  $ printf %s "$NEW_PASSWORD" | airlock secret set DB_PASSWORD --project web --environment production')
    .action(act(cli, async (command, args) => (await import('./handlers/secrets.js')).secretSet(cli, command, args[0] ?? '')));
  remote(secret.command('list').description('secrets and their metadata (never values)')).action(act(cli, async (command) => (await import('./handlers/secrets.js')).secretList(cli, command)));
  remote(scoped(secret.command('versions').description('the versions of a secret (size, when, by whom; never values)').argument('<name>', 'secret name')))
    .action(act(cli, async (command, args) => (await import('./handlers/secrets.js')).secretVersions(cli, command, args[0] ?? '')));
  remote(
    scoped(
      secret
        .command('reveal')
        .description('print a secret value: needs the permission, a fresh MFA proof (step-up) and a justification; recorded')
        .argument('<name>', 'secret name')
        .requiredOption('--justification <text>', 'why you need to read it (at least 10 characters; recorded)')
        .option('--version <n>', 'an older version', positiveInt(1_000_000)),
    ),
    'print {"name","version","valueBase64"}',
  ).action(act(cli, async (command, args) => (await import('./handlers/secrets.js')).secretReveal(cli, command, args[0] ?? '')));
  remote(scoped(secret.command('delete').description('delete a secret (its versions stay encrypted for the record)').argument('<name>', 'secret name')))
    .action(act(cli, async (command, args) => (await import('./handlers/secrets.js')).secretDelete(cli, command, args[0] ?? '')));
  remote(scoped(secret.command('usage').description('who and what read or changed a secret, and when (from the audit log)').argument('<name>', 'secret name')))
    .action(act(cli, async (command, args) => (await import('./handlers/secrets.js')).secretUsage(cli, command, args[0] ?? '')));
  remote(
    scoped(
      secret
        .command('rotate')
        .description('store a new version produced by a command (its stdout); a failing or silent command changes nothing')
        .argument('<name>', 'secret name')
        .requiredOption('--command <cmd>', 'shell command that prints the new value, e.g. a script calling the provider'),
    ),
  )
    .addHelpText('after', '\nExample:\n  $ airlock secret rotate DB_PASSWORD --project web --command ./scripts/new-db-password.sh')
    .action(act(cli, async (command, args) => (await import('./handlers/secrets.js')).secretRotate(cli, command, args[0] ?? '')));
  secret
    .command('rewrap')
    .description('rotate the key-encryption key and re-wrap every data key under it, in batches, without downtime (local: needs the database and the root key)')
    .option('--no-rotate', 're-wrap under the current key-encryption key without making a new one')
    .option('--json', 'print {"rotatedTo","rewrapped","batches","kekId"}')
    .action(act(cli, async (command) => (await import('./handlers/vault.js')).rewrap(cli, command)));
  remote(secret.command('audit-hash').description("the vault's HMAC of a value from stdin (or --from-file): match a leaked value against audit entries without storing it").option('--from-file <file>', 'read the value from this file'))
    .action(act(cli, async (command) => (await import('./handlers/secrets.js')).secretAuditHash(cli, command)));

  // --- policy -----------------------------------------------------------------------------------
  const policy = program.command('policy').description('the Cedar policy set: who may do what');
  remote(policy.command('get').description('print the policy version in force (version, digest, author, reason) and its Cedar text'))
    .action(act(cli, async (command) => (await import('./handlers/policy-api.js')).policyGet(cli, command)));
  remote(
    policy
      .command('set')
      .description('replace the whole policy set with these .cedar files, as a new recorded version (needs a fresh step-up)')
      .argument('<file...>', '.cedar files (each policy with an @id); - reads stdin')
      .requiredOption('--reason <text>', 'why: kept with the version and recorded in the audit log'),
  )
    .addHelpText('after', '\nThe files replace every policy in force: include all of them.\n\nExample:\n  $ airlock policy set policies/*.cedar --reason "auditors may read runs (TICKET-42)"')
    .action(
      act(cli, async (command) => {
        const files = (command.processedArgs[0] ?? []) as string[];
        return (await import('./handlers/policy-api.js')).policySet(cli, command, files);
      }),
    );
  remote(policy.command('versions').description('list the stored policy versions: number, time, author, digest, reason'))
    .action(act(cli, async (command) => (await import('./handlers/policy-api.js')).policyVersions(cli, command)));
  policy
    .command('show')
    .description('print a policy set, validated first: the shipped defaults, a directory, or the version in force')
    .option('--policies <dir>', 'a directory of .cedar files (the whole set) instead of the shipped defaults')
    .option('--active', 'the version in force in the database (read-only)')
    .option('--schema', 'print the Cedar schema instead')
    .option('--json', 'print {"source","version","digest","count","policies":{id: text}}')
    .action(act(cli, async (command) => (await import('./handlers/policy.js')).show(cli, command)));
  policy
    .command('test')
    .description('decide one request offline and print the deciding policies (exit 0 allowed, 1 denied)')
    .requiredOption('--principal <type:id>', 'user:ID, service-account:ID, workload:ID or anonymous')
    .option('--role <name>', 'a role the principal holds (repeatable; users and service accounts)', collect)
    .option('--attr <key=value>', 'a workload attribute: pipeline, run, step (repeatable)', collect)
    .requiredOption('--action <action>', 'the action, for example runs.read (`airlock policy show --schema` lists them)')
    .option('--resource <type:id>', 'resource:NAME, user:ID or service-account:ID (default resource:<first part of the action>)')
    .option('--mfa', 'the session has an MFA proof')
    .option('--mfa-age <seconds>', 'seconds since the MFA proof (implies --mfa; default 0)')
    .option('--auth-method <method>', 'context.authMethod (default by principal: session, service-token, workload-token, anonymous)')
    .option('--source-address <address>', 'context.sourceAddress (default 127.0.0.1)')
    .option('--policies <dir>', 'evaluate this directory of .cedar files (the whole set) instead of the shipped defaults')
    .option('--active', 'evaluate the version in force in the database')
    .option('--json', 'print {"allowed","policies","errors","refusal","request","policySet"}')
    .addHelpText('after', '\nExample:\n  $ airlock policy test --principal user:bob --role developer --action users.roles.update --resource user:bob')
    .action(act(cli, async (command) => (await import('./handlers/policy.js')).test(cli, command)));

  registerArtifactCommands(program, cli, remote);
  registerDeliveryCommands(program, cli, remote);
  registerFreezeCommands(program, cli, remote);

  // --- export --------------------------------------------------------------------------------
  const exportCmd = program.command('export').description('export evidence for third-party verification');
  remote(
    exportCmd
      .command('in-toto')
      .description('write a run as in-toto v0.9 metadata (root.layout, layout.pub, one link per step) for in-toto-verify')
      .argument('<run>', 'run id, or project#number')
      .argument('<dir>', 'directory to write (created; must be empty unless --force)')
      .option('--force', "replace the export's files in a non-empty directory"),
  )
    .addHelpText('after', '\nExample:\n  $ airlock export in-toto web#42 ./evidence\n  $ in-toto-verify --layout evidence/root.layout --layout-keys evidence/layout.pub --key-types ed25519 --link-dir evidence')
    .action(act(cli, async (command, args) => (await import('./handlers/intoto.js')).exportInTotoRun(cli, command, args[0] ?? '', args[1] ?? '')));

  // --- verification and keys ----------------------------------------------------------------
  remote(
    program
      .command('verify')
      .description('verify an artifact (a file or sha256:<hex>) from its signed evidence: digest, signatures, provenance (builder, repository, commit, pipeline), test results; or, as `verify deployment FILE`, an exported deployment record offline; exit 1 with reasons on failure')
      .argument('<digest-or-file>', 'the artifact file, or its sha256:<64 hex> digest; or the word deployment')
      .argument('[record-file]', 'with deployment: the record file from `airlock deployments export`')
      .option('--policy <file>', 'YAML/JSON expectations: builderId, repositories, commits, pipelineDigests (each a list of allowed values), requireTests (default true), requireSbom (default false)')
      .option('--key <file>', 'trust only this Ed25519 public key (PEM; repeatable); default: the keys the server publishes', collect)
      .option('--log-key <vkey>', 'with deployment: trust this audit-log verifier key (`airlock audit key` form; repeatable); default: the server\'s', collect)
      .option('--attestations <file>', 'offline: read the attestations (DSSE envelopes, Sigstore bundles, or a saved GET /api/v1/attestations answer) from this file; needs --key')
      .option('--vsa <file>', 'write the SLSA verification summary (VSA v1 statement) of the verdict to this file'),
    'print {"digest","result","checks","reasons","vsa",...}; for a deployment {"ok","checks","record"}',
  )
    .addHelpText('after', '\nExamples:\n  $ airlock verify dist/app.tgz --policy verify-policy.yaml --vsa app.vsa.json\n  $ airlock verify sha256:0d1f… --attestations evidence.json --key airlock-attestation.pub\n  $ airlock verify deployment record.json --key airlock-attestation.pub --log-key "$(cat audit.vkey)"')
    .action(act(cli, async (command, args) => (await import('./handlers/verify.js')).verify(cli, command, args[0] ?? '', args[1])));
  remote(
    program
      .command('attestations')
      .description("write an artifact's signed evidence as files for other tools: a Sigstore bundle v0.3 and a DSSE envelope per attestation, the API answer (for verify --attestations), and the published attestation keys (keys/<kid>.pem)")
      .argument('<digest>', "the artifact's sha256:<64 hex> digest")
      .requiredOption('--out <dir>', 'directory to write into (created if missing)'),
    'print {"digest","dir","files"}',
  )
    .addHelpText('after', '\nExample:\n  $ airlock attestations sha256:0d1f… --out ./evidence\n  $ node examples/sigstore-verify/verify.mjs --bundle evidence/provenance.sigstore.json --key evidence/keys/<kid>.pem --artifact dist/app.tgz')
    .action(act(cli, async (command, args) => (await import('./handlers/verify.js')).attestationsExport(cli, command, args[0] ?? '')));
  const keys = program.command('keys').description('the platform signing keys: attestations (provenance, tests, SBOM) and in-toto layouts');
  remote(keys.command('list').description('the published public keys with their ids (no login needed)'), 'print {"keys":[...]}').action(
    act(cli, async (command) => (await import('./handlers/verify.js')).keysList(cli, command)),
  );
  remote(
    keys
      .command('rotate')
      .description('make a new signing key; the old one becomes verify-only (admin; a fresh MFA proof)')
      .addOption(new Option('--purpose <purpose>', 'which key').choices(['attestation', 'layout']).default('attestation'))
      .option('--project <name>', "with --purpose layout: the project whose in-toto layout key to rotate"),
    'print {"kid","retired"}',
  ).action(act(cli, async (command) => (await import('./handlers/verify.js')).keysRotate(cli, command)));

  return program;
}

/** The options every command that talks to a server takes. */
function remote(command: Command, jsonHelp = JSON_HELP): Command {
  return command.option('--server <url>', SERVER_HELP).option('--json', jsonHelp);
}
