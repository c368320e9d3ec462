/**
 * Approval notifications over real HTTP, on both engines: the receiver can verify the HMAC
 * signature; transient failures are retried and permanent ones are not; every target's outcome
 * is recorded once; a dead receiver never fails the caller; and neither the HMAC secret nor a
 * URL's query (often a token) reaches the audit log or the logs.
 */
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/index.js';
import type { AuditEvent } from '../../src/audit/index.js';
import { ApprovalNotifier, verifyWebhook, webhookTargetLabel } from '../../src/delivery/index.js';
import type { ApprovalNotice } from '../../src/delivery/index.js';
import { AirlockError, ValidationError } from '../../src/errors/index.js';
import { ENGINES, openTestStore } from '../support/engines.js';
import type { TestStore } from '../support/engines.js';

// Printable, so a leak would show in any text it reached.
const SECRET = Buffer.from('notifier-hmac-secret-MARKER-0123456789abcdef');
const OTHER_SECRET = Buffer.from('second-target-hmac-secret-MARKER-9876543210');
const SECRET_FORMS = [SECRET.toString(), SECRET.toString('hex'), SECRET.toString('base64'), OTHER_SECRET.toString(), 'MARKER'];

const NOTICE: ApprovalNotice = {
  type: 'deployment.requested',
  deploymentId: 'dep-1',
  project: 'shop',
  environment: 'production',
  requestedBy: 'alice',
  justification: 'release 1.2 with the checkout fix',
  ticket: 'OPS-42',
  artifacts: [{ path: 'shop.tar', digest: `sha256:${'a'.repeat(64)}` }],
  commitRange: { from: 'c0ffee', to: 'deadbeef' },
  bindingDigest: `sha256:${'b'.repeat(64)}`,
  missing: '2 approvals by release-manager',
  url: 'http://127.0.0.1:7300/api/v1/deployments/dep-1',
};

interface Received {
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  readonly url: string;
}

const servers: Server[] = [];

/** A local receiver answering each request with `answer(n)` (n from 0), or never when null. */
async function receiver(answer: (n: number) => number | null): Promise<{ base: string; received: Received[] }> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const status = answer(received.length);
      received.push({ headers: req.headers, body: Buffer.concat(chunks), url: req.url ?? '' });
      if (status !== null) res.writeHead(status, status === 302 ? { location: 'http://127.0.0.1:1/elsewhere' } : {}).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  const address = server.address();
  return { base: `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`, received };
}

/** A port nothing listens on: bound, then released. */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const address = s.address();
  await new Promise((resolve) => s.close(resolve));
  return typeof address === 'object' && address !== null ? address.port : 0;
}

function captureLogger(): { lines: string[]; logger: { warn(obj: object, msg: string): void } } {
  const lines: string[] = [];
  return { lines, logger: { warn: (obj, msg) => lines.push(JSON.stringify({ ...obj, msg })) } };
}

afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** How the audit log names a target: host and a digest of the path (the path can be a token). */
const at = (base: string, path: string): string => `${base} (path sha256:${createHash('sha256').update(path).digest('hex').slice(0, 12)})`;

describe('webhookTargetLabel', () => {
  it('keeps scheme, host, port and path; drops credentials, query and fragment', () => {
    expect(webhookTargetLabel('https://u:pw@hooks.example.com/services/a?token=t#f')).toBe('https://hooks.example.com:443 (path sha256:2f11314942c8)');
    expect(webhookTargetLabel('http://[::1]:8080/x?y')).toBe('http://[::1]:8080 (path sha256:b3d1db318671)');
    expect(webhookTargetLabel('http://localhost/')).toBe('http://localhost:80 (path sha256:8a5edab28263)');
  });
});

