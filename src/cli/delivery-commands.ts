/**
 * `airlock deploy`, `approve`, `deny`, `deployments …` and `freeze` definitions, registered by
 * program.ts. Definitions only: each action imports its handler when it runs.
 * (`airlock verify deployment FILE` is a form of `airlock verify`, defined in program.ts.)
 */
import type { Command } from 'commander';
import type { RemoteOptionsAdder } from './artifact-commands.js';
import type { Cli } from './cli.js';
import { act } from './cli.js';
import { isoTime, positiveInt } from './parse.js';

const VIEW_JSON = 'print the deployment as JSON: {id,project,environment,runId,state,reason,artifacts,commitRange,bindingDigest,approvals,gate,recordDigest,...}';

export function registerDeliveryCommands(program: Command, cli: Cli, remote: RemoteOptionsAdder): void {
  const handlers = () => import('./handlers/delivery.js');

  remote(
    program
      .command('deploy')
      .description("ask to deploy a succeeded run's outputs to an environment; when no approval is needed and nothing is frozen, deploy at once (recorded)")
      .argument('<run>', 'run id, or project#number')
      .argument('<environment>', 'an environment the run\'s airlock.yaml declares, e.g. staging')
      .requiredOption('--justification <text>', 'why this ships now (at least 10 characters; recorded and shown to approvers)')
      .option('--ticket <ref>', 'a change ticket reference, e.g. OPS-123 (recorded)')
      .option('--no-wait', 'only file the request: do not deploy now even when nothing is missing (deploy later with `airlock deployments deploy ID`)'),
    VIEW_JSON,
  )
    .addHelpText(
      'after',
      '\nWhen approvals are needed, prints the request id, what is missing and the command approvers run.\n' +
        'Exit code 1 when a deploy that started did not succeed (failed, or rolled back after a failed health check).\n\n' +
        'Example:\n  $ airlock deploy web#42 production --justification "fix checkout rounding (INC-981)" --ticket OPS-123',
    )
    .action(act(cli, async (command, args) => (await handlers()).deploy(cli, command, args[0] ?? '', args[1] ?? '')));

  for (const [name, verb, help] of [
    ['approve', 'approve', 'approve a deployment request: bound to exactly what ships, valid for the environment\'s period (step-up; recorded and signed)'],
    ['deny', 'deny', 'deny a deployment request: an eligible denial blocks it (step-up; recorded and signed)'],
  ] as const) {
    remote(
      program
        .command(name)
        .description(help)
        .argument('<deployment>', 'the deployment id (from `airlock deploy` or `airlock deployments list`)')
        .requiredOption('--justification <text>', `why you ${verb} it (recorded in the deployment record)`),
      VIEW_JSON,
    )
      .addHelpText(
        'after',
        '\nNeeds a fresh MFA proof: at a terminal you are asked for a code; otherwise run `airlock step-up` first.\n' +
          'Refused (exit 1, FORBIDDEN with the reason) for whoever asked for the deployment, triggered the run, or\n' +
          "authored or committed a change in it, and for anyone without a role the environment's rules name.\n\n" +
          `Example:\n  $ airlock ${name} 3f6c…-… --justification "reviewed the diff and the test evidence"`,
      )
      .action(act(cli, async (command, args) => (await handlers()).decide(cli, command, args[0] ?? '', verb)));
  }

  const deployments = program.command('deployments').description('deployment requests and records: list, show, deploy an approved request, export the signed record');
  remote(
    deployments
      .command('list')
      .description('deployments, newest first')
      .option('--project <name>', 'only this project')
      .option('--environment <name>', 'only this environment')
      .option('--limit <n>', 'at most this many (default 50, at most 500)', positiveInt(500)),
    'print {"deployments":[{id,project,environment,runId,state,requestedBy,createdAt,finishedAt,reason,recordDigest}]}',
  ).action(act(cli, async (command) => (await handlers()).deploymentsList(cli, command)));
  remote(deployments.command('show').description('one deployment: what ships, who asked and why, approvals (counted, refused, missing), and whether it may deploy now').argument('<id>', 'the deployment id'), VIEW_JSON)
    .action(act(cli, async (command, args) => (await handlers()).deploymentsShow(cli, command, args[0] ?? '')));
  remote(deployments.command('deploy').description('deploy a request whose gates are open (approvals, windows, freezes, evidence are checked again); exit 1 unless it succeeded').argument('<id>', 'the deployment id'), VIEW_JSON)
    .action(act(cli, async (command, args) => (await handlers()).deploymentsDeploy(cli, command, args[0] ?? '')));
  remote(
    deployments
      .command('export')
      .description('write the signed deployment record with its audit event, inclusion proof and signed checkpoint, for `airlock verify deployment`')
      .argument('<id>', 'the deployment id (finished: a record is written when a deploy ends)')
      .argument('<file>', 'where to write it (JSON)')
      .option('--force', 'replace the file if it exists'),
    'print {"deploymentId","path","format"}',
  )
    .addHelpText('after', '\nExample:\n  $ airlock deployments export 3f6c…-… record.json && airlock verify deployment record.json')
    .action(act(cli, async (command, args) => (await handlers()).deploymentsExport(cli, command, args[0] ?? '', args[1] ?? '')));

  remote(
    program
      .command('freeze')
      .description('freeze an environment until a time: deployments to it are refused until then (recorded)')
      .argument('<environment>', 'the environment, e.g. production')
      .requiredOption('--until <time>', 'ISO 8601 end of the freeze, e.g. 2025-01-06T08:00:00Z', isoTime)
      .requiredOption('--reason <text>', 'why (recorded; shown when a deploy is refused)')
      .option('--from <time>', 'ISO 8601 start (default now)', isoTime),
    'print {"id","environment","from","until","reason"}',
  )
    .addHelpText('after', '\nRecurring freezes are declared in airlock.yaml (cron and time zone).\n\nExample:\n  $ airlock freeze production --until 2025-01-06T08:00:00Z --reason "year-end freeze"')
    .action(act(cli, async (command, args) => (await handlers()).freeze(cli, command, args[0] ?? '')));
}
