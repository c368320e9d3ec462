/**
 * Signed checkpoints: C2SP signed-note v1 (https://c2sp.org/signed-note) carrying a C2SP
 * tlog-checkpoint body (https://c2sp.org/tlog-checkpoint). The byte format is the one read by
 * golang.org/x/mod/sumdb/note, so any third-party note verifier can check our checkpoints, and
 * the parsing rules follow that package's `Open` so that we accept and reject the same notes.
 *
 * Only node:crypto primitives are used (Ed25519 sign/verify, SHA-256); nothing is hand-rolled.
 */
import { createHash, createPublicKey, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

import { AirlockError } from '../errors/index.js';

/** A parsed tlog-checkpoint body ("Note text", tlog-checkpoint): the log's claim "origin O has size N and root R". */
export interface Checkpoint {
  readonly origin: string;
  readonly size: number;
  readonly rootHash: Buffer;
  readonly extensions: readonly string[];
}

/** Signs note text with one key (signed-note "Signatures"): the name and 4-byte key ID go on the signature line. */
export interface NoteSigner {
  readonly name: string;
  readonly keyId: Buffer;
  sign(message: Buffer): Buffer;
}

/** Verifies signatures of one known key (signed-note "Signatures"); selected by the (name, key ID) pair. */
export interface NoteVerifier {
  readonly name: string;
  readonly keyId: Buffer;
  verify(message: Buffer, signature: Buffer): boolean;
}

/** Result of {@link openNote}: the signed text and the names of the known keys whose signatures verified. */
export interface OpenedNote {
  readonly body: string;
  readonly verifiedBy: readonly string[];
  readonly unknownSignatures: number;
}

/** Result of {@link openCheckpoint}: the verified note text and its parsed checkpoint. */
export interface OpenedCheckpoint {
  readonly checkpoint: Checkpoint;
  readonly body: string;
  readonly verifiedBy: readonly string[];
}

/** signed-note "Signature types": 0x01 identifies Ed25519; it prefixes the key in key IDs and verifier keys. */
const ALG_ED25519 = 0x01;
const ED25519_PUBLIC_KEY_BYTES = 32;
const ED25519_SIGNATURE_BYTES = 64;
/** signed-note "Signatures": the key ID is the first 4 bytes of a SHA-256 hash. */
const KEY_ID_BYTES = 4;
/** tlog-checkpoint "Note text": the root is an RFC 6962 SHA-256 Merkle tree hash. */
const ROOT_HASH_BYTES = 32;
/** signed-note "Format": verifiers SHOULD cap the signature count (MUST accept 16); x/mod/sumdb/note uses 100. */
export const MAX_NOTE_SIGNATURES = 100;
/** A verifier key is a short configuration string; refuse anything absurdly long before parsing it. */
const MAX_VERIFIER_KEY_CHARS = 1024;
/** signed-note "Format": each signature line starts with an em dash (U+2014) and a space. */
const SIGNATURE_PREFIX = '\u2014 ';
/** Canonical RFC 4648 section 4 base64 with padding; combined with a re-encoding check in decodeBase64. */
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** signed-note "Format": key names must contain no Unicode spaces (Go's unicode.IsSpace) and no '+'. */
const NAME_FORBIDDEN_RE = /[\p{White_Space}+]/u;
const DECIMAL_RE = /^(?:0|[1-9][0-9]*)$/;
const HEX_KEY_ID_RE = /^[0-9a-fA-F]{8}$/;

function invalidNote(reason: string, message: string, extra: Record<string, unknown> = {}): AirlockError {
  return new AirlockError('CHECKPOINT_INVALID', message, { reason, ...extra });
}

function invalidKey(reason: string, message: string, extra: Record<string, unknown> = {}): AirlockError {
  return new AirlockError('KEY_INVALID', message, { reason, ...extra });
}

/**
 * Strict standard base64 (RFC 4648 section 4, padded). Buffer.from(s, 'base64') silently skips
 * junk, so the alphabet is checked first and the result must re-encode to the same text; that
 * rejects non-zero trailing bits too, so every byte string has exactly one accepted spelling.
 */
function decodeBase64(text: string): Buffer | undefined {
  if (!BASE64_RE.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : undefined;
}

/**
 * signed-note "Format": notes must be well-formed UTF-8 with no ASCII control characters except
 * newline. A JS string is UTF-16, so "not UTF-8" here means a lone surrogate, which has no UTF-8
 * encoding and would otherwise be replaced by U+FFFD and sign different bytes than it shows.
 */
function isNoteText(text: string, allowNewline: boolean): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20) {
      if (c !== 0x0a || !allowNewline) return false;
    } else if (c >= 0xd800 && c <= 0xdbff) {
      const next = text.charCodeAt(i + 1); // NaN past the end, which fails the range test
      if (!(next >= 0xdc00 && next <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return false;
    }
  }
  return true;
}

/** signed-note "Format": a key name is non-empty with no Unicode spaces and no '+' (it separates verifier key fields). */
export function isValidKeyName(name: string): boolean {
  return name !== '' && isNoteText(name, false) && !NAME_FORBIDDEN_RE.test(name);
}

function assertKeyName(name: string): void {
  if (!isValidKeyName(name)) {
    throw invalidKey(
      'bad_name',
      'invalid note key name: it must be non-empty and contain no spaces, no "+" and no control characters (use a schema-less URL such as example.com/audit)',
    );
  }
}

function assertEd25519PublicKey(publicKey: Buffer): void {
  if (publicKey.length !== ED25519_PUBLIC_KEY_BYTES) {
    throw invalidKey('wrong_length', `an Ed25519 public key is ${ED25519_PUBLIC_KEY_BYTES} bytes, got ${publicKey.length}`);
  }
}

/** signed-note "Ed25519 signatures": key ID = SHA-256(name || 0x0A || 0x01 || 32-byte key)[:4], so name and algorithm are bound in. */
export function keyId(name: string, publicKey: Buffer): Buffer {
  assertKeyName(name);
  assertEd25519PublicKey(publicKey);
  return keyIdOfEncodedKey(name, Buffer.concat([Buffer.from([ALG_ED25519]), publicKey]));
}

/** The key ID over an already algorithm-prefixed key, as x/mod/sumdb/note computes it before checking the algorithm. */
function keyIdOfEncodedKey(name: string, encodedKey: Buffer): Buffer {
  return createHash('sha256').update(name, 'utf8').update('\n').update(encodedKey).digest().subarray(0, KEY_ID_BYTES);
}

/** Raw 32-byte public key of an Ed25519 KeyObject (RFC 8037 JWK "x"), without parsing DER by hand. */
function rawEd25519PublicKey(key: KeyObject): Buffer {
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  const raw = typeof jwk.x === 'string' ? Buffer.from(jwk.x, 'base64url') : Buffer.alloc(0);
  assertEd25519PublicKey(raw);
  return raw;
}

/** An Ed25519 note signer (signed-note "Ed25519 signatures"); refuses anything but an Ed25519 private key. */
export function ed25519Signer(name: string, privateKey: KeyObject): NoteSigner {
  assertKeyName(name);
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519') {
    throw invalidKey('wrong_key_type', 'checkpoints are signed with Ed25519; the key given is not an Ed25519 private key');
  }
  const id = keyId(name, rawEd25519PublicKey(privateKey));
  return Object.freeze({
    name,
    keyId: id,
    // Ed25519 takes no separate digest, hence the null algorithm (RFC 8032 PureEdDSA).
    sign: (message: Buffer): Buffer => cryptoSign(null, message, privateKey),
  });
}

/** An Ed25519 note verifier for a raw 32-byte public key (signed-note "Ed25519 signatures"). */
export function ed25519Verifier(name: string, publicKey: Buffer): NoteVerifier {
  const id = keyId(name, publicKey);
  let key: KeyObject;
  try {
    key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: publicKey.toString('base64url') }, format: 'jwk' });
  } catch {
    throw invalidKey('unreadable', 'the Ed25519 public key could not be loaded; check the verifier key');
  }
  return Object.freeze({
    name,
    keyId: id,
    verify: (message: Buffer, signature: Buffer): boolean => {
      if (signature.length !== ED25519_SIGNATURE_BYTES) return false;
      try {
        return cryptoVerify(null, message, key, signature);
      } catch {
        return false;
      }
    },
  });
}

