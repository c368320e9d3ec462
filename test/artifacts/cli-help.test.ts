/** The artifact and release commands: each answers --help, and docs/cli.md documents it and its flags. */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { registerArtifactCommands } from '../../src/cli/artifact-commands.js';
import type { Cli } from '../../src/cli/cli.js';

const ROOT = resolve(import.meta.dirname, '../..');

function program(out: { text: string }): Command {
  const cli: Cli = { io: { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: {}, cwd: ROOT, stderrIsTTY: false }, exitCode: 0, logLevel: undefined };
  const p = new Command('airlock').exitOverride().configureOutput({ writeOut: (s) => (out.text += s), writeErr: (s) => (out.text += s) });
  registerArtifactCommands(p, cli, (c, jsonHelp) => c.option('--server <url>', 'server').option('--json', jsonHelp ?? 'json'));
  return p;
}

describe('airlock artifact / release commands', () => {
  it('are documented in docs/cli.md with every flag, and answer --help', async () => {
    const docs = readFileSync(join(ROOT, 'docs/cli.md'), 'utf8');
    const tree: { path: string[]; flags: string[] }[] = [];
    const walk = (cmd: Command, path: string[]): void => {
      for (const sub of cmd.commands) {
        const p = [...path, sub.name()];
        tree.push({ path: p, flags: sub.options.map((o) => o.long ?? o.flags) });
        walk(sub, p);
      }
    };
    walk(program({ text: '' }), []);
    expect(tree.map((c) => c.path.join(' '))).toEqual(['artifact', 'artifact list', 'artifact show', 'artifact get', 'artifact verify', 'artifact publish', 'release', 'release create', 'release list', 'release show']);
    for (const c of tree) {
      expect(docs, `docs/cli.md documents airlock ${c.path.join(' ')}`).toContain(`airlock ${c.path.join(' ')}`);
      for (const flag of c.flags) expect(docs, `docs/cli.md documents ${c.path.join(' ')} ${flag}`).toContain(flag);
      const out = { text: '' };
      const help = await program(out)
        .parseAsync([...c.path, '--help'], { from: 'user' })
        .catch((e: unknown) => e as { code?: string });
      expect((help as { code?: string }).code).toBe('commander.helpDisplayed');
      expect(out.text).toContain(`Usage: airlock ${c.path.join(' ')}`);
    }
  });

  it('refuses a missing -o and a malformed reference before any request', async () => {
    const out = { text: '' };
    const missing = await program(out)
      .parseAsync(['artifact', 'get', 'sha256:' + 'a'.repeat(64)], { from: 'user' })
      .catch((e: unknown) => e as { code?: string });
    expect((missing as { code?: string }).code).toBe('commander.missingMandatoryOptionValue');
    const bad = await program(out)
      .parseAsync(['artifact', 'show', 'no-version'], { from: 'user' })
      .catch((e: unknown) => e as Error);
    expect((bad as Error).message).toContain('neither a digest');
  });
});
