import type { DocketMigration } from './index.js';

// In-store publication (SPEC O-2, O-6): a sink whose writes live in Docket's own store (the job
// queue) is published inside the relay's claim transaction, so the claim, the sink's rows and
// the published mark commit together or not at all. Such an event needs no lease: it goes
// `pending → published` (or `failed → published`, a due retry) in one guarded update instead of
// passing through `publishing`, which saves a row version, its index entries and a round trip
// per event. Every other transition is as migration 007 made it.

const ALLOWED = `(old.status = 'pending' and new.status in ('publishing', 'pending', 'published'))
  or (old.status = 'failed' and new.status in ('publishing', 'failed', 'published'))
  or (old.status = 'publishing' and new.status in ('publishing', 'published', 'failed', 'dead'))
  or (old.status = 'dead' and new.status = 'pending')
  or (old.status = 'published' and new.status = 'published')`;

const BEFORE = `(old.status = 'pending' and new.status in ('publishing', 'pending'))
  or (old.status = 'failed' and new.status in ('publishing', 'failed'))
  or (old.status = 'publishing' and new.status in ('publishing', 'published', 'failed', 'dead'))
  or (old.status = 'dead' and new.status = 'pending')
  or (old.status = 'published' and new.status = 'published')`;

const pgFunction = (allowed: string) => `create or replace function docket_outbox_transition()
   returns trigger language plpgsql as $$
   begin
     if not (${allowed}) then
       raise exception 'outbox event % cannot go from % to %', old.id, old.status, new.status
         using errcode = 'check_violation';
     end if;
     return new;
   end $$`;

const sqliteTrigger = (allowed: string) => [
  `drop trigger outbox_events_transition`,
  `create trigger outbox_events_transition before update of status on outbox_events
     for each row when not (${allowed})
     begin select raise(abort, 'outbox event cannot make this status transition'); end`,
];

/** Lets an in-store sink's events go straight to `published` inside the claim transaction. */
export const m016OutboxInStorePublish: DocketMigration = {
  name: '016-outbox-in-store-publish',
  postgres: [pgFunction(ALLOWED)],
  sqlite: sqliteTrigger(ALLOWED),
  down: { postgres: [pgFunction(BEFORE)], sqlite: sqliteTrigger(BEFORE) },
};
