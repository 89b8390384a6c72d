// The Redis dispatch lane against a real Redis server (SPEC, T-3): key layout per
// tenant, claim order, round-robin fairness across tenants, visibility-timeout redelivery,
// ack/nack/extend, concurrent consumers. Each run uses its own key prefix and deletes it.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisDispatch, refOf, type DispatchJob } from '../../src/jobs/backends/redis-dispatch.js';

const REDIS_URL = process.env.DOCKET_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `docket-test-${randomBytes(4).toString('hex')}`;
let events = 0;

function dispatch(env = 'test'): RedisDispatch {
  return new RedisDispatch({ url: REDIS_URL, prefix, env, newId: () => `id-${++events}` });
}

let seq = 0;
function job(tenant: string, o: Partial<DispatchJob> = {}): DispatchJob {
  seq += 1;
  return {
    id: `00000000-0000-7000-8000-${String(seq).padStart(12, '0')}`,
    tenantId: tenant,
    queue: 'default',
    type: 'work',
    traceId: 'a'.repeat(32),
    priority: 0,
    availableAt: 1_000,
    attempts: 0,
    ...o,
  };
}

describe('Redis dispatch lane', () => {
  const d = dispatch();
  beforeAll(async () => {
    await d.start();
  });
  afterAll(async () => {
    const keys = await d.client.keys(`${prefix}:*`);
    if (keys.length) await d.client.del(...keys);
    await d.stop();
  });

  it('acks a batch of 1,200 messages over two tenants and two types, wherever each message is', async () => {
    const jobs = [
      ...Array.from({ length: 1100 }, () => job('ack-a')),
      ...Array.from({ length: 50 }, () => job('ack-a', { type: 'other' })),
      ...Array.from({ length: 50 }, () => job('ack-b')),
    ];
    expect(await d.publishMany(jobs, 1_000)).toBe(1200);
    // Some in flight, one delayed again, one buried: ack removes each from where it is.
    const flying = await d.claim({
      now: 1_000,
      limit: 700,
      visibilityMs: 60_000,
      tenants: ['ack-a'],
    });
    expect(flying).toHaveLength(700);
    await d.nack(jobs[1099] as DispatchJob, 9_000, 1_000);
    await d.bury(jobs[1098] as DispatchJob, 1_000);
    const keep = job('ack-a');
    await d.publish(keep, 1_000);
    await d.ackMany(jobs);
    expect((await d.messages('ack-a', 'default')).map((m) => m.job_id)).toEqual([keep.id]);
    expect(await d.messages('ack-b', 'default')).toEqual([]);
    expect(await d.client.zcard(`${d.baseKey('ack-a', 'default')}:inflight`)).toBe(0);
    expect(await d.client.zcard(`${d.baseKey('ack-a', 'default')}:dead`)).toBe(0);
    expect(await d.client.zcard(`${d.baseKey('ack-a', 'default')}:delayed:work`)).toBe(0);
    await d.ackMany([keep]);
  });

  it('keeps every key of a tenant under {prefix}:{env}:{tenant}:{queue} and claims only the asked tenant', async () => {
    await d.publish(job('kt-a'), 1_000);
    await d.publish(job('kt-b', { queue: 'mail' }), 1_000);
    const keys = await d.client.keys(`${prefix}:test:*`);
    for (const k of keys) {
      expect(
        k.startsWith(`${prefix}:test:kt-a:default:`) ||
          k.startsWith(`${prefix}:test:kt-b:mail:`) ||
          k.startsWith(`${prefix}:test:_:`) ||
          !/kt-/.test(k),
      ).toBe(true);
    }
    expect(keys).toContain(`${prefix}:test:kt-a:default:ready:work`);
    expect(keys).toContain(`${prefix}:test:kt-b:mail:msg`);
    const got = await d.claim({ now: 1_000, limit: 10, visibilityMs: 1000, tenants: ['kt-a'] });
    expect(got.map((m) => m.tenant_id)).toEqual(['kt-a']);
    const b = await d.claim({ now: 1_000, limit: 10, visibilityMs: 1000, tenants: ['kt-b'] });
    expect(b.map((m) => m.tenant_id)).toEqual(['kt-b']);
    for (const m of [...got, ...b]) expect(await d.ack(refOf(m))).toBe(true);
  });

  it('claims by priority, then time, and holds delayed messages until they are due', async () => {
    const t = 'order';
    const T = Date.UTC(2026, 0, 1);
    const late = job(t, { availableAt: T + 5_000 });
    const low = job(t, { priority: 10, availableAt: T });
    const high = job(t, { priority: -5, availableAt: T });
    const mid2 = job(t, { availableAt: T - 3_000 });
    const mid1 = job(t, { availableAt: T - 5_000 });
    for (const j of [late, low, high, mid2, mid1]) await d.publish(j, T);
    const first = await d.claim({ now: T, limit: 1, visibilityMs: 1000, tenants: [t] });
    expect(first.map((m) => m.job_id)).toEqual([high.id]);
    const rest = await d.claim({ now: T, limit: 10, visibilityMs: 1000, tenants: [t] });
    expect(rest.map((m) => m.job_id)).toEqual([mid1.id, mid2.id, low.id]);
    expect(await d.claim({ now: T + 4_999, limit: 10, visibilityMs: 1000, tenants: [t] })).toEqual(
      [],
    );
    const due = await d.claim({ now: T + 5_000, limit: 10, visibilityMs: 1000, tenants: [t] });
    expect(due.map((m) => m.job_id)).toEqual([late.id]);
    expect(due[0]).toMatchObject({ attempt: 1, trace_id: 'a'.repeat(32), job_type: 'work' });
    for (const m of [...first, ...rest, ...due]) await d.ack(refOf(m));
  });

  it('lets one tenant with a flood of 2,000 messages delay another tenant by at most one claim round', async () => {
    for (let i = 0; i < 2000; i++) await d.publish(job('flood'), 1_000);
    const single = job('single', { availableAt: 2_000 });
    await d.publish(single, 2_000);
    const claimed = await d.claim({
      now: 2_000,
      limit: 10,
      visibilityMs: 60_000,
      tenants: ['flood', 'single'],
    });
    expect(claimed).toHaveLength(10);
    expect(claimed.map((m) => m.job_id)).toContain(single.id);
    expect(claimed.filter((m) => m.tenant_id === 'flood')).toHaveLength(9);
  });

  it('redelivers a message whose visibility timeout passed, counting the delivery, and buries it on request', async () => {
    const t = 'vis';
    const j = job(t);
    await d.publish(j, 1_000);
    const [m1] = await d.claim({ now: 1_000, limit: 1, visibilityMs: 100, tenants: [t] });
    expect(m1?.attempt).toBe(1);
    // Extended: still in flight at 1_150.
    expect(await d.extend([j], 1_200)).toBe(1);
    expect(await d.expire(1_150, 100)).toHaveLength(0);
    expect((await d.expire(1_250, 100)).map((m) => m.job_id)).toEqual([j.id]);
    const [m2] = await d.claim({ now: 1_300, limit: 1, visibilityMs: 100, tenants: [t] });
    expect(m2).toMatchObject({ job_id: j.id, attempt: 2 });
    expect(m2?.message_id).not.toBe(m1?.message_id);
    expect(await d.bury(j, 1_400)).toBe(true);
    expect(await d.expire(5_000, 100)).toHaveLength(0);
    expect(await d.claim({ now: 5_000, limit: 1, visibilityMs: 100, tenants: [t] })).toEqual([]);
    expect(await d.has([j])).toEqual([true]);
    expect(await d.ack(j)).toBe(true);
    expect(await d.has([j])).toEqual([false]);
    expect(await d.messages(t, 'default')).toEqual([]);
  });

  it('schedules a nacked message for its retry time and acks it away', async () => {
    const t = 'nack';
    await d.publish(job(t), 1_000);
    const [m] = await d.claim({ now: 1_000, limit: 1, visibilityMs: 1000, tenants: [t] });
    expect(await d.nack(refOf(m!), 3_000, 1_000)).toBe(true);
    expect(await d.claim({ now: 2_999, limit: 1, visibilityMs: 1000, tenants: [t] })).toEqual([]);
    const [again] = await d.claim({ now: 3_000, limit: 1, visibilityMs: 1000, tenants: [t] });
    expect(again).toMatchObject({ job_id: m!.job_id, attempt: 2 });
    expect(await d.ack(refOf(again!))).toBe(true);
    expect(await d.ack(refOf(again!))).toBe(false);
    // A republish of a message that still exists is a no-op (HSETNX).
    const j = job(t);
    expect(await d.publish(j, 1_000)).toBe(true);
    expect(await d.publish(j, 1_000)).toBe(false);
  });

  it('never hands one message to two concurrent consumers', async () => {
    const t = 'race';
    for (let i = 0; i < 500; i++) await d.publish(job(t), 1_000);
    const consumers = [dispatch(), dispatch(), dispatch()];
    await Promise.all(consumers.map((c) => c.start()));
    const seen = new Set<string>();
    let dup = 0;
    await Promise.all(
      consumers.map(async (c) => {
        for (;;) {
          const got = await c.claim({ now: 1_000, limit: 7, visibilityMs: 60_000, tenants: [t] });
          if (got.length === 0) return;
          for (const m of got) {
            if (seen.has(m.job_id)) dup++;
            else seen.add(m.job_id);
          }
        }
      }),
    );
    await Promise.all(consumers.map((c) => c.stop()));
    expect(dup).toBe(0);
    expect(seen.size).toBe(500);
  });

  it('sends each wake-up with its sender id, one for a single ready job and none for a delayed one', async () => {
    const other = dispatch();
    await other.start();
    const sub = d.client.duplicate({ enableAutoPipelining: false });
    const heard: string[] = [];
    sub.on('message', (_c: string, m: string) => heard.push(m));
    await sub.connect();
    await sub.subscribe(d.wakeChannel);
    try {
      expect(await d.publishMany([job('wake-a')], 1_000)).toBe(1);
      expect(await d.publishMany([job('wake-a', { availableAt: 5_000 })], 1_000)).toBe(1);
      const again = job('wake-a');
      expect(await other.publishMany([again, job('wake-b')], 1_000)).toBe(2);
      // Already published: no new message, no wake-up.
      expect(await other.publishMany([again], 1_000)).toBe(0);
      await other.wake();
      await expect.poll(() => heard.length).toBe(3);
      await new Promise((r) => setTimeout(r, 50));
      expect(heard).toEqual([d.senderId, other.senderId, other.senderId]);
      expect(d.isOwnWake(d.senderId)).toBe(true);
      expect(d.isOwnWake(other.senderId)).toBe(false);
      expect(d.senderId).not.toBe(other.senderId);
    } finally {
      await sub.quit();
      await other.stop();
    }
  });

  it('fails to start with STORE_UNAVAILABLE naming the URL when Redis is unreachable', async () => {
    const bad = new RedisDispatch({
      url: 'redis://user:secret@127.0.0.1:1',
      newId: () => 'x',
    });
    await expect(bad.start()).rejects.toMatchObject({
      code: 'STORE_UNAVAILABLE',
      message: expect.stringContaining('redis://***@127.0.0.1:1'),
    });
  });
});
