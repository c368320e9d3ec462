/**
 * `exportInToto`: a run as files `in-toto-verify` checks: `root.layout` (signed by the project
 * key), `layout.pub` (that key, for `-k`) and one runner-signed link per step. Pure: the caller
 * reads the evidence and writes the files. Links are copied as stored, never re-signed: whether
 * they verify is the verifier's job, and the point of the export.
 */
import type { KeyObject } from 'node:crypto';
import { AirlockError } from '../errors/index.js';
import type { PipelineDefinition } from '../pipeline/index.js';
import { inTotoPublicKey } from './keys.js';
import { layoutFor } from './layout.js';
import type { Functionary } from './layout.js';
import { linkFileName, linkShapeProblem, stepName } from './link.js';
import { signMetablock } from './metablock.js';
import type { InTotoLink, InTotoSigner } from './types.js';

/** Default layout lifetime: a year from the export. */
export const LAYOUT_VALIDITY_MS = 365 * 24 * 60 * 60 * 1000;

export interface ExportStep {
  readonly stage: string;
  readonly step: string;
  /** The in-toto link metablock stored with the step's last attempt (`evidence.intotoLink`); null when none. */
  readonly link: unknown;
  /** Who ran it (`embedded`, `agent:<name>`): for error messages only. */
  readonly runner?: string | undefined;
}

export interface ExportInput {
  readonly pipeline: PipelineDefinition;
  readonly steps: readonly ExportStep[];
  /** Runner public keys that may perform steps (see `Functionary` for per-label authorisation). */
  readonly functionaries: readonly (KeyObject | Functionary)[];
  readonly layoutSigner: InTotoSigner;
  readonly now: Date;
  /** When given, every link must be bound to this run (`environment["airlock-run-id"]`). */
  readonly runId?: string | undefined;
  readonly validityMs?: number;
  readonly readme?: string;
}

export interface ExportFile {
  readonly name: string;
  readonly content: string;
}

export const LAYOUT_FILE = 'root.layout';
export const LAYOUT_KEY_FILE = 'layout.pub';

const KEYID = /^[0-9a-f]{64}$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const json = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;

/** The stored link's body, checked enough to name its file and to refuse what in-toto would not catch. */
function checkedLink(s: ExportStep, runId: string | undefined): { keyid: string; link: InTotoLink } {
  const name = stepName(s.stage, s.step);
  if (s.link === undefined || s.link === null) {
    throw new AirlockError('CONFLICT', `step ${name} has no in-toto link (it did not run to the end${s.runner === undefined ? '' : ` on ${s.runner}`}); only a run whose steps all completed can be exported`, { step: name });
  }
  const block = s.link;
  const first: unknown = isRecord(block) && Array.isArray(block.signatures) ? (block.signatures as unknown[])[0] : undefined;
  if (!isRecord(block) || !isRecord(first) || typeof first.keyid !== 'string' || !KEYID.test(first.keyid)) {
    throw new AirlockError('INTEGRITY_FAILED', `the stored in-toto link of ${name} is not a signed metablock`, { step: name });
  }
  const shape = linkShapeProblem(block.signed);
  if (shape !== undefined) throw new AirlockError('INTEGRITY_FAILED', `the stored in-toto link of ${name} is malformed: ${shape}`, { step: name });
  const link = block.signed as InTotoLink;
  // in-toto-verify finds a link by file name and never compares the name inside it: a link of
  // another step (or run) filed under this name would be taken for this step. Refuse that here.
  if (link.name !== name) throw new AirlockError('INTEGRITY_FAILED', `the stored in-toto link of ${name} names step ${link.name}`, { step: name });
  if (runId !== undefined && link.environment['airlock-run-id'] !== runId) throw new AirlockError('INTEGRITY_FAILED', `the stored in-toto link of ${name} is for another run`, { step: name });
  // in-toto does not check a step's return value: a failed step would otherwise pass verification.
  if (link.byproducts['return-value'] !== 0) {
    throw new AirlockError('CONFLICT', `step ${name} did not succeed (return value ${String(link.byproducts['return-value'])}); only a run whose steps all succeeded can be exported`, { step: name });
  }
  return { keyid: first.keyid, link };
}

/**
 * Build the export. Throws CONFLICT when the run cannot be verified as a whole (a step without a
 * link or that failed, an input whose producer did not run, a step no key may perform) and
 * INTEGRITY_FAILED when stored evidence is not what the runner signed for this step.
 *
 * @example
 * const { files } = exportInToto({ pipeline, steps, functionaries: [runnerKey], layoutSigner, now: new Date() });
 * await writeExport(dir, files); // then: in-toto-verify -l root.layout -k layout.pub -t ed25519 --link-dir dir
 */
export function exportInToto(input: ExportInput): { files: ExportFile[] } {
  const seen = new Set<string>();
  const links: ExportFile[] = [];
  for (const s of input.steps) {
    const name = stepName(s.stage, s.step);
    if (seen.has(name)) throw new AirlockError('CONFLICT', `step ${name} is listed twice; export only its last attempt`, { step: name });
    seen.add(name);
    const { keyid } = checkedLink(s, input.runId);
    links.push({ name: linkFileName(name, keyid), content: json(s.link) });
  }
  const layout = layoutFor(input.pipeline, input.functionaries, {
    steps: input.steps,
    expires: new Date(input.now.getTime() + (input.validityMs ?? LAYOUT_VALIDITY_MS)),
    ...(input.readme === undefined ? {} : { readme: input.readme }),
  });
  const root = signMetablock(layout, input.layoutSigner);
  return {
    files: [{ name: LAYOUT_FILE, content: json(root) }, { name: LAYOUT_KEY_FILE, content: json(inTotoPublicKey(input.layoutSigner.publicKey)) }, ...links],
  };
}

/** What the export route needs from the application (implemented in src/app, served by src/server/intoto-routes.ts). */
export interface InTotoRouteDeps {
  /** A run id from what the caller wrote: an id or `project#number` (Runs.resolveId). */
  resolveRun(run: string): Promise<string>;
  /** The run's pipeline and, per step that ran, its last attempt's `evidence.intotoLink` (null when none). */
  runEvidence(runId: string): Promise<{ readonly pipeline: PipelineDefinition; readonly steps: readonly ExportStep[] }>;
  /** Runner public keys that may perform the run's steps (a key with labels only steps whose runs-on it has). */
  functionaryKeys(runId: string): Promise<readonly (KeyObject | Functionary)[]>;
  /** The project key that signs layouts. */
  layoutSigner(runId: string): Promise<InTotoSigner>;
  /** Clock for the layout's expiry (tests). */
  now?(): Date;
  /** The published platform keys, shipped beside the layout as `airlock-keys.json` (issue 6: keys go into exports). */
  publishedKeys?(): Promise<unknown>;
}
