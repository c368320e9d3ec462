/**
 * The embedded runner: `airlock server` runs jobs itself by default. It takes queued steps like
 * any agent (claim, heartbeat, complete), so embedded and remote runs share one code path and
 * one audit trail. Output is batched into the log store at most every LOG_FLUSH_MS.
 */
import { AirlockError } from '../errors/index.js';
import type { Logger } from '../observability/index.js';
import type { ExecutorDeps, StepJob, StepResult } from '../runner/index.js';
import { MAX_STORED_LOG_BYTES } from './runs.js';
import type { Job, Runs, StepReport } from './runs.js';
import type { JsonValue } from '../audit/index.js';

const LOG_FLUSH_MS = 200;
const FLUSH_BYTES = 1024 * 1024;
/** Heartbeats at a third of the lease, so one late beat does not lose the step. */
const heartbeatMs = (leaseMs: number): number => Math.max(500, Math.floor(leaseMs / 3));
const IDLE_POLL_MS = 1000;

export interface EmbeddedRunnerOptions {
  readonly name: string;
  readonly labels: readonly string[];
  /** Steps at once (default 2: this machine's cores). */
  readonly concurrency: number;
  readonly execute: (job: StepJob, deps: Pick<ExecutorDeps, 'onOutput' | 'signal'>) => Promise<StepResult>;
  /** Extra environment Airlock provides to a step: run id, commit, its workload token. */
  readonly provided: (job: Job) => Promise<Record<string, string>>;
  readonly sourceDir: (runId: string) => string;
  /**
   * Fetch the step's declared secrets as it starts, with the workload token in `provided`
   * (AIRLOCK_TOKEN). A refusal throws: the step is refused, not run.
   */
  readonly release?: ((job: Job, provided: Readonly<Record<string, string>>) => Promise<readonly { name: string; value: Buffer }[]>) | undefined;
  readonly logger?: Logger | undefined;
}

/** The report for a runner result: outputs and the evidence kept with the step. */
export function reportOf(result: StepResult): StepReport {
  return {
    status: result.status,
    exitCode: result.exitCode,
    reason: result.reason,
    outputs: result.outputs.map((o) => ({ path: o.path, digest: o.digest, size: o.size })),
    // intotoLink: the runner-signed in-toto link, exported for in-toto-verify (docs/intoto.md).
    evidence: JSON.parse(JSON.stringify({ fingerprint: result.fingerprint, logs: result.logs, link: result.link, intotoLink: result.intotoLink, signal: result.signal, startedAt: result.startedAt, finishedAt: result.finishedAt, durationMs: result.durationMs })) as JsonValue,
  };
}

/**
 * A Job as the executor takes it. Each released value is injected the way the step declared
 * it; a value the step did not declare is refused rather than guessed at.
 */
export function stepJobOf(job: Job, provided: Record<string, string>, source: string, secrets: readonly { name: string; value: Buffer }[] = []): StepJob {
  const declared = new Map(job.secrets.map((s) => [s.name, s.as]));
  return {
    secrets: secrets.map((s) => {
      const as = declared.get(s.name);
      if (as === undefined) throw new AirlockError('INTERNAL', `secret ${s.name} was released to ${job.stage}/${job.step}, which does not declare it`);
      return { name: s.name, value: s.value, as };
    }),
    jobId: job.stepId,
    runId: job.runId,
    pipeline: job.pipeline,
    stage: job.stage,
    step: job.step,
    attempt: job.attempt,
    command: job.command,
    env: { ...job.env, ...provided },
    timeoutMs: job.timeoutMs,
    source: { kind: 'dir', path: source },
    inputs: job.inputs,
    outputs: job.outputs,
    requires: job.requires,
    network: job.network,
  };
}

export class EmbeddedRunner {
  private running = 0;
  private stopped = false;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private readonly active = new Map<string, AbortController>();

  constructor(
    private readonly runs: Runs,
    private readonly options: EmbeddedRunnerOptions,
  ) {
    runs.onWork(() => this.wake?.());
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stop taking jobs and cancel the running ones (their leases lapse; the reaper ends them). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    for (const c of this.active.values()) c.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (this.running < this.options.concurrency) {
        let job: Job | undefined;
        try {
          job = await this.runs.claim({ name: this.options.name, labels: this.options.labels });
        } catch (err) {
          this.options.logger?.error({ err }, 'embedded runner: claiming a job failed');
        }
        if (job !== undefined) {
          this.running += 1;
          void this.execute(job).finally(() => {
            this.running -= 1;
            this.wake?.();
          });
          continue;
        }
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, IDLE_POLL_MS);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  private async execute(job: Job): Promise<void> {
    const abort = new AbortController();
    this.active.set(job.stepId, abort);
    let pending: { stream: 'stdout' | 'stderr'; data: Buffer }[] = [];
    let pendingBytes = 0;
    let buffered = 0;
    let flushing: Promise<void> = Promise.resolve();
    const flush = (): Promise<void> => {
      const batch = pending;
      pending = [];
      pendingBytes = 0;
      flushing = flushing.then(() => this.runs.appendLog(job.stepId, batch)).catch((err: unknown) => this.options.logger?.error({ err }, 'storing step output failed'));
      return flushing;
    };
    const flusher = setInterval(() => void flush(), LOG_FLUSH_MS);
    const beat = setInterval(() => {
      this.runs
        .heartbeat(job.stepId, this.options.name)
        .then((h) => {
          if (h.cancel) abort.abort();
        })
        .catch((err: unknown) => this.options.logger?.error({ err }, 'heartbeat failed'));
    }, heartbeatMs(this.runs.leaseMs));
    try {
      const provided = await this.options.provided(job);
      let secrets: readonly { name: string; value: Buffer }[] = [];
      try {
        secrets = (await this.options.release?.(job, provided)) ?? [];
      } catch (err) {
        // A refused release refuses the step (recorded by the vault): the command never runs.
        clearInterval(flusher);
        await this.runs.complete(job.stepId, this.options.name, { status: 'refused', exitCode: null, reason: err instanceof Error ? err.message.slice(0, 500) : 'secrets could not be released', outputs: [], evidence: null });
        return;
      }
      const result = await this.options.execute(stepJobOf(job, provided, this.options.sourceDir(job.runId), secrets), {
        onOutput: (stream, chunk) => {
          // Beyond what the store keeps, output is only counted (the link has the full digest):
          // a flooding step cannot grow this process's memory.
          if (buffered >= MAX_STORED_LOG_BYTES) return;
          const data = Buffer.from(chunk.subarray(0, MAX_STORED_LOG_BYTES - buffered));
          buffered += data.length;
          pending.push({ stream, data });
          pendingBytes += data.length;
          if (pendingBytes >= FLUSH_BYTES) void flush();
        },
        signal: abort.signal,
      });
      clearInterval(flusher);
      await flush();
      await this.runs.complete(job.stepId, this.options.name, reportOf(result));
    } catch (err) {
      clearInterval(flusher);
      await flush();
      this.options.logger?.error({ err, stepId: job.stepId }, 'embedded runner: step could not be run');
      await this.runs
        .complete(job.stepId, this.options.name, { status: 'failed', exitCode: null, reason: `the runner could not run the step: ${err instanceof Error ? err.message.slice(0, 300) : 'internal error'}`, outputs: [], evidence: null })
        .catch(() => undefined);
    } finally {
      clearInterval(beat);
      this.active.delete(job.stepId);
    }
  }
}
