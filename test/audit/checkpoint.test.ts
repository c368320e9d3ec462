import { createHash, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { describe, it, expect } from 'vitest';

import { AirlockError } from '../../src/errors/index.js';
import {
  ed25519Signer,
  ed25519Verifier,
  formatCheckpoint,
  formatVerifierKey,
  keyId,
  MAX_NOTE_SIGNATURES,
  openCheckpoint,
  openNote,
  parseCheckpoint,
  parseVerifierKey,
  signNote,
} from '../../src/audit/checkpoint.js';
import type { Checkpoint, NoteSigner, NoteVerifier } from '../../src/audit/checkpoint.js';

/** Runs fn and returns the AirlockError it throws, failing the test if it throws anything else or nothing. */
function caught(fn: () => unknown): AirlockError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AirlockError) return err;
    throw err;
  }
  throw new Error('expected an AirlockError, but nothing was thrown');
}

function expectReason(fn: () => unknown, code: 'CHECKPOINT_INVALID' | 'KEY_INVALID', reason: string): AirlockError {
  const err = caught(fn);
  expect({ code: err.code, reason: err.details.reason }).toEqual({ code, reason });
  return err;
}

function raw32(key: ReturnType<typeof generateKeyPairSync>['publicKey']): Buffer {
  const { x } = key.export({ format: 'jwk' });
  return Buffer.from(x ?? '', 'base64url');
}

function newKey(name: string): { signer: NoteSigner; verifier: NoteVerifier; publicKey: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pub = raw32(publicKey);
  return { signer: ed25519Signer(name, privateKey), verifier: ed25519Verifier(name, pub), publicKey: pub };
}

const EM = '\u2014';

// ---------------------------------------------------------------------------------------------
// Interop vectors from the Go reference implementation, golang.org/x/mod/sumdb/note
// (github.com/golang/mod, sumdb/note/note.go package documentation "Example" and
// sumdb/note/note_test.go: TestNewVerifier, TestSign, TestOpen). Ed25519 is deterministic, so
// signing the same text with the same key must reproduce Go's output byte for byte.
// ---------------------------------------------------------------------------------------------
const PETER_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
// The matching Go signer key "PRIVATE+KEY+PeterNeumann+c74f20a3+<base64(0x01 || 32-byte seed)>".
const PETER_SKEY_DATA = 'AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const ENOCH_VKEY = 'EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop';
const GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG = `${EM} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`;
const ENOCH_SIG = `${EM} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n`;

/** Go's tests splice "ABCD" in at byte offset 60; the em dash is 3 UTF-8 bytes but one UTF-16 unit. */
function spliceAtByte(line: string, byteOffset: number, insert: string): string {
  const bytes = Buffer.from(line, 'utf8');
  return Buffer.concat([bytes.subarray(0, byteOffset), Buffer.from(insert), bytes.subarray(byteOffset)]).toString('utf8');
}

function peterPrivateKey(): ReturnType<typeof createPrivateKey> {
  const seed = Buffer.from(PETER_SKEY_DATA, 'base64').subarray(1);
  const pub = Buffer.from(PETER_VKEY.split('+')[2] ?? '', 'base64').subarray(1);
  return createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d: seed.toString('base64url'), x: pub.toString('base64url') },
    format: 'jwk',
  });
}

