import type { Generated } from 'kysely';
/**
 * Table shapes as Kysely sees them. Both engines return these JavaScript types: BLOB and
 * bytea come back as Buffer, and PostgreSQL int8 is parsed to number by the pool (every
 * sequence number stays far below 2^53).
 */

export interface AuditEventsTable {
  /** Position in the log and leaf index in the Merkle tree; gap-free from 0. */
  seq: number;
  time: string;
  actor_kind: string;
  actor_id: string;
  action: string;
  resource: string;
  outcome: string;
  /** The RFC 8785 canonical JSON of the event: exactly the bytes hashed into the leaf. */
  event: string;
}

export interface AuditNodesTable {
  /** Perfect subtree at (level, idx) covers leaves [idx * 2^level, (idx + 1) * 2^level). */
  level: number;
  idx: number;
  hash: Buffer;
}

export interface AuditHeadTable {
  /** Always 1: the single row that serialises the sequencer (SELECT ... FOR UPDATE). */
  id: number;
  size: number;
  root: Buffer;
  /** Time of the newest entry: later entries never get an earlier time, whatever the clocks. */
  updated_at: string;
}

export interface AuditCheckpointsTable {
  size: number;
  root: Buffer;
  /** The whole signed note, as served to clients. */
  note: string;
  created_at: string;
}

export interface MetaTable {
  key: string;
  value: string;
}

/** A person. `kind` local (password + TOTP) or sso (OpenID Connect). */
export interface UsersTable {
  id: string;
  username: string;
  display_name: string | null;
  kind: string;
  /** argon2id PHC string; null until set up, and always for SSO users. */
  password_hash: string | null;
  sso_issuer: string | null;
  sso_subject: string | null;
  /** The address this person commits with (lower case); null when unknown. */
  email: string | null;
  created_at: string;
  created_by: string;
  disabled_at: string | null;
}

export interface RolesTable {
  name: string;
  description: string;
  /** 1 for the five built-in roles (cannot be deleted). */
  builtin: number;
  /** 1: a principal holding this role must have MFA (approve, reveal, change roles/policies). */
  requires_mfa: number;
  created_at: string;
  created_by: string;
}

/** Role membership of a user or service account. */
export interface PrincipalRolesTable {
  principal_kind: string;
  principal_id: string;
  role: string;
  granted_at: string;
  granted_by: string;
}

export interface MfaTotpTable {
  user_id: string;
  /** The seed, sealed (AES-256-GCM) by the local identity key; never plaintext. */
  seed_sealed: string;
  /** Null until the user proves a first code. */
  confirmed_at: string | null;
  /** Highest RFC 6238 time step accepted: a code at or below it is a replay. */
  last_step: number;
  created_at: string;
}

export interface RecoveryCodesTable {
  user_id: string;
  /** SHA-256 (hex) of the high-entropy one-time code. */
  code_hash: string;
  used_at: string | null;
}

export interface SetupTokensTable {
  token_hash: string;
  user_id: string;
  created_at: string;
  expires_at: string;
  used_at: string | null;
}

export interface SessionsTable {
  /** Public, non-secret id (for listing and revocation); the token is stored only as a hash. */
  id: string;
  token_hash: string;
  user_id: string;
  auth_method: string;
  created_at: string;
  last_seen_at: string;
  /** Absolute expiry; idle expiry is last_seen_at + idle timeout. */
  expires_at: string;
  /** Time of the last MFA proof (login or step-up); null if the session has none. */
  mfa_at: string | null;
  source_address: string | null;
  revoked_at: string | null;
  revoked_reason: string | null;
}

/** Failed-login counters, keyed `account:<name>` or `source:<address>`. */
export interface LoginThrottleTable {
  key: string;
  failures: number;
  window_started_at: string;
  locked_until: string | null;
}

export interface ServiceAccountsTable {
  id: string;
  name: string;
  description: string;
  created_at: string;
  created_by: string;
  disabled_at: string | null;
}

