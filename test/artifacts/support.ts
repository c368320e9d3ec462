/** Seed projects and finished runs with stored outputs, as the runs domain leaves them. */
import { randomUUID } from 'node:crypto';
import { chmod, writeFile } from 'node:fs/promises';
import type { BlobStore } from '../../src/artifacts/index.js';
import type { Store } from '../../src/storage/index.js';

export interface SeededRun {
  readonly id: string;
  readonly number: number;
  readonly outputs: { path: string; digest: string; size: number }[];
}

export async function seedProject(store: Store, name: string): Promise<string> {
  const id = randomUUID();
  await store.transact(async (tx) => {
    await tx.db.insertInto('projects').values({ id, name, repo: `/srv/git/${name}`, created_at: new Date().toISOString(), created_by: 'user:seed' }).execute();
  });
  return id;
}

/**
 * A run of `projectId` in `state` with one succeeded step per output (plus, when given, a
 * failed attempt whose outputs must never count). Output bytes go into `blobs`.
 */
export async function seedRun(store: Store, blobs: BlobStore, projectId: string, number: number, options: { state?: string; outputs?: Record<string, string>; failedOutputs?: Record<string, string> } = {}): Promise<SeededRun> {
  const id = randomUUID();
  const now = new Date().toISOString();
  const outputs: SeededRun['outputs'] = [];
  for (const [path, content] of Object.entries(options.outputs ?? {})) {
    const info = await blobs.put(Buffer.from(content));
    outputs.push({ path, digest: info.digest, size: info.size });
  }
  const failed: SeededRun['outputs'] = [];
  for (const [path, content] of Object.entries(options.failedOutputs ?? {})) {
    const info = await blobs.put(Buffer.from(content));
    failed.push({ path, digest: info.digest, size: info.size });
  }
  await store.transact(async (tx) => {
    await tx.db
      .insertInto('runs')
      .values({
        id,
        project_id: projectId,
        number,
        ref: 'refs/heads/main',
        commit_sha: 'a'.repeat(40),
        commit_json: '{}',
        pipeline_name: 'app',
        pipeline_digest: `sha256:${'b'.repeat(64)}`,
        pipeline_json: '{}',
        trigger_json: '{}',
        trace_id: 'c'.repeat(32),
        state: options.state ?? 'succeeded',
        reason: null,
        created_at: now,
        started_at: now,
        finished_at: now,
      })
      .execute();
    const step = (i: number, attempt: number, state: string, outs: SeededRun['outputs']) =>
      tx.db
        .insertInto('run_steps')
        .values({ id: randomUUID(), run_id: id, stage: 'build', step: `s${i}`, position: i, attempt, state, labels: '[]', runner: 'embedded', lease_expires_at: null, reason: null, exit_code: state === 'succeeded' ? 0 : 1, result_json: JSON.stringify({ outputs: outs, evidence: null }), queued_at: now, started_at: now, finished_at: now })
        .execute();
    if (failed.length > 0) await step(0, 1, 'failed', failed);
    for (const [i, o] of outputs.entries()) await step(i, failed.length > 0 && i === 0 ? 2 : 1, 'succeeded', [o]);
  });
  return { id, number, outputs };
}

/** Overwrite a stored blob in place, as bit rot or someone with disk access would. */
export async function corrupt(blobs: BlobStore, digest: string, content: string): Promise<void> {
  const path = blobs.pathFor(digest);
  await chmod(path, 0o644);
  await writeFile(path, content);
}
