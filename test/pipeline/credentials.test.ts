/**
 * The credential scan of `airlock lint`: it must find hard-coded credentials of every kind,
 * name their location, never print them, and stay quiet on ordinary commands.
 *
 * Token-shaped test values are generated at run time (seeded, deterministic) so that this file
 * itself holds nothing a secret scanner would report.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ValueContext } from '../../src/pipeline/index.js';
import { findCredentials, lintPipeline, looksRandom, redact, scanForCredentials } from '../../src/pipeline/index.js';

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const UPPER_ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const BASE64 = `${ALNUM}+/`;
const BASE64URL = `${ALNUM}-_`;

/** A deterministic random-looking string: `length` characters of `alphabet` derived from `seed`. */
function fake(seed: string, length: number, alphabet = ALNUM): string {
  let out = '';
  for (let block = 0; out.length < length; block++) {
    for (const byte of createHash('sha256').update(`${seed}/${block}`).digest()) {
      if (out.length < length) out += alphabet.charAt(byte % alphabet.length);
    }
  }
  return out;
}

const RUN: ValueContext = { field: 'run' };
const env = (name: string): ValueContext => ({ field: 'env', name });

const jwtPart = (json: object): string => Buffer.from(JSON.stringify(json)).toString('base64url');
const JWT = `${jwtPart({ alg: 'HS256', typ: 'JWT' })}.${jwtPart({ sub: '1234567890', name: 'deploy-bot', iat: 1516239022 })}.${fake('jwt-sig', 43, BASE64URL)}`;

