/**
 * Approval notifications (issue 7): every deployment request, decision and break-glass is
 * POSTed to the configured approvers' webhooks, signed with HMAC (webhook.ts). Delivery runs
 * after the deployment's own commit and never fails or blocks it: an unreachable receiver must
 * not become a way to stop deploys. Each target's outcome is recorded in the audit log, so a
 * notification that never arrived is visible there rather than silently lost.
 */
import { createHash, randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { systemClock } from '../audit/index.js';
import type { AuditLog, Clock } from '../audit/index.js';
import { AirlockError, ValidationError } from '../errors/index.js';
import { sendWebhook } from './webhook.js';
import type { SendWebhookOptions } from './webhook.js';
import type { DeploymentNotice } from './deployments.js';

/** What an approval webhook announces: the deployment's notice, with a link to it in the API. */
export interface ApprovalNotice extends DeploymentNotice {
  readonly url?: string | undefined;
}

/** One receiver. The secret is the HMAC key and is never logged, recorded or sent. */
export interface WebhookTarget {
  readonly url: string;
  readonly secret: Buffer;
}

/** The part of a pino logger the notifier uses. */
export interface NotifierLogger {
  warn(obj: object, msg: string): void;
}

/** Same shape as {@link sendWebhook}: resolves with the HTTP status, throws when unreachable. */
export type SendWebhook = (url: string, payload: unknown, secret: Buffer, opts: SendWebhookOptions) => Promise<number>;

export interface ApprovalNotifierDeps {
  readonly audit: AuditLog;
  readonly targets: readonly WebhookTarget[];
  readonly logger?: NotifierLogger | undefined;
  /** Per attempt; default 5000. */
  readonly timeoutMs?: number | undefined;
  /** Attempts after the first on a transient failure (network, timeout, 408, 429, 5xx); default 3. */
  readonly retries?: number | undefined;
  /** First retry delay, doubled on each further retry; default 1000. */
  readonly backoffMs?: number | undefined;
  readonly send?: SendWebhook | undefined;
  readonly clock?: Clock | undefined;
}

const ACTOR = { kind: 'system', id: 'approval-notifier' } as const;
const MIN_SECRET_BYTES = 16;

/**
 * The URL as it may be recorded: scheme://host:port and a digest of the path. Credentials, path,
 * query and fragment are dropped since webhook URLs often carry a token there.
 */
export function webhookTargetLabel(url: string): string {
  const u = new URL(url);
  const port = u.port === '' ? (u.protocol === 'https:' ? '443' : '80') : u.port;
  // The path can itself be the credential (Slack-style /services/T…/B…/TOKEN) and the audit log
  // keeps what it is given forever: name the host and a digest of the path, never the path.
  const path = createHash('sha256').update(u.pathname).digest('hex').slice(0, 12);
  return `${u.protocol}//${u.hostname}:${port} (path sha256:${path})`;
}

type Attempt = { readonly ok: true; readonly status: number } | { readonly ok: false; readonly status?: number; readonly code?: string; readonly transient: boolean };

/** Sends approval notices to every target, retrying transient failures, and records each outcome. */
export class ApprovalNotifier {
  private readonly inFlight = new Set<Promise<void>>();
  private readonly stopping = new AbortController();
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly targets: readonly { readonly url: string; readonly label: string; readonly secret: Buffer }[];

  constructor(private readonly deps: ApprovalNotifierDeps) {
    this.timeoutMs = deps.timeoutMs ?? 5000;
    this.retries = deps.retries ?? 3;
    this.backoffMs = deps.backoffMs ?? 1000;
    const issues: { path: string; message: string }[] = [];
    if (!Number.isSafeInteger(this.timeoutMs) || this.timeoutMs <= 0) issues.push({ path: 'timeoutMs', message: 'must be a positive integer of milliseconds' });
    if (!Number.isSafeInteger(this.retries) || this.retries < 0 || this.retries > 10) issues.push({ path: 'retries', message: 'must be an integer between 0 and 10' });
    if (!Number.isFinite(this.backoffMs) || this.backoffMs < 0) issues.push({ path: 'backoffMs', message: 'must be a non-negative number of milliseconds' });
    const targets: { url: string; label: string; secret: Buffer }[] = [];
    deps.targets.forEach((t, i) => {
      let label: string | undefined;
      try {
        const u = new URL(t.url);
        if (u.protocol === 'http:' || u.protocol === 'https:') label = webhookTargetLabel(t.url);
      } catch {
        // reported below; the URL itself is not echoed (it may carry a token)
      }
      if (label === undefined) issues.push({ path: `targets[${i}].url`, message: 'must be an absolute http or https URL' });
      if (!Buffer.isBuffer(t.secret) || t.secret.length < MIN_SECRET_BYTES) issues.push({ path: `targets[${i}].secret`, message: `must be at least ${MIN_SECRET_BYTES} bytes` });
      if (label !== undefined) targets.push({ url: t.url, label, secret: Buffer.from(t.secret) });
    });
    if (issues.length > 0) throw new ValidationError('invalid approval notifier settings', issues);
    this.targets = targets;
  }

  /**
   * Deliver `notice` to every target. Resolves when each target has succeeded or given up;
   * never rejects. Callers on a request path should not await it (`void notifier.notify(n)`).
   */
  notify(notice: ApprovalNotice): Promise<void> {
    if (this.stopping.signal.aborted) {
      this.deps.logger?.warn({ deploymentId: notice.deploymentId, type: notice.type }, 'approval webhook not sent: the notifier is shut down');
      return Promise.resolve();
    }
    const body = {
      // One id for all attempts and targets: receivers drop duplicates of a retried delivery.
      id: randomUUID(),
      time: (this.deps.clock ?? systemClock).now().toISOString(),
      type: notice.type,
      deploymentId: notice.deploymentId,
      project: notice.project,
      environment: notice.environment,
      requestedBy: notice.requestedBy,
      justification: notice.justification,
      ticket: notice.ticket ?? null,
      artifacts: notice.artifacts.map((a) => ({ path: a.path, digest: a.digest })),
      commitRange: { from: notice.commitRange.from, to: notice.commitRange.to },
      bindingDigest: notice.bindingDigest,
      missing: notice.missing ?? null,
      url: notice.url ?? null,
    };
    const run = Promise.all(this.targets.map((t) => this.deliver(t, notice, body))).then(
      () => undefined,
      () => undefined,
    );
    this.inFlight.add(run);
    void run.finally(() => this.inFlight.delete(run));
    return run;
  }

  /** Resolves once every notification started so far has finished (tests, shutdown). */
  async pending(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /**
   * Stop retrying and accept no new notices, then wait for the attempts under way (at most
   * `timeoutMs`) and their audit records. Call before the store closes.
   */
  close(): Promise<void> {
    this.stopping.abort();
    return this.pending();
  }

  private async deliver(target: { url: string; label: string; secret: Buffer }, notice: ApprovalNotice, body: unknown): Promise<void> {
    let attempts = 0;
    let last: Attempt;
    for (;;) {
      attempts++;
      last = await this.attempt(target, body);
      if (last.ok || !last.transient || attempts > this.retries || this.stopping.signal.aborted) break;
      // Rejects when close() aborts the wait: shutdown is not held up by a backoff.
      const stopped = await delay(this.backoffMs * 2 ** (attempts - 1), undefined, { signal: this.stopping.signal }).then(
        () => false,
        () => true,
      );
      if (stopped) break;
    }
    const details = { type: notice.type, target: target.label, attempts, status: last.status ?? null, ...(last.ok ? {} : { code: last.code ?? null }) };
    const reason = last.ok ? undefined : `webhook ${target.label} ${last.status === undefined ? `could not be reached (${last.code ?? 'request failed'})` : `answered HTTP ${last.status}`} after ${attempts} attempt${attempts === 1 ? '' : 's'}`;
    if (reason !== undefined) this.deps.logger?.warn({ deploymentId: notice.deploymentId, ...details }, 'approval webhook delivery failed');
    try {
      await this.deps.audit.append({
        actor: ACTOR,
        action: 'deployments.notify',
        resource: `deployments/${notice.deploymentId}`,
        outcome: last.ok ? 'allowed' : 'failed',
        ...(reason === undefined ? {} : { reason }),
        details,
      });
    } catch (err) {
      this.deps.logger?.warn({ deploymentId: notice.deploymentId, target: target.label, code: err instanceof AirlockError ? err.code : 'unknown' }, 'recording an approval webhook outcome failed');
    }
  }

  private async attempt(target: { url: string; secret: Buffer }, body: unknown): Promise<Attempt> {
    // sendWebhook names only the origin in its error; the transport's own code comes from here.
    let code: string | undefined;
    const capture: typeof fetch = async (input, init) => {
      try {
        return await fetch(input, init);
      } catch (err) {
        const e = err as Error & { cause?: { code?: unknown } };
        if (typeof e.cause?.code === 'string') code = e.cause.code;
        throw err;
      }
    };
    try {
      const status = await (this.deps.send ?? sendWebhook)(target.url, body, target.secret, { timeoutMs: this.timeoutMs, fetch: capture });
      if (status >= 200 && status < 300) return { ok: true, status };
      // A 3xx is not followed (it would send the signed notice to a host nobody configured).
      return { ok: false, status, transient: status === 408 || status === 429 || status >= 500 };
    } catch (err) {
      const reason = err instanceof AirlockError ? err.details.reason : undefined;
      return { ok: false, code: reason === 'timeout' ? 'timeout' : (code ?? (err instanceof AirlockError ? err.code : 'request failed')), transient: true };
    }
  }
}
