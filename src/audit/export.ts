/**
 * Offline-verifiable export of a range of the audit log, as JSON Lines:
 *
 *   {"type":"airlock.audit.export/v1","origin":...,"checkpoint":"<signed note>","treeSize":N,"rootHash":"b64","verifierKey":"...","from":F,"to":T}
 *   {"type":"entry","seq":F,"event":{...},"leafHash":"b64","inclusionProof":["b64",...]}
 *   ... one line per entry F .. T-1
 *
 * Every inclusion proof is against the signed checkpoint in the header, so a holder of the
 * export and of the log's verifier key (obtained out of band, never from the header itself)
 * can prove each entry is in the signed log without access to the database: recompute the
 * RFC 8785 leaf bytes, hash them, and walk the proof up to the signed root.
 */
import type { Kysely } from 'kysely';
import { z } from 'zod';
import { AirlockError } from '../errors/index.js';
import type { Database } from '../storage/index.js';
import type { NoteVerifier } from './checkpoint.js';
import { openCheckpoint, parseVerifierKey } from './checkpoint.js';
import type { SignedCheckpoint } from './checkpointer.js';
import type { AuditEvent } from './event.js';
import { canonicalEvent } from './event.js';
import type { AuditLog } from './log.js';
import { HASH_SIZE, leafHash, verifyInclusion } from './merkle.js';

/** The `type` of an export's first line; bumped on any incompatible change. */
export const EXPORT_FORMAT = 'airlock.audit.export/v1';

/** Entries read per query while exporting. */
const PAGE = 1000;

/** First line of an export. */
export interface ExportHeader {
  readonly type: typeof EXPORT_FORMAT;
  readonly origin: string;
  /** The signed checkpoint note, exactly as signed. */
  readonly checkpoint: string;
  readonly treeSize: number;
  readonly rootHash: string;
  /** The key the exporter says signed the checkpoint. Informational: verify with a key you trust. */
  readonly verifierKey: string;
  /** First sequence number exported. */
  readonly from: number;
  /** One past the last sequence number exported. */
  readonly to: number;
}

/** Every later line of an export. */
export interface ExportEntryLine {
  readonly type: 'entry';
  readonly seq: number;
  readonly event: AuditEvent;
  readonly leafHash: string;
  readonly inclusionProof: readonly string[];
}

/** Inputs of {@link exportLog}. */
export interface ExportOptions {
  readonly log: AuditLog;
  /** Checkpoint every proof is made against; must cover `to`. */
  readonly checkpoint: SignedCheckpoint;
  /** Verifier key of the checkpoint signer; the checkpoint is checked against it before anything is written. */
  readonly verifierKey: string;
  /** First sequence number (inclusive). */
  readonly from: number;
  /** Last sequence number, exclusive; at most the checkpoint's size. */
  readonly to: number;
  /** Receives each line without its newline. Awaited, so a slow sink applies backpressure. */
  readonly write: (line: string) => void | Promise<void>;
  readonly onProgress?: ((done: number, total: number) => void) | undefined;
}

/** What {@link exportLog} wrote. */
export interface ExportSummary {
  readonly from: number;
  readonly to: number;
  readonly entries: number;
  readonly treeSize: number;
  readonly rootHash: string;
}

/** One problem found by {@link verifyExport}. `line` is 1-based; `seq` is the entry concerned, if known. */
export interface ExportFinding {
  readonly line: number;
  readonly seq: number | null;
  readonly message: string;
}

/** The verdict of {@link verifyExport}. */
export interface ExportVerification {
  readonly ok: boolean;
  /** Entry lines read (valid or not). */
  readonly entries: number;
  /** Size of the checkpoint the proofs are against (0 if the header was unreadable). */
  readonly treeSize: number;
  readonly rootHash: string | null;
  readonly origin: string | null;
  readonly from: number | null;
  readonly to: number | null;
  /** Names of the trusted keys whose signatures on the checkpoint verified. */
  readonly verifiedBy: readonly string[];
  readonly findings: readonly ExportFinding[];
}

/** Options of {@link verifyExport}. */
export interface VerifyExportOptions {
  /** Require the checkpoint to be for this log origin (recommended when the key signs several logs). */
  readonly origin?: string | undefined;
  /** Stop recording findings after this many (default 100); verification still reads every line. */
  readonly maxFindings?: number | undefined;
}

const b64 = (b: Buffer): string => b.toString('base64');

/** The newest stored checkpoint, read without a signing key (for read-only commands). */
export async function latestCheckpoint(db: Kysely<Database>): Promise<SignedCheckpoint | undefined> {
  const row = await db.selectFrom('audit_checkpoints').selectAll().orderBy('size', 'desc').limit(1).executeTakeFirst();
  return row === undefined ? undefined : { size: row.size, rootHash: row.root, note: row.note, createdAt: row.created_at };
}