const POSITIVES: readonly { name: string; value: string; context: ValueContext; kind: string; secret: string }[] = [
  ...['RSA ', 'OPENSSH ', 'EC ', '', 'ENCRYPTED '].map((label) => {
    const body = fake(`pem-${label}`, 64, BASE64);
    return { name: `${label || 'PKCS#8 '}private key`, value: `-----BEGIN ${label}PRIVATE KEY-----\n${body}\n-----END ${label}PRIVATE KEY-----\n`, context: env('DEPLOY_KEY_PEM'), kind: 'private_key', secret: body };
  }),
  (() => {
    const body = fake('pgp', 64, BASE64);
    return { name: 'PGP private key block', value: `cat > key.asc <<EOF\n-----BEGIN PGP PRIVATE KEY BLOCK-----\n${body}\nEOF`, context: RUN, kind: 'private_key', secret: body };
  })(),
  (() => {
    const id = `AKIA${fake('aws-id', 16, UPPER_ALNUM)}`;
    return { name: 'AWS access key id', value: `aws configure set aws_access_key_id ${id}`, context: RUN, kind: 'aws_access_key_id', secret: id };
  })(),
  (() => {
    const id = `ASIA${fake('aws-sts', 16, UPPER_ALNUM)}`;
    return { name: 'AWS temporary key id', value: id, context: env('AWS_ACCESS_KEY_ID'), kind: 'aws_access_key_id', secret: id };
  })(),
  (() => {
    const key = fake('aws-secret', 40, BASE64);
    return { name: 'AWS secret key in env', value: key, context: env('AWS_SECRET_ACCESS_KEY'), kind: 'aws_secret_access_key', secret: key };
  })(),
  (() => {
    const key = fake('aws-secret-2', 40, BASE64);
    return { name: 'AWS secret key in a command', value: `export AWS_SECRET_ACCESS_KEY=${key} && aws s3 ls`, context: RUN, kind: 'aws_secret_access_key', secret: key };
  })(),
  ...['ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_'].map((prefix) => {
    const token = `${prefix}${fake(`gh-${prefix}`, 36)}`;
    return { name: `GitHub ${prefix} token`, value: `git push https://${token}@github.com/acme/web.git HEAD:main`, context: RUN, kind: 'github_token', secret: token };
  }),
  (() => {
    const token = `github_pat_${fake('gh-pat-a', 22)}_${fake('gh-pat-b', 59)}`;
    return { name: 'GitHub fine-grained token', value: token, context: env('GH_TOKEN'), kind: 'github_token', secret: token };
  })(),
  (() => {
    const token = `glpat-${fake('gitlab', 20, BASE64URL)}`;
    return { name: 'GitLab token', value: `curl -H "PRIVATE-TOKEN: ${token}" https://gitlab.example.com/api/v4/projects`, context: RUN, kind: 'gitlab_token', secret: token };
  })(),
  (() => {
    const token = `xoxb-${fake('slack-1', 12, '0123456789')}-${fake('slack-2', 13, '0123456789')}-${fake('slack-3', 24)}`;
    return { name: 'Slack bot token', value: token, context: env('SLACK_BOT_TOKEN'), kind: 'slack_token', secret: token };
  })(),
  (() => {
    const path = `T${fake('sw-1', 8, UPPER_ALNUM)}/B${fake('sw-2', 8, UPPER_ALNUM)}/${fake('sw-3', 24)}`;
    return { name: 'Slack webhook', value: `curl -X POST -d '{"text":"deployed"}' https://hooks.slack.com/services/${path}`, context: RUN, kind: 'slack_webhook', secret: path };
  })(),
  (() => {
    const key = `AIza${fake('google', 35, BASE64URL)}`;
    return { name: 'Google API key', value: key, context: env('MAPS_KEY'), kind: 'google_api_key', secret: key };
  })(),
  (() => {
    const key = `sk_live_${fake('stripe', 24)}`;
    return { name: 'Stripe live key', value: `stripe login --api-key ${key}`, context: RUN, kind: 'stripe_key', secret: key };
  })(),
  (() => {
    const token = `npm_${fake('npm', 36)}`;
    return { name: 'npm token', value: `npm config set //registry.npmjs.org/:_authToken ${token}`, context: RUN, kind: 'npm_token', secret: token };
  })(),
  { name: 'JWT in an Authorization header', value: `curl -H "Authorization: Bearer ${JWT}" https://api.example.com/deploy`, context: RUN, kind: 'jwt', secret: JWT },
  (() => {
    const key = `alk_${fake('alk-id', 12, 'abcdefghijklmnopqrstuvwxyz234567')}_${fake('alk', 42, BASE64URL)}A`;
    return { name: 'Airlock API key', value: `AIRLOCK_API_KEY=${key} airlock token exchange`, context: RUN, kind: 'airlock_token', secret: key };
  })(),
  (() => {
    const token = `als_${fake('als', 42, BASE64URL)}Q`;
    return { name: 'Airlock session token', value: token, context: env('SESSION'), kind: 'airlock_token', secret: token };
  })(),
  (() => {
    const token = `alsu_${fake('alsu', 42, BASE64URL)}g`;
    return { name: 'Airlock setup token', value: `airlock account setup --token-stdin <<< ${token}`, context: RUN, kind: 'airlock_token', secret: token };
  })(),
  { name: 'password flag with =', value: 'mysql -h db -u root --password=hunter2secret app < schema.sql', context: RUN, kind: 'generic_secret', secret: 'hunter2secret' },
  { name: 'password flag with a space', value: 'deploy-cli login --password "Winter2024!" --user ops', context: RUN, kind: 'generic_secret', secret: 'Winter2024!' },
  { name: 'token flag', value: 'codecov upload --token 7c4b2e1f-not-a-uuid-Q9', context: RUN, kind: 'generic_secret', secret: '7c4b2e1f-not-a-uuid-Q9' },
  { name: 'kubectl from-literal password', value: 'kubectl create secret generic db --from-literal=password=s3cretPassw0rd', context: RUN, kind: 'generic_secret', secret: 's3cretPassw0rd' },
  { name: 'exported API key (hex)', value: 'export API_KEY=9f8e7d6c5b4a39281706f5e4d3c2b1a0 && ./smoke.sh', context: RUN, kind: 'generic_secret', secret: '9f8e7d6c5b4a39281706f5e4d3c2b1a0' },
  { name: 'header with a literal key', value: 'curl -H "X-Api-Key: Zq81mNb27Lop" https://api.example.com', context: RUN, kind: 'generic_secret', secret: 'Zq81mNb27Lop' },
  { name: 'curl basic auth', value: 'curl -u deploy:Tr0ub4dor-and-3 https://artifacts.example.com/upload', context: RUN, kind: 'generic_secret', secret: 'Tr0ub4dor-and-3' },
  { name: 'password-named env variable', value: 'correct horse battery staple', context: env('DB_PASSWORD'), kind: 'generic_secret', secret: 'correct horse battery staple' },
  { name: 'token-named env variable', value: 'q8w7e6r5t4y3', context: env('HEALTHCHECK_TOKEN'), kind: 'generic_secret', secret: 'q8w7e6r5t4y3' },
  { name: 'password in a database URL', value: 'psql postgres://app:s3cr3tPass@db.internal:5432/app -c "select 1"', context: RUN, kind: 'url_credentials', secret: 's3cr3tPass' },
  { name: 'password in an env URL', value: 'amqp://worker:rabbitPass99@mq:5672/', context: env('BROKER_URL'), kind: 'url_credentials', secret: 'rabbitPass99' },
  (() => {
    const basic = Buffer.from(`admin:${fake('basic', 14)}`).toString('base64');
    return { name: 'Basic Authorization header', value: `curl -H "Authorization: Basic ${basic}" https://registry.example.com`, context: RUN, kind: 'authorization_header', secret: basic };
  })(),
  (() => {
    const token = fake('bearer', 32, BASE64URL);
    return { name: 'Bearer Authorization header', value: `curl -H 'Authorization: Bearer ${token}' https://api.example.com`, context: RUN, kind: 'authorization_header', secret: token };
  })(),
  (() => {
    const seed = fake('entropy-env', 32);
    return { name: 'high-entropy env value', value: seed, context: env('ENCRYPTION_SEED'), kind: 'high_entropy', secret: seed };
  })(),
  (() => {
    const license = fake('entropy-run', 40, BASE64);
    return { name: 'high-entropy literal in a command', value: `./configure --license ${license} --prefix=/opt/app`, context: RUN, kind: 'high_entropy', secret: license };
  })(),
  (() => {
    const key = fake('entropy-short', 24);
    return { name: 'short high-entropy literal', value: `sentry-cli releases new --org acme ${key}`, context: RUN, kind: 'high_entropy', secret: key };
  })(),
];