/** The text form `<name>+<hex key ID>+<base64(0x01 || key)>` used by x/mod/sumdb/note NewVerifier and GOSUMDB. */
export function formatVerifierKey(name: string, publicKey: Buffer): string {
  const id = keyId(name, publicKey);
  const encoded = Buffer.concat([Buffer.from([ALG_ED25519]), publicKey]).toString('base64');
  return `${name}+${id.toString('hex')}+${encoded}`;
}

/** Parses `<name>+<hex key ID>+<base64 key>` like x/mod/sumdb/note NewVerifier; a key ID that mismatches name+key means a mis-copied key. */
export function parseVerifierKey(vkey: string): NoteVerifier {
  // Checks run in NewVerifier's order: syntax, key ID over (name, encoded key), algorithm byte, length.
  const malformed = (): AirlockError =>
    invalidKey('malformed', 'a verifier key has the form <name>+<8 hex digit key id>+<base64 key>; check it was copied whole');
  if (vkey.length > MAX_VERIFIER_KEY_CHARS) throw malformed();
  const first = vkey.indexOf('+');
  const second = first < 0 ? -1 : vkey.indexOf('+', first + 1);
  if (second < 0) throw malformed();
  const name = vkey.slice(0, first);
  const hexId = vkey.slice(first + 1, second);
  const encoded = decodeBase64(vkey.slice(second + 1));
  if (!isValidKeyName(name)) {
    throw invalidKey('bad_name', 'the verifier key name must be non-empty and contain no spaces, no "+" and no control characters');
  }
  if (!HEX_KEY_ID_RE.test(hexId) || encoded === undefined || encoded.length === 0) throw malformed();
  if (!keyIdOfEncodedKey(name, encoded).equals(Buffer.from(hexId, 'hex'))) {
    throw invalidKey('key_id_mismatch', `the key id ${hexId} does not match the name and key of this verifier key; it was altered or mis-copied`);
  }
  if (encoded[0] !== ALG_ED25519) {
    throw invalidKey('unknown_algorithm', 'the verifier key is not an Ed25519 key (algorithm byte 0x01); no other algorithm is supported');
  }
  const raw = encoded.subarray(1);
  if (raw.length !== ED25519_PUBLIC_KEY_BYTES) {
    throw invalidKey('wrong_length', `an Ed25519 verifier key holds ${ED25519_PUBLIC_KEY_BYTES} key bytes, got ${raw.length}`);
  }
  return ed25519Verifier(name, Buffer.from(raw));
}

