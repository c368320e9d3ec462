/** The compiled, trusted form of an `airlock.yaml` file (docs/pipeline.md). Every record is frozen. */

/**
 * One secret a step declares, and how it receives the value: `env` as the variable `name`,
 * `file` as a mode-0400 file in the workspace whose path is in `<name>_FILE`.
 */
export interface SecretUse {
  readonly name: string;
  readonly as: 'env' | 'file';
}

/** One step: a single shell command run with `sh -c` in the stage's workspace. */
export interface StepDefinition {
  readonly name: string;
  readonly run: string;
  /** The whole environment the step sees besides Airlock's own `AIRLOCK_*` variables (an allowlist). */
  readonly env: Readonly<Record<string, string>>;
  readonly timeoutSeconds: number;
  readonly retries: number;
  readonly idempotent: boolean;
  readonly runsOn: readonly string[];
  /** Workspace-relative files produced by a step of a stage this one (transitively) needs. */
  readonly inputs: readonly string[];
  /** Workspace-relative files this step produces. */
  readonly outputs: readonly string[];
  /** Secret names and how each is injected; values are released at run time by the secrets domain. */
  readonly secrets: readonly SecretUse[];
  /** Tool name -> semver range (or "*") the runner must satisfy before starting the step. */
  readonly requires: Readonly<Record<string, string>>;
  readonly network: boolean;
  readonly evidence: 'test' | undefined;
}

/** One stage: steps run in order; the stage runs once every stage it `needs` has succeeded. */
export interface StageDefinition {
  readonly name: string;
  readonly needs: readonly string[];
  readonly environment: string | undefined;
  readonly steps: readonly StepDefinition[];
}

/** Who must approve a deployment to an environment, and how long an approval holds. */
export interface ApprovalRules {
  /** Distinct people who must approve (0-10); default 1 for a protected environment, else 0. */
  readonly required: number;
  /** Roles an approver must hold (any one); empty: any role. */
  readonly roles: readonly string[];
  /** At least one approver must be one of the environment's `owners`. */
  readonly owners: boolean;
  /** An approval expires this long after it is given (default 4h, at most 7d). */
  readonly validForSeconds: number;
  /** Every approval and denial must carry a justification (default true). */
  readonly justification: boolean;
  /** A rollback to a release the environment already ran needs approvals again (default false). */
  readonly rollback: boolean;
}

/** A recurring period: starts at each `cron` occurrence (5 fields) in `timezone` and lasts `durationSeconds`. */
export interface Schedule {
  readonly cron: string;
  /** IANA time zone the cron fields are read in, e.g. `Europe/Berlin`. */
  readonly timezone: string;
  readonly durationSeconds: number;
}

/** A recurring freeze: deployments are refused while it is active. */
export interface Freeze extends Schedule {
  readonly reason: string;
}

/** The evidence a deployment to the environment needs. */
export interface EvidenceRules {
  /** Stages whose test results (from `evidence: test` steps) must be PASSED. */
  readonly tests: readonly string[];
  /** Environments the same artifacts must have been deployed to first. */
  readonly environments: readonly string[];
  /** The artifacts' provenance must verify (default true). */
  readonly provenance: boolean;
}

/** The post-deploy health check: a command (exit 0 is healthy) or an HTTP GET expecting `status`. */
export type HealthCheck =
  | { readonly kind: 'command'; readonly command: string; readonly timeoutSeconds: number }
  | { readonly kind: 'http'; readonly url: string; readonly status: number; readonly timeoutSeconds: number };

/** A deployment target and its protection rules (docs/pipeline.md, "Environment"). */
export interface EnvironmentDefinition {
  readonly protected: boolean;
  /** People or roles who answer for the environment. */
  readonly owners: readonly string[];
  readonly approvals: ApprovalRules;
  /** Branch globs allowed to deploy (`*` within a segment, `**` across); empty: any branch. */
  readonly branches: readonly string[];
  /** Change windows: deployments only while one is active; empty: at any time. */
  readonly windows: readonly Schedule[];
  readonly freezes: readonly Freeze[];
  readonly evidence: EvidenceRules;
  readonly health: HealthCheck | undefined;
  /** Repository path of the YAML file with this environment's configuration values. */
  readonly overrides: string | undefined;
  /**
   * Secrets the deployed service receives as environment variables, released when a deployment
   * that passed every gate starts it (never to the health check). Absent in stored definitions
   * older than the field: read it as empty.
   */
  readonly secrets: readonly string[];
}

/** A valid pipeline file. */
export interface PipelineDefinition {
  readonly version: 1;
  readonly name: string;
  readonly owners: readonly string[];
  readonly environments: Readonly<Record<string, EnvironmentDefinition>>;
  /** Topologically ordered (a stage after every stage it needs); ties keep file order. */
  readonly stages: readonly StageDefinition[];
  /** `sha256:<hex>` of the exact file bytes. */
  readonly digest: string;
}

/** What kind of hard-coded credential the scanner found. */
export type CredentialKind =
  | 'private_key'
  | 'aws_access_key_id'
  | 'aws_secret_access_key'
  | 'github_token'
  | 'gitlab_token'
  | 'slack_token'
  | 'slack_webhook'
  | 'google_api_key'
  | 'stripe_key'
  | 'npm_token'
  | 'jwt'
  | 'airlock_token'
  | 'url_credentials'
  | 'authorization_header'
  | 'generic_secret'
  | 'high_entropy';

/** One problem in a pipeline file, at the offending node. `line` and `col` are 1-based. */
export interface PipelineProblem {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  /** Where in the document, e.g. `stages.test.steps[0].retries` (empty for the whole file or a comment). */
  readonly path: string;
  /** Stable machine-readable code (docs/pipeline.md lists them all). */
  readonly code: string;
  readonly message: string;
  /** What to do about it. */
  readonly hint: string;
  /** Only for `hardcoded_credential`. */
  readonly kind?: CredentialKind;
}
