/**
 * People's e-mail addresses: the key that ties commit authors and committers (git identities)
 * to Airlock users, so segregation of duties can tell who wrote a change. One address, one person.
 */
import { ValidationError } from '../errors/index.js';
import type { Tx } from '../storage/index.js';

// RFC 5321 section 4.5.3.1: 64 octets of local part, 254 for the whole path.
const MAX_LOCAL = 64;
const MAX_ADDRESS = 254;
// RFC 5322 dot-atom local part; host names as RFC 1123 labels. ASCII only: lower-casing other
// scripts is locale-dependent, and two spellings of one person would dodge the uniqueness check.
const LOCAL = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const DOMAIN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** The canonical (trimmed, lower-case) form of a valid address, or undefined. */
export function canonicalEmail(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const email = value.trim().toLowerCase();
  if (email.length > MAX_ADDRESS) return undefined;
  const at = email.lastIndexOf('@');
  if (at <= 0 || at > MAX_LOCAL) return undefined;
  return LOCAL.test(email.slice(0, at)) && DOMAIN.test(email.slice(at + 1)) ? email : undefined;
}

/** Validate and canonicalise an address given by a caller, naming `field` when it is not one. */
export function checkEmail(field: string, value: string): string {
  const email = canonicalEmail(value);
  if (email === undefined) {
    throw new ValidationError(`${field} must be an e-mail address such as name@example.com (ASCII, at most 254 characters)`, [{ path: field, message: 'is not a valid e-mail address' }]);
  }
  return email;
}

/**
 * The username holding `email`, other than the user `exceptUserId`. Call it only after the unit
 * of work has recorded its audit event: on PostgreSQL that append holds the audit head lock, the
 * point where every writer on every replica serialises, so no other transaction can take the
 * address between this read and the commit (SQLite's BEGIN IMMEDIATE already serialises writers).
 * The column holds canonical addresses only, so equality is case-insensitive.
 */
export async function emailHolder(tx: Tx, email: string, exceptUserId: string): Promise<string | undefined> {
  const row = await tx.db.selectFrom('users').select('username').where('email', '=', email).where('id', '!=', exceptUserId).executeTakeFirst();
  return row?.username;
}
