/** Signed approval webhooks: the signature format, verification and its refusals, delivery. */
import { createHmac, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SIGNATURE_HEADER, sendWebhook, signWebhook, verifyWebhook } from '../../src/delivery/webhook.js';
import { AirlockError, ValidationError } from '../../src/errors/index.js';

const secret = randomBytes(32);
const body = Buffer.from('{"request":"r-1","environment":"production"}');
const T = 1_750_000_000;

interface Received {
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  readonly url: string;
}

/** A local receiver that records what it got and answers `status`. */
async function receiver(answer: (r: Received) => { status: number; headers?: Record<string, string> } | null): Promise<{ url: string; received: Received[]; server: Server }> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = { headers: req.headers, body: Buffer.concat(chunks), url: req.url ?? '' };
      received.push(r);
      const a = answer(r);
      if (a !== null) res.writeHead(a.status, a.headers).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  servers.push(server);
  return { url: `http://127.0.0.1:${port}`, received, server };
}

const servers: Server[] = [];
afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

describe('signWebhook / verifyWebhook', () => {
  it('signs t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">', () => {
    const headers = signWebhook(body, secret, T);
    const expected = createHmac('sha256', secret).update(`${T}.${body.toString()}`).digest('hex');
    expect(headers).toEqual({ 'x-airlock-signature': `t=${T},v1=${expected}` });
    expect(verifyWebhook(headers, body, secret, T)).toEqual({ ok: true, timestamp: T, signature: expected });
  });

  it('accepts within the tolerance either way and refuses outside it (replays, clock games)', () => {
    const headers = signWebhook(body, secret, T);
    expect(verifyWebhook(headers, body, secret, T + 300).ok).toBe(true);
    expect(verifyWebhook(headers, body, secret, T - 300).ok).toBe(true);
    expect(verifyWebhook(headers, body, secret, T + 301)).toEqual({ ok: false, reason: 'stale' });
    expect(verifyWebhook(headers, body, secret, T - 301)).toEqual({ ok: false, reason: 'stale' });
    expect(verifyWebhook(headers, body, secret, T + 60, 30)).toEqual({ ok: false, reason: 'stale' });
  });

  it('refuses a changed body, a wrong secret, and a timestamp moved to look fresh', () => {
    const headers = signWebhook(body, secret, T);
    expect(verifyWebhook(headers, Buffer.from(body.toString().replace('production', 'staging')), secret, T)).toEqual({ ok: false, reason: 'mismatch' });
    expect(verifyWebhook(headers, body, randomBytes(32), T)).toEqual({ ok: false, reason: 'mismatch' });
    // An old capture re-sent with a current t=: the MAC covers the timestamp.
    const moved = { [SIGNATURE_HEADER]: headers[SIGNATURE_HEADER].replace(`t=${T}`, `t=${T + 1000}`) };
    expect(verifyWebhook(moved, body, secret, T + 1000)).toEqual({ ok: false, reason: 'mismatch' });
  });

  it('refuses missing and malformed headers', () => {
    const good = signWebhook(body, secret, T)[SIGNATURE_HEADER];
    const v1 = good.split(',v1=')[1]!;
    expect(verifyWebhook({}, body, secret, T)).toEqual({ ok: false, reason: 'missing' });
    for (const value of [`v1=${v1}`, `t=${T}`, `t=${T},v1=${v1.toUpperCase()}`, `t=${T},v1=${v1.slice(2)}`, `t=${T},t=${T},v1=${v1}`, `t=-1,v1=${v1}`, `t=${T};v1=${v1}`, 'garbage', '']) {
      expect(verifyWebhook({ [SIGNATURE_HEADER]: value }, body, secret, T), value).toEqual({ ok: false, reason: 'malformed' });
    }
    expect(verifyWebhook({ [SIGNATURE_HEADER]: [good, good] }, body, secret, T)).toEqual({ ok: false, reason: 'malformed' });
  });

  it('accepts any matching v1 entry (secret rotation) and header names in any case', () => {
    const old = randomBytes(32);
    const withOld = signWebhook(body, old, T)[SIGNATURE_HEADER];
    const withNew = signWebhook(body, secret, T)[SIGNATURE_HEADER];
    const both = `${withOld},v1=${withNew.split(',v1=')[1]!}`;
    expect(verifyWebhook({ 'X-Airlock-Signature': both }, body, secret, T).ok).toBe(true);
    expect(verifyWebhook({ 'X-Airlock-Signature': both }, body, old, T).ok).toBe(true);
    expect(verifyWebhook({ 'X-Airlock-Signature': both }, body, randomBytes(32), T)).toEqual({ ok: false, reason: 'mismatch' });
  });

  it('refuses short secrets and bad timestamps', () => {
    expect(() => signWebhook(body, Buffer.alloc(8), T)).toThrow(ValidationError);
    expect(() => signWebhook(body, secret, 1.5)).toThrow(ValidationError);
    expect(() => verifyWebhook({}, body, Buffer.alloc(0), T)).toThrow(ValidationError);
  });
});

