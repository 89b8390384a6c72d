// The queue's semantics (SPEC Q-1 … Q-13, T-1, T-4, T-5, W-1), written once and run against
// every backend. A backend is correct when this suite passes on it.
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createDocket,
  ManualClock,
  PermanentJobError,
  RetryJobError,
  type Docket,
  type JobContext,
} from '../../src/index.js';
import {
  QUEUE_BACKENDS,
  createBusinessTable,
  createTestStore,
  useDocketSuite,
  waitFor,
  type TestStore,
} from '../helpers/backends.js';

type Jobs = Record<string, unknown>;
let seq = 0;
const unique = (p: string) => `${p}${++seq}${Math.random().toString(36).slice(2, 6)}`;

describe.each(QUEUE_BACKENDS)('job conformance on %s', (backend) => {
  const suite = useDocketSuite<Jobs>(backend);
  const make = suite.make;

  it('enqueues single and batch jobs with delay and priority, and claims by priority then time', async () => {
    const clock = new ManualClock(1_000_000);
    const d = make({ clock });
    const tenant = unique('t');
    const type = unique('prio');
    const ran: string[] = [];
    const handlers = {
      [type]: async ({ payload }: JobContext<unknown>) => ran.push((payload as { n: string }).n),
    };
    await d.enqueue(type, { n: 'late' }, { tenant, delayMs: 5000 });
    await d.enqueueMany(
      [
        { type, payload: { n: 'low' }, options: { priority: 10 } },
        { type, payload: { n: 'high' }, options: { priority: -5 } },
        { type, payload: { n: 'mid' } },
      ],
      { tenant },
    );
    const r1 = await d.processBatch({ max: 10, mode: 'strict', tenant, ...{} });
    expect(r1.processed).toBe(0); // no handlers registered on this instance
    const d2 = make({ clock, handlers });
    await d2.processBatch({ max: 10, mode: 'strict', tenant });
    expect(ran).toEqual(['high', 'mid', 'low']);
    clock.advance(5000);
    await d2.processBatch({ max: 10, mode: 'strict', tenant });
    expect(ran).toEqual(['high', 'mid', 'low', 'late']);
  });

  // SPEC Q-11: claims are round-robin across tenants (docs/jobs.md, "Fairness").
  describe('fair claiming across tenants', () => {
    const claimer = async (d: Docket<Jobs>, type: string) => {
      const be = await d.internals.backend();
      return (limit: number) =>
        be.jobClaimBatch({
          workerId: 'fair',
          limit,
          now: Date.now(),
          leaseMs: 60_000,
          types: [type],
        });
    };

    it('claims another tenant’s single job in the first claim behind one tenant’s flood of 5,000', async () => {
      const d = make();
      const type = unique('flood');
      const [a, b] = [unique('ta'), unique('tb')];
      const flood = await d.enqueueMany(
        Array.from({ length: 5000 }, (_, i) => ({ type, payload: { i } })),
        { tenant: a },
      );
      const { job: single } = await d.enqueue(type, { single: true }, { tenant: b });
      const claim = await claimer(d, type);
      const first = await claim(10);
      // The whole limit is used: B's one job, and A's oldest jobs in A's own order.
      expect(first).toHaveLength(10);
      expect(first.filter((j) => j.tenantId === b).map((j) => j.id)).toEqual([single.id]);
      expect(first.filter((j) => j.tenantId === a).map((j) => j.id)).toEqual(
        flood.slice(0, 9).map((r) => r.job.id),
      );
    });

    it('rotates tenants when there are more than the claim limit: each is served within ceil(tenants / limit) claims', async () => {
      const d = make();
      const type = unique('rotate');
      const tenants = Array.from({ length: 5 }, (_, i) => `${unique('tr')}-${i}`);
      for (const tenant of tenants)
        await d.enqueueMany(
          Array.from({ length: 3 }, (_, i) => ({ type, payload: { i } })),
          { tenant },
        );
      const claim = await claimer(d, type);
      const served = new Set<string>();
      for (let round = 0; round < Math.ceil(tenants.length / 2); round++) {
        const jobs = await claim(2);
        expect(jobs).toHaveLength(2);
        // One job per tenant in a round: no tenant takes two places while others wait.
        expect(new Set(jobs.map((j) => j.tenantId)).size).toBe(2);
        for (const j of jobs) served.add(j.tenantId);
      }
      expect([...served].sort()).toEqual([...tenants].sort());
    });

    it('orders by priority within a tenant, while another tenant’s share is not taken by higher-priority jobs', async () => {
      const d = make();
      const type = unique('fairprio');
      const [a, b] = [unique('ta'), unique('tb')];
      await d.enqueueMany(
        [
          { type, payload: { n: 'a-low' }, options: { priority: 5 } },
          { type, payload: { n: 'a-high-1' }, options: { priority: -10 } },
          { type, payload: { n: 'a-high-2' }, options: { priority: -10 } },
        ],
        { tenant: a },
      );
      await d.enqueue(type, { n: 'b' }, { tenant: b, priority: 10 });
      const claim = await claimer(d, type);
      const names = (jobs: Awaited<ReturnType<typeof claim>>) =>
        jobs.map((j) => (j.payload as { n: string }).n);
      // The claim hands its jobs over in priority order.
      expect(names(await claim(2))).toEqual(['a-high-1', 'b']);
      expect(names(await claim(2))).toEqual(['a-high-2', 'a-low']);
    });
  });

  it('removes a job the moment it succeeds when retention.succeededMs is 0, and only for the lease holder', async () => {
    const clock = new ManualClock(3_000_000);
    const tenant = unique('t');
    const type = unique('remove');
    const d = make({ clock, retention: { succeededMs: 0 }, handlers: { [type]: () => 'done' } });
    const be = await d.internals.backend();
    const { job: ran } = await d.enqueue(type, {}, { tenant });
    const r = await d.processBatch({ max: 1, tenant });
    expect(r.succeeded).toBe(1);
    await expect(d.jobs.get(ran.id, { tenant })).rejects.toMatchObject({ code: 'JOB_NOT_FOUND' });
    // Docket's own maintenance jobs are kept: their row holds the hourly dedupe key.
    const { job: prune } = await d.enqueue('docket.prune', {}, { tenant });
    await d.processBatch({ max: 1, tenant, type: 'docket.prune' });
    expect((await d.jobs.get(prune.id, { tenant })).status).toBe('succeeded');
    // A worker that lost its lease deletes nothing: the new holder's job stays.
    const { job } = await d.enqueue(type, {}, { tenant });
    await be.jobClaimBatch({
      workerId: 'A',
      limit: 1,
      now: clock.now(),
      leaseMs: 1000,
      types: [type],
    });
    clock.advance(1500);
    await d.reapOnce();
    await be.jobClaimBatch({
      workerId: 'B',
      limit: 1,
      now: clock.now(),
      leaseMs: 1000,
      types: [type],
    });
    const item = { id: job.id, tenantId: tenant, resultJson: null };
    const now = clock.now();
    expect(await be.jobCompleteMany({ workerId: 'A', items: [item], now, remove: true })).toEqual(
      [],
    );
    expect((await d.jobs.get(job.id, { tenant })).status).toBe('processing');
    expect(await be.jobCompleteMany({ workerId: 'B', items: [item], now, remove: true })).toEqual([
      job.id,
    ]);
    await expect(d.jobs.get(job.id, { tenant })).rejects.toMatchObject({ code: 'JOB_NOT_FOUND' });
  });

  it('holds a rate-limited type to its allowance per window, shared by instances and per tenant when scoped', async () => {
    const clock = new ManualClock(60_000 * 1000);
    const type = unique('limited');
    const perTenant = unique('limitedt');
    const ran: string[] = [];
    const handlers = {
      [type]: () => void ran.push(type),
      [perTenant]: () => void ran.push(perTenant),
    };
    const jobTypes = {
      [type]: { rateLimit: { max: 3, perMs: 60_000 } },
      [perTenant]: { rateLimit: { max: 2, perMs: 60_000, scope: 'tenant' as const } },
    };
    const a = make({ clock, handlers, jobTypes });
    const b = make({ clock, handlers, jobTypes });
    const tenant = unique('t');
    await a.enqueueMany(
      Array.from({ length: 10 }, () => ({ type, payload: {} })),
      { tenant },
    );
    // Two instances (as two processes would) share one allowance.
    await a.processBatch({ max: 2, tenant, type });
    await b.processBatch({ max: 10, tenant, type });
    expect(ran.filter((t) => t === type)).toHaveLength(3);
    const waiting = (await a.jobs.list({ type, status: ['pending'] }, { tenant })).items;
    expect(waiting).toHaveLength(7);
    // Deferred to the next window without counting an attempt.
    for (const j of waiting) expect(j).toMatchObject({ attempts: 0, availableAt: 60_000 * 1001 });
    clock.advance(60_000);
    await b.processBatch({ max: 10, tenant, type });
    expect(ran.filter((t) => t === type)).toHaveLength(6);
    // scope 'tenant': each tenant its own allowance.
    const t2 = unique('t');
    for (const t of [tenant, t2]) {
      await a.enqueueMany(
        Array.from({ length: 4 }, () => ({ type: perTenant, payload: {} })),
        { tenant: t },
      );
    }
    await a.processBatch({ max: 10, tenant, type: perTenant });
    await a.processBatch({ max: 10, tenant: t2, type: perTenant });
    expect(ran.filter((t) => t === perTenant)).toHaveLength(4);
    expect(() => make({ jobTypes: { x: { rateLimit: { max: 0, perMs: 1000 } } } })).toThrow(
      /rateLimit/,
    );
  });

  it('has a worker stop claiming a rate-limited type whose window is spent, and resume in the next', async () => {
    const clock = new ManualClock(60_000 * 2000);
    const type = unique('wlimited');
    let ran = 0;
    const d = make({
      clock,
      handlers: { [type]: () => void ran++ },
      jobTypes: { [type]: { rateLimit: { max: 2, perMs: 60_000 } } },
    });
    const tenant = unique('t');
    await d.enqueueMany(
      Array.from({ length: 6 }, () => ({ type, payload: {} })),
      { tenant },
    );
    const w = d.createWorker({ concurrency: 2, pollIntervalMs: 20 });
    await w.start();
    await waitFor(() => ran === 2, { what: 'the first window' });
    await new Promise((r) => setTimeout(r, 300));
    expect(ran).toBe(2);
    const waiting = (await d.jobs.list({ type, status: ['pending'] }, { tenant })).items;
    expect(waiting.map((j) => j.attempts)).toEqual([0, 0, 0, 0]);
    clock.advance(60_000);
    await waitFor(() => ran === 4, { what: 'the next window' });
    await w.stop();
  });

  it('fails with TENANT_REQUIRED when no tenant context exists', async () => {
    const d = make();
    await expect(d.enqueue('x', {})).rejects.toMatchObject({ code: 'TENANT_REQUIRED' });
    await expect(d.jobs.list()).rejects.toMatchObject({ code: 'TENANT_REQUIRED' });
    const tenant = unique('t');
    const r = await d.withTenant(tenant, () => d.enqueue('x', {}));
    expect(r.job.tenantId).toBe(tenant);
  });

  it('returns the existing job for a repeated idempotency key and rejects a different payload', async () => {
    const d = make();
    const tenant = unique('t');
    const a = await d.enqueue('mail', { to: 'a', n: 1 }, { tenant, idempotencyKey: 'k' });
    const b = await d.enqueue('mail', { n: 1, to: 'a' }, { tenant, idempotencyKey: 'k' });
    expect(b.deduplicated).toBe(true);
    expect(b.job.id).toBe(a.job.id);
    await expect(
      d.enqueue('mail', { to: 'b' }, { tenant, idempotencyKey: 'k' }),
    ).rejects.toMatchObject({
      code: 'IDEMPOTENCY_CONFLICT',
    });
    // Keys are tenant-scoped: the same key in another tenant is another job.
    const other = await d.enqueue(
      'mail',
      { to: 'a', n: 1 },
      { tenant: unique('t'), idempotencyKey: 'k' },
    );
    expect(other.deduplicated).toBe(false);
    expect(other.job.id).not.toBe(a.job.id);
  });

  it('creates exactly one job under concurrent enqueues of the same key', async () => {
    const ds = [make(), make(), make()];
    const tenant = unique('t');
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        (ds[i % 3] as Docket<Jobs>).enqueue('once', { v: 1 }, { tenant, idempotencyKey: 'same' }),
      ),
    );
    expect(new Set(results.map((r) => r.job.id)).size).toBe(1);
    expect(results.filter((r) => !r.deduplicated)).toHaveLength(1);
    const page = await ds[0]!.jobs.list({}, { tenant });
    expect(page.items).toHaveLength(1);
  });

  it('commits or rolls back an enqueueTx together with the caller’s own rows', async () => {
    const d = make();
    const tenant = unique('t');
    const table = unique('orders_');
    await createBusinessTable(suite.ts, d, table);
    await d.withTransaction(tenant, async (tx) => {
      await sql`insert into ${sql.table(table)} (id, tenant_id) values (${'o1'}, ${tenant})`.execute(
        tx,
      );
      await d.enqueueTx(tx, 'ship', { order: 'o1' });
    });
    await expect(
      d.withTransaction(tenant, async (tx) => {
        await sql`insert into ${sql.table(table)} (id, tenant_id) values (${'o2'}, ${tenant})`.execute(
          tx,
        );
        await d.enqueueTx(tx, 'ship', { order: 'o2' });
        throw new Error('business rule failed');
      }),
    ).rejects.toThrow('business rule failed');
    const jobs = await d.jobs.list({}, { tenant });
    expect(jobs.items.map((j) => j.payload)).toEqual([{ order: 'o1' }]);
    const rows = await sql<{ id: string }>`select id from ${sql.table(table)}`.execute(
      await d.internals.systemDb(),
    );
    expect(rows.rows.map((r) => r.id)).toEqual(['o1']);
    await expect(d.enqueueTx({} as never, 'ship', {})).rejects.toMatchObject({
      code: 'TX_INVALID',
    });
  });

  it('stores the trace id on the job and hands it to the handler', async () => {
    const type = unique('trace');
    let seen: { traceId?: string; tenant?: string } = {};
    const d = make({
      handlers: {
        [type]: async (ctx: JobContext<unknown>) => {
          seen = { traceId: ctx.traceId, tenant: ctx.tenant };
        },
      },
    });
    const tenant = unique('t');
    const traceId = 'ab'.repeat(16);
    const r = await d.withTenant(tenant, () => d.enqueue(type, {}), { traceId });
    expect(r.job.traceId).toBe(traceId);
    await d.processBatch({ max: 1, tenant });
    expect(seen).toEqual({ traceId, tenant });
  });

  it('keeps tenants invisible to each other', async () => {
    const d = make();
    const a = unique('a');
    const b = unique('b');
    const job = (await d.enqueue('secret', { x: 1 }, { tenant: a })).job;
    await expect(d.jobs.get(job.id, { tenant: b })).rejects.toMatchObject({
      code: 'JOB_NOT_FOUND',
    });
    await expect(d.jobs.cancel(job.id, { tenant: b })).rejects.toMatchObject({
      code: 'JOB_NOT_FOUND',
    });
    await expect(d.jobs.retry(job.id, { tenant: b })).rejects.toMatchObject({
      code: 'JOB_NOT_FOUND',
    });
    expect((await d.jobs.list({}, { tenant: b })).items).toHaveLength(0);
    expect((await d.jobs.get(job.id, { tenant: a })).status).toBe('pending');
  });

  it('lets a worker whose lease was taken over not complete the job', async () => {
    const clock = new ManualClock(2_000_000);
    const d = make({ clock });
    const be = await d.internals.backend();
    const tenant = unique('t');
    const type = unique('lease');
    const { job } = await d.enqueue(type, {}, { tenant });
    const [a] = await be.jobClaimBatch({
      workerId: 'A',
      limit: 1,
      now: clock.now(),
      leaseMs: 1000,
      types: [type],
    });
    expect(a?.id).toBe(job.id);
    clock.advance(1500);
    const reaped = await d.reapOnce();
    expect(reaped.requeued).toBeGreaterThanOrEqual(1);
    const [b] = await be.jobClaimBatch({
      workerId: 'B',
      limit: 1,
      now: clock.now(),
      leaseMs: 1000,
      types: [type],
    });
    expect(b?.id).toBe(job.id);
    expect(b?.attempts).toBe(2);
    expect(
      await be.jobCompleteMany({
        workerId: 'A',
        items: [{ id: job.id, tenantId: tenant, resultJson: '"a"' }],
        now: clock.now(),
      }),
    ).toEqual([]);
    expect(
      await be.jobRetry({
        id: job.id,
        tenantId: tenant,
        workerId: 'A',
        now: clock.now(),
        availableAt: clock.now(),
        error: { name: 'E', message: 'x', attempt: 1, at: 0 },
      }),
    ).toBe(false);
    expect(
      await be.jobCompleteMany({
        workerId: 'B',
        items: [{ id: job.id, tenantId: tenant, resultJson: '"b"' }],
        now: clock.now(),
      }),
    ).toEqual([job.id]);
    const final = await d.jobs.get(job.id, { tenant });
    expect(final).toMatchObject({ status: 'succeeded', result: 'b', lockedBy: null });
  });

  it('retries on a capped exponential backoff with jitter', async () => {
    const clock = new ManualClock(3_000_000);
    const type = unique('flaky');
    const d = make({
      clock,
      random: () => 0.5,
      jobs: { retry: { baseMs: 1000, capMs: 4000, maxAttempts: 5 } },
      handlers: {
        [type]: async () => {
          throw new Error('temporary');
        },
      },
    });
    const tenant = unique('t');
    const { job } = await d.enqueue(type, {}, { tenant });
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) {
      const before = clock.now();
      await d.processBatch({ max: 1, tenant });
      const j = await d.jobs.get(job.id, { tenant });
      expect(j.status).toBe('pending');
      expect(j.lastError).toMatchObject({ message: 'temporary', attempt: i + 1 });
      delays.push(j.availableAt - before);
      clock.set(j.availableAt);
    }
    // d = min(cap, base * 2^(n-1)); delay = d/2 + random * d/2 with random = 0.5.
    expect(delays).toEqual([750, 1500, 3000, 3000]);
    await d.processBatch({ max: 1, tenant });
    expect((await d.jobs.get(job.id, { tenant })).status).toBe('failed');
  });

  it('sends a permanent error straight to the DLQ with its audit row, and replays it', async () => {
    const type = unique('perm');
    const d = make({
      handlers: {
        [type]: async () => {
          throw new PermanentJobError('bad input');
        },
      },
    });
    const tenant = unique('t');
    const { job } = await d.enqueue(type, {}, { tenant, maxAttempts: 5 });
    const r = await d.processBatch({ max: 1, tenant });
    expect(r.dead).toBe(1);
    const dead = await d.jobs.get(job.id, { tenant });
    expect(dead).toMatchObject({ status: 'failed', attempts: 1, lastError: { permanent: true } });
    const dlq = await d.dlq.list({ tenant });
    expect(dlq.items.map((i) => i.jobId)).toEqual([job.id]);
    expect(await auditActions(d, job.id)).toEqual(['job.dead_lettered']);
    await expect(d.dlq.replay(unique('x'), { tenant })).rejects.toMatchObject({
      code: 'JOB_NOT_FOUND',
    });
    const replayed = await d.dlq.replay(job.id, { tenant, actor: 'ops' });
    expect(replayed).toMatchObject({ status: 'pending', attempts: 0 });
    expect((await d.dlq.list({ tenant })).items).toHaveLength(0);
    expect(await auditActions(d, job.id)).toEqual(['job.dead_lettered', 'job.dlq_replayed']);
    await expect(d.dlq.replay(job.id, { tenant })).rejects.toMatchObject({
      code: 'JOB_NOT_IN_DLQ',
    });
  });

  it('dead-letters a job that used up its attempts', async () => {
    const type = unique('always');
    const d = make({
      jobs: { retry: { baseMs: 1, capMs: 1 } },
      handlers: {
        [type]: async () => {
          throw new Error('nope');
        },
      },
    });
    const tenant = unique('t');
    const { job } = await d.enqueue(type, {}, { tenant, maxAttempts: 2 });
    await d.processBatch({ max: 1, tenant });
    await waitFor(async () => (await d.processBatch({ max: 1, tenant })).processed === 1);
    expect(await d.jobs.get(job.id, { tenant })).toMatchObject({ status: 'failed', attempts: 2 });
    expect((await d.dlq.list({ tenant })).items[0]).toMatchObject({ jobId: job.id, attempts: 2 });
  });

  it('aborts at the timeout and, after the grace period, records a timeout and frees the slot', async () => {
    const ignoring = unique('ignores');
    const polite = unique('polite');
    let sawAbort = false;
    const d = make({
      jobs: { graceMs: 100 },
      handlers: {
        [ignoring]: () => new Promise(() => undefined),
        [polite]: ({ signal }: JobContext<unknown>) =>
          new Promise((_, reject) =>
            signal.addEventListener('abort', () => {
              sawAbort = true;
              reject(signal.reason as Error);
            }),
          ),
      },
    });
    const tenant = unique('t');
    const startedAt = Date.now();
    const a = await d.enqueue(ignoring, {}, { tenant, timeoutMs: 100 });
    const b = await d.enqueue(polite, {}, { tenant, timeoutMs: 100 });
    const worker = d.createWorker({ concurrency: 2 });
    await worker.start();
    for (const id of [a.job.id, b.job.id]) {
      const j = await waitFor(async () => {
        const job = await d.jobs.get(id, { tenant });
        return job.lastError ? job : null;
      });
      expect(j.lastError).toMatchObject({ name: 'JOB_TIMEOUT' });
      expect(['pending', 'processing']).toContain(j.status);
    }
    expect(sawAbort).toBe(true);
    // The ignoring handler is only given up on after timeout + grace.
    const ignored = await d.jobs.get(a.job.id, { tenant });
    expect((ignored.lastError?.at ?? 0) - startedAt).toBeGreaterThanOrEqual(200);
    await waitFor(() => worker.running < 2, { what: 'slots freed' });
    await worker.stop({ deadlineMs: 10 });
  });

  it('cancels pending jobs, refuses finished ones, and aborts a running handler', async () => {
    const type = unique('long');
    let aborted = false;
    const d = make({
      jobs: { leaseMs: 300 },
      jobTypes: { other: {} },
      handlers: {
        [type]: ({ signal }: JobContext<unknown>) =>
          new Promise((resolve) =>
            signal.addEventListener('abort', () => ((aborted = true), resolve('x'))),
          ),
      },
    });
    const tenant = unique('t');
    const pending = (await d.enqueue('other', {}, { tenant })).job;
    expect((await d.jobs.cancel(pending.id, { tenant })).status).toBe('canceled');
    expect((await d.jobs.cancel(pending.id, { tenant })).status).toBe('canceled');
    const running = (await d.enqueue(type, {}, { tenant })).job;
    const worker = d.createWorker({ concurrency: 1, leaseMs: 300 });
    await worker.start();
    await waitFor(async () => (await d.jobs.get(running.id, { tenant })).status === 'processing');
    await d.jobs.cancel(running.id, { tenant });
    await waitFor(() => aborted, { what: 'handler abort after cancel' });
    await worker.stop();
    expect((await d.jobs.get(running.id, { tenant })).status).toBe('canceled');
    const retried = await d.jobs.retry(running.id, { tenant });
    expect(retried.status).toBe('pending');
    await d.jobs.cancel(retried.id, { tenant });
    expect(await auditActions(d, running.id)).toEqual([
      'job.canceled',
      'job.retried',
      'job.canceled',
    ]);
    const done = (await d.enqueue('other', {}, { tenant })).job;
    const be = await d.internals.backend();
    await be.jobClaimBatch({
      workerId: 'w',
      limit: 5,
      now: Date.now(),
      leaseMs: 1000,
      types: ['other'],
      tenant,
    });
    await be.jobCompleteMany({
      workerId: 'w',
      items: [{ id: done.id, tenantId: tenant, resultJson: null }],
      now: Date.now(),
    });
    await expect(d.jobs.cancel(done.id, { tenant })).rejects.toMatchObject({
      code: 'JOB_NOT_CANCELABLE',
    });
    await expect(d.jobs.retry(done.id, { tenant })).rejects.toMatchObject({
      code: 'JOB_NOT_RETRYABLE',
    });
  });

  it('processes balanced lanes in order with per-lane caps, and strict mode by priority', async () => {
    const tenant = unique('t');
    const ran: string[] = [];
    const rec = (name: string) => async () => void ran.push(name);
    const d = make({
      handlers: { 'docket.tidy': rec('maint'), email: rec('email'), report: rec('report') },
    });
    await d.enqueueMany(
      [
        ...Array.from({ length: 20 }, () => ({
          type: 'email',
          payload: {},
          options: { priority: -10 },
        })),
        ...Array.from({ length: 20 }, () => ({ type: 'report', payload: {} })),
        ...Array.from({ length: 2 }, () => ({ type: 'docket.tidy', payload: {} })),
      ],
      { tenant },
    );
    const r = await d.processBatch({ max: 15, tenant });
    expect(r.byLane).toEqual({ maintenance: 2, email: 10, default: 3 });
    expect(ran.slice(0, 2)).toEqual(['maint', 'maint']);
    const s = await d.processBatch({ max: 5, tenant, mode: 'strict' });
    expect(s.processed).toBe(5);
    expect(ran.slice(15)).toEqual(['email', 'email', 'email', 'email', 'email']);
    await expect(d.processBatch({ max: 51 })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(d.processBatch({ type: 'nope' })).rejects.toMatchObject({
      code: 'UNKNOWN_JOB_TYPE',
    });
  });

  it('prunes finished jobs past retention but keeps dead jobs still in the DLQ', async () => {
    const clock = new ManualClock(10_000_000_000);
    const type = unique('prune');
    const dead = unique('dead');
    const d = make({
      clock,
      retention: { succeededMs: 1000, failedMs: 1000 },
      handlers: {
        [type]: async () => 'ok',
        [dead]: async () => {
          throw new PermanentJobError('x');
        },
      },
    });
    const tenant = unique('t');
    const ok = (await d.enqueue(type, {}, { tenant })).job;
    const gone = (await d.enqueue(dead, {}, { tenant })).job;
    await d.processBatch({ max: 5, tenant });
    clock.advance(5000);
    expect(await d.pruneOnce()).toBeGreaterThanOrEqual(1);
    await expect(d.jobs.get(ok.id, { tenant })).rejects.toMatchObject({ code: 'JOB_NOT_FOUND' });
    expect((await d.jobs.get(gone.id, { tenant })).status).toBe('failed');
  });

  it('shuts a worker down gracefully: running jobs finish, unstarted ones are released', async () => {
    const type = unique('slow');
    // Without the built-ins: their `email` handler would claim the email jobs an earlier test
    // of this file left pending in the shared store, instead of this test's jobs.
    const d = make({
      builtins: false,
      handlers: { [type]: () => new Promise((r) => setTimeout(() => r('done'), 200)) },
    });
    const tenant = unique('t');
    await d.enqueueMany(
      Array.from({ length: 6 }, () => ({ type, payload: {} })),
      { tenant },
    );
    const worker = d.createWorker({ concurrency: 2, prefetch: 2 });
    await worker.start();
    await waitFor(() => worker.running === 2);
    await worker.stop({ deadlineMs: 5000 });
    const counts = await d.jobs.counts({ tenant });
    expect(counts.processing ?? 0).toBe(0);
    expect(counts.succeeded).toBeGreaterThanOrEqual(2);
    expect((counts.succeeded ?? 0) + (counts.pending ?? 0)).toBe(6);
    const pending = await d.jobs.list({ status: ['pending'] }, { tenant });
    for (const j of pending.items) expect(j.attempts).toBe(0);
  });

  it('has the store itself refuse a status change outside the state machine', async () => {
    const d = make();
    const tenant = unique('t');
    const { job } = await d.enqueue('guarded', {}, { tenant });
    const db = await d.internals.systemDb();
    await db
      .updateTable('jobs')
      .set({ status: 'canceled', finished_at: 1 })
      .where('id', '=', job.id)
      .execute();
    // canceled → succeeded is not a transition of Q-2.
    await expect(
      db.updateTable('jobs').set({ status: 'succeeded' }).where('id', '=', job.id).execute(),
    ).rejects.toThrow(/transition|cannot move/);
    // processing without a lock holder violates the lock-consistency check.
    await expect(
      db.updateTable('jobs').set({ status: 'pending' }).where('id', '=', job.id).execute(),
    ).resolves.toBeDefined();
    await expect(
      db.updateTable('jobs').set({ status: 'processing' }).where('id', '=', job.id).execute(),
    ).rejects.toThrow(/check|constraint/i);
    expect((await d.jobs.get(job.id, { tenant })).status).toBe('pending');
  });

  it('rolls back a whole batch when one item repeats a key with another payload', async () => {
    const d = make();
    const tenant = unique('t');
    await d.enqueue('mail', { to: 'a' }, { tenant, idempotencyKey: 'k' });
    await expect(
      d.enqueueMany(
        [
          { type: 'mail', payload: { to: 'fresh' } },
          { type: 'mail', payload: { to: 'other' }, options: { idempotencyKey: 'k' } },
        ],
        { tenant },
      ),
    ).rejects.toMatchObject({ code: 'IDEMPOTENCY_CONFLICT' });
    expect((await d.jobs.list({}, { tenant })).items).toHaveLength(1);
  });

  it('keeps the trace id of the surrounding context inside withTransaction', async () => {
    const d = make();
    const tenant = unique('t');
    const traceId = 'cd'.repeat(16);
    const r = await d.withTenant(
      tenant,
      () => d.withTransaction(tenant, (tx) => d.enqueueTx(tx, 'traced', {})),
      {
        traceId,
      },
    );
    expect(r.job.traceId).toBe(traceId);
    await expect(d.enqueue('traced', {}, { tenant, traceId: 'not-a-trace' })).rejects.toMatchObject(
      {
        code: 'VALIDATION_FAILED',
      },
    );
  });

  it('heartbeats a job run by processBatch so a job longer than its lease is not run twice', async () => {
    const type = unique('longer');
    let runs = 0;
    const d = make({
      jobs: { leaseMs: 300 },
      reapIntervalMs: 50,
      handlers: {
        [type]: async () => {
          runs++;
          await new Promise((r) => setTimeout(r, 1000));
          return 'done';
        },
      },
    });
    await d.start();
    const tenant = unique('t');
    const { job } = await d.enqueue(type, {}, { tenant });
    const r = await d.processBatch({ max: 1, tenant });
    expect(r.succeeded).toBe(1);
    expect(runs).toBe(1);
    expect(await d.jobs.get(job.id, { tenant })).toMatchObject({
      status: 'succeeded',
      attempts: 1,
    });
  });

  it('dead-letters a job whose lease expired with no attempts left', async () => {
    const clock = new ManualClock(4_000_000);
    const d = make({ clock });
    const be = await d.internals.backend();
    const tenant = unique('t');
    const type = unique('expire');
    const { job } = await d.enqueue(type, {}, { tenant, maxAttempts: 1 });
    await be.jobClaimBatch({
      workerId: 'gone',
      limit: 1,
      now: clock.now(),
      leaseMs: 100,
      types: [type],
    });
    clock.advance(200);
    const r = await d.reapOnce();
    expect(r.deadLettered).toBeGreaterThanOrEqual(1);
    expect(await d.jobs.get(job.id, { tenant })).toMatchObject({
      status: 'failed',
      lastError: { name: 'LEASE_EXPIRED' },
    });
    expect((await d.dlq.list({ tenant })).items.map((i) => i.jobId)).toEqual([job.id]);
    // Another tenant sees none of it.
    const other = unique('t');
    expect((await d.dlq.list({ tenant: other })).items).toHaveLength(0);
    await expect(d.dlq.replay(job.id, { tenant: other })).rejects.toMatchObject({
      code: 'JOB_NOT_FOUND',
    });
    expect(await d.jobs.counts({ tenant: other })).toEqual({});
  });

  it('retries at the time a handler asks for with RetryJobError', async () => {
    const clock = new ManualClock(5_000_000);
    const type = unique('later');
    const d = make({
      clock,
      handlers: {
        [type]: async () => {
          throw new RetryJobError('not yet', clock.now() + 60_000);
        },
      },
    });
    const tenant = unique('t');
    const { job } = await d.enqueue(type, {}, { tenant });
    await d.processBatch({ max: 1, tenant });
    expect(await d.jobs.get(job.id, { tenant })).toMatchObject({
      status: 'pending',
      availableAt: 5_060_000,
    });
  });

  it('validates inputs and changes nothing on bad input', async () => {
    const d = make({ jobTypes: { known: {} }, payloadLimitBytes: 1024 });
    const tenant = unique('t');
    await expect(d.enqueue('unknown', {}, { tenant })).rejects.toMatchObject({
      code: 'UNKNOWN_JOB_TYPE',
    });
    await expect(d.enqueue('known', { big: 'x'.repeat(2000) }, { tenant })).rejects.toMatchObject({
      code: 'PAYLOAD_TOO_LARGE',
    });
    await expect(d.enqueue('known', {}, { tenant, priority: 1.5 })).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
    });
    await expect(d.enqueue('known', {}, { tenant, runAt: new Date('nope') })).rejects.toMatchObject(
      {
        code: 'VALIDATION_FAILED',
      },
    );
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    await expect(d.enqueue('known', circular, { tenant })).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
    });
    await expect(
      d.enqueueMany(
        [
          { type: 'known', payload: {} },
          { type: 'unknown', payload: {} },
        ],
        { tenant },
      ),
    ).rejects.toMatchObject({ code: 'UNKNOWN_JOB_TYPE' });
    await expect(d.jobs.list({ cursor: 'garbage' }, { tenant })).rejects.toMatchObject({
      code: 'INVALID_CURSOR',
    });
    expect((await d.jobs.list({}, { tenant })).items).toHaveLength(0);
  });

  it('pages through jobs with a cursor and filters', async () => {
    const d = make();
    const tenant = unique('t');
    await d.enqueueMany(
      Array.from({ length: 7 }, (_, i) => ({ type: i % 2 ? 'odd' : 'even', payload: { i } })),
      { tenant },
    );
    const seen: number[] = [];
    let cursor: string | undefined;
    do {
      const page = await d.jobs.list({ limit: 3, cursor }, { tenant });
      seen.push(...page.items.map((j) => (j.payload as { i: number }).i));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(seen).toEqual([6, 5, 4, 3, 2, 1, 0]);
    expect((await d.jobs.list({ type: 'odd' }, { tenant })).items).toHaveLength(3);
  });
});

