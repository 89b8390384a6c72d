import type { DocketMigration } from './index.js';

// Retention of the effect ledger (SPEC O-8, Q-13). Ledger rows are the memory of what was done
// to the outside world, so migration 009 refused every DELETE. A ledger row is only needed while
// something could run its effect again: a job retry or a DLQ replay. Rows past retention in a
// final state (`sent`, `failed`) may now be removed, by the purge only: the deleting transaction
// holds a row in effects_purge_guard, which only the purge inserts and which never commits (the
// purge deletes it again before committing), as audit_purge_guard does for audit events.
// `pending`, `sending` and `unknown` rows are never removed: an unknown effect waits for an
// operator however old it is.

const guardedDelete = `exists (select 1 from effects_purge_guard) and old.state in ('sent', 'failed')`;

const pgImmutable = (deletable: string) => `create or replace function docket_effect_immutable()
   returns trigger language plpgsql as $$
   begin
     if tg_op = 'DELETE' then
       if ${deletable} then
         return old;
       end if;
       raise exception 'effect rows are not deleted' using errcode = 'check_violation';
     end if;
     if new.tenant_id <> old.tenant_id or new.key <> old.key or new.id <> old.id
        or new.payload_hash <> old.payload_hash then
       raise exception 'an effect keeps its tenant, key, id and payload hash'
         using errcode = 'check_violation';
     end if;
     return new;
   end $$`;

// The purge's walk: final rows by age.
const finishedIndex = `create index effects_finished on effects (updated_at) where state in ('sent', 'failed')`;

/** Lets the retention purge remove final ledger rows past retention, and nothing else. */
export const m017EffectsRetention: DocketMigration = {
  name: '017-effects-retention',
  postgres: [
    `create table effects_purge_guard (txid text primary key)`,
    pgImmutable(guardedDelete),
    finishedIndex,
    `grant select, insert, delete on effects_purge_guard to docket_system`,
    `grant delete on effects to docket_system`,
  ],
  sqlite: [
    `create table effects_purge_guard (txid text primary key) strict`,
    `drop trigger effects_no_delete`,
    `create trigger effects_no_delete before delete on effects
       when not (${guardedDelete})
       begin select raise(abort, 'effect rows are not deleted'); end`,
    finishedIndex,
  ],
  down: {
    postgres: [
      `revoke delete on effects from docket_system`,
      'drop index if exists effects_finished',
      pgImmutable('false'),
      'drop table if exists effects_purge_guard',
    ],
    sqlite: [
      'drop index if exists effects_finished',
      'drop trigger effects_no_delete',
      `create trigger effects_no_delete before delete on effects
         begin select raise(abort, 'effect rows are not deleted'); end`,
      'drop table if exists effects_purge_guard',
    ],
  },
};
