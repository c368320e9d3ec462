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

/** A deployment target; the delivery work adds gates (approvals, windows) beside `protected`. */
export interface EnvironmentDefinition {
  readonly protected: boolean;
  readonly [key: string]: unknown;
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
