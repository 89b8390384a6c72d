// Stored webhook deliveries (SPEC O-6, issue 5 item 9): every request a webhook sink made, as
// sendWebhook recorded it (sensitive headers masked, bodies capped at 1 KiB), written the moment
// the request returned, and the link from a re-run to the delivery it repeats.
import type { Kysely, Transaction } from 'kysely';
import { appendAuditEvents, prepareAuditEvent, principalFromActor } from '../audit/index.js';
import { isUuid } from '../core/ids.js';
import type { Store } from '../store/index.js';
import type { DocketDatabase, WebhookDeliveriesTable } from '../store/schema.js';
import type { OutboxEvent } from './types.js';
import type { DeliveryClass, WebhookDeliveryRecord } from './webhook-request.js';

/** A stored webhook delivery. */
export interface WebhookDelivery {
  id: string;
  tenantId: string;
  eventId: string;
  /** The sink (by its configured name) that made the request. */
  sink: string;
  /** The event's publication attempt it belongs to (a re-run keeps the one it repeats). */
  attempt: number;
  class: DeliveryClass;
  request: { url: string; method: string; headers: Record<string, string>; body: string };
  /** Null when no response arrived (connection error, timeout, refused URL). */
  response: { status: number; headers: Record<string, string>; body: string } | null;
  /** Why there was no usable response, or why a response was not accepted (a redirect). */
  error: { code: string; message: string } | null;
  durationMs: number;
  /** The delivery this one re-ran, or null for a relay's own delivery. */
  repeatsDeliveryId: string | null;
  createdAt: number;
}

/** What to store about one request. */
export interface NewDelivery {
  id: string;
  event: OutboxEvent;
  sink: string;
  attempt: number;
  record: WebhookDeliveryRecord;
  repeatsDeliveryId: string | null;
  now: number;
}

// PostgreSQL text cannot hold NUL; an excerpt of a binary body may.
const noNul = (s: string) => s.replace(/\0/g, '\uFFFD');
const json = (v: unknown): Record<string, string> =>
  (typeof v === 'string' ? JSON.parse(v) : v) as Record<string, string>;

function toRow(d: NewDelivery): WebhookDeliveriesTable {
  const { record: r } = d;
  return {
    id: d.id,
    tenant_id: d.event.tenantId,
    event_id: d.event.id,
    sink: d.sink,
    attempt: d.attempt,
    class: r.class,
    request_url: r.request.url,
    request_method: r.request.method,
    request_headers: JSON.stringify(r.request.headers),
    request_body: noNul(r.request.body),
    response_status: r.response?.status ?? null,
    response_headers: r.response ? JSON.stringify(r.response.headers) : null,
    response_body: r.response ? noNul(r.response.body) : null,
    error_code: r.error ? r.error.code.slice(0, 200) : null,
    error_message: r.error ? noNul(r.error.message).slice(0, 2000) : null,
    duration_ms: Math.max(0, r.durationMs),
    repeats_delivery_id: d.repeatsDeliveryId,
    created_at: d.now,
  };
}

function fromRow(r: WebhookDeliveriesTable): WebhookDelivery {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    eventId: r.event_id,
    sink: r.sink,
    attempt: Number(r.attempt),
    class: r.class as DeliveryClass,
    request: {
      url: r.request_url,
      method: r.request_method,
      headers: json(r.request_headers),
      body: r.request_body,
    },
    response:
      r.response_status === null
        ? null
        : {
            status: Number(r.response_status),
            headers: json(r.response_headers),
            body: r.response_body ?? '',
          },
    error: r.error_code === null ? null : { code: r.error_code, message: r.error_message ?? '' },
    durationMs: Number(r.duration_ms),
    repeatsDeliveryId: r.repeats_delivery_id,
    createdAt: Number(r.created_at),
  };
}

/** Webhook delivery rows: append, read, and re-runs appended with their audit row. */
export class DeliveryStore {
  constructor(private readonly store: Store) {}

  /** Stores a relay's delivery (system role: the relay acts for every tenant). */
  async add(d: NewDelivery): Promise<WebhookDelivery> {
    const row = toRow(d);
    await this.store.withSystemStatement((db: Kysely<DocketDatabase>) =>
      db.insertInto('webhook_deliveries').values(row).execute(),
    );
    return fromRow(row);
  }

  /** Stores a re-run and its `outbox.delivery_rerun` audit row in one transaction. */
  async addRerun(d: NewDelivery & { actor: string; traceId: string }): Promise<WebhookDelivery> {
    const row = toRow(d);
    await this.store.withSystemTransaction(async (trx: Transaction<DocketDatabase>) => {
      await trx.insertInto('webhook_deliveries').values(row).execute();
      const prepared = prepareAuditEvent({
        tenant: d.event.tenantId,
        traceId: d.traceId,
        createdAt: d.now,
        action: 'outbox.delivery_rerun',
        resource: { type: 'outbox_event', id: d.event.id, name: d.event.topic },
        actor: principalFromActor(d.actor),
        metadata: {
          deliveryId: d.id,
          repeatsDeliveryId: d.repeatsDeliveryId,
          sink: d.sink,
          class: d.record.class,
          status: d.record.response?.status ?? null,
        },
      });
      await appendAuditEvents(trx, [prepared], d.now);
    });
    return fromRow(row);
  }

  /** One delivery of a tenant, or null. */
  async get(tenant: string, id: string): Promise<WebhookDelivery | null> {
    if (!isUuid(id)) return null;
    return this.store.withTenantTransaction(tenant, async (trx) => {
      const row = await trx
        .selectFrom('webhook_deliveries')
        .selectAll()
        .where('tenant_id', '=', tenant)
        .where('id', '=', id)
        .executeTakeFirst();
      return row ? fromRow(row) : null;
    });
  }

  /** A page of an event's deliveries, oldest first (its timeline). */
  async listForEvent(p: {
    tenant: string;
    eventId: string;
    after?: string;
    limit: number;
  }): Promise<WebhookDelivery[]> {
    return this.store.withTenantTransaction(p.tenant, async (trx) => {
      let q = trx
        .selectFrom('webhook_deliveries')
        .selectAll()
        .where('tenant_id', '=', p.tenant)
        .where('event_id', '=', p.eventId);
      if (p.after) q = q.where('id', '>', p.after);
      const rows = await q.orderBy('id', 'asc').limit(p.limit).execute();
      return rows.map(fromRow);
    });
  }
}
