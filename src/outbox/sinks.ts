// Built-in outbox sinks (SPEC O-6): Docket's own job queue and HTTP webhooks. Each is
// idempotent by event id where the destination allows it: a job's idempotency key is the event
// id, and a webhook carries it as `Idempotency-Key`.
import { sendWebhook, signWebhook, type WebhookDeliveryRecord } from './webhook-request.js';
import type { UrlSafetyOptions } from './url-safety.js';
import {
  PermanentSinkError,
  type OutboxEvent,
  type OutboxSink,
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

/**
 * Delivers each event as a job of `type` for the event's tenant, with the event id as the
 * idempotency key: a republished event finds the job it already made instead of a second one.
 */
export function jobsSink(type: string, enqueue: EnqueueForSink): OutboxSink {
  return {
    async publish(event: OutboxEvent): Promise<SinkReceipt> {
      const job = await enqueue(
        type,
        {
          eventId: event.id,
          topic: event.topic,
          key: event.key,
          payload: event.payload,
          headers: event.headers,
        },
        { tenant: event.tenantId, idempotencyKey: `outbox:${event.id}`, traceId: event.traceId },
      );
      return { ref: job.id };
    },
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
