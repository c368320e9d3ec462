/**
 * The policy set in force, shared by every request. Parsed once per version; replicas notice a
 * new version within REFRESH_MS (the delay is bounded and documented in ARCHITECTURE.md).
 */
import type { AuditLog, RequestContext } from '../audit/index.js';
import type { Actor } from '../identity/index.js';
import { PolicyEngine, activePolicyVersion, defaultPolicies, listPolicyVersions, writePolicyVersion } from '../policy/index.js';
import type { PolicySource } from '../policy/index.js';
import type { Store } from '../storage/index.js';
import { AirlockError } from '../errors/index.js';

const REFRESH_MS = 1000;

/**
 * A set under which no admin could ever change policies again can only be undone by editing the
 * database, outside the audit trail: refuse it.
 */
function refuseLockout(engine: PolicyEngine): void {
  const probe = engine.authorize({
    principal: { type: 'User', id: 'lockout-probe', roles: ['admin'] },
    action: 'policies.update',
    resource: { type: 'Resource', id: 'policies' },
    context: { authMethod: 'session', mfa: true, mfaAgeSeconds: 0, sourceAddress: '127.0.0.1' },
  });
  if (!probe.allowed) {
    throw new AirlockError('POLICY_INVALID', 'refused: under this policy set no admin could change policies again (keep a permit for role admin on policies.update)', { rule: 'lockout' });
  }
}

export interface ActivePolicy {
  readonly version: number;
  readonly engine: PolicyEngine;
}

export class PolicyHolder {
  private active: ActivePolicy | undefined;
  private checkedAt = 0;
  private refreshing: Promise<ActivePolicy> | undefined;

  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly clock: () => Date,
  ) {}

  /** The engine for this request: cached, re-checked against the database at most once a second. */
  async current(): Promise<ActivePolicy> {
    const now = Date.now();
    if (this.active !== undefined && now - this.checkedAt < REFRESH_MS) return this.active;
    return (this.refreshing ??= this.refresh().finally(() => (this.refreshing = undefined)));
  }

  private async refresh(): Promise<ActivePolicy> {
    const row = await activePolicyVersion(this.store.db);
    this.checkedAt = Date.now();
    if (row === undefined) {
      // Not yet seeded (a read-only replica before the first start): the shipped defaults.
      this.active ??= { version: -1, engine: PolicyEngine.load(defaultPolicies()) };
      return this.active;
    }
    if (this.active?.version !== row.version) this.active = { version: row.version, engine: PolicyEngine.load(row.policies) };
    return this.active;
  }

  /** Write version 0 (the shipped defaults) if the database has no policy yet. */
  async seed(actor: Actor): Promise<void> {
    if ((await activePolicyVersion(this.store.db)) !== undefined) return;
    const policies = defaultPolicies();
    await this.store.transact(async (tx) => {
      // Re-checked inside the transaction: two replicas starting at once seed once.
      if ((await activePolicyVersion(tx.db)) !== undefined) return;
      const written = await writePolicyVersion(tx, { policies, author: actor.id, reason: 'shipped default policy set', now: this.clock() });
      await this.audit.record(tx, { actor, action: 'policies.update', resource: 'policies', outcome: 'allowed', details: { version: written.version, digest: written.digest, seeded: true } });
    });
  }

  /** A new version, validated first (an invalid set is refused and nothing is written), recorded. */
  async update(actor: Actor, policies: PolicySource, reason: string, context?: RequestContext): Promise<{ version: number; digest: string }> {
    refuseLockout(PolicyEngine.load(policies));
    const written = await this.store.transact(async (tx) => {
      const previous = await activePolicyVersion(tx.db);
      const result = await writePolicyVersion(tx, { policies, author: actor.id, reason, now: this.clock() });
      const before = previous?.policies ?? {};
      const changed = Object.keys({ ...before, ...policies })
        .filter((id) => before[id] !== policies[id])
        .sort();
      await this.audit.record(tx, { actor, action: 'policies.update', resource: 'policies', outcome: 'allowed', context, details: { version: result.version, digest: result.digest, previousDigest: previous?.digest ?? null, reason, changedPolicies: changed } });
      return result;
    });
    this.checkedAt = 0;
    return written;
  }

  versions(): ReturnType<typeof listPolicyVersions> {
    return listPolicyVersions(this.store.db);
  }

  async activeVersion(): ReturnType<typeof activePolicyVersion> {
    return activePolicyVersion(this.store.db);
  }
}
