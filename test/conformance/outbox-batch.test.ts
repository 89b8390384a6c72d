// The relay's batch path on every store: a sink with publishMany gets a claimed batch in one
// call and its per-event outcomes are recorded one by one; the jobs sink enqueues a batch with
// one enqueueMany and, when that batch is refused, isolates the event it was refused for; a
// fan-out that fails at its second sink keeps the first in sinks_done and retries only the
// second; the published events of a batch are marked together under the relay's lease.
import { describe, expect, it } from 'vitest';
import type { OutboxEvent, OutboxSink, SinkOutcome } from '../../src/index.js';
import { BACKENDS, useDocketSuite, waitFor } from '../helpers/backends.js';

let seq = 0;
const unique = (p: string) => `${p}${++seq}${Math.random().toString(36).slice(2, 6)}`;

describe.each(BACKENDS)('outbox relay batches on %s', (backend) => {
  const suite = useDocketSuite(backend);

  it('hands a batch to publishMany in one call and records each outcome', async () => {
    const tenant = unique('t');
    const calls: number[] = [];
    const sink: OutboxSink = {
      publish: () => Promise.reject(new Error('publish must not be called')),
      async publishMany(events): Promise<SinkOutcome[]> {
        calls.push(events.length);
        return events.map((e) =>
          (e.payload as { n: number }).n === 3
            ? { ok: false, error: new Error('broker refused n=3') }
            : { ok: true, receipt: {} },
        );
      },
    };
    const d = suite.make({ outbox: { routes: [{ topic: 'b', sink: 's' }], sinks: { s: sink } } });
    const events = await d.withTransaction(tenant, (tx) =>
      d.outbox.addMany(
        tx,
        Array.from({ length: 10 }, (_, n) => ({ topic: 'b', payload: { n } })),
      ),
    );
    const relay = await d.outbox.createRelay();
    expect(await relay.runOnce()).toBe(10);
    expect(calls).toEqual([10]);
    for (const e of events) {
      const cur = await d.outbox.get(e.id, { tenant });
      if ((e.payload as { n: number }).n === 3) {
        expect(cur).toMatchObject({ status: 'failed', sinksDone: [] });
        expect(cur.lastError).toBe('s: broker refused n=3');
      } else expect(cur).toMatchObject({ status: 'published', sinksDone: ['s'] });
    }
  });

  it('claims 250 events per batch by default for a sink with publishMany, 100 for one without', async () => {
    const tenant = unique('t');
    const many: number[] = [];
    let single = 0;
    const batchSink: OutboxSink = {
      publish: () => Promise.reject(new Error('publish must not be called')),
      async publishMany(events): Promise<SinkOutcome[]> {
        many.push(events.length);
        return events.map(() => ({ ok: true, receipt: {} }));
      },
    };
    const oneByOne: OutboxSink = {
      async publish() {
        single++;
        return {};
      },
    };
    const d = suite.make({
      outbox: {
        routes: [
          { topic: 'bd.many', sink: 'many' },
          { topic: 'bd.one', sink: 'one' },
        ],
        sinks: { many: batchSink, one: oneByOne },
      },
    });
    const add = (topic: string, count: number) =>
      d.withTransaction(tenant, (tx) =>
        d.outbox.addMany(
          tx,
          Array.from({ length: count }, (_, n) => ({ topic, payload: { n } })),
        ),
      );
    await add('bd.many', 300);
    // Both sinks routed: one of them publishes event by event, so the batch stays at 100.
    const mixed = await d.outbox.createRelay();
    expect(await mixed.runOnce()).toBe(100);
    const only = suite.make({
      outbox: { routes: [{ topic: 'bd.many', sink: 'many' }], sinks: { many: batchSink } },
    });
    const relay = await only.outbox.createRelay();
    expect(await relay.runOnce()).toBe(200);
    await add('bd.many', 300);
    expect(await relay.runOnce()).toBe(250);
    expect(many).toEqual([100, 200, 250]);
    expect(single).toBe(0);
    // An explicit batchSize wins.
    const small = await only.outbox.createRelay({ batchSize: 30 });
    expect(await small.runOnce()).toBe(30);
  });

  it('enqueues a batch of jobs at once, and a batch refused for one event fails only that event', async () => {
    const tenant = unique('t');
    const type = unique('deliver_');
    const d = suite.make({
      outbox: {
        routes: [{ topic: 'j.*', sink: 'queue' }],
        sinks: { queue: { kind: 'jobs', type } },
      },
    });
    const events = await d.withTransaction(tenant, (tx) =>
      d.outbox.addMany(
        tx,
        Array.from({ length: 5 }, (_, n) => ({ topic: 'j.x', payload: { n } })),
      ),
    );
    // Someone already used the idempotency key of event 2 for a different job: enqueueMany
    // refuses the whole batch (IDEMPOTENCY_CONFLICT), and the sink finds the one to blame.
    const poisoned = events[2] as OutboxEvent;
    await d.enqueue(type, { other: true } as never, {
      tenant,
      idempotencyKey: `outbox:${poisoned.id}`,
    });
    const relay = await d.outbox.createRelay();
    expect(await relay.runOnce()).toBe(5);
    const counts = await d.outbox.counts({ tenant });
    expect(counts).toMatchObject({ published: 4, failed: 1 });
    const bad = await d.outbox.get(poisoned.id, { tenant });
    expect(bad.lastError).toContain('queue:');
    const jobs = (await d.jobs.list({}, { tenant })).items;
    expect(jobs.map((j) => j.idempotencyKey).sort()).toEqual(
      events.map((e) => `outbox:${e.id}`).sort(),
    );
  });

  it('keeps the first sink of a fan-out in sinks_done when the second refuses, and retries only the second', async () => {
    const tenant = unique('t');
    const got: Record<string, string[]> = { a: [], b: [] };
    let bFails = true;
    const sinkOf = (name: 'a' | 'b'): OutboxSink => ({
      async publish(e) {
        if (name === 'b' && bFails) throw new Error('b is down');
        got[name]?.push(e.id);
        return {};
      },
    });
    const d = suite.make({
      outbox: {
        routes: [
          { topic: 'f.*', sink: 'a' },
          { topic: 'f.*', sink: 'b' },
        ],
        sinks: { a: sinkOf('a'), b: sinkOf('b') },
      },
    });
    const [e1, e2] = await d.withTransaction(tenant, (tx) =>
      d.outbox.addMany(tx, [
        { topic: 'f.one', payload: {} },
        { topic: 'f.two', payload: {} },
      ]),
    );
    const relay = await d.outbox.createRelay({ retry: { baseMs: 1, capMs: 2 } });
    expect(await relay.runOnce()).toBe(2);
    for (const e of [e1, e2] as OutboxEvent[]) {
      expect(await d.outbox.get(e.id, { tenant })).toMatchObject({
        status: 'failed',
        sinksDone: ['a'],
        lastError: 'b: b is down',
      });
    }
    bFails = false;
    await waitFor(
      async () => {
        await relay.runOnce();
        return (await d.outbox.counts({ tenant })).published === 2;
      },
      { what: 'the retries' },
    );
    expect(got.a?.sort()).toEqual([e1?.id, e2?.id].sort());
    expect(got.b?.sort()).toEqual([e1?.id, e2?.id].sort());
    expect((await d.outbox.get(e1?.id ?? '', { tenant })).sinksDone).toEqual(['a', 'b']);
  });
});
