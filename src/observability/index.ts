/** Observability: structured logs. Secrets never reach a log line (redaction below). */
import { pino } from 'pino';
import type { Logger } from 'pino';

export type { Logger } from 'pino';

/** Paths that may carry credentials in any log object we or fastify produce. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-airlock-token"]',
  'req.headers["x-csrf-token"]',
  'res.headers["set-cookie"]',
  '*.apiKey',
  '*.accessToken',
  '*.setupToken',
  '*.recoveryCodes',
  '*.csrfToken',
  '*.code',
  '*.valueBase64',
  '*.value',
  '*.password',
  '*.secret',
  '*.token',
  'config.database.url',
];

/** A JSON logger at `level`, writing to stderr so stdout stays clean for `--json` output. */
export function createLogger(level: string, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino({ level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { service: 'airlock' }, serializers: { req: requestSummary } }, destination);
}

interface LoggedRequest {
  readonly method?: string;
  readonly url?: string;
  readonly ip?: string;
}

/**
 * How a request appears in logs: method and path only. The query string is dropped because it
 * can carry credentials (an OIDC callback's authorization code and state).
 */
export function requestSummary(req: LoggedRequest): Record<string, string | undefined> {
  const url = typeof req.url === 'string' ? req.url.split('?')[0] : undefined;
  return { method: req.method, url, remoteAddress: req.ip };
}
