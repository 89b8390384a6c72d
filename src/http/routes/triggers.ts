import type { FastifyInstance } from 'fastify';
import type { Docket } from '../../docket.js';
import type { JsonValue } from '../../audit/index.js';
import { TRIGGER_STATES, type DueTrigger, type TriggerState } from '../../scheduler/index.js';
import { principalOf } from '../auth.js';
import {
  errorResponses,
  isoOrNull,
  isoTime,
  isoTimeOrNull,
  jobIdParamsSchema,
  pageQuerySchema,
  parseStatusList,
  statusListSchema,
  pageResponseSchema,
} from '../schemas.js';

const triggerTypeSchema = { type: 'string', pattern: '^[A-Za-z][A-Za-z0-9_.:-]{0,99}$' } as const;

/** A due trigger as the API returns it (times are ISO 8601). */
export const triggerSchema = {
  $id: 'DueTrigger',
  type: 'object',
  properties: {
    id: { type: 'string' },
    tenantId: { type: 'string' },
    type: { type: 'string' },
    target: { type: 'string' },
    payload: {},
    fireAt: isoTime,
    state: { type: 'string', enum: [...TRIGGER_STATES] },
    dedupeKey: { type: ['string', 'null'] },
    traceId: { type: 'string' },
    jobId: { type: 'string' },
    attempts: { type: 'integer' },
    result: {},
    skipReason: { type: ['string', 'null'] },
    error: { type: ['string', 'null'] },
    createdAt: isoTime,
    updatedAt: isoTime,
    finishedAt: isoTimeOrNull,
  },
} as const;

/** Body of POST /v1/triggers. */
interface ScheduleBody {
  type: string;
  target: string;
  fireAt: string;
  dedupeKey?: string;
  dedupeWindow?: number;
  payload?: JsonValue;
  maxAttempts?: number;
}

const scheduleBodySchema = {
  type: 'object',
  required: ['type', 'target', 'fireAt'],
  additionalProperties: false,
  properties: {
    type: triggerTypeSchema,
    target: { type: 'string', minLength: 1, maxLength: 500 },
    fireAt: {
      ...isoTime,
      description: 'When it fires (ISO 8601 with offset); a past time fires at once.',
    },
    dedupeKey: { type: 'string', minLength: 1, maxLength: 255 },
    dedupeWindow: {
      type: 'integer',
      minimum: 1,
      maximum: 366 * 86_400_000,
      description: 'ms during which the dedupe key returns this trigger (default one day)',
    },
    payload: { description: 'JSON payload for the handler (default {}).' },
    maxAttempts: { type: 'integer', minimum: 1, maximum: 1000 },
  },
  dependencies: { dedupeWindow: ['dedupeKey'] },
} as const;

/** A due trigger with ISO 8601 times. */
export type DueTriggerDto = Omit<
  DueTrigger,
  'fireAt' | 'createdAt' | 'updatedAt' | 'finishedAt'
> & {
  fireAt: string;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
};

/** Serializes a trigger with ISO 8601 times. */
export function triggerDto(t: DueTrigger): DueTriggerDto {
  const iso = (ms: number) => new Date(ms).toISOString();
  return {
    ...t,
    fireAt: iso(t.fireAt),
    createdAt: iso(t.createdAt),
    updatedAt: iso(t.updatedAt),
    finishedAt: isoOrNull(t.finishedAt),
  };
}

const triggerResponse = {
  type: 'object',
  properties: { trigger: { $ref: 'DueTrigger#' } },
} as const;
const scheduleResponse = {
  type: 'object',
  properties: { trigger: { $ref: 'DueTrigger#' }, deduplicated: { type: 'boolean' } },
} as const;
const idParams = jobIdParamsSchema('id');

/** Due triggers: schedule (idempotent by dedupe key), list, get, cancel (SPEC S-6, H-4). */
export function triggerRoutes(docket: Docket) {
  return async (app: FastifyInstance): Promise<void> => {
    app.post<{ Body: ScheduleBody }>(
      '/triggers',
      {
        schema: {
          summary: 'Schedule a due trigger (an open dedupe window returns the existing one)',
          tags: ['triggers'],
          body: scheduleBodySchema,
          response: {
            200: { description: 'Deduplicated: the trigger holding the key', ...scheduleResponse },
            201: { description: 'Scheduled', ...scheduleResponse },
            ...errorResponses(400, 401, 413),
          },
        },
      },
      async (req, reply) => {
        const b = req.body;
        const { trigger, deduplicated } = await docket.triggers.schedule(
          {
            type: b.type,
            target: b.target,
            fireAt: new Date(b.fireAt),
            dedupeKey: b.dedupeKey,
            dedupeWindow: b.dedupeWindow,
            payload: b.payload,
          },
          { tenant: principalOf(req).tenant, traceId: req.traceId, maxAttempts: b.maxAttempts },
        );
        return reply
          .status(deduplicated ? 200 : 201)
          .send({ trigger: triggerDto(trigger), deduplicated });
      },
    );

    app.get<{ Querystring: { state?: string; type?: string; cursor?: string; limit?: number } }>(
      '/triggers',
      {
        schema: {
          summary: 'List due triggers, newest first',
          tags: ['triggers'],
          querystring: {
            type: 'object',
            additionalProperties: false,
            properties: {
              state: statusListSchema(TRIGGER_STATES),
              type: triggerTypeSchema,
              ...pageQuerySchema,
            },
          },
          response: {
            200: pageResponseSchema('DueTrigger'),
            ...errorResponses(400, 401),
          },
        },
      },
      async (req) => {
        const q = req.query;
        const page = await docket.triggers.list(
          {
            state: parseStatusList<TriggerState>(q.state),
            type: q.type,
            cursor: q.cursor,
            limit: q.limit,
          },
          { tenant: principalOf(req).tenant },
        );
        return { items: page.items.map(triggerDto), nextCursor: page.nextCursor };
      },
    );

    app.get<{ Params: { id: string } }>(
      '/triggers/:id',
      {
        schema: {
          summary: 'Get a due trigger',
          tags: ['triggers'],
          params: idParams,
          response: { 200: triggerResponse, ...errorResponses(401, 404) },
        },
      },
      async (req) => ({
        trigger: triggerDto(
          await docket.triggers.get(req.params.id, { tenant: principalOf(req).tenant }),
        ),
      }),
    );

    app.post<{ Params: { id: string } }>(
      '/triggers/:id/cancel',
      {
        schema: {
          summary: 'Cancel a pending trigger (audited); its job then does nothing',
          tags: ['triggers'],
          params: idParams,
          response: { 200: triggerResponse, ...errorResponses(401, 404, 409) },
        },
      },
      async (req) => {
        const { tenant, actor } = principalOf(req);
        const trigger = await docket.triggers.cancel(req.params.id, {
          tenant,
          actor,
          traceId: req.traceId,
        });
        return { trigger: triggerDto(trigger) };
      },
    );
  };
}
