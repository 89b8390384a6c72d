// Proposals over HTTP on every store (SPEC S-7, H-4): POST /v1/proposals, GET list and one,
// POST /:id/apply with an Idempotency-Key header or body field (the body is the request),
// POST /:id/reject. Tenant-bound, audited, and every bad input is a 4xx with a stable code
// that changes nothing.
import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocket, type Docket } from '../../src/docket.js';
import { ManualClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import { buildHttpApp, createApiKey, createTenant } from '../../src/http/index.js';
import {
  BACKENDS,
  createBusinessTable,
  createTestStore,
  type TestStore,
} from '../helpers/backends.js';

interface AppDB {
  http_applied: { id: string; tenant_id: string };
}

const HOUR = 3_600_000;

for (const backend of BACKENDS) {
  describe(`proposals HTTP API on ${backend}`, () => {
    let ts: TestStore;
    let docket: Docket;
    let app: FastifyInstance;
    let key: string;
    let otherKey: string;
    const clock = new ManualClock(Date.now());
    const versions = new Map<string, number>();
    let applies = 0;
    let n = 0;

    const auth = (k = key) => ({ authorization: `Bearer ${k}` });
    const post = (url: string, body?: unknown, headers: Record<string, string> = {}, k = key) =>
      app.inject({
        method: 'POST',
        url,
        headers: { ...auth(k), 'content-type': 'application/json', ...headers },
        payload: body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body),
      });
    const get = (url: string, k = key) => app.inject({ method: 'GET', url, headers: auth(k) });
    const create = (target: string, extra: Record<string, unknown> = {}) =>
      post('/v1/proposals', {
        kind: 'order.discount',
        target,
        changes: { discountPercent: 10 },
        expiresAt: new Date(clock.now() + HOUR).toISOString(),
        ...extra,
      });
    const newTarget = () => {
      const t = `order-${++n}`;
      versions.set(t, 1);
      return t;
    };
    const appliedRows = async () => {
      const db = (await docket.internals.systemDb()) as unknown as Kysely<AppDB>;
      return db.selectFrom('http_applied').selectAll().execute();
    };

    beforeAll(async () => {
      ts = await createTestStore(backend);
      docket = createDocket({
        store: ts.store,
        dataDir: ts.dataDir,
        clock,
        reapIntervalMs: 0,
        pruneIntervalMs: 0,
      });
      docket.proposals.register<AppDB>('order.discount', {
        currentVersion: (_tx, p) => versions.get(p.target) ?? null,
        async apply(tx, p, _candidate, ctx) {
          applies++;
          await tx.insertInto('http_applied').values({ id: p.id, tenant_id: p.tenantId }).execute();
          return { applied: p.changes, request: ctx.request };
        },
      });
      await docket.start();
      await createBusinessTable(ts, docket, 'http_applied');
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

    it('creates, gets and lists proposals for the key’s tenant only', async () => {
      const target = newTarget();
      const res = await create(target, {
        candidates: [{ id: 'ten', changes: { discountPercent: 10 } }, { id: 'twenty' }],
      });
      expect(res.statusCode).toBe(201);
      const { proposal } = res.json();
      expect(proposal).toMatchObject({
        tenantId: 'acme',
        kind: 'order.discount',
        target,
        changes: { discountPercent: 10 },
        candidates: [
          { id: 'ten', changes: { discountPercent: 10 } },
          { id: 'twenty', changes: null },
        ],
        baseVersion: 1,
        state: 'open',
        expiresAt: new Date(clock.now() + HOUR).toISOString(),
        decidedAt: null,
      });
      expect(proposal.createdBy).toMatch(/^apikey:/);
      expect((await get(`/v1/proposals/${proposal.id}`)).json().proposal).toEqual(proposal);
      const list = await get(`/v1/proposals?state=open&target=${target}`);
      expect(list.json().items.map((p: { id: string }) => p.id)).toEqual([proposal.id]);
      // Another tenant neither sees nor decides it.
      expect((await get(`/v1/proposals/${proposal.id}`, otherKey)).json().error.code).toBe(
        'PROPOSAL_NOT_FOUND',
      );
      expect((await get('/v1/proposals', otherKey)).json().items).toEqual([]);
      const foreign = await post(
        `/v1/proposals/${proposal.id}/apply`,
        { candidateId: 'ten' },
        { 'idempotency-key': 'x' },
        otherKey,
      );
      expect([foreign.statusCode, foreign.json().error.code]).toEqual([404, 'PROPOSAL_NOT_FOUND']);
    });

    it('applies once; the same key and body replay, another body conflicts, another key is not open', async () => {
      const target = newTarget();
      const { proposal } = (await create(target)).json();
      const before = applies;
      const url = `/v1/proposals/${proposal.id}/apply`;
      const first = await post(url, { confirmed: true }, { 'idempotency-key': 'req-1' });
      expect(first.statusCode).toBe(200);
      expect(first.json()).toMatchObject({
        replayed: false,
        candidateId: null,
        result: { applied: { discountPercent: 10 }, request: { confirmed: true } },
        proposal: { state: 'applied', appliedKey: 'req-1' },
      });
      const again = await post(url, { confirmed: true }, { 'idempotency-key': 'req-1' });
      expect(again.statusCode).toBe(200);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.json()).toMatchObject({ replayed: true, result: first.json().result });
      // The key in the body is the same key.
      const inBody = await post(url, { confirmed: true, idempotencyKey: 'req-1' });
      expect(inBody.json().replayed).toBe(true);
      const conflict = await post(url, { confirmed: false }, { 'idempotency-key': 'req-1' });
      expect([conflict.statusCode, conflict.json().error.code]).toEqual([
        409,
        'IDEMPOTENCY_CONFLICT',
      ]);
      const other = await post(url, { confirmed: true }, { 'idempotency-key': 'req-2' });
      expect([other.statusCode, other.json().error.code]).toEqual([409, 'PROPOSAL_NOT_OPEN']);
      expect(applies - before).toBe(1);
      expect((await appliedRows()).filter((r) => r.id === proposal.id)).toEqual([
        { id: proposal.id, tenant_id: 'acme' },
      ]);
    });

    it('refuses stale and expired proposals with 409 and their codes', async () => {
      const stale = (await create(newTarget())).json().proposal;
      versions.set(stale.target, 2);
      const s = await post(`/v1/proposals/${stale.id}/apply`, {}, { 'idempotency-key': 'k' });
      expect([s.statusCode, s.json().error.code]).toEqual([409, 'PROPOSAL_STALE']);
      expect((await get(`/v1/proposals/${stale.id}`)).json().proposal.state).toBe('stale');

      const soon = (
        await create(newTarget(), { expiresAt: new Date(clock.now() + 1000).toISOString() })
      ).json().proposal;
      clock.advance(1000);
      const e = await post(`/v1/proposals/${soon.id}/apply`, undefined, { 'idempotency-key': 'k' });
      expect([e.statusCode, e.json().error.code]).toEqual([409, 'PROPOSAL_EXPIRED']);
      expect((await get(`/v1/proposals/${soon.id}`)).json().proposal.state).toBe('expired');
    });

    it('rejects an open proposal once, with its reason', async () => {
      const { proposal } = (await create(newTarget())).json();
      const url = `/v1/proposals/${proposal.id}/reject`;
      expect((await post(url, { reason: 'x'.repeat(1001) })).json().error.code).toBe(
        'VALIDATION_FAILED',
      );
      const r = await post(url, { reason: 'too generous' });
      expect(r.statusCode).toBe(200);
      expect(r.json().proposal).toMatchObject({ state: 'rejected', reason: 'too generous' });
      const again = await post(url);
      expect([again.statusCode, again.json().error.code]).toEqual([409, 'PROPOSAL_NOT_OPEN']);
      const apply = await post(
        `/v1/proposals/${proposal.id}/apply`,
        {},
        { 'idempotency-key': 'k' },
      );
      expect(apply.json().error.code).toBe('PROPOSAL_NOT_OPEN');
    });

    it('answers every bad input with a 4xx and a stable code, changing nothing', async () => {
      const target = newTarget();
      const ok = {
        kind: 'order.discount',
        target,
        changes: { discountPercent: 5 },
        expiresAt: new Date(clock.now() + HOUR).toISOString(),
      };
      const cases: Array<[unknown, number, string]> = [
        [{ ...ok, kind: undefined }, 400, 'VALIDATION_FAILED'],
        [{ ...ok, extra: 1 }, 400, 'VALIDATION_FAILED'],
        [{ ...ok, kind: 'order.unknown' }, 400, 'PROPOSAL_KIND_UNKNOWN'],
        [{ ...ok, changes: 'ten percent' }, 400, 'VALIDATION_FAILED'],
        [{ ...ok, expiresAt: 'tomorrow' }, 400, 'VALIDATION_FAILED'],
        [{ ...ok, expiresAt: new Date(clock.now() - 1).toISOString() }, 400, 'VALIDATION_FAILED'],
        [{ ...ok, candidates: [{ id: 'a b' }] }, 400, 'VALIDATION_FAILED'],
        [{ ...ok, baseVersion: 1.5 }, 400, 'VALIDATION_FAILED'],
        [{ ...ok, changes: { blob: 'x'.repeat(270_000) } }, 413, 'PAYLOAD_TOO_LARGE'],
        ['{"kind":', 400, 'INVALID_JSON'],
      ];
      for (const [body, status, code] of cases) {
        const res = await post('/v1/proposals', body);
        expect([res.statusCode, res.json().error.code], JSON.stringify(body).slice(0, 80)).toEqual([
          status,
          code,
        ]);
      }
      expect((await get(`/v1/proposals?target=${target}`)).json().items).toEqual([]);
      expect((await get('/v1/proposals?state=bogus')).statusCode).toBe(400);
      expect((await get('/v1/proposals?cursor=nope')).json().error.code).toBe('INVALID_CURSOR');
      expect((await get('/v1/proposals?limit=0')).statusCode).toBe(400);
      expect((await get('/v1/proposals/not-a-uuid')).statusCode).toBe(404);
      const noAuth = await app.inject({ method: 'GET', url: '/v1/proposals' });
      expect(noAuth.statusCode).toBe(401);

      const { proposal } = (await create(target)).json();
      const url = `/v1/proposals/${proposal.id}/apply`;
      const before = applies;
      const noKey = await post(url, {});
      expect([noKey.statusCode, noKey.json().error.code]).toEqual([400, 'VALIDATION_FAILED']);
      const differ = await post(url, { idempotencyKey: 'a' }, { 'idempotency-key': 'b' });
      expect(differ.json().error).toMatchObject({
        code: 'VALIDATION_FAILED',
        details: { field: 'idempotencyKey' },
      });
      const badCandidate = await post(url, { candidateId: 'ten' }, { 'idempotency-key': 'k' });
      expect([badCandidate.statusCode, badCandidate.json().error.code]).toEqual([
        400,
        'PROPOSAL_NO_CANDIDATE',
      ]);
      const notObject = await post(url, [1, 2], { 'idempotency-key': 'k' });
      expect(notObject.statusCode).toBe(400);
      const unknown = await post(
        '/v1/proposals/0190a0a0-0000-7000-8000-000000000000/apply',
        {},
        { 'idempotency-key': 'k' },
      );
      expect([unknown.statusCode, unknown.json().error.code]).toEqual([404, 'PROPOSAL_NOT_FOUND']);
      expect(applies).toBe(before);
      expect((await get(`/v1/proposals/${proposal.id}`)).json().proposal.state).toBe('open');
      // The key that met only bad input is still unused: it applies now.
      const later = await post(url, {}, { 'idempotency-key': 'k' });
      expect(later.json()).toMatchObject({ replayed: false, proposal: { state: 'applied' } });
    });

    it('audits applies in the proposal’s own events and the API call', async () => {
      const { proposal } = (await create(newTarget())).json();
      await post(`/v1/proposals/${proposal.id}/apply`, {}, { 'idempotency-key': 'audited' });
      await docket.audit.flush();
      const events = await docket.audit.list({ resourceId: proposal.id }, { tenant: 'acme' });
      const actions = events.items.map((e) => e.action).sort();
      expect(actions).toEqual(['http.post', 'http.post', 'proposal.applied', 'proposal.created']);
      const applied = events.items.find((e) => e.action === 'proposal.applied');
      expect(applied?.actor.type).toBe('api_key');
    });

    it('documents the routes in the OpenAPI document', async () => {
      const doc = (await app.inject({ method: 'GET', url: '/v1/openapi.json' })).json();
      expect(Object.keys(doc.paths)).toEqual(
        expect.arrayContaining([
          '/v1/proposals',
          '/v1/proposals/{id}',
          '/v1/proposals/{id}/apply',
          '/v1/proposals/{id}/reject',
        ]),
      );
    });
  });
}
