import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AuditOutcome, AuditPrincipal, ClientIpResolver } from '../audit/index.js';
import { principalFromActor } from '../audit/index.js';
import { SYSTEM_TENANT, type Docket } from '../docket.js';
import { isTenantId } from '../core/context.js';
import type { Logger } from '../core/logger.js';

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
// Routes whose own handler writes the audit event (recording them again would duplicate it).
const SELF_AUDITED = new Set(['POST /v1/audit/events', 'PUT /v1/audit/config']);
// First path segment after /v1 → resource type recorded for the request.
const RESOURCE_OF_SEGMENT: Record<string, string> = {
  jobs: 'job',
  dlq: 'job',
  effects: 'effect',
  queue: 'queue',
  tenants: 'tenant',
  audit: 'audit_event',
  outbox: 'outbox_event',
  proposals: 'proposal',
  triggers: 'trigger',
};
const ID_PARAMS = ['id', 'jobId', 'keyId', 'tenantId', 'key'];

declare module 'fastify' {
  interface FastifyRequest {
    /** Id of the resource a mutating request created, read from its response (audit hook). */
    createdResourceId: string | undefined;
  }
}

function outcomeOf(status: number): AuditOutcome {
  if (status === 401 || status === 403) return 'denied';
  return status < 400 ? 'success' : 'failure';
}

function resourceOf(req: FastifyRequest): { type: string; id: string } {
  const route = req.routeOptions.url ?? req.url.split('?')[0] ?? '';
  const segment = route.split('/')[2] ?? '';
  const params = (req.params ?? {}) as Record<string, unknown>;
  const type = route.includes('/keys')
    ? 'api_key'
    : route.includes('/deliveries/')
      ? 'webhook_delivery'
      : (RESOURCE_OF_SEGMENT[segment] ?? 'http');
  for (const p of ID_PARAMS) {
    if (typeof params[p] === 'string' && params[p] !== '') {
      return { type, id: (params[p] as string).slice(0, 256) };
    }
  }
  return { type, id: req.createdResourceId ?? route.slice(0, 256) };
}

/** Picks the created resource's id out of a small JSON response (`{ job: { id } }`, `{ id }`). */
export function createdIdFromPayload(payload: unknown): string | undefined {
  if (typeof payload !== 'string' || payload.length > 65_536 || payload[0] !== '{')
    return undefined;
  try {
    const body = JSON.parse(payload) as Record<string, { id?: unknown } | unknown>;
    for (const v of [body.job, body.key, body.tenant, body.proposal, body.trigger, body]) {
      const id = (v as { id?: unknown } | undefined)?.id;
      if (typeof id === 'string') return id;
    }
  } catch {
    // Not JSON: no id to record.
  }
  return undefined;
}

/**
 * Fastify hooks that record every mutating /v1 request (SPEC A-3): the actor from the API key
 * (or the operator secret), the resource from the route, the outcome from the status code,
 * the client IP through the trusted-proxy rules. Events go through the batched writer after
 * the response is sent, so recording never delays a reply.
 */
export function auditHooks(docket: Docket, clientIp: ClientIpResolver, logger: Logger) {
  const wanted = (req: FastifyRequest) =>
    MUTATING.has(req.method) && !SELF_AUDITED.has(`${req.method} ${req.routeOptions.url ?? ''}`);
  return {
    async onSend(req: FastifyRequest, _reply: FastifyReply, payload: unknown) {
      if (wanted(req)) req.createdResourceId = createdIdFromPayload(payload);
      return payload;
    },
    async onResponse(req: FastifyRequest, reply: FastifyReply) {
      if (!wanted(req)) return;
      const params = (req.params ?? {}) as Record<string, unknown>;
      const operator = req.principal === null && reply.statusCode < 400;
      const actor: AuditPrincipal = req.principal
        ? principalFromActor(req.principal.actor)
        : operator
          ? { type: 'operator', id: 'operator' }
          : { type: 'anonymous', id: 'anonymous' };
      const target = typeof params.tenantId === 'string' ? params.tenantId : '';
      const tenant = req.principal?.tenant ?? (isTenantId(target) ? target : SYSTEM_TENANT);
      const userAgent = req.headers['user-agent'];
      try {
        await docket.audit.record(`http.${req.method.toLowerCase()}`, resourceOf(req), {
          tenant,
          actor,
          outcome: outcomeOf(reply.statusCode),
          traceId: req.traceId,
          clientIp: clientIp(req.socket.remoteAddress, req.headers),
          userAgent,
          metadata: {
            method: req.method,
            route: req.routeOptions.url ?? null,
            statusCode: reply.statusCode,
          },
        });
      } catch (err) {
        logger.error({ err, url: req.url }, 'recording the request in the audit log failed');
      }
    },
  };
}
