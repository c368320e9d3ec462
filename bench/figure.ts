/**
 * Entry point of one figure child (forked by run.ts): `node dist/bench/figure.js <name> <json args>`.
 * Running each figure in its own process keeps its peak RSS, heap and JIT state its own.
 */
import type { FigureArgs, FigureName } from './lib.js';
import { describeError, flushMessages, installInterruptHandler, progress } from './lib.js';
import { pgFigures } from './pg.js';
import { referenceFigures } from './reference.js';
import { buildLog, sqliteGroupCommit, sqliteSequential } from './sqlite.js';
import { proofFigures, verifyFigure } from './verify.js';

async function runFigure(name: FigureName, a: FigureArgs): Promise<void> {
  switch (name) {
    case 'reference':
      return referenceFigures(a.dir);
    case 'sequential':
      return sqliteSequential(a.dir);
    case 'group':
      return sqliteGroupCommit(a.logPath, a.home, a.seconds);
    case 'build':
      return buildLog(a.logPath, a.home, a.target, a.concurrency);
    case 'verify':
      return verifyFigure(a.logPath, a.home);
    case 'proofs':
      return proofFigures(a.logPath);
    case 'pg':
      return pgFigures();
    // Imported on demand: Cedar's WebAssembly and the whole server would otherwise load into
    // (and count towards the peak RSS of) every other figure's process.
    case 'authz':
      return (await import('./authz.js')).benchAuthz();
    case 'http':
      return (await import('./http.js')).benchHttp(a.dir, a.httpSeconds, a.httpConnections);
    case 'pipeline':
      return (await import('./pipeline.js')).benchPipeline(a.dir);
    case 'agent':
      return (await import('./agent.js')).benchAgent(a.dir);
    case 'vault':
      return (await import('./vault.js')).benchVault(a.dir);
    case 'artifacts':
      return (await import('./artifacts.js')).benchArtifacts(a.dir);
  }
}

installInterruptHandler();
const name = process.argv[2] as FigureName;
const args = JSON.parse(process.argv[3] ?? '{}') as FigureArgs;
void runFigure(name, args)
  .then(
    () => 0,
    (err: unknown) => {
      progress(`figure ${name} failed: ${describeError(err, true)}`);
      return 1;
    },
  )
  .then(async (code) => {
    await flushMessages();
    process.exit(code);
  });