export interface ApiKeysTable {
  /** Public key id, also embedded in the key text after the `alk_` prefix. */
  id: string;
  service_account_id: string;
  /** SHA-256 (hex) of the whole key text. */
  key_hash: string;
  description: string;
  created_at: string;
  created_by: string;
  expires_at: string | null;
  revoked_at: string | null;
  revoked_by: string | null;
  last_used_at: string | null;
}

/** JWT signing keys (EdDSA), rotated by kid. */
export interface SigningKeysTable {
  kid: string;
  alg: string;
  public_jwk: string;
  private_sealed: string;
  created_at: string;
  /** No new tokens after this; published until every token it signed has expired. */
  retired_at: string | null;
}

/** Every version of the Cedar policy set; the highest version is in force. */
export interface PolicyVersionsTable {
  version: number;
  /** JSON object: policy id -> Cedar text. */
  policies: string;
  /** sha256:<hex> of the canonical JSON of `policies`. */
  digest: string;
  author: string;
  reason: string;
  created_at: string;
}

/** In-flight OpenID Connect logins (state, PKCE verifier, nonce), for stateless replicas. */
export interface OidcLoginsTable {
  state_hash: string;
  verifier_sealed: string;
  nonce: string;
  created_at: string;
  expires_at: string;
}

export interface ProjectsTable {
  id: string;
  name: string;
  /** A local path or a git URL, as given to `airlock project add`. */
  repo: string;
  created_at: string;
  created_by: string;
}

