/**
 * One-time recovery codes, shown once at MFA enrolment and stored hashed. Each is 20 base32
 * characters (100 random bits), grouped for reading aloud or typing from paper.
 */
import { createHash, randomInt } from 'node:crypto';

/** RFC 4648 base32, lower-case: no 0/1/8/9, so 0/O and 1/l cannot be confused. */
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const GROUPS = 4;
const GROUP_LENGTH = 5;

/** `n` fresh codes like `k3x7q-m2p4a-zz6bw-r5tye` (100 bits each). */
export function newRecoveryCodes(n = 10): string[] {
  const codes: string[] = [];
  for (let i = 0; i < n; i++) {
    const groups: string[] = [];
    for (let g = 0; g < GROUPS; g++) {
      let group = '';
      for (let c = 0; c < GROUP_LENGTH; c++) group += ALPHABET[randomInt(ALPHABET.length)] ?? '';
      groups.push(group);
    }
    codes.push(groups.join('-'));
  }
  return codes;
}

/** Case, spaces and dashes do not matter when a person types a code back. */
export function normaliseRecoveryCode(code: string): string {
  return code.toLowerCase().replace(/[\s-]+/g, '');
}

/**
 * SHA-256 (hex) of the normalised code. A fast hash is right here, unlike for passwords: the code
 * is 100 random bits, so even a stolen table cannot be brute-forced (2^100 guesses), and a slow
 * hash would only add latency and a DoS lever to each attempt.
 */
export function hashRecoveryCode(code: string): string {
  return createHash('sha256').update(normaliseRecoveryCode(code), 'utf8').digest('hex');
}
