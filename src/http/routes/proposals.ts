import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { JsonValue } from '../../audit/content.js';
import type { Docket } from '../../docket.js';
import { DocketError } from '../../core/errors.js';
import {
  PROPOSAL_STATES,
  type Proposal,
  type ProposalCandidate,
  type ProposalState,
} from '../../proposals/index.js';
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

const version = { type: ['string', 'integer'] } as const;

/** A proposal as the API returns it (times are ISO 8601). */
export const proposalSchema = {
  $id: 'Proposal',
  type: 'object',
  properties: {
    id: { type: 'string' },
    tenantId: { type: 'string' },
    kind: { type: 'string' },
    target: { type: 'string' },
    changes: {},
    candidates: {
      type: ['array', 'null'],
      items: {
        type: 'object',
        properties: { id: { type: 'string' }, changes: {}, summary: { type: 'string' } },
      },
    },
    baseVersion: version,
    state: { type: 'string', enum: [...PROPOSAL_STATES] },
    expiresAt: isoTime,
    createdBy: { type: 'string' },
    traceId: { type: 'string' },
    createdAt: isoTime,
    updatedAt: isoTime,
    decidedAt: isoTimeOrNull,
    decidedBy: { type: ['string', 'null'] },
    reason: { type: ['string', 'null'] },
    appliedCandidate: { type: ['string', 'null'] },
    appliedKey: { type: ['string', 'null'] },
  },
} as const;

/** Serializes a proposal with ISO 8601 times. */
export function proposalDto(p: Proposal) {
  return {
    ...p,
    expiresAt: new Date(p.expiresAt).toISOString(),
    createdAt: new Date(p.createdAt).toISOString(),
    updatedAt: new Date(p.updatedAt).toISOString(),
    decidedAt: isoOrNull(p.decidedAt),
  };
}

const idParams = jobIdParamsSchema('id');
const proposalResponse = {
  type: 'object',
  properties: { proposal: { $ref: 'Proposal#' } },
} as const;

interface CreateBody {
  kind: string;
  target: string;
  changes: JsonValue;
  candidates?: ProposalCandidate[];
  expiresAt: string;
  baseVersion?: string | number;
}

/** The apply body: the request itself, with the optional candidate and idempotency key. */
type ApplyBody = { candidateId?: string; idempotencyKey?: string } & Record<string, JsonValue>;

/** Picks the idempotency key from the header or the body; both must agree if both are sent. */
function idempotencyKeyOf(header: string | string[] | undefined, body: ApplyBody): string {
  const fromHeader = Array.isArray(header) ? header[0] : header;
  const fromBody = body.idempotencyKey;
  if (fromHeader !== undefined && fromBody !== undefined && fromHeader !== fromBody) {
    throw new DocketError(
      'VALIDATION_FAILED',
      'the Idempotency-Key header and the body’s idempotencyKey differ',
      { field: 'idempotencyKey' },
    );
  }
  const key = fromHeader ?? fromBody;
  if (key === undefined || key === '') {
    throw new DocketError(
      'VALIDATION_FAILED',
      'an Idempotency-Key header (or idempotencyKey in the body) is required',
      { field: 'idempotencyKey' },
    );
  }
  return key;
}

/** A POST without a body is an empty request object (the body schema then still applies). */
async function emptyBodyAsObject(req: FastifyRequest): Promise<void> {
  if (req.body === undefined || req.body === null) req.body = {};
}

