/**
 * securesystemslib canonical JSON (the "OLPC" dialect in-toto v0.9 signs): keys sorted by code
 * point, no whitespace, strings escape only `\` and `"`, integers only. This is NOT RFC 8785:
 * JCS escapes control characters and writes floats, so the two disagree on the same object and a
 * signature over one does not verify over the other. Mirrors `securesystemslib.formats.
 * encode_canonical`; anything it would encode differently (floats, undefined, lone surrogates)
 * is refused rather than guessed at.
 */

/** The value cannot be encoded; `path` names where (`$.signed.steps[0]`). */
export class CanonicalJsonError extends TypeError {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`cannot encode ${path} as canonical JSON: ${reason}`);
    this.name = 'CanonicalJsonError';
  }
}

// Python encodes the result as UTF-8, which fails on a lone surrogate; Node would silently write U+FFFD.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function encodeString(value: string, path: string): string {
  if (LONE_SURROGATE.test(value)) throw new CanonicalJsonError(path, 'the string holds a lone UTF-16 surrogate');
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** Python sorts str keys by code point; JS sorts by UTF-16 unit, which differs above U+FFFF. */
function byCodePoint(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done === true) return y.done === true ? 0 : -1;
    if (y.done === true) return 1;
    const cx = x.value.codePointAt(0) ?? 0;
    const cy = y.value.codePointAt(0) ?? 0;
    if (cx !== cy) return cx - cy;
  }
}

function encode(value: unknown, path: string, out: string[]): void {
  if (value === null) {
    out.push('null');
  } else if (value === true || value === false) {
    out.push(value ? 'true' : 'false');
  } else if (typeof value === 'string') {
    out.push(encodeString(value, path));
  } else if (typeof value === 'number') {
    // Beyond 2^53 a JS number is not the integer the caller meant: refuse instead of rounding.
    if (!Number.isSafeInteger(value)) throw new CanonicalJsonError(path, `${value} is not an integer in the safe range (floats are not allowed)`);
    out.push(String(value));
  } else if (typeof value === 'bigint') {
    out.push(value.toString());
  } else if (Array.isArray(value)) {
    out.push('[');
    for (let i = 0; i < value.length; i++) {
      if (!(i in value)) throw new CanonicalJsonError(`${path}[${i}]`, 'the array has a hole');
      if (i > 0) out.push(',');
      encode(value[i], `${path}[${i}]`, out);
    }
    out.push(']');
  } else if (typeof value === 'object' && (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null)) {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => byCodePoint(a, b));
    out.push('{');
    entries.forEach(([key, v], i) => {
      if (i > 0) out.push(',');
      out.push(encodeString(key, `${path}.${key}`), ':');
      encode(v, `${path}.${key}`, out);
    });
    out.push('}');
  } else {
    const kind = value === undefined ? 'undefined' : typeof value === 'object' ? Object.prototype.toString.call(value).slice(8, -1) : typeof value;
    throw new CanonicalJsonError(path, `${kind} is not a JSON value`);
  }
}

/**
 * The canonical JSON text of `value`.
 *
 * @example
 * encodeCanonical({ b: [1, true, null], a: 'x"y' }) // '{"a":"x\\"y","b":[1,true,null]}'
 */
export function encodeCanonical(value: unknown): string {
  const out: string[] = [];
  encode(value, '$', out);
  return out.join('');
}

/** The UTF-8 bytes in-toto signs: `encode_canonical(signed).encode("UTF-8")`. */
export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(encodeCanonical(value), 'utf8');
}
