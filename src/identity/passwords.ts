/**
 * Password storage and policy (NIST SP 800-63B §5.1.1, OWASP Password Storage Cheat Sheet).
 * Passwords are hashed with argon2id, a memory-hard function, so a stolen `users` table costs an
 * attacker real memory per guess; verification is the library's constant-time comparison.
 */
import { hash, parseOptions, verify } from '@node-rs/argon2';
import type { Algorithm, Options } from '@node-rs/argon2';
import { ValidationError } from '../errors/index.js';

/** `Algorithm.Argon2id` (2): the enum is an ambient const enum, which verbatimModuleSyntax cannot read. */
// eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment -- the only way to name a const enum member here
const ARGON2ID: Algorithm = 2;
/** Every hash we make starts so; verification refuses any other algorithm (no downgrade to argon2i/d). */
const ARGON2ID_PREFIX = '$argon2id$';

/**
 * 64 MiB, 2 passes, 1 lane: stronger than OWASP's minimum (19 MiB, t=2) and RFC 9106 §4's
 * memory size. Measured on the 2-core build box: ~28 ms per hash or verify (19 MiB/t=2 took
 * ~6 ms, 64 MiB/t=3 ~44 ms with spikes past 60 ms under load). The libuv pool runs at most four
 * hashes at once, so the peak is about 256 MiB however many logins arrive.
 */
export const ARGON2_OPTIONS: Readonly<Options> = Object.freeze({
  algorithm: ARGON2ID,
  memoryCost: 65_536,
  timeCost: 2,
  parallelism: 1,
});

export const PASSWORD_MIN_LENGTH = 12;
export const PASSWORD_MAX_LENGTH = 256;
/**
 * Longer input (UTF-16 units, before normalisation) is refused before hashing, so nobody can make
 * the server hash megabytes. Far above the policy's 256 code points, whatever NFKC composes.
 */
const INPUT_MAX_LENGTH = 4096;
/** A stored hash asking for more than this is not one of ours: refusing it bounds the work. */
const MAX_STORED_MEMORY_KIB = 1_048_576;

/**
 * SP 800-63B §5.1.1.2: Unicode passwords are normalised (NFKC) before hashing, so the same
 * password typed on two keyboards (composed or decomposed accents) verifies.
 */
function normalise(pw: string): string {
  return pw.normalize('NFKC');
}

/** Hashes a password with argon2id; the PHC string carries salt and parameters. */
export async function hashPassword(pw: string): Promise<string> {
  // Never store a hash that verifyPassword would refuse to check.
  if (pw.length > INPUT_MAX_LENGTH) throw new ValidationError(`password must be at most ${PASSWORD_MAX_LENGTH} characters long`, [{ path: 'password', message: `must be at most ${PASSWORD_MAX_LENGTH} characters long` }]);
  return hash(normalise(pw), ARGON2_OPTIONS);
}

/** True only if `pw` matches `hashed`; never throws (a malformed or foreign hash is simply false). */
export async function verifyPassword(hashed: string, pw: string): Promise<boolean> {
  if (pw.length > INPUT_MAX_LENGTH) return false;
  try {
    if (!hashed.startsWith(ARGON2ID_PREFIX) || parseOptions(hashed).memoryCost > MAX_STORED_MEMORY_KIB) return false;
    return await verify(hashed, normalise(pw));
  } catch {
    return false;
  }
}

/** True if `hashed` was made with weaker (or other) parameters than today's: rehash after a successful login. */
export function needsRehash(hashed: string): boolean {
  try {
    const p = parseOptions(hashed);
    return (
      !hashed.startsWith(ARGON2ID_PREFIX) ||
      p.memoryCost !== ARGON2_OPTIONS.memoryCost ||
      p.timeCost !== ARGON2_OPTIONS.timeCost ||
      p.parallelism !== ARGON2_OPTIONS.parallelism
    );
  } catch {
    return true;
  }
}

let dummyHash: Promise<string> | undefined;

/**
 * Runs a verification of the same cost as a real one against a fixed dummy hash and returns
 * false. Call it for an unknown (or password-less) account so that the response time does not
 * reveal whether the username exists (OWASP ASVS V2.2, user enumeration by timing).
 */
export async function verifyAgainstDummy(pw: string): Promise<false> {
  // Computed once, lazily, with today's parameters, so its cost tracks ARGON2_OPTIONS.
  dummyHash ??= hash('airlock-dummy-password-for-timing', ARGON2_OPTIONS);
  await verifyPassword(await dummyHash, pw);
  return false;
}

/**
 * SP 800-63B §5.1.1.2: at least 12 characters (our minimum is above the standard's 8), at most
 * 256, and not blank. No composition rules (they lower real entropy). Counts code points after
 * normalisation, so an emoji is one character. Throws a ValidationError naming every broken rule.
 */
export function checkPasswordPolicy(pw: string): void {
  let length = 0;
  for (const _ of normalise(pw)) length++; // code points, not UTF-16 units
  const problems: string[] = [];
  if (length < PASSWORD_MIN_LENGTH) problems.push(`must be at least ${PASSWORD_MIN_LENGTH} characters long`);
  if (length > PASSWORD_MAX_LENGTH) problems.push(`must be at most ${PASSWORD_MAX_LENGTH} characters long`);
  if (length > 0 && pw.trim() === '') problems.push('must not be only whitespace');
  if (problems.length > 0) {
    throw new ValidationError(`password ${problems.join(' and ')}`, problems.map((message) => ({ path: 'password', message })));
  }
}
