/**
 * Secret masking in step output: the leak tried in each of its known forms (plain, split across
 * chunks, base64 at every alignment, hex, URL, JSON, PEM lines) and refused, with the bytes
 * around each mask kept exact. The base64 alignment cases reproduce actions/runner#2232/#2265.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors/index.js';
import { MASK, SecretMasker, maskingOutput } from '../../src/runner/index.js';

const SECRET = 'sk_live_9fQ2xZ7pL0aW4vB8';

/** Feed `chunks` through a fresh masker and return everything it emitted, flush included. */
function run(secrets: readonly (string | Buffer)[], chunks: readonly (string | Buffer)[], opts?: { minLength?: number }): Buffer {
  const masker = new SecretMasker(secrets, opts);
  const out = chunks.map((c) => masker.push(typeof c === 'string' ? Buffer.from(c, 'utf8') : c));
  out.push(masker.flush());
  return Buffer.concat(out);
}

const mask = (secrets: readonly (string | Buffer)[], text: string | Buffer): string => run(secrets, [text]).toString('utf8');

/** Split `data` into pieces of `size` bytes. */
function pieces(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

/** A fixed pseudo-random byte string (xorshift): reproducible binary filler. */
function bytes(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

describe('plain values', () => {
  it('masks a value in the middle, at the start, at the end, and alone', () => {
    expect(mask([SECRET], `token: ${SECRET}\n`)).toBe('token: ***\n');
    expect(mask([SECRET], `${SECRET} is set`)).toBe('*** is set');
    expect(mask([SECRET], `set to ${SECRET}`)).toBe('set to ***');
    expect(mask([SECRET], SECRET)).toBe(MASK);
  });

  it('masks every occurrence, and adjacent occurrences as one run', () => {
    expect(mask([SECRET], `${SECRET} and ${SECRET}, ${SECRET}.`)).toBe('*** and ***, ***.');
    expect(mask([SECRET], `[${SECRET}${SECRET}]`)).toBe('[***]');
  });

  it('leaves output without secrets byte-identical', () => {
    const text = 'compiling 42 modules\nsk_live_ is a prefix only\n';
    expect(mask([SECRET], text)).toBe(text);
  });

  it('returns fresh mask bytes: a caller writing to its output cannot change later masks', () => {
    const masker = new SecretMasker([SECRET]);
    masker.push(Buffer.from(SECRET)).fill(0x41);
    expect(Buffer.concat([masker.push(Buffer.from(` ${SECRET}`)), masker.flush()]).toString()).toBe(' ***');
  });

  it('masks every secret given, as strings or Buffers', () => {
    expect(mask([SECRET, Buffer.from('db-password-77')], `a=${SECRET} b=db-password-77`)).toBe('a=*** b=***');
  });
});

describe('chunk boundaries', () => {
  const text = Buffer.from(`before ${SECRET} between ${SECRET} after`);
  const expected = 'before *** between *** after';

  it('masks a value split at every possible point', () => {
    for (let i = 0; i <= text.length; i++) {
      expect(run([SECRET], [text.subarray(0, i), text.subarray(i)]).toString(), `split at ${i}`).toBe(expected);
    }
  });

  it('masks a value split into three chunks at every pair of points', () => {
    const part = Buffer.from(`x${SECRET}y`);
    for (let i = 0; i <= part.length; i++) {
      for (let j = i; j <= part.length; j++) {
        expect(run([SECRET], [part.subarray(0, i), part.subarray(i, j), part.subarray(j)]).toString(), `split at ${i},${j}`).toBe('x***y');
      }
    }
  });

  it('masks values fed one byte at a time', () => {
    expect(run([SECRET], pieces(text, 1)).toString()).toBe(expected);
  });

  it('emits everything that cannot begin a secret at once, and a finished match immediately', () => {
    const masker = new SecretMasker([SECRET]);
    expect(masker.push(Buffer.from(`${'x'.repeat(100)}${SECRET.slice(0, -1)}`)).toString()).toBe('x'.repeat(100));
    expect(masker.push(Buffer.from(SECRET.slice(-1))).toString()).toBe(MASK);
    expect(masker.push(Buffer.from(' done\n')).toString()).toBe(' done\n');
    expect(masker.flush().length).toBe(0);
  });

  it('releases a held prefix that turned out not to be a secret, unchanged', () => {
    const masker = new SecretMasker([SECRET]);
    expect(masker.push(Buffer.from('key sk_live_9f')).toString()).toBe('key ');
    expect(masker.push(Buffer.from('XX')).toString()).toBe('sk_live_9fXX');
    expect(masker.push(Buffer.from('sk_live')).toString()).toBe('');
    expect(masker.flush().toString()).toBe('sk_live');
  });

  it('never holds back more than the longest pattern minus one byte', () => {
    // The longest pattern for an ASCII secret is its hex form (2 bytes per byte).
    const masker = new SecretMasker([SECRET]);
    const hexPrefix = Buffer.from(SECRET).toString('hex').slice(0, -1);
    expect(masker.push(Buffer.from(`log ${hexPrefix}`)).toString()).toBe('log ');
    expect(masker.push(Buffer.from('0')).toString()).toBe(`${hexPrefix}0`);
  });

  it('keeps held bytes intact when the caller reuses a chunk buffer after push', () => {
    const masker = new SecretMasker([SECRET]);
    const buf = Buffer.from(`a ${SECRET.slice(0, 10)}`);
    const first = Buffer.from(masker.push(buf));
    buf.fill(0x78); // a pooled buffer overwritten by the next read
    expect(Buffer.concat([first, masker.push(Buffer.from('ZZ')), masker.flush()]).toString()).toBe(`a ${SECRET.slice(0, 10)}ZZ`);
  });

  it('starts a new stream after flush', () => {
    const masker = new SecretMasker([SECRET]);
    masker.push(Buffer.from(SECRET.slice(0, 5)));
    expect(masker.flush().toString()).toBe(SECRET.slice(0, 5));
    expect(masker.push(Buffer.from(SECRET.slice(5))).toString()).toBe(SECRET.slice(5));
    expect(Buffer.concat([masker.push(Buffer.from(` ${SECRET}`)), masker.flush()]).toString()).toBe(' ***');
  });
});

describe('encoded forms', () => {
  // '>' and '?' make '+' and '/' in base64, so base64 and base64url differ; 'é' is non-ASCII.
  const secret = 'k3y>?>?~é-Zq9!';
  const raw = Buffer.from(secret);

  for (const encoding of ['base64', 'base64url'] as const) {
    it(`masks ${encoding}(prefix + secret + suffix) for every alignment of the prefix`, () => {
      expect(/[+/]/.test(raw.toString('base64'))).toBe(true);
      for (let p = 0; p <= 5; p++) {
        for (let q = 0; q <= 3; q++) {
          const doc = Buffer.concat([bytes(p, 7 + p), raw, bytes(q, 99 + q)]).toString(encoding);
          // Chars fully determined by the secret's bits are masked; the (at most one) char
          // shared with a neighbouring byte at each end cannot be, and reveals under 6 bits.
          const from = Math.ceil((8 * p) / 6);
          const to = Math.floor((8 * (p + raw.length)) / 6);
          expect(mask([secret], `data: ${doc}\n`), `prefix ${p}, suffix ${q}`).toBe(`data: ${doc.slice(0, from)}***${doc.slice(to)}\n`);
        }
      }
    });
  }

  it('masks base64 that does not contain base64(secret) (the actions/runner#2232 leak)', () => {
    const doc = Buffer.concat([Buffer.from('x'), raw]).toString('base64');
    expect(doc.includes(raw.toString('base64').slice(0, 8))).toBe(false);
    expect(mask([secret], doc)).toBe(`${doc.slice(0, 2)}***${doc.slice(Math.floor((8 * (1 + raw.length)) / 6))}`);
  });

  it('masks hex in lower and upper case, inside a longer hex dump', () => {
    const pre = bytes(5, 3).toString('hex');
    const post = bytes(4, 5).toString('hex');
    expect(mask([secret], `${pre}${raw.toString('hex')}${post}`)).toBe(`${pre}***${post}`);
    expect(mask([secret], `${pre}${raw.toString('hex')}${post}`.toUpperCase())).toBe(`${pre.toUpperCase()}***${post.toUpperCase()}`);
  });

  const urlSecret = 'p@ss w/rd+&=é!(x)~*';
  it('masks encodeURIComponent and encodeURI forms', () => {
    expect(mask([urlSecret], `GET /login?user=a&pw=${encodeURIComponent(urlSecret)}&next=%2F`)).toBe('GET /login?user=a&pw=***&next=%2F');
    expect(mask([urlSecret], `GET ${encodeURI(`/x/${urlSecret}`)}`)).toBe('GET /x/***');
  });

  it('masks form encoding (+ for spaces) and lower-case percent escapes', () => {
    const form = new URLSearchParams({ user: 'a', pw: urlSecret }).toString();
    expect(form).toContain('+');
    expect(mask([urlSecret], form)).toBe('user=a&pw=***');
    const lower = encodeURIComponent(urlSecret).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());
    expect(mask([urlSecret], `pw=${lower}`)).toBe('pw=***');
  });

  const jsonSecret = 'he said "hi" \\ C:\\dir\n\ttab\u0001ctl/é<&>';
  it('masks JSON.stringify output: quotes, backslashes, \\n, \\t and \\u00xx escapes', () => {
    const doc = JSON.stringify({ token: jsonSecret, n: 1 });
    expect(doc).toContain('\\u0001');
    expect(mask([jsonSecret], doc)).toBe('{"token":"***","n":1}');
    expect(mask([jsonSecret], JSON.stringify({ token: jsonSecret }, null, 2))).toBe('{\n  "token": "***"\n}');
  });

  it('masks other encoders’ JSON: ensure_ascii, \\/ , \\u000a for controls, Go HTML escapes, upper-case hex', () => {
    const base = JSON.stringify(jsonSecret).slice(1, -1);
    const variants = [
      base.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`), // Python json.dumps
      base.replaceAll('/', '\\/'), // PHP json_encode
      base.replaceAll('\\n', '\\u000a').replaceAll('\\t', '\\u0009'),
      base.replaceAll('<', '\\u003c').replaceAll('>', '\\u003e').replaceAll('&', '\\u0026'), // Go encoding/json
      base.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()}`), // Jackson ESCAPE_NON_ASCII
    ];
    for (const v of variants) expect(mask([jsonSecret], `{"token":"${v}"}`), v).toBe('{"token":"***"}');
  });
});