describe('ApprovalNotifier construction', () => {
  it('refuses a non-http URL or a short secret, naming the target but not echoing the URL', () => {
    const audit = {} as unknown as AuditLog;
    let err: unknown;
    try {
      new ApprovalNotifier({ audit, targets: [{ url: 'ftp://x.example/h?token=leak-me', secret: SECRET }, { url: 'https://ok.example/h', secret: Buffer.from('short') }] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).issues.map((i) => i.path)).toEqual(['targets[0].url', 'targets[1].secret']);
    expect(JSON.stringify(err) + (err as Error).message).not.toContain('leak-me');
    expect(() => new ApprovalNotifier({ audit, targets: [], retries: -1 })).toThrow(ValidationError);
  });
});

describe.each(ENGINES)('ApprovalNotifier on %s', (engine) => {
  let t: TestStore;
  let audit: AuditLog;

  beforeAll(async () => {
    t = await openTestStore(engine);
    audit = new AuditLog(t.store);
  });
  afterAll(async () => {
    await t.cleanup();
  });

  async function notifyRows(deploymentId: string): Promise<AuditEvent[]> {
    const rows = await t.store.db.selectFrom('audit_events').select('event').where('action', '=', 'deployments.notify').where('resource', '=', `deployments/${deploymentId}`).orderBy('seq').execute();
    return rows.map((r) => JSON.parse(r.event) as AuditEvent);
  }

  async function allAuditText(): Promise<string> {
    return JSON.stringify(await t.raw('select * from audit_events'));
  }

  it('delivers a signed JSON notice the receiver verifies with the shared secret, and records it', async () => {
    const r = await receiver(() => 200);
    const { lines, logger } = captureLogger();
    const notifier = new ApprovalNotifier({ audit, targets: [{ url: `${r.base}/hooks/approvals`, secret: SECRET }], logger, backoffMs: 1 });
    await expect(notifier.notify({ ...NOTICE, deploymentId: 'dep-ok' })).resolves.toBeUndefined();

    expect(r.received).toHaveLength(1);
    const got = r.received[0]!;
    expect(got.url).toBe('/hooks/approvals');
    expect(got.headers['content-type']).toBe('application/json');
    const verdict = verifyWebhook(got.headers, got.body, SECRET, Math.floor(Date.now() / 1000));
    expect(verdict.ok).toBe(true);
    // The wrong key, or a body changed in transit, does not verify.
    expect(verifyWebhook(got.headers, got.body, OTHER_SECRET, Math.floor(Date.now() / 1000))).toEqual({ ok: false, reason: 'mismatch' });
    expect(verifyWebhook(got.headers, Buffer.from(got.body.toString().replace('alice', 'mallo')), SECRET, Math.floor(Date.now() / 1000))).toEqual({ ok: false, reason: 'mismatch' });

    const body = JSON.parse(got.body.toString()) as Record<string, unknown>;
    expect(body).toMatchObject({
      type: 'deployment.requested',
      deploymentId: 'dep-ok',
      project: 'shop',
      environment: 'production',
      requestedBy: 'alice',
      justification: NOTICE.justification,
      ticket: 'OPS-42',
      artifacts: NOTICE.artifacts,
      commitRange: NOTICE.commitRange,
      bindingDigest: NOTICE.bindingDigest,
      missing: NOTICE.missing,
      url: NOTICE.url,
    });
    expect(body.id).toMatch(/^[0-9a-f-]{36}$/);
    for (const s of SECRET_FORMS) expect(got.body.toString()).not.toContain(s);

    const rows = await notifyRows('dep-ok');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ actor: { kind: 'system', id: 'approval-notifier' }, outcome: 'allowed', reason: '', details: { type: 'deployment.requested', target: `${r.base} (path sha256:f02f06681626)`, attempts: 1, status: 200 } });
    expect(lines).toEqual([]);
  });

  it('retries a 500 and records one allowed outcome with the attempt count; both tries carry one id', async () => {
    const r = await receiver((n) => (n === 0 ? 500 : 200));
    const notifier = new ApprovalNotifier({ audit, targets: [{ url: `${r.base}/h`, secret: SECRET }], backoffMs: 1 });
    await notifier.notify({ ...NOTICE, deploymentId: 'dep-retry' });
    expect(r.received).toHaveLength(2);
    const ids = r.received.map((x) => (JSON.parse(x.body.toString()) as { id: string }).id);
    expect(ids[0]).toBe(ids[1]);
    for (const x of r.received) expect(verifyWebhook(x.headers, x.body, SECRET, Math.floor(Date.now() / 1000)).ok).toBe(true);
    const rows = await notifyRows('dep-retry');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ outcome: 'allowed', details: { attempts: 2, status: 200 } });
  });

  it('gives up after the retries on a receiver that keeps failing, and does not retry a 4xx or follow a redirect', async () => {
    const failing = await receiver(() => 503);
    const missing = await receiver(() => 404);
    const moved = await receiver(() => 302);
    const notifier = new ApprovalNotifier({
      audit,
      targets: [
        { url: `${failing.base}/a`, secret: SECRET },
        { url: `${missing.base}/b`, secret: SECRET },
        { url: `${moved.base}/c`, secret: SECRET },
      ],
      retries: 2,
      backoffMs: 1,
    });
    await notifier.notify({ ...NOTICE, deploymentId: 'dep-fail' });
    expect(failing.received).toHaveLength(3);
    expect(missing.received).toHaveLength(1);
    expect(moved.received).toHaveLength(1);
    const rows = await notifyRows('dep-fail');
    // One row per target, whatever the number of attempts.
    expect(rows).toHaveLength(3);
    const byTarget = new Map(rows.map((e) => [e.details.target, e]));
    expect(byTarget.get(at(failing.base, '/a'))).toMatchObject({ outcome: 'failed', reason: `webhook ${at(failing.base, '/a')} answered HTTP 503 after 3 attempts`, details: { attempts: 3, status: 503 } });
    expect(byTarget.get(at(missing.base, '/b'))).toMatchObject({ outcome: 'failed', reason: `webhook ${at(missing.base, '/b')} answered HTTP 404 after 1 attempt` });
    expect(byTarget.get(at(moved.base, '/c'))).toMatchObject({ outcome: 'failed', reason: `webhook ${at(moved.base, '/c')} answered HTTP 302 after 1 attempt` });
  });

  it('records a dead receiver as failed with its host and error code, never the secret or the query, and never rejects', async () => {
    const port = await deadPort();
    const live = await receiver(() => 204);
    const { lines, logger } = captureLogger();
    const notifier = new ApprovalNotifier({
      audit,
      targets: [
        { url: `http://127.0.0.1:${port}/hooks/x?token=query-token-leak#frag`, secret: SECRET },
        { url: `${live.base}/ok?token=other-query-leak`, secret: OTHER_SECRET },
      ],
      logger,
      retries: 1,
      backoffMs: 1,
    });
    await expect(notifier.notify({ ...NOTICE, deploymentId: 'dep-dead' })).resolves.toBeUndefined();
    // The live target is unaffected by the dead one, and gets its own secret.
    expect(live.received).toHaveLength(1);
    expect(verifyWebhook(live.received[0]!.headers, live.received[0]!.body, OTHER_SECRET, Math.floor(Date.now() / 1000)).ok).toBe(true);

    const rows = await notifyRows('dep-dead');
    expect(rows).toHaveLength(2);
    const dead = rows.find((e) => e.outcome === 'failed');
    expect(dead).toMatchObject({ reason: `webhook http://127.0.0.1:${port} (path sha256:7c7d070b22d5) could not be reached (ECONNREFUSED) after 2 attempts`, details: { target: `http://127.0.0.1:${port} (path sha256:7c7d070b22d5)`, attempts: 2, status: null, code: 'ECONNREFUSED' } });
    expect(rows.find((e) => e.outcome === 'allowed')).toMatchObject({ details: { target: at(live.base, '/ok'), status: 204 } });

    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('ECONNREFUSED');
    expect(lines[0]).toContain(at(`http://127.0.0.1:${port}`, '/hooks/x'));
    expect(lines[0]).not.toContain('/hooks/x');
    const text = (await allAuditText()) + lines.join('\n');
    for (const leak of [...SECRET_FORMS, 'query-token-leak', 'other-query-leak', 'frag']) expect(text).not.toContain(leak);
  });

  it('names a timeout, and pending() waits for a notification the caller did not await', async () => {
    const silent = await receiver(() => null);
    const notifier = new ApprovalNotifier({ audit, targets: [{ url: `${silent.base}/slow`, secret: SECRET }], timeoutMs: 150, retries: 0 });
    void notifier.notify({ ...NOTICE, deploymentId: 'dep-slow' });
    expect(await notifyRows('dep-slow')).toHaveLength(0);
    await notifier.pending();
    const rows = await notifyRows('dep-slow');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ outcome: 'failed', reason: `webhook ${at(silent.base, '/slow')} could not be reached (timeout) after 1 attempt` });
  });

  it('close() cuts a long backoff short, records the outcome so far, and sends nothing after', async () => {
    const r = await receiver(() => 503);
    const notifier = new ApprovalNotifier({ audit, targets: [{ url: `${r.base}/h`, secret: SECRET }], retries: 3, backoffMs: 60_000 });
    void notifier.notify({ ...NOTICE, deploymentId: 'dep-close' });
    while (r.received.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const started = Date.now();
    await notifier.close();
    expect(Date.now() - started).toBeLessThan(5000);
    expect(await notifyRows('dep-close')).toMatchObject([{ outcome: 'failed', reason: `webhook ${at(r.base, '/h')} answered HTTP 503 after 1 attempt` }]);
    await notifier.notify({ ...NOTICE, deploymentId: 'dep-after-close' });
    expect(r.received).toHaveLength(1);
    expect(await notifyRows('dep-after-close')).toHaveLength(0);
  });

  it('never rejects, even when sending throws and the audit log refuses, and still logs without the secret', async () => {
    const { lines, logger } = captureLogger();
    const brokenAudit = { append: () => Promise.reject(new AirlockError('STORAGE_UNAVAILABLE', 'database gone')) } as unknown as AuditLog;
    const notifier = new ApprovalNotifier({
      audit: brokenAudit,
      targets: [{ url: 'https://hooks.example.com/h?token=query-token-leak', secret: SECRET }],
      logger,
      retries: 1,
      backoffMs: 1,
      send: () => Promise.reject(new Error(`boom ${SECRET.toString()}`)),
    });
    await expect(notifier.notify(NOTICE)).resolves.toBeUndefined();
    await notifier.pending();
    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain('approval webhook delivery failed');
    expect(lines[1]).toContain('STORAGE_UNAVAILABLE');
    for (const leak of [...SECRET_FORMS, 'query-token-leak']) expect(lines.join('\n')).not.toContain(leak);
  });
});
