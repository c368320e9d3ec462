/**
 * `airlock policy show` and `airlock policy test`: read and try Cedar policy sets offline
 * (the shipped defaults, a directory of .cedar files, or with --active the version in force).
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import {
  NO_MFA_AGE_SECONDS,
  PolicyEngine,
  activePolicyVersion,
  defaultPolicies,
  policySchemaText,
  readPolicyDirectory,
} from '../../policy/index.js';
import type { AuthzRequest, Decision, PrincipalRef, Refusal, ResourceRef } from '../../policy/index.js';
import type { Cli } from '../cli.js';
import { EXIT_FAILED, EXIT_OK, UsageError } from '../cli.js';
import { cliConfig, openReader } from '../context.js';
import { printJson, say } from '../io.js';

interface SetOptions {
  readonly policies?: string;
  readonly active?: boolean;
}

/** Where the evaluated set came from. */
interface LoadedSet {
  readonly source: 'defaults' | 'directory' | 'active';
  readonly label: string;
  readonly version: number | null;
  readonly engine: PolicyEngine;
}

/** Load the set named by --policies / --active (default: the shipped set); validates it. */
async function loadSet(cli: Cli, command: Command, opts: SetOptions): Promise<LoadedSet> {
  if (opts.policies !== undefined && opts.active === true) throw new UsageError('give at most one of --policies and --active');
  if (opts.policies !== undefined) {
    const dir = opts.policies;
    return { source: 'directory', label: dir, version: null, engine: PolicyEngine.load(readPolicyDirectory(resolve(cli.io.cwd, dir))) };
  }
  if (opts.active === true) {
    const reader = await openReader(cliConfig(cli, command));
    let active: Awaited<ReturnType<typeof activePolicyVersion>>;
    try {
      active = await activePolicyVersion(reader.store.db);
    } finally {
      await reader.close();
    }
    // A database no server has started on yet holds no version: the defaults are in force.
    if (active === undefined) return { source: 'defaults', label: 'shipped defaults (no version stored yet)', version: null, engine: PolicyEngine.load(defaultPolicies()) };
    return { source: 'active', label: `active version ${active.version}`, version: active.version, engine: PolicyEngine.load(active.policies) };
  }
  return { source: 'defaults', label: 'shipped defaults', version: null, engine: PolicyEngine.load(defaultPolicies()) };
}

/** `airlock policy show`: print a policy set (validated first) or the schema. */
export async function show(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<SetOptions & { schema?: boolean; json?: boolean }>();
  if (opts.schema === true) {
    if (opts.policies !== undefined || opts.active === true) throw new UsageError('--schema prints the shipped schema; it takes no --policies or --active');
    const schema = policySchemaText();
    if (opts.json === true) printJson(cli.io, { schema });
    else cli.io.stdout.write(schema.endsWith('\n') ? schema : `${schema}\n`);
    return EXIT_OK;
  }
  const set = await loadSet(cli, command, opts);
  const { policies, digest } = set.engine;
  if (opts.json === true) {
    printJson(cli.io, { source: set.source, version: set.version, digest, count: Object.keys(policies).length, policies });
    return EXIT_OK;
  }
  say(cli.io, `// ${set.label}: ${Object.keys(policies).length} policies, ${digest}`);
  for (const text of Object.values(policies)) {
    say(cli.io, '');
    say(cli.io, text);
  }
  return EXIT_OK;
}

const PRINCIPAL_TYPES: Readonly<Record<string, PrincipalRef['type']>> = {
  user: 'User',
  'service-account': 'ServiceAccount',
  serviceaccount: 'ServiceAccount',
  workload: 'Workload',
  anonymous: 'Anonymous',
};
const RESOURCE_TYPES: Readonly<Record<string, ResourceRef['type']>> = {
  resource: 'Resource',
  user: 'User',
  'service-account': 'ServiceAccount',
  serviceaccount: 'ServiceAccount',
};
const DEFAULT_AUTH_METHOD: Readonly<Record<PrincipalRef['type'], string>> = {
  User: 'session',
  ServiceAccount: 'service-token',
  Workload: 'workload-token',
  Anonymous: 'anonymous',
};

/** TYPE:ID (type case-insensitive; "anonymous" alone is Anonymous:anonymous). */
function parsePrincipal(value: string): { type: PrincipalRef['type']; id: string } {
  if (value.toLowerCase() === 'anonymous') return { type: 'Anonymous', id: 'anonymous' };
  const at = value.indexOf(':');
  const type = at > 0 ? PRINCIPAL_TYPES[value.slice(0, at).toLowerCase()] : undefined;
  const id = value.slice(at + 1);
  if (type === undefined || id === '') throw new UsageError(`--principal "${value}" must be TYPE:ID with TYPE user, service-account, workload or anonymous (for example user:alice)`);
  return { type, id };
}