/** One project at one commit. */
export interface RunsTable {
  id: string;
  project_id: string;
  /** 1, 2, 3 … per project. */
  number: number;
  ref: string;
  commit_sha: string;
  /** JSON: author, committer (name, email, time), subject. */
  commit_json: string;
  pipeline_name: string;
  pipeline_digest: string;
  /** JSON: the parsed pipeline definition read from the commit. */
  pipeline_json: string;
  /** JSON: who triggered it, how, why, and the parameters. */
  trigger_json: string;
  trace_id: string;
  /** queued | running | succeeded | failed | cancelled */
  state: string;
  reason: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

export interface RunStagesTable {
  run_id: string;
  stage: string;
  position: number;
  /** pending | running | succeeded | failed | cancelled | skipped */
  state: string;
  started_at: string | null;
  finished_at: string | null;
}

/** One attempt of one step: also the job a runner leases. */
export interface RunStepsTable {
  id: string;
  run_id: string;
  stage: string;
  step: string;
  position: number;
  attempt: number;
  /** pending | queued | running | succeeded | failed | timed_out | refused | cancelled | skipped | lost */
  state: string;
  /** JSON array: the step's runs-on labels; a runner takes the job only if it has them all. */
  labels: string;
  /** embedded, or agent:<name>. */
  runner: string | null;
  /** A running job whose lease passes unrenewed is lost (agent died, server restarted). */
  lease_expires_at: string | null;
  reason: string | null;
  exit_code: number | null;
  /** JSON: outputs, fingerprint, log digests, the signed link. */
  result_json: string | null;
  queued_at: string | null;
  started_at: string | null;
  finished_at: string | null;
}

export interface RunLogsTable {
  id: Generated<number>;
  step_id: string;
  seq: number;
  stream: string;
  data: Buffer;
  at: string;
}

export interface AgentsTable {
  id: string;
  name: string;
  /** The agent acts as this service account (its API key is the agent credential). */
  service_account_id: string;
  /** JSON array of labels. */
  labels: string;
  /** Ed25519 public key (SPKI PEM) that signs the agent's link records. */
  public_key: string;
  created_at: string;
  registered_with: string;
  last_seen_at: string | null;
  disabled_at: string | null;
}

export interface AgentRegistrationTokensTable {
  token_hash: string;
  labels: string;
  created_at: string;
  created_by: string;
  expires_at: string;
  used_at: string | null;
}

/** Key-encryption keys of the vault, each wrapped (AES-256-GCM) by the root key. */
export interface VaultKeysTable {
  /** `kek_<hex>`; bound into the wrap of every data key under it. */
  id: string;
  /** nonce (12) || ciphertext (32) || tag (16), under the root key's wrapping key. */
  wrapped: Buffer;
  /** Id of the root key that wrapped it (all rows change together on root rotation). */
  root_key_id: string;
  /** active (new data keys are wrapped by it; at most one) | retired (still decrypts). */
  state: string;
  created_at: string;
  retired_at: string | null;
}

/** Vault records sealed by the root key: `root-check` (the key-check) and `audit-hmac`. */
export interface VaultMetaTable {
  name: string;
  root_key_id: string;
  /** nonce || ciphertext || tag under the root key's wrapping key. */
  sealed: Buffer;
  updated_at: string;
}

/**
 * Keys the vault holds for other domains (`identity-seal`, `audit-checkpoint`), each wrapped by
 * the root key with its name (and public key, if any) in the AAD.
 */
export interface VaultSealedKeysTable {
  name: string;
  /** Id of the root key that wrapped it. */
  root_key_id: string;
  /** nonce (12) || ciphertext (32) || tag (16): the 256-bit key or Ed25519 seed. */
  sealed: Buffer;
  /** Ed25519 public key (32 bytes) in clear, so verifiers need no root key; null for symmetric keys. */
  public_key: Buffer | null;
  /** generated (in the vault) | imported (from an old install's key file). */
  origin: string;
  created_at: string;
}

/** A secret's identity and metadata; its values live only in secret_versions, encrypted. */
export interface SecretsTable {
  id: string;
  name: string;
  /** global | project | environment (project + environment). */
  scope_kind: string;
  project_id: string | null;
  environment: string | null;
  /**
   * `global`, `project:<projectId>` or `project:<projectId>/env:<environment>` (checked by the
   * database): the scope bound into every version's AAD, so it must never change.
   */
  scope_key: string;
  /** Accountable principal, e.g. `user:<id>` or `service:<id>`. */
  owner: string;
  description: string;
  /** Rotate at least this often (seconds); null: no policy. */
  rotation_interval_s: number | null;
  last_rotated_at: string | null;
  expires_at: string | null;
  last_read_at: string | null;
  /** Newest version (0 before the first value is written). */
  current_version: number;
  created_at: string;
  created_by: string;
  updated_at: string;
  /** Soft delete: versions stay (and stay encrypted) for the record. */
  deleted_at: string | null;
  deleted_by: string | null;
}

/** One value of a secret, envelope-encrypted (src/vault). */
export interface SecretVersionsTable {
  secret_id: string;
  /** 1, 2, 3 … per secret; bound into the AAD. */
  version: number;
  /** Encryption scheme; 1: AES-256-GCM value under a per-version data key, data key AES-256-GCM under kek_id. */
  scheme: number;
  kek_id: string;
  /** The data key: nonce (12) || ciphertext (32) || tag (16) under the KEK. */
  wrapped_dek: Buffer;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
  /** Plaintext length in bytes (for display and limits; not secret). */
  value_size: number;
  created_at: string;
  created_by: string;
}

/** The whole database, for `Kysely<Database>`. */
/** Platform signing keys (attestations, in-toto layouts); private halves sealed by the vault. */
export interface PlatformKeysTable {
  kid: string;
  /** attestation | layout */
  purpose: string;
  /** '' (platform-wide) or 'project:<name>' (a project's layout key). */
  scope: string;
  /** ed25519 */
  algorithm: string;
  /** Raw 32-byte Ed25519 public key. */
  public_key: Buffer;
  /** Vault.sealBlob of the PKCS#8 DER private key. */
  private_sealed: string;
  created_at: string;
  created_by: string;
  /** Set when retired: verify-only from then on. */
  retired_at: string | null;
}

/** Every blob the control plane knows, by digest (the bytes live in the blob store). */
export interface ArtifactsTable {
  /** sha256:<hex> */
  digest: string;
  size: number;
  first_run_id: string | null;
  created_at: string;
}

/** Published names: (name, version) -> one digest, forever. */
export interface ArtifactNamesTable {
  name: string;
  version: string;
  digest: string;
  run_id: string | null;
  /** The output path in the run that produced it. */
  path: string | null;
  created_at: string;
  created_by: string;
}

/** A release: a named set of digests from one run. */
export interface ReleasesTable {
  id: string;
  project_id: string;
  name: string;
  run_id: string;
  created_at: string;
  created_by: string;
}

export interface ReleaseArtifactsTable {
  release_id: string;
  path: string;
  digest: string;
}

/** Signed attestations (DSSE envelopes) the control plane wrote. */
export interface AttestationsTable {
  id: string;
  run_id: string | null;
  /** sha256:<hex> of the subject. */
  subject_digest: string;
  predicate_type: string;
  kid: string;
  /** The DSSE envelope JSON, as signed. */
  envelope: string;
  created_at: string;
}

/** A deployment request and, once it ran, its outcome and signed record. */
export interface DeploymentsTable {
  id: string;
  project_id: string;
  environment: string;
  run_id: string;
  /** JSON: [{path, digest}] sorted by path. */
  artifacts_json: string;
  config_digest: string;
  commit_from: string | null;
  commit_to: string;
  binding_digest: string;
  requested_by: string;
  justification: string;
  ticket: string | null;
  /** requested | approved | deploying | succeeded | failed | rolled_back | refused | cancelled */
  state: string;
  reason: string | null;
  rollback_of: string | null;
  breakglass: number;
  record_envelope: string | null;
  record_digest: string | null;
  record_seq: number | null;
  config_json: Generated<string>;
  rules_json: Generated<string>;
  vsa_envelope: string | null;
  created_at: string;
  finished_at: string | null;
}

export interface DeploymentApprovalsTable {
  id: string;
  deployment_id: string;
  approver: string;
  /** approve | deny */
  decision: string;
  justification: string;
  binding_digest: string;
  roles_json: string;
  envelope: string;
  created_at: string;
}

export interface FreezesTable {
  id: string;
  project_id: string | null;
  environment: string;
  starts_at: string;
  until: string;
  reason: string;
  created_by: string;
  created_at: string;
  lifted_at: string | null;
  lifted_by: string | null;
  cron: string | null;
  timezone: string | null;
  duration_seconds: number | null;
}

export interface BreakGlassRequestsTable {
  id: string;
  deployment_id: string;
  person: string;
  justification: string;
  binding_digest: string;
  created_at: string;
}

export interface IncidentsTable {
  id: string;
  deployment_id: string | null;
  kind: string;
  opened_at: string;
  opened_by: string;
  summary: string;
  postmortem: string | null;
  closed_at: string | null;
  closed_by: string | null;
}

export interface Database {
  audit_events: AuditEventsTable;
  audit_nodes: AuditNodesTable;
  audit_head: AuditHeadTable;
  audit_checkpoints: AuditCheckpointsTable;
  airlock_meta: MetaTable;
  users: UsersTable;
  roles: RolesTable;
  principal_roles: PrincipalRolesTable;
  mfa_totp: MfaTotpTable;
  recovery_codes: RecoveryCodesTable;
  setup_tokens: SetupTokensTable;
  sessions: SessionsTable;
  login_throttle: LoginThrottleTable;
  service_accounts: ServiceAccountsTable;
  api_keys: ApiKeysTable;
  signing_keys: SigningKeysTable;
  policy_versions: PolicyVersionsTable;
  oidc_logins: OidcLoginsTable;
  projects: ProjectsTable;
  runs: RunsTable;
  run_stages: RunStagesTable;
  run_steps: RunStepsTable;
  run_logs: RunLogsTable;
  agents: AgentsTable;
  agent_registration_tokens: AgentRegistrationTokensTable;
  vault_keys: VaultKeysTable;
  vault_meta: VaultMetaTable;
  vault_sealed_keys: VaultSealedKeysTable;
  secrets: SecretsTable;
  platform_keys: PlatformKeysTable;
  artifacts: ArtifactsTable;
  artifact_names: ArtifactNamesTable;
  releases: ReleasesTable;
  release_artifacts: ReleaseArtifactsTable;
  attestations: AttestationsTable;
  deployments: DeploymentsTable;
  deployment_approvals: DeploymentApprovalsTable;
  freezes: FreezesTable;
  breakglass_requests: BreakGlassRequestsTable;
  incidents: IncidentsTable;
  secret_versions: SecretVersionsTable;
}