describe('multi-line values (PEM private key)', () => {
  const pem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const body = pem.split('\n').filter((l) => l.length > 0 && !l.startsWith('-----'));
  const leaksNoLine = (out: string): void => {
    for (const line of body) expect(out.includes(line.slice(0, 32))).toBe(false);
  };

  it('masks the key printed whole', () => {
    const out = mask([pem], `key:\n${pem}done\n`);
    expect(out).toBe('key:\n***done\n');
  });

  it('masks one line of it printed alone', () => {
    const line = body[7]!;
    expect(mask([pem], `line 8 is ${line} (debug)\n`)).toBe('line 8 is *** (debug)\n');
    expect(mask([pem], body[0]!)).toBe(MASK);
  });

  it('masks it printed with CRLF line endings, and a CRLF secret printed with LF', () => {
    expect(mask([pem], `key:\r\n${pem.replaceAll('\n', '\r\n')}`)).toBe('key:\r\n***');
    expect(mask([pem.replaceAll('\n', '\r\n')], `key:\n${pem}`)).toBe('key:\n***');
  });

  it('masks every body line when the key is re-indented (YAML), keeping only the public armor', () => {
    const yaml = `key: |\n${pem
      .trimEnd()
      .split('\n')
      .map((l) => `  ${l}`)
      .join('\n')}\n`;
    const out = mask([pem], yaml);
    leaksNoLine(out);
    expect(out).toContain('-----BEGIN PRIVATE KEY-----');
    expect(out.match(/\*\*\*/g)?.length).toBe(body.length);
  });

  it('masks it JSON-escaped (a service-account file) and base64-encoded (a Kubernetes secret)', () => {
    const sa = JSON.stringify({ type: 'service_account', private_key: pem, client_email: 'ci@example.iam' });
    expect(mask([pem], sa)).toBe('{"type":"service_account","private_key":"***","client_email":"ci@example.iam"}');
    const b64 = Buffer.from(`x${pem}`).toString('base64');
    const out = mask([pem], `data: ${b64}`);
    expect(out).toMatch(/^data: [A-Za-z0-9+/]{2}\*\*\*[A-Za-z0-9+/=]{0,4}$/);
  });

  it('masks the key split into small chunks', () => {
    const out = run([pem], pieces(Buffer.from(`key:\n${pem}done\n`), 13)).toString();
    expect(out).toBe('key:\n***done\n');
  });

  it('does not mask the PEM armor lines on their own (they are the same in every key)', () => {
    expect(mask([pem], '-----BEGIN PRIVATE KEY-----\n')).toBe('-----BEGIN PRIVATE KEY-----\n');
  });
});

