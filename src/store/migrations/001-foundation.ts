import type { DocketMigration } from './index.js';

// Times are epoch milliseconds (bigint / integer) on every dialect so that the same values,
// computed from the injected clock, mean the same thing everywhere.

const JOB_STATUSES = `'pending','processing','succeeded','failed','canceled','dlq_pending','dlq_recorded'`;

// Allowed job status transitions (SPEC Q-2), enforced by a trigger on both dialects.
const TRANSITIONS: Array<[string, string]> = [
  ['pending', 'processing'],
  ['pending', 'canceled'],
  ['processing', 'succeeded'],
  ['processing', 'pending'],
  ['processing', 'dlq_pending'],
  ['processing', 'canceled'],
  ['dlq_pending', 'dlq_recorded'],
  ['dlq_recorded', 'failed'],
  ['failed', 'pending'],
  ['canceled', 'pending'],
];
const transitionList = TRANSITIONS.map(([a, b]) => `'${a}>${b}'`).join(',');

const TENANT_TABLES = ['jobs', 'dlq_items', 'audit_logs', 'api_keys'];

const postgres = [
  `create table tenants (
     id text primary key,
     name text not null,
     created_at bigint not null
   )`,
  `create table api_keys (
     id text primary key,
     tenant_id text not null references tenants(id),
     secret_hash text not null,
     label text not null default '',
     created_at bigint not null,
     revoked_at bigint
   )`,
  `create table jobs (
     id uuid primary key,
     tenant_id text not null,
     queue text not null,
     type text not null,
     payload jsonb not null,
     payload_hash text not null,
     priority integer not null default 0,
     status text not null check (status in (${JOB_STATUSES})),
     available_at bigint not null,
     attempts integer not null default 0 check (attempts >= 0),
     max_attempts integer not null check (max_attempts > 0),
     last_error jsonb,
     locked_by text,
     locked_at bigint,
     lease_until bigint,
     idempotency_key text,
     trace_id text not null,
     result jsonb,
     timeout_ms integer,
     created_at bigint not null,
     updated_at bigint not null,
     finished_at bigint,
     constraint jobs_lock_consistent check ((status = 'processing') = (locked_by is not null))
   )`,
  `create unique index jobs_idempotency on jobs (tenant_id, idempotency_key) where idempotency_key is not null`,
  `create index jobs_claim on jobs (priority, available_at, id) where status = 'pending'`,
  `create index jobs_claim_type on jobs (type, priority, available_at, id) where status = 'pending'`,
  `create index jobs_lease on jobs (lease_until) where status = 'processing'`,
  `create index jobs_dlq_steps on jobs (status) where status in ('dlq_pending', 'dlq_recorded')`,
  `create index jobs_tenant_list on jobs (tenant_id, id)`,
  `create index jobs_finished on jobs (finished_at) where finished_at is not null`,
  `create table dlq_items (
     id uuid primary key,
     tenant_id text not null,
     job_id uuid not null unique references jobs(id) on delete cascade,
     type text not null,
     queue text not null,
     attempts integer not null,
     last_error jsonb,
     trace_id text not null,
     created_at bigint not null,
     replayed_at bigint
   )`,
  `create index dlq_items_tenant on dlq_items (tenant_id, id) where replayed_at is null`,
  `create table audit_logs (
     id uuid primary key,
     tenant_id text not null,
     action text not null,
     resource_type text not null,
     resource_id text not null,
     actor text not null,
     trace_id text not null,
     data jsonb not null default '{}',
     created_at bigint not null
   )`,
  `create index audit_logs_tenant on audit_logs (tenant_id, id)`,
  // The allowed-transition test sits in the trigger's WHEN clause, which the executor evaluates
  // without entering PL/pgSQL; the function runs only to raise for an invalid transition, so
  // the hot path (claim, completion) pays no function call per row.
  `create function docket_job_transition() returns trigger language plpgsql as $$
   begin
     raise exception 'docket: job % cannot move from % to %', old.id, old.status, new.status
       using errcode = 'check_violation';
   end $$`,
  `create trigger jobs_transition before update of status on jobs
     for each row when (old.status is distinct from new.status
       and (old.status || '>' || new.status) not in (${transitionList}))
     execute function docket_job_transition()`,
  // Wakes idle workers; NOTIFY is delivered at commit and collapsed within a transaction.
  `create function docket_job_notify() returns trigger language plpgsql as $$
   begin perform pg_notify('docket_jobs', ''); return null; end $$`,
  `create trigger jobs_notify after insert on jobs for each statement execute function docket_job_notify()`,
  `create function docket_job_notify_row() returns trigger language plpgsql as $$
   begin perform pg_notify('docket_jobs', ''); return null; end $$`,
  `create trigger jobs_notify_requeue after update of status on jobs
     for each row when (new.status = 'pending' and old.status <> 'pending')
     execute function docket_job_notify_row()`,
  ...TENANT_TABLES.flatMap((t) => [
    `alter table ${t} enable row level security`,
    `create policy ${t}_tenant on ${t}
       using (tenant_id = current_setting('app.current_tenant', true))
       with check (tenant_id = current_setting('app.current_tenant', true))`,
    `create policy ${t}_system on ${t} to docket_system using (true) with check (true)`,
  ]),
  `grant select, insert, update on jobs to docket_app`,
  // Tenants only mark their DLQ items replayed; recording them is the engine's job.
  `grant select, update (replayed_at), delete on dlq_items to docket_app`,
  `grant select, insert on audit_logs to docket_app`,
  `grant select, insert, update, delete on jobs, dlq_items, tenants, api_keys to docket_system`,
  `grant select, insert, delete on audit_logs to docket_system`,
  // Lets `docket doctor` read the applied migrations through the engine's role.
  `grant select on docket_migrations to docket_system`,
];

