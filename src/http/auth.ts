import type { FastifyRequest } from 'fastify';
import { traceIdFromTraceparent } from '../core/context.js';
import { DocketError } from '../core/errors.js';
import { constantTimeEqual, verifyApiKey, type KeyStore, type Principal } from './api-keys.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The tenant and actor of an authenticated /v1 request (null before auth). */
    principal: Principal | null;
    /** Trace id from the W3C `traceparent` header, if one was sent. */
    traceId: string | undefined;
    /** True when the request carried the operator secret (routes behind requireApiKeyOrOperator). */
    operator: boolean;
  }
}

/** The bearer token of a request, if any. */
export function bearerToken(req: FastifyRequest): string | undefined {
  const header = req.headers.authorization;
  if (!header) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

/** onRequest hook for tenant routes: binds the request to the API key's tenant or fails 401. */
export function requireApiKey(docket: KeyStore) {
  return async (req: FastifyRequest): Promise<void> => {
    req.principal = await verifyApiKey(docket, bearerToken(req));
  };
}

/** onRequest hook for operator routes: the operator secret, compared in constant time. */
export function requireOperator(operatorSecret: string | undefined) {
  return async (req: FastifyRequest): Promise<void> => {
    const token = bearerToken(req);
    if (!operatorSecret) {
      throw new DocketError('FORBIDDEN', 'operator endpoints are disabled (no operator secret)');
    }
    if (!token || !constantTimeEqual(token, operatorSecret)) {
      throw new DocketError('UNAUTHORIZED', 'the operator secret is required', {
        hint: 'send Authorization: Bearer <DOCKET_OPERATOR_SECRET>',
      });
    }
  };
}

/**
 * onRequest hook for routes both tenants and operators use (scheduler): the operator secret
 * (constant-time) marks the request as the operator's, any other token must be an API key.
 */
export function requireApiKeyOrOperator(docket: KeyStore, operatorSecret: string | undefined) {
  return async (req: FastifyRequest): Promise<void> => {
    const token = bearerToken(req);
    if (operatorSecret && token && constantTimeEqual(token, operatorSecret)) {
      req.operator = true;
      return;
    }
    req.principal = await verifyApiKey(docket, token);
  };
}

/** The actor and visibility scope of a request behind requireApiKeyOrOperator. */
export function scopeOf(req: FastifyRequest): { tenant?: string; actor: string } {
  if (req.operator) return { actor: 'operator' };
  const p = principalOf(req);
  return { tenant: p.tenant, actor: p.actor };
}

/** onRequest hook: reads the W3C `traceparent` header into `req.traceId`. */
export async function readTraceparent(req: FastifyRequest): Promise<void> {
  const header = req.headers.traceparent;
  req.traceId = traceIdFromTraceparent(Array.isArray(header) ? header[0] : header);
}

/** The principal of an authenticated request (routes behind requireApiKey). */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new DocketError('UNAUTHORIZED', 'a valid API key is required');
  return req.principal;
}
