/** `airlock export in-toto RUN DIR`: a run as files in-toto-verify checks (docs/intoto.md). */
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { AirlockError } from '../../errors/index.js';
import { LAYOUT_FILE, LAYOUT_KEY_FILE, writeExport } from '../../intoto/index.js';
import type { ExportFile } from '../../intoto/index.js';
import type { Cli } from '../cli.js';
import { EXIT_OK } from '../cli.js';
import { note, printJson, say } from '../io.js';
import type { RemoteOptions } from './remote.js';
import { seg, withSession } from './remote.js';

function filesOf(answer: unknown): ExportFile[] {
  const files = (answer as { files?: unknown } | null)?.files;
  if (!Array.isArray(files) || !files.every((f: unknown) => typeof (f as ExportFile | null)?.name === 'string' && typeof (f as ExportFile).content === 'string')) {
    throw new AirlockError('BAD_RESPONSE', 'the server answered the in-toto export with something other than {files: [{name, content}]}');
  }
  return files as ExportFile[];
}

/** POSIX shell quoting, only when needed: the printed command is meant to be pasted. */
const sh = (arg: string): string => (/^[A-Za-z0-9_./:=@%+-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`);

/** The command a verifier runs over `dir` (in-toto 1.3 flags). */
export function verifyCommand(dir: string): string {
  return `in-toto-verify --layout ${sh(join(dir, LAYOUT_FILE))} --layout-keys ${sh(join(dir, LAYOUT_KEY_FILE))} --key-types ed25519 --link-dir ${sh(dir)}`;
}

export async function exportInTotoRun(cli: Cli, command: Command, run: string, dir: string): Promise<number> {
  const opts = command.opts<RemoteOptions & { force?: boolean }>();
  return withSession(cli, command, async (s) => {
    const files = filesOf(await s.call((c) => c.get<unknown>(`/api/v1/runs/${seg(run)}/in-toto`)));
    const target = resolve(cli.io.cwd, dir);
    // Names come from the server: writeExport refuses anything but a plain file name.
    await writeExport(target, files, { overwrite: opts.force === true });
    if (opts.json === true) {
      printJson(cli.io, { dir: target, files: files.map((f) => f.name), verify: verifyCommand(target) });
    } else {
      say(cli.io, `wrote ${files.length} files to ${target}: ${files.map((f) => f.name).join(', ')}`);
      note(cli.io, `verify with: ${verifyCommand(target)}`);
    }
    return EXIT_OK;
  });
}