describe('binary output', () => {
  it('keeps every byte around a secret exact, including invalid UTF-8 next to it', () => {
    const pre = Buffer.concat([bytes(300, 11), Buffer.from([0xe2, 0x82])]); // truncated UTF-8 sequence
    const post = Buffer.concat([Buffer.from([0x80, 0xff, 0x00]), bytes(300, 13)]);
    const input = Buffer.concat([pre, Buffer.from(SECRET), post]);
    const expected = Buffer.concat([pre, Buffer.from(MASK), post]);
    for (const size of [1, 7, 64, input.length]) expect(run([SECRET], pieces(input, size)).equals(expected), `chunks of ${size}`).toBe(true);
  });

  it('masks a secret that is itself not UTF-8, and its hex form', () => {
    const secret = Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0xc3]);
    const input = Buffer.concat([Buffer.from([1, 2]), secret, Buffer.from(` hex=${secret.toString('hex')}`)]);
    expect(run([secret], [input]).equals(Buffer.concat([Buffer.from([1, 2]), Buffer.from('*** hex=***')]))).toBe(true);
  });
});

describe('overlaps', () => {
  it('masks a secret that is a substring of another secret, either order', () => {
    const text = 'a hunter2hunter2! b hunter2 c';
    expect(mask(['hunter2hunter2!', 'hunter2'], text)).toBe('a *** b *** c');
    expect(mask(['hunter2', 'hunter2hunter2!'], text)).toBe('a *** b *** c');
  });

  it('masks the union of overlapping occurrences of one secret', () => {
    expect(mask(['abab'], 'xxababab yy abab')).toBe('xx*** yy ***');
  });

  it('masks the union of two different secrets that overlap', () => {
    expect(mask(['tok3n-AB', 'AB-x9z'], '[tok3n-AB-x9z]')).toBe('[***]');
    expect(run(['tok3n-AB', 'AB-x9z'], pieces(Buffer.from('[tok3n-AB-x9z]'), 1)).toString()).toBe('[***]');
  });

  it('extends a run already emitted when a later match starts inside it', () => {
    // 'ab12' is emitted as *** before '12cd34', which starts inside it, is complete.
    const masker = new SecretMasker(['ab12', '12cd34']);
    expect(masker.push(Buffer.from('x ab12')).toString()).toBe('x ***');
    expect(masker.push(Buffer.from('cd34 y')).toString()).toBe(' y');
    expect(masker.flush().length).toBe(0);
  });
});

