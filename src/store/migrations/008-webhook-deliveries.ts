import type { DocketMigration } from './index.js';

// Stored webhook deliveries (SPEC O-6, issue 5 item 9): one row per HTTP request a webhook sink
// made for an outbox event, written the moment the request returned (before the relay records
// the event's outcome), so an operator can see what was sent and what came back, and re-run it.
//
// A delivery is a record of something that happened: rows are never updated (PostgreSQL grants
// no UPDATE to Docket's roles; SQLite refuses it with a trigger). Sensitive request and response
// headers are masked and both bodies are excerpts of at most 1 KiB before they get here; the
// checks below bound the excerpts so a bug upstream cannot store whole bodies. A re-run links
// the delivery it repeats (repeats_delivery_id, same tenant and event). Deliveries go with their
// event (on delete cascade).

const CLASSES = `'success', 'retryable', 'permanent'`;

const columns = (id: string, json: string, bigint: string, real: string) => `
     id ${id} not null,
     tenant_id text not null,
     event_id ${id} not null,
     sink text not null check (length(sink) between 1 and 200),
     attempt integer not null check (attempt >= 0),
     class text not null check (class in (${CLASSES})),
     request_url text not null,
     request_method text not null,
     request_headers ${json} not null,
     request_body text not null check (length(request_body) <= 1024),
     response_status integer,
     response_headers ${json},
     response_body text check (response_body is null or length(response_body) <= 1024),
     error_code text,
     error_message text check (error_message is null or length(error_message) <= 2000),
     duration_ms ${real} not null check (duration_ms >= 0),
     repeats_delivery_id ${id},
     created_at ${bigint} not null,
     primary key (tenant_id, id),
     foreign key (tenant_id, event_id) references outbox_events (tenant_id, id) on delete cascade,
     foreign key (tenant_id, repeats_delivery_id) references webhook_deliveries (tenant_id, id)
       on delete cascade,
     check ((response_status is null) = (response_headers is null)),
     check ((response_status is null) = (response_body is null)),
     check (response_status is not null or error_code is not null),
     check ((error_code is null) = (error_message is null))`;

const indexes = [
  // An event's deliveries in order (the API's timeline, and the cascade from outbox_events).
  `create index webhook_deliveries_event on webhook_deliveries (tenant_id, event_id, id)`,
  // The re-runs of a delivery (the self-referencing cascade).
  `create index webhook_deliveries_repeats on webhook_deliveries (tenant_id, repeats_delivery_id)
     where repeats_delivery_id is not null`,
];

const postgres = [
  `create table webhook_deliveries (${columns('uuid', 'json', 'bigint', 'double precision')})`,
  ...indexes,
  `alter table webhook_deliveries enable row level security`,
  `create policy webhook_deliveries_tenant on webhook_deliveries
     using (tenant_id = current_setting('app.current_tenant', true))
     with check (tenant_id = current_setting('app.current_tenant', true))`,
  `create policy webhook_deliveries_system on webhook_deliveries to docket_system
     using (true) with check (true)`,
  // Tenants read their deliveries; relays and re-runs (system) write them; nobody updates one.
  `grant select on webhook_deliveries to docket_app`,
  `grant select, insert, delete on webhook_deliveries to docket_system`,
];

const sqlite = [
  `create table webhook_deliveries (${columns('text', 'text', 'integer', 'real')}) strict`,
  ...indexes,
  `create trigger webhook_deliveries_immutable before update on webhook_deliveries
     begin select raise(abort, 'webhook deliveries are never updated'); end`,
];

/** Stored webhook deliveries (request, response, class) and their re-runs. */
export const m008WebhookDeliveries: DocketMigration = {
  name: '008-webhook-deliveries',
  postgres,
  sqlite,
  down: {
    postgres: ['drop table if exists webhook_deliveries'],
    sqlite: ['drop table if exists webhook_deliveries'],
  },
};
