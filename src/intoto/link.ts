/**
 * in-toto v0.9 links for Airlock step attempts. A link is signed by the runner that executed the
 * attempt (never by the server, which cannot speak for a runner) from values the executor measured.
 */
import type { KeyObject } from 'node:crypto';
import { verifyMetablock } from './metablock.js';
import { signMetablock } from './metablock.js';
import type { HashDict, InTotoLink, InTotoSigner, Metablock } from './types.js';

const SHA256_DIGEST = /^sha256:([0-9a-f]{64})$/;

/**
 * The in-toto step name of a pipeline step: `<stage>.<step>`. Stage and step names are
 * `[a-z][a-z0-9-]*` (docs/pipeline.md), so the dot cannot be ambiguous and the name is safe in
 * the link's file name.
 */
export function stepName(stage: string, step: string): string {
  return `${stage}.${step}`;
}

/** The argv the executor runs a step's command with (src/runner/executor.ts). */
export function commandArgv(command: string): string[] {
  return ['/bin/sh', '-c', command];
}

/** `sha256:<hex>` (Airlock's digest form) as in-toto's `{"sha256": "<hex>"}`. */
export function hashDict(digest: string): HashDict {
  const m = SHA256_DIGEST.exec(digest);
  if (m?.[1] === undefined) throw new TypeError(`${digest.slice(0, 80)} is not a sha256:<64 hex> digest`);
  return { sha256: m[1] };
}

/** A path -> `sha256:<hex>` map as in-toto artifacts. */
export function artifactsOf(digests: Readonly<Record<string, string>>): Record<string, HashDict> {
  return Object.fromEntries(Object.entries(digests).map(([path, d]) => [path, hashDict(d)]));
}

/** What the executor measured for one attempt. */
export interface LinkInput {
  readonly stage: string;
  readonly step: string;
  readonly command: string;
  /** Declared inputs: workspace path -> `sha256:<hex>` as verified before the command ran. */
  readonly materials: Readonly<Record<string, string>>;
  /** Collected outputs (empty unless the step succeeded): path -> `sha256:<hex>`. */
  readonly products: Readonly<Record<string, string>>;
  readonly exitCode: number | null;
  /** SHA-256 of every byte written to each stream (`sha256:<hex>`): digests, never the output itself. */
  readonly stdoutDigest: string;
  readonly stderrDigest: string;
  /** Binds the link to its run and attempt; in-toto treats `environment` as opaque. */
  readonly runId: string;
  readonly attempt: number;
}

/** The `signed` body of a step attempt's link. */
export function linkFor(input: LinkInput): InTotoLink {
  return {
    _type: 'link',
    name: stepName(input.stage, input.step),
    command: commandArgv(input.command),
    materials: artifactsOf(input.materials),
    products: artifactsOf(input.products),
    byproducts: { 'return-value': input.exitCode, stdout: input.stdoutDigest, stderr: input.stderrDigest },
    environment: { 'airlock-run-id': input.runId, 'airlock-attempt': input.attempt },
  };
}

/** Sign a link with the runner's key. */
export function signLinkMetablock(link: InTotoLink, signer: InTotoSigner): Metablock<InTotoLink> {
  return signMetablock(link, signer);
}

/** `<step name>.<first 8 hex of keyid>.link`: the name in-toto-verify looks for. */
export function linkFileName(name: string, keyid: string): string {
  return `${name}.${keyid.slice(0, 8)}.link`;
}

const LINK_FIELDS = ['_type', 'byproducts', 'command', 'environment', 'materials', 'name', 'products'];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isArtifacts(value: unknown): value is Record<string, HashDict> {
  return isRecord(value) && Object.values(value).every((h) => isRecord(h) && Object.values(h).every((x) => typeof x === 'string'));
}

/** Same paths, same sha256 (and nothing else claimed). */
function sameArtifacts(a: Readonly<Record<string, HashDict>>, b: Readonly<Record<string, HashDict>>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && JSON.stringify(Object.entries(a[k] ?? {}).sort()) === JSON.stringify(Object.entries(b[k] ?? {}).sort()));
}

/** The shape problem of a link body, or undefined. Exact field set: in-toto drops unknown fields before verifying. */
export function linkShapeProblem(signed: unknown): string | undefined {
  if (!isRecord(signed)) return 'signed is not an object';
  if (signed._type !== 'link') return '_type is not "link"';
  const fields = Object.keys(signed).sort();
  if (fields.join() !== LINK_FIELDS.join()) return `fields must be exactly ${LINK_FIELDS.join(', ')}`;
  if (typeof signed.name !== 'string') return 'name is not a string';
  if (!Array.isArray(signed.command) || !signed.command.every((c) => typeof c === 'string')) return 'command is not a list of strings';
  if (!isArtifacts(signed.materials)) return 'materials is not a map of hash dicts';
  if (!isArtifacts(signed.products)) return 'products is not a map of hash dicts';
  if (!isRecord(signed.byproducts)) return 'byproducts is not an object';
  if (!isRecord(signed.environment)) return 'environment is not an object';
  return undefined;
}

/** What a link must say for the attempt a server handed out and the result the runner reported (the output digests are the runner's own). */
export type ExpectedLink = Omit<LinkInput, 'stdoutDigest' | 'stderrDigest'>;

/**
 * Why `block` is not this attempt's link signed by `publicKey`, or undefined when it is: the
 * signature (as in-toto checks it), the exact shape, the name, command, materials, products,
 * return value, run and attempt. Digests that are not `sha256:<hex>` are a problem, not a throw.
 */
export function linkProblem(block: unknown, publicKey: KeyObject, expected: ExpectedLink): string | undefined {
  if (block === undefined || block === null) return 'is missing';
  const verified = verifyMetablock(block, publicKey);
  if (!verified.ok) return `does not verify with the runner's key: ${verified.reason}`;
  const signed = (block as Metablock<unknown>).signed;
  const shape = linkShapeProblem(signed);
  if (shape !== undefined) return `is malformed: ${shape}`;
  const l = signed as InTotoLink;
  if (l.name !== stepName(expected.stage, expected.step)) return `names step ${l.name}, not ${stepName(expected.stage, expected.step)}`;
  if (l.environment['airlock-run-id'] !== expected.runId || l.environment['airlock-attempt'] !== expected.attempt) return 'is for another run or attempt';
  const argv = commandArgv(expected.command);
  if (l.command.length !== argv.length || l.command.some((c, i) => c !== argv[i])) return 'names another command than the job';
  let materials: Record<string, HashDict>;
  let products: Record<string, HashDict>;
  try {
    materials = artifactsOf(expected.materials);
    products = artifactsOf(expected.products);
  } catch (err) {
    return `cannot be compared: ${(err as Error).message}`;
  }
  if (!sameArtifacts(l.materials, materials)) return 'names other materials than the job inputs';
  if (!sameArtifacts(l.products, products)) return 'names other products than the reported outputs';
  if (l.byproducts['return-value'] !== expected.exitCode) return 'and the report disagree on the exit code';
  return undefined;
}