function checkNoteBody(body: string): void {
  if (body === '' || !body.endsWith('\n') || !isNoteText(body, true)) {
    throw invalidNote(
      'malformed',
      'note text must be non-empty, end with a newline and contain no control characters other than newline (C2SP signed-note)',
    );
  }
}

/** signed-note "Format": text, a blank line, then one `— <name> <base64(key ID || signature)>` line per signer, each over the text bytes. */
export function signNote(body: string, signers: readonly NoteSigner[]): string {
  checkNoteBody(body);
  if (signers.length === 0) throw invalidNote('no_signers', 'a signed note needs at least one signer');
  const message = Buffer.from(body, 'utf8');
  let lines = '';
  for (const signer of signers) {
    assertKeyName(signer.name);
    if (signer.keyId.length !== KEY_ID_BYTES) {
      throw invalidKey('wrong_length', `a note key id is ${KEY_ID_BYTES} bytes, got ${signer.keyId.length}`);
    }
    const signature = signer.sign(message);
    lines += `${SIGNATURE_PREFIX}${signer.name} ${Buffer.concat([signer.keyId, signature]).toString('base64')}\n`;
  }
  return `${body}\n${lines}`;
}

interface ParsedSignature {
  readonly line: string;
  readonly name: string;
  readonly keyId: Buffer;
  readonly signature: Buffer;
}

