import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Docket } from '../../docket.js';
import type { EnqueueOptions, JobStatus } from '../../jobs/index.js';
import { JOB_STATUSES } from '../../jobs/index.js';
import { principalOf } from '../auth.js';
import {
  enqueueBodySchema,
  errorResponses,
  jobDto,
  jobIdParamsSchema,
  jobResponseSchema,
  pageQuerySchema,
  parseStatusList,
  statusListSchema,
  type EnqueueBody,
  pageResponseSchema,
} from '../schemas.js';

/** Most jobs in one POST /v1/jobs/batch. */
export const MAX_BATCH = 1000;

const enqueueResultSchema = {
  type: 'object',
  properties: { job: { $ref: 'Job#' }, deduplicated: { type: 'boolean' } },
} as const;

function enqueueOptions(body: EnqueueBody, req: FastifyRequest): EnqueueOptions {
  return {
    tenant: principalOf(req).tenant,
    queue: body.queue,
    priority: body.priority,
    runAt: body.runAt === undefined ? undefined : new Date(body.runAt),
    delayMs: body.delayMs,
    idempotencyKey: body.idempotencyKey,
    maxAttempts: body.maxAttempts,
    timeoutMs: body.timeoutMs,
    traceId: req.traceId,
  };
}

/** Jobs: enqueue, batch, get, list, cancel, retry (SPEC H-4). */
export function jobRoutes(docket: Docket, options: { batchBodyLimit: number }) {
  return async (app: FastifyInstance): Promise<void> => {
    app.post<{ Body: EnqueueBody }>(
      '/jobs',
      {
        schema: {
          summary: 'Enqueue a job',
          tags: ['jobs'],
          body: enqueueBodySchema,
          response: {
            200: { description: 'Deduplicated by idempotency key', ...enqueueResultSchema },
            201: { description: 'Enqueued', ...enqueueResultSchema },
            ...errorResponses(400, 401, 409, 413),
          },
        },
      },
      async (req, reply) => {
        const { job, deduplicated } = await docket.enqueue(
          req.body.type,
          req.body.payload,
          enqueueOptions(req.body, req),
        );
        return reply.status(deduplicated ? 200 : 201).send({ job: jobDto(job), deduplicated });
      },
    );

    app.post<{ Body: { jobs: EnqueueBody[] } }>(
      '/jobs/batch',
      {
        bodyLimit: options.batchBodyLimit,
        schema: {
          summary: 'Enqueue up to 1000 jobs atomically',
          tags: ['jobs'],
          body: {
            type: 'object',
            required: ['jobs'],
            additionalProperties: false,
            properties: {
              jobs: { type: 'array', minItems: 1, maxItems: MAX_BATCH, items: enqueueBodySchema },
            },
          },
          response: {
            200: {
              description: 'Every job was deduplicated',
              type: 'object',
              properties: { results: { type: 'array', items: enqueueResultSchema } },
            },
            201: {
              description: 'Enqueued',
              type: 'object',
              properties: { results: { type: 'array', items: enqueueResultSchema } },
            },
            ...errorResponses(400, 401, 409, 413),
          },
        },
      },
      async (req, reply) => {
        const { tenant } = principalOf(req);
        // One transaction: any invalid item (or idempotency conflict) enqueues nothing.
        const results = await docket.enqueueMany(
          req.body.jobs.map((item) => {
            const { tenant: _tenant, ...itemOptions } = enqueueOptions(item, req);
            return { type: item.type, payload: item.payload, options: itemOptions };
          }),
          { tenant },
        );
        const created = results.some((r) => !r.deduplicated);
        return reply.status(created ? 201 : 200).send({
          results: results.map((r) => ({ job: jobDto(r.job), deduplicated: r.deduplicated })),
        });
      },
    );

    app.get<{ Params: { id: string } }>(
      '/jobs/:id',
      {
        schema: {
          summary: 'Get a job',
          tags: ['jobs'],
          params: jobIdParamsSchema('id'),
          response: { 200: jobResponseSchema, ...errorResponses(401, 404) },
        },
      },
      async (req) => {
        const job = await docket.jobs.get(req.params.id, { tenant: principalOf(req).tenant });
        return { job: jobDto(job) };
      },
    );

    app.get<{
      Querystring: {
        status?: string;
        type?: string;
        queue?: string;
        cursor?: string;
        limit?: number;
      };
    }>(
      '/jobs',
      {
        schema: {
          summary: 'List jobs, newest first',
          tags: ['jobs'],
          querystring: {
            type: 'object',
            additionalProperties: false,
            properties: {
              status: statusListSchema(JOB_STATUSES),
              type: { type: 'string', minLength: 1, maxLength: 128 },
              queue: { type: 'string', minLength: 1, maxLength: 64 },
              ...pageQuerySchema,
            },
          },
          response: {
            200: pageResponseSchema('Job'),
            ...errorResponses(400, 401),
          },
        },
      },
      async (req) => {
        const q = req.query;
        const page = await docket.jobs.list(
          {
            status: parseStatusList<JobStatus>(q.status),
            type: q.type,
            queue: q.queue,
            cursor: q.cursor,
            limit: q.limit,
          },
          { tenant: principalOf(req).tenant },
        );
        return { items: page.items.map(jobDto), nextCursor: page.nextCursor };
      },
    );

    for (const action of ['cancel', 'retry'] as const) {
      app.post<{ Params: { id: string } }>(
        `/jobs/:id/${action}`,
        {
          schema: {
            summary:
              action === 'cancel'
                ? 'Cancel a pending or running job'
                : 'Retry a failed or canceled job',
            tags: ['jobs'],
            params: jobIdParamsSchema('id'),
            response: { 200: jobResponseSchema, ...errorResponses(401, 404, 409) },
          },
        },
        async (req) => {
          const { tenant, actor } = principalOf(req);
          const o = { tenant, actor, traceId: req.traceId };
          const job =
            action === 'cancel'
              ? await docket.jobs.cancel(req.params.id, o)
              : await docket.jobs.retry(req.params.id, o);
          return { job: jobDto(job) };
        },
      );
    }
  };
}