const ORDINARY_RUN: readonly string[] = [
  'npm ci && npm run build',
  'npm test -- --coverage',
  'make -j4',
  'make -j$(nproc) install DESTDIR=/tmp/stage',
  // A pinned commit is common and not a secret (hex is never flagged by entropy; docs/pipeline.md).
  'git checkout 3f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39',
  'git fetch origin 8c7d1e2 && git rev-parse --short=12 HEAD',
  'docker pull ghcr.io/acme/web@sha256:0f5c6e2a7b9d1c3e5f7a9b1d3c5e7f9a1b3d5f7a9c1e3f5a7b9d1f3a5c7e9b1d',
  'docker build --secret id=npmrc,src=$HOME/.npmrc -t ghcr.io/acme/web:${GIT_SHA} .',
  'curl -fsSL https://deb.nodesource.com/setup_20.x | bash -',
  'curl -o /tmp/node.tar.xz https://nodejs.org/dist/v20.11.1/node-v20.11.1-linux-x64.tar.xz',
  'echo aGVsbG8gd29ybGQ= | base64 -d',
  'echo dGhpcyBpcyBhIHRlc3Q= | base64 -d',
  'echo "build 550e8400-e29b-41d4-a716-446655440000" >> build-info.txt',
  'npm version 1.2.3-beta.4+build.5 --no-git-tag-version',
  'tar -xzf dist/app.tgz -C /srv/app/releases/2024-05-01T10-00-00Z',
  'docker login -u "$REGISTRY_USER" --password-stdin ghcr.io < /run/secrets/registry',
  'npm config set //registry.npmjs.org/:_authToken "${NPM_TOKEN}"',
  'git clone https://x-access-token:${GITHUB_TOKEN}@github.com/acme/web.git',
  'curl -H "Authorization: Bearer $API_TOKEN" https://api.example.com/v1/deploy',
  'echo "${{ secrets.DEPLOY_KEY }}" > deploy_key && chmod 600 deploy_key',
  'kubectl set image deployment/web web=ghcr.io/acme/web:${GIT_SHA}',
  'go build -ldflags "-X main.version=1.2.3 -X main.commit=$(git rev-parse HEAD)" ./cmd/server',
  './gradlew test --tests com.acme.payments.TestSuiteRunner2024Final',
  'python -m pytest tests/ -k "not slow" --junitxml=reports/junit.xml',
  'aws s3 cp dist/app.tgz s3://acme-artifacts/web/ --sse aws:kms',
  'terraform apply -auto-approve -var="region=us-east-1" -var="instance_type=t3.medium"',
  'helm upgrade --install web charts/web --set image.tag=v2.3.1 --namespace production',
  'echo "d41d8cd98f00b204e9800998ecf8427e6b86b273ff34fce19d6b804eff5a3f57  app.tgz" | sha256sum -c',
  'gpg --recv-keys 4ED778F539E3634C779C87C6D7062848A1AB005C',
  'export TOKEN_FILE=/run/secrets/npm && ./publish.sh',
  'echo "password: $DB_PASSWORD" > config.yml',
  'cargo build --release --target x86_64-unknown-linux-musl',
  'npm install --integrity sha512-Jl5tFv9yvnwfDtY4cUcxX5EmwLdFVs5V4iQe8JMmtEO7KgjHqNLq3FXBQfeYhIoXFeVlt1Efsx9oJ5FvW2O8Ng==',
  './scripts/deploy.sh --env=production --token-file /run/secrets/deploy',
  'gcloud artifacts docker images list us-central1-docker.pkg.dev/my-project-123/web-images/Frontend',
  'az login --service-principal -u "$AZ_APP_ID" -p "$AZ_PASSWORD" --tenant "$AZ_TENANT"',
  'curl -u "$NEXUS_USER:$NEXUS_PASSWORD" -T dist/app.tgz https://nexus.example.com/repository/raw/',
  'psql "postgres://app@db.internal:5432/app" -c "select version()"',
  'java -Dspring.profiles.active=ci -jar build/libs/PaymentsServiceApplication.jar',
  'go test ./... -run TestCheckoutFlowWithRetries -count=1',
  'kubectl get secret web-tls -o jsonpath="{.data.tls\\.crt}" | base64 -d > tls.crt',
  'openssl dgst -sha256 -verify pub.pem -signature app.sig dist/app.tgz',
  'echo "token: <your-token-here>" > .example.yml',
  'mvn -B -ntp -Dmaven.test.failure.ignore=false -DskipITs=true verify',
  'rsync -az --delete build/ deploy@web-01.internal:/srv/www/',
  'xcodebuild -scheme AcmeMobileAppReleaseConfiguration -sdk iphoneos',
];

