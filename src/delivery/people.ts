/**
 * Who is who. Segregation of duties and quorum compare people, not strings: a git author is an
 * email, an approver a username. The caller passes every identity it knows for each person
 * (username, verified emails, git names); identities are merged by union, so an identity listed
 * under two people makes them one person. That errs towards refusing (fail closed): a merged
 * pair can neither approve each other's change nor count twice towards a quorum.
 */

/** A decision's reason: a stable code scripts may switch on, and a message a person can act on. */
export interface Reason<C extends string = string> {
  readonly code: C;
  readonly message: string;
}

/** One person and every identity that stands for them. */
export interface Person {
  readonly id: string;
  readonly identities: readonly string[];
}

/** Justifications shorter than this (after trimming, in user-perceived characters) are not justifications. */
export const MIN_JUSTIFICATION_LENGTH = 10;

const graphemes = new Intl.Segmenter('en', { granularity: 'grapheme' });

export function isJustified(text: string | undefined): boolean {
  if (typeof text !== 'string') return false;
  let n = 0;
  for (const _ of graphemes.segment(text.trim())) if (++n >= MIN_JUSTIFICATION_LENGTH) return true;
  return false;
}

/**
 * Canonical form of one identity: `Name <email>` reduces to the email; NFKC and lower case so
 * `Alice` and `alice` (or full-width look-alikes) are one identity.
 */
export function normalizeIdentity(identity: string): string {
  const angle = /<([^<>]+)>\s*$/.exec(identity);
  const core = angle?.[1] ?? identity;
  return core.normalize('NFKC').trim().toLowerCase();
}

/** Maps any identity to a stable person key; unknown identities are their own person. */
export interface PersonResolver {
  key(identity: string): string;
  same(a: string, b: string): boolean;
}

export function personResolver(people: readonly Person[] = []): PersonResolver {
  const parent = new Map<string, string>();
  const find = (x: string): string => {
    let root = x;
    for (let p = parent.get(root); p !== undefined && p !== root; p = parent.get(root)) root = p;
    // Path compression keeps lookups flat.
    for (let cur = x; cur !== root; ) {
      const next = parent.get(cur) ?? root;
      parent.set(cur, root);
      cur = next;
    }
    return root;
  };
  const union = (a: string, b: string): void => {
    const ra = find(a);
    const rb = find(b);
    if (ra === rb) return;
    // Smaller key becomes the root so the result does not depend on input order.
    if (ra < rb) parent.set(rb, ra);
    else parent.set(ra, rb);
  };
  for (const person of people) {
    const id = normalizeIdentity(person.id);
    for (const identity of person.identities) union(id, normalizeIdentity(identity));
  }
  const key = (identity: string): string => find(normalizeIdentity(identity));
  return { key, same: (a, b) => key(a) === key(b) };
}
