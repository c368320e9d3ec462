/**
 * Approval webhook settings: parsed from AIRLOCK_APPROVAL_WEBHOOK_URL / _SECRET_FILE (or the
 * config file), refused when they would leak (plain http off the machine, a readable or short
 * secret), and never printed by `airlock config show`.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors/index.js';
import { main } from '../../src/cli/index.js';

const SECRET = 'k'.repeat(20) + 'Zq9-secret-marker-' + 'x'.repeat(10);

let dir: string;
let secretFile: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'airlock-webhook-config-'));
  secretFile = join(dir, 'webhook.key');
  writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function load(env: Record<string, string>, cwd = dir) {
  return loadConfig({ flags: { home: join(dir, 'home') }, env, cwd });
}

function refusal(env: Record<string, string>): ConfigError {
  try {
    load(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected the configuration to be refused');
}

describe('approval webhook configuration', () => {
  it('is empty when not configured', () => {
    expect(load({}).approvalWebhooks).toEqual([]);
  });

  it('parses one or several comma-separated URLs sharing the trimmed secret from the file', () => {
    const one = load({ AIRLOCK_APPROVAL_WEBHOOK_URL: 'https://chat.example.com/hooks/a', AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE: secretFile });
    expect(one.approvalWebhooks).toHaveLength(1);
    expect(one.approvalWebhooks[0]!.url).toBe('https://chat.example.com/hooks/a');
    expect(one.approvalWebhooks[0]!.secret.equals(Buffer.from(SECRET))).toBe(true);
    expect(one.approvalWebhooks[0]!.secretFile).toBe(secretFile);
    const several = load({
      AIRLOCK_APPROVAL_WEBHOOK_URL: ' https://chat.example.com/hooks/a?token=t1 , http://127.0.0.1:9000/hook,http://localhost/x,http://[::1]:81/y',
      // Relative to the working directory, as the other paths are.
      AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE: 'webhook.key',
    });
    expect(several.approvalWebhooks.map((w) => w.url)).toEqual(['https://chat.example.com/hooks/a?token=t1', 'http://127.0.0.1:9000/hook', 'http://localhost/x', 'http://[::1]:81/y']);
    for (const w of several.approvalWebhooks) expect(w.secret.toString()).toBe(SECRET);
  });

  it('reads the settings from the config file (a list of URLs) and lets the environment win', () => {
    const file = join(dir, 'airlock.yaml');
    writeFileSync(file, `approvalWebhookUrl:\n  - https://a.example/h\n  - https://b.example/h\napprovalWebhookSecretFile: ${secretFile}\n`);
    const fromFile = loadConfig({ flags: { home: join(dir, 'home'), config: file }, env: {}, cwd: dir });
    expect(fromFile.approvalWebhooks.map((w) => w.url)).toEqual(['https://a.example/h', 'https://b.example/h']);
    const overridden = loadConfig({ flags: { home: join(dir, 'home'), config: file }, env: { AIRLOCK_APPROVAL_WEBHOOK_URL: 'https://c.example/h' }, cwd: dir });
    expect(overridden.approvalWebhooks.map((w) => w.url)).toEqual(['https://c.example/h']);
  });

  it('refuses a bad URL naming the setting, without echoing the URL (it may carry a token)', () => {
    for (const url of ['not a url', 'ftp://files.example.com/hook?token=leak-me', 'https://a.example/h,,https://b.example/h', 'https://user:pw-leak-me@a.example/h']) {
      const err = refusal({ AIRLOCK_APPROVAL_WEBHOOK_URL: url, AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE: secretFile });
      expect(err.message).toContain('AIRLOCK_APPROVAL_WEBHOOK_URL');
      expect(err.message).not.toContain('leak-me');
      expect(err.details).toEqual({ setting: 'AIRLOCK_APPROVAL_WEBHOOK_URL' });
    }
  });

  it('refuses plain http to a host other than this machine, and says why', () => {
    for (const url of ['http://chat.example.com/hook', 'http://10.0.0.5/hook', 'https://ok.example/h,http://localhost.evil.example/h']) {
      const err = refusal({ AIRLOCK_APPROVAL_WEBHOOK_URL: url, AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE: secretFile });
      expect(err.message).toMatch(/AIRLOCK_APPROVAL_WEBHOOK_URL: .*must use https:\/\/ \(the notification names what ships/);
    }
  });

  it('requires the secret file with a URL, and a URL with the secret file', () => {
    expect(refusal({ AIRLOCK_APPROVAL_WEBHOOK_URL: 'https://a.example/h' }).message).toMatch(/AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE: is required/);
    expect(refusal({ AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE: secretFile }).message).toMatch(/AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE: is set but AIRLOCK_APPROVAL_WEBHOOK_URL is not/);
    expect(refusal({ AIRLOCK_APPROVAL_WEBHOOK_URL: 'https://a.example/h', AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE: join(dir, 'missing.key') }).message).toMatch(/AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE: cannot read .*ENOENT/);
  });

  it('refuses a secret shorter than 32 bytes after trimming, without echoing it', () => {
    const short = join(dir, 'short.key');
    // 31 bytes plus whitespace that trimming removes.
    writeFileSync(short, `  ${'s'.repeat(27)}LEAK\n\n`, { mode: 0o600 });
    const err = refusal({ AIRLOCK_APPROVAL_WEBHOOK_URL: 'https://a.example/h', AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE: short });
    expect(err.message).toMatch(/AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE: .* holds 31 bytes after trimming; at least 32/);
    expect(err.message).not.toContain('LEAK');
    const exact = join(dir, 'exact.key');
    writeFileSync(exact, 'e'.repeat(32), { mode: 0o600 });
    expect(load({ AIRLOCK_APPROVAL_WEBHOOK_URL: 'https://a.example/h', AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE: exact }).approvalWebhooks[0]!.secret).toHaveLength(32);
  });

  it.runIf(process.platform !== 'win32')('refuses a secret file that group or others can read or write', () => {
    const loose = join(dir, 'loose.key');
    writeFileSync(loose, SECRET, { mode: 0o600 });
    for (const mode of [0o644, 0o640, 0o604, 0o620]) {
      chmodSync(loose, mode);
      const err = refusal({ AIRLOCK_APPROVAL_WEBHOOK_URL: 'https://a.example/h', AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE: loose });
      expect(err.message).toContain('AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE');
      expect(err.message).toContain(`mode 0${mode.toString(8)}`);
      expect(err.message).toContain('chmod 600');
      expect(err.message).not.toContain(SECRET);
    }
    chmodSync(loose, 0o400);
    expect(load({ AIRLOCK_APPROVAL_WEBHOOK_URL: 'https://a.example/h', AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE: loose }).approvalWebhooks).toHaveLength(1);
  });

  it('airlock config show never prints the secret or the URL query', async () => {
    const env = { AIRLOCK_HOME: join(dir, 'home'), AIRLOCK_APPROVAL_WEBHOOK_URL: 'https://chat.example.com/hooks/a?token=query-token-leak', AIRLOCK_APPROVAL_WEBHOOK_SECRET_FILE: secretFile };
    const show = async (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
      const stdout = new PassThrough();
      const stderr = new PassThrough();
      const out: Buffer[] = [];
      const errs: Buffer[] = [];
      stdout.on('data', (c: Buffer) => out.push(c));
      stderr.on('data', (c: Buffer) => errs.push(c));
      const code = await main(['node', 'airlock', ...args], { stdout, stderr, stdin: new PassThrough(), env, cwd: dir, stderrIsTTY: false });
      return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(errs).toString() };
    };
    const [human, machine] = [await show(['config', 'show']), await show(['config', 'show', '--json'])];
    for (const r of [human, machine]) {
      expect(r.code).toBe(0);
      expect(r.stdout + r.stderr).not.toContain('secret-marker');
      expect(r.stdout + r.stderr).not.toContain('query-token-leak');
    }
    const shown = JSON.parse(machine.stdout) as { approvalWebhooks: unknown };
    expect(shown.approvalWebhooks).toEqual([{ url: 'https://chat.example.com/hooks/a?***', secretFile, secret: '***' }]);
    expect(human.stdout).toContain('secretFile');
  });
});
