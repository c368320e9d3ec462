/** `airlock audit export` and `airlock audit verify-export`. */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { openApp } from '../../app/index.js';
import { exportLog, latestCheckpoint, openCheckpoint, parseVerifierKey, verifyExport } from '../../audit/index.js';
import type { ExportSummary, SignedCheckpoint } from '../../audit/index.js';
import { AirlockError } from '../../errors/index.js';
import type { Cli } from '../context.js';
import { EXIT_FAILED, EXIT_OK, UsageError, act, cliConfig, cliLogger, collect, homeVerifierKey, openReader, trustedVerifiers } from '../context.js';
import { inputLines, note, printJson, progress, say, writeLine } from '../io.js';
import { nonNegativeInt } from '../parse.js';

export function registerExport(audit: Command, cli: Cli): void {
  audit
    .command('export')
    .description('write entries with inclusion proofs against a signed checkpoint as JSON Lines, verifiable offline')
    .option('--from <seq>', 'first sequence number (default 0)', nonNegativeInt)
    .option('--to <seq>', 'stop before this sequence number (default: the current tree size)', nonNegativeInt)
    .option('-o, --output <file>', 'write to FILE instead of stdout')
    .option('--progress', 'report progress on stderr even when it is not a terminal')
    .option('--json', 'with -o, print the summary as JSON (without -o, stdout carries the export itself)')
    .addHelpText(
      'after',
      '\nThe first line is a header {"type":"airlock.audit.export/v1","origin","checkpoint","treeSize","rootHash","verifierKey","from","to"};\n' +
        'each further line is {"type":"entry","seq","event","leafHash","inclusionProof"}. If no signed checkpoint covers the range yet,\n' +
        'one is signed first (this needs the home\'s signing key).',
    )
    .action(act(cli, (command) => runExport(cli, command)));

  audit
    .command('verify-export')
    .description('verify an export offline: checkpoint signature, every leaf hash and inclusion proof, contiguous seqs')
    .argument('<file>', 'export file, or - for stdin')
    .option('--key <vkey>', "verifier key to trust (repeatable); default: this home's key. Never the key the export names", collect, [])
    .option('--progress', 'report progress on stderr even when it is not a terminal')
    .option('--json', 'print the verification result as JSON')
    .action(act(cli, (command, args) => runVerifyExport(cli, command, args[0] ?? '-')));
}

interface ExportCliOptions {
  readonly from?: number;
  readonly to?: number;
  readonly output?: string;
  readonly progress?: boolean;
  readonly json?: boolean;
}

/** Does `cp` verify with `vkey`? A checkpoint from before a key rotation does not. */
function verifiesWith(cp: SignedCheckpoint, vkey: string): boolean {
  try {
    openCheckpoint(cp.note, [parseVerifierKey(vkey)]);
    return true;
  } catch {
    return false;
  }
}

