/**
 * Secret masking for step output: every secret delivered to a step, and the encodings a step
 * is likely to print it in, is replaced by `***` in the streamed and stored logs.
 *
 * Threat: a step (or a tool it runs) prints a secret, on purpose or by accident, often encoded.
 * Known leaks elsewhere come from exactly the forms covered here: base64 of a secret with
 * different alignment (actions/runner#2232, #2265), URL- and JSON-escaped copies, and single
 * lines of a multi-line key. Matching runs on bytes, so binary and invalid UTF-8 output passes
 * through byte-exact outside the masked ranges.
 *
 * One Aho-Corasick automaton over bytes finds every pattern in a single pass; it keeps its
 * state across chunks and holds back only the bytes that could still begin a match, so a
 * secret split across chunk boundaries is still caught.
 */

import { ValidationError } from '../errors/index.js';

export const MASK = '***';
const DEFAULT_MIN_LENGTH = 4;

export interface SecretMaskerOptions {
  /**
   * Values (and lines of multi-line values) shorter than this many bytes are not masked
   * (default 4). Masking a 1-3 byte value would blank out unrelated output everywhere while
   * hiding almost nothing: such a value is guessable anyway.
   */
  readonly minLength?: number;
}

// --- Patterns -------------------------------------------------------------------------------

/** Base64 chars that depend only on the secret when it starts `k` bytes into a 3-byte group. */
const BASE64_SKIP = [0, 2, 3] as const;

function base64Forms(v: Buffer): string[] {
  const out: string[] = [];
  for (const k of [0, 1, 2] as const) {
    // base64(prefix + secret) contains base64(secret) only when prefix.length % 3 === 0:
    // encode with each alignment and keep the chars no neighbouring byte can change.
    const encoded = Buffer.concat([Buffer.alloc(k), v]).toString('base64');
    const stable = encoded.slice(BASE64_SKIP[k], Math.floor((8 * (k + v.length)) / 6));
    out.push(stable, stable.replaceAll('+', '-').replaceAll('/', '_'));
  }
  return out;
}

function unreservedSet(chars: string): Uint8Array {
  const set = new Uint8Array(256);
  for (let b = 0; b < 256; b++) {
    const c = String.fromCharCode(b);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || chars.includes(c)) set[b] = 1;
  }
  return set;
}

/** Characters left alone by common URL encoders; everything else is %XX of the UTF-8 bytes. */
const URL_ENCODERS: readonly { readonly safe: Uint8Array; readonly plus: boolean }[] = [
  { safe: unreservedSet("-_.!~*'()"), plus: false }, // encodeURIComponent
  { safe: unreservedSet("-_.!~*'();,/?:@&=+$#"), plus: false }, // encodeURI
  { safe: unreservedSet('-._~'), plus: false }, // RFC 3986 unreserved (Python quote, Go PathEscape)
  { safe: unreservedSet('*-._'), plus: true }, // WHATWG form encoding (URLSearchParams)
  { safe: unreservedSet('-._~'), plus: true }, // Python quote_plus, Go QueryEscape
];

function urlForms(v: Buffer): string[] {
  const out: string[] = [];
  for (const { safe, plus } of URL_ENCODERS) {
    for (const upper of [true, false]) {
      let s = '';
      for (const b of v) {
        if (safe[b] === 1) s += String.fromCharCode(b);
        else if (plus && b === 0x20) s += '+';
        else {
          const hex = b.toString(16).padStart(2, '0');
          s += `%${upper ? hex.toUpperCase() : hex}`;
        }
      }
      out.push(s);
    }
  }
  return out;
}

interface JsonStyle {
  /** `\n`-style escapes where JSON has one, or `\u000a` for every control character. */
  readonly shortControls: boolean;
  /** Non-ASCII as `\uXXXX` (Python's ensure_ascii) rather than raw UTF-8. */
  readonly asciiOnly: boolean;
  /** `/` as `\/` (PHP json_encode). */
  readonly slash: boolean;
  /** `<`, `>`, `&`, U+2028, U+2029 as `\u003c`... (Go encoding/json). */
  readonly html: boolean;
  readonly upperHex: boolean;
}

