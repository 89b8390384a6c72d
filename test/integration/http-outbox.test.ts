// The outbox over HTTP on every store (SPEC H-4, O-2, O-5): tenant-scoped lists with state,
// topic and routed filters and keyset pages, get, counts, the topics no route matches (their
// events wait, visibly), and audited replay of dead events; every bad input is a 4xx with a
// stable code and changes nothing.
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocket, type Docket } from '../../src/docket.js';
import { silentLogger } from '../../src/core/logger.js';
import { buildHttpApp, createApiKey, createTenant } from '../../src/http/index.js';
import { PermanentSinkError, type OutboxAddInput } from '../../src/index.js';
import { BACKENDS, createTestStore, type TestStore } from '../helpers/backends.js';

interface ErrorReply {
  error: { code: string; message: string; details: Record<string, unknown> };
}
interface EventReply {
  id: string;
  tenantId: string;
  topic: string;
  status: string;
  createdAt: string;
}

for (const backend of BACKENDS) {
  describe(`outbox HTTP API on ${backend}`, () => {
    let ts: TestStore;
    let docket: Docket;
    let app: FastifyInstance;
    let key: string;
    let keyId: string;
    let otherKey: string;
    const ids: Record<string, string[]> = {};

    const auth = (k = key) => ({ authorization: `Bearer ${k}` });
    const get = (url: string, k = key) => app.inject({ method: 'GET', url, headers: auth(k) });
    const post = (url: string, k = key) => app.inject({ method: 'POST', url, headers: auth(k) });
    const add = async (tenant: string, topic: string, n: number) => {
      const events: OutboxAddInput[] = Array.from({ length: n }, (_, i) => ({
        topic,
        payload: { i },
      }));
      const added = await docket.withTransaction(tenant, (tx) => docket.outbox.addMany(tx, events));
      (ids[`${tenant}:${topic}`] ??= []).push(...added.map((e) => e.id));
    };
    const counts = async () => ({
      acme: await docket.outbox.counts({ tenant: 'acme' }),
      globex: await docket.outbox.counts({ tenant: 'globex' }),
    });
    const listIds = async (query: string) => {
      const res = await get(`/v1/outbox/events?${query}`);
      expect(res.statusCode).toBe(200);
      return (res.json().items as EventReply[]).map((e) => e.id).sort();
    };
    const of = (...keys: string[]) => keys.flatMap((k) => ids[k] ?? []).sort();

    beforeAll(async () => {
      ts = await createTestStore(backend);
      docket = createDocket({
        store: ts.store,
        dataDir: ts.dataDir,
        reapIntervalMs: 0,
        pruneIntervalMs: 0,
        outbox: {
          routes: [{ topic: 'invoice.*', sink: 'billing' }],
          sinks: {
            billing: {
              async publish(e) {
                if (e.topic === 'invoice.void') throw new PermanentSinkError('void refused');
                return {};
              },
            },
          },
        },
      });
      await docket.start();
      app = buildHttpApp({ docket, logger: silentLogger() });
      await app.ready();
      await createTenant(docket, { id: 'acme' });
      await createTenant(docket, { id: 'globex' });
      ({ key, id: keyId } = await createApiKey(docket, { tenant: 'acme' }));
      ({ key: otherKey } = await createApiKey(docket, { tenant: 'globex' }));
      await add('acme', 'invoice.paid', 3);
      await add('acme', 'invoice.void', 2);
      await add('acme', 'orphan.created', 2); // no route: waits
      await add('globex', 'invoice.void', 1);
      const relay = await docket.outbox.createRelay();
      expect(await relay.runOnce()).toBe(6);
      expect(await relay.runOnce()).toBe(0);
    });

    afterAll(async () => {
      await app?.close();
      await docket?.close();
      await ts?.dispose();
    });

    it('lists only the tenant’s events, newest first, in keyset pages', async () => {
      const seen: EventReply[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res = await get(
          `/v1/outbox/events?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
        );
        expect(res.statusCode).toBe(200);
        const body = res.json() as { items: EventReply[]; nextCursor: string | null };
        expect(body.items.length).toBeLessThanOrEqual(3);
        seen.push(...body.items);
        cursor = body.nextCursor;
        pages++;
      } while (cursor);
      expect(pages).toBe(3);
      expect(seen.map((e) => e.id).sort()).toEqual(
        of('acme:invoice.paid', 'acme:invoice.void', 'acme:orphan.created'),
      );
      expect(seen.every((e) => e.tenantId === 'acme')).toBe(true);
      const order = seen.map((e) => e.id);
      expect(order).toEqual([...order].sort().reverse());
      expect(new Date(seen[0]!.createdAt).toISOString()).toBe(seen[0]!.createdAt);
    });

    it('filters by state, topic pattern and whether a route matches the topic', async () => {
      expect(await listIds('status=dead')).toEqual(of('acme:invoice.void'));
      expect(await listIds('status=dead,published')).toEqual(
        of('acme:invoice.paid', 'acme:invoice.void'),
      );
      expect(await listIds('topic=invoice.*')).toEqual(
        of('acme:invoice.paid', 'acme:invoice.void'),
      );
      expect(await listIds('topic=orphan.created')).toEqual(of('acme:orphan.created'));
      expect(await listIds('routed=false')).toEqual(of('acme:orphan.created'));
      expect(await listIds('routed=false&status=pending')).toEqual(of('acme:orphan.created'));
      expect(await listIds('routed=true')).toEqual(of('acme:invoice.paid', 'acme:invoice.void'));
      expect(await listIds('routed=true&status=pending')).toEqual([]);
    });

    it('gets an event; another tenant’s or a malformed id is 404', async () => {
      const [id] = ids['acme:invoice.paid']!;
      const res = await get(`/v1/outbox/events/${id}`);
      expect(res.statusCode).toBe(200);
      expect(res.json().event).toMatchObject({
        id,
        tenantId: 'acme',
        topic: 'invoice.paid',
        status: 'published',
        payload: { i: 0 },
        sinksDone: ['billing'],
        attempts: 1,
      });
      expect(typeof res.json().event.publishedAt).toBe('string');
      const foreign = await get(`/v1/outbox/events/${ids['globex:invoice.void']![0]}`);
      expect(foreign.statusCode).toBe(404);
      expect((foreign.json() as ErrorReply).error.code).toBe('OUTBOX_EVENT_NOT_FOUND');
      expect((await get('/v1/outbox/events/not-an-id')).statusCode).toBe(404);
    });

    it('counts by state and shows the unrouted topics that wait', async () => {
      const c = await get('/v1/outbox/counts');
      expect(c.statusCode).toBe(200);
      expect(c.json()).toEqual({
        counts: { pending: 2, publishing: 0, published: 3, failed: 0, dead: 2 },
        unrouted: 2,
      });
      const u = await get('/v1/outbox/unrouted');
      expect(u.statusCode).toBe(200);
      expect(u.json()).toMatchObject({
        routes: ['invoice.*'],
        waiting: 2,
        topics: [{ topic: 'orphan.created', waiting: 2, oldestCreatedAt: expect.any(String) }],
      });
      const other = await get('/v1/outbox/unrouted', otherKey);
      expect(other.json()).toMatchObject({ waiting: 0, topics: [] });
    });

    it('replays a dead event to pending, audited with the API key as actor', async () => {
      const [dead] = ids['acme:invoice.void']!;
      const res = await post(`/v1/outbox/events/${dead}/replay`);
      expect(res.statusCode).toBe(200);
      expect(res.json().event).toMatchObject({ id: dead, status: 'pending', attempts: 0 });
      const again = await post(`/v1/outbox/events/${dead}/replay`);
      expect(again.statusCode).toBe(409);
      expect((again.json() as ErrorReply).error).toMatchObject({
        code: 'OUTBOX_EVENT_NOT_DEAD',
        details: { status: 'pending' },
      });
      const db = await docket.internals.systemDb();
      const audit = await db
        .selectFrom('audit_events')
        .select(['action', 'actor_type', 'actor_id', 'resource_type'])
        .where('resource_id', '=', dead!)
        .where('action', '=', 'outbox.event_replayed')
        .execute();
      expect(audit).toEqual([
        {
          action: 'outbox.event_replayed',
          actor_type: 'api_key',
          actor_id: keyId,
          resource_type: 'outbox_event',
        },
      ]);
      // The relay publishes it again (and the sink refuses it again).
      expect(await (await docket.outbox.createRelay()).runOnce()).toBe(1);
      expect((await docket.outbox.get(dead!, { tenant: 'acme' })).status).toBe('dead');
    });

    it('lists the outbox paths in the OpenAPI document', async () => {
      const spec = (await app.inject({ url: '/v1/openapi.json' })).json() as {
        paths: Record<string, unknown>;
      };
      expect(Object.keys(spec.paths)).toEqual(
        expect.arrayContaining([
          '/v1/outbox/events',
          '/v1/outbox/events/{id}',
          '/v1/outbox/events/{id}/replay',
          '/v1/outbox/events/{id}/deliveries',
          '/v1/outbox/counts',
          '/v1/outbox/unrouted',
          '/v1/outbox/deliveries/{id}',
          '/v1/outbox/deliveries/{id}/rerun',
        ]),
      );
    });

    describe('every bad input is a 4xx with a stable code and changes nothing', () => {
      const bad: Array<
        [string, () => Promise<{ statusCode: number; json(): unknown }>, number, string]
      > = [
        [
          'forged cursor',
          () => get('/v1/outbox/events?cursor=bm90LWEtY3Vyc29y'),
          400,
          'INVALID_CURSOR',
        ],
        ['cursor of garbage', () => get('/v1/outbox/events?cursor=%%%'), 400, 'INVALID_CURSOR'],
        [
          'unknown status',
          () => get('/v1/outbox/events?status=dead,zombie'),
          400,
          'VALIDATION_FAILED',
        ],
        [
          'topic with a space',
          () => get('/v1/outbox/events?topic=a%20b'),
          400,
          'VALIDATION_FAILED',
        ],
        [
          'routed not a boolean',
          () => get('/v1/outbox/events?routed=maybe'),
          400,
          'VALIDATION_FAILED',
        ],
        ['limit 0', () => get('/v1/outbox/events?limit=0'), 400, 'VALIDATION_FAILED'],
        ['limit 1000', () => get('/v1/outbox/events?limit=1000'), 400, 'VALIDATION_FAILED'],
        [
          'unknown query field',
          () => get('/v1/outbox/events?colour=red'),
          400,
          'VALIDATION_FAILED',
        ],
        ['unrouted limit 0', () => get('/v1/outbox/unrouted?limit=0'), 400, 'VALIDATION_FAILED'],
        ['no API key', () => app.inject({ url: '/v1/outbox/events' }), 401, 'UNAUTHORIZED'],
        [
          'replaying another tenant’s dead event',
          () => post(`/v1/outbox/events/${ids['globex:invoice.void']![0]}/replay`),
          404,
          'OUTBOX_EVENT_NOT_FOUND',
        ],
        [
          'replaying an unknown event',
          () => post('/v1/outbox/events/0190c4c4-0000-7000-8000-000000000000/replay'),
          404,
          'OUTBOX_EVENT_NOT_FOUND',
        ],
        [
          'replaying a published event',
          () => post(`/v1/outbox/events/${ids['acme:invoice.paid']![0]}/replay`),
          409,
          'OUTBOX_EVENT_NOT_DEAD',
        ],
        [
          'replaying an unrouted pending event',
          () => post(`/v1/outbox/events/${ids['acme:orphan.created']![0]}/replay`),
          409,
          'OUTBOX_EVENT_NOT_DEAD',
        ],
        [
          'deliveries of another tenant’s event',
          () => get(`/v1/outbox/events/${ids['globex:invoice.void']![0]}/deliveries`),
          404,
          'OUTBOX_EVENT_NOT_FOUND',
        ],
      ];
      for (const [what, send, status, code] of bad) {
        it(`${what} -> ${status} ${code}`, async () => {
          const before = await counts();
          const res = await send();
          expect(res.statusCode).toBe(status);
          const body = res.json() as ErrorReply;
          expect(body.error.code).toBe(code);
          expect(typeof body.error.message).toBe('string');
          expect(await counts()).toEqual(before);
        });
      }
    });
  });
}