describe('short values and empty lists', () => {
  it('does not mask values shorter than minLength (default 4): they would blank unrelated output', () => {
    const masker = new SecretMasker(['abc', '']);
    expect(masker.patterns).toBe(0);
    expect(mask(['abc'], 'abc abcd')).toBe('abc abcd');
    expect(mask(['abc', 'abcd'], 'abc abcd')).toBe('abc ***');
  });

  it('masks shorter values when minLength is lowered, and refuses a nonsense minLength', () => {
    expect(run(['ab'], ['x ab y'], { minLength: 2 }).toString()).toBe('x *** y');
    expect(() => new SecretMasker(['abcd'], { minLength: 0 })).toThrow(ValidationError);
  });

  it('does not mask short lines of a multi-line value', () => {
    expect(mask(['first-line\nab\nthird-line\n'], 'ab first-line')).toBe('ab ***');
  });

  it('passes output through unchanged with no secrets', () => {
    const masker = new SecretMasker([]);
    const chunk = bytes(1000, 5);
    expect(masker.push(chunk).equals(chunk)).toBe(true);
    expect(masker.flush().length).toBe(0);
    expect(masker.patterns).toBe(0);
  });

  it('counts distinct patterns (value, hex, base64 alignments...)', () => {
    expect(new SecretMasker([SECRET]).patterns).toBeGreaterThanOrEqual(6);
    expect(new SecretMasker([SECRET, SECRET]).patterns).toBe(new SecretMasker([SECRET]).patterns);
  });
});

