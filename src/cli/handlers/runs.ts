/** `airlock project …`, `airlock run`, `airlock runs …`, `airlock logs`: pipelines over the HTTP API. */
import type { Command } from 'commander';
import type { Cli } from '../cli.js';
import { EXIT_FAILED, EXIT_OK, UsageError } from '../cli.js';
import { note, printJson, say } from '../io.js';
import type { RemoteOptions, Session } from './remote.js';
import { seg, table, withSession } from './remote.js';

interface ProjectInfo {
  readonly name: string;
  readonly repo: string;
  readonly createdAt: string;
  readonly createdBy: string;
}

interface StepView {
  readonly id: string;
  readonly stage: string;
  readonly step: string;
  readonly attempt: number;
  readonly state: string;
  readonly runner: string | null;
  readonly reason: string | null;
  readonly exitCode: number | null;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  readonly result: { outputs?: { path: string; digest: string; size: number }[] } | null;
}

interface RunSummary {
  readonly id: string;
  readonly number: number;
  readonly project: string;
  readonly pipeline: string;
  readonly ref: string;
  readonly commit: string;
  readonly state: string;
  readonly reason: string | null;
  readonly triggeredBy: string;
  readonly createdAt: string;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
}

interface RunDetail extends RunSummary {
  readonly traceId: string;
  readonly pipelineDigest: string;
  readonly commitInfo: { author: { name: string; email: string }; committer: { name: string; email: string }; subject: string };
  readonly trigger: { reason: string | null; params: Record<string, string> };
  readonly stages: readonly { name: string; state: string; steps: readonly StepView[] }[];
}

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

export async function projectAdd(cli: Cli, command: Command, name: string): Promise<number> {
  const opts = command.opts<RemoteOptions & { repo: string }>();
  return withSession(cli, command, async (s) => {
    const p = await s.call((c) => c.post<ProjectInfo>('/api/v1/projects', { name, repo: opts.repo }));
    if (opts.json === true) printJson(cli.io, p);
    else say(cli.io, `added project ${p.name} (${p.repo}); start a run with: airlock run ${p.name}`);
    return EXIT_OK;
  });
}

export async function projectList(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const { projects } = await s.call((c) => c.get<{ projects: ProjectInfo[] }>('/api/v1/projects'));
    if (opts.json === true) printJson(cli.io, { projects });
    else for (const line of table(['NAME', 'REPO', 'CREATED', 'BY'], projects.map((p) => [p.name, p.repo, p.createdAt, p.createdBy]))) say(cli.io, line);
    return EXIT_OK;
  });
}

