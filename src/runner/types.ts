/** The step executor's contract: what a job asks for and what a run proves. */
import type { KeyObject } from 'node:crypto';
import type { BlobStoreLike } from '../artifacts/index.js';
import type { InTotoLink, Metablock } from '../intoto/index.js';

/** One attempt of one pipeline step, fully resolved by the caller. */
export interface StepJob {
  readonly jobId: string;
  readonly runId: string;
  readonly pipeline: string;
  readonly stage: string;
  readonly step: string;
  readonly attempt: number;
  /** Run via `/bin/sh -c`. */
  readonly command: string;
  /** Exactly what the step gets, besides the fixed PATH, HOME, TMPDIR and LANG. */
  readonly env: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  /** The checked-out commit, copied into the workspace without `.git`. */
  readonly source: { readonly kind: 'dir'; readonly path: string } | { readonly kind: 'none' };
  /** Blobs copied into the workspace at `path`, verified by hash first. */
  readonly inputs: readonly { readonly path: string; readonly digest: string }[];
  /** Workspace-relative files collected after a successful run. */
  readonly outputs: readonly string[];
  /** Tool name -> semver range (or `*`: present, any version). */
  readonly requires: Readonly<Record<string, string>>;
  readonly network: boolean;
  /**
   * Secret values released to this step: as environment variables, or as files (mode 0400
   * under `.secrets/` in the workspace, path in `<NAME>_FILE`) removed when the step ends.
   * Every value is masked in the step's stored and streamed output.
   */
  readonly secrets?: readonly { readonly name: string; readonly value: Buffer; readonly as: 'env' | 'file' }[];
}

export type StepStatus = 'succeeded' | 'failed' | 'timed_out' | 'cancelled' | 'refused';

/** Where and with what a step ran. Environment variable names only, never values. */
export interface EnvironmentFingerprint {
  readonly os: string;
  readonly arch: string;
  readonly kernel: string;
  readonly tools: Readonly<Record<string, string | null>>;
  readonly envNames: readonly string[];
  /** `bwrap` when the step ran under bubblewrap, `none` when it ran as a plain process. */
  readonly sandbox: 'bwrap' | 'none';
  readonly network: boolean;
}

/** One output stream of the step. */
export interface LogRecord {
  /** The stored blob (at most maxLogBytes plus the truncation marker); null if it could not be stored. */
  readonly digest: string | null;
  /** Every byte the step wrote to the stream. */
  readonly bytes: number;
  readonly truncated: boolean;
  /** SHA-256 of every byte the step wrote (equals `digest` when nothing was truncated). */
  readonly streamDigest: string;
}

/** A DSSE v1 envelope (https://github.com/secure-systems-lab/dsse/blob/master/envelope.md). */
export interface SignedEnvelope {
  readonly payloadType: string;
  readonly payload: string;
  readonly signatures: readonly { readonly keyid: string; readonly sig: string }[];
}

export interface StepResult {
  readonly status: StepStatus;
  readonly exitCode: number | null;
  readonly signal: string | null;
  /** For failed, refused, timed_out and cancelled: a sentence naming what. */
  readonly reason: string | undefined;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly durationMs: number;
  readonly outputs: readonly { readonly path: string; readonly digest: string; readonly size: number }[];
  readonly fingerprint: EnvironmentFingerprint;
  readonly logs: { readonly stdout: LogRecord; readonly stderr: LogRecord };
  readonly link: SignedEnvelope;
  /** The same attempt as an in-toto v0.9 link, signed by the same runner key (docs/intoto.md). */
  readonly intotoLink: Metablock<InTotoLink>;
}

/**
 * Signs DSSE pre-authentication encodings and in-toto link bodies (canonical JSON) with one
 * Ed25519 key. The private key stays with the caller.
 */
export interface LinkSigner {
  readonly keyid: string;
  /** The public half: the in-toto link's key id is derived from it (securesystemslib key id). */
  readonly publicKey: KeyObject;
  sign(data: Buffer): Buffer;
}

export interface ExecutorDeps {
  readonly blobs: BlobStoreLike;
  /** Where workspaces are created (one fresh directory per attempt). */
  readonly workRoot: string;
  readonly signer: LinkSigner;
  /** Raw chunks as they arrive (binary safe). A throwing listener does not stop the step. */
  onOutput(stream: 'stdout' | 'stderr', chunk: Buffer): void;
  /** Aborting cancels the step: its whole process group is killed. */
  readonly signal?: AbortSignal;
  /** Bytes stored per stream (default 16 MiB); the rest is hashed, counted and dropped. */
  readonly maxLogBytes?: number;
  /**
   * `auto` (default): bubblewrap when `bwrap` is on PATH, else a plain process (recorded in the
   * fingerprint); `required`: refuse steps when bwrap is missing; `off`: always a plain process.
   */
  readonly sandbox?: 'auto' | 'required' | 'off';
  /** Between SIGTERM and SIGKILL for the process group (default 2000 ms). */
  readonly killGraceMs?: number;
}

/** The in-toto-style link record signed after every attempt. */
export interface LinkRecord {
  readonly _type: 'https://airlock.dev/link/v1';
  readonly pipeline: string;
  readonly runId: string;
  readonly stage: string;
  readonly step: string;
  readonly attempt: number;
  readonly command: string;
  readonly materials: Readonly<Record<string, string>>;
  readonly products: Readonly<Record<string, string>>;
  readonly byproducts: {
    readonly exitCode: number | null;
    readonly signal: string | null;
    readonly status: StepStatus;
    readonly stdoutDigest: string;
    readonly stderrDigest: string;
    readonly fingerprint: EnvironmentFingerprint;
  };
  readonly startedAt: string;
  readonly finishedAt: string;
}
