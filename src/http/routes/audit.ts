import type { FastifyInstance, FastifyRequest } from 'fastify';
import type {
  AuditEvent,
  AuditOutcome,
  AuditPrincipal,
  ClientIpResolver,
} from '../../audit/index.js';
import { principalFromActor } from '../../audit/index.js';
import type { Docket } from '../../docket.js';
import { principalOf } from '../auth.js';
import { errorResponses, isoTime, pageQuerySchema, pageResponseSchema } from '../schemas.js';

const name = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$' } as const;
const text = { type: 'string', minLength: 1, maxLength: 256 } as const;
const outcome = { type: 'string', enum: ['success', 'failure', 'denied'] } as const;
const principal = {
  type: 'object',
  required: ['type', 'id'],
  additionalProperties: false,
  properties: { type: name, id: text, display: text },
} as const;

/** An audit event as the API returns it. */
export const auditEventSchema = {
  $id: 'AuditEvent',
  type: 'object',
  properties: {
    id: { type: 'string' },
    seq: { type: 'integer' },
    action: { type: 'string' },
    outcome: { type: 'string' },
    resource: {
      type: 'object',
      properties: { type: { type: 'string' }, id: { type: 'string' }, name: { type: 'string' } },
    },
    actor: {
      type: 'object',
      properties: { type: { type: 'string' }, id: { type: 'string' }, display: { type: 'string' } },
    },
    traceId: { type: 'string' },
    clientIp: { type: ['string', 'null'] },
    userAgent: { type: ['string', 'null'] },
    diff: { type: 'array', items: {} },
    metadata: {},
    truncated: { type: 'array', items: { type: 'string' } },
    createdAt: isoTime,
    prevHash: { type: 'string' },
    hash: { type: 'string' },
  },
} as const;

/** Public JSON of an event (times ISO 8601, tenant implied by the key). */
export function auditEventDto(e: AuditEvent) {
  const { tenantId: _tenant, createdAt, ...rest } = e;
  return { ...rest, createdAt: new Date(createdAt).toISOString() };
}

interface ListQuery {
  actor?: string;
  action?: string;
  resourceType?: string;
  resourceId?: string;
  outcome?: AuditOutcome;
  from?: string;
  to?: string;
  cursor?: string;
  limit?: number;
}

interface RecordBody {
  action: string;
  resource: { type: string; id: string; name?: string };
  outcome?: AuditOutcome;
  actor?: AuditPrincipal;
  before?: unknown;
  after?: unknown;
  metadata?: unknown;
}

/** Who acted in a request: the API key, unless the application names the end user. */
function actorOf(req: FastifyRequest, named?: AuditPrincipal): AuditPrincipal {
  return named ?? principalFromActor(principalOf(req).actor);
}

/** Audit events (list, get, record) and runtime settings (SPEC, H-4). */
export function auditRoutes(docket: Docket, clientIp: ClientIpResolver) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get<{ Querystring: ListQuery }>(
      '/audit/events',
      {
        schema: {
          summary: 'List audit events, newest first (keyset pagination)',
          tags: ['audit'],
          querystring: {
            type: 'object',
            additionalProperties: false,
            properties: {
              actor: text,
              action: name,
              resourceType: name,
              resourceId: text,
              outcome,
              from: { ...isoTime, description: 'Inclusive lower bound of createdAt.' },
              to: { ...isoTime, description: 'Exclusive upper bound of createdAt.' },
              ...pageQuerySchema,
            },
          },
          response: {
            200: pageResponseSchema('AuditEvent'),
            ...errorResponses(400, 401),
          },
        },
      },
      async (req) => {
        const q = req.query;
        const page = await docket.audit.list(
          {
            actorId: q.actor,
            action: q.action,
            resourceType: q.resourceType,
            resourceId: q.resourceId,
            outcome: q.outcome,
            from: q.from === undefined ? undefined : Date.parse(q.from),
            to: q.to === undefined ? undefined : Date.parse(q.to),
            cursor: q.cursor,
            limit: q.limit,
          },
          { tenant: principalOf(req).tenant },
        );
        return { items: page.items.map(auditEventDto), nextCursor: page.nextCursor };
      },
    );

    app.get<{ Params: { id: string } }>(
      '/audit/events/:id',
      {
        schema: {
          summary: 'Get one audit event',
          tags: ['audit'],
          params: {
            type: 'object',
            properties: { id: { type: 'string', maxLength: 64 } },
          },
          response: {
            200: { type: 'object', properties: { event: { $ref: 'AuditEvent#' } } },
            ...errorResponses(401, 404),
          },
        },
      },
      async (req) => ({
        event: auditEventDto(
          await docket.audit.get(req.params.id, { tenant: principalOf(req).tenant }),
        ),
      }),
    );

    app.post<{ Body: RecordBody }>(
      '/audit/events',
      {
        schema: {
          summary: "Record one of the application's own audit events (written before the reply)",
          tags: ['audit'],
          body: {
            type: 'object',
            required: ['action', 'resource'],
            additionalProperties: false,
            properties: {
              action: name,
              resource: {
                type: 'object',
                required: ['type', 'id'],
                additionalProperties: false,
                properties: { type: name, id: text, name: text },
              },
              outcome,
              actor: { ...principal, description: 'Default: the API key.' },
              before: {},
              after: {},
              metadata: {},
            },
          },
          response: {
            201: { type: 'object', properties: { event: { $ref: 'AuditEvent#' } } },
            ...errorResponses(400, 401, 413),
          },
        },
      },
      async (req, reply) => {
        const { tenant } = principalOf(req);
        const b = req.body;
        const event = await docket.withTransaction(tenant, (tx) =>
          docket.audit.record(tx, b.action, b.resource, {
            outcome: b.outcome,
            actor: actorOf(req, b.actor),
            before: b.before,
            after: b.after,
            metadata: b.metadata,
            traceId: req.traceId,
            clientIp: clientIp(req.socket.remoteAddress, req.headers),
            userAgent: req.headers['user-agent'],
          }),
        );
        return reply.status(201).send({ event: auditEventDto(event) });
      },
    );

    const settingsSchema = {
      type: 'object',
      properties: {
        retentionDays: { type: 'integer' },
        source: { type: 'string', enum: ['tenant', 'default'] },
      },
    } as const;

    app.get(
      '/audit/config',
      {
        schema: {
          summary: 'Audit settings of the tenant (retention)',
          tags: ['audit'],
          response: { 200: settingsSchema, ...errorResponses(401) },
        },
      },
      async (req) => docket.audit.getSettings({ tenant: principalOf(req).tenant }),
    );

    app.put<{ Body: { retentionDays: number } }>(
      '/audit/config',
      {
        schema: {
          summary: 'Change the audit retention at runtime (audited)',
          tags: ['audit'],
          body: {
            type: 'object',
            required: ['retentionDays'],
            additionalProperties: false,
            properties: { retentionDays: { type: 'integer', minimum: 1, maximum: 36_500 } },
          },
          response: { 200: settingsSchema, ...errorResponses(400, 401) },
        },
      },
      async (req) =>
        docket.audit.setSettings(req.body, {
          tenant: principalOf(req).tenant,
          actor: actorOf(req),
          clientIp: clientIp(req.socket.remoteAddress, req.headers),
          userAgent: req.headers['user-agent'],
        }),
    );
  };
}