function parseParams(values: readonly string[] | undefined): Record<string, string> {
  const params: Record<string, string> = {};
  for (const v of values ?? []) {
    const eq = v.indexOf('=');
    if (eq <= 0) throw new UsageError(`--param ${v}: expected key=value`);
    params[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return params;
}

/** `airlock run PROJECT`: start a run; with --wait, follow it to the end (exit 0 only if it succeeded). */
export async function runStart(cli: Cli, command: Command, project: string): Promise<number> {
  const opts = command.opts<RemoteOptions & { ref?: string; reason?: string; param?: string[]; wait?: boolean; follow?: boolean }>();
  return withSession(cli, command, async (s) => {
    const body = { project, ...(opts.ref === undefined ? {} : { ref: opts.ref }), ...(opts.reason === undefined ? {} : { reason: opts.reason }), params: parseParams(opts.param) };
    const run = await s.call((c) => c.post<RunDetail>('/api/v1/runs', body));
    note(cli.io, `run ${run.project}#${run.number} (${run.id}) at ${run.commit.slice(0, 12)} of ${run.ref}: ${run.state}`);
    if (opts.follow === true) await follow(cli, s, run.id, true, opts.json === true);
    const final = opts.wait === true || opts.follow === true ? await waitFor(s, run.id) : run;
    if (opts.json === true) printJson(cli.io, final);
    else if (opts.wait === true || opts.follow === true) say(cli.io, `run ${final.project}#${final.number} ${final.state}${final.reason === null ? '' : `: ${final.reason}`}`);
    else say(cli.io, run.id);
    return final.state === 'failed' || final.state === 'cancelled' ? EXIT_FAILED : EXIT_OK;
  });
}

async function waitFor(s: Session, runId: string): Promise<RunDetail> {
  for (;;) {
    const run = await s.call((c) => c.get<RunDetail>(`/api/v1/runs/${seg(runId)}`));
    if (TERMINAL.has(run.state)) return run;
    await new Promise((r) => setTimeout(r, 500));
  }
}

export async function runsList(cli: Cli, command: Command): Promise<number> {
  const opts = command.opts<RemoteOptions & { project?: string; limit?: number }>();
  return withSession(cli, command, async (s) => {
    const q = new URLSearchParams();
    if (opts.project !== undefined) q.set('project', opts.project);
    if (opts.limit !== undefined) q.set('limit', String(opts.limit));
    const { runs } = await s.call((c) => c.get<{ runs: RunSummary[] }>(`/api/v1/runs${q.size > 0 ? `?${q.toString()}` : ''}`));
    if (opts.json === true) printJson(cli.io, { runs });
    else for (const line of table(['RUN', 'STATE', 'REF', 'COMMIT', 'BY', 'CREATED', 'ID'], runs.map((r) => [`${r.project}#${r.number}`, r.state, r.ref, r.commit.slice(0, 12), r.triggeredBy, r.createdAt, r.id]))) say(cli.io, line);
    return EXIT_OK;
  });
}

/** `airlock runs show RUN`: the whole story of a run. */
export async function runsShow(cli: Cli, command: Command, run: string): Promise<number> {
  const opts = command.opts<RemoteOptions>();
  return withSession(cli, command, async (s) => {
    const r = await s.call((c) => c.get<RunDetail>(`/api/v1/runs/${seg(run)}`));
    if (opts.json === true) {
      printJson(cli.io, r);
      return EXIT_OK;
    }
    say(cli.io, `run ${r.project}#${r.number}  ${r.state.toUpperCase()}${r.reason === null ? '' : `: ${r.reason}`}`);
    say(cli.io, `id:        ${r.id}`);
    say(cli.io, `pipeline:  ${r.pipeline} (${r.pipelineDigest})`);
    say(cli.io, `commit:    ${r.commit} (${r.ref}) "${r.commitInfo.subject}"`);
    say(cli.io, `author:    ${r.commitInfo.author.name} <${r.commitInfo.author.email}>; committer ${r.commitInfo.committer.name} <${r.commitInfo.committer.email}>`);
    say(cli.io, `trigger:   ${r.triggeredBy}${r.trigger.reason === null ? '' : `, reason: ${r.trigger.reason}`}${Object.keys(r.trigger.params).length === 0 ? '' : `, params: ${Object.entries(r.trigger.params).map(([k, v]) => `${k}=${v}`).join(' ')}`}`);
    say(cli.io, `trace:     ${r.traceId}`);
    say(cli.io, `times:     created ${r.createdAt}, started ${r.startedAt ?? '-'}, finished ${r.finishedAt ?? '-'}`);
    for (const stage of r.stages) {
      say(cli.io, `stage ${stage.name}: ${stage.state}`);
      for (const st of stage.steps) {
        const outs = (st.result?.outputs ?? []).map((o) => `${o.path}=${o.digest.slice(0, 19)}…`).join(' ');
        say(cli.io, `  ${st.step} #${st.attempt}: ${st.state}${st.exitCode === null ? '' : ` (exit ${st.exitCode})`}${st.runner === null ? '' : ` on ${st.runner}`}${st.reason === null ? '' : ` — ${st.reason}`}${outs === '' ? '' : `\n    outputs: ${outs}`}`);
      }
    }
    return EXIT_OK;
  });
}

export async function runsCancel(cli: Cli, command: Command, run: string): Promise<number> {
  const opts = command.opts<RemoteOptions & { reason?: string }>();
  return withSession(cli, command, async (s) => {
    const r = await s.call((c) => c.post<RunDetail>(`/api/v1/runs/${seg(run)}/cancel`, opts.reason === undefined ? {} : { reason: opts.reason }));
    if (opts.json === true) printJson(cli.io, r);
    else say(cli.io, `run ${r.project}#${r.number} ${r.state}`);
    return EXIT_OK;
  });
}

interface LogAnswer {
  readonly chunks: readonly { stage: string; step: string; attempt: number; stream: string; data: string }[];
  readonly cursor: number | null;
  readonly finished: boolean;
}

/** Stream a run's output; with `toStderr` (under --json) everything goes to stderr, so stdout stays one JSON document. */
async function follow(cli: Cli, s: Session, run: string, live: boolean, toStderr = false): Promise<void> {
  let cursor: number | null = null;
  let last = '';
  for (;;) {
    const q = new URLSearchParams();
    if (cursor !== null) q.set('after', String(cursor));
    if (live) q.set('wait', '20');
    const answer = await s.call((c) => c.get<LogAnswer>(`/api/v1/runs/${seg(run)}/logs?${q.toString()}`));
    for (const ch of answer.chunks) {
      const who = `${ch.stage}/${ch.step}${ch.attempt > 1 ? `#${ch.attempt}` : ''}`;
      if (who !== last) {
        note(cli.io, `--- ${who}`);
        last = who;
      }
      (ch.stream === 'stderr' || toStderr ? cli.io.stderr : cli.io.stdout).write(Buffer.from(ch.data, 'base64'));
    }
    cursor = answer.cursor;
    if (!live && answer.chunks.length === 0) return;
    if (answer.finished && answer.chunks.length === 0) return;
  }
}

/** `airlock logs RUN [-f]`: stored output of every step; -f follows until the run ends. */
export async function logs(cli: Cli, command: Command, run: string): Promise<number> {
  const opts = command.opts<RemoteOptions & { follow?: boolean }>();
  return withSession(cli, command, async (s) => {
    await follow(cli, s, run, opts.follow === true);
    return EXIT_OK;
  });
}
