// The scheduler over HTTP on every store (SPEC H-4, S-1 … S-4): a tenant key sees only its
// tenant's tasks and executions, the operator secret sees every task including `system` ones;
// enable, disable, schedule override and trigger are audited; executions list in keyset pages;
// every bad input is a 4xx with a stable code and changes nothing.
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocket, type Docket } from '../../src/docket.js';
import { silentLogger } from '../../src/core/logger.js';
import { buildHttpApp, createApiKey, createTenant } from '../../src/http/index.js';
import { BACKENDS, createTestStore, type TestStore } from '../helpers/backends.js';

const OPERATOR = 'op-secret-for-scheduler-tests';

for (const backend of BACKENDS) {
  describe(`scheduler HTTP API on ${backend}`, () => {
    let ts: TestStore;
    let docket: Docket;
    let app: FastifyInstance;
    let key: string;
    let otherKey: string;
    let runs = 0;

    const auth = (k: string) => ({ authorization: `Bearer ${k}` });
    const call = (method: 'GET' | 'POST' | 'PUT', url: string, k = key, payload?: unknown) =>
      app.inject({ method, url, headers: auth(k), payload: payload as object | undefined });

    beforeAll(async () => {
      ts = await createTestStore(backend);
      docket = createDocket({
        store: ts.store,
        dataDir: ts.dataDir,
        reapIntervalMs: 0,
        pruneIntervalMs: 0,
        scheduler: {
          tickMs: 60_000,
          tasks: [
            { name: 'acme.report', tenant: 'acme', cron: '0 3 * * *', handler: () => void runs++ },
            {
              name: 'globex.sync',
              tenant: 'globex',
              cron: '*/5 * * * *',
              handler: () => undefined,
            },
            { name: 'system.cleanup', cron: '0 * * * *', handler: () => undefined },
            {
              name: 'globex.slow',
              tenant: 'globex',
              cron: '0 4 * * *',
              graceMs: 100,
              handler: (ctx) =>
                new Promise((_, reject) =>
                  ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error)),
                ),
            },
          ],
        },
      });
      await docket.start();
      app = buildHttpApp({ docket, logger: silentLogger(), operatorSecret: OPERATOR });
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

    it('a tenant lists only its tasks; the operator sees system tasks too', async () => {
      const mine = await call('GET', '/v1/scheduler/tasks');
      expect(mine.statusCode).toBe(200);
      expect(mine.json().items.map((t: { name: string }) => t.name)).toEqual(['acme.report']);
      const all = await call('GET', '/v1/scheduler/tasks', OPERATOR);
      expect(all.json().items.map((t: { name: string }) => t.name)).toEqual([
        'acme.report',
        'globex.slow',
        'globex.sync',
        'system.cleanup',
      ]);
      expect((await call('GET', '/v1/scheduler/tasks/system.cleanup')).json().error.code).toBe(
        'TASK_NOT_FOUND',
      );
      const got = await call('GET', '/v1/scheduler/tasks/system.cleanup', OPERATOR);
      expect(got.json().task).toMatchObject({ tenantId: 'system', cron: '0 * * * *' });
      expect((await call('GET', '/v1/scheduler/tasks', 'dk_bad_key')).statusCode).toBe(401);
    });

    it('disable, schedule and enable are audited and refuse bad input with 4xx, changing nothing', async () => {
      const off = await call('POST', '/v1/scheduler/tasks/acme.report/disable');
      expect(off.statusCode).toBe(200);
      expect(off.json().task.enabled).toBe(false);
      const trig = await call('POST', '/v1/scheduler/tasks/acme.report/trigger');
      expect(trig.statusCode).toBe(409);
      expect(trig.json().error.code).toBe('TASK_DISABLED');
      const bad = await call('PUT', '/v1/scheduler/tasks/acme.report/schedule', key, {
        cron: '99 * * * *',
      });
      expect(bad.statusCode).toBe(400);
      expect(bad.json().error.code).toBe('SCHEDULE_INVALID');
      const badTz = await call('PUT', '/v1/scheduler/tasks/acme.report/schedule', key, {
        cron: '0 4 * * *',
        timezone: 'Atlantis/Capital',
      });
      expect(badTz.json().error.code).toBe('SCHEDULE_INVALID');
      expect((await docket.scheduler.get('acme.report')).cron).toBe('0 3 * * *');
      const other = await call('POST', '/v1/scheduler/tasks/acme.report/disable', otherKey);
      expect(other.statusCode).toBe(404);
      const resched = await call('PUT', '/v1/scheduler/tasks/acme.report/schedule', key, {
        cron: '0 4 * * *',
        timezone: 'Europe/Berlin',
      });
      expect(resched.json().task).toMatchObject({
        cron: '0 4 * * *',
        timezone: 'Europe/Berlin',
        overridden: true,
      });
      const on = await call('POST', '/v1/scheduler/tasks/acme.report/enable');
      expect(on.json().task.enabled).toBe(true);
      const audit = await docket.audit.list({ resourceType: 'scheduler_task' }, { tenant: 'acme' });
      expect(audit.items.map((e) => e.action)).toEqual([
        'scheduler.task_enabled',
        'scheduler.task_rescheduled',
        'scheduler.task_disabled',
      ]);
      expect(audit.items[0]?.actor.type).toBe('api_key');
      const reset = await call('PUT', '/v1/scheduler/tasks/acme.report/schedule', key, {
        cron: null,
      });
      expect(reset.json().task).toMatchObject({ cron: '0 3 * * *', overridden: false });
    });

    it('trigger runs the task; executions list in keyset pages, filtered, per tenant; stats', async () => {
      for (let i = 0; i < 3; i++) {
        const r = await call('POST', '/v1/scheduler/tasks/acme.report/trigger');
        expect(r.statusCode).toBe(202);
        expect(r.json().execution).toMatchObject({ trigger: 'manual', task: 'acme.report' });
        await docket.scheduler.idle();
      }
      expect(runs).toBe(3);
      const page1 = await call('GET', '/v1/scheduler/executions?limit=2');
      expect(page1.json().items).toHaveLength(2);
      const page2 = await call(
        'GET',
        `/v1/scheduler/executions?limit=2&cursor=${page1.json().nextCursor as string}`,
      );
      expect(page2.json().items).toHaveLength(1);
      expect(page2.json().nextCursor).toBeNull();
      const ok = await call('GET', '/v1/scheduler/executions?status=succeeded&trigger=manual');
      expect(ok.json().items).toHaveLength(3);
      const id = page2.json().items[0].id as string;
      expect((await call('GET', `/v1/scheduler/executions/${id}`)).json().execution.id).toBe(id);
      expect((await call('GET', `/v1/scheduler/executions/${id}`, otherKey)).statusCode).toBe(404);
      expect((await call('GET', '/v1/scheduler/executions', otherKey)).json().items).toEqual([]);
      expect((await call('GET', '/v1/scheduler/executions?status=nope')).statusCode).toBe(400);
      expect((await call('GET', '/v1/scheduler/executions?cursor=zzz')).json().error.code).toBe(
        'INVALID_CURSOR',
      );
      const stats = await call('GET', '/v1/scheduler/stats?task=acme.report');
      expect(stats.json().items[0]).toMatchObject({
        task: 'acme.report',
        finished: 3,
        succeeded: 3,
        successRate: 1,
      });
    });
    it('cancel stops a running execution (audited); finished ones are 409, foreign or malformed ids 404, bad bodies 400', async () => {
      const run = await call('POST', '/v1/scheduler/tasks/globex.slow/trigger', otherKey);
      expect(run.statusCode).toBe(202);
      const id = run.json().execution.id as string;
      expect((await call('POST', `/v1/scheduler/executions/${id}/cancel`, key)).statusCode).toBe(
        404,
      );
      expect(
        (await call('POST', `/v1/scheduler/executions/${id}/cancel`, otherKey, { extra: 1 }))
          .statusCode,
      ).toBe(400);
      const canceled = await call('POST', `/v1/scheduler/executions/${id}/cancel`, otherKey, {
        reason: 'wrong day',
      });
      expect(canceled.statusCode).toBe(200);
      expect(canceled.json().execution).toMatchObject({ status: 'canceled' });
      await docket.scheduler.idle();
      const again = await call('POST', `/v1/scheduler/executions/${id}/cancel`, otherKey);
      expect(again.statusCode).toBe(409);
      expect(again.json().error.code).toBe('EXECUTION_NOT_RUNNING');
      expect(
        (await call('POST', '/v1/scheduler/executions/nope/cancel', otherKey)).statusCode,
      ).toBe(404);
      const audit = await docket.audit.list(
        { action: 'scheduler.execution_canceled' },
        { tenant: 'globex' },
      );
      expect(audit.items).toHaveLength(1);
    });
  });
}
