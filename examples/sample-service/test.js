// The sample service's test suite: unpack the built tarball, start the server from it on a
// free port and check what it answers. Writes a JUnit report, which Airlock turns into signed
// test evidence (an in-toto test-result attestation) for the tarball that was tested.
'use strict';
const { execFileSync, spawn } = require('node:child_process');
const { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

const tarball = process.argv[2];
if (tarball === undefined) {
  console.error('usage: node test.js dist/service.tar');
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), 'sample-service-'));
execFileSync('tar', ['-xf', tarball, '-C', dir, '--no-same-owner']);
const version = readFileSync(join(dir, 'VERSION'), 'utf8').trim();

const server = spawn(process.execPath, ['server.js'], { cwd: dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PORT: '0' }, stdio: ['ignore', 'pipe', 'inherit'] });

function listening() {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('the server did not start within 10 s')), 10_000);
    server.once('exit', (code) => reject(new Error(`the server exited with ${code}`)));
    server.stdout.on('data', (chunk) => {
      out += chunk;
      const match = /listening on [^\s:]+:(\d+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
  });
}

async function main() {
  const cases = [];
  const check = async (name, fn) => {
    try {
      await fn();
      cases.push({ name });
    } catch (err) {
      cases.push({ name, failure: err instanceof Error ? err.message : String(err) });
    }
  };
  const port = await listening();
  const base = `http://127.0.0.1:${port}`;
  await check('healthz answers ok', async () => {
    const res = await fetch(`${base}/healthz`);
    const body = await res.text();
    if (res.status !== 200 || body.trim() !== 'ok') throw new Error(`GET /healthz: ${res.status} ${body.trim()}`);
  });
  await check('root answers the version', async () => {
    const res = await fetch(`${base}/`);
    const body = await res.text();
    if (res.status !== 200 || body.trim() !== version) throw new Error(`GET /: ${res.status} ${body.trim()}, expected ${version}`);
  });
  await check('unknown paths are 404', async () => {
    const res = await fetch(`${base}/nope`);
    await res.text();
    if (res.status !== 404) throw new Error(`GET /nope: ${res.status}`);
  });
  return cases;
}

const xml = (s) => s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]);

main()
  .catch((err) => [{ name: 'server starts', failure: err instanceof Error ? err.message : String(err) }])
  .then((cases) => {
    server.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
    const failures = cases.filter((c) => c.failure !== undefined).length;
    const body = cases
      .map((c) => (c.failure === undefined ? `<testcase classname="sample-service" name="${xml(c.name)}"/>` : `<testcase classname="sample-service" name="${xml(c.name)}"><failure message="${xml(c.failure)}"/></testcase>`))
      .join('');
    mkdirSync('reports', { recursive: true });
    writeFileSync('reports/junit.xml', `<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="sample-service" tests="${cases.length}" failures="${failures}">${body}</testsuite>\n`);
    console.log(`${cases.length - failures} of ${cases.length} tests passed`);
    process.exitCode = failures === 0 ? 0 : 1;
  });
