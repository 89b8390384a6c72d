import type { DocketMigration } from './index.js';

// The transactional outbox (SPEC O-1 … O-4). (004 and 006 are reserved for work in flight.)
//
// outbox_events: one row per event, written in the application's own transaction. Its state
// machine is enforced by the database, not only by the relay's guarded updates: a trigger
// refuses every transition SPEC O-1 does not name, and a check ties the lease columns to the
// `publishing` state.
//   pending    → publishing            a relay claimed it (lease owner and deadline set)
//   failed     → publishing            a retry is due
//   publishing → publishing            an expired lease was taken over (recovery)
//   publishing → published | failed | dead
//   dead       → pending               an operator replayed it (audited)
//   pending    → pending, failed → failed  (no route yet / bookkeeping: attempts stay)
// sinks_done lists the sinks that already accepted the event, so a retry after a partial
// fan-out only goes to the others.
// outbox_consumed: the dedupe record of exactly-once consumers (O-4), inserted in the same
// transaction as the consumer's own writes.

const STATUSES = `'pending', 'publishing', 'published', 'failed', 'dead'`;
const ALLOWED = `(old.status = 'pending' and new.status in ('publishing', 'pending'))
  or (old.status = 'failed' and new.status in ('publishing', 'failed'))
  or (old.status = 'publishing' and new.status in ('publishing', 'published', 'failed', 'dead'))
  or (old.status = 'dead' and new.status = 'pending')
  or (old.status = 'published' and new.status = 'published')`;

const eventColumns = (json: string, bigint: string) => `
     id ${json === 'json' ? 'uuid' : 'text'} not null,
     tenant_id text not null,
     topic text not null check (length(topic) between 1 and 200),
     key text check (key is null or length(key) between 1 and 200),
     payload ${json} not null,
     headers ${json} not null,
     trace_id text not null,
     status text not null check (status in (${STATUSES})),
     attempts integer not null check (attempts >= 0),
     max_attempts integer not null check (max_attempts >= 1),
     available_at ${bigint} not null,
     lease_owner text,
     lease_until ${bigint},
     last_error text,
     sinks_done text not null,
     created_at ${bigint} not null,
     updated_at ${bigint} not null,
     published_at ${bigint},
     primary key (tenant_id, id),
     check ((status = 'publishing') = (lease_owner is not null and lease_until is not null))`;

const indexes = [
  // What a relay claims: due pending and failed events, oldest first.
  `create index outbox_due on outbox_events (available_at, id) where status in ('pending', 'failed')`,
  // Expired leases to take over.
  `create index outbox_leases on outbox_events (lease_until) where status = 'publishing'`,
  // Per-key ordering: the unfinished events of a key, in order.
  `create index outbox_key_open on outbox_events (tenant_id, key, id)
     where key is not null and status in ('pending', 'publishing', 'failed')`,
  // Operator lists by state (dead events, waiting ones), newest first.
  `create index outbox_by_status on outbox_events (tenant_id, status, id)`,
];

const postgres = [
  `create table outbox_events (${eventColumns('json', 'bigint')}) with (fillfactor = 70)`,
  ...indexes,
  `create function docket_outbox_transition() returns trigger language plpgsql as $$
   begin
     if not (${ALLOWED}) then
       raise exception 'outbox event % cannot go from % to %', old.id, old.status, new.status
         using errcode = 'check_violation';
     end if;
     return new;
   end $$`,
  `create trigger outbox_events_transition before update of status on outbox_events
     for each row execute function docket_outbox_transition()`,
  `create table outbox_consumed (
     tenant_id text not null,
     consumer text not null check (length(consumer) between 1 and 200),
     event_id uuid not null,
     consumed_at bigint not null,
     primary key (tenant_id, consumer, event_id)
   )`,
  ...['outbox_events', 'outbox_consumed'].flatMap((t) => [
    `alter table ${t} enable row level security`,
    `create policy ${t}_tenant on ${t}
       using (tenant_id = current_setting('app.current_tenant', true))
       with check (tenant_id = current_setting('app.current_tenant', true))`,
    `create policy ${t}_system on ${t} to docket_system using (true) with check (true)`,
  ]),
  // Tenants add events and read them, and record consumption; the relay (system) moves them.
  `grant select, insert on outbox_events to docket_app`,
  `grant select, insert on outbox_consumed to docket_app`,
  `grant select, insert, update, delete on outbox_events, outbox_consumed to docket_system`,
];

const sqlite = [
  `create table outbox_events (${eventColumns('text', 'integer')}) strict`,
  ...indexes,
  `create trigger outbox_events_transition before update of status on outbox_events
     for each row when not (${ALLOWED})
     begin select raise(abort, 'outbox event cannot make this status transition'); end`,
  `create table outbox_consumed (
     tenant_id text not null,
     consumer text not null check (length(consumer) between 1 and 200),
     event_id text not null,
     consumed_at integer not null,
     primary key (tenant_id, consumer, event_id)
   ) strict`,
];

/** The transactional outbox and exactly-once consumer records. */
export const m007Outbox: DocketMigration = {
  name: '007-outbox',
  postgres,
  sqlite,
  down: {
    postgres: [
      'drop table if exists outbox_consumed',
      'drop table if exists outbox_events',
      'drop function if exists docket_outbox_transition()',
    ],
    sqlite: ['drop table if exists outbox_consumed', 'drop table if exists outbox_events'],
  },
};
