// Stored webhook deliveries and re-runs (SPEC O-6, issue 5 item 9) on every store, against a
// real HTTP server on 127.0.0.1: every request a webhook sink makes is stored the moment it
// returns (before the relay records the event), with sensitive headers masked and both bodies
// capped at 1 KiB; 500s are retryable until the event is dead, a 404 and a redirect (never
// followed) are permanent; a re-run sends the same signed request again and links the delivery
// it repeats; rows are never updated, and tenants see only their own.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocket, type Docket } from '../../src/docket.js';
import { silentLogger } from '../../src/core/logger.js';
import { buildHttpApp, createApiKey, createTenant } from '../../src/http/index.js';
import {
  verifyWebhookSignature,
  type OutboxOptions,
  type OutboxRelay,
  type WebhookDelivery,
} from '../../src/index.js';
import { BACKENDS, createTestStore, waitFor, type TestStore } from '../helpers/backends.js';

const SECRET = 'whsec_deliveries';

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}
interface ErrorReply {
  error: { code: string; details: Record<string, unknown> };
}

for (const backend of BACKENDS) {
  describe(`webhook deliveries on ${backend}`, () => {
    let ts: TestStore;
    let docket: Docket;
    let app: FastifyInstance;
    let server: Server;
    let relay: OutboxRelay;
    let key: string;
    let keyId: string;
    let otherKey: string;
    const received: Received[] = [];
    let goneStatus = 404;
    let releaseGate: (() => void) | undefined;
    let gateEntered = false;

    const auth = (k = key) => ({ authorization: `Bearer ${k}` });
    const get = (url: string, k = key) => app.inject({ method: 'GET', url, headers: auth(k) });
    const post = (url: string, k = key) => app.inject({ method: 'POST', url, headers: auth(k) });
    const addEvent = (
      topic: string,
      extra: { headers?: Record<string, string>; payload?: unknown } = {},
    ) =>
      docket.withTransaction('acme', (tx) =>
        docket.outbox.add(tx, {
          topic,
          payload: (extra.payload ?? { n: 1 }) as never,
          headers: extra.headers,
        }),
      );
    const deliveriesOf = async (eventId: string): Promise<WebhookDelivery[]> => {
      const res = await get(`/v1/outbox/events/${eventId}/deliveries`);
      expect(res.statusCode).toBe(200);
      return res.json().items as WebhookDelivery[];
    };
    const status = async (id: string) => (await docket.outbox.get(id, { tenant: 'acme' })).status;

    beforeAll(async () => {
      server = createServer((req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          const path = req.url ?? '';
          received.push({ path, headers: req.headers, body });
          if (path === '/ok') {
            res.writeHead(200, {
              'content-type': 'text/plain',
              'set-cookie': 'session=very-secret',
              'x-receiver': 'tests',
            });
            res.end('r'.repeat(3000));
          } else if (path === '/fail') {
            res.writeHead(500);
            res.end('down');
          } else if (path === '/gone') {
            res.writeHead(goneStatus);
            res.end(goneStatus === 404 ? 'no such hook' : 'ok now');
          } else if (path === '/moved') {
            res.writeHead(302, { location: '/redirect-target' });
            res.end();
          } else {
            res.writeHead(200);
            res.end();
          }
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const base = `http://localhost:${(server.address() as AddressInfo).port}`;
      const hook = (path: string) => ({
        kind: 'webhook' as const,
        url: `${base}${path}`,
        secret: SECRET,
        timeoutMs: 5000,
      });
      const outbox: OutboxOptions = {
        routes: [
          { topic: 'ok.*', sink: 'ok' },
          { topic: 'gated.*', sink: 'ok' },
          { topic: 'gated.*', sink: 'gate' },
          { topic: 'fail.*', sink: 'fail' },
          { topic: 'gone.*', sink: 'gone' },
          { topic: 'moved.*', sink: 'moved' },
        ],
        sinks: {
          ok: hook('/ok'),
          fail: hook('/fail'),
          gone: hook('/gone'),
          moved: hook('/moved'),
          // Holds an event after the webhook accepted it, so the test can look in between.
          gate: {
            async publish() {
              gateEntered = true;
              await new Promise<void>((r) => (releaseGate = r));
              return {};
            },
          },
        },
        maxAttempts: 3,
      };
      ts = await createTestStore(backend);
      docket = createDocket({
        store: ts.store,
        dataDir: ts.dataDir,
        reapIntervalMs: 0,
        pruneIntervalMs: 0,
        webhooks: { allow: ['localhost'] },
        outbox,
      });
      await docket.start();
      app = buildHttpApp({ docket, logger: silentLogger() });
      await app.ready();
      await createTenant(docket, { id: 'acme' });
      await createTenant(docket, { id: 'globex' });
      ({ key, id: keyId } = await createApiKey(docket, { tenant: 'acme' }));
      ({ key: otherKey } = await createApiKey(docket, { tenant: 'globex' }));
      relay = await docket.outbox.createRelay({ retry: { baseMs: 1, capMs: 2 } });
    });

    afterAll(async () => {
      releaseGate?.();
      await app?.close();
      await docket?.close();
      server?.closeAllConnections();
      await new Promise((r) => server?.close(r));
      await ts?.dispose();
    });

    it('stores a success with sensitive headers masked and both bodies capped at 1 KiB', async () => {
      const big = 'x'.repeat(2000);
      const e = await addEvent('ok.created', {
        headers: { authorization: 'Bearer s3cret', 'x-api-key': 'k3y', 'x-tenant-note': 'plain' },
        payload: { big },
      });
      expect(await relay.runOnce()).toBe(1);
      expect(await status(e.id)).toBe('published');
      const sent = received.find((r) => r.headers['idempotency-key'] === e.id);
      expect(sent?.headers.authorization).toBe('Bearer s3cret'); // the receiver got it …
      expect(Buffer.byteLength(sent!.body)).toBeGreaterThan(2000);
      const [d, ...more] = await deliveriesOf(e.id);
      expect(more).toEqual([]);
      expect(d).toMatchObject({
        eventId: e.id,
        tenantId: 'acme',
        sink: 'ok',
        attempt: 1,
        class: 'success',
        error: null,
        repeatsDeliveryId: null,
        request: { method: 'POST', url: expect.stringMatching(/\/ok$/) },
        response: { status: 200 },
      });
      // … the record did not.
      expect(d!.request.headers).toMatchObject({
        authorization: '***',
        'x-api-key': '***',
        'x-tenant-note': 'plain',
        'idempotency-key': e.id,
        'docket-event-topic': 'ok.created',
      });
      expect(d!.response!.headers).toMatchObject({ 'set-cookie': '***', 'x-receiver': 'tests' });
      expect(Buffer.byteLength(d!.request.body)).toBe(1024);
      expect(sent!.body.startsWith(d!.request.body)).toBe(true);
      expect(d!.response!.body).toBe('r'.repeat(1024));
      expect(d!.durationMs).toBeGreaterThanOrEqual(0);
      const one = await get(`/v1/outbox/deliveries/${d!.id}`);
      expect(one.statusCode).toBe(200);
      expect(one.json().delivery).toEqual(d);
    });

    it('writes the delivery when the request returns, before the relay records the event', async () => {
      gateEntered = false;
      const e = await addEvent('gated.created');
      const run = relay.runOnce();
      await waitFor(() => gateEntered, { what: 'the gate sink' });
      // The webhook answered and the next sink holds the event: still publishing, already stored.
      expect(await status(e.id)).toBe('publishing');
      expect((await deliveriesOf(e.id)).map((d) => d.class)).toEqual(['success']);
      releaseGate?.();
      expect(await run).toBe(1);
      expect(await status(e.id)).toBe('published');
    });

    it('a 500 forever is retryable on every attempt, then the event is dead after maxAttempts', async () => {
      const e = await addEvent('fail.created');
      await waitFor(
        async () => {
          await relay.runOnce();
          return (await status(e.id)) === 'dead';
        },
        { what: 'the event to die' },
      );
      const ds = await deliveriesOf(e.id);
      expect(ds.map((d) => [d.attempt, d.class, d.response?.status])).toEqual([
        [1, 'retryable', 500],
        [2, 'retryable', 500],
        [3, 'retryable', 500],
      ]);
      expect(ds.every((d) => d.response?.body === 'down')).toBe(true);
      expect((await docket.outbox.get(e.id, { tenant: 'acme' })).lastError).toContain('500');
    });

    it('a 404 is permanent: one delivery and the event is dead', async () => {
      const e = await addEvent('gone.created');
      expect(await relay.runOnce()).toBe(1);
      expect(await docket.outbox.get(e.id, { tenant: 'acme' })).toMatchObject({
        status: 'dead',
        attempts: 1,
      });
      expect(await deliveriesOf(e.id)).toMatchObject([
        { attempt: 1, class: 'permanent', response: { status: 404, body: 'no such hook' } },
      ]);
    });

    it('a redirect is permanent and is not followed', async () => {
      const e = await addEvent('moved.created');
      expect(await relay.runOnce()).toBe(1);
      expect(await status(e.id)).toBe('dead');
      expect(await deliveriesOf(e.id)).toMatchObject([
        {
          class: 'permanent',
          response: { status: 302, headers: { location: '/redirect-target' } },
          error: { code: 'REDIRECT_NOT_FOLLOWED' },
        },
      ]);
      expect(received.some((r) => r.path === '/redirect-target')).toBe(false);
    });

    it('a re-run sends the same signed request again, stores it linked to the original, audited', async () => {
      const e = await addEvent('gone.rerun', { payload: { order: 7 } });
      expect(await relay.runOnce()).toBe(1);
      const [original] = await deliveriesOf(e.id);
      expect(original?.class).toBe('permanent');
      const firstBody = received.filter((r) => r.headers['idempotency-key'] === e.id)[0]!.body;
      goneStatus = 200;
      try {
        const res = await post(`/v1/outbox/deliveries/${original!.id}/rerun`);
        expect(res.statusCode).toBe(201);
        const rerun = res.json().delivery as WebhookDelivery;
        expect(rerun).toMatchObject({
          eventId: e.id,
          sink: 'gone',
          attempt: original!.attempt,
          class: 'success',
          repeatsDeliveryId: original!.id,
          response: { status: 200, body: 'ok now' },
        });
        expect(rerun.id).not.toBe(original!.id);
        const requests = received.filter((r) => r.headers['idempotency-key'] === e.id);
        expect(requests).toHaveLength(2);
        const again = requests[1]!;
        expect(again.body).toBe(firstBody);
        expect(
          verifyWebhookSignature(
            SECRET,
            String(again.headers['docket-signature']),
            again.body,
            Math.floor(Date.now() / 1000),
          ),
        ).toBe(true);
        expect((await deliveriesOf(e.id)).map((d) => [d.id, d.repeatsDeliveryId])).toEqual([
          [original!.id, null],
          [rerun.id, original!.id],
        ]);
        // A re-run is not a publication: the event stays dead (replay it to publish it).
        expect(await status(e.id)).toBe('dead');
        const db = await docket.internals.systemDb();
        const audit = await db
          .selectFrom('audit_events')
          .select(['action', 'actor_type', 'actor_id', 'resource_id'])
          .where('action', '=', 'outbox.delivery_rerun')
          .execute();
        expect(audit).toEqual([
          {
            action: 'outbox.delivery_rerun',
            actor_type: 'api_key',
            actor_id: keyId,
            resource_id: e.id,
          },
        ]);
      } finally {
        goneStatus = 404;
      }
    });

    it('refuses bad re-runs and foreign reads with stable codes, sending nothing', async () => {
      const e = await addEvent('gone.foreign');
      expect(await relay.runOnce()).toBe(1);
      const [d] = await deliveriesOf(e.id);
      const before = received.length;
      const cases: Array<[Promise<{ statusCode: number; json(): unknown }>, number, string]> = [
        [get(`/v1/outbox/deliveries/${d!.id}`, otherKey), 404, 'DELIVERY_NOT_FOUND'],
        [post(`/v1/outbox/deliveries/${d!.id}/rerun`, otherKey), 404, 'DELIVERY_NOT_FOUND'],
        [get(`/v1/outbox/events/${e.id}/deliveries`, otherKey), 404, 'OUTBOX_EVENT_NOT_FOUND'],
        [get('/v1/outbox/deliveries/not-an-id'), 404, 'DELIVERY_NOT_FOUND'],
        [
          post('/v1/outbox/deliveries/0190c4c4-0000-7000-8000-000000000000/rerun'),
          404,
          'DELIVERY_NOT_FOUND',
        ],
        [get(`/v1/outbox/events/${e.id}/deliveries?cursor=zzz`), 400, 'INVALID_CURSOR'],
        [get(`/v1/outbox/events/${e.id}/deliveries?limit=0`), 400, 'VALIDATION_FAILED'],
      ];
      for (const [res, code, err] of cases) {
        const r = await res;
        expect([r.statusCode, (r.json() as ErrorReply).error.code]).toEqual([code, err]);
      }
      // An instance whose configuration no longer has the sink cannot re-run its deliveries.
      const bare = createDocket({
        store: ts.store,
        dataDir: ts.dataDir,
        reapIntervalMs: 0,
        pruneIntervalMs: 0,
        migrate: false,
        audit: { writerThread: false }, // (a quick close)
      });
      const bareApp = buildHttpApp({ docket: bare, logger: silentLogger() });
      try {
        const r = await bareApp.inject({
          method: 'POST',
          url: `/v1/outbox/deliveries/${d!.id}/rerun`,
          headers: auth(),
        });
        expect(r.statusCode).toBe(409);
        expect((r.json() as ErrorReply).error).toMatchObject({
          code: 'SINK_NOT_CONFIGURED',
          details: { sink: 'gone' },
        });
      } finally {
        await bareApp.close();
        await bare.close();
      }
      expect(received.length).toBe(before);
      expect(await deliveriesOf(e.id)).toHaveLength(1);
    });

    it('pages an event’s deliveries oldest first', async () => {
      const e = await addEvent('fail.paged');
      await waitFor(
        async () => {
          await relay.runOnce();
          return (await status(e.id)) === 'dead';
        },
        { what: 'the event to die' },
      );
      const first = await get(`/v1/outbox/events/${e.id}/deliveries?limit=2`);
      const p1 = first.json() as { items: WebhookDelivery[]; nextCursor: string };
      expect(p1.items.map((d) => d.attempt)).toEqual([1, 2]);
      const second = await get(
        `/v1/outbox/events/${e.id}/deliveries?limit=2&cursor=${encodeURIComponent(p1.nextCursor)}`,
      );
      expect(second.json()).toMatchObject({ items: [{ attempt: 3 }], nextCursor: null });
    });

    it('the database refuses to change a stored delivery', async () => {
      const e = await addEvent('ok.immutable');
      expect(await relay.runOnce()).toBe(1);
      const [d] = await deliveriesOf(e.id);
      const db = await docket.internals.systemDb();
      await expect(
        db
          .updateTable('webhook_deliveries')
          .set({ class: 'permanent' })
          .where('id', '=', d!.id)
          .execute(),
      ).rejects.toThrow();
      expect((await deliveriesOf(e.id))[0]?.class).toBe('success');
    });
  });
}