/**
 * Write entries [from, to) with inclusion proofs against `checkpoint`. Refuses (before
 * writing anything) a range the checkpoint does not cover or a checkpoint that does not verify
 * with `verifierKey`, and stops with CHECKPOINT_INCONSISTENT if the stored tree disagrees with
 * the checkpoint or an entry with its leaf hash: exporting a damaged log would only hand the
 * recipient a file that fails verification.
 */
export async function exportLog(options: ExportOptions): Promise<ExportSummary> {
  const { log, checkpoint, from, to, write } = options;
  const size = checkpoint.size;
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 0 || from > to || to > size) {
    throw new AirlockError('AUDIT_INVALID_RANGE', `the export range must satisfy 0 <= from <= to <= ${size} (the checkpoint's tree size); got from ${from}, to ${to}`, {
      from,
      to,
      treeSize: size,
    });
  }
  const verifier = parseVerifierKey(options.verifierKey);
  const opened = openCheckpoint(checkpoint.note, [verifier]);
  if (opened.checkpoint.size !== size || !opened.checkpoint.rootHash.equals(checkpoint.rootHash)) {
    throw new AirlockError('CHECKPOINT_INVALID', `the stored checkpoint row for size ${size} does not match its own signed note`, { size });
  }
  const header: ExportHeader = {
    type: EXPORT_FORMAT,
    origin: opened.checkpoint.origin,
    checkpoint: checkpoint.note,
    treeSize: size,
    rootHash: b64(checkpoint.rootHash),
    verifierKey: options.verifierKey,
    from,
    to,
  };
  await write(JSON.stringify(header));

  const total = to - from;
  let next = from;
  while (next < to) {
    const page = await log.search({ afterSeq: next - 1, beforeSeq: to, limit: PAGE });
    if (page.length === 0) break;
    for (const entry of page) {
      if (entry.seq !== next) {
        throw new AirlockError('CHECKPOINT_INCONSISTENT', `audit entry ${next} is missing from the database; run \`airlock audit verify\``, { seq: next });
      }
      const leaf = leafHash(Buffer.from(canonicalEvent(entry.event), 'utf8'));
      if (!leaf.equals(entry.leafHash)) {
        throw new AirlockError('CHECKPOINT_INCONSISTENT', `audit entry ${entry.seq} does not match its stored leaf hash; run \`airlock audit verify\``, { seq: entry.seq });
      }
      const proof = await log.inclusionProof(entry.seq, size);
      if (!proof.rootHash.equals(checkpoint.rootHash)) {
        throw new AirlockError('CHECKPOINT_INCONSISTENT', `the stored tree of size ${size} does not hash to the signed checkpoint's root; run \`airlock audit verify\``, { size });
      }
      const line: ExportEntryLine = { type: 'entry', seq: entry.seq, event: entry.event, leafHash: b64(leaf), inclusionProof: proof.proof.map(b64) };
      await write(JSON.stringify(line));
      next++;
      options.onProgress?.(next - from, total);
    }
  }
  if (next !== to) {
    throw new AirlockError('CHECKPOINT_INCONSISTENT', `audit entry ${next} is missing from the database; run \`airlock audit verify\``, { seq: next });
  }
  if (total === 0) options.onProgress?.(0, 0);
  return { from, to, entries: total, treeSize: size, rootHash: header.rootHash };
}

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Canonical padded base64 of exactly one SHA-256 hash. */
const hashText = z.string().refine((s) => {
  if (!BASE64_RE.test(s)) return false;
  const bytes = Buffer.from(s, 'base64');
  return bytes.length === HASH_SIZE && bytes.toString('base64') === s;
}, `must be canonical base64 of a ${HASH_SIZE}-byte hash`);
const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

const headerSchema = z
  .object({
    type: z.literal(EXPORT_FORMAT),
    origin: z.string().min(1),
    checkpoint: z.string().min(1),
    treeSize: count,
    rootHash: hashText,
    verifierKey: z.string(),
    from: count,
    to: count,
  })
  .strict();

const entrySchema = z
  .object({
    type: z.literal('entry'),
    seq: count,
    event: z.record(z.string(), z.unknown()),
    leafHash: hashText,
    // A tree of 2^53 leaves needs at most 53 proof hashes.
    inclusionProof: z.array(hashText).max(64),
  })
  .strict();

