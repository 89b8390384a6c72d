// The audit API and the HTTP audit hook (SPEC, H-4) on every store.
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocket, defineAudit, type Docket } from '../../src/index.js';
import { silentLogger } from '../../src/core/logger.js';
import { buildHttpApp, createApiKey, createTenant } from '../../src/http/index.js';
import { BACKENDS, createTestStore, type TestStore } from '../helpers/backends.js';

const OPERATOR_SECRET = 'operator-secret-for-audit-tests';
const auditDefinition = defineAudit({
  actions: ['invoice.void'],
  resources: { invoice: { secretFields: ['cardNumber'] } },
});

interface EventJson {
  id: string;
  action: string;
  outcome: string;
  actor: { type: string; id: string };
  resource: { type: string; id: string };
  clientIp: string | null;
  userAgent: string | null;
  metadata?: Record<string, unknown>;
  diff?: Array<Record<string, unknown>>;
  createdAt: string;
  hash: string;
}

for (const backend of BACKENDS) {
  describe(`audit over HTTP on ${backend}`, () => {
    let ts: TestStore;
    let docket: Docket;
    let app: FastifyInstance;
    let key: string;
    let keyId: string;
    let otherKey: string;

    const req = (
      method: 'GET' | 'POST' | 'PUT',
      url: string,
      o: {
        body?: unknown;
        headers?: Record<string, string>;
        remoteAddress?: string;
        k?: string;
      } = {},
    ) =>
      app.inject({
        method,
        url,
        remoteAddress: o.remoteAddress,
        headers: {
          authorization: `Bearer ${o.k ?? key}`,
          ...(o.body === undefined ? {} : { 'content-type': 'application/json' }),
          ...o.headers,
        },
        payload: o.body === undefined ? undefined : JSON.stringify(o.body),
      });
    const events = async (query = '', k = key) => {
      await docket.audit.flush();
      const r = await req('GET', `/v1/audit/events?limit=200${query}`, { k });
      expect(r.statusCode).toBe(200);
      return (r.json() as { items: EventJson[] }).items;
    };

    beforeAll(async () => {
      ts = await createTestStore(backend);
      docket = createDocket({
        store: ts.store,
        dataDir: ts.dataDir,
        reapIntervalMs: 0,
        pruneIntervalMs: 0,
        auditDefinition,
      }) as unknown as Docket;
      await docket.start();
      app = buildHttpApp({
        docket,
        logger: silentLogger(),
        operatorSecret: OPERATOR_SECRET,
        trustedProxies: ['10.0.0.0/8'],
      });
      await app.ready();
      await createTenant(docket, { id: 'acme' });
      await createTenant(docket, { id: 'globex' });
      ({ key, id: keyId } = await createApiKey(docket, { tenant: 'acme' }));
      ({ key: otherKey } = await createApiKey(docket, { tenant: 'globex' }));
    });

    afterAll(async () => {
      await app?.close();
      await docket?.close();
      await ts?.dispose();
    });

    it('records an application event through POST and reads it back, tenant-scoped', async () => {
      const r = await req('POST', '/v1/audit/events', {
        body: {
          action: 'invoice.void',
          resource: { type: 'invoice', id: 'inv_1' },
          actor: { type: 'user', id: 'u_7', display: 'Ada' },
          before: { status: 'open', cardNumber: '4111111111111111' },
          after: { status: 'void', cardNumber: '4000000000000002' },
        },
        headers: { 'user-agent': 'billing/2.1' },
      });
      expect(r.statusCode).toBe(201);
      const created = (r.json() as { event: EventJson }).event;
      expect(created).toMatchObject({
        action: 'invoice.void',
        actor: { type: 'user', id: 'u_7' },
        userAgent: 'billing/2.1',
        clientIp: '127.0.0.1',
      });
      // The whole numbers: a short prefix can occur in an id, hash or timestamp by chance.
      expect(JSON.stringify(created)).not.toMatch(/4111111111111111|4000000000000002/);
      const one = await req('GET', `/v1/audit/events/${created.id}`);
      expect((one.json() as { event: EventJson }).event.hash).toBe(created.hash);
      const foreign = await req('GET', `/v1/audit/events/${created.id}`, { k: otherKey });
      expect(foreign.statusCode).toBe(404);
      expect(foreign.json().error.code).toBe('AUDIT_EVENT_NOT_FOUND');
    });

    it('the hook records every mutating request with the API key as actor', async () => {
      const r = await req('POST', '/v1/jobs', {
        body: { type: 'report.build', payload: { n: 1 } },
      });
      expect(r.statusCode).toBe(201);
      const jobId = (r.json() as { job: { id: string } }).job.id;
      await req('POST', `/v1/jobs/${jobId}/cancel`);
      const got = await events(`&resourceId=${jobId}`);
      const actions = got.map((e) => `${e.action} ${e.resource.type} ${e.outcome}`).sort();
      expect(actions).toEqual([
        'http.post job success',
        'http.post job success',
        'job.canceled job success',
      ]);
      expect(got.every((e) => e.actor.type === 'api_key' && e.actor.id === keyId)).toBe(true);
      const hooked = got.find(
        (e) => e.action === 'http.post' && e.metadata?.route === '/v1/jobs/:id/cancel',
      );
      expect(hooked?.metadata).toMatchObject({ method: 'POST', statusCode: 200 });
      // Reads are not audited.
      expect((await events()).some((e) => e.metadata?.method === 'GET')).toBe(false);
    });

    it('a refused request is recorded with outcome denied', async () => {
      await req('POST', '/v1/jobs', { body: { type: 'http' }, k: 'dk_nope_nope' });
      await docket.audit.flush();
      const denied = await docket.audit.list({ outcome: 'denied' }, { tenant: 'system' });
      expect(denied.items[0]).toMatchObject({ action: 'http.post', actor: { type: 'anonymous' } });
    });

    it('believes forwarding headers only from a trusted proxy', async () => {
      const spoof = { 'x-forwarded-for': '198.51.100.1', forwarded: 'for=198.51.100.2' };
      const body = { action: 'invoice.void', resource: { type: 'invoice', id: 'ip-test' } };
      const direct = await req('POST', '/v1/audit/events', {
        body,
        headers: spoof,
        remoteAddress: '203.0.113.50',
      });
      expect((direct.json() as { event: EventJson }).event.clientIp).toBe('203.0.113.50');
      const proxied = await req('POST', '/v1/audit/events', {
        body,
        headers: { 'x-forwarded-for': '198.51.100.9, 10.1.2.3' },
        remoteAddress: '10.9.9.9',
      });
      expect((proxied.json() as { event: EventJson }).event.clientIp).toBe('198.51.100.9');
    });

    it('filters, paginates and refuses bad queries with 4xx', async () => {
      const bad = async (query: string, code: string) => {
        const r = await req('GET', `/v1/audit/events?${query}`);
        expect(r.statusCode).toBe(400);
        expect(r.json().error.code).toBe(code);
      };
      await bad('from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z', 'VALIDATION_FAILED');
      await bad('cursor=garbage', 'INVALID_CURSOR');
      await bad('action=invoice.delete', 'AUDIT_ACTION_UNKNOWN');
      await bad('from=yesterday', 'VALIDATION_FAILED');
      const unknown = await req('POST', '/v1/audit/events', {
        body: { action: 'invoice.delete', resource: { type: 'invoice', id: '1' } },
      });
      expect(unknown.statusCode).toBe(400);
      expect(unknown.json().error.code).toBe('AUDIT_ACTION_UNKNOWN');
      const p1 = await req('GET', '/v1/audit/events?limit=2');
      const page1 = p1.json() as { items: EventJson[]; nextCursor: string };
      expect(page1.items).toHaveLength(2);
      const p2 = await req('GET', `/v1/audit/events?limit=2&cursor=${page1.nextCursor}`);
      const page2 = p2.json() as { items: EventJson[] };
      expect(page2.items[0]?.id).not.toBe(page1.items[1]?.id);
      const future = await req('GET', '/v1/audit/events?from=2999-01-01T00:00:00Z');
      expect(future.json().items).toEqual([]);
    });

    it('reads and changes the retention at runtime, audited', async () => {
      const before = await req('GET', '/v1/audit/config');
      expect(before.json()).toEqual({ retentionDays: 90, source: 'default' });
      const put = await req('PUT', '/v1/audit/config', { body: { retentionDays: 30 } });
      expect(put.json()).toEqual({ retentionDays: 30, source: 'tenant' });
      const invalid = await req('PUT', '/v1/audit/config', { body: { retentionDays: 0 } });
      expect(invalid.statusCode).toBe(400);
      const changed = await events('&action=audit.config_updated');
      expect(changed).toHaveLength(1);
      expect(changed[0]?.diff).toEqual([
        { path: '/retentionDays', op: 'changed', before: 90, after: 30 },
      ]);
      expect((await req('GET', '/v1/audit/config', { k: otherKey })).json()).toEqual({
        retentionDays: 90,
        source: 'default',
      });
    });

    it('exposes audit counters on /metrics', async () => {
      const r = await app.inject({ method: 'GET', url: '/metrics' });
      expect(r.statusCode).toBe(200);
      expect(r.body).toMatch(/docket_audit_events_written_total \d+/);
      expect(r.body).toMatch(/docket_audit_events_dropped_total/);
    });
  });
}
