/** `airlock audit export` and `airlock audit verify-export`. */
import { open, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { localActor, openApp } from '../../app/index.js';
import { exportLog, latestCheckpoint, openCheckpoint, parseVerifierKey, verifyExport } from '../../audit/index.js';
import type { ExportSummary, SignedCheckpoint } from '../../audit/index.js';
import { AirlockError } from '../../errors/index.js';
import type { Cli } from '../cli.js';
import { EXIT_FAILED, EXIT_OK, UsageError } from '../cli.js';
import { cliConfig, cliLogger, homeVerifierKey, openReader, trustedVerifiers } from '../context.js';
import { inputLines, note, printJson, progress, say, writeLine } from '../io.js';

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

/** Where export lines go. */
interface Sink {
  write(line: string): Promise<void>;
  close(): Promise<void>;
  /** Give up: a partial export file is removed rather than left looking complete. */
  abort(): Promise<void>;
}

function stdoutSink(cli: Cli): Sink {
  return { write: (line) => writeLine(cli.io.stdout, line), close: () => Promise.resolve(), abort: () => Promise.resolve() };
}

/** A file written in 64 KiB chunks, owner-readable only (an export holds the whole history). */
async function fileSink(path: string): Promise<Sink> {
  const fail = (err: unknown): AirlockError =>
    new AirlockError('INTERNAL', `cannot write ${path} (${(err as NodeJS.ErrnoException).code ?? 'write failed'})`, { path }, { cause: err });
  let handle: FileHandle;
  try {
    handle = await open(path, 'w', 0o600);
  } catch (err) {
    throw fail(err);
  }
  let buffer = '';
  const flush = async (): Promise<void> => {
    const chunk = buffer;
    buffer = '';
    try {
      await handle.write(chunk);
    } catch (err) {
      throw fail(err);
    }
  };
  return {
    async write(line) {
      buffer += `${line}\n`;
      if (buffer.length >= 65_536) await flush();
    },
    async close() {
      await flush();
      try {
        await handle.sync();
        await handle.close();
      } catch (err) {
        throw fail(err);
      }
    },
    async abort() {
      await handle.close().catch(() => undefined);
      await rm(path, { force: true });
    },
  };
}

/** `airlock audit export`: entries with inclusion proofs against a signed checkpoint, as JSON Lines. */
export async function runExport(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<ExportCliOptions>();
  const config = cliConfig(cli, command);
  const reader = await openReader(config);
  let summary: ExportSummary;
  let path: string | undefined;
  try {
    const head = await reader.audit.head();
    const from = opts.from ?? 0;
    const to = opts.to ?? head.size;
    if (to > head.size) throw new AirlockError('AUDIT_INVALID_RANGE', `--to ${to} is beyond the end of the log (${head.size} entries)`, { field: 'to' });
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
        cp = await app.signCheckpoint(localActor());
        vkey = app.key.verifierKey;
      } finally {
        await app.close();
      }
      note(cli.io, `airlock: signed a checkpoint of size ${cp.size} to cover the export`);
    }

    const bar = progress(cli.io, 'exporting', opts.progress === true);
    const sink = opts.output === undefined ? stdoutSink(cli) : await fileSink((path = resolve(cli.io.cwd, opts.output)));
    try {
      summary = await exportLog({
        log: reader.audit,
        checkpoint: cp,
        verifierKey: vkey,
        from,
        to,
        write: (line) => sink.write(line),
        onProgress: (done, total) => {
          bar.update(done, total);
        },
      });
      await sink.close();
    } catch (err) {
      await sink.abort();
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

/** `airlock audit verify-export`: offline verification of an export; exit 1 on any finding. */
export async function runVerifyExport(cli: Cli, command: Command, file: string): Promise<number> {
  const opts = command.opts<{ key?: readonly string[]; progress?: boolean; json?: boolean }>();
  const keys = opts.key ?? [];
  // The home's key is the default anchor; an auditor brings theirs with --key (no config needed).
  const config = keys.length === 0 ? cliConfig(cli, command) : undefined;
  const verifiers = await trustedVerifiers(config, keys);
  const lines = await inputLines(cli.io, file);
  const bar = progress(cli.io, 'verifying export', opts.progress === true);
  let seen = 0;
  async function* counted(): AsyncGenerator<string> {
    for await (const line of lines) {
      seen++;
      if (seen % 1000 === 0) bar.update(seen);
      yield line;
    }
  }
  const result = await verifyExport(counted(), verifiers, { origin: config?.auditOrigin });
  bar.update(seen, seen);
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