describe('interop with golang.org/x/mod/sumdb/note', () => {
  const peter = parseVerifierKey(PETER_VKEY);
  const enoch = parseVerifierKey(ENOCH_VKEY);

  it('computes the same key ids as Go for the published verifier keys', () => {
    expect(peter.name).toBe('PeterNeumann');
    expect(peter.keyId.toString('hex')).toBe('c74f20a3');
    expect(enoch.keyId.toString('hex')).toBe('af0cfe78');
    const peterPub = Buffer.from('ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW', 'base64').subarray(1);
    expect(keyId('PeterNeumann', peterPub).toString('hex')).toBe('c74f20a3');
    expect(formatVerifierKey('PeterNeumann', peterPub)).toBe(PETER_VKEY);
  });

  it('signs the example note exactly as Go does (TestSign)', () => {
    const signer = ed25519Signer('PeterNeumann', peterPrivateKey());
    expect(signer.keyId.toString('hex')).toBe('c74f20a3');
    expect(signNote(GO_TEXT, [signer])).toBe(`${GO_TEXT}\n${PETER_SIG}`);
  });

  it('opens the example note from the package documentation', () => {
    const opened = openNote(`${GO_TEXT}\n${PETER_SIG}`, [peter]);
    expect(opened).toEqual({ body: GO_TEXT, verifiedBy: ['PeterNeumann'], unknownSignatures: 0 });
  });

  it('ignores a signature from an unknown key and verifies both when both are known (TestOpen)', () => {
    const note = `${GO_TEXT}\n${PETER_SIG}${ENOCH_SIG}`;
    expect(openNote(note, [peter])).toEqual({ body: GO_TEXT, verifiedBy: ['PeterNeumann'], unknownSignatures: 1 });
    expect(openNote(note, [peter, enoch])).toEqual({ body: GO_TEXT, verifiedBy: ['PeterNeumann', 'EnochRoot'], unknownSignatures: 0 });
    const err = expectReason(() => openNote(note, []), 'CHECKPOINT_INVALID', 'no_known_signature');
    expect(err.details.unknownSignatures).toBe(2);
  });

  it('rejects an ambiguous verifier list only when the ambiguous key signed (TestOpen)', () => {
    expectReason(() => openNote(`${GO_TEXT}\n${ENOCH_SIG}`, [enoch, peter, enoch]), 'CHECKPOINT_INVALID', 'ambiguous_key');
    expect(openNote(`${GO_TEXT}\n${PETER_SIG}`, [enoch, peter, enoch]).verifiedBy).toEqual(['PeterNeumann']);
  });

  it('rejects more than 100 signature lines (TestOpen)', () => {
    const note = `${GO_TEXT}\n${PETER_SIG.repeat(MAX_NOTE_SIGNATURES + 1)}`;
    expectReason(() => openNote(note, [peter]), 'CHECKPOINT_INVALID', 'too_many_signatures');
    expectReason(() => openNote(note, []), 'CHECKPOINT_INVALID', 'too_many_signatures');
    expect(openNote(`${GO_TEXT}\n${PETER_SIG.repeat(MAX_NOTE_SIGNATURES)}`, [peter]).verifiedBy).toEqual(['PeterNeumann']);
  });

  it('rejects an invalid signature by a known key (TestOpen)', () => {
    const note = `${GO_TEXT}\n${spliceAtByte(PETER_SIG, 60, 'ABCD')}`;
    const err = expectReason(() => openNote(note, [peter]), 'CHECKPOINT_INVALID', 'bad_signature');
    expect(err.details).toMatchObject({ keyName: 'PeterNeumann', keyId: 'c74f20a3' });
  });

  it('drops repeated unknown signatures and accepts repeated good ones (TestOpen)', () => {
    const enochABCD = spliceAtByte(ENOCH_SIG, 60, 'ABCD');
    const note = `${GO_TEXT}\n${PETER_SIG}${PETER_SIG}${ENOCH_SIG}${ENOCH_SIG}${enochABCD}`;
    expect(openNote(note, [peter])).toEqual({ body: GO_TEXT, verifiedBy: ['PeterNeumann'], unknownSignatures: 2 });
  });

  it('rejects the malformed messages of TestOpen', () => {
    const bad: (string | Buffer)[] = [
      GO_TEXT,
      `${GO_TEXT}\n`,
      `${GO_TEXT}\n${PETER_SIG.slice(0, -1)}`,
      `\x01${GO_TEXT}\n${PETER_SIG}`,
      Buffer.concat([Buffer.from([0xff]), Buffer.from(`${GO_TEXT}\n${PETER_SIG}`)]),
      `${GO_TEXT}\n${EM} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=`,
      `${GO_TEXT}\n${PETER_SIG}Unexpected line.\n`,
    ];
    for (const note of bad) expectReason(() => openNote(note, [peter]), 'CHECKPOINT_INVALID', 'malformed');
  });

  it('rejects every truncation and every single-character change of a verifier key (TestNewVerifier)', () => {
    for (let i = 0; i <= PETER_VKEY.length; i++) {
      for (let j = i + 1; j <= PETER_VKEY.length; j++) {
        if (i === 0 && j === PETER_VKEY.length) continue;
        const sub = PETER_VKEY.slice(i, j);
        expect(caught(() => parseVerifierKey(sub)).code, sub).toBe('KEY_INVALID');
      }
    }
    for (let i = 0; i < PETER_VKEY.length; i++) {
      const bumped = PETER_VKEY.slice(0, i) + String.fromCharCode(PETER_VKEY.charCodeAt(i) + 1) + PETER_VKEY.slice(i + 1);
      expect(caught(() => parseVerifierKey(bumped)).code, bumped).toBe('KEY_INVALID');
    }
  });

  it('rejects a wrong-length key and an unknown algorithm even with a matching key id (TestNewVerifier)', () => {
    // Go reaches its length check on this vector because its base64 decoder ignores the non-zero
    // trailing bits of "EY=="; we accept only canonical base64, so it is refused one step earlier.
    expectReason(
      () => parseVerifierKey('PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=='),
      'KEY_INVALID',
      'malformed',
    );
    // The same case spelled canonically (35 key bytes, key id adjusted) reaches the length check.
    const longKey = Buffer.concat([Buffer.from('ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW', 'base64'), Buffer.from('BAD')]);
    const longId = createHash('sha256').update('PeterNeumann\n').update(longKey).digest().subarray(0, 4).toString('hex');
    expectReason(() => parseVerifierKey(`PeterNeumann+${longId}+${longKey.toString('base64')}`), 'KEY_INVALID', 'wrong_length');
    expectReason(
      () => parseVerifierKey('PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW'),
      'KEY_INVALID',
      'unknown_algorithm',
    );
  });
});