function parseResource(value: string): ResourceRef {
  const at = value.indexOf(':');
  const type = at > 0 ? RESOURCE_TYPES[value.slice(0, at).toLowerCase()] : undefined;
  const id = value.slice(at + 1);
  if (type === undefined || id === '') throw new UsageError(`--resource "${value}" must be TYPE:ID with TYPE resource, user or service-account (for example resource:policies or user:bob)`);
  return { type, id };
}

function parseAttrs(values: readonly string[] | undefined): Record<string, string> | undefined {
  if (values === undefined) return undefined;
  const attrs: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf('=');
    if (eq <= 0) throw new UsageError(`--attr "${v}" must be KEY=VALUE`);
    Object.defineProperty(attrs, v.slice(0, eq), { value: v.slice(eq + 1), enumerable: true, writable: true, configurable: true });
  }
  return attrs;
}

function parseAge(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new UsageError(`--mfa-age "${value}" must be a whole number of seconds`);
  return Number(value);
}

interface TestOptions extends SetOptions {
  readonly principal: string;
  readonly role?: string[];
  readonly attr?: string[];
  readonly action: string;
  readonly resource?: string;
  readonly mfa?: boolean;
  readonly mfaAge?: string;
  readonly authMethod?: string;
  readonly sourceAddress?: string;
  readonly json?: boolean;
}

function describeEntity(ref: { type: string; id: string }): string {
  return `${ref.type}:${JSON.stringify(ref.id)}`;
}

/**
 * `airlock policy test`: decide one request offline and print the decision with its deciding
 * policies. Exit 0 when allowed, 1 when denied, 2 on a malformed request.
 */
export async function test(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<TestOptions>();
  const p = parsePrincipal(opts.principal);
  const roles = opts.role ?? [];
  if (roles.length > 0 && p.type !== 'User' && p.type !== 'ServiceAccount') throw new UsageError('--role applies to user and service-account principals only');
  const attrs = parseAttrs(opts.attr);
  if (attrs !== undefined && p.type !== 'Workload') throw new UsageError('--attr applies to workload principals only');
  const age = parseAge(opts.mfaAge);
  const mfa = opts.mfa === true || age !== undefined;
  const set = await loadSet(cli, command, opts);
  if (!set.engine.knownAction(opts.action)) throw new UsageError(`unknown action "${opts.action}"; \`airlock policy show --schema\` lists them`);
  const resource = opts.resource === undefined ? { type: 'Resource' as const, id: opts.action.split('.')[0] ?? opts.action } : parseResource(opts.resource);
  const principal: PrincipalRef = { ...p, ...(p.type === 'User' || p.type === 'ServiceAccount' ? { roles } : {}), ...(attrs === undefined ? {} : { attrs }) };
  const request: AuthzRequest = {
    principal,
    action: opts.action,
    resource,
    context: {
      authMethod: opts.authMethod ?? DEFAULT_AUTH_METHOD[p.type],
      mfa,
      mfaAgeSeconds: mfa ? (age ?? 0) : NO_MFA_AGE_SECONDS,
      sourceAddress: opts.sourceAddress ?? '127.0.0.1',
    },
  };
  const decision: Decision = set.engine.authorize(request);
  const refusal: Refusal | undefined = decision.allowed ? undefined : set.engine.refusal(request);
  if (opts.json === true) {
    printJson(cli.io, {
      allowed: decision.allowed,
      policies: decision.policies,
      errors: decision.errors,
      refusal: refusal ?? null,
      request,
      policySet: { source: set.source, version: set.version, digest: set.engine.digest },
    });
  } else {
    const who = `${describeEntity(principal)}${roles.length > 0 ? ` (roles: ${roles.join(', ')})` : ''}`;
    say(cli.io, `${decision.allowed ? 'ALLOW' : 'DENY'}  ${who} ${opts.action} on ${describeEntity(resource)}`);
    say(cli.io, `deciding policies: ${decision.policies.length > 0 ? decision.policies.join(', ') : 'none (no policy permits it: denied by default)'}`);
    for (const e of decision.errors) say(cli.io, `error: ${e}`);
    if (refusal === 'MFA_REQUIRED') say(cli.io, 'a session with MFA would be allowed (MFA_REQUIRED)');
    if (refusal === 'STEP_UP_REQUIRED') say(cli.io, 'a fresh MFA proof (step-up, within 300 s) would be allowed (STEP_UP_REQUIRED)');
    say(cli.io, `policy set: ${set.label}, ${set.engine.digest}`);
  }
  return decision.allowed ? EXIT_OK : EXIT_FAILED;
}
