/** Runs: projects, runs from a git commit, the scheduler, the embedded runner (promise 3). */
export { Projects } from './projects.js';
export type { ProjectInfo } from './projects.js';
export { Runs, LEASE_MS } from './runs.js';
export type { Job, ReleaseView, RunDetail, RunState, RunSummary, StartRunInput, StepOutput, StepReport, StepState, StepView } from './runs.js';
export { EmbeddedRunner, reportOf, stepJobOf } from './embedded.js';
export type { EmbeddedRunnerOptions } from './embedded.js';
export { GitCli } from './git.js';
export type { CommitInfo, GitPort } from './git.js';
export type { RunsDeps } from './deps.js';
