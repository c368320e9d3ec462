/** `airlock audit proof inclusion|consistency|verify`. */
import type { Command } from 'commander';
import {
  decodeConsistencyProof,
  decodeInclusionProof,
  encodeConsistencyProof,
  encodeInclusionProof,
  latestCheckpoint,
  openCheckpoint,
  verifyProofDocument,
} from '../../audit/index.js';
import type { ConsistencyProofDocument, InclusionProofDocument } from '../../audit/index.js';
import type { Config } from '../../config/index.js';
import { AirlockError, isAirlockError } from '../../errors/index.js';
import type { Cli } from '../cli.js';
import { EXIT_FAILED, EXIT_OK, UsageError } from '../cli.js';
import { cliConfig, openReader, trustedVerifiers } from '../context.js';
import { note, printJson, readInput, say } from '../io.js';

/** Default tree size: the newest signed checkpoint when it is big enough, so the proof can be checked against it. */
async function defaultSize(db: Parameters<typeof latestCheckpoint>[0], atLeast: number, current: number): Promise<number> {
  const cp = await latestCheckpoint(db);
  return cp !== undefined && cp.size >= atLeast && cp.size <= current ? cp.size : current;
}

/** `airlock audit proof inclusion`: an RFC 9162 inclusion proof document. */
export async function inclusion(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<{ seq: number; size?: number; json?: boolean }>();
  const config = cliConfig(cli, command);
  const reader = await openReader(config);
  let doc: InclusionProofDocument;
  try {
    const head = await reader.audit.head();
    const size = opts.size ?? (await defaultSize(reader.store.db, opts.seq + 1, head.size));
    if (size > head.size) throw new AirlockError('AUDIT_INVALID_RANGE', `--size ${size} is larger than the log (${head.size} entries)`, { field: 'size' });
    if (opts.seq >= size) throw new AirlockError('AUDIT_INVALID_RANGE', `--seq ${opts.seq} is not in the tree of size ${size} (entries 0 to ${size - 1})`, { field: 'seq' });
    doc = encodeInclusionProof(await reader.audit.inclusionProof(opts.seq, size));
  } finally {
    await reader.close();
  }
  if (opts.json === true) printJson(cli.io, doc);
  else {
    say(cli.io, `inclusion proof: entry ${doc.leafIndex} in the tree of size ${doc.treeSize}`);
    say(cli.io, `leaf hash: ${doc.leafHash}`);
    say(cli.io, `root hash: ${doc.rootHash}`);
    say(cli.io, `proof (${doc.proof.length} hashes):`);
    for (const h of doc.proof) say(cli.io, `  ${h}`);
  }
  return EXIT_OK;
}

/** `airlock audit proof consistency`: an RFC 9162 consistency proof document. */
export async function consistency(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<{ from: number; to?: number; json?: boolean }>();
  const config = cliConfig(cli, command);
  const reader = await openReader(config);
  let doc: ConsistencyProofDocument;
  try {
    const head = await reader.audit.head();
    const to = opts.to ?? (await defaultSize(reader.store.db, opts.from, head.size));
    if (to > head.size) throw new AirlockError('AUDIT_INVALID_RANGE', `--to ${to} is larger than the log (${head.size} entries)`, { field: 'to' });
    if (opts.from > to) throw new AirlockError('AUDIT_INVALID_RANGE', `--from ${opts.from} is larger than --to ${to}`, { field: 'from' });
    doc = encodeConsistencyProof(await reader.audit.consistencyProof(opts.from, to));
  } finally {
    await reader.close();
  }
  if (opts.json === true) printJson(cli.io, doc);
  else {
    say(cli.io, `consistency proof: tree of size ${doc.size1} is a prefix of the tree of size ${doc.size2}`);
    say(cli.io, `root ${doc.size1}: ${doc.root1}`);
    say(cli.io, `root ${doc.size2}: ${doc.root2}`);
    say(cli.io, `proof (${doc.proof.length} hashes):`);
    for (const h of doc.proof) say(cli.io, `  ${h}`);
  }
  return EXIT_OK;
}