// ---------------------------------------------------------------------------------------------
// A real tlog-checkpoint signed by sum.golang.org (the Go checksum database), as retrieved from
// https://sum.golang.org/latest on 2024-09-23 and recorded in sigsum-go's
// pkg/checkpoint/checkpoint_test.go (TestGoSumDBCheckpoint), and one from 2023-01-09 cosigned by a
// test witness, from google/trillian-examples witness/golang/cmd/addrwitness/README.md. The
// verifier key is the one built into the go command: golang/go src/cmd/go/internal/modfetch/key.go.
// ---------------------------------------------------------------------------------------------
const SUMDB_VKEY = 'sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8';
const SUMDB_CHECKPOINT =
  'go.sum database tree\n30055305\nmXfgRcJ0bG0j3CPdKwgGWtUzBUbX67saZGRmFuJGGsM=\n\n' +
  `${EM} sum.golang.org Az3grpgEild5qw7+5dtV13Kf1C2Xurm8q4fhdxvcsDHnqNTaxL2AFjBY+2TyGKevucFcAAlWFJJYle3EJlDCrQ+y3A8=\n`;
const SUMDB_WITNESSED =
  'go.sum database tree\n15067302\ngJyioq6dwR9n+NjEWORfYmH+ubeYm3kH42BBQ0bTpYI=\n\n' +
  `${EM} sum.golang.org Az3grp1rvWOs5NKlr/xR4GLN/CDyzzakmt1o61uSxYKpK1SerqOP2ClbX/peKUZjYnyomH5Xz7GZG3TpB7OeKn4E2ww=\n` +
  `${EM} test.example.com qTGhC/xIPQ0AXKHK6Y+9ypRfuvMZWPjRXM8NiOg5M1WREn07VQXyuIXM3NRNav3ieVFLUqDRK77PWDmL6w8w84UqeAw=\n`;

