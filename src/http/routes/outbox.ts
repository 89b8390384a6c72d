import type { FastifyInstance } from 'fastify';
import type { Docket } from '../../docket.js';
import type { WebhookDelivery } from '../../outbox/deliveries.js';
import { ROUTE } from '../../outbox/store.js';
import { OUTBOX_STATUSES, type OutboxEvent, type OutboxStatus } from '../../outbox/types.js';
import { principalOf } from '../auth.js';
import {
  errorResponses,
  isoTime,
  jobIdParamsSchema,
  pageQuerySchema,
  parseStatusList,
  statusListSchema,
  pageResponseSchema,
} from '../schemas.js';

const isoTimeOrNull = { type: ['string', 'null'], format: 'date-time' } as const;
const stringMap = { type: 'object', additionalProperties: { type: 'string' } } as const;

/** An outbox event as the API returns it (times are ISO 8601). */
export const outboxEventSchema = {
  $id: 'OutboxEvent',
  type: 'object',
  properties: {
    id: { type: 'string' },
    tenantId: { type: 'string' },
    topic: { type: 'string' },
    key: { type: ['string', 'null'] },
    payload: {},
    headers: stringMap,
    traceId: { type: 'string' },
    status: { type: 'string', enum: [...OUTBOX_STATUSES] },
    attempts: { type: 'integer' },
    maxAttempts: { type: 'integer' },
    availableAt: isoTime,
    leaseOwner: { type: ['string', 'null'] },
    leaseUntil: isoTimeOrNull,
    lastError: { type: ['string', 'null'] },
    sinksDone: { type: 'array', items: { type: 'string' } },
    createdAt: isoTime,
    updatedAt: isoTime,
    publishedAt: isoTimeOrNull,
  },
} as const;

/** A stored webhook delivery as the API returns it. */
export const webhookDeliverySchema = {
  $id: 'WebhookDelivery',
  type: 'object',
  properties: {
    id: { type: 'string' },
    tenantId: { type: 'string' },
    eventId: { type: 'string' },
    sink: { type: 'string' },
    attempt: { type: 'integer' },
    class: { type: 'string', enum: ['success', 'retryable', 'permanent'] },
    request: {
      type: 'object',
      description: 'Sensitive header values are "***"; the body is at most 1 KiB.',
      properties: {
        url: { type: 'string' },
        method: { type: 'string' },
        headers: stringMap,
        body: { type: 'string' },
      },
    },
    response: {
      type: ['object', 'null'],
      description: 'Null when no response arrived; the body is at most 1 KiB.',
      properties: { status: { type: 'integer' }, headers: stringMap, body: { type: 'string' } },
    },
    error: {
      type: ['object', 'null'],
      properties: { code: { type: 'string' }, message: { type: 'string' } },
    },
    durationMs: { type: 'number' },
    repeatsDeliveryId: { type: ['string', 'null'] },
    createdAt: isoTime,
  },
} as const;

const iso = (ms: number) => new Date(ms).toISOString();
const isoOrNull = (ms: number | null) => (ms === null ? null : iso(ms));

/** An outbox event with ISO 8601 times. */
export type OutboxEventDto = Omit<
  OutboxEvent,
  'availableAt' | 'leaseUntil' | 'createdAt' | 'updatedAt' | 'publishedAt'
> & {
  availableAt: string;
  leaseUntil: string | null;
  createdAt: string;
  updatedAt: string;
  publishedAt: string | null;
};

/** Serializes an outbox event with ISO 8601 times. */
export function outboxEventDto(e: OutboxEvent): OutboxEventDto {
  return {
    ...e,
    availableAt: iso(e.availableAt),
    leaseUntil: isoOrNull(e.leaseUntil),
    createdAt: iso(e.createdAt),
    updatedAt: iso(e.updatedAt),
    publishedAt: isoOrNull(e.publishedAt),
  };
}

/** A webhook delivery with an ISO 8601 time. */
export type WebhookDeliveryDto = Omit<WebhookDelivery, 'createdAt'> & { createdAt: string };

/** Serializes a webhook delivery with an ISO 8601 time. */
export function webhookDeliveryDto(d: WebhookDelivery): WebhookDeliveryDto {
  return { ...d, createdAt: iso(d.createdAt) };
}

const eventResponse = { type: 'object', properties: { event: { $ref: 'OutboxEvent#' } } } as const;
const deliveryResponse = {
  type: 'object',
  properties: { delivery: { $ref: 'WebhookDelivery#' } },
} as const;
const idParams = jobIdParamsSchema('id');

