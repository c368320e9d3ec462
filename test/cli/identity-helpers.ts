/**
 * Helpers for the identity CLI tests: a person's authenticator app (TOTP codes that are never
 * reused), a CLI process driven line by line through pipes, and a stand-in HTTP server for
 * answers a real server cannot be made to give on demand (step-up expiry, lock-out, a proxy page).
 */
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Secret } from 'otpauth';
import { totpAt } from '../../src/identity/index.js';
import type { RunOptions, RunResult } from './helpers.js';
import { finished, start } from './helpers.js';
import { expect } from 'vitest';

const STEP_MS = 30_000;
/**
 * A code for the previous step is only used when the server will check it well before that step
 * drops out of its ±1 window (process start-up, Argon2 verification, a loaded machine).
 */
const MARGIN_MS = 8_000;

/**
 * An authenticator app. The server accepts a code for the steps now-1, now and now+1 but only
 * once per step, and never a step at or below the last accepted one (RFC 6238 §5.2). So each
 * code is taken from the earliest unused step the server will accept; the next step (time +
 * 30 s) when the current one is spent; and only when all three are spent does it wait.
 */
export class Authenticator {
  private last = Number.NEGATIVE_INFINITY;

  constructor(readonly secret: Buffer) {}

  static fromBase32(base32: string): Authenticator {
    return new Authenticator(Buffer.from(Secret.fromBase32(base32).bytes));
  }

  /** A fresh code the server accepts now. */
  async code(): Promise<string> {
    for (;;) {
      const now = Date.now();
      const current = Math.floor(now / STEP_MS);
      const remaining = (current + 1) * STEP_MS - now;
      const step = Math.max(remaining > MARGIN_MS ? current - 1 : current, this.last + 1);
      if (step <= current + 1) {
        this.last = step;
        return totpAt(this.secret, new Date(step * STEP_MS));
      }
      await new Promise((r) => setTimeout(r, remaining + 100));
    }
  }

  /** A code for a step already used: the server must refuse it as a replay. */
  usedCode(): string {
    return totpAt(this.secret, new Date(this.last * STEP_MS));
  }
}

/** A CLI process answering prompts through its stdin pipe. */
export interface Conversation {
  readonly child: ChildProcessWithoutNullStreams;
  readonly result: Promise<RunResult>;
  /** Send one line. */
  line(text: string): void;
  /** Close stdin. */
  end(): void;
  /** Resolve with the first match of `re` in everything written to stderr so far or later. */
  stderrMatch(re: RegExp): Promise<RegExpExecArray>;
}

/** Start `airlock ...args` for a line-by-line conversation. */
export function converse(args: readonly string[], options: RunOptions = {}): Conversation {
  const child = start(args, options);
  const result = finished(child, options.timeoutMs ?? 30_000);
  let stderr = '';
  const waiters: { re: RegExp; done: (m: RegExpExecArray) => void }[] = [];
  child.stderr.on('data', (d: string | Buffer) => {
    stderr += d.toString();
    for (const w of [...waiters]) {
      const m = w.re.exec(stderr);
      if (m !== null) {
        waiters.splice(waiters.indexOf(w), 1);
        w.done(m);
      }
    }
  });
  return {
    child,
    result,
    line: (text) => child.stdin.write(`${text}\n`),
    end: () => child.stdin.end(),
    stderrMatch: (re) => {
      const m = re.exec(stderr);
      if (m !== null) return Promise.resolve(m);
      return new Promise((done, fail) => {
        waiters.push({ re, done });
        result.then(
          (r) => {
            fail(new Error(`airlock exited (${String(r.code)}) before writing ${String(re)} on stderr:\n${r.stderr}\nstdout: ${r.stdout}`));
          },
          fail,
        );
      });
    },
  };
}

/** One request as the stand-in server saw it. */
export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** What the stand-in server answers: status, headers and a raw body. */
export interface CannedAnswer {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly body?: string;
}

export interface StandIn {
  readonly url: string;
  readonly seen: SeenRequest[];
  /** Answer the next requests with `answers` in turn (the last one repeats). */
  answer(...answers: CannedAnswer[]): void;
  close(): Promise<void>;
}

/** An HTTP server on a free loopback port that records requests and answers as told. */
export async function standIn(): Promise<StandIn> {
  const seen: SeenRequest[] = [];
  let answers: CannedAnswer[] = [{ status: 500, body: '' }];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const a = answers.length > 1 ? answers.shift()! : answers[0]!;
      res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers });
      res.end(a.body ?? '');
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    answer: (...next) => {
      answers = next;
    },
    close: () => new Promise<void>((done) => server.close(() => done())),
  };
}

/** An Airlock error body. */
export function errorBody(code: string, message: string, details?: Record<string, unknown>): string {
  return JSON.stringify({ error: details === undefined ? { code, message } : { code, message, details } });
}

export function expectOk(r: RunResult, what: string): void {
  expect(r.code, `${what}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);
}

/** `airlock account setup` through pipes: token, password twice, then the code for the printed secret. */
export async function setupAccount(args: { username: string; setupToken: string; password: string; env: Record<string, string> }): Promise<{ result: RunResult; totp: Authenticator }> {
  const talk = converse(['account', 'setup', '--username', args.username, '--json'], { env: args.env });
  talk.line(args.setupToken);
  talk.line(args.password);
  talk.line(args.password);
  const secret = (await talk.stderrMatch(/^secret: ([A-Z2-7]+=*)$/m))[1]!;
  const totp = Authenticator.fromBase32(secret);
  talk.line(await totp.code());
  talk.end();
  return { result: await talk.result, totp };
}