describe('interop with the sum.golang.org checkpoint (C2SP tlog-checkpoint)', () => {
  const sumdb = parseVerifierKey(SUMDB_VKEY);

  it('parses the go command verifier key (its base64 contains "+")', () => {
    expect(sumdb.name).toBe('sum.golang.org');
    expect(sumdb.keyId.toString('hex')).toBe('033de0ae');
  });

  it('verifies and parses a published checkpoint, and re-formats the body byte for byte', () => {
    const { checkpoint, body, verifiedBy } = openCheckpoint(SUMDB_CHECKPOINT, [sumdb], 'go.sum database tree');
    expect(verifiedBy).toEqual(['sum.golang.org']);
    expect(checkpoint.origin).toBe('go.sum database tree');
    expect(checkpoint.size).toBe(30055305);
    expect(checkpoint.rootHash.toString('base64')).toBe('mXfgRcJ0bG0j3CPdKwgGWtUzBUbX67saZGRmFuJGGsM=');
    expect(checkpoint.extensions).toEqual([]);
    expect(formatCheckpoint(checkpoint)).toBe(body);
  });

  it('ignores a witness cosignature from a key it does not know', () => {
    const opened = openNote(SUMDB_WITNESSED, [sumdb]);
    expect(opened.unknownSignatures).toBe(1);
    expect(parseCheckpoint(opened.body).size).toBe(15067302);
  });

  it('rejects the published checkpoint with a changed tree size', () => {
    const forged = SUMDB_CHECKPOINT.replace('30055305', '30055306');
    expectReason(() => openCheckpoint(forged, [sumdb]), 'CHECKPOINT_INVALID', 'bad_signature');
  });

  it('rejects it under the wrong expected origin', () => {
    const err = expectReason(() => openCheckpoint(SUMDB_CHECKPOINT, [sumdb], 'airlock.example/audit'), 'CHECKPOINT_INVALID', 'wrong_origin');
    expect(err.details).toMatchObject({ origin: 'go.sum database tree', expectedOrigin: 'airlock.example/audit' });
  });
});

// ---------------------------------------------------------------------------------------------
// Our own round trips and rejections.
// ---------------------------------------------------------------------------------------------
const ORIGIN = 'airlock.example/audit';
const ROOT = Buffer.from('5e0f9b7a7c2a3d0f4e8c1b6a9d2f3e4c5b6a7d8e9f0a1b2c3d4e5f60718293a4', 'hex');
const CP: Checkpoint = { origin: ORIGIN, size: 42, rootHash: ROOT, extensions: [] };

function body(lines: readonly string[]): string {
  return lines.map((l) => `${l}\n`).join('');
}

