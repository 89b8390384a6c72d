import type { DocketMigration } from './index.js';

// The cron scheduler (SPEC S-1 … S-5). (009–011 are reserved for work in flight.)
//
// scheduler_tasks: one row per task registered in code. The definition columns (cron_default,
// timezone_default, timeout_ms, …) are upserted by every instance on start; `enabled` and the
// schedule override (cron_override, timezone_override) are runtime state operators change, read
// by every instance on each tick. next_due_at is the shared cursor: the next tick no instance
// has claimed yet, advanced by guarded updates (`where next_due_at = <the value read>`).
//
// scheduler_executions: one row per run. The unique index on (task, scheduled_for) for cron runs
// is what makes a tick run exactly once: the instance whose insert wins runs it. Its state
// machine is enforced by a trigger: running → succeeded | failed | timed_out | canceled |
// skipped; skipped rows may also be inserted directly; a finished row never changes again.
//
// scheduler_locks: lease locks (`overlap: 'forbid'`), acquired, extended and released by guarded
// updates; `token` grows by one on every grant (a fencing token) and is never reset.

const STATUSES = `'running', 'succeeded', 'failed', 'timed_out', 'canceled', 'skipped'`;
const ALLOWED = `old.status = 'running'
  and new.status in ('running', 'succeeded', 'failed', 'timed_out', 'canceled', 'skipped')`;

const taskColumns = (bigint: string) => `
     name text primary key check (length(name) between 1 and 200),
     tenant_id text not null,
     cron_default text not null,
     timezone_default text not null,
     cron_override text,
     timezone_override text,
     enabled integer not null check (enabled in (0, 1)),
     timeout_ms integer not null check (timeout_ms >= 1),
     grace_ms integer not null check (grace_ms >= 0),
     priority integer not null,
     overlap text not null check (overlap in ('forbid', 'allow')),
     catch_up text not null check (catch_up in ('skip', 'once')),
     next_due_at ${bigint},
     version integer not null check (version >= 1),
     created_at ${bigint} not null,
     updated_at ${bigint} not null,
     check ((cron_override is null) = (timezone_override is null))`;

const executionColumns = (id: string, bigint: string, real: string) => `
     id ${id} primary key,
     task text not null references scheduler_tasks (name) on delete cascade,
     tenant_id text not null,
     scheduled_for ${bigint} not null,
     trigger_kind text not null check (trigger_kind in ('cron', 'manual')),
     status text not null check (status in (${STATUSES})),
     instance_id text not null,
     fencing_token ${bigint},
     trace_id text not null,
     started_at ${bigint} not null,
     lease_until ${bigint},
     finished_at ${bigint},
     duration_ms ${real},
     error text,
     stack text,
     check ((status = 'running') = (finished_at is null)),
     check ((status = 'running') = (lease_until is not null))`;

const indexes = [
  // Exactly one cron execution per task per tick (S-2).
  `create unique index scheduler_executions_tick on scheduler_executions (task, scheduled_for)
     where trigger_kind = 'cron'`,
  // History of a task, newest first (keyset on id, time-sortable), and stats windows.
  `create index scheduler_executions_task on scheduler_executions (task, id)`,
  `create index scheduler_executions_tenant on scheduler_executions (tenant_id, id)`,
  // Running executions whose instance stopped heart-beating.
  `create index scheduler_executions_running on scheduler_executions (lease_until)
     where status = 'running'`,
];

const locksTable = (bigint: string) => `create table scheduler_locks (
     name text primary key check (length(name) between 1 and 300),
     owner text,
     token ${bigint} not null check (token >= 1),
     expires_at ${bigint} not null
   )`;

const postgres = [
  `create table scheduler_tasks (${taskColumns('bigint')})`,
  `create table scheduler_executions (${executionColumns('uuid', 'bigint', 'double precision')})`,
  ...indexes,
  locksTable('bigint'),
  `create function docket_scheduler_transition() returns trigger language plpgsql as $$
   begin
     if not (${ALLOWED}) then
       raise exception 'execution % cannot go from % to %', old.id, old.status, new.status
         using errcode = 'check_violation';
     end if;
     return new;
   end $$`,
  `create trigger scheduler_executions_transition before update on scheduler_executions
     for each row execute function docket_scheduler_transition()`,
  // Tenant rows as everywhere (SPEC T-2), although only the system role is granted access:
  // the scheduler is engine machinery, and tenants read their tasks through the API.
  ...['scheduler_tasks', 'scheduler_executions'].flatMap((t) => [
    `alter table ${t} enable row level security`,
    `create policy ${t}_tenant on ${t}
       using (tenant_id = current_setting('app.current_tenant', true))
       with check (tenant_id = current_setting('app.current_tenant', true))`,
    `create policy ${t}_system on ${t} to docket_system using (true) with check (true)`,
  ]),
  `grant select, insert, update, delete on scheduler_tasks, scheduler_executions, scheduler_locks
     to docket_system`,
];

const sqlite = [
  `create table scheduler_tasks (${taskColumns('integer')}) strict`,
  `create table scheduler_executions (${executionColumns('text', 'integer', 'real')}) strict`,
  ...indexes,
  `${locksTable('integer')} strict`,
  `create trigger scheduler_executions_transition before update on scheduler_executions
     for each row when not (${ALLOWED})
     begin select raise(abort, 'scheduler execution cannot make this status transition'); end`,
];

/** Scheduler tasks, executions and lease locks. */
export const m012Scheduler: DocketMigration = {
  name: '012-scheduler',
  postgres,
  sqlite,
  down: {
    postgres: [
      'drop table if exists scheduler_locks',
      'drop table if exists scheduler_executions',
      'drop table if exists scheduler_tasks',
      'drop function if exists docket_scheduler_transition()',
    ],
    sqlite: [
      'drop table if exists scheduler_locks',
      'drop table if exists scheduler_executions',
      'drop table if exists scheduler_tasks',
    ],
  },
};
