/**
 * `airlock deploy`, `approve`, `deny`, `break-glass`, `rollback`, `deployments …` and `incidents …` definitions, registered by
 * program.ts. Definitions only: each action imports its handler when it runs.
 * (`airlock verify deployment FILE` is a form of `airlock verify`, defined in program.ts.)
 */
import type { Command } from 'commander';
import type { RemoteOptionsAdder } from './artifact-commands.js';
import type { Cli } from './cli.js';
import { act } from './cli.js';
import { positiveInt } from './parse.js';

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
      .command('break-glass')
      .description('deploy a request that approvals or a freeze block, in an emergency: needs a second person to run the same command (step-up; high-severity event; opens an incident)')
      .argument('<deployment>', 'the deployment id (from `airlock deploy` or `airlock deployments list`)')
      .requiredOption('--justification <text>', 'why this cannot wait for approvals or the freeze (recorded in the record and the incident)'),
    'print {"deployment":{...},"granted","participants","incident"}',
  )
    .addHelpText(
      'after',
      '\nTwo distinct people holding `breakglass.use` (operator, release-manager, admin), each with a fresh MFA step-up,\n' +
        'must ask within an hour. The first request waits; the second deploys at once. Evidence and same-digest promotion\n' +
        'still apply. The incident stays open until a postmortem is attached (airlock incidents close).\n' +
        'Exit code 1 when the deploy that started did not succeed.\n\n' +
        'Example:\n  $ airlock break-glass 3f6c…-… --justification "payments down (INC-77); the fix cannot wait for the freeze"',
    )
    .action(act(cli, async (command, args) => (await handlers()).breakGlass(cli, command, args[0] ?? '')));

  remote(
    program
      .command('rollback')
      .description("roll an environment back to a release it ran before (default: the last successful one before the current); recorded as a rollback")
      .argument('<environment>', 'the environment, e.g. production')
      .requiredOption('--project <name>', 'the project to roll back')
      .requiredOption('--justification <text>', 'why (at least 10 characters; recorded)')
      .option('--to <deployment>', 'the successful deployment to return to (see airlock deployments list --environment ENV)'),
    VIEW_JSON,
  )
    .addHelpText(
      'after',
      '\nThe digests were approved for this environment when they first shipped, so no new approval is needed unless the\n' +
        "environment's rules say `approvals: { rollback: true }`; then this files a request to approve. Freezes and evidence\n" +
        'still apply. Exit code 1 unless the rollback deployed and passed its health check.\n\n' +
        'Example:\n  $ airlock rollback production --project web --justification "checkout errors since 14:02 (INC-981)"',
    )
    .action(act(cli, async (command, args) => (await handlers()).rollback(cli, command, args[0] ?? '')));

  const incidents = program.command('incidents').description('incidents opened by break-glass deployments: list, show, close with a postmortem');
  remote(incidents.command('list').description('incidents, newest first').option('--open', 'only those still waiting for a postmortem'), 'print {"incidents":[{id,kind,deploymentId,summary,openedAt,openedBy,state,closedAt,closedBy}]}').action(
    act(cli, async (command) => (await handlers()).incidentsList(cli, command)),
  );
  remote(incidents.command('show').description('one incident, with its postmortem when closed').argument('<id>', 'the incident id'), 'print the incident as JSON').action(
    act(cli, async (command, args) => (await handlers()).incidentsShow(cli, command, args[0] ?? '')),
  );
  remote(
    incidents
      .command('close')
      .description('attach the postmortem, which closes the incident (recorded)')
      .argument('<id>', 'the incident id')
      .requiredOption('--postmortem <file>', "a file with the postmortem (at least 40 characters: what happened, why the bypass was needed, what follows); '-' reads stdin"),
    'print the closed incident as JSON',
  )
    .addHelpText('after', '\nExample:\n  $ airlock incidents close 9b1d…-… --postmortem postmortem.md')
    .action(act(cli, async (command, args) => (await handlers()).incidentsClose(cli, command, args[0] ?? '')));
}
