import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { DocketError, ERROR_CODES, isDocketError, type ErrorCode } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

/** The body of every error response (SPEC H-2). */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; details: Record<string, unknown> };
}

/** JSON schema of ErrorBody, shared by every route's documented error responses. */
export const errorBodySchema = {
  $id: 'ErrorBody',
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message', 'details'],
      properties: {
        code: { type: 'string', enum: Object.keys(ERROR_CODES) },
        message: { type: 'string' },
        details: { type: 'object', additionalProperties: true },
      },
    },
  },
} as const;

// Fastify's own client-side failures, each mapped to the Docket code a caller can rely on.
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'VALIDATION_FAILED',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_FAILED',
};

/** Turns any error raised while serving a request into a DocketError with a stable code. */
export function toDocketError(err: unknown): DocketError {
  if (isDocketError(err)) return err;
  const fe = err as Partial<FastifyError>;
  if (fe.validation) {
    return new DocketError('VALIDATION_FAILED', `invalid request ${fe.validationContext ?? ''}`, {
      in: fe.validationContext,
      issues: fe.validation.map((v) => ({
        path: v.instancePath || '/',
        message: v.message,
        keyword: v.keyword,
        params: v.params,
      })),
    });
  }
  const mapped = fe.code ? FASTIFY_CODES[fe.code] : undefined;
  if (mapped) return new DocketError(mapped, fe.message ?? mapped, { reason: fe.code });
  // Any other 4xx Fastify raises is still the client's mistake, never a 5xx.
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new DocketError('VALIDATION_FAILED', fe.message ?? 'bad request', { reason: fe.code });
  }
  return new DocketError('INTERNAL', 'internal error', {}, { cause: err });
}

/** The error body for a DocketError. */
export function errorBody(err: DocketError): ErrorBody {
  return { error: { code: err.code, message: err.message, details: err.details } };
}

/** Fastify error handler: maps every error to `{ error: { code, message, details } }`. */
export function httpErrorHandler(logger: Logger) {
  return (err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const de = toDocketError(err);
    if (de.status >= 500) {
      logger.error(
        {
          err,
          reqId: req.id,
          method: req.method,
          url: req.url,
          tenant: req.principal?.tenant,
          code: de.code,
        },
        'request failed',
      );
    }
    return reply.status(de.status).send(errorBody(de));
  };
}

/** Not-found handler: unknown routes answer 404 ROUTE_NOT_FOUND. */
export function routeNotFound(req: FastifyRequest, reply: FastifyReply) {
  const err = new DocketError('ROUTE_NOT_FOUND', `no route ${req.method} ${req.url}`, {
    method: req.method,
    url: req.url,
  });
  return reply.status(err.status).send(errorBody(err));
}
