/**
 * One typed configuration, compiled from (highest precedence first) command-line flags,
 * AIRLOCK_* environment variables, an optional YAML/JSON file, then defaults. It is
 * validated once at start-up: a bad value stops the process with a message naming the
 * setting, so a misconfigured server never half-starts.
 */
import { readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors/index.js';

/** Which database engine a URL selects. */
export type DatabaseConfig =
  | { readonly kind: 'sqlite'; readonly path: string }
  | { readonly kind: 'postgres'; readonly url: string; readonly schema: string | undefined };

/** The compiled, validated configuration every component receives. */
export interface Config {
  /** Absolute path of AIRLOCK_HOME: database file, keys, local state. */
  readonly home: string;
  readonly database: DatabaseConfig;
  readonly listen: { readonly host: string; readonly port: number };
  /** Checkpoint origin line and signing key name (C2SP tlog-checkpoint). */
  readonly auditOrigin: string;
  /** Upper bound on the delay between a commit and the checkpoint that covers it. */
  readonly checkpointIntervalMs: number;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Where the file settings came from, if any (for `airlock config show`). */
  readonly configFile: string | undefined;
  /** Public base URL: JWT issuer, OIDC redirect, and whether cookies are `Secure` (https). */
  readonly publicUrl: string;
  /** Sessions end after this long without use, and in any case after `sessionMaxHours`. */
  readonly sessionIdleMinutes: number;
  readonly sessionMaxHours: number;
  /** OpenID Connect SSO (file only; the client secret may come from AIRLOCK_OIDC_CLIENT_SECRET). */
  readonly oidc: OidcConfig | undefined;
  /** Pipeline steps: bubblewrap sandbox `auto` (when installed), `required`, or `off`. */
  readonly stepSandbox: 'auto' | 'required' | 'off';
  /** A running step whose runner stops renewing its lease this long is lost. */
  readonly runnerLeaseSeconds: number;
  /** The daily secrets check flags a secret nobody has read for this many days. */
  readonly secretUnusedDays: number;
  /**
   * Where step workspaces are made: outside AIRLOCK_HOME, so nothing of the home (not even its
   * path) appears inside a step.
   */
  readonly workDir: string;
  /**
   * Signed approval webhooks (AIRLOCK_APPROVAL_WEBHOOK_URL, AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE);
   * empty when none are configured. Every URL shares the one HMAC secret.
   */
  readonly approvalWebhooks: readonly ApprovalWebhookConfig[];
}

/** One approval webhook receiver. `secret` is the HMAC key: never print or log it. */
export interface ApprovalWebhookConfig {
  readonly url: string;
  readonly secret: Buffer;
  /** Where the secret was read from (safe to show). */
  readonly secretFile: string;
}

/** SSO settings; see docs/identity.md. */
export interface OidcConfig {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string | undefined;
  /** IdP group -> Airlock roles. */
  readonly roleMapping: Readonly<Record<string, readonly string[]>>;
  readonly groupsClaim: string;
  /** Accept the IdP's `amr` claim as MFA (RFC 8176 values such as otp, hwk). */
  readonly trustAmr: boolean;
  /** Plain-http issuer (tests and local development only). */
  readonly allowInsecure: boolean;
}

/** Settings as they may appear in flags or the config file, before validation. */
export interface ConfigInput {
  home?: string | undefined;
  databaseUrl?: string | undefined;
  databaseSchema?: string | undefined;
  listen?: string | undefined;
  auditOrigin?: string | undefined;
  checkpointIntervalMs?: string | number | undefined;
  logLevel?: string | undefined;
  publicUrl?: string | undefined;
  sessionIdleMinutes?: string | number | undefined;
  sessionMaxHours?: string | number | undefined;
  stepSandbox?: string | undefined;
  runnerLeaseSeconds?: string | number | undefined;
  secretUnusedDays?: string | number | undefined;
  workDir?: string | undefined;
  /** One URL, several comma-separated, or (in the file) a list. */
  approvalWebhookUrl?: string | readonly string[] | undefined;
  approvalWebhookSecretFile?: string | undefined;
}

/** Environment variable for each setting; also the name errors use. */
export const ENV_NAMES: Readonly<Record<keyof ConfigInput, string>> = {
  home: 'AIRLOCK_HOME',
  databaseUrl: 'AIRLOCK_DATABASE_URL',
  databaseSchema: 'AIRLOCK_DATABASE_SCHEMA',
  listen: 'AIRLOCK_LISTEN',
  auditOrigin: 'AIRLOCK_AUDIT_ORIGIN',
  checkpointIntervalMs: 'AIRLOCK_CHECKPOINT_INTERVAL_MS',
  logLevel: 'AIRLOCK_LOG_LEVEL',
  publicUrl: 'AIRLOCK_PUBLIC_URL',
  sessionIdleMinutes: 'AIRLOCK_SESSION_IDLE_MINUTES',
  sessionMaxHours: 'AIRLOCK_SESSION_MAX_HOURS',
  stepSandbox: 'AIRLOCK_STEP_SANDBOX',
  runnerLeaseSeconds: 'AIRLOCK_RUNNER_LEASE_SECONDS',
  secretUnusedDays: 'AIRLOCK_SECRET_UNUSED_DAYS',
  workDir: 'AIRLOCK_WORK_DIR',
  approvalWebhookUrl: 'AIRLOCK_APPROVAL_WEBHOOK_URL',
  approvalWebhookSecretFile: 'AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE',
};

const DEFAULTS = {
  home: './.airlock',
  listen: '127.0.0.1:7300',
  auditOrigin: 'airlock.local/audit',
  checkpointIntervalMs: 250,
  logLevel: 'info',
  sessionIdleMinutes: 30,
  sessionMaxHours: 12,
  stepSandbox: 'auto',
  runnerLeaseSeconds: 30,
  secretUnusedDays: 90,
} as const;

const oidcSchema = z
  .object({
    issuer: z.url(),
    clientId: z.string().min(1),
    clientSecret: z.string().min(1).optional(),
    roleMapping: z.record(z.string(), z.array(z.string().min(1))).default({}),
    groupsClaim: z.string().min(1).default('groups'),
    trustAmr: z.boolean().default(false),
    allowInsecure: z.boolean().default(false),
  })
  .strict();

const fileSchema = z
  .object({
    home: z.string().min(1),
    databaseUrl: z.string().min(1),
    databaseSchema: z.string().min(1),
    listen: z.string().min(1),
    auditOrigin: z.string().min(1),
    checkpointIntervalMs: z.number().int(),
    logLevel: z.string(),
    publicUrl: z.string().min(1),
    sessionIdleMinutes: z.number().int(),
    sessionMaxHours: z.number().int(),
    stepSandbox: z.string(),
    runnerLeaseSeconds: z.number().int(),
    secretUnusedDays: z.number().int(),
    workDir: z.string().min(1),
    approvalWebhookUrl: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
    approvalWebhookSecretFile: z.string().min(1),
    oidc: oidcSchema,
  })
  .partial()
  .strict();

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Sources for {@link loadConfig}; all optional so tests can pass exactly what they mean. */
export interface ConfigSources {
  readonly flags?: ConfigInput & { config?: string | undefined };
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

/** Compile and validate the configuration. Throws ConfigError naming the bad setting. */
export function loadConfig(sources: ConfigSources = {}): Config {
  const env = sources.env ?? process.env;
  const cwd = sources.cwd ?? process.cwd();
  const flags = sources.flags ?? {};
  const configFile = flags.config ?? env.AIRLOCK_CONFIG;
  const file: FileInput = configFile === undefined ? {} : readConfigFile(resolve(cwd, configFile));

  // Flags > environment > file > defaults, setting by setting.
  const pick = <K extends keyof ConfigInput>(key: K): ConfigInput[K] | undefined => {
    const fromFlag = flags[key];
    if (fromFlag !== undefined) return fromFlag;
    const fromEnv = env[ENV_NAMES[key]];
    if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
    return file[key];
  };

  const home = resolve(cwd, pick('home') ?? DEFAULTS.home);
  const listen = parseListen(pick('listen') ?? DEFAULTS.listen);
  const database = parseDatabase(pick('databaseUrl'), pick('databaseSchema'), home, cwd);
  const auditOrigin = pick('auditOrigin') ?? DEFAULTS.auditOrigin;
  // The origin doubles as the note key name, which C2SP forbids to contain spaces or '+'.
  if (!/^[\x21-\x7e]+$/.test(auditOrigin) || auditOrigin.includes('+')) {
    throw new ConfigError(ENV_NAMES.auditOrigin, 'must be printable ASCII without spaces or "+" (for example "airlock.example.com/audit")');
  }
  const interval = Number(pick('checkpointIntervalMs') ?? DEFAULTS.checkpointIntervalMs);
  if (!Number.isInteger(interval) || interval < 10 || interval > 1000) {
    // Above 1 s a commit could wait longer than the promised checkpoint latency.
    throw new ConfigError(ENV_NAMES.checkpointIntervalMs, 'must be an integer number of milliseconds between 10 and 1000');
  }
  const logLevel = pick('logLevel') ?? DEFAULTS.logLevel;
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError(ENV_NAMES.logLevel, `must be one of ${LOG_LEVELS.join(', ')}`);
  }
  const publicUrl = parsePublicUrl(pick('publicUrl'), listen);
  const sessionIdleMinutes = boundedSetting('sessionIdleMinutes', pick('sessionIdleMinutes') ?? DEFAULTS.sessionIdleMinutes, 1, 24 * 60);
  const sessionMaxHours = boundedSetting('sessionMaxHours', pick('sessionMaxHours') ?? DEFAULTS.sessionMaxHours, 1, 24 * 7);
  const stepSandbox = pick('stepSandbox') ?? DEFAULTS.stepSandbox;
  if (stepSandbox !== 'auto' && stepSandbox !== 'required' && stepSandbox !== 'off') throw new ConfigError(ENV_NAMES.stepSandbox, 'must be auto, required or off');
  const runnerLeaseSeconds = boundedSetting('runnerLeaseSeconds', pick('runnerLeaseSeconds') ?? DEFAULTS.runnerLeaseSeconds, 2, 600);
  const secretUnusedDays = boundedSetting('secretUnusedDays', pick('secretUnusedDays') ?? DEFAULTS.secretUnusedDays, 1, 3650);
  const oidc = file.oidc === undefined ? undefined : { ...file.oidc, clientSecret: nonEmpty(env.AIRLOCK_OIDC_CLIENT_SECRET) ?? file.oidc.clientSecret };
  const workDir = resolve(cwd, pick('workDir') ?? join(tmpdir(), 'airlock-work'));
  if (workDir === home || workDir.startsWith(`${home}/`)) throw new ConfigError(ENV_NAMES.workDir, 'must be outside AIRLOCK_HOME (steps must not see the home)');
  const approvalWebhooks = parseApprovalWebhooks(pick('approvalWebhookUrl'), pick('approvalWebhookSecretFile'), cwd);
  return Object.freeze({
    approvalWebhooks,
    workDir,
    stepSandbox,
    runnerLeaseSeconds,
    secretUnusedDays,
    publicUrl,
    sessionIdleMinutes,
    sessionMaxHours,
    oidc,
    home,
    database,
    listen,
    auditOrigin,
    checkpointIntervalMs: interval,
    logLevel: logLevel as Config['logLevel'],
    configFile: configFile === undefined ? undefined : resolve(cwd, configFile),
  });
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}

function boundedSetting(key: keyof ConfigInput, value: string | number, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(ENV_NAMES[key], `must be an integer between ${min} and ${max}`);
  return n;
}

function parsePublicUrl(value: string | undefined, listen: { host: string; port: number }): string {
  if (value === undefined) {
    const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
    return `http://${host === '0.0.0.0' || host === '[::]' ? 'localhost' : host}:${listen.port}`;
  }
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new ConfigError(ENV_NAMES.publicUrl, `"${value}" is not a URL (for example https://airlock.example.com)`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new ConfigError(ENV_NAMES.publicUrl, 'must be an http:// or https:// URL');
  if (u.search !== '' || u.hash !== '' || u.username !== '' || u.password !== '') throw new ConfigError(ENV_NAMES.publicUrl, 'must not carry credentials, a query or a fragment');
  return u.toString().replace(/\/$/, '');
}

/** Below this an offline guess of the HMAC key from one captured notification becomes thinkable. */
export const MIN_WEBHOOK_SECRET_BYTES = 32;
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

function parseApprovalWebhooks(urls: string | readonly string[] | undefined, secretFile: string | undefined, cwd: string): ApprovalWebhookConfig[] {
  const URL_SETTING = ENV_NAMES.approvalWebhookUrl;
  const FILE_SETTING = ENV_NAMES.approvalWebhookSecretFile;
  if (urls === undefined) {
    // A secret with nowhere to go means someone believes approvers are being told; they are not.
    if (secretFile !== undefined) throw new ConfigError(FILE_SETTING, `is set but ${URL_SETTING} is not; set both, or neither`);
    return [];
  }
  const list = (typeof urls === 'string' ? urls.split(',') : [...urls]).map((u) => u.trim());
  const parsed = list.map((entry, i) => {
    // Never echo the URL: webhook URLs often carry a token in their path or query.
    const which = list.length === 1 ? 'the URL' : `entry ${i + 1}`;
    if (entry === '') throw new ConfigError(URL_SETTING, `${which} is empty (separate several URLs with commas)`);
    let u: URL;
    try {
      u = new URL(entry);
    } catch {
      throw new ConfigError(URL_SETTING, `${which} is not an absolute URL (for example https://chat.example.com/hooks/approvals)`);
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new ConfigError(URL_SETTING, `${which} must be an https:// URL`);
    if (u.protocol === 'http:' && !LOOPBACK_HOSTS.has(u.hostname)) {
      throw new ConfigError(URL_SETTING, `${which} must use https:// (the notification names what ships, who asked and why; plain http is accepted only for localhost, 127.0.0.1 or ::1)`);
    }
    if (u.username !== '' || u.password !== '') throw new ConfigError(URL_SETTING, `${which} must not carry user:password@ (put the receiver's token in the path or query)`);
    return u.toString();
  });
  if (secretFile === undefined) throw new ConfigError(FILE_SETTING, `is required when ${URL_SETTING} is set: the path of a file holding the HMAC secret (at least ${MIN_WEBHOOK_SECRET_BYTES} bytes, mode 0600)`);
  const path = resolve(cwd, secretFile);
  const secret = readWebhookSecret(path, FILE_SETTING);
  return parsed.map((url) => ({ url, secret, secretFile: path }));
}

function readWebhookSecret(path: string, setting: string): Buffer {
  let raw: Buffer;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new ConfigError(setting, `${path} is not a regular file`);
    // Anyone who can read the key can forge approval notifications.
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      throw new ConfigError(setting, `${path} is accessible to group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); run chmod 600 ${path}`);
    }
    raw = readFileSync(path);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(setting, `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
  const secret = Buffer.from(raw.toString('latin1').trim(), 'latin1');
  raw.fill(0);
  if (secret.length < MIN_WEBHOOK_SECRET_BYTES) {
    // Never echo the content, only its size.
    throw new ConfigError(setting, `${path} holds ${secret.length} bytes after trimming; at least ${MIN_WEBHOOK_SECRET_BYTES} are required (for example: openssl rand -hex 32 > ${path})`);
  }
  return secret;
}

type FileInput = Omit<ConfigInput, never> & { oidc?: z.infer<typeof oidcSchema> };

function readConfigFile(path: string): FileInput {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError('AIRLOCK_CONFIG', `cannot read config file ${path} (${code})`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError('AIRLOCK_CONFIG', `config file ${path} is not valid YAML: ${(err as Error).message}`);
  }
  const parsed = fileSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = issue?.path.join('.') || (issue?.code === 'unrecognized_keys' ? issue.keys.join(', ') : '(root)');
    throw new ConfigError(`${key} in ${path}`, issue?.message ?? 'invalid');
  }
  return parsed.data;
}

function parseListen(value: string): { host: string; port: number } {
  // host:port, with [v6]:port for IPv6 literals.
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  const host = m ? (m[1] ?? m[2]) : undefined;
  if (host === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(ENV_NAMES.listen, `"${value}" is not host:port (for example 127.0.0.1:7300, or [::1]:7300)`);
  }
  return { host, port };
}

function parseDatabase(url: string | undefined, schema: string | undefined, home: string, cwd: string): DatabaseConfig {
  if (url === undefined) return { kind: 'sqlite', path: resolve(home, 'airlock.db') };
  if (/^postgres(ql)?:\/\//.test(url)) {
    try {
      new URL(url);
    } catch {
      throw new ConfigError(ENV_NAMES.databaseUrl, 'is not a valid postgres:// URL');
    }
    if (schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
      throw new ConfigError(ENV_NAMES.databaseSchema, 'must be a lower-case SQL identifier');
    }
    return { kind: 'postgres', url, schema };
  }
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length).replace(/^\/\//, '');
    if (path === '') throw new ConfigError(ENV_NAMES.databaseUrl, 'sqlite: URL needs a file path, as sqlite:/var/lib/airlock/airlock.db');
    return { kind: 'sqlite', path: isAbsolute(path) ? path : resolve(cwd, path) };
  }
  // Never echo the URL: it may carry a password.
  throw new ConfigError(ENV_NAMES.databaseUrl, 'must start with postgres://, postgresql:// or sqlite:');
}

/** The configuration as safe to print: the database password is redacted. */
export function redactedConfig(config: Config): Record<string, unknown> {
  const database =
    config.database.kind === 'postgres'
      ? { kind: 'postgres', url: redactUrl(config.database.url), schema: config.database.schema ?? null }
      : config.database;
  const oidc = config.oidc === undefined ? undefined : { ...config.oidc, clientSecret: config.oidc.clientSecret === undefined ? undefined : '***' };
  const approvalWebhooks = config.approvalWebhooks.map((w) => ({ url: redactWebhookUrl(w.url), secretFile: w.secretFile, secret: '***' }));
  return { ...config, database, oidc, approvalWebhooks };
}

function redactUrl(url: string): string {
  const u = new URL(url);
  if (u.password !== '') u.password = '***';
  return u.toString();
}

function redactWebhookUrl(url: string): string {
  const u = new URL(url);
  // A webhook URL's query usually is its token.
  if (u.search !== '') u.search = '***';
  u.hash = '';
  return u.toString();
}
