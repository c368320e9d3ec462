/**
 * Option value parsers. Each throws commander's InvalidArgumentError, so a bad value is a
 * usage error (exit 2) whose message names the flag: "option '--seq <n>' argument 'x' is
 * invalid. must be a non-negative integer".
 */
import { InvalidArgumentError } from 'commander';

/** 0, 1, 2, ... (a sequence number or a tree size). */
export function nonNegativeInt(value: string): number {
  if (!/^[0-9]+$/.test(value)) throw new InvalidArgumentError('must be a non-negative integer');
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('is too large');
  return n;
}

/** 1, 2, 3, ... up to `max`. */
export function positiveInt(max: number): (value: string) => number {
  return (value) => {
    const n = nonNegativeInt(value);
    if (n < 1 || n > max) throw new InvalidArgumentError(`must be an integer from 1 to ${max}`);
    return n;
  };
}

/** 0 .. max. */
export function boundedInt(max: number): (value: string) => number {
  return (value) => {
    const n = nonNegativeInt(value);
    if (n > max) throw new InvalidArgumentError(`must be an integer from 0 to ${max}`);
    return n;
  };
}

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;

/**
 * An ISO 8601 date or date-time, normalised to the UTC form stored in events
 * (`2024-05-01T12:00:00.000Z`) so that comparisons are exact. A date alone means midnight UTC;
 * a time without an offset is taken as UTC, never as the machine's local time.
 */
export function isoTime(value: string): string {
  const m = ISO_RE.exec(value.trim());
  if (m === null) throw new InvalidArgumentError('must be an ISO 8601 date or date-time, for example 2024-05-01 or 2024-05-01T12:00:00Z');
  const [, y = '', mo = '', d = '', hh = '00', mi = '00', ss = '00', frac, zone] = m;
  const offset = zone === undefined || zone.toUpperCase() === 'Z' ? 'Z' : `${zone.slice(0, 3)}:${zone.slice(-2)}`;
  const ms = frac === undefined ? '' : `.${frac.padEnd(3, '0').slice(0, 3)}`;
  const date = new Date(`${y}-${mo}-${d}T${hh}:${mi}:${ss}${ms}${offset}`);
  // Reject what the Date parser would roll over (2024-02-31 -> March 2) or cannot read.
  const probe = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  if (Number.isNaN(date.getTime()) || probe.getUTCMonth() !== Number(mo) - 1 || probe.getUTCDate() !== Number(d)) {
    throw new InvalidArgumentError('is not a valid date');
  }
  return date.toISOString();
}
