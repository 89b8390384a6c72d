// Choosing the scheduler's lock backend (SPEC S-2) and what happens when it is away: settings
// are validated at construction, an unreachable server stops the start with its URL, and a
// backend that goes away mid-run makes ticks recorded `skipped` with the reason — never run
// twice, never run unlocked — while the pass goes on for tasks that take no lock.
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createDocketFromEnv, ManualClock, type TaskExecution } from '../../src/index.js';
import { schedulerLocksFromEnv } from '../../src/config/index.js';
import { ETCD_URL, useDocketSuite, waitFor } from '../helpers/backends.js';
import { freePort, startOwnRedis, type OwnRedisServer } from '../helpers/redis-server.js';

describe('scheduler lock backend settings', () => {
  it('DOCKET_SCHEDULER_LOCKS names database, redis or etcd; anything else is CONFIG_INVALID naming it', () => {
    expect(schedulerLocksFromEnv({})).toBeUndefined();
    expect(schedulerLocksFromEnv({ DOCKET_SCHEDULER_LOCKS: 'database' })).toEqual({
      backend: 'database',
    });
    expect(
      schedulerLocksFromEnv({
        DOCKET_SCHEDULER_LOCKS: 'redis',
        DOCKET_REDIS_URL: 'redis://10.0.0.5:6380',
      }),
    ).toEqual({ backend: 'redis', url: 'redis://10.0.0.5:6380', prefix: 'docket:locks:' });
    expect(
      schedulerLocksFromEnv({
        DOCKET_SCHEDULER_LOCKS: 'etcd',
        DOCKET_SCHEDULER_LOCKS_PREFIX: 'shop/locks/',
      }),
    ).toEqual({ backend: 'etcd', url: 'http://127.0.0.1:2379', prefix: 'shop/locks/' });
    expect(() => schedulerLocksFromEnv({ DOCKET_SCHEDULER_LOCKS: 'zookeeper' })).toThrow(
      expect.objectContaining({
        code: 'CONFIG_INVALID',
        message: expect.stringContaining('"zookeeper"') as string,
      }) as Error,
    );
  });

  it('createDocket refuses unusable lock settings at construction, before any I/O', () => {
    const bad = [
      [{ backend: 'consul' }, 'scheduler.locks.backend'],
      [{ backend: 'redis', url: 'http://127.0.0.1:6379' }, 'scheduler.locks.url'],
      [{ backend: 'etcd', url: 'redis://127.0.0.1:2379' }, 'scheduler.locks.url'],
      [{ backend: 'etcd', prefix: '' }, 'scheduler.locks.prefix'],
    ] as const;
    for (const [locks, name] of bad) {
      expect(() =>
        createDocketFromEnv({
          scheduler: { locks: locks as unknown as { backend: 'redis' } },
        }),
      ).toThrow(
        expect.objectContaining({
          code: 'CONFIG_INVALID',
          details: expect.objectContaining({ name }) as object,
        }) as Error,
      );
    }
  });
});

