/**
 * The credential scan of `airlock lint`: a pipeline file lives in the repository, so a secret
 * written into it is leaked to everyone who can read the repository and its history. Secrets
 * belong under `secrets:` (names only) and in Airlock's store.
 *
 * Two kinds of rule. Format rules (private key blocks, token formats with a recognisable
 * prefix) are precise and run over the whole text, comments included. Context rules
 * (`password=…` assignments, credentials in URLs, Authorization headers, secret-named env
 * variables, high-entropy strings) run only on `run` commands (and health-check commands) and
 * `env` values, where a literal secret would end up in a process's arguments or environment.
 *
 * Findings never carry the secret: messages show a redacted form (`ghp_…3f (40 chars)`).
 */
import { isMap, isScalar, isSeq } from 'yaml';
import type { Node as YamlNode } from 'yaml';
import type { Source } from './source.js';
import { readSource } from './source.js';
import type { CredentialKind, PipelineProblem } from './types.js';
import { childPath } from './validate.js';

/** One credential found in a string; offsets are into that string. */
export interface CredentialMatch {
  readonly kind: CredentialKind;
  readonly start: number;
  readonly end: number;
  /** Safe to print: a known prefix, the last two characters of long values, and the length. */
  readonly redacted: string;
}

/** Where a value sits: a `run` command, an `env` value (with its variable name) or other text. */
export type ValueContext = { readonly field: 'run' } | { readonly field: 'env'; readonly name: string } | { readonly field: 'text' };

const LABELS: Readonly<Record<CredentialKind, string>> = {
  private_key: 'private key',
  aws_access_key_id: 'AWS access key id',
  aws_secret_access_key: 'AWS secret access key',
  github_token: 'GitHub token',
  gitlab_token: 'GitLab token',
  slack_token: 'Slack token',
  slack_webhook: 'Slack webhook URL',
  google_api_key: 'Google API key',
  stripe_key: 'Stripe live key',
  npm_token: 'npm token',
  jwt: 'JSON Web Token',
  airlock_token: 'Airlock credential',
  url_credentials: 'password in a URL',
  authorization_header: 'Authorization header credential',
  generic_secret: 'secret assignment',
  high_entropy: 'high-entropy string (likely a key or token)',
};

interface FormatRule {
  readonly kind: CredentialKind;
  /** Global, with indices; group 1 (when present) is the secret itself. */
  readonly re: RegExp;
  /** Characters of the match that are a public prefix and may be shown. */
  readonly shown: number;
}

// Boundaries keep a rule from firing inside a longer word (`totals_…` is not `als_…`) and keep
// matching linear: a rule can only start where a word starts. Other repeats are bounded.
const B = '(?<![A-Za-z0-9_])';
const E = '(?![A-Za-z0-9_])';
const FORMAT_RULES: readonly FormatRule[] = [
  { kind: 'private_key', re: /-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY(?: BLOCK)?-----/dg, shown: 0 },
  { kind: 'aws_access_key_id', re: /(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])/dg, shown: 4 },
  // The secret key has no prefix: only recognised next to its name (AWS_SECRET_ACCESS_KEY, aws_secret_access_key =).
  { kind: 'aws_secret_access_key', re: /aws_?secret(?:_?access)?_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])/dgi, shown: 0 },
  { kind: 'github_token', re: new RegExp(`${B}gh[pousr]_[A-Za-z0-9]{36,251}${E}`, 'dg'), shown: 4 },
  { kind: 'github_token', re: new RegExp(`${B}github_pat_[A-Za-z0-9_]{22,244}${E}`, 'dg'), shown: 11 },
  { kind: 'gitlab_token', re: new RegExp(`${B}glpat-[A-Za-z0-9_-]{20,}${E}`, 'dg'), shown: 6 },
  { kind: 'slack_token', re: new RegExp(`${B}xox[abprs]-[A-Za-z0-9-]{10,}${E}`, 'dg'), shown: 5 },
  { kind: 'slack_webhook', re: /https:\/\/hooks\.slack\.com\/(?:services|workflows|triggers)\/([A-Za-z0-9_/+-]{20,})/dg, shown: 0 },
  { kind: 'google_api_key', re: new RegExp(`${B}AIza[0-9A-Za-z_-]{35}${E}`, 'dg'), shown: 4 },
  { kind: 'stripe_key', re: new RegExp(`${B}(?:sk|rk)_live_[0-9A-Za-z]{20,}${E}`, 'dg'), shown: 8 },
  { kind: 'npm_token', re: new RegExp(`${B}npm_[A-Za-z0-9]{36}${E}`, 'dg'), shown: 4 },
  { kind: 'jwt', re: new RegExp(`${B}eyJ[A-Za-z0-9_-]{8,}\\.eyJ[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]*`, 'dg'), shown: 3 },
  // Airlock's own opaque tokens (src/identity/secret-tokens.ts): sessions, setup tokens, API keys.
  { kind: 'airlock_token', re: new RegExp(`${B}(?:alsu?_[A-Za-z0-9_-]{40,}|alk_[a-z2-7]{12}_[A-Za-z0-9_-]{40,})${E}`, 'dg'), shown: 4 },
];

