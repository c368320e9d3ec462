/**
 * The environment fingerprint and tool preconditions.
 *
 * A tool's version is read the way a person would: `<tool> --version`, first version-looking
 * token. It is read in the same launch (sandbox, PATH, environment) the step will get, so the
 * recorded version is the one the step can actually run.
 */
import { spawn } from 'node:child_process';
import { arch, platform, release } from 'node:os';
import type { Writable } from 'node:stream';
import { buildLaunch } from './sandbox.js';
import { findVersion, satisfies } from './semver.js';

const DETECT_TIMEOUT_MS = 10_000;
const DETECT_MAX_BYTES = 64 * 1024;

/** A tool as found: whether it exists on PATH and the version it reports. */
export interface ToolProbe {
  readonly found: boolean;
  readonly version: string | null;
}

// The tool name travels as "$1", never inside the script: no quoting, no injection.
const PROBE_SCRIPT = 'command -v "$1" >/dev/null 2>&1 || exit 127; exec "$1" --version';

/** Run `<tool> --version` in the step's launch context and parse the answer. */
export async function probeTool(
  tool: string,
  ctx: { bwrap: string | null; workspace: string; env: Readonly<Record<string, string>> },
): Promise<ToolProbe> {
  const launch = await buildLaunch({ ...ctx, network: false, argv: ['/bin/sh', '-c', PROBE_SCRIPT, 'airlock-probe', tool] });
  return new Promise((resolve) => {
    const child = spawn(launch.file, [...launch.args], {
      cwd: ctx.workspace,
      env: { ...launch.env },
      stdio: launch.fdArgs === null ? ['ignore', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    let text = '';
    const collect = (chunk: Buffer): void => {
      if (text.length < DETECT_MAX_BYTES) text += chunk.toString('utf8');
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    if (launch.fdArgs !== null) {
      const fd3 = child.stdio[3] as Writable;
      fd3.on('error', () => undefined);
      fd3.end(launch.fdArgs);
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), DETECT_TIMEOUT_MS);
    child.once('error', () => {
      clearTimeout(timer);
      resolve({ found: false, version: null });
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ found: code !== 127, version: code === 127 ? null : findVersion(text) });
    });
  });
}

/** A requirement a tool does not meet, as a sentence naming the difference. */
export function requirementProblem(tool: string, range: string, probe: ToolProbe, pathEnv: string): string | null {
  if (!probe.found) return `tool ${tool} was not found on PATH ${pathEnv}`;
  const wildcard = range.trim() === '' || range.trim() === '*';
  if (probe.version === null) return wildcard ? null : `tool ${tool} printed no recognisable version for --version (required ${range})`;
  if (!satisfies(probe.version, range)) return `tool ${tool} ${probe.version} does not satisfy ${range}`;
  return null;
}

/** The machine part of the fingerprint. */
export function machine(): { os: string; arch: string; kernel: string } {
  return { os: platform(), arch: arch(), kernel: release() };
}
