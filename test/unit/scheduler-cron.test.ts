// Schedules (SPEC S-1) as properties over random expressions, timezones and instants: the next
// tick is always later, never skips a tick in between, and a bad expression or timezone is
// SCHEDULE_INVALID.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseSchedule } from '../../src/scheduler/index.js';

const ZONES = ['UTC', 'Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe', 'Asia/Kolkata'];
const field = (max: number) =>
  fc.oneof(
    fc.constant('*'),
    fc.integer({ min: 0, max }).map(String),
    fc.integer({ min: 2, max: Math.max(2, Math.floor(max / 2)) }).map((s) => `*/${s}`),
  );
const expression = fc
  .tuple(field(59), field(59), field(23))
  .map(([s, m, h]) => `${s} ${m} ${h} * * *`);
// 2025-01-01 … 2027-12-31: several DST transitions in every zone above that has them.
const instant = fc.integer({ min: 1_735_689_600_000, max: 1_830_297_600_000 });

describe('scheduler schedules', () => {
  it('next(t) is after t, and nothing between t and next(t) is a tick', () => {
    fc.assert(
      fc.property(expression, fc.constantFrom(...ZONES), instant, (cron, tz, t) => {
        const s = parseSchedule(cron, tz);
        const next = s.next(t);
        expect(next).not.toBeNull();
        expect(next!).toBeGreaterThan(t);
        // The tick after (next - 1) is next again: no tick was skipped in between.
        expect(s.next(next! - 1)).toBe(next);
        const after = s.next(next!);
        expect(after!).toBeGreaterThan(next!);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses bad expressions and timezones with SCHEDULE_INVALID', () => {
    for (const [cron, tz] of [
      ['61 * * * *', 'UTC'],
      ['* * * *', 'UTC'],
      ['not a cron', 'UTC'],
      ['* * * * *', 'Mars/Olympus'],
      ['* * * * *', ''],
      [42, 'UTC'],
    ] as const) {
      expect(() => parseSchedule(cron, tz)).toThrow(
        expect.objectContaining({ code: 'SCHEDULE_INVALID' }),
      );
    }
  });
});
