import type { FastifyInstance } from 'fastify';
import type { Docket } from '../../docket.js';
import { principalOf } from '../auth.js';
import {
  dlqItemDto,
  errorResponses,
  jobDto,
  jobIdParamsSchema,
  jobResponseSchema,
  pageQuerySchema,
  pageResponseSchema,
} from '../schemas.js';

/** The dead-letter queue: list, replay and purge (SPEC H-4). */
export function dlqRoutes(docket: Docket) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get<{ Querystring: { cursor?: string; limit?: number } }>(
      '/dlq',
      {
        schema: {
          summary: 'List dead-lettered jobs',
          tags: ['dlq'],
          querystring: {
            type: 'object',
            additionalProperties: false,
            properties: { ...pageQuerySchema },
          },
          response: {
            200: pageResponseSchema('DlqItem'),
            ...errorResponses(400, 401),
          },
        },
      },
      async (req) => {
        const page = await docket.dlq.list({
          tenant: principalOf(req).tenant,
          cursor: req.query.cursor,
          limit: req.query.limit,
        });
        return { items: page.items.map(dlqItemDto), nextCursor: page.nextCursor };
      },
    );

    app.post<{ Params: { jobId: string } }>(
      '/dlq/:jobId/replay',
      {
        schema: {
          summary: 'Replay a dead-lettered job',
          tags: ['dlq'],
          params: jobIdParamsSchema('jobId'),
          response: { 200: jobResponseSchema, ...errorResponses(401, 404, 409) },
        },
      },
      async (req) => {
        const { tenant, actor } = principalOf(req);
        const job = await docket.dlq.replay(req.params.jobId, {
          tenant,
          actor,
          traceId: req.traceId,
        });
        return { job: jobDto(job) };
      },
    );

    app.post<{ Params: { jobId: string } }>(
      '/dlq/:jobId/purge',
      {
        schema: {
          summary: 'Remove a dead job from the DLQ without running it (retention then prunes it)',
          tags: ['dlq'],
          params: jobIdParamsSchema('jobId'),
          response: {
            200: { type: 'object', properties: { purged: { type: 'boolean' } } },
            ...errorResponses(401, 404, 409),
          },
        },
      },
      async (req) => {
        const { tenant, actor } = principalOf(req);
        await docket.dlq.purge(req.params.jobId, { tenant, actor, traceId: req.traceId });
        return { purged: true };
      },
    );
  };
}