/** Proposals, confirm-before-apply (SPEC S-7): create, list, get, apply, reject. */
export function proposalRoutes(docket: Docket) {
  return async (app: FastifyInstance): Promise<void> => {
    app.post<{ Body: CreateBody }>(
      '/proposals',
      {
        schema: {
          summary: 'Create a proposal: a change set that waits to be applied or rejected',
          tags: ['proposals'],
          body: {
            type: 'object',
            required: ['kind', 'target', 'changes', 'expiresAt'],
            additionalProperties: false,
            properties: {
              kind: { type: 'string', minLength: 1, maxLength: 100 },
              target: { type: 'string', minLength: 1, maxLength: 500 },
              // A JSON object or array, checked by the service: a schema type here would let the
              // app's array coercion wrap a string into a one-item array.
              changes: { description: 'The change set: a JSON object or array.' },
              candidates: {
                type: 'array',
                minItems: 1,
                maxItems: 50,
                items: {
                  type: 'object',
                  required: ['id'],
                  additionalProperties: false,
                  properties: {
                    id: { type: 'string', pattern: '^[A-Za-z0-9_.:-]{1,100}$' },
                    changes: {},
                    summary: { type: 'string', maxLength: 1000 },
                  },
                },
              },
              expiresAt: { ...isoTime, description: 'Until when it may be applied.' },
              // Untyped here (the service checks it): with query coercion on, a schema type
              // would turn 1.5 into "1.5" instead of refusing it.
              baseVersion: {
                description:
                  "The target's version, a string or an integer (default the kind's current version).",
              },
            },
          },
          response: { 201: proposalResponse, ...errorResponses(400, 401, 413) },
        },
      },
      async (req, reply) => {
        const { tenant, actor } = principalOf(req);
        const b = req.body;
        const proposal = await docket.proposals.create(
          {
            kind: b.kind,
            target: b.target,
            changes: b.changes,
            candidates: b.candidates,
            expiresAt: Date.parse(b.expiresAt),
            baseVersion: b.baseVersion,
          },
          { tenant, actor, traceId: req.traceId },
        );
        return reply.status(201).send({ proposal: proposalDto(proposal) });
      },
    );

    app.get<{
      Querystring: {
        state?: string;
        kind?: string;
        target?: string;
        cursor?: string;
        limit?: number;
      };
    }>(
      '/proposals',
      {
        schema: {
          summary: 'List proposals, newest first',
          tags: ['proposals'],
          querystring: {
            type: 'object',
            additionalProperties: false,
            properties: {
              state: statusListSchema(PROPOSAL_STATES),
              kind: { type: 'string', minLength: 1, maxLength: 100 },
              target: { type: 'string', minLength: 1, maxLength: 500 },
              ...pageQuerySchema,
            },
          },
          response: {
            200: pageResponseSchema('Proposal'),
            ...errorResponses(400, 401),
          },
        },
      },
      async (req) => {
        const q = req.query;
        const page = await docket.proposals.list(
          {
            state: parseStatusList<ProposalState>(q.state),
            kind: q.kind,
            target: q.target,
            cursor: q.cursor,
            limit: q.limit,
          },
          { tenant: principalOf(req).tenant },
        );
        return { items: page.items.map(proposalDto), nextCursor: page.nextCursor };
      },
    );

    app.get<{ Params: { id: string } }>(
      '/proposals/:id',
      {
        schema: {
          summary: 'Get a proposal',
          tags: ['proposals'],
          params: idParams,
          response: { 200: proposalResponse, ...errorResponses(401, 404) },
        },
      },
      async (req) => {
        const proposal = await docket.proposals.get(req.params.id, {
          tenant: principalOf(req).tenant,
        });
        return { proposal: proposalDto(proposal) };
      },
    );

    app.post<{ Params: { id: string }; Body: ApplyBody | undefined }>(
      '/proposals/:id/apply',
      {
        preValidation: emptyBodyAsObject,
        schema: {
          summary:
            'Apply a proposal once; the same Idempotency-Key and body return the stored outcome',
          tags: ['proposals'],
          params: idParams,
          headers: {
            type: 'object',
            properties: { 'idempotency-key': { type: 'string', minLength: 1, maxLength: 255 } },
          },
          body: {
            type: 'object',
            description: 'The request (JSON object), handed to the kind’s apply callback.',
            additionalProperties: true,
            properties: {
              candidateId: { type: 'string', pattern: '^[A-Za-z0-9_.:-]{1,100}$' },
              idempotencyKey: { type: 'string', minLength: 1, maxLength: 255 },
            },
          },
          response: {
            200: {
              type: 'object',
              properties: {
                proposal: { $ref: 'Proposal#' },
                result: {},
                candidateId: { type: ['string', 'null'] },
                replayed: { type: 'boolean' },
              },
            },
            ...errorResponses(400, 401, 404, 409, 413),
          },
        },
      },
      async (req, reply) => {
        const { tenant, actor } = principalOf(req);
        const body = req.body ?? {};
        const idempotencyKey = idempotencyKeyOf(req.headers['idempotency-key'], body);
        const { idempotencyKey: _key, ...request } = body;
        const out = await docket.proposals.apply(
          req.params.id,
          { idempotencyKey, candidateId: body.candidateId, request },
          { tenant, actor, traceId: req.traceId },
        );
        if (out.replayed) void reply.header('idempotent-replayed', 'true');
        return {
          proposal: proposalDto(out.proposal),
          result: out.result,
          candidateId: out.candidateId,
          replayed: out.replayed,
        };
      },
    );

    app.post<{ Params: { id: string }; Body: { reason?: string } | undefined }>(
      '/proposals/:id/reject',
      {
        preValidation: emptyBodyAsObject,
        schema: {
          summary: 'Reject an open proposal',
          tags: ['proposals'],
          params: idParams,
          body: {
            type: 'object',
            additionalProperties: false,
            properties: { reason: { type: 'string', maxLength: 1000 } },
          },
          response: { 200: proposalResponse, ...errorResponses(400, 401, 404, 409) },
        },
      },
      async (req) => {
        const { tenant, actor } = principalOf(req);
        const proposal = await docket.proposals.reject(
          req.params.id,
          { reason: req.body?.reason },
          { tenant, actor, traceId: req.traceId },
        );
        return { proposal: proposalDto(proposal) };
      },
    );
  };
}
