/** Agents: remote runners, their enrolment, and what an untrusted agent may do with a job (promise 3). */
export { Agents, DEFAULT_TOKEN_MINUTES, MAX_TOKEN_MINUTES, MAX_WAIT_SECONDS, RUNNER_ROLE } from './agents.js';
export type { AgentInfo, AgentJob, AgentRunsPort, AgentsDeps, IssuedRegistrationToken, LogChunk, Registration } from './agents.js';
export { reportProblem } from './report.js';
export { checkAgentName, checkLabels, isRegistrationToken, parseAgentPublicKey } from './tokens.js';
