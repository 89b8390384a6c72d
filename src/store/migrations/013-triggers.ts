import type { DocketMigration } from './index.js';

// Due triggers (SPEC S-6).
//
// due_triggers: one row per trigger. It is fired by a job of type `docket.trigger:<type>`
// enqueued in the same transaction (run_at = fire_at), so the claim machinery of jobs is the
// only scanner. Its state machine is enforced by a trigger here, besides the guarded updates:
//   pending → triggered | canceled | skipped | failed
//   pending → pending      bookkeeping (attempts, last error) while it is retried
// a final row never changes again (only the retention prune deletes it).
//
// due_trigger_keys: the dedupe claim of (tenant, type, dedupe_key). The primary key is what
// makes dedupe race-free across processes: a schedule takes the key with one
// `insert … on conflict do update … where expires_at <= now`, which inserts, or takes over an
// expired window, or changes nothing (the window is open: the trigger it names is returned).
// On PostgreSQL the conflicting insert waits for the other transaction's row and re-checks the
// condition on the committed version, so two concurrent schedules never both win.

const STATES = `'pending', 'triggered', 'canceled', 'skipped', 'failed'`;
const ALLOWED = `old.state = 'pending'
  and new.state in ('pending', 'triggered', 'canceled', 'skipped', 'failed')`;

const triggerColumns = (id: string, bigint: string) => `
     id ${id} primary key,
     tenant_id text not null,
     type text not null check (length(type) between 1 and 100),
     target text not null check (length(target) between 1 and 500),
     payload text not null,
     fire_at ${bigint} not null,
     state text not null check (state in (${STATES})),
     dedupe_key text check (dedupe_key is null or length(dedupe_key) between 1 and 255),
     trace_id text not null,
     job_id ${id} not null,
     attempts integer not null check (attempts >= 0),
     result text,
     skip_reason text,
     error text,
     created_at ${bigint} not null,
     updated_at ${bigint} not null,
     finished_at ${bigint},
     check ((state = 'pending') = (finished_at is null)),
     check (state <> 'skipped' or skip_reason is not null),
     check (state <> 'failed' or error is not null)`;

const keyColumns = (id: string, bigint: string) => `
     tenant_id text not null,
     type text not null,
     dedupe_key text not null,
     trigger_id ${id} not null,
     expires_at ${bigint} not null,
     primary key (tenant_id, type, dedupe_key)`;

const indexes = [
  // The tenant's triggers, newest first (keyset on the time-sortable id), and by state.
  `create index due_triggers_tenant on due_triggers (tenant_id, id)`,
  `create index due_triggers_state on due_triggers (tenant_id, state, id)`,
  // Pending triggers past their time: the sweep that settles those whose job ended elsewhere.
  `create index due_triggers_due on due_triggers (fire_at) where state = 'pending'`,
  // Retention: final triggers by finish time; expired dedupe windows.
  `create index due_triggers_finished on due_triggers (finished_at) where state <> 'pending'`,
  `create index due_trigger_keys_expiry on due_trigger_keys (expires_at)`,
];

const postgres = [
  `create table due_triggers (${triggerColumns('uuid', 'bigint')})`,
  `create table due_trigger_keys (${keyColumns('uuid', 'bigint')})`,
  ...indexes,
  `create function docket_due_trigger_transition() returns trigger language plpgsql as $$
   begin
     if not (${ALLOWED}) then
       raise exception 'trigger % cannot go from % to %', old.id, old.state, new.state
         using errcode = 'check_violation';
     end if;
     return new;
   end $$`,
  `create trigger due_triggers_transition before update on due_triggers
     for each row execute function docket_due_trigger_transition()`,
  ...['due_triggers', 'due_trigger_keys'].flatMap((t) => [
    `alter table ${t} enable row level security`,
    `create policy ${t}_tenant on ${t}
       using (tenant_id = current_setting('app.current_tenant', true))
       with check (tenant_id = current_setting('app.current_tenant', true))`,
    `create policy ${t}_system on ${t} to docket_system using (true) with check (true)`,
  ]),
  // Tenants schedule (insert the trigger, take its key) and read; the engine and operator
  // actions (system) move states.
  `grant select, insert on due_triggers to docket_app`,
  `grant select, insert, update on due_trigger_keys to docket_app`,
  `grant select, insert, update, delete on due_triggers, due_trigger_keys to docket_system`,
];

const sqlite = [
  `create table due_triggers (${triggerColumns('text', 'integer')}) strict`,
  `create table due_trigger_keys (${keyColumns('text', 'integer')}) strict`,
  ...indexes,
  `create trigger due_triggers_transition before update on due_triggers
     for each row when not (${ALLOWED})
     begin select raise(abort, 'due trigger cannot make this state transition'); end`,
];

/** Due triggers and their dedupe keys. */
export const m013Triggers: DocketMigration = {
  name: '013-triggers',
  postgres,
  sqlite,
  down: {
    postgres: [
      'drop table if exists due_trigger_keys',
      'drop table if exists due_triggers',
      'drop function if exists docket_due_trigger_transition()',
    ],
    sqlite: ['drop table if exists due_trigger_keys', 'drop table if exists due_triggers'],
  },
};
