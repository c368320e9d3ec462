// The sample service Airlock deploys in `airlock demo`: GET /healthz answers "ok", GET / its
// version (read from VERSION beside this file). It listens on 127.0.0.1:$PORT only.
'use strict';
const { readFileSync } = require('node:fs');
const http = require('node:http');
const { join } = require('node:path');

const version = readFileSync(join(__dirname, 'VERSION'), 'utf8').trim();
const port = Number(process.env.PORT ?? '8080');
const host = process.env.HOST ?? '127.0.0.1';

const server = http.createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method === 'GET' && path === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
  } else if (req.method === 'GET' && path === '/') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end(`${version}\n`);
  } else {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  }
});

server.listen(port, host, () => {
  const address = server.address();
  // The test step starts the server on port 0 and reads the chosen port from this line.
  console.log(`sample-service ${version} listening on ${host}:${typeof address === 'object' && address !== null ? address.port : port}`);
});

// Stop cleanly when Airlock replaces or stops this release.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