// PostgreSQL enforces tenancy a second time, in the database (T-2); SQLite has no equivalent,
// so this case belongs to the PostgreSQL store alone.
describe('PostgreSQL row-level security', () => {
  let ts: TestStore;
  const opened: Docket<Jobs>[] = [];
  const make = () => {
    const d = createDocket<Jobs>({ store: ts.store, dataDir: ts.dataDir, reapIntervalMs: 0 });
    opened.push(d);
    return d;
  };
  beforeAll(async () => {
    ts = await createTestStore('postgres');
  });
  // Each test closes what it opened, so connections never pile up on the server.
  afterEach(async () => {
    for (const d of opened.splice(0)) await d.close();
  });
  afterAll(async () => {
    await ts.dispose();
  });

  it('refuses to migrate into a database whose own tables clash with Docket’s', async () => {
    const other = await createTestStore('postgres');
    try {
      const c = new pg.Client({ connectionString: other.url });
      await c.connect();
      await c.query('create table tenants (id int primary key)');
      await c.end();
      const d = createDocket<Jobs>({ store: other.store, reapIntervalMs: 0 });
      await expect(d.migrate()).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
      await d.close();
    } finally {
      await other.dispose();
    }
  });

  it('completes, heartbeats and releases a job whose row another connection updated meanwhile', async () => {
    const d = make();
    const be = await d.internals.backend();
    const tenant = unique('t');
    const now = Date.now();
    const enqueueAndClaim = async () => {
      const type = unique('race');
      const { job } = await d.enqueue(type, {}, { tenant });
      const [claimed] = await be.jobClaimBatch({
        workerId: 'W',
        limit: 1,
        now: Date.now(),
        leaseMs: 60_000,
        types: [type],
      });
      expect(claimed?.id).toBe(job.id);
      return job;
    };
    // Another connection updates the row (as the worker's own heartbeat would) and holds its
    // lock while the guarded write waits; the write must still land on the new row version.
    const racing = async (id: string, write: () => Promise<string[]>) => {
      const c = new pg.Client({ connectionString: ts.url });
      await c.connect();
      await c.query('begin');
      await c.query('update jobs set lease_until = lease_until + 1 where id = $1', [id]);
      const pending = write();
      await new Promise((r) => setTimeout(r, 100));
      await c.query('commit');
      await c.end();
      return pending;
    };
    const a = await enqueueAndClaim();
    expect(
      await racing(a.id, () =>
        be.jobHeartbeat({ workerId: 'W', jobs: [a], leaseUntil: now + 90_000, now }),
      ),
    ).toEqual([a.id]);
    expect(
      await racing(a.id, () =>
        be.jobCompleteMany({
          workerId: 'W',
          items: [{ id: a.id, tenantId: tenant, resultJson: '1' }],
          now,
        }),
      ),
    ).toEqual([a.id]);
    expect((await d.jobs.get(a.id, { tenant })).status).toBe('succeeded');
    const b = await enqueueAndClaim();
    expect(await racing(b.id, () => be.jobRelease({ workerId: 'W', jobs: [b], now }))).toEqual([
      b.id,
    ]);
    expect((await d.jobs.get(b.id, { tenant })).status).toBe('pending');
    const c = await enqueueAndClaim();
    expect(
      await racing(c.id, () =>
        be.jobCompleteMany({
          workerId: 'W',
          items: [{ id: c.id, tenantId: tenant, resultJson: null }],
          now,
          remove: true,
        }),
      ),
    ).toEqual([c.id]);
    await expect(d.jobs.get(c.id, { tenant })).rejects.toMatchObject({ code: 'JOB_NOT_FOUND' });
  });

  it('wakes an idle worker through LISTEN/NOTIFY, not polling', async () => {
    const type = unique('wake');
    let startedAt = 0;
    const producer = make();
    const w = createDocket<Jobs>({
      store: ts.store,
      reapIntervalMs: 0,
      handlers: { [type]: async () => void (startedAt = Date.now()) },
    });
    opened.push(w);
    const runner = w.createWorker({ concurrency: 1, pollIntervalMs: 60_000 });
    await runner.start();
    await new Promise((r) => setTimeout(r, 200)); // let the worker go idle
    const enqueuedAt = Date.now();
    // A different instance (its own pools and listener): only NOTIFY can reach the worker.
    await producer.enqueue(type, {}, { tenant: unique('t') });
    await waitFor(() => startedAt > 0, { timeoutMs: 5000, what: 'the job to start' });
    expect(startedAt - enqueuedAt).toBeLessThan(1000);
    await runner.stop();
  });

  it('reconnects its LISTEN connection after the server drops it', async () => {
    const type = unique('relisten');
    let started = 0;
    const w = createDocket<Jobs>({
      store: ts.store,
      reapIntervalMs: 0,
      handlers: { [type]: async () => void started++ },
    });
    opened.push(w);
    const producer = make();
    const runner = w.createWorker({ concurrency: 1, pollIntervalMs: 60_000 });
    await runner.start();
    const admin = new pg.Client({ connectionString: ts.url });
    await admin.connect();
    const killed = await admin.query(
      `select pg_terminate_backend(pid) from pg_stat_activity
       where application_name = 'docket:listen' and datname = current_database()`,
    );
    await admin.end();
    expect(killed.rowCount).toBeGreaterThanOrEqual(1);
    // Polling is a minute away: only a re-established LISTEN can start this job within 5 s.
    await new Promise((r) => setTimeout(r, 1500));
    await producer.enqueue(type, {}, { tenant: unique('t') });
    await waitFor(() => started === 1, {
      timeoutMs: 5000,
      what: 'the job to start after reconnect',
    });
    await runner.stop();
  });

  it('row-level security hides other tenants from a raw query without a tenant filter', async () => {
    const d = make();
    const a = unique('a');
    const b = unique('b');
    await d.enqueue('rls', {}, { tenant: a });
    await d.enqueue('rls', {}, { tenant: b });
    const seen = await d.withTransaction(a, async (tx) =>
      (await sql<{ tenant_id: string }>`select tenant_id from jobs`.execute(tx)).rows.map(
        (r) => r.tenant_id,
      ),
    );
    expect(new Set(seen)).toEqual(new Set([a]));
    // Another tenant's rows cannot be changed: the update matches nothing under the policy.
    await d.withTransaction(a, (tx) =>
      sql`update jobs set priority = 7 where tenant_id = ${b}`.execute(tx),
    );
    const bRows = await (
      await d.internals.systemDb()
    )
      .selectFrom('jobs')
      .select('priority')
      .where('tenant_id', '=', b)
      .execute();
    expect(bRows).toEqual([{ priority: 0 }]);
    // Nor created: WITH CHECK refuses a row for tenant b inside tenant a's transaction.
    await expect(
      d.withTransaction(a, (tx) =>
        sql`insert into jobs (id, tenant_id, queue, type, payload, payload_hash, status, available_at,
              max_attempts, trace_id, created_at, updated_at)
            values (gen_random_uuid(), ${b}, 'q', 't', '{}', 'h', 'pending', 0, 1, 'x', 0, 0)`.execute(
          tx,
        ),
      ),
    ).rejects.toThrow(/row-level security/);
    // And the transaction cannot switch to the engine's cross-tenant role.
    await expect(
      d.withTransaction(a, (tx) => sql`set local role docket_system`.execute(tx)),
    ).rejects.toThrow(/permission denied/);
    const role = await d.withTransaction(
      a,
      async (tx) =>
        (
          await sql<{
            su: boolean;
          }>`select rolsuper as su from pg_roles where rolname = current_user`.execute(tx)
        ).rows,
    );
    expect(role).toEqual([{ su: false }]);
  });
});

async function auditActions(d: Docket<Jobs>, jobId: string): Promise<string[]> {
  const db = await d.internals.systemDb();
  const rows = await db
    .selectFrom('audit_events')
    .select(['action', 'seq'])
    .where('resource_id', '=', jobId)
    .orderBy('seq')
    .execute();
  return rows.map((r) => r.action);
}