function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || '(line)'} ${i.message}`).join('; ');
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function rangeText(a: number, b: number): string {
  return a === b ? `entry ${a} is` : `entries ${a} to ${b} are`;
}

/**
 * Verify an export with trusted `verifiers` (never with the key the export names for itself).
 * Checks the checkpoint signature, that the header agrees with the signed checkpoint, and for
 * every entry: its RFC 8785 bytes hash to its leaf hash, its proof leads to the signed root,
 * its seq matches `event.seq`, and seqs run contiguously over the header's range. Never throws
 * for a fault in the input; every fault is a finding naming the line.
 */
export async function verifyExport(
  lines: AsyncIterable<string> | Iterable<string>,
  verifiers: readonly NoteVerifier[],
  options: VerifyExportOptions = {},
): Promise<ExportVerification> {
  const maxFindings = options.maxFindings ?? 100;
  const findings: ExportFinding[] = [];
  const add = (line: number, seq: number | null, message: string): void => {
    if (findings.length < maxFindings) findings.push({ line, seq, message });
  };
  let lineNo = 0;
  let entries = 0;
  let header: z.infer<typeof headerSchema> | undefined;
  let root: Buffer | undefined;
  let treeSize = 0;
  let verifiedBy: readonly string[] = [];
  let next = 0;
  let pendingBlank: number | undefined;

  for await (const raw of lines) {
    lineNo++;
    const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (text.trim() === '') {
      // A trailing newline is normal; a blank line inside the file is not.
      pendingBlank ??= lineNo;
      continue;
    }
    if (pendingBlank !== undefined) {
      add(pendingBlank, null, 'blank line inside the export');
      pendingBlank = undefined;
    }

    if (lineNo === 1) {
      const parsed = headerSchema.safeParse(parseJson(text));
      if (!parsed.success) {
        add(1, null, `the first line is not an ${EXPORT_FORMAT} header: ${describeIssues(parsed.error)}`);
        break;
      }
      header = parsed.data;
      treeSize = header.treeSize;
      root = Buffer.from(header.rootHash, 'base64');
      next = header.from;
      try {
        const opened = openCheckpoint(header.checkpoint, verifiers, options.origin);
        verifiedBy = opened.verifiedBy;
        const cp = opened.checkpoint;
        if (cp.size !== header.treeSize || !cp.rootHash.equals(root) || cp.origin !== header.origin) {
          add(1, null, `the header's origin, treeSize or rootHash differ from the signed checkpoint (origin "${cp.origin}", size ${cp.size})`);
        }
        // Proofs are checked against what was signed, whatever the header claims.
        treeSize = cp.size;
        root = cp.rootHash;
      } catch (err) {
        add(1, null, `the checkpoint does not verify with the trusted key(s): ${err instanceof Error ? err.message : String(err)}`);
      }
      if (header.from > header.to || header.to > header.treeSize) {
        add(1, null, `the header's range [${header.from}, ${header.to}) is not within the checkpoint's tree of size ${header.treeSize}`);
      }
      continue;
    }
    if (header === undefined || root === undefined) break;

    entries++;
    const parsed = entrySchema.safeParse(parseJson(text));
    if (!parsed.success) {
      add(lineNo, null, `not a valid entry line: ${describeIssues(parsed.error)}`);
      next++;
      continue;
    }
    const line = parsed.data;
    const seq = line.seq;

    // Contiguity: report a gap once at the line after it, and an out-of-place line where it is.
    if (seq > next) {
      add(lineNo, seq, `${rangeText(next, seq - 1)} missing before this line (dropped or reordered)`);
    } else if (seq < next) {
      add(lineNo, seq, `entry ${seq} is out of order or repeated (expected ${next})`);
    }
    next = Math.max(next, seq + 1);
    if (seq < header.from || seq >= header.to) {
      add(lineNo, seq, `entry ${seq} is outside the header's range [${header.from}, ${header.to})`);
    }

    if (line.event.seq !== seq) {
      add(lineNo, seq, `the line's seq ${seq} does not match the event's own seq ${String(line.event.seq)}`);
      continue;
    }
    let leaf: Buffer;
    try {
      leaf = leafHash(Buffer.from(canonicalEvent(line.event as unknown as AuditEvent), 'utf8'));
    } catch (err) {
      add(lineNo, seq, `the event cannot be canonicalised: ${err instanceof Error ? err.message : String(err)}`);
      continue;
    }
    if (leaf.toString('base64') !== line.leafHash) {
      add(lineNo, seq, `entry ${seq} was modified: its canonical JSON does not hash to the line's leafHash`);
      continue;
    }
    if (seq >= treeSize) {
      add(lineNo, seq, `entry ${seq} is beyond the signed checkpoint's tree size ${treeSize}`);
      continue;
    }
    try {
      verifyInclusion(
        seq,
        treeSize,
        leaf,
        line.inclusionProof.map((h) => Buffer.from(h, 'base64')),
        root,
      );
    } catch {
      add(lineNo, seq, `the inclusion proof of entry ${seq} does not lead to the signed root of tree size ${treeSize}`);
    }
  }

  if (lineNo === 0) add(1, null, 'the export is empty');
  if (header !== undefined && next < header.to) {
    add(lineNo + 1, next, `${rangeText(next, header.to - 1)} missing at the end of the export (truncated)`);
  }
  return {
    ok: findings.length === 0,
    entries,
    treeSize,
    rootHash: root === undefined ? null : root.toString('base64'),
    origin: header?.origin ?? null,
    from: header?.from ?? null,
    to: header?.to ?? null,
    verifiedBy,
    findings,
  };
}
