// Built-in outbox sinks (SPEC O-6): Docket's own job queue and HTTP webhooks. Each is
// idempotent by event id where the destination allows it: a job's idempotency key is the event
// id, and a webhook carries it as `Idempotency-Key`.
import type { Transaction } from 'kysely';
import type { DocketDatabase } from '../store/schema.js';
import { sendWebhook, signWebhook, type WebhookDeliveryRecord } from './webhook-request.js';
import type { UrlSafetyOptions } from './url-safety.js';
import {
  PermanentSinkError,
  type OutboxEvent,
  type OutboxSink,
  type SinkOutcome,
  type SinkReceipt,
} from './types.js';

/** The payload of a job made from an outbox event. */
export interface OutboxJobPayload {
  eventId: string;
  topic: string;
  key: string | null;
  payload: unknown;
  headers: Record<string, string>;
}

/** What the jobs sink needs from Docket: an idempotent enqueue. */
export type EnqueueForSink = (
  type: string,
  payload: OutboxJobPayload,
  options: { tenant: string; idempotencyKey: string; traceId: string },
) => Promise<{ id: string }>;

/** What the jobs sink needs for a batch: an idempotent batch enqueue for one tenant. */
export type EnqueueManyForSink = (
  tenant: string,
  items: Array<{
    type: string;
    payload: OutboxJobPayload;
    options: { idempotencyKey: string; traceId: string };
  }>,
) => Promise<Array<{ id: string }>>;

/** What the jobs sink needs to enqueue inside the relay's claim transaction (a system one). */
export interface EnqueueInStoreForSink {
  /** Enqueues one tenant's jobs in `trx`, idempotently by key. */
  enqueueMany(
    trx: Transaction<DocketDatabase>,
    tenant: string,
    items: Array<{
      type: string;
      payload: OutboxJobPayload;
      options: { idempotencyKey: string; traceId: string };
    }>,
  ): Promise<unknown>;
  /** After `trx` committed: hands its jobs to the queue's dispatch and wakes workers. */
  committed(trx: Transaction<DocketDatabase>): Promise<void>;
}

const jobPayload = (event: OutboxEvent): OutboxJobPayload => ({
  eventId: event.id,
  topic: event.topic,
  key: event.key,
  payload: event.payload,
  headers: event.headers,
});

/**
 * Delivers each event as a job of `type` for the event's tenant, with the event id as the
 * idempotency key: a republished event finds the job it already made instead of a second one.
 * A relay's batch is enqueued with one `enqueueMany` per tenant (one transaction); if that
 * batch is refused, its events are enqueued one by one, so one bad event fails alone.
 */
export function jobsSink(
  type: string,
  enqueue: EnqueueForSink,
  enqueueMany?: EnqueueManyForSink,
  inStore?: EnqueueInStoreForSink,
): OutboxSink {
  const jobItem = (e: OutboxEvent) => ({
    type,
    payload: jobPayload(e),
    options: { idempotencyKey: `outbox:${e.id}`, traceId: e.traceId },
  });
  const publish = async (event: OutboxEvent): Promise<SinkReceipt> => {
    const job = await enqueue(type, jobPayload(event), {
      tenant: event.tenantId,
      idempotencyKey: `outbox:${event.id}`,
      traceId: event.traceId,
    });
    return { ref: job.id };
  };
  const one = (event: OutboxEvent): Promise<SinkOutcome> =>
    publish(event).then(
      (receipt) => ({ ok: true, receipt }),
      (error: unknown) => ({ ok: false, error }),
    );
  return {
    publish,
    publishMany: enqueueMany
      ? async (events) => {
          const outcomes: SinkOutcome[] = new Array<SinkOutcome>(events.length);
          const byTenant = new Map<string, number[]>();
          events.forEach((e, i) => {
            const list = byTenant.get(e.tenantId);
            if (list) list.push(i);
            else byTenant.set(e.tenantId, [i]);
          });
          await Promise.all(
            [...byTenant].map(async ([tenant, idx]) => {
              try {
                const jobs = await enqueueMany(
                  tenant,
                  idx.map((i) => jobItem(events[i] as OutboxEvent)),
                );
                idx.forEach((i, k) => {
                  outcomes[i] = { ok: true, receipt: { ref: jobs[k]?.id } };
                });
              } catch {
                // Find the event the batch was refused for: each alone.
                await Promise.all(
                  idx.map(async (i) => (outcomes[i] = await one(events[i] as OutboxEvent))),
                );
              }
            }),
          );
          return outcomes;
        }
      : undefined,
    ...(inStore
      ? {
          async publishInStore(trx: Transaction<DocketDatabase>, events: readonly OutboxEvent[]) {
            const byTenant = new Map<string, OutboxEvent[]>();
            for (const e of events) {
              const list = byTenant.get(e.tenantId);
              if (list) list.push(e);
              else byTenant.set(e.tenantId, [e]);
            }
            // One statement at a time: the transaction has one connection.
            for (const [tenant, list] of byTenant) {
              await inStore.enqueueMany(trx, tenant, list.map(jobItem));
            }
          },
          inStoreCommitted: (trx: Transaction<DocketDatabase>) => inStore.committed(trx),
        }
      : {}),
  };
}