const SECRET_WORD = 'password|passwd|secret|token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|private[_-]?key|client[_-]?secret|auth[_-]?token';
const VALUE = `(?:"([^"\\n]*)"|'([^'\\n]*)'|([^\\s"'\`;&|()<>]+))`;
/** `DB_PASSWORD=…`, `token: …`, `-H "X-Api-Key: …"`, `--password=…`: a secret-named key given a literal. */
const ASSIGNMENT = new RegExp(`(?<![A-Za-z0-9_])[A-Za-z0-9_.-]{0,64}?(?:${SECRET_WORD})["']?\\s*[:=]\\s*${VALUE}`, 'dgi');
/** `--password hunter2`, `--token abc…` (the space-separated form of a secret-bearing flag). */
const FLAG = new RegExp(`(?<![A-Za-z0-9_-])--(?:password|passwd|token|api-key|apikey|client-secret|access-token|auth-token|secret-key)\\s+${VALUE}`, 'dgi');
/** `curl -u user:password`, `--user user:password` (curl, wget and others). */
const USER_FLAG = /(?<![A-Za-z0-9_-])(?:-u|--user|--http-user)[\s=]+["']?[^\s:"'$]{1,256}:([^\s"']{1,256})/dg;
/** `https://user:password@host`. */
const URL_CREDENTIALS = /\b[a-z][a-z0-9+.-]{0,30}:\/\/[^\s/:@'"]{1,256}:([^\s/@'"]{1,256})@/dgi;
/** `Authorization: Bearer …` / `Basic …` with a literal. */
const AUTHORIZATION = /\b(?:Bearer|Basic)\s+([A-Za-z0-9._~+/-]{16,}=*)/dgi;
/** Env variables whose name says they hold a secret. */
const SECRET_NAME = /(?:^|_)(?:PASSWORD|PASSWD|PASS|SECRET|TOKEN|API_?KEY|ACCESS_KEY|SECRET_KEY|PRIVATE_KEY|CLIENT_SECRET|CREDENTIALS?)$/;
/** Candidate tokens for the entropy rule: base64 / base64url runs. */
const TOKEN = /[A-Za-z0-9+/_-]{20,}={0,2}/g;

/** A value that is a literal, not a reference to a secret held elsewhere. */
function isLiteral(value: string): boolean {
  const v = value.trim();
  if (v.length < 4) return false;
  // $VAR, ${VAR}, ${{ secrets.X }}, $(cat file), %VAR%, {{ .Token }}, <your-token>
  if (/[$%]|\{\{/.test(v) || /^<.*>$/.test(v)) return false;
  if (/^(?:true|false|yes|no|on|off|null|none|nil|undefined|required|optional|stdin|env|prompt|\*+|x+)$/i.test(v)) return false;
  // A path to a file that holds the secret, a URL, or another flag.
  if (/^(?:\.{0,2}\/|~\/|-)/.test(v) || /^https?:\/\//i.test(v)) return false;
  return true;
}

/** Shannon entropy in bits per character. */
export function shannonEntropy(s: string): number {
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  let h = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h;
}

function charClass(c: string): number {
  if (c >= 'a' && c <= 'z') return 0;
  if (c >= 'A' && c <= 'Z') return 1;
  if (c >= '0' && c <= '9') return 2;
  return 3;
}

/**
 * Does this token look random enough to be a key? Thresholds follow truffleHog (4.5 bits per
 * base64 character) for long tokens; shorter tokens cannot reach 4.5 (entropy is at most
 * log2(length)), so the bar is log2(length) - 0.8 below 38 characters. Words, camelCase
 * identifiers and paths are excluded by also requiring two of upper/lower/digit and frequent
 * switches between character classes (at least 40% of neighbours: about 64% in random base64,
 * about 35% in camelCase identifiers like TestSuiteRunner2024Final).
 *
 * Hex strings are never flagged: in a pipeline they are commit ids (`git checkout <40 hex>`),
 * image and file digests (`sha256:<64 hex>`) and UUIDs. A secret that happens to be hex is
 * still caught by the name rules (`API_KEY: …`, `--token …`).
 */
export function looksRandom(token: string): boolean {
  // A file path (/tmp/build-x8Kq2, ./out/…): judge each component, not the whole path, so
  // mktemp-style names do not read as keys; a random component is still caught.
  if (/^(?:\.{0,2}\/|~\/)/.test(token) && token.includes('/', 1)) {
    return token.split(/[/._-]/).some((part) => part !== '' && part !== token && looksRandom(part));
  }
  const t = token.replace(/^[-_/]+|[-_/=]+$/g, '');
  if (t.length < 20) return false;
  if (/^[0-9a-fA-F-]+$/.test(t)) return false;
  if (/^sha(?:1|224|256|384|512)[-_]/i.test(t)) return false;
  const classes = new Set<number>();
  let switches = 0;
  for (let i = 0; i < t.length; i++) {
    const c = charClass(t.charAt(i));
    classes.add(c);
    if (i > 0 && c !== charClass(t.charAt(i - 1))) switches++;
  }
  if ([0, 1, 2].filter((c) => classes.has(c)).length < 2) return false;
  if (switches / (t.length - 1) < 0.4) return false;
  const threshold = Math.min(4.5, Math.log2(t.length) - 0.8);
  return shannonEntropy(t) >= threshold;
}

/** `ghp_…3f (40 chars)`: the public prefix, the last two characters of long values, the length. */
export function redact(secret: string, shown = 0): string {
  const n = secret.length;
  const prefix = secret.slice(0, Math.min(shown, Math.floor(n / 3)));
  const suffix = n >= 16 ? secret.slice(-2) : '';
  return `${prefix}…${suffix} (${n} chars)`;
}

function groupSpan(m: RegExpExecArray): [number, number] {
  const indices = m.indices;
  for (let g = 1; indices !== undefined && g < indices.length; g++) {
    const span = indices[g];
    if (span !== undefined) return span;
  }
  return [m.index, m.index + m[0].length];
}

/** Format rules: precise token formats, anywhere in `text`. */
export function findCredentialFormats(text: string): CredentialMatch[] {
  const out: CredentialMatch[] = [];
  for (const rule of FORMAT_RULES) {
    for (const m of text.matchAll(rule.re)) {
      const [start, end] = rule.kind === 'private_key' ? [m.index, m.index + m[0].length] : groupSpan(m);
      const secret = text.slice(start, end);
      const redacted = rule.kind === 'private_key' ? `${m[0]} block` : redact(secret, rule.shown);
      out.push({ kind: rule.kind, start, end, redacted });
    }
  }
  return out;
}

function contextMatches(re: RegExp, value: string, kind: CredentialKind, out: CredentialMatch[], literal = true): void {
  for (const m of value.matchAll(re)) {
    const [start, end] = groupSpan(m);
    const secret = value.slice(start, end);
    if (literal && !isLiteral(secret)) continue;
    // `--secret=id=npmrc,src=…` is a key=value list, not a secret; base64 padding (`…==`) is fine.
    if (kind === 'generic_secret' && /=[^=]/.test(secret)) continue;
    out.push({ kind, start, end, redacted: redact(secret) });
  }
}

/** Every rule, format and context, over one `run` command or `env` value. Overlaps are resolved (the more specific rule wins). */
export function findCredentials(value: string, context: ValueContext): CredentialMatch[] {
  let found = findCredentialFormats(value);
  if (context.field === 'env') {
    // Rules that need the variable's name (AWS_SECRET_ACCESS_KEY: …) see `NAME=value`.
    const shift = context.name.length + 1;
    found = findCredentialFormats(`${context.name}=${value}`)
      .filter((m) => m.start >= shift)
      .map((m) => ({ ...m, start: m.start - shift, end: m.end - shift }));
  }
  if (context.field !== 'text') {
    contextMatches(URL_CREDENTIALS, value, 'url_credentials', found);
    contextMatches(AUTHORIZATION, value, 'authorization_header', found);
    contextMatches(ASSIGNMENT, value, 'generic_secret', found);
    contextMatches(FLAG, value, 'generic_secret', found);
    contextMatches(USER_FLAG, value, 'generic_secret', found);
    if (context.field === 'env' && SECRET_NAME.test(context.name) && isLiteral(value)) {
      found.push({ kind: 'generic_secret', start: 0, end: value.length, redacted: redact(value) });
    }
    for (const m of value.matchAll(TOKEN)) {
      if (looksRandom(m[0])) found.push({ kind: 'high_entropy', start: m.index, end: m.index + m[0].length, redacted: redact(m[0]) });
    }
  }
  return dropOverlaps(found);
}

/** Earlier (and, at the same start, more specific) matches win; later overlapping ones are dropped. */
function dropOverlaps(found: CredentialMatch[]): CredentialMatch[] {
  const order: readonly CredentialKind[] = Object.keys(LABELS) as CredentialKind[];
  const sorted = [...found].sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind) || a.start - b.start);
  const kept: CredentialMatch[] = [];
  for (const m of sorted) {
    if (kept.some((k) => m.start < k.end && k.start < m.end)) continue;
    kept.push(m);
  }
  return kept.sort((a, b) => a.start - b.start);
}

interface Located {
  readonly node: YamlNode;
  readonly path: string;
  readonly context: ValueContext;
}

/** Every scalar of the document (keys and values) with its path and, for run/env values, its context. */
function scalars(node: unknown, path: string, segments: readonly (string | number)[], out: Located[]): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      const key = pair.key;
      const name = isScalar(key) ? String(key.value) : '?';
      const p = childPath(path, name);
      if (isScalar(key)) out.push({ node: key, path: p, context: { field: 'text' } });
      scalars(pair.value, p, [...segments, name], out);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      scalars(item, childPath(path, i), [...segments, i], out);
    });
  } else if (isScalar(node)) {
    const [top, , steps, , field, variable] = segments;
    let context: ValueContext = { field: 'text' };
    if (top === 'stages' && steps === 'steps' && segments.length === 5 && field === 'run') context = { field: 'run' };
    // An environment's health command is a shell command too (`environments.X.health.command`).
    else if (top === 'environments' && steps === 'health' && segments.length === 4 && segments[3] === 'command') context = { field: 'run' };
    else if (top === 'stages' && steps === 'steps' && segments.length === 6 && field === 'env') context = { field: 'env', name: String(variable) };
    out.push({ node, path, context });
  }
}