const ORDINARY_ENV: readonly [string, string][] = [
  ['NODE_ENV', 'production'],
  ['GIT_SHA', '3f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39'],
  ['IMAGE', 'ghcr.io/acme/web@sha256:0f5c6e2a7b9d1c3e5f7a9b1d3c5e7f9a1b3d5f7a9c1e3f5a7b9d1f3a5c7e9b1d'],
  ['API_URL', 'https://api.example.com/v1'],
  ['DATABASE_URL', 'postgres://app@db:5432/app'],
  ['DATABASE_URL_REF', 'postgres://app:${DB_PASSWORD}@db:5432/app'],
  ['BUILD_ID', '550e8400-e29b-41d4-a716-446655440000'],
  ['PASSWORD_MIN_LENGTH', '12'],
  ['TOKEN_TTL', '3600'],
  ['MAX_TOKENS', '4096'],
  ['SECRET_NAME', 'prod-db-credentials'],
  ['JAVA_OPTS', '-Xmx2g -XX:+UseG1GC -Dfile.encoding=UTF-8'],
  ['GOFLAGS', '-mod=readonly -trimpath'],
  ['CACHE_KEY', 'linux-node20-npm-v3'],
  ['CHROME_BIN', '/usr/bin/chromium'],
  ['FEATURE_FLAGS', 'checkout-v2,new-nav,dark-mode'],
  ['TZ', 'Europe/Berlin'],
  ['DB_PASSWORD', ''],
  ['GITHUB_TOKEN', '$GITHUB_TOKEN'],
  ['NPM_TOKEN', '${{ secrets.NPM_TOKEN }}'],
  ['DB_PASSWORD_FILE', '/run/secrets/db-password'],
  ['SENTRY_DSN', 'https://public@o0.ingest.sentry.io/0'],
  ['SKIP_TOKEN_CHECK', 'true'],
  ['VERSION', '2.14.0-rc.1+build.77'],
  ['GPG_FINGERPRINT', '4ED778F539E3634C779C87C6D7062848A1AB005C'],
  ['MESSAGE', 'Deploying the WebFrontend to production'],
];