const SHORT_ESCAPES: Readonly<Record<number, string>> = { 0x08: '\\b', 0x09: '\\t', 0x0a: '\\n', 0x0c: '\\f', 0x0d: '\\r' };
const HTML_CHARS = new Set([0x3c, 0x3e, 0x26, 0x2028, 0x2029]);

function jsonEscape(s: string, style: JsonStyle): string {
  const u = (c: number): string => {
    const hex = c.toString(16).padStart(4, '0');
    return `\\u${style.upperHex ? hex.toUpperCase() : hex}`;
  };
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += '\\\\';
    else if (c === 0x2f && style.slash) out += '\\/';
    else if (c < 0x20) out += (style.shortControls ? SHORT_ESCAPES[c] : undefined) ?? u(c);
    else if (style.html && HTML_CHARS.has(c)) out += u(c);
    else if (c > 0x7e && style.asciiOnly) out += u(c);
    else out += s.charAt(i);
  }
  return out;
}

function jsonForms(v: Buffer): string[] {
  const text = v.toString('utf8');
  // A value that is not UTF-8 has no single JSON form: a step's JSON encoder would have to
  // replace or reinterpret its bytes first.
  if (!Buffer.from(text, 'utf8').equals(v)) return [];
  const out: string[] = [];
  for (let bits = 0; bits < 32; bits++) {
    const style: JsonStyle = { shortControls: (bits & 1) === 0, asciiOnly: (bits & 2) !== 0, slash: (bits & 4) !== 0, html: (bits & 8) !== 0, upperHex: (bits & 16) !== 0 };
    out.push(jsonEscape(text, style));
  }
  return out;
}

function isSpace(b: number | undefined): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0d || b === 0x0a;
}

function trim(v: Buffer): Buffer {
  let start = 0;
  let end = v.length;
  while (start < end && isSpace(v[start])) start++;
  while (end > start && isSpace(v[end - 1])) end--;
  return v.subarray(start, end);
}

/** PEM armor lines are the same in every key: masking them would hide nothing. */
const PEM_ARMOR = /^-----(BEGIN|END) [A-Z0-9 ]+-----$/;

/** The forms of one value that are masked: the value as printed, and each line of it. */
function valueForms(secret: Buffer, minLength: number): Buffer[] {
  const forms: Buffer[] = [secret, trim(secret)];
  if (secret.includes(0x0a)) {
    // The same text with the other line ending, so the whole is masked either way.
    const text = secret.toString('latin1');
    forms.push(Buffer.from(text.replaceAll('\r\n', '\n'), 'latin1'), Buffer.from(text.replaceAll('\r\n', '\n').replaceAll('\n', '\r\n'), 'latin1'));
    let start = 0;
    while (start <= secret.length) {
      let end = secret.indexOf(0x0a, start);
      if (end === -1) end = secret.length;
      const line = trim(secret.subarray(start, end));
      if (!PEM_ARMOR.test(line.toString('latin1'))) forms.push(line);
      start = end + 1;
    }
  }
  return forms.filter((f) => f.length >= minLength);
}

/** Every byte pattern masked for these secrets, deduplicated. */
function patternsOf(secrets: readonly (string | Buffer)[], minLength: number): Buffer[] {
  const seen = new Set<string>();
  for (const secret of secrets) {
    const bytes = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.from(secret);
    if (bytes.length < minLength) continue;
    for (const form of valueForms(bytes, minLength)) {
      seen.add(form.toString('latin1'));
      const hex = form.toString('hex');
      for (const p of [hex, hex.toUpperCase(), ...base64Forms(form), ...urlForms(form)]) seen.add(p);
      for (const p of jsonForms(form)) seen.add(Buffer.from(p, 'utf8').toString('latin1'));
    }
  }
  // An encoded form can be shorter than the value (base64 drops partial chars): the same
  // floor applies, or a 2-char fragment would mask unrelated output.
  return [...seen].filter((p) => p.length >= minLength).map((p) => Buffer.from(p, 'latin1'));
}