describe('checkpoint bodies', () => {
  it('formats origin, size and root, then extension lines', () => {
    expect(formatCheckpoint(CP)).toBe(`${ORIGIN}\n42\n${ROOT.toString('base64')}\n`);
    const withExt = formatCheckpoint({ ...CP, extensions: ['ext one', 'ext two'] });
    expect(withExt).toBe(`${ORIGIN}\n42\n${ROOT.toString('base64')}\next one\next two\n`);
    expect(parseCheckpoint(withExt)).toEqual({ ...CP, extensions: ['ext one', 'ext two'] });
  });

  it('round-trips sizes 0 and 2^53-1', () => {
    for (const size of [0, 1, Number.MAX_SAFE_INTEGER]) {
      expect(parseCheckpoint(formatCheckpoint({ ...CP, size })).size).toBe(size);
    }
  });

  it('rejects sizes with leading zeros, signs, exponents, spaces or beyond 2^53-1', () => {
    const root = ROOT.toString('base64');
    for (const size of ['007', '00', '-1', '+1', '1e3', '0x10', ' 1', '1 ', '', '9007199254740992', '１']) {
      expectReason(() => parseCheckpoint(body([ORIGIN, size, root])), 'CHECKPOINT_INVALID', 'bad_size');
    }
    for (const size of [-1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 1]) {
      expectReason(() => formatCheckpoint({ ...CP, size }), 'CHECKPOINT_INVALID', 'bad_size');
    }
  });

  it('rejects 31- and 33-byte roots and non-canonical base64', () => {
    const canonical = ROOT.toString('base64'); // 44 chars ending in one "=" (2 unused bits)
    const last = canonical.at(-2) ?? '';
    const nonCanonical = `${canonical.slice(0, -2)}${String.fromCharCode(last.charCodeAt(0) + 1)}=`;
    for (const root of [
      Buffer.alloc(31, 1).toString('base64'),
      Buffer.alloc(33, 1).toString('base64'),
      canonical.slice(0, -1), // missing padding
      nonCanonical, // same bytes, non-zero trailing bits
      ROOT.toString('base64url'),
      `${canonical} `,
      '',
    ]) {
      expectReason(() => parseCheckpoint(body([ORIGIN, '1', root])), 'CHECKPOINT_INVALID', 'bad_root_hash');
    }
    expectReason(() => formatCheckpoint({ ...CP, rootHash: Buffer.alloc(31) }), 'CHECKPOINT_INVALID', 'bad_root_hash');
    expectReason(() => formatCheckpoint({ ...CP, rootHash: Buffer.alloc(33) }), 'CHECKPOINT_INVALID', 'bad_root_hash');
  });

  it('rejects an empty origin, empty extension lines and short or unterminated bodies', () => {
    const root = ROOT.toString('base64');
    expectReason(() => parseCheckpoint(body(['', '1', root])), 'CHECKPOINT_INVALID', 'bad_origin');
    expectReason(() => parseCheckpoint(body([ORIGIN, '1', root, 'ext', ''])), 'CHECKPOINT_INVALID', 'bad_extension');
    expectReason(() => parseCheckpoint(body([ORIGIN, '1'])), 'CHECKPOINT_INVALID', 'malformed');
    expectReason(() => parseCheckpoint(`${ORIGIN}\n1\n${root}`), 'CHECKPOINT_INVALID', 'malformed');
    expectReason(() => parseCheckpoint(`${ORIGIN}\r\n1\r\n${root}\r\n`), 'CHECKPOINT_INVALID', 'malformed');
    expectReason(() => formatCheckpoint({ ...CP, origin: '' }), 'CHECKPOINT_INVALID', 'bad_origin');
    expectReason(() => formatCheckpoint({ ...CP, origin: 'a\nb' }), 'CHECKPOINT_INVALID', 'bad_origin');
    expectReason(() => formatCheckpoint({ ...CP, extensions: [''] }), 'CHECKPOINT_INVALID', 'bad_extension');
    expectReason(() => formatCheckpoint({ ...CP, extensions: ['a\nb'] }), 'CHECKPOINT_INVALID', 'bad_extension');
  });
});

