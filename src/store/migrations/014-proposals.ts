import type { DocketMigration } from './index.js';

// Proposals, confirm-before-apply (SPEC S-7). (013 is reserved for work in flight.)
//
// proposals: one generated change set waiting for a decision. What a person confirmed must be
// what gets applied, so the content columns (kind, target, changes, candidates, base version,
// expiry) never change after the insert, and the state machine is enforced by a trigger:
//   open → applied | rejected | expired | stale      (every other state is final)
// A check ties the decision columns to the state: an open proposal has no decision, an applied
// one names the candidate (if it had candidates) and the idempotency key that applied it.
//
// proposal_applies: the stored outcome of each apply request, one row per (tenant, proposal,
// idempotency key) with the request's hash: `applied` with the apply callback's result, or
// `refused` with the error code it got (expired, stale, not open). A repeated request replays
// the row; a different hash under the same key is a conflict. Rows are never updated, and a
// partial unique index admits one `applied` row per proposal: a second winner cannot commit.

const STATES = `'open', 'applied', 'rejected', 'expired', 'stale'`;
const ALLOWED = `old.state = 'open' and new.state in ('applied', 'rejected', 'expired', 'stale')`;
const CONTENT_CHANGED = `new.tenant_id <> old.tenant_id or new.id <> old.id or new.kind <> old.kind
  or new.target <> old.target or new.changes <> old.changes
  or coalesce(new.candidates, '') <> coalesce(old.candidates, '')
  or new.base_version <> old.base_version or new.expires_at <> old.expires_at
  or new.created_at <> old.created_at`;

// SQLite's form of "a final row changed at all" (PostgreSQL compares whole rows).
const FINAL_TOUCHED = `new.updated_at <> old.updated_at or new.decided_at is not old.decided_at
  or new.decided_by is not old.decided_by or new.reason is not old.reason
  or new.applied_candidate is not old.applied_candidate or new.applied_key is not old.applied_key`;

const proposalColumns = (id: string, bigint: string) => `
     id ${id} not null,
     tenant_id text not null,
     kind text not null check (length(kind) between 1 and 100),
     target text not null check (length(target) between 1 and 500),
     changes text not null,
     candidates text,
     base_version text not null,
     state text not null check (state in (${STATES})),
     expires_at ${bigint} not null,
     created_by text not null,
     trace_id text not null,
     created_at ${bigint} not null,
     updated_at ${bigint} not null,
     decided_at ${bigint},
     decided_by text,
     reason text,
     applied_candidate text,
     applied_key text,
     primary key (tenant_id, id),
     check ((state = 'open') = (decided_at is null)),
     check ((state = 'applied') = (applied_key is not null)),
     check (state = 'applied' or applied_candidate is null)`;

const applyColumns = (id: string, bigint: string) => `
     tenant_id text not null,
     proposal_id ${id} not null,
     idempotency_key text not null check (length(idempotency_key) between 1 and 255),
     request_hash text not null,
     candidate_id text,
     outcome text not null check (outcome in ('applied', 'refused')),
     result text,
     error_code text,
     error_message text,
     actor text not null,
     trace_id text not null,
     created_at ${bigint} not null,
     primary key (tenant_id, proposal_id, idempotency_key),
     foreign key (tenant_id, proposal_id) references proposals (tenant_id, id) on delete cascade,
     check ((outcome = 'refused') = (error_code is not null))`;

const indexes = [
  // Lists newest first, by state, kind or target (keyset on the time-sortable id).
  `create index proposals_by_state on proposals (tenant_id, state, id)`,
  `create index proposals_by_kind on proposals (tenant_id, kind, id)`,
  `create index proposals_by_target on proposals (tenant_id, target, id)`,
  // The expiry sweep: open proposals by deadline.
  `create index proposals_expiring on proposals (expires_at) where state = 'open'`,
  // At most one apply wins per proposal, whatever the application code does.
  `create unique index proposal_applies_one_winner on proposal_applies (tenant_id, proposal_id)
     where outcome = 'applied'`,
];

const postgres = [
  `create table proposals (${proposalColumns('uuid', 'bigint')})`,
  `create table proposal_applies (${applyColumns('uuid', 'bigint')})`,
  ...indexes,
  `create function docket_proposal_transition() returns trigger language plpgsql as $$
   begin
     if ${CONTENT_CHANGED} then
       raise exception 'proposal % keeps the change set it was created with', old.id
         using errcode = 'check_violation';
     end if;
     if new.state is distinct from old.state and not (${ALLOWED}) then
       raise exception 'proposal % cannot go from % to %', old.id, old.state, new.state
         using errcode = 'check_violation';
     end if;
     -- A final proposal only takes the no-op write that locks it (apply's first statement).
     if old.state <> 'open' and new is distinct from old then
       raise exception 'proposal % is % and final', old.id, old.state
         using errcode = 'check_violation';
     end if;
     return new;
   end $$`,
  `create trigger proposals_transition before update on proposals
     for each row execute function docket_proposal_transition()`,
  `create function docket_proposal_apply_immutable() returns trigger language plpgsql as $$
   begin
     raise exception 'a stored apply outcome is never changed' using errcode = 'check_violation';
   end $$`,
  `create trigger proposal_applies_immutable before update on proposal_applies
     for each row execute function docket_proposal_apply_immutable()`,
  ...['proposals', 'proposal_applies'].flatMap((t) => [
    `alter table ${t} enable row level security`,
    `create policy ${t}_tenant on ${t}
       using (tenant_id = current_setting('app.current_tenant', true))
       with check (tenant_id = current_setting('app.current_tenant', true))`,
    `create policy ${t}_system on ${t} to docket_system using (true) with check (true)`,
  ]),
  // Proposals are created, decided and applied in the tenant's own transactions (RLS binds
  // them); the expiry sweep is the system's.
  `grant select, insert, update on proposals to docket_app`,
  `grant select, insert on proposal_applies to docket_app`,
  `grant select, insert, update, delete on proposals, proposal_applies to docket_system`,
];

const sqlite = [
  `create table proposals (${proposalColumns('text', 'integer')}) strict`,
  `create table proposal_applies (${applyColumns('text', 'integer')}) strict`,
  ...indexes,
  `create trigger proposals_content before update on proposals
     for each row when ${CONTENT_CHANGED}
     begin select raise(abort, 'a proposal keeps the change set it was created with'); end`,
  `create trigger proposals_transition before update on proposals
     for each row when (new.state <> old.state and not (${ALLOWED}))
       or (old.state <> 'open' and (${FINAL_TOUCHED}))
     begin select raise(abort, 'proposal cannot make this state transition'); end`,
  `create trigger proposal_applies_immutable before update on proposal_applies
     begin select raise(abort, 'a stored apply outcome is never changed'); end`,
];

/** Proposals (confirm-before-apply) and their stored apply outcomes. */
export const m014Proposals: DocketMigration = {
  name: '014-proposals',
  postgres,
  sqlite,
  down: {
    postgres: [
      'drop table if exists proposal_applies',
      'drop table if exists proposals',
      'drop function if exists docket_proposal_transition()',
      'drop function if exists docket_proposal_apply_immutable()',
    ],
    sqlite: ['drop table if exists proposal_applies', 'drop table if exists proposals'],
  },
};