// --- Automaton ------------------------------------------------------------------------------

/** Nodes this close to the root get a full transition row: scanning spends its time there. */
const DENSE_DEPTH = 2;

/**
 * Aho-Corasick over bytes. Nodes near the root, and nodes with several children, get a full
 * 256-entry transition row; the rest (almost all of a long pattern's chain) store their one
 * edge and a failure link, so memory stays linear in the total pattern length while the
 * states where scanning spends its time cost one table lookup per byte.
 */
class Automaton {
  /** Row offset into `rows` for nodes with a dense row, else -1. */
  private readonly rowAt: Int32Array;
  private readonly rows: Int32Array;
  private readonly edgeByte: Int16Array;
  private readonly edgeTo: Int32Array;
  private readonly fail: Int32Array;
  /** Length of the longest pattern ending at this node (itself or through its fail chain). */
  private readonly matchLen: Int32Array;
  /**
   * How many trailing bytes may still begin a match: the depth of the longest suffix that is
   * a pattern prefix with a continuation (a finished match needs no more input).
   */
  readonly holdBack: Int32Array;

  constructor(patterns: readonly Buffer[]) {
    // Build the trie with sibling lists; root children are dense from the start.
    const firstChild: number[] = [-1];
    const nextSibling: number[] = [-1];
    const label: number[] = [-1];
    const depth: number[] = [0];
    const terminal: number[] = [0];
    const root = new Int32Array(256).fill(-1);
    for (const p of patterns) {
      let node = 0;
      for (const b of p) {
        let child = (node === 0 ? root[b] : firstChild[node]) ?? -1;
        if (node !== 0) while (child !== -1 && label[child] !== b) child = nextSibling[child] ?? -1;
        if (child === -1) {
          child = label.length;
          label.push(b);
          firstChild.push(-1);
          depth.push((depth[node] ?? 0) + 1);
          terminal.push(0);
          if (node === 0) {
            nextSibling.push(-1);
            root[b] = child;
          } else {
            nextSibling.push(firstChild[node] ?? -1);
            firstChild[node] = child;
          }
        }
        node = child;
      }
      terminal[node] = p.length;
    }
    const n = label.length;
    const children = (node: number): number[] => {
      const out: number[] = [];
      if (node === 0) {
        for (const c of root) if (c !== -1) out.push(c);
      } else {
        for (let c = firstChild[node] ?? -1; c !== -1; c = nextSibling[c] ?? -1) out.push(c);
      }
      return out;
    };
    this.edgeByte = new Int16Array(n).fill(-1);
    this.edgeTo = new Int32Array(n).fill(-1);
    this.rowAt = new Int32Array(n).fill(-1);
    let rowCount = 0;
    const kids: number[][] = [];
    for (let node = 0; node < n; node++) {
      const cs = children(node);
      kids.push(cs);
      if ((depth[node] ?? 0) <= DENSE_DEPTH || cs.length > 1) this.rowAt[node] = 256 * rowCount++;
    }
    this.rows = new Int32Array(256 * rowCount).fill(-1);
    for (let node = 0; node < n; node++) {
      const row = this.rowAt[node] ?? -1;
      for (const c of kids[node] ?? []) {
        const b = label[c] ?? 0;
        if (row >= 0) this.rows[row + b] = c;
        else {
          this.edgeByte[node] = b;
          this.edgeTo[node] = c;
        }
      }
    }
    // Breadth first (a fail target is always shallower, so already complete): failure links,
    // match lengths, and every row completed into a full transition table.
    this.fail = new Int32Array(n);
    this.matchLen = new Int32Array(n);
    this.holdBack = new Int32Array(n);
    const queue = [0];
    for (let head = 0; head < queue.length; head++) {
      const node = queue[head] ?? 0;
      const own = terminal[node] ?? 0;
      this.matchLen[node] = own > 0 ? own : node === 0 ? 0 : (this.matchLen[this.fail[node] ?? 0] ?? 0);
      this.holdBack[node] = (kids[node] ?? []).length > 0 ? (depth[node] ?? 0) : (this.holdBack[this.fail[node] ?? 0] ?? 0);
      const row = this.rowAt[node] ?? -1;
      if (row >= 0) {
        for (let b = 0; b < 256; b++) {
          if (this.rows[row + b] === -1) this.rows[row + b] = node === 0 ? 0 : this.next(this.fail[node] ?? 0, b);
        }
      }
      for (const c of kids[node] ?? []) {
        this.fail[c] = node === 0 ? 0 : this.next(this.fail[node] ?? 0, label[c] ?? 0);
        queue.push(c);
      }
    }
  }

