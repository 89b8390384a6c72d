import type { FastifyInstance } from 'fastify';
import type { Docket } from '../../docket.js';
import { EFFECT_STATES, type Effect, type EffectState } from '../../effects/index.js';
import { principalOf } from '../auth.js';
import { errorResponses, isoTime, pageQuerySchema, pageResponseSchema } from '../schemas.js';

const STATE_LIST = `^(${EFFECT_STATES.join('|')})(,(${EFFECT_STATES.join('|')}))*$`;
const isoTimeOrNull = { type: ['string', 'null'], format: 'date-time' } as const;

/** An effect as the API returns it (times are ISO 8601). */
export const effectSchema = {
  $id: 'Effect',
  type: 'object',
  properties: {
    id: { type: 'string' },
    tenantId: { type: 'string' },
    key: { type: 'string' },
    type: { type: 'string' },
    payloadHash: { type: 'string' },
    state: { type: 'string', enum: [...EFFECT_STATES] },
    idempotentProvider: { type: 'boolean' },
    attempts: { type: 'integer' },
    leaseUntil: isoTimeOrNull,
    providerMessageId: { type: ['string', 'null'] },
    result: {},
    lastError: {
      type: ['object', 'null'],
      properties: {
        message: { type: 'string' },
        name: { type: 'string' },
        retryable: { type: 'boolean' },
        at: isoTime,
        details: { type: 'object', additionalProperties: true },
      },
    },
    resolvedBy: { type: ['string', 'null'] },
    resolutionNote: { type: ['string', 'null'] },
    traceId: { type: 'string' },
    createdAt: isoTime,
    updatedAt: isoTime,
    sentAt: isoTimeOrNull,
  },
} as const;

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));

/** Serializes an effect with ISO 8601 times. */
export function effectDto(e: Effect) {
  return {
    ...e,
    leaseUntil: isoOrNull(e.leaseUntil),
    lastError: e.lastError ? { ...e.lastError, at: iso(e.lastError.at) } : null,
    createdAt: iso(e.createdAt),
    updatedAt: iso(e.updatedAt),
    sentAt: isoOrNull(e.sentAt),
  };
}

const keyParams = {
  type: 'object',
  required: ['key'],
  properties: { key: { type: 'string', minLength: 1, maxLength: 255 } },
} as const;
const effectResponse = { type: 'object', properties: { effect: { $ref: 'Effect#' } } } as const;

/** The effect ledger: list, get and resolve (SPEC O-8); keys are URL-encoded in the path. */
export function effectRoutes(docket: Docket) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get<{ Querystring: { state?: string; cursor?: string; limit?: number } }>(
      '/effects',
      {
        schema: {
          summary: 'List effects, newest first',
          tags: ['effects'],
          querystring: {
            type: 'object',
            additionalProperties: false,
            properties: {
              state: { type: 'string', pattern: STATE_LIST, description: 'Comma-separated states' },
              ...pageQuerySchema,
            },
          },
          response: {
            200: pageResponseSchema('Effect'),
            ...errorResponses(400, 401),
          },
        },
      },
      async (req) => {
        const q = req.query;
        const page = await docket.effects.list(
          {
            state: q.state
              ? [...new Set(q.state.split(','))].map((s) => s as EffectState)
              : undefined,
            cursor: q.cursor,
            limit: q.limit,
          },
          { tenant: principalOf(req).tenant },
        );
        return { items: page.items.map(effectDto), nextCursor: page.nextCursor };
      },
    );

    app.get<{ Params: { key: string } }>(
      '/effects/:key',
      {
        schema: {
          summary: 'Get an effect by key',
          tags: ['effects'],
          params: keyParams,
          response: { 200: effectResponse, ...errorResponses(401, 404) },
        },
      },
      async (req) => {
        const effect = await docket.effects.get(req.params.key, {
          tenant: principalOf(req).tenant,
        });
        return { effect: effectDto(effect) };
      },
    );

    app.post<{
      Params: { key: string };
      Body: { outcome: 'sent' | 'failed'; providerMessageId?: string; note?: string };
    }>(
      '/effects/:key/resolve',
      {
        schema: {
          summary:
            'Resolve an unknown effect as sent (replayed from now on) or failed (sent again by the next run)',
          tags: ['effects'],
          params: keyParams,
          body: {
            type: 'object',
            required: ['outcome'],
            additionalProperties: false,
            properties: {
              outcome: { type: 'string', enum: ['sent', 'failed'] },
              providerMessageId: { type: 'string', minLength: 1, maxLength: 998 },
              note: { type: 'string', maxLength: 1000 },
            },
          },
          response: { 200: effectResponse, ...errorResponses(400, 401, 404, 409) },
        },
      },
      async (req) => {
        const { tenant, actor } = principalOf(req);
        const effect = await docket.effects.resolve(req.params.key, req.body, {
          tenant,
          actor,
          traceId: req.traceId,
        });
        return { effect: effectDto(effect) };
      },
    );
  };
}
