import type { FastifyInstance } from 'fastify';
import type { Docket } from '../../docket.js';
import { principalOf } from '../auth.js';
import { errorResponses, jobTypeSchema } from '../schemas.js';

interface ProcessBody {
  max?: number;
  budgetMs?: number;
  type?: string;
  mode?: 'balanced' | 'strict';
}

/** The queue: on-demand batch processing for cron and serverless callers (SPEC Q-10). */
export function queueRoutes(docket: Docket) {
  return async (app: FastifyInstance): Promise<void> => {
    app.post<{ Body: ProcessBody | undefined }>(
      '/queue/process',
      {
        // No body at all means "all defaults".
        preValidation: async (req) => {
          req.body ??= {};
        },
        schema: {
          summary: "Process at most `max` of the key's tenant's jobs within `budgetMs`",
          tags: ['queue'],
          body: {
            type: 'object',
            additionalProperties: false,
            properties: {
              max: { type: 'integer', minimum: 1, maximum: 50, default: 1 },
              budgetMs: { type: 'integer', minimum: 1, maximum: 300_000, default: 20_000 },
              type: jobTypeSchema,
              mode: { type: 'string', enum: ['balanced', 'strict'], default: 'balanced' },
            },
          },
          response: {
            200: {
              type: 'object',
              properties: {
                processed: { type: 'integer' },
                succeeded: { type: 'integer' },
                retried: { type: 'integer' },
                dead: { type: 'integer' },
                byLane: { type: 'object', additionalProperties: { type: 'integer' } },
                durationMs: { type: 'integer' },
                budgetExhausted: { type: 'boolean' },
              },
            },
            ...errorResponses(400, 401),
          },
        },
      },
      async (req) => {
        const body = req.body ?? {};
        return docket.processBatch({
          tenant: principalOf(req).tenant,
          max: body.max,
          budgetMs: body.budgetMs,
          type: body.type,
          mode: body.mode,
        });
      },
    );
  };
}
