/** `airlock audit key|verify|checkpoint|tail|search` (proofs and exports are in their own files). */
import type { Command } from 'commander';
import { auditAnchors, localActor, openApp } from '../../app/index.js';
import { ACTOR_KINDS, latestCheckpoint, verifyLog } from '../../audit/index.js';
import type { AuditEntry, AuditQuery, Finding, SignedCheckpoint, VerifyReport } from '../../audit/index.js';
import { NotFoundError } from '../../errors/index.js';
import type { Cli } from '../cli.js';
import { EXIT_FAILED, EXIT_OK } from '../cli.js';
import { cliConfig, cliLogger, homeVerifierKey, openReader, sleepUnless, trustedVerifiers, waitForSignal } from '../context.js';
import { entryJson, entryLine } from '../format.js';
import { note, printJson, progress, readInput, say, writeLine } from '../io.js';

/** How often `tail --follow` polls. */
const FOLLOW_INTERVAL_MS = 500;

// --- key ------------------------------------------------------------------------------------

/** `airlock audit key`: the public verifier key of this home. */
export async function key(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<{ json?: boolean }>();
  const config = cliConfig(cli, command);
  // Only the public half is read; a missing key is reported, never created here.
  const k = await homeVerifierKey(config);
  if (opts.json === true) {
    const [name = '', keyId = ''] = k.verifierKey.split('+');
    printJson(cli.io, { verifierKey: k.verifierKey, name, keyId, algorithm: 'ed25519', path: k.path });
  } else {
    say(cli.io, k.verifierKey);
  }
  return EXIT_OK;
}

// --- verify ---------------------------------------------------------------------------------

interface VerifyOptions {
  readonly checkpoint?: string;
  readonly key?: readonly string[];
  readonly progress?: boolean;
  readonly json?: boolean;
}

/** The finding to lead with: the one at the first bad sequence number, else the first. */
function leadFinding(report: VerifyReport): Finding | undefined {
  return report.findings.find((f) => f.seq !== null && f.seq === report.firstBadSeq) ?? report.findings[0];
}

/** One finding as a line: `<kind> at seq <n>: <message>`. */
function findingLine(f: Finding): string {
  return f.seq === null ? `${f.kind}: ${f.message}` : `${f.kind} at seq ${f.seq}: ${f.message}`;
}

/** `airlock audit verify`: full read-only verification; exit 1 on any finding. */
export async function verify(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<VerifyOptions>();
  const config = cliConfig(cli, command);
  const verifiers = await trustedVerifiers(config, opts.key);
  const external = opts.checkpoint === undefined ? undefined : await readInput(cli.io, opts.checkpoint);
  const reader = await openReader(config);
  let report: VerifyReport;
  try {
    const bar = progress(cli.io, 'verifying audit log', opts.progress === true);
    report = await verifyLog({
      db: reader.store.db,
      verifiers,
      origin: config.auditOrigin,
      externalCheckpoint: external,
      // Signed records kept beside the log (deployments) must still match the digests it recorded.
      anchored: () => auditAnchors(reader.store.db),
      onProgress: (done, total) => {
        bar.update(done, total);
      },
    });
    bar.end();
  } finally {
    await reader.close();
  }
  const lead = leadFinding(report);
  if (opts.json === true) {
    printJson(cli.io, report);
    if (lead !== undefined) note(cli.io, `FAIL: ${findingLine(lead)}`);
    return report.ok ? EXIT_OK : EXIT_FAILED;
  }
  if (lead !== undefined) {
    say(cli.io, `FAIL: ${findingLine(lead)}`);
    for (const f of report.findings) if (f !== lead) say(cli.io, `  ${findingLine(f)}`);
    say(cli.io, `${report.findings.length} finding(s) in ${report.entriesChecked} entries; first bad sequence number: ${report.firstBadSeq ?? 'none'}`);
    return EXIT_FAILED;
  }
  say(cli.io, `OK: ${report.treeSize} entries verified; root ${report.rootHash}`);
  const cp = report.latestCheckpoint;
  if (cp === null) {
    say(cli.io, report.treeSize === 0 ? 'no checkpoint yet (the log is empty)' : 'WARNING: no signed checkpoint: nothing ties this log to the signing key yet');
  } else if (report.unsignedTail === 0) {
    say(cli.io, `latest signed checkpoint covers every entry (size ${cp.size}); ${report.checkpointsChecked} checkpoint(s) checked`);
  } else {
    say(cli.io, `latest signed checkpoint covers ${cp.size} entries; the last ${report.unsignedTail} are protected by the stored tree only until the next checkpoint`);
  }
  return EXIT_OK;
}