describe('signing and opening notes', () => {
  const log = newKey(ORIGIN);

  it('round-trips a checkpoint through signNote and openCheckpoint', () => {
    const note = signNote(formatCheckpoint(CP), [log.signer]);
    expect(note.startsWith(`${formatCheckpoint(CP)}\n${EM} ${ORIGIN} `)).toBe(true);
    const opened = openCheckpoint(note, [log.verifier], ORIGIN);
    expect(opened.checkpoint).toEqual(CP);
    expect(opened.verifiedBy).toEqual([ORIGIN]);
    // The same note given as UTF-8 bytes opens identically.
    expect(openCheckpoint(Buffer.from(note, 'utf8'), [log.verifier]).checkpoint).toEqual(CP);
  });

  it('writes one line per signer and verifies each with a verifier parsed from its verifier key', () => {
    const witness = newKey('witness.example/w1');
    const note = signNote(formatCheckpoint(CP), [log.signer, witness.signer]);
    expect(note.split('\n').filter((l) => l.startsWith(EM))).toHaveLength(2);
    const verifiers = [parseVerifierKey(formatVerifierKey(ORIGIN, log.publicKey)), parseVerifierKey(formatVerifierKey('witness.example/w1', witness.publicKey))];
    expect(openNote(note, verifiers).verifiedBy).toEqual([ORIGIN, 'witness.example/w1']);
    expect(openNote(note, [witness.verifier])).toMatchObject({ verifiedBy: ['witness.example/w1'], unknownSignatures: 1 });
  });

  it('opens a body that itself contains blank lines (the text ends at the last blank line)', () => {
    const text = 'first\n\nthird\n\n';
    expect(openNote(signNote(text, [log.signer]), [log.verifier]).body).toBe(text);
  });

  it('rejects a tampered body', () => {
    const note = signNote(formatCheckpoint(CP), [log.signer]);
    const tampered = note.replace('\n42\n', '\n43\n');
    expectReason(() => openCheckpoint(tampered, [log.verifier]), 'CHECKPOINT_INVALID', 'bad_signature');
  });

  it('rejects a tampered signature', () => {
    const note = signNote(formatCheckpoint(CP), [log.signer]);
    const [text, sigLine] = note.split('\n\n') as [string, string];
    const b64 = sigLine.slice(`${EM} ${ORIGIN} `.length, -1);
    const raw = Buffer.from(b64, 'base64');
    raw[10] = (raw[10] ?? 0) ^ 0x01; // inside the signature, after the 4-byte key id
    const tampered = `${text}\n\n${EM} ${ORIGIN} ${raw.toString('base64')}\n`;
    expectReason(() => openNote(tampered, [log.verifier]), 'CHECKPOINT_INVALID', 'bad_signature');
  });

  it('rejects a good signature transplanted from another note', () => {
    const other = signNote(formatCheckpoint({ ...CP, size: 41 }), [log.signer]);
    const sigLine = other.slice(other.lastIndexOf('\n\n') + 2);
    expectReason(() => openNote(`${formatCheckpoint(CP)}\n${sigLine}`, [log.verifier]), 'CHECKPOINT_INVALID', 'bad_signature');
  });

  it('ignores a signature by another key with the same name (key id differs)', () => {
    const impostor = newKey(ORIGIN);
    expect(impostor.signer.keyId.equals(log.signer.keyId)).toBe(false);
    const forged = signNote(formatCheckpoint(CP), [impostor.signer]);
    const err = expectReason(() => openNote(forged, [log.verifier]), 'CHECKPOINT_INVALID', 'no_known_signature');
    expect(err.details.unknownSignatures).toBe(1);
    // Alongside the real signature it is merely counted.
    const both = signNote(formatCheckpoint(CP), [impostor.signer, log.signer]);
    expect(openNote(both, [log.verifier])).toMatchObject({ verifiedBy: [ORIGIN], unknownSignatures: 1 });
  });

  it('ignores a signature carrying our key id under another name', () => {
    const note = signNote(formatCheckpoint(CP), [log.signer]).replace(`${EM} ${ORIGIN} `, `${EM} other.example/log `);
    expectReason(() => openNote(note, [log.verifier]), 'CHECKPOINT_INVALID', 'no_known_signature');
  });

  it('accepts an exact duplicate signature line but rejects a bad duplicate from a known key', () => {
    const note = signNote(formatCheckpoint(CP), [log.signer]);
    const sigLine = note.slice(note.lastIndexOf('\n\n') + 2);
    expect(openNote(`${note}${sigLine}`, [log.verifier]).verifiedBy).toEqual([ORIGIN]);
    const badCopy = signNote(formatCheckpoint({ ...CP, size: 7 }), [log.signer]);
    const badLine = badCopy.slice(badCopy.lastIndexOf('\n\n') + 2);
    expectReason(() => openNote(`${note}${badLine}`, [log.verifier]), 'CHECKPOINT_INVALID', 'bad_signature');
  });

  it('rejects malformed signature lines', () => {
    const text = formatCheckpoint(CP);
    const note = signNote(text, [log.signer]);
    const b64 = note.slice(note.lastIndexOf(' ') + 1, -1);
    const badLines = [
      `- ${ORIGIN} ${b64}`, // ASCII hyphen instead of an em dash
      `${EM}${ORIGIN} ${b64}`, // no space after the dash
      `${EM} ${ORIGIN}`, // no signature
      `${EM} ${ORIGIN}  ${b64}`, // two spaces
      `${EM} ${ORIGIN} ${b64.replace(/=+$/, '')}`, // unpadded base64
      `${EM} ${ORIGIN} ${Buffer.from(b64, 'base64').toString('base64url')}`, // URL-safe alphabet
      `${EM} ${ORIGIN} ${Buffer.alloc(4, 7).toString('base64')}`, // key id but no signature
      `${EM}  ${b64}`, // empty name
      `${EM} a+b ${b64}`, // '+' in the name
      '',
    ];
    for (const line of badLines) {
      expectReason(() => openNote(`${text}\n${line}\n`, [log.verifier]), 'CHECKPOINT_INVALID', 'malformed');
      // Malformed anywhere rejects the note even when a good signature precedes it.
      expectReason(() => openNote(`${note}${line}\n`, [log.verifier]), 'CHECKPOINT_INVALID', 'malformed');
    }
  });

  it('rejects a note with no final newline, no blank line or no signature', () => {
    const note = signNote(formatCheckpoint(CP), [log.signer]);
    expectReason(() => openNote(note.slice(0, -1), [log.verifier]), 'CHECKPOINT_INVALID', 'malformed');
    expectReason(() => openNote(note.replace('\n\n', '\n'), [log.verifier]), 'CHECKPOINT_INVALID', 'malformed');
    expectReason(() => openNote(`${formatCheckpoint(CP)}\n`, [log.verifier]), 'CHECKPOINT_INVALID', 'malformed');
    expectReason(() => openNote('', [log.verifier]), 'CHECKPOINT_INVALID', 'malformed');
  });

  it('rejects non-UTF-8 bytes, lone surrogates and control characters', () => {
    const note = signNote(formatCheckpoint(CP), [log.signer]);
    const bytes = Buffer.from(note, 'utf8');
    const invalidUtf8 = [
      Buffer.concat([bytes.subarray(0, 3), Buffer.from([0xc3]), bytes.subarray(3)]), // truncated sequence
      Buffer.concat([bytes.subarray(0, 3), Buffer.from([0xed, 0xa0, 0x80]), bytes.subarray(3)]), // encoded surrogate
      Buffer.concat([bytes.subarray(0, 3), Buffer.from([0xc0, 0xaf]), bytes.subarray(3)]), // overlong '/'
    ];
    for (const b of invalidUtf8) expectReason(() => openNote(b, [log.verifier]), 'CHECKPOINT_INVALID', 'malformed');
    for (const ch of ['\ud800', '\udc00', '\x00', '\t', '\r', '\x1b', '\x1f']) {
      expectReason(() => openNote(`${ch}${note}`, [log.verifier]), 'CHECKPOINT_INVALID', 'malformed');
    }
    // A well-formed astral character (surrogate pair) is fine in note text.
    const emoji = 'note \u{1F512}\n';
    expect(openNote(signNote(emoji, [log.signer]), [log.verifier]).body).toBe(emoji);
  });

  it('refuses to sign text that would not open', () => {
    for (const text of ['', 'no final newline', 'tab\there\n', 'cr\r\n', '\ud800\n']) {
      expectReason(() => signNote(text, [log.signer]), 'CHECKPOINT_INVALID', 'malformed');
    }
    expectReason(() => signNote('text\n', []), 'CHECKPOINT_INVALID', 'no_signers');
    const badName: NoteSigner = { ...log.signer, name: 'bad name' };
    expectReason(() => signNote('text\n', [badName]), 'KEY_INVALID', 'bad_name');
  });

  it('rejects a validly signed note whose body is not a checkpoint', () => {
    const note = signNote('hello\nworld\n', [log.signer]);
    expectReason(() => openCheckpoint(note, [log.verifier]), 'CHECKPOINT_INVALID', 'malformed');
    const note2 = signNote(`${ORIGIN}\n042\n${ROOT.toString('base64')}\n`, [log.signer]);
    expectReason(() => openCheckpoint(note2, [log.verifier]), 'CHECKPOINT_INVALID', 'bad_size');
  });

  it('rejects a checkpoint for another origin', () => {
    const note = signNote(formatCheckpoint(CP), [log.signer]);
    expectReason(() => openCheckpoint(note, [log.verifier], 'airlock.example/other'), 'CHECKPOINT_INVALID', 'wrong_origin');
  });
});

