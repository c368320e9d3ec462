/**
 * The protection rules of one environment, as the delivery core needs them. The pipeline domain
 * parses them from airlock.yaml; this narrow shape keeps the decisions independent of parsing.
 */

/** A recurring interval: it opens at every cron occurrence (in `timezone`) for `durationMs`. */
export interface Schedule {
  readonly cron: string;
  /** IANA time zone, e.g. `Europe/Berlin`. */
  readonly timezone: string;
  /** Elapsed time, not wall-clock time: a DST switch inside the interval does not stretch it. */
  readonly durationMs: number;
}

export interface RecurringFreeze extends Schedule {
  readonly reason: string;
}

export interface ProtectionRules {
  /** Distinct eligible people who must approve. */
  readonly required: number;
  /** Roles an approver must hold (at least one) when approving; empty: no role restriction. */
  readonly roles: readonly string[];
  /** At least one counted approver must be an owner. */
  readonly ownersRequired: boolean;
  readonly owners: readonly string[];
  /** An approval counts for this long after it was given. */
  readonly validForMs: number;
  readonly justificationRequired: boolean;
  /** A rollback to a release this environment already ran needs approvals again. */
  readonly rollbackNeedsApproval?: boolean | undefined;
  readonly branches: readonly string[];
  readonly windows: readonly Schedule[];
  readonly freezes: readonly RecurringFreeze[];
}