  /** The state after reading byte `b` in state `s`. */
  next(s: number, b: number): number {
    for (;;) {
      const row = this.rowAt[s] ?? -1;
      if (row >= 0) return this.rows[row + b] ?? 0;
      if (this.edgeByte[s] === b) return this.edgeTo[s] ?? 0;
      s = this.fail[s] ?? 0;
    }
  }

  /**
   * Run `data[from..]` from state `s`, calling `onMatch(end, length)` for the longest match
   * ending at each position (shorter ones there lie inside it). Returns the final state.
   */
  scan(data: Buffer, from: number, s: number, onMatch: (end: number, length: number) => void): number {
    const { rows, rowAt, matchLen } = this;
    const n = data.length;
    let i = from;
    while (i < n) {
      if (s === 0) {
        // Fast path: most log bytes start no pattern.
        while (i < n && rows[data[i] ?? 0] === 0) i++;
        if (i === n) break;
      }
      const b = data[i++] ?? 0;
      const row = rowAt[s] ?? -1;
      s = row >= 0 ? (rows[row + b] ?? 0) : this.next(s, b);
      const len = matchLen[s] ?? 0;
      if (len !== 0) onMatch(i, len);
    }
    return s;
  }
}

// --- Streaming masker -----------------------------------------------------------------------

/**
 * Masks secrets in one output stream, chunk by chunk. Bytes come out in order, unchanged
 * except that each maximal run covered by matches becomes `***`.
 *
 * @example
 * const masker = new SecretMasker([token, pemKey]);
 * child.stdout.on('data', (c: Buffer) => out.write(masker.push(c)));
 * child.stdout.on('end', () => out.end(masker.flush()));
 */
export class SecretMasker {
  /** Number of distinct byte patterns searched for. */
  readonly patterns: number;
  private readonly ac: Automaton | null;
  private state = 0;
  /** Stream offset of the first byte not yet emitted. */
  private emitted = 0;
  /** Stream offset just past the last byte received. */
  private received = 0;
  /** Bytes [emitted, received), held back because they may begin a match. */
  private held: Buffer = Buffer.alloc(0);
  /** Matched ranges not yet emitted: sorted, disjoint and not touching. */
  private ranges: [start: number, end: number][] = [];
  /** Whether the last emitted byte was masked (a run continuing from it gets no second `***`). */
  private inMask = false;

  /** Compile the patterns for `secrets` (strings are taken as UTF-8). */
  constructor(secrets: readonly (string | Buffer)[], opts?: SecretMaskerOptions) {
    const minLength = opts?.minLength ?? DEFAULT_MIN_LENGTH;
    if (!Number.isInteger(minLength) || minLength < 1) {
      throw new ValidationError('minLength must be a positive integer', [{ path: 'minLength', message: 'must be a positive integer' }]);
    }
    const patterns = patternsOf(secrets, minLength);
    this.patterns = patterns.length;
    this.ac = patterns.length === 0 ? null : new Automaton(patterns);
  }

