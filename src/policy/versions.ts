/**
 * Policy versions in the database (table policy_versions). Every change is a new row; the
 * highest version is in force. The stored text is the canonical JSON whose SHA-256 is the
 * digest, so a row edited behind Airlock's back no longer matches and is refused on read.
 */
import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import type { Kysely } from 'kysely';
import { AirlockError, ValidationError } from '../errors/index.js';
import type { Database, Tx } from '../storage/index.js';
import { PolicyEngine } from './engine.js';
import { defaultPolicies } from './files.js';
import type { PolicySource } from './files.js';

/** One stored version, without its policy texts. */
export interface PolicyVersionInfo {
  readonly version: number;
  readonly digest: string;
  readonly author: string;
  readonly reason: string;
  readonly createdAt: string;
}

/** One stored version with its policies. */
export interface PolicyVersion extends PolicyVersionInfo {
  readonly policies: PolicySource;
}

/** Input of {@link writePolicyVersion}. */
export interface PolicyVersionInput {
  readonly policies: PolicySource;
  /** Who made the change (for example "user:<id>"). */
  readonly author: string;
  /** Why: shown in the history and recorded with the change. */
  readonly reason: string;
  readonly now: Date;
}

const MAX_REASON = 1000;

function tampered(version: number, why: string): AirlockError {
  return new AirlockError('POLICY_INVALID', `stored policy version ${version} ${why}; the table was changed outside Airlock (check the audit log)`, { version });
}

/** Parse and check a stored row: its JSON must hash to its digest. */
function decodeStored(version: number, text: string, digest: string): PolicySource {
  if (`sha256:${createHash('sha256').update(text).digest('hex')}` !== digest) throw tampered(version, 'does not match its digest');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw tampered(version, 'is not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw tampered(version, 'is not an object of policies');
  const entries = Object.entries(parsed as Record<string, unknown>);
  if (entries.some(([, v]) => typeof v !== 'string')) throw tampered(version, 'holds a policy that is not text');
  return Object.freeze(Object.fromEntries(entries) as Record<string, string>);
}

/** The version in force (the highest), or undefined when none was ever written. */
export async function activePolicyVersion(db: Kysely<Database>): Promise<PolicyVersion | undefined> {
  const row = await db.selectFrom('policy_versions').selectAll().orderBy('version', 'desc').limit(1).executeTakeFirst();
  if (row === undefined) return undefined;
  const version = row.version;
  return {
    version,
    policies: decodeStored(version, row.policies, row.digest),
    digest: row.digest,
    author: row.author,
    reason: row.reason,
    createdAt: row.created_at,
  };
}

/** Every stored version, newest first, without texts. */
export async function listPolicyVersions(db: Kysely<Database>): Promise<PolicyVersionInfo[]> {
  const rows = await db.selectFrom('policy_versions').select(['version', 'digest', 'author', 'reason', 'created_at']).orderBy('version', 'desc').execute();
  return rows.map((r) => ({ version: r.version, digest: r.digest, author: r.author, reason: r.reason, createdAt: r.created_at }));
}

/** One stored version by number, or undefined. */
export async function getPolicyVersion(db: Kysely<Database>, version: number): Promise<PolicyVersion | undefined> {
  const row = await db.selectFrom('policy_versions').selectAll().where('version', '=', version).executeTakeFirst();
  if (row === undefined) return undefined;
  return { version, policies: decodeStored(version, row.policies, row.digest), digest: row.digest, author: row.author, reason: row.reason, createdAt: row.created_at };
}

/**
 * Store `policies` as the next version (0 for the first), inside the caller's transaction so
 * that the change and its audit event commit together. Validates first: an invalid set throws
 * POLICY_INVALID and writes nothing. Two concurrent writers computing the same number collide
 * on the primary key and one fails with CONFLICT rather than silently overwriting the other.
 */
export async function writePolicyVersion(tx: Tx, input: PolicyVersionInput): Promise<{ version: number; digest: string }> {
  const issues = [];
  if (input.author.trim() === '') issues.push({ path: 'author', message: 'is required' });
  if (input.reason.trim() === '') issues.push({ path: 'reason', message: 'say why the policies change' });
  if (input.reason.length > MAX_REASON) issues.push({ path: 'reason', message: `must be at most ${MAX_REASON} characters` });
  if (issues.length > 0) throw new ValidationError('invalid policy change', issues);
  const engine = PolicyEngine.load(input.policies);
  const text = canonicalize(engine.policies);
  if (text === undefined) throw new AirlockError('POLICY_INVALID', 'the policy set cannot be serialised');
  const max = await tx.db
    .selectFrom('policy_versions')
    .select((eb) => eb.fn.max<number | null>('version').as('v'))
    .executeTakeFirst();
  const version = max === undefined || max.v === null ? 0 : max.v + 1;
  await tx.db
    .insertInto('policy_versions')
    .values({ version, policies: text, digest: engine.digest, author: input.author, reason: input.reason, created_at: input.now.toISOString() })
    .execute();
  return { version, digest: engine.digest };
}

/** The engine in force: the active stored version, or the shipped defaults when none is stored. */
export async function activePolicyEngine(db: Kysely<Database>): Promise<{ engine: PolicyEngine; version: number | null }> {
  const active = await activePolicyVersion(db);
  if (active === undefined) return { engine: PolicyEngine.load(defaultPolicies()), version: null };
  return { engine: PolicyEngine.load(active.policies), version: active.version };
}