/** Options of a webhook sink. */
export interface WebhookSinkOptions extends UrlSafetyOptions {
  /** Target URL (http/https, public addresses only unless allowed; see docs/webhooks.md). */
  url: string;
  /** Signing secret: requests carry `Docket-Signature: t=…,v1=HMAC-SHA256(t.body)`. */
  secret: string;
  /** Per-request timeout, ms. Default 10,000. */
  timeoutMs?: number;
  /**
   * Receives each delivery record (request, response, class) right after the request returned,
   * e.g. to store it; the sink waits for it before it reports the outcome.
   */
  onDelivery?: (event: OutboxEvent, record: WebhookDeliveryRecord) => void | Promise<void>;
}

/**
 * One signed POST of an event: `{ id, topic, key, payload, createdAt }` with the event's
 * headers, `Idempotency-Key: <event id>`, `Docket-Event-Topic` and `Docket-Signature`. The same
 * event always yields the same body, so a re-run is the same request with a fresh signature.
 */
export function deliverWebhook(
  o: Omit<WebhookSinkOptions, 'onDelivery'>,
  event: OutboxEvent,
  signal?: AbortSignal,
): Promise<WebhookDeliveryRecord> {
  const body = JSON.stringify({
    id: event.id,
    topic: event.topic,
    key: event.key,
    payload: event.payload,
    createdAt: new Date(event.createdAt).toISOString(),
  });
  return sendWebhook({
    url: o.url,
    allow: o.allow,
    body,
    timeoutMs: o.timeoutMs ?? 10_000,
    signal,
    headers: {
      ...event.headers,
      'idempotency-key': event.id,
      'docket-event-topic': event.topic,
      'docket-signature': signWebhook(o.secret, Math.floor(Date.now() / 1000), body),
    },
  });
}

/**
 * Delivers each event with deliverWebhook. 2xx accepts; 408/429/5xx and connection errors are
 * retried by the relay; other 4xx, redirects and refused URLs make the event dead at once
 * (PermanentSinkError).
 */
export function webhookSink(o: WebhookSinkOptions): OutboxSink {
  return {
    async publish(event: OutboxEvent, signal: AbortSignal): Promise<SinkReceipt> {
      const record = await deliverWebhook(o, event, signal);
      await o.onDelivery?.(event, record);
      if (record.class === 'success') return { ref: String(record.response?.status) };
      const why = record.response
        ? `webhook answered ${record.response.status}${record.error ? ` (${record.error.code})` : ''}`
        : `webhook failed: ${record.error?.code ?? ''} ${record.error?.message ?? ''}`.trim();
      if (record.class === 'permanent') throw new PermanentSinkError(why);
      throw new Error(why);
    },
  };
}
