// What the message-broker sinks (NATS JetStream, RabbitMQ) send for an event: one JSON body and
// one set of headers, so a consumer decodes events the same way whichever broker carries them.
import type { OutboxEvent } from './types.js';

/** The body of a broker message: the event as JSON (the webhook body plus the tenant). */
export interface BrokerEnvelope {
  id: string;
  tenant: string;
  topic: string;
  key: string | null;
  payload: unknown;
  /** ISO 8601. */
  createdAt: string;
}

/** Header names Docket sets on every broker message (they override the event's own headers). */
export const BROKER_HEADERS = {
  eventId: 'Docket-Event-Id',
  topic: 'Docket-Event-Topic',
  key: 'Docket-Event-Key',
  tenant: 'Docket-Tenant',
  traceId: 'Docket-Trace-Id',
} as const;

const OWN = new Set(Object.values(BROKER_HEADERS).map((h) => h.toLowerCase()));

/** The JSON body of an event. */
export function brokerBody(event: OutboxEvent): Buffer {
  const envelope: BrokerEnvelope = {
    id: event.id,
    tenant: event.tenantId,
    topic: event.topic,
    key: event.key,
    payload: event.payload,
    createdAt: new Date(event.createdAt).toISOString(),
  };
  return Buffer.from(JSON.stringify(envelope));
}

/** The event's headers plus Docket's own (event id, topic, key, tenant, trace id). */
export function brokerHeaders(event: OutboxEvent): Record<string, string> {
  const out: Record<string, string> = {};
  // An event header spelled like one of Docket's (in any case) gives way to Docket's.
  for (const [k, v] of Object.entries(event.headers)) if (!OWN.has(k.toLowerCase())) out[k] = v;
  out[BROKER_HEADERS.eventId] = event.id;
  out[BROKER_HEADERS.topic] = event.topic;
  if (event.key !== null) out[BROKER_HEADERS.key] = event.key;
  out[BROKER_HEADERS.tenant] = event.tenantId;
  out[BROKER_HEADERS.traceId] = event.traceId;
  return out;
}

const PLACEHOLDER = /\{(topic|tenant)\}/g;

/** Replaces `{topic}` and `{tenant}` in a subject or routing-key template. */
export function renderTemplate(template: string, event: OutboxEvent): string {
  return template.replace(PLACEHOLDER, (_, name: string) =>
    name === 'topic' ? event.topic : event.tenantId,
  );
}

/** Placeholders other than `{topic}` and `{tenant}` in a template (to refuse at config time). */
export function unknownPlaceholders(template: string): string[] {
  return [...template.matchAll(/\{([^}]*)\}/g)]
    .map((m) => m[1] as string)
    .filter((n) => n !== 'topic' && n !== 'tenant');
}
