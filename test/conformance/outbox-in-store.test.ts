// In-store publication (migration 016): when every route of a relay goes to a sink inside
// Docket's own store (the job queue), a batch is published in the claim's own transaction —
// the events go `pending → published` on their first attempt, with exactly one job each, and
// the jobs reach the queue's dispatch (Redis too) after the commit. A sink that throws inside
// that transaction rolls back its own writes with the mark, and the batch goes through the
// leased path instead; concurrent relays never make two jobs of one event; per-key order holds.
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import type { OutboxEvent, OutboxSink } from '../../src/index.js';
import {
  BACKENDS,
  QUEUE_BACKENDS,
  createBusinessTable,
  useDocketSuite,
  waitFor,
} from '../helpers/backends.js';

let seq = 0;
const unique = (p: string) => `${p}${++seq}${Math.random().toString(36).slice(2, 6)}`;

describe.each(QUEUE_BACKENDS)('outbox in-store publication on %s', (backend) => {
  const suite = useDocketSuite(backend, { pruneIntervalMs: 0 });

  it('publishes a jobs-sink batch in the claim transaction: attempt 1, one job per event, dispatched after commit', async () => {
    const tenant = unique('t');
    const type = unique('deliver_');
    const ran: string[] = [];
    const d = suite.make({
      outbox: {
        routes: [{ topic: 'is.*', sink: 'queue' }],
        sinks: { queue: { kind: 'jobs', type } },
      },
      handlers: {
        [type]: async (ctx) => {
          ran.push((ctx.payload as { eventId: string }).eventId);
        },
      },
    });
    const events = await d.withTransaction(tenant, (tx) =>
      d.outbox.addMany(
        tx,
        Array.from({ length: 30 }, (_, n) => ({ topic: 'is.x', payload: { n } })),
      ),
    );
    const relay = await d.outbox.createRelay();
    expect(await relay.runOnce()).toBe(30);
    for (const e of events) {
      expect(await d.outbox.get(e.id, { tenant })).toMatchObject({
        status: 'published',
        attempts: 1,
        leaseOwner: null,
        leaseUntil: null,
        sinksDone: ['queue'],
      });
    }
    const jobs = (await d.jobs.list({ limit: 100 }, { tenant })).items;
    expect(jobs.map((j) => j.idempotencyKey).sort()).toEqual(
      events.map((e) => `outbox:${e.id}`).sort(),
    );
    // The jobs run through the queue's own dispatch (Redis for `…+redis`).
    const worker = d.createWorker({ pollIntervalMs: 20 });
    await worker.start();
    await waitFor(async () => ran.length >= 30, { what: 'every job ran' });
    await worker.stop();
    expect(ran.sort()).toEqual(events.map((e) => e.id).sort());
  });
});

