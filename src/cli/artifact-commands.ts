/**
 * `airlock artifact …` and `airlock release …` definitions, registered by program.ts. Like
 * the rest of the tree: definitions only, each action imports its handler when it runs.
 */
import type { Command } from 'commander';
import type { Cli } from './cli.js';
import { act, collect } from './cli.js';
import { positiveInt } from './parse.js';

/** program.ts's `remote`: adds --server and --json (with an optional --json description). */
export type RemoteOptionsAdder = (command: Command, jsonHelp?: string) => Command;

export function registerArtifactCommands(program: Command, cli: Cli, remote: RemoteOptionsAdder): void {
  const handlers = () => import('./handlers/artifacts.js');
  const artifact = program.command('artifact').description('the artifact store: run outputs by digest, immutable published names, verified downloads');
  remote(
    artifact
      .command('list')
      .description('artifacts, newest first: all, the outputs of one run, or the versions of one name')
      .option('--run <run>', 'only the outputs of this run (id, or project#number)')
      .option('--name <name>', 'only the published versions of this name')
      .option('--limit <n>', 'at most this many (default 50, at most 500)', positiveInt(500)),
    'print {"artifacts":[{digest,size,createdAt,firstRunId,path?,names}]}',
  ).action(act(cli, async (command) => (await handlers()).artifactList(cli, command)));
  remote(artifact.command('show').description('one artifact: digest, size, producing run, published names, releases holding it').argument('<artifact>', 'sha256:<hex> or NAME@VERSION'))
    .addHelpText('after', '\nExample:\n  $ airlock artifact show acme/web-app@1.4.2')
    .action(act(cli, async (command, args) => (await handlers()).artifactShow(cli, command, args[0] ?? '')));
  remote(
    artifact
      .command('get')
      .description('download an artifact to a file; the bytes are re-hashed here and the file appears only if they match (recorded)')
      .argument('<artifact>', 'sha256:<hex> or NAME@VERSION')
      .requiredOption('-o, --output <file>', 'where to write it (replaced only after the digest matched)'),
    'print {"digest","size","path","verified"}',
  )
    .addHelpText('after', '\nExit code 1 when the bytes do not match the digest (INTEGRITY_FAILED); nothing is written then.\n\nExample:\n  $ airlock artifact get acme/web-app@1.4.2 -o web-app.tgz')
    .action(act(cli, async (command, args) => (await handlers()).artifactGet(cli, command, args[0] ?? '')));
  remote(artifact.command('verify').description('re-hash the stored bytes on the server; a corrupt or missing blob exits 1 (INTEGRITY_FAILED) and is recorded').argument('<artifact>', 'sha256:<hex> or NAME@VERSION'), 'print {"digest","size","ok","verifiedAt"}')
    .action(act(cli, async (command, args) => (await handlers()).artifactVerify(cli, command, args[0] ?? '')));
  remote(
    artifact
      .command('publish')
      .description('give an artifact an immutable NAME@VERSION; the same digest again is a no-op, another digest is refused (recorded)')
      .argument('<name@version>', 'e.g. acme/web-app@1.4.2 (lower-case name parts; "latest" is not a version)')
      .argument('<digest>', 'sha256:<hex> of the artifact')
      .option('--run <run>', 'the run that produced it (id, or project#number): the digest must be one of its outputs')
      .option('--path <path>', 'the output path in that run'),
  )
    .addHelpText('after', '\nExample:\n  $ airlock artifact publish acme/web-app@1.4.2 sha256:… --run web#12 --path dist/web-app.tgz')
    .action(act(cli, async (command, args) => (await handlers()).artifactPublish(cli, command, args[0] ?? '', args[1] ?? '')));

  const release = program.command('release').description('releases: a named, pinned set of digests from one succeeded run');
  remote(
    release
      .command('create')
      .description('pin the outputs of a succeeded run (all, or each --path) under a release name unique in the project (recorded)')
      .argument('<name>', 'release name, e.g. v1.4.2 (never reused in the project)')
      .requiredOption('--project <name>', 'the project')
      .requiredOption('--run <run>', 'the run (id, project#number, or its number in --project)')
      .option('--path <path>', 'release only this output (repeatable; default every output)', collect),
  )
    .addHelpText('after', '\nExample:\n  $ airlock release create v1.4.2 --project web --run 12 --path dist/web-app.tgz --path dist/sbom.json')
    .action(act(cli, async (command, args) => (await handlers()).releaseCreate(cli, command, args[0] ?? '')));
  remote(release.command('list').description("a project's releases, newest first").requiredOption('--project <name>', 'the project'))
    .action(act(cli, async (command) => (await handlers()).releaseList(cli, command)));
  remote(release.command('show').description('a release: its run and every pinned path and digest').argument('<name>', 'release name').requiredOption('--project <name>', 'the project'))
    .action(act(cli, async (command, args) => (await handlers()).releaseShow(cli, command, args[0] ?? '')));
}