  /** Feed a chunk; returns the bytes safe to emit now. Holds back at most (longest pattern - 1) bytes so a secret split across chunks is still caught. */
  push(chunk: Buffer): Buffer {
    const ac = this.ac;
    if (ac === null) return chunk;
    const data = this.held.length === 0 ? chunk : Buffer.concat([this.held, chunk]);
    const base = this.emitted;
    const ranges = this.ranges;
    this.state = ac.scan(data, this.held.length, this.state, (end, length) => {
      let start = base + end - length;
      const stop = base + end;
      // Matches end in increasing order, so only the tail of `ranges` can merge.
      for (let last = ranges.at(-1); last !== undefined && start <= last[1]; last = ranges.at(-1)) {
        start = Math.min(start, last[0]);
        ranges.pop();
      }
      ranges.push([start, stop]);
    });
    this.received = base + data.length;
    // Only a suffix that is still a pattern prefix can begin a future match; it is shorter
    // than the longest pattern, so at most (longest - 1) bytes are held.
    return this.emit(data, base, this.received - (ac.holdBack[this.state] ?? 0));
  }

  /** End of stream: the held-back tail, masked. The masker then starts a new stream. */
  flush(): Buffer {
    if (this.ac === null) return Buffer.alloc(0);
    const out = this.emit(this.held, this.emitted, this.received);
    this.state = 0;
    this.emitted = 0;
    this.received = 0;
    this.held = Buffer.alloc(0);
    this.ranges = [];
    this.inMask = false;
    return out;
  }

  /** Emit stream bytes [emitted, safe) from `data` (which starts at stream offset `base`). */
  private emit(data: Buffer, base: number, safe: number): Buffer {
    const parts: Buffer[] = [];
    let pos = this.emitted;
    let done = 0;
    for (const [rangeStart, end] of this.ranges) {
      if (rangeStart >= safe) break;
      // A match may begin inside a masked run already emitted: it just extends that run.
      const start = Math.max(rangeStart, pos);
      if (start > pos) {
        parts.push(data.subarray(pos - base, start - base));
        this.inMask = false;
      }
      if (!this.inMask) parts.push(Buffer.from(MASK, 'latin1')); // fresh: callers may write to what we return
      this.inMask = true;
      pos = Math.max(pos, end);
      done++;
    }
    if (done > 0) this.ranges = this.ranges.slice(done);
    if (pos < safe) {
      parts.push(data.subarray(pos - base, safe - base));
      this.inMask = false;
      pos = safe;
    }
    this.emitted = pos;
    // Copy: the caller may reuse the chunk's memory once push returns.
    this.held = Buffer.from(data.subarray(pos - base));
    return parts.length === 1 && parts[0] !== undefined ? parts[0] : Buffer.concat(parts);
  }
}

/**
 * A masker per stream (stdout and stderr separately) wrapped around an onOutput callback.
 * Call `flush()` when the step has ended, before storing its logs.
 *
 * @example
 * const masked = maskingOutput(secretValues, deps.onOutput);
 * // ... run the step with masked.onOutput ...
 * masked.flush();
 */
export function maskingOutput(
  secrets: readonly (string | Buffer)[],
  onOutput: (stream: 'stdout' | 'stderr', chunk: Buffer) => void,
): { onOutput: (stream: 'stdout' | 'stderr', chunk: Buffer) => void; flush(): void } {
  const maskers = { stdout: new SecretMasker(secrets), stderr: new SecretMasker(secrets) };
  return {
    onOutput(stream, chunk) {
      const out = maskers[stream].push(chunk);
      if (out.length > 0) onOutput(stream, out);
    },
    flush() {
      for (const stream of ['stdout', 'stderr'] as const) {
        const out = maskers[stream].flush();
        if (out.length > 0) onOutput(stream, out);
      }
    },
  };
}
