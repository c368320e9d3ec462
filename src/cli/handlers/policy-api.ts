/** `airlock policy get|set|versions`: the Cedar policy set in force, over the HTTP API. */
import type { Command } from 'commander';
import { ValidationError } from '../../errors/index.js';
import type { Cli } from '../cli.js';
import { EXIT_OK } from '../cli.js';
import { printJson, readInput, say } from '../io.js';
import type { RemoteOptions } from './remote.js';
import { table, withSession } from './remote.js';

interface PolicyVersionInfo {
  readonly version: number;
  readonly digest: string;
  readonly author: string;
  readonly reason: string;
  readonly createdAt: string;
}

interface PolicyVersion extends PolicyVersionInfo {
  readonly policies: Readonly<Record<string, string>>;
}

/** `airlock policy get`: the version in force with the text of every policy. */
export async function policyGet(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const v = await s.call((c) => c.get<PolicyVersion>('/api/v1/policies'));
    if (opts.json === true) {
      printJson(cli.io, v);
      return EXIT_OK;
    }
    say(cli.io, `// version ${v.version}, ${v.digest}`);
    say(cli.io, `// by ${v.author} at ${v.createdAt}: ${v.reason.replace(/[\r\n]+/g, ' ')}`);
    for (const id of Object.keys(v.policies).sort()) {
      say(cli.io, '');
      say(cli.io, (v.policies[id] ?? '').trimEnd());
    }
    return EXIT_OK;
  });
}

interface SetOptions extends RemoteOptions {
  readonly reason: string;
}

/** `airlock policy set FILE...`: replace the whole set with these files, as a new version. */
export async function policySet(cli: Cli, command: Command, files: readonly string[]): Promise<number> {
  const opts = command.opts<SetOptions>();
  if (opts.reason.trim() === '') throw new ValidationError('--reason must not be empty', [{ path: 'reason', message: 'empty' }]);
  // Read every file before contacting the server: a typo in a path changes nothing.
  const texts = await Promise.all(files.map((f) => readInput(cli.io, f)));
  const cedar = texts.map((t) => t.trimEnd()).join('\n\n');
  return withSession(cli, command, async (s) => {
    const written = await s.call((c) => c.put<{ version: number; digest: string }>('/api/v1/policies', { cedar, reason: opts.reason }));
    if (opts.json === true) printJson(cli.io, written);
    else say(cli.io, `policy version ${written.version} is in force (${written.digest})`);
    return EXIT_OK;
  });
}

/** `airlock policy versions`: the history, newest first as the server lists it. */
export async function policyVersions(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const { versions } = await s.call((c) => c.get<{ versions: PolicyVersionInfo[] }>('/api/v1/policies/versions'));
    if (opts.json === true) {
      printJson(cli.io, { versions });
    } else {
      const rows = versions.map((v) => [String(v.version), v.createdAt, v.author, v.digest.slice(0, 19), v.reason.replace(/[\r\n]+/g, ' ')]);
      for (const line of table(['VERSION', 'CREATED', 'AUTHOR', 'DIGEST', 'REASON'], rows)) say(cli.io, line);
    }
    return EXIT_OK;
  });
}