describe.each(BACKENDS)('outbox in-store publication guarantees on %s', (backend) => {
  const suite = useDocketSuite(backend, { pruneIntervalMs: 0 });

  it('an in-store batch takes up to inStoreBatchSize events; bad batch sizes are CONFIG_INVALID', async () => {
    const tenant = unique('t');
    const d = suite.make({
      outbox: {
        routes: [{ topic: 'bs.*', sink: 'queue' }],
        sinks: { queue: { kind: 'jobs', type: unique('bs_') } },
      },
    });
    await d.withTransaction(tenant, (tx) =>
      d.outbox.addMany(
        tx,
        Array.from({ length: 620 }, (_, n) => ({ topic: 'bs.x', payload: { n } })),
      ),
    );
    // The default is 500 in one transaction, whatever the leased path's batchSize.
    const relay = await d.outbox.createRelay({ batchSize: 10 });
    expect(await relay.runOnce()).toBe(500);
    expect(await relay.runOnce()).toBe(120);
    await d.withTransaction(tenant, (tx) =>
      d.outbox.addMany(
        tx,
        Array.from({ length: 10 }, (_, n) => ({ topic: 'bs.y', payload: { n } })),
      ),
    );
    const small = await d.outbox.createRelay({ inStoreBatchSize: 7 });
    expect(await small.runOnce()).toBe(7);
    expect(await small.runOnce()).toBe(3);
    for (const bad of [0, 1.5, 10_001]) {
      await expect(d.outbox.createRelay({ inStoreBatchSize: bad })).rejects.toMatchObject({
        code: 'CONFIG_INVALID',
      });
      await expect(d.outbox.createRelay({ batchSize: bad })).rejects.toMatchObject({
        code: 'CONFIG_INVALID',
      });
    }
  });

  it('a sink that throws inside the transaction leaves neither its writes nor the mark; the leased path then publishes', async () => {
    const tenant = unique('t');
    const table = unique('instore_');
    const published: string[] = [];
    let inStoreCalls = 0;
    const sink: OutboxSink = {
      async publish(e) {
        published.push(e.id);
        return {};
      },
      async publishInStore(trx, events) {
        inStoreCalls++;
        for (const e of events) {
          await sql`insert into ${sql.table(table)} (id, tenant_id) values (${e.id}, ${tenant})`.execute(
            trx,
          );
        }
        throw new Error('the in-store write failed after writing');
      },
    };
    const d = suite.make({ outbox: { routes: [{ topic: 'rb', sink: 's' }], sinks: { s: sink } } });
    await createBusinessTable(suite.ts, d, table);
    const events = await d.withTransaction(tenant, (tx) =>
      d.outbox.addMany(
        tx,
        Array.from({ length: 5 }, (_, n) => ({ topic: 'rb', payload: { n } })),
      ),
    );
    const relay = await d.outbox.createRelay();
    expect(await relay.runOnce()).toBe(5);
    expect(inStoreCalls).toBe(1);
    const rows = await sql<{ n: number }>`select count(*) as n from ${sql.table(table)}`.execute(
      await d.internals.systemDb(),
    );
    expect(Number(rows.rows[0]?.n)).toBe(0);
    expect(published.sort()).toEqual(events.map((e) => e.id).sort());
    for (const e of events) {
      expect(await d.outbox.get(e.id, { tenant })).toMatchObject({
        status: 'published',
        attempts: 1,
      });
    }
  });

  it('two relays publishing in-store at once make exactly one job per event', async () => {
    const tenant = unique('t');
    const type = unique('deliver_');
    const options = {
      outbox: {
        routes: [{ topic: 'cc', sink: 'queue' }],
        sinks: { queue: { kind: 'jobs' as const, type } },
      },
    };
    const a = suite.make(options);
    const b = suite.make(options);
    const events: OutboxEvent[] = [];
    for (let i = 0; i < 4; i++) {
      events.push(
        ...(await a.withTransaction(tenant, (tx) =>
          a.outbox.addMany(
            tx,
            Array.from({ length: 100 }, (_, n) => ({ topic: 'cc', payload: { i, n } })),
          ),
        )),
      );
    }
    const relays = [
      await a.outbox.createRelay({ batchSize: 25, pollIntervalMs: 20 }),
      await b.outbox.createRelay({ batchSize: 25, pollIntervalMs: 20 }),
    ];
    for (const r of relays) await r.start();
    await waitFor(async () => (await a.outbox.counts({ tenant })).published === events.length, {
      what: 'every event published',
      timeoutMs: 30_000,
    });
    for (const r of relays) await r.stop();
    const sys = await a.internals.systemDb();
    const jobs = await sys
      .selectFrom('jobs')
      .select(['idempotency_key'])
      .where('tenant_id', '=', tenant)
      .execute();
    expect(jobs).toHaveLength(events.length);
    expect(new Set(jobs.map((j) => j.idempotency_key)).size).toBe(events.length);
    const attempts = await sys
      .selectFrom('outbox_events')
      .select((eb) => eb.fn.max('attempts').as('max'))
      .where('tenant_id', '=', tenant)
      .executeTakeFirstOrThrow();
    expect(Number(attempts.max)).toBe(1);
  });

  it("keeps a key's events in order: each job is made after the previous event of its key was published", async () => {
    const tenant = unique('t');
    const type = unique('deliver_');
    const d = suite.make({
      outbox: {
        routes: [{ topic: 'ord', sink: 'queue' }],
        sinks: { queue: { kind: 'jobs', type } },
      },
    });
    const events = await d.withTransaction(tenant, (tx) =>
      d.outbox.addMany(tx, [
        { topic: 'ord', key: 'k', payload: { n: 0 } },
        { topic: 'ord', key: 'other', payload: { n: 1 } },
        { topic: 'ord', key: 'k', payload: { n: 2 } },
        { topic: 'ord', key: 'k', payload: { n: 3 } },
      ]),
    );
    const relay = await d.outbox.createRelay();
    let total = 0;
    for (let round = 0; round < 10 && total < events.length; round++)
      total += await relay.runOnce();
    expect(total).toBe(4);
    const published = await Promise.all(events.map((e) => d.outbox.get(e.id, { tenant })));
    const k = published.filter((e) => e.key === 'k');
    // Strictly later publication along the key (each waited for the one before).
    for (let i = 1; i < k.length; i++) {
      expect(k[i]?.publishedAt as number).toBeGreaterThanOrEqual(k[i - 1]?.publishedAt as number);
    }
    const jobs = (await d.jobs.list({ limit: 10 }, { tenant })).items.reverse(); // oldest first
    expect(
      jobs
        .map((j) => j.payload as { eventId: string; key: string | null })
        .filter((p) => p.key === 'k')
        .map((p) => p.eventId),
    ).toEqual(k.map((e) => e.id));
  });
});
