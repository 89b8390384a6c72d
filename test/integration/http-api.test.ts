import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { createDocket, type Docket } from '../../src/docket.js';
import { silentLogger } from '../../src/core/logger.js';
import { PermanentJobError, type JobMap } from '../../src/jobs/index.js';
import { buildHttpApp, createApiKey, createTenant, revokeApiKey } from '../../src/http/index.js';
import { BACKENDS, createTestStore, type TestStore } from '../helpers/backends.js';

const PAYLOAD_LIMIT = 4096;
const OPERATOR_SECRET = 'operator-secret-for-tests';
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';

interface ErrorReply {
  error: { code: string; message: string; details: Record<string, unknown> };
}

for (const backend of BACKENDS) {
  describe(`HTTP API on ${backend}`, () => {
    let ts: TestStore;
    let docket: Docket;
    let app: FastifyInstance;
    let key: string;
    let keyId: string;
    let otherKey: string;

    const auth = (k = key) => ({ authorization: `Bearer ${k}` });
    const post = (url: string, body?: unknown, headers: Record<string, string> = auth()) =>
      app.inject({
        method: 'POST',
        url,
        headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
        payload: body === undefined ? undefined : JSON.stringify(body),
      });
    const get = (url: string, headers: Record<string, string> = auth()) =>
      app.inject({ method: 'GET', url, headers });
    const counts = async () => ({
      acme: await docket.jobs.counts({ tenant: 'acme' }),
      globex: await docket.jobs.counts({ tenant: 'globex' }),
    });

    beforeAll(async () => {
      ts = await createTestStore(backend);
      docket = createDocket<JobMap>({
        store: ts.store,
        dataDir: ts.dataDir,
        payloadLimitBytes: PAYLOAD_LIMIT,
        reapIntervalMs: 0,
        pruneIntervalMs: 0,
        handlers: {
          ok: async () => ({ done: true }),
          doomed: async () => {
            throw new PermanentJobError('this job can never succeed');
          },
        },
      });
      await docket.start();
      app = buildHttpApp({ docket, logger: silentLogger(), operatorSecret: OPERATOR_SECRET });
      await app.ready();
      await createTenant(docket, { id: 'acme' });
      await createTenant(docket, { id: 'globex' });
      ({ key, id: keyId } = await createApiKey(docket, { tenant: 'acme', label: 'tests' }));
      ({ key: otherKey } = await createApiKey(docket, { tenant: 'globex' }));
    });

    afterAll(async () => {
      await app?.close();
      await docket?.close();
      await ts?.dispose();
    });

    it('serves liveness, readiness and the OpenAPI document', async () => {
      expect((await get('/healthz', {})).json()).toEqual({ status: 'ok' });
      const ready = await get('/readyz', {});
      expect(ready.statusCode).toBe(200);
      const doc = await get('/v1/openapi.json', {});
      expect(doc.statusCode).toBe(200);
      const spec = doc.json() as { openapi: string; paths: Record<string, unknown> };
      expect(spec.openapi).toBe('3.1.0');
      expect(Object.keys(spec.paths)).toEqual(
        expect.arrayContaining(['/v1/jobs', '/v1/jobs/{id}', '/v1/dlq', '/v1/queue/process']),
      );
    });

    it('enqueues, lists, gets, cancels, retries, processes and replays from the DLQ', async () => {
      const created = await app.inject({
        method: 'POST',
        url: '/v1/jobs',
        headers: { ...auth(), traceparent: `00-${TRACE_ID}-00f067aa0ba902b7-01` },
        payload: { type: 'ok', payload: { n: 1 }, idempotencyKey: 'order-1', priority: 5 },
      });
      expect(created.statusCode).toBe(201);
      const job = created.json().job as { id: string; traceId: string; createdAt: string };
      expect(created.json().deduplicated).toBe(false);
      expect(job.traceId).toBe(TRACE_ID);
      expect(new Date(job.createdAt).toISOString()).toBe(job.createdAt);

      const again = await post('/v1/jobs', {
        type: 'ok',
        payload: { n: 1 },
        idempotencyKey: 'order-1',
        priority: 5,
      });
      expect(again.statusCode).toBe(200);
      expect(again.json()).toMatchObject({ deduplicated: true, job: { id: job.id } });

      const got = await get(`/v1/jobs/${job.id}`);
      expect(got.statusCode).toBe(200);
      expect(got.json().job).toMatchObject({ id: job.id, status: 'pending', payload: { n: 1 } });

      const listed = await get('/v1/jobs?status=pending,processing&type=ok&limit=10');
      expect(listed.statusCode).toBe(200);
      expect(listed.json().items.map((j: { id: string }) => j.id)).toContain(job.id);

      const canceled = await post(`/v1/jobs/${job.id}/cancel`);
      expect(canceled.statusCode).toBe(200);
      expect(canceled.json().job.status).toBe('canceled');
      const retried = await post(`/v1/jobs/${job.id}/retry`, undefined, {
        ...auth(),
        'content-type': 'application/json',
      });
      expect(retried.statusCode).toBe(200);
      expect(retried.json().job.status).toBe('pending');

      const batch = await post('/v1/jobs/batch', {
        jobs: [
          { type: 'ok', payload: { n: 2 } },
          { type: 'doomed', payload: {}, delayMs: 0 },
        ],
      });
      expect(batch.statusCode).toBe(201);
      const doomedId = batch.json().results[1].job.id as string;

      const processed = await post('/v1/queue/process', { max: 10, mode: 'strict' });
      expect(processed.statusCode).toBe(200);
      expect(processed.json()).toMatchObject({ processed: 3, succeeded: 2, dead: 1 });
      const done = (await get(`/v1/jobs/${job.id}`)).json().job;
      expect(done).toMatchObject({ status: 'succeeded', result: { done: true } });
      expect(typeof done.finishedAt).toBe('string');

      const idle = await post('/v1/queue/process');
      expect(idle.statusCode).toBe(200);
      expect(idle.json()).toMatchObject({ processed: 0 });

      const dlq = await get('/v1/dlq?limit=10');
      expect(dlq.statusCode).toBe(200);
      const item = dlq.json().items.find((i: { jobId: string }) => i.jobId === doomedId);
      expect(item).toMatchObject({ type: 'doomed', lastError: { permanent: true } });
      const replayed = await post(`/v1/dlq/${doomedId}/replay`);
      expect(replayed.statusCode).toBe(200);
      expect(replayed.json().job.status).toBe('pending');
      // Not dead any more: purging it is a conflict, and changes nothing.
      const purgeLive = await post(`/v1/dlq/${doomedId}/purge`);
      expect(purgeLive.statusCode).toBe(409);
      expect(purgeLive.json().error.code).toBe('JOB_NOT_IN_DLQ');
      const deadAgain = await post('/v1/queue/process', { max: 10, type: 'doomed' });
      expect(deadAgain.json()).toMatchObject({ dead: 1 });
      const purged = await post(`/v1/dlq/${doomedId}/purge`);
      expect(purged.statusCode).toBe(200);
      const afterPurge = (await get('/v1/dlq?limit=10')).json().items;
      expect(afterPurge.find((i: { jobId: string }) => i.jobId === doomedId)).toBeUndefined();

      const db = await docket.internals.systemDb();
      const audit = await db
        .selectFrom('audit_events')
        .select(['action', 'actor_type', 'actor_id'])
        .where('resource_id', 'in', [job.id, doomedId])
        .where('action', 'in', ['job.canceled', 'job.retried', 'job.dlq_replayed'])
        .execute();
      expect(audit.map((a) => a.action).sort()).toEqual([
        'job.canceled',
        'job.dlq_replayed',
        'job.retried',
      ]);
      expect(audit.every((a) => a.actor_type === 'api_key' && a.actor_id === keyId)).toBe(true);
    });

    it('operator endpoints create tenants and keys with the operator secret only', async () => {
      const op = { authorization: `Bearer ${OPERATOR_SECRET}` };
      const denied = await post('/v1/tenants', { id: 'initech' });
      expect(denied.statusCode).toBe(401);
      const t = await post('/v1/tenants', { id: 'initech' }, op);
      expect(t.statusCode).toBe(201);
      expect((await post('/v1/tenants', { id: 'initech' }, op)).statusCode).toBe(200);
      const k = await post('/v1/tenants/initech/keys', undefined, op);
      expect(k.statusCode).toBe(201);
      const newKey = k.json().key as string;
      const enq = await post('/v1/jobs', { type: 'ok' }, auth(newKey));
      expect(enq.json().job.tenantId).toBe('initech');
      expect((await post('/v1/tenants/nobody/keys', {}, op)).statusCode).toBe(404);
    });

    describe('every bad input is a 4xx with a stable code and changes nothing', () => {
      let deadJobOfGlobex: string;
      let pendingJob: string;

      beforeAll(async () => {
        pendingJob = (await post('/v1/jobs', { type: 'ok', delayMs: 3_600_000 })).json().job.id;
        deadJobOfGlobex = (await post('/v1/jobs', { type: 'doomed' }, auth(otherKey))).json().job
          .id;
        await post('/v1/queue/process', { type: 'doomed', max: 5 }, auth(otherKey));
      });

      const bad: Array<
        [string, () => Promise<{ statusCode: number; json(): unknown }>, number, string]
      > = [
        [
          'unknown job type',
          () => post('/v1/jobs', { type: 'nope', payload: {} }),
          400,
          'UNKNOWN_JOB_TYPE',
        ],
        [
          'payload over the limit',
          () => post('/v1/jobs', { type: 'ok', payload: { s: 'x'.repeat(PAYLOAD_LIMIT) } }),
          413,
          'PAYLOAD_TOO_LARGE',
        ],
        [
          'body far over the limit',
          () => post('/v1/jobs', { type: 'ok', payload: { s: 'x'.repeat(200_000) } }),
          413,
          'PAYLOAD_TOO_LARGE',
        ],
        [
          'malformed JSON',
          () =>
            app.inject({
              method: 'POST',
              url: '/v1/jobs',
              headers: { ...auth(), 'content-type': 'application/json' },
              payload: '{"type": "ok", ',
            }),
          400,
          'INVALID_JSON',
        ],
        [
          'priority as a word',
          () => post('/v1/jobs', { type: 'ok', priority: 'high' }),
          400,
          'VALIDATION_FAILED',
        ],
        [
          'fractional priority',
          () => post('/v1/jobs', { type: 'ok', priority: 1.5 }),
          400,
          'VALIDATION_FAILED',
        ],
        [
          'priority out of range',
          () => post('/v1/jobs', { type: 'ok', priority: 2e6 }),
          400,
          'VALIDATION_FAILED',
        ],
        [
          'runAt not a date',
          () => post('/v1/jobs', { type: 'ok', runAt: 'tomorrow' }),
          400,
          'VALIDATION_FAILED',
        ],
        [
          'runAt an impossible date',
          () => post('/v1/jobs', { type: 'ok', runAt: '2026-13-45T00:00:00Z' }),
          400,
          'VALIDATION_FAILED',
        ],
        [
          'unknown field',
          () => post('/v1/jobs', { type: 'ok', colour: 'red' }),
          400,
          'VALIDATION_FAILED',
        ],
        ['missing type', () => post('/v1/jobs', { payload: {} }), 400, 'VALIDATION_FAILED'],
        [
          'invalid http payload',
          () => post('/v1/jobs', { type: 'http', payload: { url: 'ftp://x' } }),
          400,
          'VALIDATION_FAILED',
        ],
        [
          'http job aimed at the cloud metadata address',
          () =>
            post('/v1/jobs', { type: 'http', payload: { url: 'http://169.254.169.254/latest/' } }),
          400,
          'WEBHOOK_URL_REFUSED',
        ],
        [
          'http job aimed at loopback in decimal',
          () => post('/v1/jobs', { type: 'http', payload: { url: 'http://2130706433:6379/' } }),
          400,
          'WEBHOOK_URL_REFUSED',
        ],
        [
          'idempotency key reused with another payload',
          () => post('/v1/jobs', { type: 'ok', payload: { n: 99 }, idempotencyKey: 'order-1' }),
          409,
          'IDEMPOTENCY_CONFLICT',
        ],
        [
          'batch with one bad item',
          () => post('/v1/jobs/batch', { jobs: [{ type: 'ok' }, { type: 'nope' }] }),
          400,
          'UNKNOWN_JOB_TYPE',
        ],
        [
          'batch with an idempotency conflict',
          () =>
            post('/v1/jobs/batch', {
              jobs: [{ type: 'ok' }, { type: 'ok', payload: { n: 99 }, idempotencyKey: 'order-1' }],
            }),
          409,
          'IDEMPOTENCY_CONFLICT',
        ],
        ['empty batch', () => post('/v1/jobs/batch', { jobs: [] }), 400, 'VALIDATION_FAILED'],
        [
          'text body',
          () =>
            app.inject({
              method: 'POST',
              url: '/v1/jobs',
              headers: { ...auth(), 'content-type': 'text/plain' },
              payload: 'type=ok',
            }),
          400,
          'VALIDATION_FAILED',
        ],
        ['missing key', () => post('/v1/jobs', { type: 'ok' }, {}), 401, 'UNAUTHORIZED'],
        [
          'wrong secret for a real key id',
          () => post('/v1/jobs', { type: 'ok' }, auth(`dk_${keyId}_${'A'.repeat(32)}`)),
          401,
          'UNAUTHORIZED',
        ],
        ['garbage key', () => get('/v1/jobs', auth('hunter2')), 401, 'UNAUTHORIZED'],
        ['Basic auth', () => get('/v1/jobs', { authorization: 'Basic YTpi' }), 401, 'UNAUTHORIZED'],
        ["another tenant's job", () => get(`/v1/jobs/${deadJobOfGlobex}`), 404, 'JOB_NOT_FOUND'],
        [
          "canceling another tenant's job",
          () => post(`/v1/jobs/${deadJobOfGlobex}/cancel`),
          404,
          'JOB_NOT_FOUND',
        ],
        [
          "replaying another tenant's dead job",
          () => post(`/v1/dlq/${deadJobOfGlobex}/replay`),
          404,
          'JOB_NOT_FOUND',
        ],
        ['an invalid job id', () => get('/v1/jobs/not-a-uuid'), 404, 'JOB_NOT_FOUND'],
        [
          'retrying a pending job',
          () => post(`/v1/jobs/${pendingJob}/retry`),
          409,
          'JOB_NOT_RETRYABLE',
        ],
        [
          'replaying a job that is not dead',
          () => post(`/v1/dlq/${pendingJob}/replay`),
          409,
          'JOB_NOT_IN_DLQ',
        ],
        ['bad status filter', () => get('/v1/jobs?status=pending,weird'), 400, 'VALIDATION_FAILED'],
        ['limit out of range', () => get('/v1/jobs?limit=1000'), 400, 'VALIDATION_FAILED'],
        ['forged cursor', () => get('/v1/dlq?cursor=bm90LWEtY3Vyc29y'), 400, 'INVALID_CURSOR'],
        [
          'process max over 50',
          () => post('/v1/queue/process', { max: 51 }),
          400,
          'VALIDATION_FAILED',
        ],
        [
          'process bad mode',
          () => post('/v1/queue/process', { mode: 'fast' }),
          400,
          'VALIDATION_FAILED',
        ],
        [
          'process unknown type',
          () => post('/v1/queue/process', { type: 'nope' }),
          400,
          'UNKNOWN_JOB_TYPE',
        ],
        ['unknown route', () => get('/v1/nothing-here'), 404, 'ROUTE_NOT_FOUND'],
        [
          'operator route without the secret',
          () => get('/v1/tenants', auth()),
          401,
          'UNAUTHORIZED',
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
          expect(typeof body.error.details).toBe('object');
          expect(await counts()).toEqual(before);
        });
      }

      it('the payload limit is exact: at the limit is accepted, one byte over is 413', async () => {
        // {"s":"…"} is 8 bytes of envelope around the string.
        const over = await post('/v1/jobs', {
          type: 'ok',
          payload: { s: 'x'.repeat(PAYLOAD_LIMIT - 7) },
        });
        expect(over.statusCode).toBe(413);
        expect((over.json() as ErrorReply).error.details).toMatchObject({
          size: PAYLOAD_LIMIT + 1,
          limit: PAYLOAD_LIMIT,
        });
        const at = await post('/v1/jobs', {
          type: 'ok',
          payload: { s: 'x'.repeat(PAYLOAD_LIMIT - 8) },
        });
        expect(at.statusCode).toBe(201);
      });

      it('a revoked key is refused', async () => {
        const { key: doomedKey, id } = await createApiKey(docket, { tenant: 'acme' });
        expect((await get('/v1/jobs', auth(doomedKey))).statusCode).toBe(200);
        await revokeApiKey(docket, id);
        const res = await get('/v1/jobs', auth(doomedKey));
        expect(res.statusCode).toBe(401);
        expect((res.json() as ErrorReply).error.code).toBe('UNAUTHORIZED');
      });
    });
  });
}

describe('HTTP API with its store down', () => {
  it('answers /readyz with 503 and a reason while /healthz stays 200', async () => {
    // Nothing listens on port 1: the store cannot be reached.
    const docket = createDocket({
      store: { dialect: 'postgres', url: 'postgres://postgres@127.0.0.1:1/docket' },
      reapIntervalMs: 0,
      pruneIntervalMs: 0,
    });
    const app = buildHttpApp({ docket, logger: silentLogger() });
    try {
      expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
      const ready = await app.inject({ url: '/readyz' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json()).toMatchObject({ status: 'unavailable', reason: expect.any(String) });
    } finally {
      await app.close();
      await docket.close().catch(() => undefined);
    }
  });
});
