// Due triggers over HTTP on every store (SPEC S-6, H-4): POST is idempotent by dedupe key and
// keeps the request's trace id, a tenant sees only its triggers, lists page by keyset with
// state and type filters, cancel is audited, and every bad input is a 400 with a stable code
// that changes nothing.
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocket, type Docket } from '../../src/docket.js';
import { ManualClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import { buildHttpApp, createApiKey, createTenant } from '../../src/http/index.js';
import { BACKENDS, createTestStore, type TestStore } from '../helpers/backends.js';

const T0 = Date.parse('2026-06-01T00:00:00Z');
const TRACE = '0af7651916cd43dd8448eb211c80319c';

for (const backend of BACKENDS) {
  describe(`triggers HTTP API on ${backend}`, () => {
    let ts: TestStore;
    let docket: Docket;
    let app: FastifyInstance;
    let key: string;
    let otherKey: string;
    const clock = new ManualClock(T0);
    const fired: string[] = [];

    const call = (
      method: 'GET' | 'POST',
      url: string,
      payload?: unknown,
      k = key,
      headers: Record<string, string> = {},
    ) =>
      app.inject({
        method,
        url,
        headers: { authorization: `Bearer ${k}`, ...headers },
        payload: payload as object | undefined,
      });

    beforeAll(async () => {
      ts = await createTestStore(backend);
      docket = createDocket({
        store: ts.store,
        dataDir: ts.dataDir,
        clock,
        reapIntervalMs: 0,
        pruneIntervalMs: 0,
        triggers: {
          handlers: {
            'invoice.reminder': ({ trigger }) => {
              fired.push(trigger.id);
              return { reminded: trigger.target };
            },
          },
        },
      });
      await docket.start();
      app = buildHttpApp({ docket, logger: silentLogger() });
      await app.ready();
      await createTenant(docket, { id: 'acme' });
      await createTenant(docket, { id: 'globex' });
      ({ key } = await createApiKey(docket, { tenant: 'acme' }));
      ({ key: otherKey } = await createApiKey(docket, { tenant: 'globex' }));
    });

    afterAll(async () => {
      await app?.close();
      await docket?.close();
      await ts?.dispose();
    });

    const body = {
      type: 'invoice.reminder',
      target: 'invoice:42',
      fireAt: new Date(T0 + 60_000).toISOString(),
      dedupeKey: 'invoice:42',
      dedupeWindow: 3_600_000,
      payload: { to: 'a@example.com' },
    };

    it('POST schedules (201), a repeat within the window returns it (200), and it fires at fireAt', async () => {
      const traceparent = `00-${TRACE}-b7ad6b7169203331-01`;
      const created = await call('POST', '/v1/triggers', body, key, { traceparent });
      expect(created.statusCode).toBe(201);
      const t = created.json().trigger;
      expect(created.json().deduplicated).toBe(false);
      expect(t).toMatchObject({
        type: 'invoice.reminder',
        target: 'invoice:42',
        state: 'pending',
        fireAt: body.fireAt,
        traceId: TRACE,
        payload: { to: 'a@example.com' },
        finishedAt: null,
      });
      const again = await call('POST', '/v1/triggers', {
        ...body,
        fireAt: new Date(T0).toISOString(),
      });
      expect(again.statusCode).toBe(200);
      expect(again.json()).toMatchObject({
        deduplicated: true,
        trigger: { id: t.id, fireAt: body.fireAt },
      });
      expect((await call('GET', `/v1/triggers/${t.id as string}`)).json().trigger.id).toBe(t.id);
      const foreign = await call('GET', `/v1/triggers/${t.id as string}`, undefined, otherKey);
      expect(foreign.statusCode).toBe(404);
      expect(foreign.json().error.code).toBe('TRIGGER_NOT_FOUND');
      clock.advance(60_000);
      await docket.processBatch({ tenant: 'acme', max: 10 });
      expect(fired).toEqual([t.id]);
      const done = (await call('GET', `/v1/triggers/${t.id as string}`)).json().trigger;
      expect(done).toMatchObject({
        state: 'triggered',
        result: { reminded: 'invoice:42' },
        attempts: 1,
      });
      expect(done.finishedAt).toBe(new Date(T0 + 60_000).toISOString());
    });

    it('bad input is a 400 with a stable code and schedules nothing', async () => {
      const before = (await call('GET', '/v1/triggers?limit=200')).json().items.length as number;
      const cases: Array<[unknown, string]> = [
        [{ ...body, fireAt: 'tomorrow' }, 'VALIDATION_FAILED'],
        [{ ...body, fireAt: 1_780_000_000_000 }, 'VALIDATION_FAILED'],
        [{ ...body, type: 'no.such.type' }, 'UNKNOWN_TRIGGER_TYPE'],
        [{ ...body, type: '1bad' }, 'VALIDATION_FAILED'],
        [{ ...body, target: '' }, 'VALIDATION_FAILED'],
        [{ type: body.type, fireAt: body.fireAt }, 'VALIDATION_FAILED'],
        [
          { type: body.type, target: 'x', fireAt: body.fireAt, dedupeWindow: 10 },
          'VALIDATION_FAILED',
        ],
        [{ ...body, dedupeWindow: 0 }, 'VALIDATION_FAILED'],
        [{ ...body, surprise: true }, 'VALIDATION_FAILED'],
        [{ ...body, maxAttempts: 0 }, 'VALIDATION_FAILED'],
      ];
      for (const [payload, code] of cases) {
        const r = await call('POST', '/v1/triggers', payload);
        expect(r.statusCode, JSON.stringify(payload)).toBe(400);
        expect(r.json().error.code, JSON.stringify(payload)).toBe(code);
      }
      const badJson = await app.inject({
        method: 'POST',
        url: '/v1/triggers',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        payload: '{"type":',
      });
      expect(badJson.json().error.code).toBe('INVALID_JSON');
      for (const [query, code] of [
        ['cursor=not-a-cursor', 'INVALID_CURSOR'],
        ['state=pending,nope', 'VALIDATION_FAILED'],
        ['limit=0', 'VALIDATION_FAILED'],
        ['type=1bad', 'VALIDATION_FAILED'],
      ] as const) {
        const r = await call('GET', `/v1/triggers?${query}`);
        expect(r.statusCode, query).toBe(400);
        expect(r.json().error.code, query).toBe(code);
      }
      expect((await call('GET', '/v1/triggers?limit=200')).json().items).toHaveLength(before);
      expect((await call('POST', '/v1/triggers', body, 'dk_bad_key')).statusCode).toBe(401);
    });

    it('lists in keyset pages by state and type; cancel is audited and refused unless pending', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await call('POST', '/v1/triggers', {
          type: 'invoice.reminder',
          target: `invoice:${i}`,
          fireAt: new Date(clock.now() + 86_400_000).toISOString(),
        });
        ids.push(r.json().trigger.id as string);
      }
      const p1 = await call('GET', '/v1/triggers?state=pending&type=invoice.reminder&limit=2');
      expect(p1.json().items.map((t: { id: string }) => t.id)).toEqual([ids[2], ids[1]]);
      const p2 = await call(
        'GET',
        `/v1/triggers?state=pending&limit=2&cursor=${p1.json().nextCursor as string}`,
      );
      expect(p2.json().items.map((t: { id: string }) => t.id)).toEqual([ids[0]]);
      expect(p2.json().nextCursor).toBeNull();
      expect((await call('GET', '/v1/triggers', undefined, otherKey)).json().items).toEqual([]);

      const id = ids[1] as string;
      const foreign = await call('POST', `/v1/triggers/${id}/cancel`, undefined, otherKey);
      expect(foreign.json().error.code).toBe('TRIGGER_NOT_FOUND');
      const canceled = await call('POST', `/v1/triggers/${id}/cancel`);
      expect(canceled.statusCode).toBe(200);
      expect(canceled.json().trigger.state).toBe('canceled');
      const twice = await call('POST', `/v1/triggers/${id}/cancel`);
      expect(twice.statusCode).toBe(409);
      expect(twice.json().error).toMatchObject({
        code: 'TRIGGER_NOT_PENDING',
        details: { state: 'canceled' },
      });
      expect((await call('POST', '/v1/triggers/nope/cancel')).statusCode).toBe(404);
      expect((await call('GET', '/v1/triggers?state=canceled')).json().items).toHaveLength(1);

      await docket.audit.flush();
      const events = await docket.audit.list(
        { resourceType: 'trigger', resourceId: id },
        { tenant: 'acme' },
      );
      // Scheduled, canceled, and the refused second cancel (outcome failure); plus the
      // library's own record of the cancel.
      expect(events.items.map((e) => `${e.action}:${e.outcome}`).sort()).toEqual([
        'http.post:failure',
        'http.post:success',
        'http.post:success',
        'trigger.canceled:success',
      ]);
      expect(events.items.every((e) => e.actor.type === 'api_key')).toBe(true);
      const scheduled = await docket.audit.list(
        { action: 'http.post', resourceId: ids[0] },
        { tenant: 'acme' },
      );
      expect(scheduled.items).toHaveLength(1);
      expect(scheduled.items[0]?.resource.type).toBe('trigger');
    });
  });
}
