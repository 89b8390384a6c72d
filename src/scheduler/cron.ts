// Next-run computation: croner (5 or 6 fields, IANA timezones, Vixie-cron DST rules — a
// fixed-time job in a spring-forward gap runs at the first valid time after it, once on a
// fall-back day; interval jobs skip the gap and run on both passes of a repeated hour).
import { Cron } from 'croner';
import { DocketError } from '../core/errors.js';

/** A parsed schedule: a cron expression read in a timezone. */
export interface Schedule {
  /** The expression. */
  cron: string;
  /** The IANA timezone. */
  timezone: string;
  /** The first tick strictly after `after` (epoch ms), or null if there is none. */
  next(after: number): number | null;
}

/** Parses and validates a schedule; SCHEDULE_INVALID names the bad part. */
export function parseSchedule(cron: unknown, timezone: unknown): Schedule {
  if (typeof cron !== 'string' || cron.trim().length === 0 || cron.length > 200) {
    throw new DocketError(
      'SCHEDULE_INVALID',
      'cron must be a cron expression of 1–200 characters',
      {
        field: 'cron',
      },
    );
  }
  if (typeof timezone !== 'string' || !isTimezone(timezone)) {
    throw new DocketError(
      'SCHEDULE_INVALID',
      `timezone ${String(timezone)} is not an IANA timezone`,
      {
        field: 'timezone',
        timezone,
      },
    );
  }
  let job: Cron;
  try {
    job = new Cron(cron, { timezone, paused: true });
    job.nextRun();
  } catch (err) {
    throw new DocketError(
      'SCHEDULE_INVALID',
      `cron ${JSON.stringify(cron)} is not valid: ${(err as Error).message}`,
      { field: 'cron', cron },
      { cause: err },
    );
  }
  return {
    cron,
    timezone,
    next(after) {
      const d = job.nextRun(new Date(after));
      return d ? d.getTime() : null;
    },
  };
}

function isTimezone(tz: string): boolean {
  if (tz.length === 0 || tz.length > 100) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}