describe('sendWebhook', () => {
  let hook: Awaited<ReturnType<typeof receiver>>;
  beforeAll(async () => {
    hook = await receiver(() => ({ status: 204 }));
  });

  it('POSTs JSON the receiver verifies with the shared secret', async () => {
    const payload = { request: 'r-7', environment: 'production', digests: ['sha256:' + 'a'.repeat(64)] };
    const now = Math.floor(Date.now() / 1000);
    expect(await sendWebhook(`${hook.url}/hooks/approvals`, payload, secret, { timeoutMs: 2000 })).toBe(204);
    const got = hook.received.at(-1)!;
    expect(got.url).toBe('/hooks/approvals');
    expect(got.headers['content-type']).toBe('application/json');
    expect(JSON.parse(got.body.toString())).toEqual(payload);
    const verdict = verifyWebhook(got.headers, got.body, secret, Math.floor(Date.now() / 1000));
    expect(verdict.ok).toBe(true);
    expect(verdict.ok && Math.abs(verdict.timestamp - now)).toBeLessThanOrEqual(2);
    // The same captured request replayed after the tolerance is refused.
    expect(verifyWebhook(got.headers, got.body, secret, now + 400)).toEqual({ ok: false, reason: 'stale' });
    expect(verifyWebhook(got.headers, got.body, randomBytes(32), now)).toEqual({ ok: false, reason: 'mismatch' });
  });

  it('does not follow redirects: the signed payload never reaches the other host', async () => {
    const elsewhere = await receiver(() => ({ status: 200 }));
    const redirector = await receiver(() => ({ status: 307, headers: { location: `${elsewhere.url}/steal` } }));
    expect(await sendWebhook(`${redirector.url}/hook`, { a: 1 }, secret, { timeoutMs: 2000 })).toBe(307);
    expect(redirector.received).toHaveLength(1);
    expect(elsewhere.received).toHaveLength(0);
  });

  it('uses the injected clock and fetch', async () => {
    const calls: { url: string; init: RequestInit | undefined }[] = [];
    const fakeFetch = ((url: URL, init?: RequestInit) => {
      calls.push({ url: url.toString(), init });
      return Promise.resolve(new Response(null, { status: 202 }));
    }) as typeof fetch;
    expect(await sendWebhook('https://hooks.example/x', { b: 2 }, secret, { timeoutMs: 1000, fetch: fakeFetch, now: () => T })).toBe(202);
    const init = calls[0]!.init!;
    const headers = init.headers as Record<string, string>;
    expect(init.redirect).toBe('manual');
    expect(verifyWebhook(headers, init.body as Buffer, secret, T)).toMatchObject({ ok: true, timestamp: T });
  });

  it('reports an unreachable receiver and a timeout by origin only (the path may hold a token)', async () => {
    const closed = await receiver(() => null);
    await new Promise((r) => {
      closed.server.close(r);
    });
    const err = await sendWebhook(`${closed.url}/hooks/T0KEN-IN-PATH?key=abc`, {}, secret, { timeoutMs: 1000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AirlockError);
    expect((err as AirlockError).code).toBe('SERVER_UNREACHABLE');
    expect((err as AirlockError).details.reason).toBe('unreachable');
    expect((err as AirlockError).message).not.toContain('T0KEN');
    expect((err as AirlockError).message).toContain(closed.url);

    const silent = await receiver(() => null);
    const started = Date.now();
    const timeout = await sendWebhook(`${silent.url}/hooks/T0KEN`, {}, secret, { timeoutMs: 300 }).catch((e: unknown) => e);
    expect((timeout as AirlockError).details.reason).toBe('timeout');
    expect((timeout as AirlockError).message).not.toContain('T0KEN');
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('refuses URLs that are not http(s)', async () => {
    await expect(sendWebhook('file:///etc/passwd', {}, secret, { timeoutMs: 1000 })).rejects.toBeInstanceOf(ValidationError);
    await expect(sendWebhook('not a url', {}, secret, { timeoutMs: 1000 })).rejects.toBeInstanceOf(ValidationError);
  });
});
