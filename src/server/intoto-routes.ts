/**
 * `GET /api/v1/runs/{run}/in-toto`: a run as in-toto v0.9 files (root layout, its key, one
 * runner-signed link per step) for `in-toto-verify` (docs/intoto.md). The layout is derived and
 * signed here; the links are copied as the runners signed them, never re-signed.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { exportInToto } from '../intoto/index.js';
import type { ExportFile, InTotoRouteDeps } from '../intoto/index.js';
import { noFields, parseInput } from './input.js';

const runParams = z.object({ run: z.string().min(1).max(100) }).strict();

export function intotoRoutes(deps: InTotoRouteDeps): (server: FastifyInstance) => Promise<void> {
  return async (server) => {
    server.get('/api/v1/runs/:run/in-toto', { config: { action: 'runs.read' } }, async (request): Promise<{ files: ExportFile[] }> => {
      parseInput(noFields, request.query, 'query');
      const { run } = parseInput(runParams, request.params, 'path');
      const runId = await deps.resolveRun(run);
      const [evidence, functionaries, layoutSigner] = await Promise.all([deps.runEvidence(runId), deps.functionaryKeys(runId), deps.layoutSigner(runId)]);
      const exported = exportInToto({ pipeline: evidence.pipeline, steps: evidence.steps, functionaries, layoutSigner, now: deps.now?.() ?? new Date(), runId });
      if (deps.publishedKeys === undefined) return exported;
      return { files: [...exported.files, { name: 'airlock-keys.json', content: `${JSON.stringify({ keys: await deps.publishedKeys() }, null, 2)}\n` }] };
    });
    return Promise.resolve();
  };
}