async function runExport(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<ExportCliOptions>();
  const config = cliConfig(cli, command);
  const reader = await openReader(config);
  let summary: ExportSummary;
  let path: string | undefined;
  try {
    const head = await reader.audit.head();
    const from = opts.from ?? 0;
    const to = opts.to ?? head.size;
    if (to > head.size) throw new UsageError(`--to ${to} is beyond the end of the log (${head.size} entries)`);
    if (from > to) throw new UsageError(`--from ${from} is after --to ${to}`);

    let cp = await latestCheckpoint(reader.store.db);
    let vkey: string | undefined;
    try {
      vkey = (await homeVerifierKey(config)).verifierKey;
    } catch (err) {
      if (!(err instanceof AirlockError && err.details.reason === 'missing')) throw err;
    }
    if (cp === undefined || cp.size < to || vkey === undefined || !verifiesWith(cp, vkey)) {
      // Proofs must be against a signed tree that covers the range: sign one now.
      const app = await openApp(config, { logger: cliLogger(cli, config) });
      try {
        cp = await app.checkpointer.checkpointNow();
        vkey = app.key.verifierKey;
      } finally {
        await app.close();
      }
      note(cli.io, `airlock: signed a checkpoint of size ${cp.size} to cover the export`);
    }

    const bar = progress(cli.io, 'exporting', opts.progress === true);
    const stream = opts.output === undefined ? cli.io.stdout : createWriteStream((path = resolve(cli.io.cwd, opts.output)), { mode: 0o600 });
    const failed = new Promise<never>((_, reject) => {
      if (path !== undefined) stream.once('error', reject);
    });
    failed.catch(() => undefined);
    try {
      summary = await Promise.race([
        exportLog({
          log: reader.audit,
          checkpoint: cp,
          verifierKey: vkey,
          from,
          to,
          write: (line) => writeLine(stream, line),
          onProgress: (done, total) => {
            bar.update(done, total);
          },
        }),
        failed,
      ]);
      if (path !== undefined) {
        stream.end();
        await Promise.race([once(stream, 'finish'), failed]);
      }
    } catch (err) {
      if (path !== undefined) {
        stream.end();
        await rm(path, { force: true });
        const code = (err as NodeJS.ErrnoException).code;
        if (!(err instanceof AirlockError) && code !== undefined) throw new AirlockError('INTERNAL', `cannot write ${path} (${code})`, { path });
      }
      throw err;
    } finally {
      bar.end();
    }
  } finally {
    await reader.close();
  }
  const text = `exported entries ${summary.from} to ${summary.to - 1} (${summary.entries}) with inclusion proofs against the checkpoint of size ${summary.treeSize}`;
  if (path === undefined) {
    note(cli.io, `airlock: ${summary.entries === 0 ? 'exported no entries' : text}`);
  } else if (opts.json === true) {
    printJson(cli.io, { file: path, ...summary });
  } else {
    say(cli.io, `${summary.entries === 0 ? 'exported no entries' : text} to ${path}`);
  }
  return EXIT_OK;
}

async function runVerifyExport(cli: Cli, command: Command, file: string): Promise<number> {
  const opts = command.opts<{ key: readonly string[]; progress?: boolean; json?: boolean }>();
  // The home's key is the default anchor; an auditor brings theirs with --key (no config needed).
  const config = opts.key.length === 0 ? cliConfig(cli, command) : undefined;
  const verifiers = await trustedVerifiers(config, opts.key);
  const lines = await inputLines(cli.io, file);
  const bar = progress(cli.io, 'verifying export', opts.progress === true);
  let seen = 0;
  async function* counted(): AsyncGenerator<string> {
    for await (const line of lines) {
      seen++;
      if (seen % 1000 === 0) bar.update(seen, seen);
      yield line;
    }
  }
  const result = await verifyExport(counted(), verifiers, { origin: config?.auditOrigin });
  bar.end();
  const first = result.findings[0];
  const failLine = first === undefined ? undefined : `FAIL: line ${first.line}${first.seq === null ? '' : ` (seq ${first.seq})`}: ${first.message}`;
  if (opts.json === true) {
    printJson(cli.io, result);
    if (failLine !== undefined) note(cli.io, failLine);
  } else if (failLine !== undefined) {
    say(cli.io, failLine);
    for (const f of result.findings.slice(1)) say(cli.io, `  line ${f.line}${f.seq === null ? '' : ` (seq ${f.seq})`}: ${f.message}`);
    say(cli.io, `${result.findings.length} finding(s) in ${result.entries} entries`);
  } else {
    const range = result.entries === 0 ? 'no entries' : `${result.entries} entries (seq ${result.from ?? 0} to ${(result.to ?? 0) - 1})`;
    say(cli.io, `OK: ${range} verified against the checkpoint of size ${result.treeSize} signed by ${result.verifiedBy.join(', ')}`);
  }
  return result.ok ? EXIT_OK : EXIT_FAILED;
}