// --- checkpoint -----------------------------------------------------------------------------

function printCheckpoint(cli: Cli, cp: SignedCheckpoint, json: boolean): void {
  if (json) printJson(cli.io, { size: cp.size, rootHash: cp.rootHash.toString('base64'), createdAt: cp.createdAt, note: cp.note });
  // The note exactly as signed, so `airlock audit checkpoint > cp.note` is usable with --checkpoint.
  else cli.io.stdout.write(cp.note);
}

/** `airlock audit checkpoint [--sign]`: the latest signed checkpoint, or a new one. */
export async function checkpoint(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<{ sign?: boolean; json?: boolean }>();
  const config = cliConfig(cli, command);
  if (opts.sign === true) {
    const app = await openApp(config, { logger: cliLogger(cli, config) });
    try {
      const cp = await app.signCheckpoint(localActor());
      printCheckpoint(cli, cp, opts.json === true);
    } finally {
      await app.close();
    }
    return EXIT_OK;
  }
  const reader = await openReader(config);
  try {
    const cp = await latestCheckpoint(reader.store.db);
    if (cp === undefined) throw new NotFoundError('no checkpoint has been signed yet; run `airlock audit checkpoint --sign` or start the server');
    printCheckpoint(cli, cp, opts.json === true);
  } finally {
    await reader.close();
  }
  return EXIT_OK;
}

// --- tail -----------------------------------------------------------------------------------

/** `airlock audit tail [-n N] [-f]`: the last entries, then new ones until a signal. */
export async function tail(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<{ lines: number; follow?: boolean; json?: boolean }>();
  const config = cliConfig(cli, command);
  const reader = await openReader(config);
  const json = opts.json === true;
  const print = async (entries: readonly AuditEntry[]): Promise<void> => {
    for (const e of entries) await writeLine(cli.io.stdout, json ? JSON.stringify(entryJson(e)) : entryLine(e));
  };
  // Handlers go in before the first read, so an early SIGINT ends the follow cleanly.
  const signals = opts.follow === true ? waitForSignal() : undefined;
  try {
    const head = await reader.audit.head();
    const first = opts.lines === 0 ? [] : (await reader.audit.search({ order: 'desc', limit: opts.lines })).reverse();
    await print(first);
    if (signals === undefined) return EXIT_OK;
    let last = first.at(-1)?.seq ?? head.size - 1;
    while (signals.signal() === undefined) {
      await sleepUnless(FOLLOW_INTERVAL_MS, signals.received);
      if (signals.signal() !== undefined) break;
      for (;;) {
        const batch = await reader.audit.search({ afterSeq: last, limit: 1000 });
        await print(batch);
        last = batch.at(-1)?.seq ?? last;
        if (batch.length < 1000) break;
      }
    }
    return EXIT_OK;
  } finally {
    signals?.dispose();
    await reader.close();
  }
}

// --- search ---------------------------------------------------------------------------------

interface SearchOptions {
  readonly actor?: string;
  readonly action?: string;
  readonly resource?: string;
  readonly outcome?: string;
  readonly since?: string;
  readonly until?: string;
  readonly limit: number;
  readonly json?: boolean;
}

/** `KIND:ID` when KIND is an actor kind, else the whole value is the id (ids may contain ':'). */
function actorFilter(value: string): Pick<AuditQuery, 'actorId' | 'actorKind'> {
  const colon = value.indexOf(':');
  const kind = colon < 0 ? '' : value.slice(0, colon);
  if ((ACTOR_KINDS as readonly string[]).includes(kind)) return { actorKind: kind, actorId: value.slice(colon + 1) };
  return { actorId: value };
}

/** `airlock audit search`: entries matching every given filter, oldest first. */
export async function search(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<SearchOptions>();
  const config = cliConfig(cli, command);
  const query: AuditQuery = {
    ...(opts.actor === undefined ? {} : actorFilter(opts.actor)),
    action: opts.action,
    resource: opts.resource,
    outcome: opts.outcome,
    since: opts.since,
    until: opts.until,
    limit: opts.limit,
  };
  const reader = await openReader(config);
  try {
    const entries = await reader.audit.search(query);
    if (opts.json === true) {
      printJson(cli.io, { count: entries.length, entries: entries.map(entryJson) });
    } else {
      for (const e of entries) await writeLine(cli.io.stdout, entryLine(e));
      if (entries.length === 0) note(cli.io, 'no matching entries');
      else if (entries.length === opts.limit) note(cli.io, `showing the first ${opts.limit} matches; raise --limit or narrow with --since for more`);
    }
  } finally {
    await reader.close();
  }
  return EXIT_OK;
}
