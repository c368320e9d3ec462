/**
 * Time and branch rules of an environment: cron schedules read in an IANA time zone (change
 * windows and recurring freezes) and branch globs. Validation here, and the pure checks the
 * delivery domain applies at deploy time, so both read the rules the same way.
 */
import { CronExpressionParser } from 'cron-parser';
import type { Schedule } from './types.js';

/** Why `timezone` is not a time zone this runtime knows, or undefined when it is one. */
export function timezoneProblem(timezone: string): string | undefined {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone });
    return undefined;
  } catch {
    return `${JSON.stringify(timezone)} is not a known IANA time zone`;
  }
}

/** The cron expression as cron-parser reads it: a seconds field of 0, then the author's 5 fields. */
function parse(cron: string, timezone: string, currentDate?: Date): ReturnType<typeof CronExpressionParser.parse> {
  // Strict mode refuses a restricted day-of-month together with a restricted day-of-week, which
  // cron ORs: `0 0 1 * 1` means "the 1st or any Monday", rarely what a change window intends.
  return CronExpressionParser.parse(`0 ${cron.trim()}`, { tz: timezone, strict: true, ...(currentDate === undefined ? {} : { currentDate }) });
}

/** Why `cron` is not a usable 5-field expression (read in `timezone`), or undefined when it is one. */
export function cronProblem(cron: string, timezone: string): string | undefined {
  const fields = cron.trim() === '' ? [] : cron.trim().split(/\s+/);
  if (fields[0]?.startsWith('@') === true) return `${JSON.stringify(cron)} is a macro; write the 5 fields instead (@daily is "0 0 * * *")`;
  if (fields.length !== 5) return `${JSON.stringify(cron)} has ${fields.length} field(s); write 5: minute hour day-of-month month day-of-week`;
  // H picks a random value: the schedule that applies must be the one the reviewer read.
  if (fields.some((f) => /(?:^|,)H(?=$|[(/,#])/i.test(f))) return `${JSON.stringify(cron)} uses H (a randomised value); write the exact minutes and hours`;
  const bad = fields.find((f) => !/^[0-9A-Za-z*,/#-]+$/.test(f));
  if (bad !== undefined) return `${JSON.stringify(cron)} has an invalid field ${JSON.stringify(bad)}${bad.includes('?') ? ' (write * instead of ?)' : ''}`;
  try {
    parse(cron, timezone).next();
    return undefined;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (/dayOfMonth and dayOfWeek/.test(message)) return `${JSON.stringify(cron)} restricts both day of month and day of week, which cron ORs; write * in one of them`;
    return `${JSON.stringify(cron)} is not a valid cron expression: ${message.replace(/[.!]+$/, '')}`;
  }
}

/**
 * Whether `at` falls inside one occurrence of the schedule: [start, start + duration). Only
 * the latest start at or before `at` needs checking: an earlier one covering `at` implies it.
 */
export function scheduleActive(schedule: Schedule, at: Date): boolean {
  const it = parse(schedule.cron, schedule.timezone, new Date(at.getTime() + 1));
  let start = it.prev().getTime();
  if (start > at.getTime()) start = it.prev().getTime();
  return start <= at.getTime() && at.getTime() < start + schedule.durationSeconds * 1000;
}

const globs = new Map<string, RegExp>();

/** Whether `branch` matches the glob `pattern`: `*` matches within one `/` segment, `**` across segments. */
export function branchMatches(pattern: string, branch: string): boolean {
  let re = globs.get(pattern);
  if (re === undefined) {
    const body = pattern
      .split('**')
      .map((part) =>
        part
          .split('*')
          .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
          .join('[^/]*'),
      )
      .join('.*');
    re = new RegExp(`^${body}$`, 'u');
    globs.set(pattern, re);
  }
  return re.test(branch);
}

/** Whether an environment with these `branches` accepts a deployment from `branch` (none listed: any). */
export function branchAllowed(branches: readonly string[], branch: string): boolean {
  return branches.length === 0 || branches.some((p) => branchMatches(p, branch));
}