function parseSignatureLine(line: string, lineNo: number): ParsedSignature {
  const bad = (why: string): AirlockError =>
    invalidNote('malformed', `signed note signature line ${lineNo} ${why}; expected "\u2014 <key name> <base64 signature>"`, {
      line: lineNo,
    });
  if (!line.startsWith(SIGNATURE_PREFIX)) throw bad('does not start with an em dash (U+2014) and a space');
  const rest = line.slice(SIGNATURE_PREFIX.length);
  const space = rest.indexOf(' ');
  if (space < 0) throw bad('has no signature after the key name');
  const name = rest.slice(0, space);
  if (!isValidKeyName(name)) throw bad('has an invalid key name');
  const raw = decodeBase64(rest.slice(space + 1));
  // signed-note "Signatures": 4 key ID bytes and a non-empty signature (x/mod/sumdb/note requires >= 5 bytes).
  if (raw === undefined || raw.length <= KEY_ID_BYTES) throw bad('is not canonical padded base64 of a key id and a signature');
  return { line, name, keyId: raw.subarray(0, KEY_ID_BYTES), signature: raw.subarray(KEY_ID_BYTES) };
}

function decodeNoteBytes(note: Uint8Array): string {
  try {
    // ignoreBOM keeps a leading U+FEFF in the text, so the bytes we verify are the bytes we were given.
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(note);
  } catch {
    throw invalidNote('malformed', 'signed note is not valid UTF-8 (C2SP signed-note)');
  }
}

/** Verifies a note with x/mod/sumdb/note `Open` semantics (signed-note "Signatures"): unknown keys are skipped so witnesses and key rotation work. */
export function openNote(note: string | Uint8Array, verifiers: readonly NoteVerifier[]): OpenedNote {
  // The text ends at the last blank line; every signature line must parse; a known key's signature
  // that fails is an error; at least one known signature must verify. Stricter than Go on one
  // point, as the spec's "verifiers MUST verify" reads: a repeated line from a known key is
  // verified too (Go skips repeats), so a note carrying a bad copy of a good signature is rejected.
  const text = typeof note === 'string' ? note : decodeNoteBytes(note);
  if (!isNoteText(text, true)) {
    throw invalidNote('malformed', 'signed note must be valid UTF-8 text with no control characters other than newline (C2SP signed-note)');
  }
  const split = text.lastIndexOf('\n\n');
  if (split < 0) {
    throw invalidNote('malformed', 'signed note has no blank line before its signatures; it is unsigned or was truncated');
  }
  const body = text.slice(0, split + 1);
  const block = text.slice(split + 2);
  if (block === '' || !block.endsWith('\n')) {
    throw invalidNote('malformed', 'signed note must end with at least one signature line terminated by a newline');
  }
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_NOTE_SIGNATURES) {
    throw invalidNote('too_many_signatures', `signed note has ${lines.length} signature lines; at most ${MAX_NOTE_SIGNATURES} are accepted`);
  }
  // Parse every line before verifying any, so a malformed note is reported as such whatever its order.
  const signatures = lines.map((line, i) => parseSignatureLine(line, i + 1));

  const message = Buffer.from(body, 'utf8');
  const verifiedKeys = new Set<string>();
  const verifiedBy: string[] = [];
  const unknownLines = new Set<string>();
  for (const sig of signatures) {
    const matches = verifiers.filter((v) => v.name === sig.name && v.keyId.equals(sig.keyId));
    const keyLabel = `${sig.name}+${sig.keyId.toString('hex')}`;
    if (matches.length === 0) {
      unknownLines.add(sig.line); // identical repeats of an unknown signature count once, as in Go
      continue;
    }
    if (matches.length > 1) {
      throw invalidNote('ambiguous_key', `more than one configured verifier has key ${keyLabel}; remove the duplicate`, {
        keyName: sig.name,
        keyId: sig.keyId.toString('hex'),
      });
    }
    const [verifier] = matches;
    if (verifier === undefined || !verifier.verify(message, sig.signature)) {
      throw invalidNote('bad_signature', `the signature by known key ${keyLabel} does not verify; the note was altered or forged`, {
        keyName: sig.name,
        keyId: sig.keyId.toString('hex'),
      });
    }
    if (!verifiedKeys.has(keyLabel)) {
      verifiedKeys.add(keyLabel);
      verifiedBy.push(sig.name);
    }
  }
  if (verifiedBy.length === 0) {
    throw invalidNote(
      'no_known_signature',
      'the note carries no signature from a trusted key; check that the verifier key configured matches the signer',
      { unknownSignatures: unknownLines.size },
    );
  }
  return { body, verifiedBy, unknownSignatures: unknownLines.size };
}

