/**
 * Formats and checks for what an agent presents: its one-time registration token, its name,
 * its labels and its Ed25519 public key. Everything here is untrusted input until checked.
 */
import { createPublicKey, randomBytes, randomInt } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { ValidationError } from '../errors/index.js';
import { tokenHash, tokenKind } from '../identity/index.js';

/** `alrt_` + 256 random bits (base64url): a prefix secret scanners can find, like `alk_`. */
const REGISTRATION_TOKEN = /^alrt_[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;

/** A new one-time registration token. */
export function newRegistrationToken(): string {
  return `alrt_${randomBytes(32).toString('base64url')}`;
}

/** True if `text` has the exact shape of a registration token (nothing is looked up). */
export function isRegistrationToken(text: unknown): text is string {
  return typeof text === 'string' && REGISTRATION_TOKEN.test(text);
}

/**
 * The public id of a registration token: a prefix of its stored hash. It names the token in
 * records and listings; it reveals nothing that helps guess the 256-bit secret.
 */
export function registrationTokenId(hash: string): string {
  return hash.slice(0, 16);
}

export { tokenHash };

const KEY_ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

/**
 * A new API key in the identity domain's format (`alk_<12 base32>_<256 bits base64url>`), made
 * here so that registering an agent is one transaction. Checked against the identity domain's
 * own recogniser, so a format change there fails loudly instead of minting unusable keys.
 */
export function newAgentApiKey(): { id: string; key: string } {
  let id = '';
  for (let i = 0; i < 12; i++) id += KEY_ID_ALPHABET[randomInt(KEY_ID_ALPHABET.length)] ?? '';
  const key = `alk_${id}_${randomBytes(32).toString('base64url')}`;
  if (tokenKind(key) !== 'api-key') throw new Error('internal: the API key format no longer matches the identity domain');
  return { id, key };
}

/** Agent names: they become `agent-<name>` (a service account) and `agent:<name>` (a runner). */
const AGENT_NAME = /^[a-z0-9][a-z0-9._-]{0,57}$/;

/** Check an agent name. */
export function checkAgentName(value: unknown): string {
  if (typeof value !== 'string' || !AGENT_NAME.test(value)) {
    throw new ValidationError('name must be 1-58 characters: lower-case letters, digits, ".", "_" or "-", starting with a letter or digit', [{ path: 'name', message: 'must match ^[a-z0-9][a-z0-9._-]{0,57}$' }]);
  }
  return value;
}

/** The same rule as a step's `runs-on` labels (a label an agent has must be one a step can ask for). */
const LABEL = /^[a-z0-9][a-z0-9._-]{0,62}$/;
export const MAX_LABELS = 20;

/** Check, de-duplicate and sort labels, naming every bad one. */
export function checkLabels(values: readonly string[]): string[] {
  const bad = values.filter((l) => !LABEL.test(l));
  if (bad.length > 0) {
    throw new ValidationError(`invalid label(s): ${bad.map((b) => JSON.stringify(b.slice(0, 64))).join(', ')}`, bad.map(() => ({ path: 'labels', message: 'labels are lower-case letters, digits, ".", "_" or "-" (1-63 characters)' })));
  }
  const unique = [...new Set(values)].sort();
  if (unique.length > MAX_LABELS) throw new ValidationError(`at most ${MAX_LABELS} labels`, [{ path: 'labels', message: `at most ${MAX_LABELS}` }]);
  return unique;
}

/** Parse an Ed25519 public key (SPKI PEM); anything else is refused. Returns the key and its normalised PEM. */
export function parseAgentPublicKey(pem: unknown): { key: KeyObject; pem: string } {
  const refuse = (): ValidationError => new ValidationError('publicKey must be an Ed25519 public key in SPKI PEM form', [{ path: 'publicKey', message: 'not an Ed25519 SPKI PEM public key' }]);
  if (typeof pem !== 'string' || pem.length > 4096 || !pem.includes('-----BEGIN PUBLIC KEY-----')) throw refuse();
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw refuse();
  }
  if (key.type !== 'public' || key.asymmetricKeyType !== 'ed25519') throw refuse();
  return { key, pem: key.export({ type: 'spki', format: 'pem' }).toString() };
}