describe('scheduler with a lock backend that is away', () => {
  const suite = useDocketSuite('sqlite', { pruneIntervalMs: 0 });
  let own: OwnRedisServer | undefined;
  afterEach(async () => {
    await own?.kill();
    own = undefined;
  });
  afterAll(async () => {
    await own?.kill();
  });

  it.each([
    ['redis', 'redis'],
    ['etcd', 'http'],
  ] as const)(
    'an unreachable %s stops the start with LOCKS_UNAVAILABLE naming its URL',
    async (backend, scheme) => {
      const url = `${scheme}://127.0.0.1:${await freePort()}`;
      const d = suite.make({
        scheduler: {
          locks: { backend, url },
          tasks: [{ name: `t-${backend}`, cron: '* * * * *', handler: () => undefined }],
        },
      });
      await expect(d.start()).rejects.toMatchObject({
        code: 'LOCKS_UNAVAILABLE',
        message: expect.stringContaining(url) as string,
        details: { url },
      });
    },
    30_000,
  );

  it('Redis going away mid-run: the tick is recorded skipped with the reason, never run twice, and runs resume once it is back', async () => {
    own = await startOwnRedis();
    const prefix = `docket-test-${randomBytes(4).toString('hex')}:`;
    const start = Date.parse('2026-06-01T00:00:00Z');
    const clock = new ManualClock(start - 500);
    const calls: Record<string, number[]> = { locked: [], unlocked: [], slow: [] };
    let releaseSlow: () => void = () => undefined;
    const slowDone = new Promise<void>((r) => (releaseSlow = r));
    const d = suite.make({
      clock,
      scheduler: {
        locks: { backend: 'redis', url: own.url, prefix },
        tasks: [
          {
            name: 'locked',
            cron: '* * * * * *',
            handler: (c) => void calls.locked!.push(c.scheduledFor),
          },
          {
            name: 'unlocked',
            cron: '* * * * * *',
            overlap: 'allow',
            handler: (c) => void calls.unlocked!.push(c.scheduledFor),
          },
          {
            // Holds its lock across the outage: its heartbeat's extend fails mid-pass.
            name: 'slow',
            cron: '0 0 * * * *',
            handler: async (c) => {
              calls.slow!.push(c.scheduledFor);
              await slowDone;
            },
          },
        ],
      },
    });
    const pass = async () => {
      clock.advance(1000);
      await d.scheduler.runOnce();
    };
    const byTick = async (task: string): Promise<Map<number, TaskExecution[]>> => {
      const m = new Map<number, TaskExecution[]>();
      for (const e of (await d.scheduler.executions({ task, limit: 500 })).items) {
        m.set(e.scheduledFor, [...(m.get(e.scheduledFor) ?? []), e]);
      }
      return m;
    };

    await d.scheduler.runOnce(); // registers and schedules
    await pass(); // tick `start`: every task runs; slow keeps its lock
    const waitIdle = async (tasks: string[]) => {
      for (const task of tasks) {
        await waitFor(
          async () =>
            (await d.scheduler.executions({ task, status: ['running'] })).items.length === 0,
          { what: `${task} to finish`, timeoutMs: 10_000 },
        );
      }
    };
    await waitIdle(['locked', 'unlocked']);
    expect(calls.locked).toEqual([start]);
    expect(calls.slow).toEqual([start]);

    await own.kill();
    await pass(); // tick start + 1 s, Redis away
    await waitIdle(['locked', 'unlocked']);
    const outage = start + 1000;
    const lockedRow = (await byTick('locked')).get(outage);
    expect(lockedRow).toHaveLength(1);
    expect(lockedRow![0]).toMatchObject({ status: 'skipped', fencingToken: null });
    expect(lockedRow![0]!.error).toMatch(/^lock backend unavailable: Redis lock backend at redis:/);
    // The pass went on: the task that takes no lock ran its tick.
    expect(calls.unlocked).toEqual([start, outage]);
    expect(calls.locked).toEqual([start]);
    // A manual trigger of a locking task says why, and records nothing.
    await expect(d.scheduler.trigger('locked')).rejects.toMatchObject({
      code: 'LOCKS_UNAVAILABLE',
    });
    expect((await d.scheduler.executions({ task: 'locked', trigger: 'manual' })).items).toEqual([]);

    await own.start();
    // ioredis reconnects by itself (with backoff); the next passes run again once it has.
    let tick = outage;
    for (let i = 0; i < 100 && calls.locked!.length < 2; i++) {
      await pass();
      tick += 1000;
      await waitIdle(['locked', 'unlocked']);
      if (calls.locked!.length < 2) await new Promise((r) => setTimeout(r, 50));
    }
    expect(calls.locked).toHaveLength(2);
    releaseSlow();
    await d.scheduler.idle();
    // Every tick has exactly one row and at most one handler call; skipped ones none.
    const locked = await byTick('locked');
    for (let t = start; t <= tick; t += 1000) {
      const rows = locked.get(t) ?? [];
      expect(rows).toHaveLength(1);
      const ran = calls.locked!.filter((c) => c === t).length;
      expect(ran).toBe(rows[0]!.status === 'succeeded' ? 1 : 0);
    }
    expect(new Set(calls.locked).size).toBe(calls.locked!.length);
  }, 60_000);
});

describe('docket doctor and the scheduler lock backend', () => {
  it('checks the lock server DOCKET_SCHEDULER_LOCKS names: etcd answers, a closed Redis port fails naming it', async () => {
    const { runDoctor } = await import('../../src/cli/doctor.js');
    const base = { DOCKET_STORE: 'sqlite', DOCKET_DATA_DIR: '/tmp/docket-doctor-locks' };
    const ok = await runDoctor({
      ...base,
      DOCKET_SCHEDULER_LOCKS: 'etcd',
      DOCKET_ETCD_URL: ETCD_URL,
    });
    expect(ok.find((c) => c.name === 'scheduler locks')).toMatchObject({
      ok: true,
      detail: `etcd at ${ETCD_URL} answers`,
    });
    const url = `redis://127.0.0.1:${await freePort()}`;
    const down = await runDoctor({
      ...base,
      DOCKET_SCHEDULER_LOCKS: 'redis',
      DOCKET_REDIS_URL: url,
    });
    const check = down.find((c) => c.name === 'scheduler locks');
    expect(check?.ok).toBe(false);
    expect(check?.detail).toContain(url);
  }, 30_000);
});
