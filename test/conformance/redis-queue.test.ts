// Redis-specific cases of the queue (SPEC, T-3) on top of the conformance suite,
// which runs unchanged with `queue=redis` (QUEUE_BACKENDS): recovery when Redis loses its keys,
// publication after the caller's commit, tenant fairness, an unreachable server, a Redis server
// killed mid-run and started again empty.
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import { buildHttpApp } from '../../src/http/index.js';
import type { Docket } from '../../src/index.js';
import type { RedisJobBackend } from '../../src/jobs/backends/redis.js';
import { useDocketSuite, waitFor } from '../helpers/backends.js';
import { startOwnRedis, type OwnRedisServer } from '../helpers/redis-server.js';

type Jobs = Record<string, unknown>;
let seq = 0;
const unique = (p: string) => `${p}${++seq}${Math.random().toString(36).slice(2, 6)}`;

describe.each(['sqlite+redis', 'postgres+redis'] as const)('Redis queue on %s', (backend) => {
  const suite = useDocketSuite<Jobs>(backend);
  const make = suite.make;
  const redisOf = async (d: Docket<Jobs>) =>
    (await d.internals.backend()) as unknown as RedisJobBackend;

  it('loses nothing when Redis loses its keys mid-run: reconciliation republishes from the store', async () => {
    const type = unique('flush');
    const tenant = unique('t');
    const ran = new Map<number, number>();
    const d = make({
      reapIntervalMs: 50,
      builtins: false,
      queue: { ...(suite.ts.queue as object), backend: 'redis', reconcileIntervalMs: 100 },
      handlers: {
        [type]: async ({ payload }) => {
          const i = (payload as { i: number }).i;
          ran.set(i, (ran.get(i) ?? 0) + 1);
          await new Promise((r) => setTimeout(r, 2));
        },
      },
    });
    await d.enqueueMany(
      Array.from({ length: 300 }, (_, i) => ({ type, payload: { i } })),
      { tenant },
    );
    await d.start(); // the reaper (reconciliation runs on its own timer)
    const w = d.createWorker({ concurrency: 2, prefetch: 2 });
    await w.start();
    await waitFor(() => ran.size >= 30, { what: 'the first jobs' });
    const be = await redisOf(d);
    const prefix = (suite.ts.queue as { prefix: string }).prefix;
    const keys = await be.dispatch.client.keys(`${prefix}:*`);
    expect(keys.length).toBeGreaterThan(0);
    await be.dispatch.client.del(...keys);
    await waitFor(
      async () =>
        (await d.jobs.list({ status: ['succeeded'], limit: 200 }, { tenant })).items.length ===
          200 && ran.size === 300,
      { timeoutMs: 30_000, what: 'every job to run after the flush' },
    );
    await w.stop();
    expect([...ran.values()].every((n) => n === 1)).toBe(true);
  });

  it('makes a pending job claimable again whatever happened to its message', async () => {
    const d = make();
    const be = await redisOf(d);
    const tenant = unique('t');
    const type = unique('rescue');
    const claim = () =>
      be.jobClaimBatch({
        workerId: 'w',
        limit: 5,
        now: Date.now(),
        leaseMs: 60_000,
        types: [type],
      });
    // 1. Popped into flight, then the store claim never happened (a crash between the two).
    const { job: a } = await d.enqueue(type, {}, { tenant });
    await be.dispatch.claim({ now: Date.now(), limit: 5, visibilityMs: 1, types: [type] });
    await new Promise((r) => setTimeout(r, 5));
    // 2. Buried although the store says pending (a replay whose Redis write failed).
    const { job: b } = await d.enqueue(type, {}, { tenant });
    await be.dispatch.bury(b, Date.now());
    // 3. Its message entry lost (eviction): claims must not fail, reconciliation republishes.
    const { job: c } = await d.enqueue(type, {}, { tenant });
    await be.dispatch.client.hdel(`${be.dispatch.baseKey(tenant, 'default')}:msg`, c.id);
    expect(await claim()).toEqual([]);
    await be.reconcile(); // expires the stranded flight, rescues the other two
    expect((await claim()).map((j) => j.id).sort()).toEqual([a.id, b.id, c.id].sort());
  });

  it('publishes a job enqueued in a transaction only when it commits', async () => {
    const d = make();
    const be = await redisOf(d);
    const tenant = unique('t');
    const type = unique('tx');
    await expect(
      d.withTransaction(tenant, async (tx) => {
        await d.enqueueTx(tx, type, { n: 1 });
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(await be.dispatch.messages(tenant, 'default')).toEqual([]);
    await d.withTransaction(tenant, async (tx) => {
      await d.enqueueTx(tx, type, { n: 2 });
    });
    expect(await be.dispatch.messages(tenant, 'default')).toHaveLength(1);
  });

  it('serves a tenant with one job in the first claim while another tenant has a flood of 1,000', async () => {
    const d = make();
    const be = await d.internals.backend();
    const type = unique('fair');
    const flood = unique('flood');
    const single = unique('single');
    await d.enqueueMany(
      Array.from({ length: 1000 }, (_, i) => ({ type, payload: { i } })),
      { tenant: flood },
    );
    const { job } = await d.enqueue(type, {}, { tenant: single });
    const claimed = await be.jobClaimBatch({
      workerId: 'w',
      limit: 10,
      now: Date.now(),
      leaseMs: 60_000,
      types: [type],
    });
    expect(claimed).toHaveLength(10);
    expect(claimed.map((j) => j.id)).toContain(job.id);
  });

  describe('with its own Redis server, killed mid-run and started again empty', () => {
    let server: OwnRedisServer | undefined;
    afterEach(async () => {
      await server?.kill();
      server = undefined;
    });

    it('pauses the workers, keeps enqueueing into the store, says why on /readyz, then resumes and loses nothing', async () => {
      server = await startOwnRedis();
      const type = unique('outage');
      const tenant = unique('t');
      const ran = new Map<number, number>();
      let release: () => void = () => undefined;
      const gate = new Promise<void>((r) => (release = r));
      const d = make({
        reapIntervalMs: 50,
        builtins: false,
        // The periodic pass is slow on purpose: recovery must come from the reconnect itself.
        queue: {
          backend: 'redis',
          url: server.url,
          prefix: unique('p'),
          reconcileIntervalMs: 600_000,
        },
        handlers: {
          [type]: async ({ payload }) => {
            const i = (payload as { i: number }).i;
            ran.set(i, (ran.get(i) ?? 0) + 1);
            if (i < 4) await gate; // running across the outage
          },
        },
      });
      await d.enqueueMany(
        Array.from({ length: 200 }, (_, i) => ({ type, payload: { i } })),
        { tenant },
      );
      await d.start();
      const w = d.createWorker({
        concurrency: 4,
        prefetch: 0,
        pollIntervalMs: 50,
        leaseMs: 30_000,
      });
      await w.start();
      await waitFor(() => ran.size >= 4, { what: 'the first four jobs to start' });
      const app = buildHttpApp({ docket: d, logger: silentLogger() });
      try {
        expect((await app.inject({ url: '/readyz' })).statusCode).toBe(200);

        await server.kill();
        const down = await app.inject({ url: '/readyz' });
        expect(down.statusCode).toBe(503);
        expect(down.json()).toMatchObject({
          status: 'unavailable',
          reason: expect.stringContaining(server.url),
        });
        // The store is the truth: enqueueing goes on while Redis is away.
        await d.enqueueMany(
          Array.from({ length: 100 }, (_, i) => ({ type, payload: { i: 200 + i } })),
          { tenant },
        );
        release(); // the four running jobs complete in the store; their acks fail
        await new Promise((r) => setTimeout(r, 300));
        const paused = ran.size;
        expect(paused).toBeLessThan(300);

        await server.start(); // empty: every message is gone
        await waitFor(
          async () =>
            ran.size === 300 &&
            (await d.jobs.list({ status: ['pending', 'processing'], limit: 1 }, { tenant })).items
              .length === 0,
          { timeoutMs: 30_000, what: 'every job to run after Redis came back' },
        );
        expect((await app.inject({ url: '/readyz' })).statusCode).toBe(200);
      } finally {
        await app.close();
        await w.stop();
      }
      expect([...ran.entries()].filter(([, n]) => n !== 1)).toEqual([]);
      expect((await d.jobs.counts({ tenant })).succeeded).toBe(300);
    });
  });

  it('refuses to start with STORE_UNAVAILABLE naming the URL when Redis is unreachable', async () => {
    const d = make({ queue: { backend: 'redis', url: 'redis://127.0.0.1:1' } });
    await expect(d.start()).rejects.toMatchObject({
      code: 'STORE_UNAVAILABLE',
      message: expect.stringContaining('redis://127.0.0.1:1'),
    });
  });
});