describe('credential scan: true positives', () => {
  it.each(POSITIVES)('finds $name', ({ value, context, kind, secret }) => {
    const found = findCredentials(value, context);
    expect(found.map((f) => f.kind)).toContain(kind);
    const hit = found.find((f) => f.kind === kind);
    expect(hit).toBeDefined();
    // The match sits on the secret (or, for a private key, on its header) ...
    if (kind !== 'private_key') expect(value.slice(hit!.start, hit!.end)).toBe(secret);
    // ... and the redacted form never contains it.
    expect(hit!.redacted).not.toContain(secret);
    expect(hit!.redacted).not.toContain(secret.slice(-8));
  });

  it('covers enough kinds and examples', () => {
    expect(POSITIVES.length).toBeGreaterThanOrEqual(15);
    expect(new Set(POSITIVES.map((p) => p.kind)).size).toBeGreaterThanOrEqual(15);
  });
});

describe('credential scan: ordinary values are not flagged', () => {
  it('has many realistic examples', () => {
    expect(ORDINARY_RUN.length + ORDINARY_ENV.length).toBeGreaterThanOrEqual(25);
  });
  it.each(ORDINARY_RUN)('run: %s', (command) => {
    expect(findCredentials(command, RUN)).toEqual([]);
  });
  it.each(ORDINARY_ENV)('env %s: %s', (name, value) => {
    expect(findCredentials(value, env(name))).toEqual([]);
  });
  it('does not flag 40-hex commit ids or 64-hex digests at any position', () => {
    for (let i = 0; i < 50; i++) {
      const sha1 = createHash('sha1').update(String(i)).digest('hex');
      const sha256 = createHash('sha256').update(String(i)).digest('hex');
      expect(findCredentials(`git checkout ${sha1} && docker pull app@sha256:${sha256}`, RUN)).toEqual([]);
    }
  });
  it('does not flag mktemp-style paths (found flagged in a real pipeline), but still a random path component', () => {
    for (const dir of ['/tmp/airlock-test-RlkS8Hz', '/tmp/tmp.Xr4kq2ZbPw/build', './out/build-7fKq2xZ']) {
      expect(findCredentials(`ls ${dir} && cat ${dir}/keys/identity-seal.key`, RUN)).toEqual([]);
    }
    expect(findCredentials('cat /tmp/qW3eR5tY7uI9oP1aS3dF5gH7jK9lZ1x/key', RUN)).not.toEqual([]);
  });
  it('does not flag random UUIDs', () => {
    for (let i = 0; i < 50; i++) expect(findCredentials(`echo ${crypto.randomUUID()}`, RUN)).toEqual([]);
  });
});

describe('entropy rule', () => {
  it('flags nearly all random base64 strings of 24 characters and more', () => {
    let flagged = 0;
    for (let i = 0; i < 200; i++) if (looksRandom(fake(`random-${i}`, 32, BASE64))) flagged++;
    expect(flagged).toBeGreaterThanOrEqual(190);
  });
  it('does not flag words, identifiers and paths', () => {
    for (const word of ['TestSuiteRunner2024Final', 'src/components/Button2Group', 'com/org/Repo2Name/releases/download/v1', 'ThisIsAVeryLongIdentifierName', 'MyApp-Release-2024-05-01-Build17', 'node_modules/Foo2/Bar/index']) {
      expect(looksRandom(word), word).toBe(false);
    }
  });
});

