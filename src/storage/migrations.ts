/**
 * Versioned migrations, written once for both engines. Column types that differ by engine
 * come from `types`; everything else is portable SQL through Kysely's schema builder.
 * A migration is never edited once released: add a new one.
 */
import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import { StorageError } from '../errors/index.js';
import type { Engine, MigrationState } from './types.js';

interface ColumnTypes {
  readonly int64: 'integer' | 'bigint';
  readonly bytes: 'blob' | 'bytea';
}

function columnTypes(engine: Engine): ColumnTypes {
  // SQLite: INTEGER PRIMARY KEY makes seq the rowid (no second b-tree for the key).
  return engine === 'sqlite' ? { int64: 'integer', bytes: 'blob' } : { int64: 'bigint', bytes: 'bytea' };
}

type Step = (db: Kysely<unknown>, types: ColumnTypes, engine: Engine) => Promise<void>;

const steps: readonly { readonly name: string; readonly up: Step; readonly down: Step }[] = [
  {
    name: '0001_audit_log',
    async up(db, t, engine) {
      await db.schema
        .createTable('audit_events')
        .addColumn('seq', t.int64, (c) => c.primaryKey())
        .addColumn('time', 'text', (c) => c.notNull())
        .addColumn('actor_kind', 'text', (c) => c.notNull())
        .addColumn('actor_id', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('resource', 'text', (c) => c.notNull())
        .addColumn('outcome', 'text', (c) => c.notNull())
        .addColumn('event', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('audit_events_time').on('audit_events').column('time').execute();
      await db.schema.createIndex('audit_events_actor').on('audit_events').columns(['actor_id', 'actor_kind']).execute();
      await db.schema.createIndex('audit_events_action').on('audit_events').column('action').execute();
      await db.schema.createIndex('audit_events_resource').on('audit_events').column('resource').execute();

      await db.schema
        .createTable('audit_nodes')
        .addColumn('level', 'integer', (c) => c.notNull())
        .addColumn('idx', t.int64, (c) => c.notNull())
        .addColumn('hash', t.bytes, (c) => c.notNull())
        .addPrimaryKeyConstraint('audit_nodes_pk', ['level', 'idx'])
        // SQLite: the primary key is the table (one b-tree, not a rowid table plus an index).
        .$call((b) => (engine === 'sqlite' ? b.modifyEnd(sql`without rowid`) : b))
        .execute();

      await db.schema
        .createTable('audit_head')
        .addColumn('id', 'integer', (c) => c.primaryKey().check(sql`id = 1`))
        .addColumn('size', t.int64, (c) => c.notNull())
        .addColumn('root', t.bytes, (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
      // SHA-256("") is the root of the empty tree (RFC 6962 section 2.1).
      const emptyRoot = Buffer.from('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'hex');
      await sql`insert into audit_head (id, size, root, updated_at) values (1, 0, ${emptyRoot}, ${new Date().toISOString()})`.execute(db);

      await db.schema
        .createTable('audit_checkpoints')
        .addColumn('size', t.int64, (c) => c.primaryKey())
        .addColumn('root', t.bytes, (c) => c.notNull())
        .addColumn('note', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('airlock_meta')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('value', 'text', (c) => c.notNull())
        .execute();
    },
    async down(db) {
      for (const table of ['airlock_meta', 'audit_checkpoints', 'audit_head', 'audit_nodes', 'audit_events']) {
        await db.schema.dropTable(table).execute();
      }
    },
  },
  {
    // Identity and access (issue 3). Secrets are never stored in plaintext: tokens and keys as
    // SHA-256 of 256-bit random values, passwords as argon2id, TOTP seeds and private keys sealed.
    name: '0002_identity',
    async up(db, t) {
      await db.schema
        .createTable('users')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('username', 'text', (c) => c.notNull().unique())
        .addColumn('display_name', 'text')
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('password_hash', 'text')
        .addColumn('sso_issuer', 'text')
        .addColumn('sso_subject', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('disabled_at', 'text')
        .addUniqueConstraint('users_sso', ['sso_issuer', 'sso_subject'])
        .execute();

      await db.schema
        .createTable('roles')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('description', 'text', (c) => c.notNull())
        .addColumn('builtin', 'integer', (c) => c.notNull())
        .addColumn('requires_mfa', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('principal_roles')
        .addColumn('principal_kind', 'text', (c) => c.notNull())
        .addColumn('principal_id', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull().references('roles.name'))
        .addColumn('granted_at', 'text', (c) => c.notNull())
        .addColumn('granted_by', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('principal_roles_pk', ['principal_kind', 'principal_id', 'role'])
        .execute();

      await db.schema
        .createTable('mfa_totp')
        .addColumn('user_id', 'text', (c) => c.primaryKey().references('users.id'))
        .addColumn('seed_sealed', 'text', (c) => c.notNull())
        .addColumn('confirmed_at', 'text')
        .addColumn('last_step', t.int64, (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('recovery_codes')
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
        .addColumn('code_hash', 'text', (c) => c.notNull())
        .addColumn('used_at', 'text')
        .addPrimaryKeyConstraint('recovery_codes_pk', ['user_id', 'code_hash'])
        .execute();

      await db.schema
        .createTable('setup_tokens')
        .addColumn('token_hash', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .addColumn('used_at', 'text')
        .execute();

      await db.schema
        .createTable('sessions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('token_hash', 'text', (c) => c.notNull().unique())
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
        .addColumn('auth_method', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('last_seen_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .addColumn('mfa_at', 'text')
        .addColumn('source_address', 'text')
        .addColumn('revoked_at', 'text')
        .addColumn('revoked_reason', 'text')
        .execute();
      await db.schema.createIndex('sessions_user').on('sessions').column('user_id').execute();

      await db.schema
        .createTable('login_throttle')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('failures', 'integer', (c) => c.notNull())
        .addColumn('window_started_at', 'text', (c) => c.notNull())
        .addColumn('locked_until', 'text')
        .execute();

      await db.schema
        .createTable('service_accounts')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('description', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('disabled_at', 'text')
        .execute();

      await db.schema
        .createTable('api_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('service_account_id', 'text', (c) => c.notNull().references('service_accounts.id'))
        .addColumn('key_hash', 'text', (c) => c.notNull().unique())
        .addColumn('description', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text')
        .addColumn('revoked_at', 'text')
        .addColumn('revoked_by', 'text')
        .addColumn('last_used_at', 'text')
        .execute();

      await db.schema
        .createTable('signing_keys')
        .addColumn('kid', 'text', (c) => c.primaryKey())
        .addColumn('alg', 'text', (c) => c.notNull())
        .addColumn('public_jwk', 'text', (c) => c.notNull())
        .addColumn('private_sealed', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('retired_at', 'text')
        .execute();

      await db.schema
        .createTable('policy_versions')
        .addColumn('version', t.int64, (c) => c.primaryKey())
        .addColumn('policies', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull())
        .addColumn('author', 'text', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('oidc_logins')
        .addColumn('state_hash', 'text', (c) => c.primaryKey())
        .addColumn('verifier_sealed', 'text', (c) => c.notNull())
        .addColumn('nonce', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .execute();
    },
    async down(db) {
      for (const table of ['oidc_logins', 'policy_versions', 'signing_keys', 'api_keys', 'service_accounts', 'login_throttle', 'sessions', 'setup_tokens', 'recovery_codes', 'mfa_totp', 'principal_roles', 'roles', 'users']) {
        await db.schema.dropTable(table).execute();
      }
    },
  },
  {
    // Pipelines and runners (issue 4).
    name: '0003_runs',
    async up(db, t, engine) {
      await db.schema
        .createTable('projects')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('repo', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('runs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id'))
        .addColumn('number', t.int64, (c) => c.notNull())
        .addColumn('ref', 'text', (c) => c.notNull())
        .addColumn('commit_sha', 'text', (c) => c.notNull())
        .addColumn('commit_json', 'text', (c) => c.notNull())
        .addColumn('pipeline_name', 'text', (c) => c.notNull())
        .addColumn('pipeline_digest', 'text', (c) => c.notNull())
        .addColumn('pipeline_json', 'text', (c) => c.notNull())
        .addColumn('trigger_json', 'text', (c) => c.notNull())
        .addColumn('trace_id', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('reason', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('started_at', 'text')
        .addColumn('finished_at', 'text')
        .addUniqueConstraint('runs_project_number', ['project_id', 'number'])
        .execute();
      await db.schema.createIndex('runs_state').on('runs').column('state').execute();

      await db.schema
        .createTable('run_stages')
        .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id'))
        .addColumn('stage', 'text', (c) => c.notNull())
        .addColumn('position', 'integer', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('started_at', 'text')
        .addColumn('finished_at', 'text')
        .addPrimaryKeyConstraint('run_stages_pk', ['run_id', 'stage'])
        .execute();

      await db.schema
        .createTable('run_steps')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id'))
        .addColumn('stage', 'text', (c) => c.notNull())
        .addColumn('step', 'text', (c) => c.notNull())
        .addColumn('position', 'integer', (c) => c.notNull())
        .addColumn('attempt', 'integer', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('labels', 'text', (c) => c.notNull())
        .addColumn('runner', 'text')
        .addColumn('lease_expires_at', 'text')
        .addColumn('reason', 'text')
        .addColumn('exit_code', 'integer')
        .addColumn('result_json', 'text')
        .addColumn('queued_at', 'text')
        .addColumn('started_at', 'text')
        .addColumn('finished_at', 'text')
        .execute();
      await db.schema.createIndex('run_steps_run').on('run_steps').columns(['run_id', 'stage', 'step', 'attempt']).unique().execute();
      await db.schema.createIndex('run_steps_state').on('run_steps').column('state').execute();

      await db.schema
        .createTable('run_logs')
        // Insertion order across all steps: the cursor `airlock logs -f` follows.
        .addColumn('id', engine === 'sqlite' ? 'integer' : 'bigserial', (c) => (engine === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey()))
        .addColumn('step_id', 'text', (c) => c.notNull().references('run_steps.id'))
        .addColumn('seq', 'integer', (c) => c.notNull())
        .addColumn('stream', 'text', (c) => c.notNull())
        .addColumn('data', t.bytes, (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('run_logs_step').on('run_logs').columns(['step_id', 'seq']).unique().execute();

      await db.schema
        .createTable('agents')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('service_account_id', 'text', (c) => c.notNull().references('service_accounts.id'))
        .addColumn('labels', 'text', (c) => c.notNull())
        .addColumn('public_key', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('registered_with', 'text', (c) => c.notNull())
        .addColumn('last_seen_at', 'text')
        .addColumn('disabled_at', 'text')
        .execute();

      await db.schema
        .createTable('agent_registration_tokens')
        .addColumn('token_hash', 'text', (c) => c.primaryKey())
        .addColumn('labels', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .addColumn('used_at', 'text')
        .execute();
    },
    async down(db) {
      for (const table of ['agent_registration_tokens', 'agents', 'run_logs', 'run_steps', 'run_stages', 'runs', 'projects']) {
        await db.schema.dropTable(table).execute();
      }
    },
  },
  {
    // Secrets vault (issue 5): envelope encryption. Values exist only as AES-256-GCM ciphertext
    // under a per-version data key, itself wrapped by a key-encryption key wrapped by the root key.
    name: '0004_vault',
    async up(db, t) {
      await db.schema
        .createTable('vault_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('wrapped', t.bytes, (c) => c.notNull())
        .addColumn('root_key_id', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('active', 'retired')`))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('retired_at', 'text')
        .execute();
      // At most one active key, whatever replicas race to rotate.
      await db.schema.createIndex('vault_keys_one_active').on('vault_keys').column('state').unique().where(sql.ref('state'), '=', 'active').execute();

      await db.schema
        .createTable('vault_meta')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('root_key_id', 'text', (c) => c.notNull())
        .addColumn('sealed', t.bytes, (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('secrets')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('scope_kind', 'text', (c) => c.notNull())
        .addColumn('project_id', 'text', (c) => c.references('projects.id'))
        .addColumn('environment', 'text')
        .addColumn('scope_key', 'text', (c) => c.notNull())
        .addColumn('owner', 'text', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull())
        .addColumn('rotation_interval_s', t.int64)
        .addColumn('last_rotated_at', 'text')
        .addColumn('expires_at', 'text')
        .addColumn('last_read_at', 'text')
        .addColumn('current_version', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addColumn('deleted_at', 'text')
        .addColumn('deleted_by', 'text')
        // scope_key is the scope bound into every value's AAD: derived here, so it can never disagree with the columns.
        .addCheckConstraint(
          'secrets_scope',
          sql`(scope_kind = 'global' and project_id is null and environment is null and scope_key = 'global')
            or (scope_kind = 'project' and project_id is not null and environment is null and scope_key = 'project:' || project_id)
            or (scope_kind = 'environment' and project_id is not null and environment is not null and scope_key = 'project:' || project_id || '/env:' || environment)`,
        )
        .execute();
      // A name is unique among the live secrets of one scope; deleted ones keep theirs for the record.
      await db.schema.createIndex('secrets_live_name').on('secrets').columns(['scope_key', 'name']).unique().where(sql.ref('deleted_at'), 'is', null).execute();
      await db.schema.createIndex('secrets_project').on('secrets').columns(['project_id', 'environment']).execute();

      await db.schema
        .createTable('secret_versions')
        .addColumn('secret_id', 'text', (c) => c.notNull().references('secrets.id'))
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('scheme', 'integer', (c) => c.notNull())
        .addColumn('kek_id', 'text', (c) => c.notNull().references('vault_keys.id'))
        .addColumn('wrapped_dek', t.bytes, (c) => c.notNull())
        .addColumn('nonce', t.bytes, (c) => c.notNull())
        .addColumn('ciphertext', t.bytes, (c) => c.notNull())
        .addColumn('tag', t.bytes, (c) => c.notNull())
        .addColumn('value_size', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('secret_versions_pk', ['secret_id', 'version'])
        .execute();
      // Rewrap walks the versions not yet under the active key.
      await db.schema.createIndex('secret_versions_kek').on('secret_versions').column('kek_id').execute();
    },
    async down(db) {
      for (const table of ['secret_versions', 'secrets', 'vault_meta', 'vault_keys']) {
        await db.schema.dropTable(table).execute();
      }
    },
  },
  {
    // Other keys move into the vault (issue 5): the identity sealing key and the audit
    // checkpoint key, each wrapped by the root key. Filled at vault open, not here: a migration
    // has no root key (and imports the old key files of an existing install then).
    name: '0005_vault_sealed_keys',
    async up(db, t) {
      await db.schema
        .createTable('vault_sealed_keys')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('root_key_id', 'text', (c) => c.notNull())
        .addColumn('sealed', t.bytes, (c) => c.notNull())
        .addColumn('public_key', t.bytes)
        .addColumn('origin', 'text', (c) => c.notNull().check(sql`origin in ('generated', 'imported')`))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
    },
    async down(db) {
      await db.schema.dropTable('vault_sealed_keys').execute();
    },
  },
  {
    // Artifacts and provenance (issue 6): signing keys (private halves sealed by the vault),
    // immutable artifact names, releases pinned to digests, and signed attestations.
    name: '0006_artifacts_provenance',
    async up(db, t) {
      await db.schema
        .createTable('platform_keys')
        .addColumn('kid', 'text', (c) => c.primaryKey())
        // attestation: provenance, test results, SBOMs, VSAs; layout: in-toto root layouts.
        .addColumn('purpose', 'text', (c) => c.notNull().check(sql`purpose in ('attestation', 'layout')`))
        // '' for the platform-wide attestation key; 'project:<name>' for a project's layout key.
        .addColumn('scope', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('algorithm', 'text', (c) => c.notNull().check(sql`algorithm = 'ed25519'`))
        .addColumn('public_key', t.bytes, (c) => c.notNull())
        // Vault.sealBlob of the PKCS#8 DER private key; never readable without the root key.
        .addColumn('private_sealed', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        // Set when a newer key takes over: verify-only from then on.
        .addColumn('retired_at', 'text')
        .execute();
      // At most one active key per purpose and scope.
      await db.schema.createIndex('platform_keys_active').on('platform_keys').columns(['purpose', 'scope']).unique().where(sql.ref('retired_at'), 'is', null).execute();

      await db.schema
        .createTable('artifacts')
        .addColumn('digest', 'text', (c) => c.primaryKey())
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('first_run_id', 'text', (c) => c.references('runs.id'))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();

      // A name and version, once published, point to one digest forever (primary key).
      await db.schema
        .createTable('artifact_names')
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('version', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull().references('artifacts.digest'))
        .addColumn('run_id', 'text', (c) => c.references('runs.id'))
        .addColumn('path', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('artifact_names_pk', ['name', 'version'])
        .execute();
      await db.schema.createIndex('artifact_names_digest').on('artifact_names').column('digest').execute();

      await db.schema
        .createTable('releases')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id'))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('releases_name').on('releases').columns(['project_id', 'name']).unique().execute();
      await db.schema
        .createTable('release_artifacts')
        .addColumn('release_id', 'text', (c) => c.notNull().references('releases.id'))
        .addColumn('path', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull().references('artifacts.digest'))
        .addPrimaryKeyConstraint('release_artifacts_pk', ['release_id', 'path'])
        .execute();

      await db.schema
        .createTable('attestations')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('run_id', 'text', (c) => c.references('runs.id'))
        // sha256:<hex> of the first subject (one row per subject digest would duplicate envelopes).
        .addColumn('subject_digest', 'text', (c) => c.notNull())
        .addColumn('predicate_type', 'text', (c) => c.notNull())
        .addColumn('kid', 'text', (c) => c.notNull().references('platform_keys.kid'))
        // The DSSE envelope, as signed (JSON text).
        .addColumn('envelope', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('attestations_subject').on('attestations').column('subject_digest').execute();
      // Attesting a run is idempotent: a second attempt (two last steps finishing at once) adds nothing.
      await db.schema.createIndex('attestations_once').on('attestations').columns(['run_id', 'subject_digest', 'predicate_type']).unique().execute();
      await db.schema.createIndex('attestations_run').on('attestations').column('run_id').execute();
    },
    async down(db) {
      for (const table of ['attestations', 'release_artifacts', 'releases', 'artifact_names', 'artifacts', 'platform_keys']) {
        await db.schema.dropTable(table).execute();
      }
    },
  },
  {
    // Delivery (issue 7): deployment requests bound to what ships, approvals, freezes,
    // break-glass and incidents. Records are signed and named by an audit event.
    name: '0007_delivery',
    async up(db) {
      // The address a person commits with: segregation of duties matches commit authors to users.
      // One address, one person: enforced by the identity domain under the audit head lock
      // (users.ts), which names the conflict; addresses are stored lower-cased.
      await db.schema.alterTable('users').addColumn('email', 'text').execute();
      await db.schema
        .createTable('deployments')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id'))
        .addColumn('environment', 'text', (c) => c.notNull())
        .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id'))
        // JSON: [{path, digest}] sorted by path: exactly what ships.
        .addColumn('artifacts_json', 'text', (c) => c.notNull())
        .addColumn('config_digest', 'text', (c) => c.notNull())
        .addColumn('commit_from', 'text')
        .addColumn('commit_to', 'text', (c) => c.notNull())
        // sha256 of the canonical binding (environment, digests, config digest, commit range, run).
        .addColumn('binding_digest', 'text', (c) => c.notNull())
        .addColumn('requested_by', 'text', (c) => c.notNull())
        .addColumn('justification', 'text', (c) => c.notNull())
        .addColumn('ticket', 'text')
        // requested | approved | deploying | succeeded | failed | rolled_back | refused | cancelled
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('reason', 'text')
        .addColumn('rollback_of', 'text')
        .addColumn('breakglass', 'integer', (c) => c.notNull().defaultTo(0))
        // The signed record (DSSE JSON) and its digest, which the audit event names.
        .addColumn('record_envelope', 'text')
        .addColumn('record_digest', 'text')
        .addColumn('record_seq', 'integer')
        // The effective (non-secret) config as JSON, so the next deployment's record can show its diff.
        .addColumn('config_json', 'text', (c) => c.notNull().defaultTo('{}'))
        // The environment's protection rules (JSON) the request was made under: a change to a
        // protected environment's rules needs an approval from one of its previous owners.
        .addColumn('rules_json', 'text', (c) => c.notNull().defaultTo(''))
        // The SLSA VSA (DSSE JSON) of what the promotion verified.
        .addColumn('vsa_envelope', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('finished_at', 'text')
        .execute();
      await db.schema.createIndex('deployments_env').on('deployments').columns(['project_id', 'environment', 'created_at']).execute();

      await db.schema
        .createTable('deployment_approvals')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('deployment_id', 'text', (c) => c.notNull().references('deployments.id'))
        .addColumn('approver', 'text', (c) => c.notNull())
        .addColumn('decision', 'text', (c) => c.notNull().check(sql`decision in ('approve', 'deny')`))
        .addColumn('justification', 'text', (c) => c.notNull())
        .addColumn('binding_digest', 'text', (c) => c.notNull())
        .addColumn('roles_json', 'text', (c) => c.notNull())
        // The approval as a signed attestation (DSSE JSON).
        .addColumn('envelope', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('deployment_approvals_dep').on('deployment_approvals').column('deployment_id').execute();

      await db.schema
        .createTable('freezes')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.references('projects.id'))
        .addColumn('environment', 'text', (c) => c.notNull())
        .addColumn('starts_at', 'text', (c) => c.notNull())
        .addColumn('until', 'text', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('lifted_at', 'text')
        .addColumn('lifted_by', 'text')
        // Recurring freezes: a cron schedule in a time zone, each occurrence lasting duration_seconds,
        // between starts_at and until. All three null for a one-off freeze.
        .addColumn('cron', 'text')
        .addColumn('timezone', 'text')
        .addColumn('duration_seconds', 'integer')
        .execute();

      await db.schema
        .createTable('breakglass_requests')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('deployment_id', 'text', (c) => c.notNull().references('deployments.id'))
        .addColumn('person', 'text', (c) => c.notNull())
        .addColumn('justification', 'text', (c) => c.notNull())
        .addColumn('binding_digest', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('breakglass_requests_dep').on('breakglass_requests').column('deployment_id').execute();

      await db.schema
        .createTable('incidents')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('deployment_id', 'text', (c) => c.references('deployments.id'))
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('opened_at', 'text', (c) => c.notNull())
        .addColumn('opened_by', 'text', (c) => c.notNull())
        .addColumn('summary', 'text', (c) => c.notNull())
        .addColumn('postmortem', 'text')
        .addColumn('closed_at', 'text')
        .addColumn('closed_by', 'text')
        .execute();
    },
    async down(db) {
      for (const table of ['incidents', 'breakglass_requests', 'freezes', 'deployment_approvals', 'deployments']) {
        await db.schema.dropTable(table).execute();
      }
      await db.schema.alterTable('users').dropColumn('email').execute();
    },
  },
];

/** Names of all migrations this build knows, oldest first. */
export const MIGRATION_NAMES: readonly string[] = steps.map((s) => s.name);

const TABLE = 'airlock_migrations';

/**
 * Apply every pending migration in ONE transaction, serialised across processes (SQLite:
 * BEGIN IMMEDIATE; PostgreSQL: an advisory lock), creating the PostgreSQL schema if asked. Both engines have
 * transactional DDL, so a failure leaves the database exactly as it was.
 *
 * Why not kysely's Migrator: it checks for its tables by introspecting every table of every
 * schema in the database, which fails when another schema's tables are dropped meanwhile.
 */
export async function applyMigrations(conn: Kysely<unknown>, engine: Engine, schema?: string): Promise<string[]> {
  const types = columnTypes(engine);
  if (engine === 'sqlite') {
    await sql`begin immediate`.execute(conn);
  } else {
    await sql`begin`.execute(conn);
    // One lock for the whole database: migrations are rare, and CREATE SCHEMA IF NOT EXISTS
    // itself races (unique violation) unless serialised.
    await sql`select pg_advisory_xact_lock(hashtext('airlock.migrations'))`.execute(conn);
  }
  try {
    if (schema !== undefined) await sql`create schema if not exists ${sql.id(schema)}`.execute(conn);
    await sql`create table if not exists ${sql.table(TABLE)} (name text primary key, executed_at text not null)`.execute(conn);
    const done = new Set((await sql<{ name: string }>`select name from ${sql.table(TABLE)}`.execute(conn)).rows.map((r) => r.name));
    const unknown = [...done].filter((n) => !MIGRATION_NAMES.includes(n));
    if (unknown.length > 0) {
      // A newer Airlock migrated this database: running older code against it is unsafe.
      throw new StorageError('MIGRATION_FAILED', `the database has migrations this version does not know (${unknown.join(', ')}); upgrade Airlock`);
    }
    const applied: string[] = [];
    for (const step of steps) {
      if (done.has(step.name)) continue;
      try {
        await step.up(conn, types, engine);
      } catch (err) {
        throw new StorageError('MIGRATION_FAILED', `migration ${step.name} failed; nothing was applied`, { cause: err });
      }
      await sql`insert into ${sql.table(TABLE)} (name, executed_at) values (${step.name}, ${new Date().toISOString()})`.execute(conn);
      applied.push(step.name);
    }
    await sql`commit`.execute(conn);
    return applied;
  } catch (err) {
    await sql`rollback`.execute(conn).catch(() => undefined);
    throw err;
  }
}

/** Every known migration with when it ran (null: pending). Reads only. */
export async function readMigrationState(db: Kysely<unknown>, engine: Engine): Promise<MigrationState[]> {
  const exists =
    engine === 'sqlite'
      ? (await sql<{ n: number }>`select count(*) as n from sqlite_master where type = 'table' and name = ${TABLE}`.execute(db)).rows[0]?.n === 1
      : (await sql<{ t: string | null }>`select to_regclass(${TABLE})::text as t`.execute(db)).rows[0]?.t != null;
  const ran = new Map<string, string>();
  if (exists) {
    for (const r of (await sql<{ name: string; executed_at: string }>`select name, executed_at from ${sql.table(TABLE)}`.execute(db)).rows) ran.set(r.name, r.executed_at);
  }
  return MIGRATION_NAMES.map((name) => ({ name, executedAt: ran.get(name) ?? null }));
}