const sqlite = [
  `create table tenants (
     id text primary key,
     name text not null,
     created_at integer not null
   ) strict`,
  `create table api_keys (
     id text primary key,
     tenant_id text not null references tenants(id),
     secret_hash text not null,
     label text not null default '',
     created_at integer not null,
     revoked_at integer
   ) strict`,
  `create table jobs (
     id text primary key,
     tenant_id text not null,
     queue text not null,
     type text not null,
     payload text not null,
     payload_hash text not null,
     priority integer not null default 0,
     status text not null check (status in (${JOB_STATUSES})),
     available_at integer not null,
     attempts integer not null default 0 check (attempts >= 0),
     max_attempts integer not null check (max_attempts > 0),
     last_error text,
     locked_by text,
     locked_at integer,
     lease_until integer,
     idempotency_key text,
     trace_id text not null,
     result text,
     timeout_ms integer,
     created_at integer not null,
     updated_at integer not null,
     finished_at integer,
     check ((status = 'processing') = (locked_by is not null))
   ) strict`,
  `create unique index jobs_idempotency on jobs (tenant_id, idempotency_key) where idempotency_key is not null`,
  `create index jobs_claim on jobs (priority, available_at, id) where status = 'pending'`,
  `create index jobs_claim_type on jobs (type, priority, available_at, id) where status = 'pending'`,
  `create index jobs_lease on jobs (lease_until) where status = 'processing'`,
  `create index jobs_dlq_steps on jobs (status) where status in ('dlq_pending', 'dlq_recorded')`,
  `create index jobs_tenant_list on jobs (tenant_id, id)`,
  `create index jobs_finished on jobs (finished_at) where finished_at is not null`,
  `create table dlq_items (
     id text primary key,
     tenant_id text not null,
     job_id text not null unique references jobs(id) on delete cascade,
     type text not null,
     queue text not null,
     attempts integer not null,
     last_error text,
     trace_id text not null,
     created_at integer not null,
     replayed_at integer
   ) strict`,
  `create index dlq_items_tenant on dlq_items (tenant_id, id) where replayed_at is null`,
  `create table audit_logs (
     id text primary key,
     tenant_id text not null,
     action text not null,
     resource_type text not null,
     resource_id text not null,
     actor text not null,
     trace_id text not null,
     data text not null default '{}',
     created_at integer not null
   ) strict`,
  `create index audit_logs_tenant on audit_logs (tenant_id, id)`,
  `create trigger jobs_transition before update of status on jobs
     for each row when old.status is not new.status
       and (old.status || '>' || new.status) not in (${transitionList})
     begin
       select raise(abort, 'docket: invalid job status transition');
     end`,
];

/** Tenants, API keys, jobs, the dead-letter queue and a minimal audit log. */
export const m001Foundation: DocketMigration = {
  name: '001-foundation',
  postgres,
  sqlite,
  down: {
    postgres: [
      'drop table if exists audit_logs',
      'drop table if exists dlq_items',
      'drop table if exists jobs',
      'drop function if exists docket_job_transition',
      'drop function if exists docket_job_notify',
      'drop function if exists docket_job_notify_row',
      'drop table if exists api_keys',
      'drop table if exists tenants',
    ],
    sqlite: [
      'drop table if exists audit_logs',
      'drop table if exists dlq_items',
      'drop table if exists jobs',
      'drop table if exists api_keys',
      'drop table if exists tenants',
    ],
  },
};
