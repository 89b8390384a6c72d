import type { DocketMigration } from './index.js';

// The effect ledger (SPEC O-8): one row per (tenant, effect key) recording what Docket did to
// the outside world (an email, a payment, an SMS) so that a retry never does it twice.
//
// The state machine is enforced by the database, not only by the ledger's guarded updates: a
// trigger refuses every transition O-8 does not name, and a check ties the lease to `sending`.
//   pending → sending            the first provider call starts (lease set)
//   failed  → sending            a retry after a recorded failure
//   sending → sent | failed      the provider answered (recorded at once)
//   sending → unknown            the lease expired with no answer recorded: the call may or may
//                                not have happened, so the effect is held for an operator
//   sending → sending            an expired lease taken over (idempotent providers only)
//   unknown → sent | failed      an operator resolved it, or the attempt's late answer arrived
//   unknown → sending            a retry of an idempotent provider (same idempotency key)
// `sent` is final. attempt_token names the latest provider call; its answer is recorded only
// while the row still carries that token, so a call that lost its lease cannot overwrite the
// outcome of a newer one.

const STATES = `'pending', 'sending', 'sent', 'failed', 'unknown'`;
const ALLOWED = `(old.state = 'pending' and new.state = 'sending')
  or (old.state = 'failed' and new.state = 'sending')
  or (old.state = 'sending' and new.state in ('sending', 'sent', 'failed', 'unknown'))
  or (old.state = 'unknown' and new.state in ('sent', 'failed', 'sending'))`;

const columns = (json: string, bigint: string, id: string) => `
     id ${id} not null,
     tenant_id text not null,
     key text not null check (length(key) between 1 and 255),
     type text not null check (length(type) between 1 and 100),
     payload_hash text not null,
     state text not null check (state in (${STATES})),
     idempotent_provider integer not null check (idempotent_provider in (0, 1)),
     attempts integer not null check (attempts >= 0),
     attempt_token text,
     lease_until ${bigint},
     provider_message_id text,
     result ${json},
     last_error ${json},
     resolved_by text,
     resolution_note text,
     trace_id text not null,
     created_at ${bigint} not null,
     updated_at ${bigint} not null,
     sent_at ${bigint},
     primary key (tenant_id, key),
     unique (tenant_id, id),
     check ((state = 'sending') = (lease_until is not null)),
     check (state = 'pending' or attempt_token is not null)`;

const indexes = [
  // Operator lists by state (unknown effects first of all), newest first.
  `create index effects_by_state on effects (tenant_id, state, id)`,
  // The sweep: sending effects whose lease expired.
  `create index effects_leases on effects (lease_until) where state = 'sending'`,
];

const postgres = [
  `create table effects (${columns('json', 'bigint', 'uuid')})`,
  ...indexes,
  `create function docket_effect_transition() returns trigger language plpgsql as $$
   begin
     if not (${ALLOWED}) then
       raise exception 'effect % cannot go from % to %', old.key, old.state, new.state
         using errcode = 'check_violation';
     end if;
     return new;
   end $$`,
  `create trigger effects_transition before update of state on effects
     for each row execute function docket_effect_transition()`,
  // A ledger row is never removed or re-keyed: it is the memory of what was done.
  `create function docket_effect_immutable() returns trigger language plpgsql as $$
   begin
     if tg_op = 'DELETE' then
       raise exception 'effect rows are not deleted' using errcode = 'check_violation';
     end if;
     if new.tenant_id <> old.tenant_id or new.key <> old.key or new.id <> old.id
        or new.payload_hash <> old.payload_hash then
       raise exception 'an effect keeps its tenant, key, id and payload hash'
         using errcode = 'check_violation';
     end if;
     return new;
   end $$`,
  `create trigger effects_immutable before update or delete on effects
     for each row execute function docket_effect_immutable()`,
  `alter table effects enable row level security`,
  `create policy effects_tenant on effects
     using (tenant_id = current_setting('app.current_tenant', true))
     with check (tenant_id = current_setting('app.current_tenant', true))`,
  `create policy effects_system on effects to docket_system using (true) with check (true)`,
  // Effects run in the tenant's own transactions (RLS binds them); the sweep is the system's.
  `grant select, insert, update on effects to docket_app`,
  `grant select, insert, update on effects to docket_system`,
];

const sqlite = [
  `create table effects (${columns('text', 'integer', 'text')}) strict`,
  ...indexes,
  `create trigger effects_transition before update of state on effects
     for each row when not (${ALLOWED})
     begin select raise(abort, 'effect cannot make this state transition'); end`,
  `create trigger effects_no_delete before delete on effects
     begin select raise(abort, 'effect rows are not deleted'); end`,
  `create trigger effects_immutable before update of tenant_id, key, id, payload_hash on effects
     for each row when new.tenant_id <> old.tenant_id or new.key <> old.key or new.id <> old.id
       or new.payload_hash <> old.payload_hash
     begin select raise(abort, 'an effect keeps its tenant, key, id and payload hash'); end`,
];

/** The effect ledger. */
export const m009Effects: DocketMigration = {
  name: '009-effects',
  postgres,
  sqlite,
  down: {
    postgres: [
      'drop table if exists effects',
      'drop function if exists docket_effect_transition()',
      'drop function if exists docket_effect_immutable()',
    ],
    sqlite: ['drop table if exists effects'],
  },
};