function checkOrigin(origin: string): void {
  // tlog-checkpoint "Note text" item 1: the origin MUST be non-empty (spaces are allowed, e.g. "go.sum database tree").
  if (origin === '' || !isNoteText(origin, false)) {
    throw invalidNote('bad_origin', 'the checkpoint origin must be a non-empty line with no control characters');
  }
}

function checkExtension(line: string): void {
  // tlog-checkpoint "Note text" item 4: extension lines, if any, MUST be non-empty.
  if (line === '' || !isNoteText(line, false)) {
    throw invalidNote('bad_extension', 'checkpoint extension lines must be non-empty single lines with no control characters');
  }
}

function badSize(): AirlockError {
  return invalidNote('bad_size', 'the checkpoint tree size must be a decimal integer with no sign or leading zeros, at most 2^53-1');
}

function badRoot(): AirlockError {
  return invalidNote('bad_root_hash', `the checkpoint root hash must be canonical padded base64 of exactly ${ROOT_HASH_BYTES} bytes`);
}

/** tlog-checkpoint "Note text": origin, decimal size and base64 root, then optional extension lines, each ending in "\n". */
export function formatCheckpoint(cp: Checkpoint): string {
  checkOrigin(cp.origin);
  if (!Number.isSafeInteger(cp.size) || cp.size < 0) throw badSize();
  if (cp.rootHash.length !== ROOT_HASH_BYTES) throw badRoot();
  cp.extensions.forEach(checkExtension);
  const extensions = cp.extensions.map((line) => `${line}\n`).join('');
  return `${cp.origin}\n${String(cp.size)}\n${cp.rootHash.toString('base64')}\n${extensions}`;
}

/** Parses a checkpoint body strictly (tlog-checkpoint "Note text"): one accepted spelling per tree head, so text equality is head equality. */
export function parseCheckpoint(body: string): Checkpoint {
  // The size must also be a JS safe integer, the limit of exact arithmetic in this codebase.
  if (!body.endsWith('\n') || !isNoteText(body, true)) {
    throw invalidNote('malformed', 'a checkpoint body is newline-terminated lines of text with no control characters');
  }
  const lines = body.slice(0, -1).split('\n');
  const [origin, sizeText, rootText, ...extensions] = lines;
  if (origin === undefined || sizeText === undefined || rootText === undefined) {
    throw invalidNote('malformed', 'a checkpoint body has at least three lines: origin, tree size and root hash');
  }
  checkOrigin(origin);
  if (!DECIMAL_RE.test(sizeText)) throw badSize();
  const size = Number(sizeText);
  if (!Number.isSafeInteger(size)) throw badSize();
  const rootHash = decodeBase64(rootText);
  if (rootHash?.length !== ROOT_HASH_BYTES) throw badRoot();
  extensions.forEach(checkExtension);
  return Object.freeze({ origin, size, rootHash, extensions: Object.freeze(extensions) });
}

/** openNote then parseCheckpoint (signed-note: text is ignored until verified); expectedOrigin stops another log's valid checkpoint passing. */
export function openCheckpoint(
  note: string | Uint8Array,
  verifiers: readonly NoteVerifier[],
  expectedOrigin?: string,
): OpenedCheckpoint {
  const opened = openNote(note, verifiers);
  const checkpoint = parseCheckpoint(opened.body);
  if (expectedOrigin !== undefined && checkpoint.origin !== expectedOrigin) {
    throw invalidNote('wrong_origin', `the checkpoint is for log "${checkpoint.origin}", not the expected "${expectedOrigin}"`, {
      origin: checkpoint.origin,
      expectedOrigin,
    });
  }
  return { checkpoint, body: opened.body, verifiedBy: opened.verifiedBy };
}
