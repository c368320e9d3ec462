/**
 * What the delivery domain needs to know, from the domains that know it: a run's outputs and
 * trigger (runs), an environment's rules and effective configuration (the run's own
 * airlock.yaml and override file, at the run's commit), the commits in a range (the project's
 * mirror), and who is who (users with the addresses they commit with).
 */
import { join } from 'node:path';
import type { DeliveryFacts, DeploymentSecrets, EnvironmentFacts, HealthCheck, ProtectionRules } from '../delivery/index.js';
import { boundedMemo } from '../delivery/index.js';
import type { EnvironmentDefinition, PipelineDefinition } from '../pipeline/index.js';
import { effectiveConfig } from '../pipeline/index.js';
import type { GitPort, Runs } from '../runs/index.js';
import type { Secrets } from '../secrets/index.js';
import { CYCLONEDX_BOM } from '../attest/index.js';
import type { Provenance } from '../provenance/index.js';
import { envelopeDigest } from '../verify/index.js';
import type { Store } from '../storage/index.js';

const FOUR_HOURS_S = 4 * 3600;
/** Where a run reads its pipeline (src/runs: the root of the commit, nothing configurable). */
const PIPELINE_FILE = 'airlock.yaml';

/** An environment's rules with defaults for pipelines stored before these fields existed. */
export function rulesOf(env: Partial<EnvironmentDefinition> & { protected: boolean }): ProtectionRules {
  const a = env.approvals;
  return {
    required: a?.required ?? (env.protected ? 1 : 0),
    roles: [...(a?.roles ?? [])],
    ownersRequired: a?.owners ?? false,
    owners: [...(env.owners ?? [])],
    validForMs: (a?.validForSeconds ?? FOUR_HOURS_S) * 1000,
    justificationRequired: a?.justification ?? true,
    rollbackNeedsApproval: a?.rollback ?? false,
    branches: [...(env.branches ?? [])],
    windows: (env.windows ?? []).map((w) => ({ cron: w.cron, timezone: w.timezone, durationMs: w.durationSeconds * 1000 })),
    freezes: (env.freezes ?? []).map((f) => ({ cron: f.cron, timezone: f.timezone, durationMs: f.durationSeconds * 1000, reason: f.reason })),
  };
}

function healthOf(env: Partial<EnvironmentDefinition>): HealthCheck | undefined {
  const h = env.health;
  if (h === undefined) return undefined;
  return h.kind === 'command' ? { command: h.command } : { url: h.url, status: h.status, timeoutMs: h.timeoutSeconds * 1000 };
}

