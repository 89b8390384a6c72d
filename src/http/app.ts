import swagger from '@fastify/swagger';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Docket } from '../docket.js';
import { DocketError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { JobMap } from '../jobs/index.js';
import {
  readTraceparent,
  requireApiKey,
  requireApiKeyOrOperator,
  requireOperator,
} from './auth.js';
import { errorBodySchema, httpErrorHandler, routeNotFound } from './errors.js';
import { dlqRoutes } from './routes/dlq.js';
import { outboxEventSchema, outboxRoutes, webhookDeliverySchema } from './routes/outbox.js';
import { effectRoutes, effectSchema } from './routes/effects.js';
import { proposalRoutes, proposalSchema } from './routes/proposals.js';
import { healthRoutes } from './routes/health.js';
import { jobRoutes } from './routes/jobs.js';
import { queueRoutes } from './routes/queue.js';
import { tenantRoutes } from './routes/tenants.js';
import { auditEventSchema, auditRoutes } from './routes/audit.js';
import {
  schedulerRoutes,
  taskExecutionSchema,
  taskSchema,
  taskStatsSchema,
} from './routes/scheduler.js';
import { triggerRoutes, triggerSchema } from './routes/triggers.js';
import { auditHooks } from './audit-hook.js';
import { createClientIpResolver } from '../audit/index.js';
import { dlqItemSchema, jobSchema } from './schemas.js';

/** Options of buildHttpApp. */
export interface HttpAppOptions<M extends JobMap = JobMap> {
  /** The Docket instance the API serves. */
  docket: Docket<M>;
  /** Secret for the operator endpoints (tenants, API keys). Default none: they answer 403. */
  operatorSecret?: string;
  /** Logger for requests and failures. */
  logger: Logger;
  /** Body limit of POST /v1/jobs/batch, bytes. Default 16 MiB (or one payload limit, if larger). */
  batchBodyLimitBytes?: number;
  /**
   * Proxies whose Forwarded / X-Forwarded-For / X-Real-IP headers are believed for the client IP
   * recorded in audit events: IPs, CIDRs, or `loopback`, `linklocal`, `uniquelocal`. Default none.
   */
  trustedProxies?: readonly string[];
}

// Room for the envelope around a payload (type, options, JSON escaping) so that Docket itself
// measures the payload and answers PAYLOAD_TOO_LARGE with the exact size and limit.
const ENVELOPE_BYTES = 64 * 1024;

const tenantSchema = {
  $id: 'Tenant',
  type: 'object',
  properties: { id: { type: 'string' }, name: { type: 'string' }, created: { type: 'boolean' } },
} as const;

/** Builds the Fastify app of the HTTP API (SPEC H). Call `listen()` or `inject()` on it. */
export function buildHttpApp<M extends JobMap>(options: HttpAppOptions<M>): FastifyInstance {
  const docket = options.docket as unknown as Docket;
  const bodyLimit = docket.config.payloadLimitBytes + ENVELOPE_BYTES;
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    bodyLimit,
    // Requests that arrive while closing get SHUTTING_DOWN in the usual error body (below).
    return503OnClosing: false,
    ajv: {
      // Unknown fields are rejected rather than silently dropped; query strings need coercion.
      customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true },
    },
  });

  app.decorateRequest('principal', null);
  app.decorateRequest('traceId', undefined);
  app.decorateRequest('operator', false);
  app.decorateRequest('createdResourceId', undefined);
  const clientIp = createClientIpResolver(options.trustedProxies ?? []);
  const audit = auditHooks(docket, clientIp, options.logger);
  app.setErrorHandler(httpErrorHandler(options.logger));
  app.setNotFoundHandler(routeNotFound);
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async () => {
    if (closing) throw new DocketError('SHUTTING_DOWN', 'the service is shutting down; retry');
  });

  // An empty JSON body means "no body" (POST …/cancel with a JSON content type); anything else
  // must parse, or the request fails with INVALID_JSON.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    parseJson(req, text, (err, value) =>
      err
        ? done(new DocketError('INVALID_JSON', 'the request body is not valid JSON'), undefined)
        : done(null, value),
    );
  });

  app.addSchema(errorBodySchema);
  app.addSchema(jobSchema);
  app.addSchema(dlqItemSchema);
  app.addSchema(tenantSchema);
  app.addSchema(auditEventSchema);
  app.addSchema(outboxEventSchema);
  app.addSchema(webhookDeliverySchema);
  app.addSchema(effectSchema);
  app.addSchema(taskSchema);
  app.addSchema(taskExecutionSchema);
  app.addSchema(taskStatsSchema);
  app.addSchema(proposalSchema);
  app.addSchema(triggerSchema);

  void app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Docket HTTP API',
        version: '1',
        description:
          'Durable background jobs per tenant. Errors: { error: { code, message, details } }.',
      },
      components: {
        securitySchemes: {
          apiKey: { type: 'http', scheme: 'bearer', description: 'dk_<keyId>_<secret>' },
          operator: { type: 'http', scheme: 'bearer', description: 'DOCKET_OPERATOR_SECRET' },
        },
      },
      security: [{ apiKey: [] }],
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) =>
        typeof json.$id === 'string' ? json.$id : `def-${i}`,
    },
  });

  void app.register(healthRoutes(docket));
  void app.register(
    async (v1) => {
      v1.addHook('onRequest', readTraceparent);
      v1.addHook('onSend', audit.onSend);
      v1.addHook('onResponse', audit.onResponse);
      v1.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
      void v1.register(async (tenantScope) => {
        tenantScope.addHook('onRequest', requireApiKey(docket));
        void tenantScope.register(
          jobRoutes(docket, {
            batchBodyLimit: Math.max(options.batchBodyLimitBytes ?? 16 * 1024 * 1024, bodyLimit),
          }),
        );
        void tenantScope.register(dlqRoutes(docket));
        void tenantScope.register(outboxRoutes(docket));
        void tenantScope.register(effectRoutes(docket));
        void tenantScope.register(proposalRoutes(docket));
        void tenantScope.register(queueRoutes(docket));
        void tenantScope.register(auditRoutes(docket, clientIp));
        void tenantScope.register(triggerRoutes(docket));
      });
      void v1.register(async (schedulerScope) => {
        schedulerScope.addHook(
          'onRequest',
          requireApiKeyOrOperator(docket, options.operatorSecret),
        );
        void schedulerScope.register(schedulerRoutes(docket));
      });
      void v1.register(async (operatorScope) => {
        operatorScope.addHook('onRequest', requireOperator(options.operatorSecret));
        void operatorScope.register(tenantRoutes(docket));
      });
    },
    { prefix: '/v1' },
  );
  return app;
}
