/** Whether the runner's sandbox (bubblewrap) can be used here, and the modes tests run in. */
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';

/** Whether bubblewrap is on PATH (.ci/run installs it: under CI, sandbox suites always run). */
export const HAS_BWRAP = (process.env.PATH ?? '').split(':').some((d) => {
  try {
    accessSync(join(d, 'bwrap'), constants.X_OK);
    return true;
  } catch {
    return false;
  }
});

/** Modes every behavioural test runs in: plain processes, and bubblewrap when present. */
export const SANDBOX_MODES: readonly ('off' | 'auto')[] = HAS_BWRAP ? ['off', 'auto'] : ['off'];
