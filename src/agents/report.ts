/**
 * Checking what an agent says about a job against what it was given and what it signed. An agent
 * is an untrusted machine: a success counts only with a link record signed by the key it
 * registered, for exactly this step attempt, whose products are exactly the outputs it reports.
 */
import type { KeyObject } from 'node:crypto';
import type { JsonValue } from '../audit/index.js';
import { linkProblem } from '../intoto/index.js';
import { verifyLink } from '../runner/index.js';
import type { Job, StepReport } from '../runs/index.js';

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Same keys, same values (order-insensitive). */
function sameMap(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

/** The signed link record carried in a report's evidence, if any. */
export function linkOf(evidence: JsonValue): unknown {
  return isRecord(evidence) ? evidence.link : undefined;
}

/**
 * Why `report` must not be accepted for `job` from an agent holding `publicKey`, or undefined
 * when it may. A failure reported without a link is accepted (the agent may have failed before
 * it could run the step: source download, disk full), but never with outputs.
 */
export function reportProblem(job: Job, report: StepReport, publicKey: KeyObject): string | undefined {
  if (new Set(report.outputs.map((o) => o.path)).size !== report.outputs.length) return 'an output is reported more than once';
  const link = linkOf(report.evidence);
  if (link === undefined || link === null) {
    if (report.status === 'succeeded' || report.outputs.length > 0) return 'a successful report must carry the signed link record (evidence.link)';
    return undefined;
  }
  const verified = verifyLink(link, publicKey);
  if (!verified.ok) return `the link record does not verify with the agent's registered key: ${verified.reason}`;
  const l = verified.link;
  if (l.runId !== job.runId || l.pipeline !== job.pipeline || l.stage !== job.stage || l.step !== job.step || l.attempt !== job.attempt) {
    return 'the link record is for another step attempt';
  }
  if (l.command !== job.command) return 'the link record names another command than the job';
  if (l.byproducts.status !== report.status) return `the link record says ${l.byproducts.status}, the report says ${report.status}`;
  if (l.byproducts.exitCode !== report.exitCode) return 'the link record and the report disagree on the exit code';
  if (!sameMap(l.products, Object.fromEntries(report.outputs.map((o) => [o.path, o.digest])))) return 'the reported outputs are not the products of the signed link record';
  if (!sameMap(l.materials, Object.fromEntries(job.inputs.map((i) => [i.path, i.digest])))) return 'the link record names other inputs than the job was given';
  // The in-toto link (exported for in-toto-verify, docs/intoto.md) must say the same, signed by the same key.
  const intoto = linkProblem(isRecord(report.evidence) ? report.evidence.intotoLink : undefined, publicKey, {
    stage: job.stage,
    step: job.step,
    command: job.command,
    materials: Object.fromEntries(job.inputs.map((i) => [i.path, i.digest])),
    products: Object.fromEntries(report.outputs.map((o) => [o.path, o.digest])),
    exitCode: report.exitCode,
    runId: job.runId,
    attempt: job.attempt,
  });
  if (intoto !== undefined) return `the in-toto link ${intoto}`;
  return undefined;
}