describe('redaction', () => {
  it('shows a public prefix, the last two characters and the length, never the secret', () => {
    const token = `ghp_${fake('redact', 36)}`;
    expect(redact(token, 4)).toBe(`ghp_…${token.slice(-2)} (40 chars)`);
    expect(redact('hunter2')).toBe('… (7 chars)');
  });

  it('lint messages carry the kind, the location and a redacted value only', () => {
    const token = `ghp_${fake('lint-redact', 36)}`;
    const password = 'Sup3rSecretPassw0rd!';
    const text = [
      'version: 1',
      'pipeline: web',
      'owners: [alice]',
      'stages:',
      '  build:',
      '    steps:',
      '      - name: push',
      `        run: git push https://${token}@github.com/acme/web.git`,
      '        env:',
      `          DB_PASSWORD: "${password}"`,
      '',
    ].join('\n');
    const problems = lintPipeline(text);
    expect(problems.map((p) => [p.code, p.kind, p.line, p.col, p.path])).toEqual([
      ['hardcoded_credential', 'github_token', 8, 31, 'stages.build.steps[0].run'],
      ['hardcoded_credential', 'generic_secret', 10, 25, 'stages.build.steps[0].env.DB_PASSWORD'],
    ]);
    for (const p of problems) {
      const all = JSON.stringify(p);
      expect(all).not.toContain(token.slice(4));
      expect(all).not.toContain(password);
      expect(p.hint).toContain('airlock secret set');
    }
    expect(problems[0]!.message).toContain(`ghp_…${token.slice(-2)} (40 chars)`);
  });
});

describe('scan over the whole file', () => {
  const head = ['version: 1', 'pipeline: web', 'owners: [alice]', 'stages:', '  build:', '    steps:'];

  it('finds a token in a comment, naming its line and column', () => {
    const token = `xoxp-${fake('comment', 30)}`;
    const text = [...head, `      # old webhook: ${token}`, '      - { name: a, run: make }', ''].join('\n');
    const [p, ...rest] = scanForCredentials(text, 'ci/airlock.yaml');
    expect(rest).toEqual([]);
    expect(p).toMatchObject({ file: 'ci/airlock.yaml', line: 7, col: 22, code: 'hardcoded_credential', kind: 'slack_token', path: '' });
  });

  it('still scans a file whose YAML is broken', () => {
    const token = `ghs_${fake('broken', 36)}`;
    const text = [...head, `      - name: a`, `        run: "echo ${token}`, ''].join('\n');
    const problems = lintPipeline(text);
    expect(problems.some((p) => p.code === 'yaml_syntax')).toBe(true);
    expect(problems.find((p) => p.code === 'hardcoded_credential')).toMatchObject({ kind: 'github_token', line: 8, col: 20 });
  });

  it('locates a secret inside a block scalar', () => {
    const key = fake('block', 40, BASE64);
    const text = [...head, '      - name: a', '        run: |', '          set -eu', `          ./configure --license ${key}`, ''].join('\n');
    expect(scanForCredentials(text)).toMatchObject([{ kind: 'high_entropy', line: 10, col: 33, path: 'stages.build.steps[0].run' }]);
  });

  it('honours airlock:allow-credential for heuristic findings only', () => {
    const key = fake('allowed', 40, BASE64);
    const token = `ghp_${fake('not-allowed', 36)}`;
    const text = [...head, '      - name: a', `        run: ./configure --license ${key} # airlock:allow-credential`, '      - name: b', `        run: echo ${token} # airlock:allow-credential`, ''].join('\n');
    expect(scanForCredentials(text).map((p) => p.kind)).toEqual(['github_token']);
  });

  it('does not scan Airlock-style references or declared secret names', () => {
    const text = [...head, '      - name: a', '        run: ./deploy.sh --token "$DEPLOY_TOKEN"', '        secrets: [DEPLOY_TOKEN]', '        env: { API_TOKEN: "${{ secrets.API_TOKEN }}" }', ''].join('\n');
    expect(scanForCredentials(text)).toEqual([]);
  });
});
