import type { FastifyInstance } from 'fastify';
import type { Docket } from '../../docket.js';
import { createApiKey, createTenant, listTenants, revokeApiKey } from '../api-keys.js';
import { errorResponses } from '../schemas.js';
import { DocketError } from '../../core/errors.js';

const tenantIdSchema = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' } as const;

/** Tenants and API keys: operator endpoints behind the operator secret (SPEC H-3, H-4). */
export function tenantRoutes(docket: Docket) {
  return async (app: FastifyInstance): Promise<void> => {
    app.post<{ Body: { id: string; name?: string } }>(
      '/tenants',
      {
        schema: {
          summary: 'Create a tenant (operator)',
          tags: ['operator'],
          body: {
            type: 'object',
            required: ['id'],
            additionalProperties: false,
            properties: {
              id: tenantIdSchema,
              name: { type: 'string', minLength: 1, maxLength: 200 },
            },
          },
          response: {
            200: { description: 'Already existed', $ref: 'Tenant#' },
            201: { description: 'Created', $ref: 'Tenant#' },
            ...errorResponses(400, 401, 403),
          },
        },
      },
      async (req, reply) => {
        const t = await createTenant(docket, req.body);
        return reply.status(t.created ? 201 : 200).send(t);
      },
    );

    app.get(
      '/tenants',
      {
        schema: {
          summary: 'List tenants (operator)',
          tags: ['operator'],
          response: {
            200: {
              type: 'object',
              properties: {
                items: {
                  type: 'array',
                  items: {
                    type: 'object',
                    properties: {
                      id: { type: 'string' },
                      name: { type: 'string' },
                      createdAt: { type: 'string', format: 'date-time' },
                    },
                  },
                },
              },
            },
            ...errorResponses(401, 403),
          },
        },
      },
      async () => {
        const tenants = await listTenants(docket);
        return {
          items: tenants.map((t) => ({ ...t, createdAt: new Date(t.createdAt).toISOString() })),
        };
      },
    );

    app.post<{ Params: { tenant: string }; Body: { label?: string } | undefined }>(
      '/tenants/:tenant/keys',
      {
        preValidation: async (req) => {
          req.body ??= {};
        },
        schema: {
          summary: 'Create an API key for a tenant; the plaintext key is returned once (operator)',
          tags: ['operator'],
          params: { type: 'object', properties: { tenant: tenantIdSchema } },
          body: {
            type: 'object',
            additionalProperties: false,
            properties: { label: { type: 'string', maxLength: 200 } },
          },
          response: {
            201: {
              type: 'object',
              properties: {
                id: { type: 'string' },
                tenant: { type: 'string' },
                key: { type: 'string' },
              },
            },
            ...errorResponses(400, 401, 403, 404),
          },
        },
      },
      async (req, reply) => {
        const created = await createApiKey(docket, {
          tenant: req.params.tenant,
          label: req.body?.label,
        });
        return reply.status(201).send(created);
      },
    );

    app.post<{ Params: { keyId: string } }>(
      '/keys/:keyId/revoke',
      {
        schema: {
          summary: 'Revoke an API key (operator)',
          tags: ['operator'],
          params: {
            type: 'object',
            properties: { keyId: { type: 'string', minLength: 1, maxLength: 64 } },
          },
          response: {
            200: { type: 'object', properties: { revoked: { type: 'boolean' } } },
            ...errorResponses(401, 403, 404),
          },
        },
      },
      async (req) => {
        if (!(await revokeApiKey(docket, req.params.keyId))) {
          throw new DocketError('NOT_FOUND', 'no active API key with this id', {
            keyId: req.params.keyId,
          });
        }
        return { revoked: true };
      },
    );
  };
}
