/**
 * How a step receives each declared secret travels from airlock.yaml through the stored run to
 * the job and the executor: `as: file` stays a file, bare names stay env, and runs stored before
 * the file form (bare string arrays in the pipeline JSON) still read as env. On both engines.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stepJobOf } from '../../src/runs/index.js';
import type { Job } from '../../src/runs/index.js';
import { ENGINES } from '../support/engines.js';
import { openTestApp } from '../server/support.js';
import type { TestApp } from '../server/support.js';
import { makeRepo } from './support.js';

const PIPELINE = `version: 1
pipeline: keys
owners: [alice]
stages:
  deploy:
    steps:
      - name: ship
        run: "true"
        secrets:
          - DB_PASSWORD
          - { name: TLS_KEY, as: file }
`;
const RUNNER = { name: 'test-runner', labels: [] };
const actor = { kind: 'user' as const, id: 'alice' };

describe.each(ENGINES)('declared secrets through runs on %s', (engine) => {
  let t: TestApp;

  beforeAll(async () => {
    t = await openTestApp(engine);
    await t.app.projects.add(actor, { name: 'keys', repo: makeRepo({ 'airlock.yaml': PIPELINE }).dir });
  }, 60_000);

  afterAll(async () => {
    await t.cleanup();
  });

  async function startAndClaim(): Promise<Job> {
    const run = await t.app.runs.start(actor, { project: 'keys', ref: 'main' });
    const job = await t.app.runs.claim(RUNNER);
    expect(job?.runId).toBe(run.id);
    return job!;
  }

  it('hands the runner each secret with how it is injected', async () => {
    const job = await startAndClaim();
    expect(job.secrets).toEqual([
      { name: 'DB_PASSWORD', as: 'env' },
      { name: 'TLS_KEY', as: 'file' },
    ]);
  });

  it('reads a run stored before the file form (bare names) as env secrets', async () => {
    const run = await t.app.runs.start(actor, { project: 'keys', ref: 'main' });
    // Rewrite the stored pipeline the way an older Airlock wrote it: names only.
    const row = await t.app.store.db.selectFrom('runs').select('pipeline_json').where('id', '=', run.id).executeTakeFirstOrThrow();
    const old = JSON.parse(row.pipeline_json) as { stages: { steps: { secrets: unknown }[] }[] };
    old.stages[0]!.steps[0]!.secrets = ['DB_PASSWORD', 'TLS_KEY'];
    await t.app.store.transact(async (tx) => {
      await tx.db.updateTable('runs').set({ pipeline_json: JSON.stringify(old) }).where('id', '=', run.id).execute();
    });
    const job = await t.app.runs.claim(RUNNER);
    expect(job?.runId).toBe(run.id);
    expect(job!.secrets).toEqual([
      { name: 'DB_PASSWORD', as: 'env' },
      { name: 'TLS_KEY', as: 'env' },
    ]);
  });
});

describe('stepJobOf', () => {
  const job = {
    stepId: 'st-1', runId: 'r-1', runNumber: 1, project: 'keys', pipeline: 'keys', stage: 'deploy', step: 'ship', attempt: 1, commit: 'c', ref: 'main', traceId: 't',
    command: 'true', env: {}, timeoutMs: 1000, inputs: [], outputs: [], requires: {}, network: false, environment: undefined,
    secrets: [{ name: 'DB_PASSWORD', as: 'env' }, { name: 'TLS_KEY', as: 'file' }],
  } as Job;

  it('injects each released value the way the step declared it', () => {
    const step = stepJobOf(job, {}, '/src', [
      { name: 'TLS_KEY', value: Buffer.from('key') },
      { name: 'DB_PASSWORD', value: Buffer.from('pw') },
    ]);
    expect(step.secrets?.map((s) => [s.name, s.as, s.value.toString()])).toEqual([
      ['TLS_KEY', 'file', 'key'],
      ['DB_PASSWORD', 'env', 'pw'],
    ]);
  });

  it('refuses a released value the step did not declare, naming it and not its value', () => {
    expect(() => stepJobOf(job, {}, '/src', [{ name: 'OTHER', value: Buffer.from('v4lue-n0t-shown') }])).toThrow(/secret OTHER was released to deploy\/ship, which does not declare it/);
    try {
      stepJobOf(job, {}, '/src', [{ name: 'OTHER', value: Buffer.from('v4lue-n0t-shown') }]);
    } catch (err) {
      expect(String(err)).not.toContain('v4lue-n0t-shown');
    }
  });
});
