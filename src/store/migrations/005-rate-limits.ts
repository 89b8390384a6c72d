import type { DocketMigration } from './index.js';

// Per-type rate limits (SPEC Q-11): one counter row per limit key and fixed window, taken with
// an atomic upsert so that every process and machine on the store shares the allowance. Rows
// of past windows are removed by the pruning job. (004 is reserved for the audit ingest work.)
const postgres = [
  `create table rate_counters (
     key text not null,
     window_start bigint not null,
     taken integer not null check (taken >= 0),
     primary key (key, window_start)
   )`,
  `grant select, insert, update, delete on rate_counters to docket_system`,
];

const sqlite = [
  `create table rate_counters (
     key text not null,
     window_start integer not null,
     taken integer not null check (taken >= 0),
     primary key (key, window_start)
   ) strict`,
];

/** Shared counters of per-type rate limits. */
export const m005RateLimits: DocketMigration = {
  name: '005-rate-limits',
  postgres,
  sqlite,
  down: {
    postgres: ['drop table if exists rate_counters'],
    sqlite: ['drop table if exists rate_counters'],
  },
};