describe('properties', () => {
  // Secrets from letters and digits, filler from bytes no pattern can contain (controls and
  // >= 0x80): every match lies inside an inserted secret, so the exact output is known.
  const secretArb = fc.string({ unit: fc.constantFrom(...Array.from('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789')), minLength: 4, maxLength: 40 });
  const fillerArb = fc.uint8Array({ maxLength: 60 }).map((a) => Buffer.from(a.map((b) => (b < 0x80 ? b & 0x1f : b))));

  /** Split `data` at the given cut points. */
  const cutAt = (data: Buffer, cuts: readonly number[]): Buffer[] => {
    const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
    const out: Buffer[] = [];
    let prev = 0;
    for (const p of points) {
      out.push(data.subarray(prev, p));
      prev = p;
    }
    out.push(data.subarray(prev));
    return out;
  };

  it('never lets the secret through and keeps every other byte in order, under any chunking', () => {
    fc.assert(
      fc.property(secretArb, fc.array(fillerArb, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 20 }), (secret, fillers, cuts) => {
        const input = Buffer.concat(fillers.flatMap((f, i) => (i === 0 ? [f] : [Buffer.from(secret), f])));
        // Expected: each secret becomes ***, adjacent ones (empty filler between) one ***.
        const expected: Buffer[] = [];
        fillers.forEach((f, i) => {
          if (i > 0 && (i === 1 || (fillers[i - 1]?.length ?? 0) > 0)) expected.push(Buffer.from(MASK));
          expected.push(f);
        });
        const out = run([secret], cutAt(input, cuts));
        expect(out.includes(secret)).toBe(false);
        expect(out.equals(Buffer.concat(expected))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('gives the same output for any chunking of any bytes, and never contains a secret', () => {
    const alphabet = fc.constantFrom(...'ab12=+/%\\"\n\r-_ ~'.split('').map((c) => c.charCodeAt(0)), 0x00, 0xc3, 0xff);
    fc.assert(
      fc.property(
        fc.array(fc.string({ unit: fc.constantFrom(...Array.from('ab12=+/%\\"\n-_ ')), minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 3 }),
        fc.array(alphabet, { maxLength: 200 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (secrets, data, cuts) => {
          // Splice secrets in at a few places so matches (and overlaps) actually happen.
          const text = Buffer.from(data);
          const parts: Buffer[] = [];
          let prev = 0;
          cuts.slice(0, 4).forEach((c, i) => {
            const at = c % (text.length + 1);
            if (at < prev) return;
            parts.push(text.subarray(prev, at), Buffer.from(secrets[i % secrets.length] ?? ''));
            prev = at;
          });
          parts.push(text.subarray(prev));
          const input = Buffer.concat(parts);
          const whole = run(secrets, [input], { minLength: 1 });
          expect(run(secrets, cutAt(input, cuts), { minLength: 1 }).equals(whole)).toBe(true);
          for (const s of secrets) if (!s.includes('*')) expect(whole.includes(Buffer.from(s))).toBe(false);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('maskingOutput', () => {
  it('masks stdout and stderr separately, each split across chunks, and flushes both tails', () => {
    const seen: { stream: 'stdout' | 'stderr'; text: string }[] = [];
    const masked = maskingOutput([SECRET], (stream, chunk) => seen.push({ stream, text: chunk.toString() }));
    masked.onOutput('stdout', Buffer.from(`out ${SECRET.slice(0, 6)}`));
    masked.onOutput('stderr', Buffer.from(`err ${SECRET.slice(0, 3)}`));
    masked.onOutput('stdout', Buffer.from(SECRET.slice(6)));
    masked.onOutput('stderr', Buffer.from(`${SECRET.slice(3)} end`));
    masked.onOutput('stdout', Buffer.from(` tail ${SECRET.slice(0, 4)}`));
    masked.flush();
    const joined = (s: 'stdout' | 'stderr'): string =>
      seen
        .filter((e) => e.stream === s)
        .map((e) => e.text)
        .join('');
    expect(joined('stdout')).toBe(`out *** tail ${SECRET.slice(0, 4)}`);
    expect(joined('stderr')).toBe('err *** end');
    expect(seen.every((e) => e.text.length > 0)).toBe(true);
  });

  it('masks a real process printing the secret plainly, in base64 and in hex', async () => {
    const chunks: Buffer[] = [];
    const masked = maskingOutput([SECRET], (_stream, chunk) => chunks.push(chunk));
    const child = spawn('/bin/sh', ['-c', 'printf "%s\\n" "$S"; printf "x%s" "$S" | base64; printf "%s" "$S" | od -An -tx1 | tr -d " \\n"; echo; printf "%s" "$S" >&2'], {
      env: { S: SECRET, PATH: '/usr/bin:/bin' },
    });
    child.stdout.on('data', (c: Buffer) => masked.onOutput('stdout', c));
    child.stderr.on('data', (c: Buffer) => masked.onOutput('stderr', c));
    await new Promise((resolve) => child.on('close', resolve));
    masked.flush();
    const out = Buffer.concat(chunks).toString();
    expect(out).not.toContain(SECRET);
    expect(out).not.toContain(Buffer.from(SECRET).toString('hex'));
    expect(out.split('***').length - 1).toBe(4);
  });
});

describe('throughput', () => {
  it('masks 20 MB of log output with 10 secrets in well under the budget', () => {
    const secrets = Array.from({ length: 10 }, (_, i) => bytes(24, 100 + i).toString('base64url'));
    const lines: string[] = [];
    let size = 0;
    let planted = 0;
    for (let k = 0; size < 20 * 1024 * 1024; k++) {
      const secret = k % 1000 === 0 ? secrets[planted++ % 10] : '';
      const line = `2025-01-01T00:00:00Z [info] step ${k}: sha256:${bytes(8, k + 1).toString('hex')} /usr/lib/x+y=z ${secret ?? ''}\n`;
      lines.push(line);
      size += line.length;
    }
    const input = Buffer.from(lines.join(''));
    const masker = new SecretMasker(secrets);
    const t0 = performance.now();
    const out: Buffer[] = [];
    for (let i = 0; i < input.length; i += 65536) out.push(masker.push(input.subarray(i, i + 65536)));
    out.push(masker.flush());
    const seconds = (performance.now() - t0) / 1000;
    const result = Buffer.concat(out).toString();
    expect(result.split('***').length - 1).toBe(planted);
    // 200 MB must take a few seconds at most: 20 MB in 1.5 s is >= 13 MB/s even on a busy CI box.
    expect(seconds).toBeLessThan(1.5);
  });
});