/** The source offset of `value[index]`: the same characters found inside the node's source range (escapes aside). */
function locate(text: string, node: YamlNode, value: string, match: CredentialMatch): number {
  const [from, to] = node.range ?? [0, 0];
  const token = value.slice(match.start, match.end);
  let occurrence = 0;
  for (let i = value.indexOf(token); i !== -1 && i < match.start; i = value.indexOf(token, i + 1)) occurrence++;
  let at = text.indexOf(token, from);
  for (let k = 0; k < occurrence && at !== -1; k++) at = text.indexOf(token, at + 1);
  return at !== -1 && at < to ? at : from;
}

const HINT = 'remove it, declare the name under `secrets:` and store the value with `airlock secret set`; it is in the repository history now, so revoke and rotate it';
const HINT_GUESS = `${HINT}. If it is not a secret, add the comment \`# airlock:allow-credential\` on that line`;
/** Kinds an author may wave through with `# airlock:allow-credential` (the heuristic ones; never a recognised token format). */
export const ALLOWABLE: ReadonlySet<CredentialKind> = new Set(['high_entropy', 'generic_secret']);

/** Scan a parsed source (its document when the YAML is valid, else only the raw text). */
export function scanSource(source: Source): PipelineProblem[] {
  const { text, lines, file } = source;
  const located: Located[] = [];
  if (source.doc !== undefined) scalars(source.doc.contents, '', [], located);
  const hits: { offset: number; end: number; path: string; match: CredentialMatch }[] = [];
  for (const m of findCredentialFormats(text)) {
    const owner = located.find((l) => l.node.range !== undefined && l.node.range !== null && l.node.range[0] <= m.start && m.start < l.node.range[1]);
    hits.push({ offset: m.start, end: m.end, path: owner?.path ?? '', match: m });
  }
  for (const l of located) {
    if (l.context.field === 'text' || !isScalar(l.node) || typeof l.node.value !== 'string') continue;
    const value = l.node.value;
    for (const m of findCredentials(value, l.context)) {
      const offset = locate(text, l.node, value, m);
      const end = offset + (m.end - m.start);
      if (hits.some((h) => offset < h.end && h.offset < end)) continue;
      hits.push({ offset, end, path: l.path, match: m });
    }
  }
  const problems: PipelineProblem[] = [];
  for (const h of hits) {
    const { line, col } = lines.linePos(h.offset);
    const lineText = text.slice(lines.lineStarts[line - 1] ?? 0, lines.lineStarts[line] ?? text.length);
    if (ALLOWABLE.has(h.match.kind) && lineText.includes('airlock:allow-credential')) continue;
    const where = h.path === '' ? '' : ` in ${h.path}`;
    problems.push({
      file,
      line,
      col,
      path: h.path,
      code: 'hardcoded_credential',
      kind: h.match.kind,
      message: `hard-coded ${LABELS[h.match.kind]} (${h.match.kind})${where}: ${h.match.redacted}`,
      hint: ALLOWABLE.has(h.match.kind) ? HINT_GUESS : HINT,
    });
  }
  return problems.sort((a, b) => a.line - b.line || a.col - b.col);
}

/** Scan pipeline file text for hard-coded credentials (what `airlock lint` adds to validation). */
export function scanForCredentials(text: string | Buffer, file = 'airlock.yaml'): PipelineProblem[] {
  return scanSource(readSource(text, file).source);
}