describe('keys and verifier keys', () => {
  it('round-trips a generated key through formatVerifierKey and parseVerifierKey', () => {
    const k = newKey(ORIGIN);
    const vkey = formatVerifierKey(ORIGIN, k.publicKey);
    expect(vkey).toMatch(/^airlock\.example\/audit\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$/);
    const v = parseVerifierKey(vkey);
    expect(v.name).toBe(ORIGIN);
    expect(v.keyId.equals(k.signer.keyId)).toBe(true);
    expect(v.verify(Buffer.from('m'), k.signer.sign(Buffer.from('m')))).toBe(true);
    expect(v.verify(Buffer.from('m'), Buffer.alloc(63))).toBe(false);
  });

  it('rejects bad verifier keys with a specific reason', () => {
    const k = newKey(ORIGIN);
    const vkey = formatVerifierKey(ORIGIN, k.publicKey);
    const [, id, data] = /^[^+]+\+([0-9a-f]{8})\+(.+)$/.exec(vkey) ?? [];
    expectReason(() => parseVerifierKey(`other.example+${id ?? ''}+${data ?? ''}`), 'KEY_INVALID', 'key_id_mismatch');
    expectReason(() => parseVerifierKey(`${ORIGIN}+00000000+${data ?? ''}`), 'KEY_INVALID', 'key_id_mismatch');
    expectReason(() => parseVerifierKey(`bad name+${id ?? ''}+${data ?? ''}`), 'KEY_INVALID', 'bad_name');
    expectReason(() => parseVerifierKey(`+${id ?? ''}+${data ?? ''}`), 'KEY_INVALID', 'bad_name');
    expectReason(() => parseVerifierKey(`${ORIGIN}+${id ?? ''}`), 'KEY_INVALID', 'malformed');
    expectReason(() => parseVerifierKey(`${vkey}\n`), 'KEY_INVALID', 'malformed');
    expectReason(() => parseVerifierKey(`${ORIGIN}+${id ?? ''}+${data ?? ''}`.padEnd(5000, 'A')), 'KEY_INVALID', 'malformed');
    // Algorithm byte 0x02 with a key id computed over it: the id matches, the algorithm does not.
    const ecdsaLike = Buffer.concat([Buffer.from([0x02]), k.publicKey]);
    const ecdsaId = createHash('sha256').update(`${ORIGIN}\n`).update(ecdsaLike).digest().subarray(0, 4).toString('hex');
    expectReason(() => parseVerifierKey(`${ORIGIN}+${ecdsaId}+${ecdsaLike.toString('base64')}`), 'KEY_INVALID', 'unknown_algorithm');
  });

  it('validates key names and key sizes', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    for (const name of ['', 'a b', 'a+b', 'a\tb', 'a\u00a0b', 'a\u2003b', 'a\u0085b', 'a\x01b', '\ud800']) {
      expectReason(() => ed25519Signer(name, privateKey), 'KEY_INVALID', 'bad_name');
      expectReason(() => keyId(name, Buffer.alloc(32)), 'KEY_INVALID', 'bad_name');
    }
    expectReason(() => keyId('ok', Buffer.alloc(31)), 'KEY_INVALID', 'wrong_length');
    expectReason(() => ed25519Verifier('ok', Buffer.alloc(33)), 'KEY_INVALID', 'wrong_length');
    expectReason(() => formatVerifierKey('ok', Buffer.alloc(31)), 'KEY_INVALID', 'wrong_length');
  });

  it('refuses non-Ed25519 and public keys as signers', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const pub = generateKeyPairSync('ed25519').publicKey;
    for (const key of [rsa, ec, pub]) expectReason(() => ed25519Signer(ORIGIN, key), 'KEY_INVALID', 'wrong_key_type');
  });
});