/** Result of `audit proof verify --json`. */
interface ProofVerification {
  ok: boolean;
  type: 'inclusion' | 'consistency' | null;
  leafIndex?: number;
  treeSize?: number;
  size1?: number;
  size2?: number;
  rootHash?: string;
  checkpoint: { origin: string; size: number; rootHash: string; verifiedBy: readonly string[] } | null;
  error: { code: string; message: string } | null;
}

/** `airlock audit proof verify`: check a proof document offline, optionally against a signed checkpoint. */
export async function verifyProof(cli: Cli, command: Command, file: string): Promise<number> {
  const opts = command.opts<{ checkpoint?: string; key?: readonly string[]; json?: boolean }>();
  const keys = opts.key ?? [];
  if (keys.length > 0 && opts.checkpoint === undefined) throw new UsageError('--key is the trust anchor for --checkpoint; give --checkpoint <notefile> too');
  // Offline: the configuration is read only to find the home's key when no --key is given.
  const config: Config | undefined = opts.checkpoint !== undefined && keys.length === 0 ? cliConfig(cli, command) : undefined;
  const text = await readInput(cli.io, file);
  const noteText = opts.checkpoint === undefined ? undefined : await readInput(cli.io, opts.checkpoint);
  const verifiers = noteText === undefined ? [] : await trustedVerifiers(config, keys);

  const result: ProofVerification = { ok: false, type: null, checkpoint: null, error: null };
  try {
    let doc: unknown;
    try {
      doc = JSON.parse(text) as unknown;
    } catch {
      throw new AirlockError('VALIDATION_FAILED', `${file === '-' ? 'stdin' : file} is not a JSON proof document`);
    }
    verifyProofDocument(doc);
    let size: number;
    let root: Buffer;
    let other: { size: number; root: Buffer } | undefined;
    if ((doc as { type?: unknown }).type === 'inclusion') {
      const p = decodeInclusionProof(doc);
      Object.assign(result, { type: 'inclusion', leafIndex: p.leafIndex, treeSize: p.treeSize, rootHash: p.rootHash.toString('base64') });
      size = p.treeSize;
      root = p.rootHash;
    } else {
      const p = decodeConsistencyProof(doc);
      Object.assign(result, { type: 'consistency', size1: p.size1, size2: p.size2, rootHash: p.root2.toString('base64') });
      size = p.size2;
      root = p.root2;
      other = { size: p.size1, root: p.root1 };
    }
    if (noteText !== undefined) {
      const opened = openCheckpoint(noteText, verifiers, config?.auditOrigin);
      const cp = opened.checkpoint;
      result.checkpoint = { origin: cp.origin, size: cp.size, rootHash: cp.rootHash.toString('base64'), verifiedBy: opened.verifiedBy };
      // A consistency proof may be checked against either end: the new checkpoint or the one kept.
      const matches = (cp.size === size && cp.rootHash.equals(root)) || (other !== undefined && cp.size === other.size && cp.rootHash.equals(other.root));
      if (!matches) {
        throw new AirlockError(
          'AUDIT_PROOF_INVALID',
          `the proof holds, but for a tree of size ${size} with root ${root.toString('base64')}; the signed checkpoint is for size ${cp.size} with root ${cp.rootHash.toString('base64')}`,
        );
      }
    }
    result.ok = true;
  } catch (err) {
    if (!isAirlockError(err)) throw err;
    result.error = { code: err.code, message: err.message };
  }

  const failure = result.error === null ? undefined : `FAIL: ${result.error.message} (${result.error.code})`;
  if (opts.json === true) {
    const { ok, type, checkpoint, error, ...proof } = result;
    printJson(cli.io, { ok, type, ...proof, checkpoint, error });
    if (failure !== undefined) note(cli.io, failure);
  } else if (failure !== undefined) {
    say(cli.io, failure);
  } else {
    const what = result.type === 'inclusion' ? `inclusion of entry ${result.leafIndex ?? 0} in the tree of size ${result.treeSize ?? 0}` : `consistency of tree size ${result.size1 ?? 0} with ${result.size2 ?? 0}`;
    say(cli.io, `OK: the proof of ${what} verifies (root ${result.rootHash ?? ''})`);
    if (result.checkpoint !== null) say(cli.io, `and matches the checkpoint of size ${result.checkpoint.size} signed by ${result.checkpoint.verifiedBy.join(', ')}`);
  }
  return result.ok ? EXIT_OK : EXIT_FAILED;
}