export function deliveryFacts(deps: { store: Store; runs: Runs; git: GitPort; reposDir: string; people: () => Promise<{ id: string; identities: string[] }[]>; roles: (username: string) => Promise<string[]> }): DeliveryFacts {
  const projectIdOf = async (name: string): Promise<string> => (await deps.store.db.selectFrom('projects').select('id').where('name', '=', name).executeTakeFirstOrThrow()).id;
  const mirror = (projectId: string): string => join(deps.reposDir, `${projectId}.git`);
  // Who last edited files at a commit never changes; every show, decision and gate asks.
  const editors = boundedMemo(256, (key) => {
    const [projectId = '', sha = '', ...paths] = JSON.parse(key) as string[];
    // The author: the person who wrote the rule change. Its committer, when that is someone
    // else, only applied it; if the commit is in the deployed range the core already excludes
    // them as a committer. A failed read fails the evaluation closed.
    return deps.git.lastEditor(mirror(projectId), sha, paths).then((e) => (e === undefined || e.author === '' ? undefined : e.author));
  });
  const lastConfigEditor = (projectId: string, sha: string, paths: readonly string[]): Promise<string | undefined> => editors(JSON.stringify([projectId, sha, ...paths]));
  return {
    run: async (ref) => {
      const r = await deps.runs.show(await deps.runs.resolveId(ref));
      // Every output the run produced, by digest: exactly what was built and tested.
      const artifacts = r.stages
        .flatMap((s) => s.steps)
        .filter((s) => s.state === 'succeeded')
        .flatMap((s) => (s.result as { outputs?: { path: string; digest: string }[] } | null)?.outputs ?? [])
        .map((o) => ({ path: o.path, digest: o.digest }));
      const trigger = r.trigger as { actor?: { id?: string } } | null;
      return { id: r.id, project: r.project, projectId: await projectIdOf(r.project), commit: r.commit, ref: r.ref, triggeredBy: trigger?.actor?.id ?? r.triggeredBy, state: r.state, artifacts };
    },
    environment: async (runId, name): Promise<EnvironmentFacts | undefined> => {
      const view = await deps.runs.evidenceView(runId);
      const pipeline: PipelineDefinition = view.pipeline;
      // Runs stored before environments grew rules hold only `protected`: read fields as optional.
      const env = (Object.hasOwn(pipeline.environments, name) ? pipeline.environments[name] : undefined) as (Partial<EnvironmentDefinition> & { protected: boolean }) | undefined;
      if (env === undefined) return undefined;
      const projectId = await projectIdOf(view.run.project);
      const overrides = env.overrides === undefined ? undefined : await deps.git.readFile(mirror(projectId), view.run.commit, env.overrides);
      const effective = effectiveConfig(pipeline, name, overrides);
      const health = healthOf(env);
      // The environment is configured by the run's airlock.yaml (always at the root) and its
      // overrides file; whoever last changed either may not approve a deploy under those rules.
      const editor = await lastConfigEditor(projectId, view.run.commit, env.overrides === undefined ? [PIPELINE_FILE] : [PIPELINE_FILE, env.overrides]);
      return {
        rules: rulesOf(env),
        configDigest: effective.digest,
        config: effective.config,
        requires: [...(env.evidence?.environments ?? [])],
        secrets: [...(env.secrets ?? [])],
        ...(editor === undefined ? {} : { lastConfigEditor: editor }),
        ...(health === undefined ? {} : { health, healthBudgetMs: (env.health?.timeoutSeconds ?? 10) * 1000 }),
      };
    },
    commits: async (projectId, from, to) => {
      const range = await deps.git.range(mirror(projectId), from, to);
      return { authors: range.map((c) => c.author.email), committers: range.map((c) => c.committer.email) };
    },
    people: deps.people,
    roles: deps.roles,
  };
}

/**
 * A deployment's service secrets: the run says which project, pipeline, ref and commit, and
 * whether the environment is protected; the secrets domain resolves, asks the release policy
 * (with the gate passed) and records each read. `ready` opens the vault first.
 */
export function deploymentSecrets(deps: { runs: Pick<Runs, 'evidenceView'>; secrets: Pick<Secrets, 'releaseToDeployment'>; ready: () => Promise<unknown> }): DeploymentSecrets {
  return async (req, context) => {
    const view = await deps.runs.evidenceView(req.runId);
    const env = Object.hasOwn(view.pipeline.environments, req.environment) ? view.pipeline.environments[req.environment] : undefined;
    await deps.ready();
    return deps.secrets.releaseToDeployment({ ...req, project: view.run.project, pipeline: view.run.pipeline, environmentProtected: env?.protected === true, ref: view.run.ref, commit: view.run.commit }, context);
  };
}

/** Per artifact digest, the digest of its signed SBOM attestation: what the deployment record names. */
export function sbomRefs(provenance: Pick<Provenance, 'list'>): (digests: readonly string[]) => Promise<ReadonlyMap<string, string>> {
  return async (digests) => {
    const refs = new Map<string, string>();
    for (const d of digests) {
      const sbom = (await provenance.list({ subject: d })).find((x) => x.predicateType === CYCLONEDX_BOM);
      if (sbom !== undefined) refs.set(d, envelopeDigest(sbom.envelope));
    }
    return refs;
  };
}
