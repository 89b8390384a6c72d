import type { FastifyInstance } from 'fastify';
import type { Docket } from '../../docket.js';
import { toDocketError } from '../errors.js';

const statusSchema = {
  type: 'object',
  properties: { status: { type: 'string' }, reason: { type: 'string' } },
} as const;

/** Liveness (/healthz), readiness (/readyz: the store answers) and Prometheus /metrics. */
export function healthRoutes(docket: Docket) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get(
      '/metrics',
      { schema: { summary: 'Prometheus metrics (no tenant labels)', tags: ['health'] } },
      async (_req, reply) => {
        const registry = docket.internals.metrics.registry;
        return reply.type(registry.contentType).send(await registry.metrics());
      },
    );

    app.get(
      '/healthz',
      {
        schema: { summary: 'The process is up', tags: ['health'], response: { 200: statusSchema } },
      },
      async () => ({ status: 'ok' }),
    );

    app.get(
      '/readyz',
      {
        schema: {
          summary: 'The store answers',
          tags: ['health'],
          response: { 200: statusSchema, 503: statusSchema },
        },
      },
      async (req, reply) => {
        try {
          await docket.ping();
          return { status: 'ready' };
        } catch (err) {
          const de = toDocketError(err);
          req.log.warn({ err }, 'readiness check failed');
          const reason =
            de.code === 'INTERNAL' ? String((err as Error).message ?? err) : de.message;
          return reply.status(503).send({ status: 'unavailable', reason });
        }
      },
    );
  };
}
