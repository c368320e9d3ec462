/**
 * Envelope encryption, without storage: every value gets its own random 256-bit data key (DEK),
 * the value is AES-256-GCM under the DEK, and the DEK is AES-256-GCM under a key-encryption key
 * (KEK). Both layers carry associated data naming what they belong to, so a ciphertext or a
 * wrapped DEK copied to another record (another secret, version, scope or purpose) does not open.
 */
import { createSecretKey, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { KEY_BYTES, OpenFailed, encodeAad, gcmOpen, gcmSeal, unwrapKey, wrapKey } from './aead.js';

/** Version of the stored format (`secret_versions.scheme`, the `av1.` blob prefix). */
export const SCHEME = 1;

/** A key-encryption key in memory; its bytes stay inside the KeyObject. */
export interface Kek {
  readonly id: string;
  readonly key: KeyObject;
}

/**
 * What an envelope is bound to. `dek` names the record the wrapped DEK belongs to (the version
 * row, so a rewrap needs nothing beyond that row); `value` binds the ciphertext to the whole
 * context, scope included.
 */
export interface EnvelopeContext {
  readonly dek: readonly (string | number)[];
  readonly value: readonly (string | number)[];
}

/** The stored pieces of one envelope. */
export interface Envelope {
  readonly kekId: string;
  readonly wrappedDek: Buffer;
  readonly nonce: Buffer;
  readonly ciphertext: Buffer;
  readonly tag: Buffer;
}

/** A KEK from 32 bytes (the caller's buffer is not kept). */
export function kekFromBytes(id: string, bytes: Buffer): Kek {
  if (bytes.length !== KEY_BYTES) throw new OpenFailed();
  return { id, key: createSecretKey(bytes) };
}

/** A fresh random KEK with a random id. */
export function newKek(): { kek: Kek; bytes: Buffer } {
  const bytes = randomBytes(KEY_BYTES);
  return { kek: kekFromBytes(`kek_${randomBytes(8).toString('hex')}`, bytes), bytes };
}

/** The secret-version context: the DEK is bound to (secret, version), the value also to its scope. */
export function secretContext(secretId: string, version: number, scope: string): EnvelopeContext {
  return { dek: ['secret', secretId, version], value: ['secret', secretId, version, scope] };
}

/** The context of a sealed blob: its purpose (e.g. `totp:<userId>`) binds both layers. */
export function blobContext(purpose: string): EnvelopeContext {
  return { dek: ['blob', purpose], value: ['blob', purpose] };
}

/** AAD of a DEK wrapped by `kekId` for `context`. */
export function dekAad(kekId: string, context: EnvelopeContext): Buffer {
  return encodeAad(['dek', kekId, ...context.dek]);
}

/** Encrypts `plaintext` under a fresh DEK wrapped by `kek`. */
export function sealEnvelope(kek: Kek, context: EnvelopeContext, plaintext: Buffer): Envelope {
  const dek = randomBytes(KEY_BYTES);
  try {
    const body = gcmSeal(dek, encodeAad(['value', ...context.value]), plaintext);
    return { kekId: kek.id, wrappedDek: wrapKey(kek.key, dekAad(kek.id, context), dek), ...body };
  } finally {
    dek.fill(0); // the DEK exists in plaintext only for the length of this call
  }
}

/** Decrypts an envelope with `kek` (which must be the KEK named by `envelope.kekId`), or throws OpenFailed. */
export function openEnvelope(kek: Kek, context: EnvelopeContext, envelope: Envelope): Buffer {
  if (kek.id !== envelope.kekId) throw new OpenFailed();
  const dek = unwrapKey(kek.key, dekAad(kek.id, context), envelope.wrappedDek);
  try {
    return gcmOpen(dek, encodeAad(['value', ...context.value]), envelope);
  } finally {
    dek.fill(0);
  }
}

/** Re-wraps an envelope's DEK from `from` to `to`; the value's ciphertext is untouched. */
export function rewrapDek(from: Kek, to: Kek, context: EnvelopeContext, wrappedDek: Buffer): Buffer {
  const dek = unwrapKey(from.key, dekAad(from.id, context), wrappedDek);
  try {
    return wrapKey(to.key, dekAad(to.id, context), dek);
  } finally {
    dek.fill(0);
  }
}

const BLOB_PREFIX = `av${SCHEME}`;
const B64URL = /^[A-Za-z0-9_-]+$/;
const KEK_ID = /^kek_[0-9a-f]{16}$/;

/** `av1.<kekId>.<wrappedDek>.<nonce>.<ciphertext>.<tag>` (base64url parts): fits any text column. */
export function formatBlob(envelope: Envelope): string {
  const b = (buf: Buffer): string => buf.toString('base64url');
  return [BLOB_PREFIX, envelope.kekId, b(envelope.wrappedDek), b(envelope.nonce), b(envelope.ciphertext), b(envelope.tag)].join('.');
}

/** Parses {@link formatBlob}'s text strictly, or throws OpenFailed (the input is attacker-controlled). */
export function parseBlob(text: string): Envelope {
  const parts = text.split('.');
  if (parts.length !== 6 || parts[0] !== BLOB_PREFIX) throw new OpenFailed();
  const [, kekId, dek, nonce, ct, tag] = parts as [string, string, string, string, string, string];
  if (!KEK_ID.test(kekId) || ![dek, nonce, tag].every((p) => B64URL.test(p)) || (ct !== '' && !B64URL.test(ct))) throw new OpenFailed();
  const d = (p: string): Buffer => Buffer.from(p, 'base64url');
  return { kekId, wrappedDek: d(dek), nonce: d(nonce), ciphertext: d(ct), tag: d(tag) };
}

/** Whether `id` has the shape of a KEK id (`kek_` + 16 hex). */
export function isKekId(id: string): boolean {
  return KEK_ID.test(id);
}
