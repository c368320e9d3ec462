/**
 * A server with the delivery routes over a test App, for the HTTP and CLI delivery tests:
 * a project whose run built one artifact, staging (no approval) and production (one
 * release-manager), users rita and bob (release managers) and dev (developer, who triggered the
 * run), and a deployer that installs nothing (test/delivery/deploy.test.ts deploys for real).
 */
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { App } from '../../src/app/index.js';
import { recordProofs } from './sample-harness.js';
import type { Deployments } from '../../src/delivery/index.js';
import type { DeliveryFacts, ProtectionRules } from '../../src/delivery/index.js';
import { GitCli } from '../../src/runs/index.js';
import { deliveryRoutes } from '../../src/server/delivery-routes.js';
import { buildServer } from '../../src/server/index.js';
import type { Engine } from '../../src/storage/index.js';
import { makeRepo, succeededRun } from '../runs/support.js';
import { TestClock, login, makeUser, openTestApp, silent } from '../server/support.js';
import type { TestApp, TestUser } from '../server/support.js';
import { deliveryFacts } from '../../src/app/index.js';
import { appDeployments, recordingDeployer } from './fixtures.js';

const PIPELINE = `version: 1
pipeline: shop
owners: [rita]
environments:
  staging: {}
  production: { protected: true }
stages:
  build:
    steps:
      - { name: pack, run: "printf 'shop v1' > shop.tar", outputs: [shop.tar] }
`;
const OPEN: ProtectionRules = { required: 0, roles: [], ownersRequired: false, owners: [], validForMs: 4 * 3_600_000, justificationRequired: true, branches: [], windows: [], freezes: [] };
const GUARDED: ProtectionRules = { ...OPEN, required: 1, roles: ['release-manager'] };
export const ROLES: Readonly<Record<string, string[]>> = { rita: ['release-manager'], bob: ['release-manager'], dev: ['developer'] };

export interface DeliveryServer {
  readonly t: TestApp;
  readonly server: FastifyInstance;
  readonly clock: TestClock;
  readonly users: Record<string, TestUser>;
  /** Session tokens by user (replace one after a step-up or a new login). */
  readonly tokens: Record<string, string>;
  /** What the deployer was asked to install. */
  readonly deployed: { environment: string; deploymentId: string }[];
  /** A succeeded run of project shop, triggered by dev. */
  readonly runId: string;
  close(): Promise<void>;
}

export async function openDeliveryServer(engine: Engine): Promise<DeliveryServer> {
  const clock = new TestClock();
  const t = await openTestApp(engine, { clock });
  await t.app.startRunner({ labels: ['embedded'], concurrency: 1, reap: false });
  const repo = makeRepo({ 'airlock.yaml': PIPELINE });
  await t.app.projects.add({ kind: 'user', id: 'rita' }, { name: 'shop', repo: repo.dir });
  const home = t.app.config.home;
  // The app's own facts (runs, the project's mirror); the environments and people are the test's.
  const real = deliveryFacts({ store: t.app.store, runs: t.app.runs, git: new GitCli(join(home, 'repos')), reposDir: join(home, 'repos'), people: () => Promise.resolve([]), roles: () => Promise.resolve([]) });
  const facts: DeliveryFacts = {
    ...real,
    environment: (_runId, name) => Promise.resolve(name === 'staging' ? { rules: OPEN, configDigest: `sha256:${'5'.repeat(64)}` } : name === 'production' ? { rules: GUARDED, configDigest: `sha256:${'6'.repeat(64)}` } : undefined),
    people: () => Promise.resolve(Object.keys(ROLES).map((id) => ({ id, identities: [`${id}@example.com`] }))),
    roles: (username) => Promise.resolve(ROLES[username] ?? []),
  };
  const deployer = recordingDeployer(clock.now);
  const { deployed } = deployer;
  const deployments = appDeployments(t.app, facts, {
    deployer,
    proofs: recordProofs(t),
  });
  // The routes run against this Deployments whether or not the composition root wires its own.
  const app = new Proxy(t.app, { get: (target, prop, receiver) => (prop === 'deployments' ? deployments : (Reflect.get(target, prop, receiver) as unknown)) }) as App & { deployments: Deployments };
  const server = await buildServer(app, { logger: silent });
  await server.after();
  if (!server.hasRoute({ method: 'POST', url: '/api/v1/deployments' })) await server.register(deliveryRoutes(app));
  await server.ready();
  const users: Record<string, TestUser> = {};
  const tokens: Record<string, string> = {};
  for (const [name, roles] of Object.entries(ROLES)) {
    users[name] = await makeUser(t.app, clock, name, roles);
    tokens[name] = await login(server, clock, users[name]);
  }
  const runId = await succeededRun(t.app, { kind: 'user', id: 'dev' }, 'shop');
  return {
    t,
    server,
    clock,
    users,
    tokens,
    deployed,
    runId,
    close: async () => {
      await server.close();
      await t.cleanup();
    },
  };
}