/** The outbox: events, counts, unrouted topics, replay, webhook deliveries and re-runs (SPEC H-4, O-5, O-6). */
export function outboxRoutes(docket: Docket) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get<{
      Querystring: {
        status?: string;
        topic?: string;
        routed?: boolean;
        cursor?: string;
        limit?: number;
      };
    }>(
      '/outbox/events',
      {
        schema: {
          summary: 'List outbox events, newest first',
          tags: ['outbox'],
          querystring: {
            type: 'object',
            additionalProperties: false,
            properties: {
              status: statusListSchema(OUTBOX_STATUSES),
              topic: {
                type: 'string',
                pattern: ROUTE.source,
                description: 'Topic, or a pattern with * for any run of characters',
              },
              routed: {
                type: 'boolean',
                description:
                  "false: only events whose topic none of the serving instance's routes match (they wait); true: only routed ones",
              },
              ...pageQuerySchema,
            },
          },
          response: { 200: pageResponseSchema('OutboxEvent'), ...errorResponses(400, 401) },
        },
      },
      async (req) => {
        const q = req.query;
        const page = await docket.outbox.list(
          {
            status: parseStatusList<OutboxStatus>(q.status),
            topic: q.topic,
            routed: q.routed,
            cursor: q.cursor,
            limit: q.limit,
          },
          { tenant: principalOf(req).tenant },
        );
        return { items: page.items.map(outboxEventDto), nextCursor: page.nextCursor };
      },
    );

    app.get<{ Params: { id: string } }>(
      '/outbox/events/:id',
      {
        schema: {
          summary: 'Get an outbox event',
          tags: ['outbox'],
          params: idParams,
          response: { 200: eventResponse, ...errorResponses(401, 404) },
        },
      },
      async (req) => {
        const event = await docket.outbox.get(req.params.id, { tenant: principalOf(req).tenant });
        return { event: outboxEventDto(event) };
      },
    );

    app.get(
      '/outbox/counts',
      {
        schema: {
          summary: 'Count outbox events by state, and those no route matches',
          tags: ['outbox'],
          response: {
            200: {
              type: 'object',
              properties: {
                counts: {
                  type: 'object',
                  properties: Object.fromEntries(
                    OUTBOX_STATUSES.map((s) => [s, { type: 'integer' }]),
                  ),
                },
                unrouted: {
                  type: 'integer',
                  description: 'Waiting (pending or failed) events whose topic no route matches',
                },
              },
            },
            ...errorResponses(401),
          },
        },
      },
      async (req) => {
        const tenant = principalOf(req).tenant;
        const [counts, unrouted] = await Promise.all([
          docket.outbox.counts({ tenant }),
          docket.outbox.unrouted({ tenant, limit: 1 }),
        ]);
        return {
          counts: Object.fromEntries(OUTBOX_STATUSES.map((s) => [s, counts[s] ?? 0])),
          unrouted: unrouted.waiting,
        };
      },
    );

    app.get<{ Querystring: { limit?: number } }>(
      '/outbox/unrouted',
      {
        schema: {
          summary: 'Topics of waiting events that no route matches (no relay will claim them)',
          tags: ['outbox'],
          querystring: {
            type: 'object',
            additionalProperties: false,
            properties: { limit: pageQuerySchema.limit },
          },
          response: {
            200: {
              type: 'object',
              properties: {
                routes: {
                  type: 'array',
                  items: { type: 'string' },
                  description:
                    "The serving instance's route patterns, which the answer is judged by",
                },
                waiting: {
                  type: 'integer',
                  description: 'Waiting events whose topic no route matches, over every topic',
                },
                topics: {
                  type: 'array',
                  items: {
                    type: 'object',
                    properties: {
                      topic: { type: 'string' },
                      waiting: { type: 'integer' },
                      oldestCreatedAt: isoTime,
                    },
                  },
                },
              },
            },
            ...errorResponses(400, 401),
          },
        },
      },
      async (req) => {
        const r = await docket.outbox.unrouted({
          tenant: principalOf(req).tenant,
          limit: req.query.limit,
        });
        return {
          routes: r.routes,
          waiting: r.waiting,
          topics: r.topics.map((t) => ({ ...t, oldestCreatedAt: iso(t.oldestCreatedAt) })),
        };
      },
    );

    app.post<{ Params: { id: string } }>(
      '/outbox/events/:id/replay',
      {
        schema: {
          summary: 'Replay a dead outbox event (back to pending, audited)',
          tags: ['outbox'],
          params: idParams,
          response: { 200: eventResponse, ...errorResponses(401, 404, 409) },
        },
      },
      async (req) => {
        const { tenant, actor } = principalOf(req);
        const event = await docket.outbox.replay(req.params.id, {
          tenant,
          actor,
          traceId: req.traceId,
        });
        return { event: outboxEventDto(event) };
      },
    );

    app.get<{ Params: { id: string }; Querystring: { cursor?: string; limit?: number } }>(
      '/outbox/events/:id/deliveries',
      {
        schema: {
          summary: "An outbox event's webhook deliveries, oldest first",
          tags: ['outbox'],
          params: idParams,
          querystring: {
            type: 'object',
            additionalProperties: false,
            properties: { ...pageQuerySchema },
          },
          response: {
            200: pageResponseSchema('WebhookDelivery'),
            ...errorResponses(400, 401, 404),
          },
        },
      },
      async (req) => {
        const page = await docket.outbox.deliveries(
          req.params.id,
          { cursor: req.query.cursor, limit: req.query.limit },
          { tenant: principalOf(req).tenant },
        );
        return { items: page.items.map(webhookDeliveryDto), nextCursor: page.nextCursor };
      },
    );

    app.get<{ Params: { id: string } }>(
      '/outbox/deliveries/:id',
      {
        schema: {
          summary: 'Get a stored webhook delivery',
          tags: ['outbox'],
          params: idParams,
          response: { 200: deliveryResponse, ...errorResponses(401, 404) },
        },
      },
      async (req) => {
        const d = await docket.outbox.delivery(req.params.id, { tenant: principalOf(req).tenant });
        return { delivery: webhookDeliveryDto(d) };
      },
    );

    app.post<{ Params: { id: string } }>(
      '/outbox/deliveries/:id/rerun',
      {
        schema: {
          summary:
            "Perform a delivery's webhook request again (stored, linked, audited; the event's state is unchanged)",
          tags: ['outbox'],
          params: idParams,
          response: { 201: deliveryResponse, ...errorResponses(401, 404, 409) },
        },
      },
      async (req, reply) => {
        const { tenant, actor } = principalOf(req);
        const d = await docket.outbox.rerun(req.params.id, {
          tenant,
          actor,
          traceId: req.traceId,
        });
        return reply.status(201).send({ delivery: webhookDeliveryDto(d) });
      },
    );
  };
}
