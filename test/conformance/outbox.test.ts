// The transactional outbox on every store (SPEC O-1 … O-6): events commit or roll back with
// the business change, relays publish each event once in the normal path and recover expired
// leases, retries end in `dead` with the error and an audit row, replays are audited, a key's
// events go out in order even across retries, consumers apply a redelivered event once, the
// state machine is enforced by the database, and the jobs and webhook sinks work end to end.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OutboxEvent, OutboxSink } from '../../src/index.js';
import { ManualClock, PermanentSinkError, verifyWebhookSignature } from '../../src/index.js';
import { BACKENDS, createBusinessTable, useDocketSuite, waitFor } from '../helpers/backends.js';

let seq = 0;
const unique = (p: string) => `${p}${++seq}${Math.random().toString(36).slice(2, 6)}`;

/** A sink of the test's own that records what it was given and can be told to fail. */
function recordingSink(fail: (e: OutboxEvent) => Error | undefined = () => undefined) {
  const published: OutboxEvent[] = [];
  const sink: OutboxSink = {
    async publish(e) {
      const err = fail(e);
      if (err) throw err;
      published.push(e);
      return {};
    },
  };
  return { sink, published };
}

describe.each(BACKENDS)('outbox on %s', (backend) => {
  const suite = useDocketSuite(backend);

  it('writes events with the business change: a rolled-back transaction leaves none', async () => {
    const table = unique('orders_');
    const tenant = unique('t');
    const d = suite.make();
    await d.migrate();
    await createBusinessTable(suite.ts, d, table);
    await expect(
      d.withTransaction(tenant, async (tx) => {
        await sql`insert into ${sql.table(table)} (id, tenant_id) values ('o1', ${tenant})`.execute(
          tx,
        );
        await d.outbox.add(tx, { topic: 'order.placed', key: 'o1', payload: { id: 'o1' } });
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect((await d.outbox.list({}, { tenant })).items).toEqual([]);
    const added = await d.withTransaction(tenant, async (tx) => {
      await sql`insert into ${sql.table(table)} (id, tenant_id) values ('o2', ${tenant})`.execute(
        tx,
      );
      return d.outbox.add(tx, {
        topic: 'order.placed',
        key: 'o2',
        payload: { id: 'o2', total: 42 },
        headers: { 'content-type': 'application/json' },
      });
    });
    const got = await d.outbox.get(added.id, { tenant });
    expect(got).toMatchObject({
      status: 'pending',
      topic: 'order.placed',
      key: 'o2',
      payload: { id: 'o2', total: 42 },
      headers: { 'content-type': 'application/json' },
      attempts: 0,
    });
    // Another tenant sees nothing of it.
    await expect(d.outbox.get(added.id, { tenant: unique('other') })).rejects.toMatchObject({
      code: 'OUTBOX_EVENT_NOT_FOUND',
    });
  });

  it('refuses bad input with clear codes and writes nothing', async () => {
    const d = suite.make();
    const tenant = unique('t');
    const bad = async (e: unknown, code: string) =>
      expect(d.withTransaction(tenant, (tx) => d.outbox.add(tx, e as never))).rejects.toMatchObject(
        { code },
      );
    await bad({ topic: 'bad topic!', payload: {} }, 'VALIDATION_FAILED');
    await bad({ topic: 'x', key: '', payload: {} }, 'VALIDATION_FAILED');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await bad({ topic: 'x', payload: cyclic }, 'VALIDATION_FAILED');
    await bad({ topic: 'x', payload: {}, headers: { n: 1 } }, 'VALIDATION_FAILED');
    await bad({ topic: 'x', payload: 'y'.repeat(300_000) }, 'PAYLOAD_TOO_LARGE');
    await expect(d.outbox.add({} as never, { topic: 'x', payload: {} })).rejects.toMatchObject({
      code: 'TX_INVALID',
    });
    expect((await d.outbox.list({}, { tenant })).items).toEqual([]);
    await expect(d.outbox.list({ status: ['nope' as never] }, { tenant })).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
    });
    await expect(d.outbox.list({ cursor: 'zzz' }, { tenant })).rejects.toMatchObject({
      code: 'INVALID_CURSOR',
    });
    expect(() =>
      suite.make({ outbox: { routes: [{ topic: 'a.*', sink: 'missing' }], sinks: {} } }),
    ).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }) as Error);
  });

  it('enforces the state machine in the database, whoever writes', async () => {
    const d = suite.make();
    const tenant = unique('t');
    const e = await d.withTransaction(tenant, (tx) =>
      d.outbox.add(tx, { topic: 'sm', payload: {} }),
    );
    const db = await d.internals.systemDb();
    // pending → dead and pending → failed skip the attempt. (pending → published is the
    // in-store publication of migration 016; tested below.)
    for (const status of ['dead', 'failed']) {
      await expect(
        db.updateTable('outbox_events').set({ status }).where('id', '=', e.id).execute(),
      ).rejects.toThrow();
    }
    // publishing without a lease breaks the check constraint.
    await expect(
      db
        .updateTable('outbox_events')
        .set({ status: 'publishing' })
        .where('id', '=', e.id)
        .execute(),
    ).rejects.toThrow();
    expect((await d.outbox.get(e.id, { tenant })).status).toBe('pending');
    // Published is final: nothing takes an event back from it, whoever writes.
    await db
      .updateTable('outbox_events')
      .set({ status: 'published' })
      .where('id', '=', e.id)
      .execute();
    for (const status of ['pending', 'publishing', 'failed', 'dead']) {
      await expect(
        db.updateTable('outbox_events').set({ status }).where('id', '=', e.id).execute(),
      ).rejects.toThrow();
    }
  });

  it('publishes to a jobs sink once per event, and a consumer applies a redelivery once', async () => {
    const table = unique('ledger_');
    const tenant = unique('t');
    const type = unique('on_order_');
    const topic = unique('orders'); // other tests' events stay out of this relay's routes
    const applied: string[] = [];
    const consume = () =>
      d.outbox.consumer('ledger', async (event, tx) => {
        applied.push(event.eventId);
        await sql`insert into ${sql.table(table)} (id, tenant_id) values (${event.eventId}, ${tenant})`.execute(
          tx,
        );
      });
    const d = suite.make({
      outbox: {
        routes: [{ topic: `${topic}.*`, sink: 'queue' }],
        sinks: { queue: { kind: 'jobs', type } },
      },
      handlers: { [type]: async (ctx) => consume()(ctx as never) },
    });
    await d.migrate();
    await createBusinessTable(suite.ts, d, table);
    const events = await d.withTransaction(tenant, (tx) =>
      d.outbox.addMany(
        tx,
        Array.from({ length: 20 }, (_, i) => ({ topic: `${topic}.placed`, payload: { i } })),
      ),
    );
    const relay = await d.outbox.createRelay({ pollIntervalMs: 50 });
    expect(await relay.runOnce()).toBe(20);
    expect((await d.outbox.counts({ tenant })).published).toBe(20);
    const jobs = (await d.jobs.list({}, { tenant })).items;
    expect(jobs).toHaveLength(20);
    expect(jobs.map((j) => j.idempotencyKey).sort()).toEqual(
      events.map((e) => `outbox:${e.id}`).sort(),
    );
    // Published again (a relay that crashed before marking it): the same job, not a second one.
    const again = await d.enqueue(type, jobs[0]?.payload as never, {
      tenant,
      idempotencyKey: jobs[0]?.idempotencyKey as string,
    });
    expect(again.deduplicated).toBe(true);
    // The consumer: deliberate duplicate deliveries of every event.
    const r = await d.processBatch({ max: 50, budgetMs: 10_000, tenant });
    expect(r.succeeded).toBe(20);
    const h = consume();
    for (const j of jobs) {
      await expect(h({ payload: j.payload, job: j } as never)).resolves.toEqual({
        duplicate: true,
      });
    }
    expect(applied).toHaveLength(20);
    const rows = await sql<{ n: number }>`select count(*) as n from ${sql.table(table)}`.execute(
      await d.internals.systemDb(),
    );
    expect(Number(rows.rows[0]?.n)).toBe(20);
  });

  it('retries with backoff, then makes a poison event dead with its error and an audit row; replay is audited', async () => {
    const tenant = unique('t');
    let failing = true;
    const { sink, published } = recordingSink(() =>
      failing ? new Error('broker said no') : undefined,
    );
    const d = suite.make({
      outbox: { routes: [{ topic: 'p', sink: 's' }], sinks: { s: sink }, maxAttempts: 3 },
    });
    const e = await d.withTransaction(tenant, (tx) =>
      d.outbox.add(tx, { topic: 'p', payload: {} }),
    );
    const relay = await d.outbox.createRelay({ retry: { baseMs: 1, capMs: 5 } });
    for (let i = 0; i < 3; i++) {
      await waitFor(async () => (await relay.runOnce()) === 1, { what: `attempt ${i + 1}` });
      const cur = await d.outbox.get(e.id, { tenant });
      expect(cur.status).toBe(i < 2 ? 'failed' : 'dead');
      expect(cur.lastError).toContain('broker said no');
    }
    expect(await relay.runOnce()).toBe(0); // dead stays dead
    const audit = await d.audit.list(
      { resourceType: 'outbox_event', resourceId: e.id },
      { tenant },
    );
    expect(audit.items.map((a) => a.action)).toEqual(['outbox.event_dead']);
    failing = false;
    await expect(d.outbox.replay(e.id, { tenant, actor: 'user:ops' })).resolves.toMatchObject({
      status: 'pending',
      attempts: 0,
    });
    await expect(d.outbox.replay(e.id, { tenant })).rejects.toMatchObject({
      code: 'OUTBOX_EVENT_NOT_DEAD',
    });
    expect(await relay.runOnce()).toBe(1);
    expect(published.map((x) => x.id)).toEqual([e.id]);
    const after = await d.audit.list(
      { resourceType: 'outbox_event', resourceId: e.id },
      { tenant },
    );
    expect(after.items.map((a) => a.action).sort()).toEqual([
      'outbox.event_dead',
      'outbox.event_replayed',
    ]);
    // A permanent refusal is dead at once.
    const { sink: refusing } = recordingSink(() => new PermanentSinkError('schema rejected'));
    const d2 = suite.make({
      outbox: { routes: [{ topic: 'q', sink: 'r' }], sinks: { r: refusing } },
    });
    const e2 = await d2.withTransaction(tenant, (tx) =>
      d2.outbox.add(tx, { topic: 'q', payload: {} }),
    );
    expect(await (await d2.outbox.createRelay()).runOnce()).toBe(1);
    expect(await d2.outbox.get(e2.id, { tenant })).toMatchObject({ status: 'dead', attempts: 1 });
  });

  it("publishes a key's events in order, a later one waiting for an earlier failed one", async () => {
    const tenant = unique('t');
    let failuresLeft = 2;
    const { sink, published } = recordingSink((e) =>
      (e.payload as { n: number }).n === 0 && failuresLeft-- > 0 ? new Error('flaky') : undefined,
    );
    const d = suite.make({
      outbox: { routes: [{ topic: 'acct.*', sink: 's' }], sinks: { s: sink } },
    });
    await d.withTransaction(tenant, (tx) =>
      d.outbox.addMany(tx, [
        ...[0, 1, 2].map((n) => ({ topic: 'acct.changed', key: 'A', payload: { n } })),
        { topic: 'acct.changed', key: 'B', payload: { n: 10 } },
        { topic: 'acct.changed', payload: { n: 20 } },
      ]),
    );
    const relay = await d.outbox.createRelay({ retry: { baseMs: 1, capMs: 2 } });
    await waitFor(
      async () => {
        await relay.runOnce();
        return published.length === 5;
      },
      { what: 'every event' },
    );
    const ofA = published.filter((e) => e.key === 'A').map((e) => (e.payload as { n: number }).n);
    expect(ofA).toEqual([0, 1, 2]);
    // B and the keyless event did not wait for A's failures.
    const order = published.map((e) => (e.payload as { n: number }).n);
    expect(order.indexOf(10)).toBeLessThan(order.indexOf(0));
    expect(order.indexOf(20)).toBeLessThan(order.indexOf(0));
  });

  it('leaves an event without a route pending and visible, not dropped', async () => {
    const tenant = unique('t');
    const { sink } = recordingSink();
    const d = suite.make({
      outbox: { routes: [{ topic: 'known', sink: 's' }], sinks: { s: sink } },
    });
    const e = await d.withTransaction(tenant, (tx) =>
      d.outbox.add(tx, { topic: 'unknown.topic', payload: {} }),
    );
    expect(await (await d.outbox.createRelay()).runOnce()).toBe(0);
    expect(
      (await d.outbox.list({ status: ['pending'] }, { tenant })).items.map((x) => x.id),
    ).toEqual([e.id]);
  });

  it('takes over an expired lease of a relay that died mid-batch', async () => {
    const tenant = unique('t');
    const { sink, published } = recordingSink();
    // The docket's own clock, so a loaded host cannot let the lease run out before the check.
    const clock = new ManualClock(Date.now());
    const d = suite.make({
      clock,
      outbox: { routes: [{ topic: 'l', sink: 's' }], sinks: { s: sink } },
    });
    const e = await d.withTransaction(tenant, (tx) =>
      d.outbox.add(tx, { topic: 'l', payload: {} }),
    );
    // A relay claims it and dies (never publishes, never releases).
    const { OutboxStore } = await import('../../src/outbox/store.js');
    const rows = new OutboxStore(await d.internals.store());
    const claimed = await rows.claim({
      owner: 'dead-relay',
      now: clock.now(),
      leaseMs: 100,
      limit: 10,
      patterns: ['l'],
      ordered: true,
    });
    expect(claimed.map((c) => c.id)).toEqual([e.id]);
    const relay = await d.outbox.createRelay();
    expect(await relay.runOnce()).toBe(0); // still leased
    clock.advance(150);
    expect(await relay.runOnce()).toBe(1);
    expect(published.map((p) => p.id)).toEqual([e.id]);
    expect(await d.outbox.get(e.id, { tenant })).toMatchObject({
      status: 'published',
      attempts: 2,
    });
    // The dead relay's late write is refused by its lost lease.
    expect(
      await rows.markPublished({
        owner: 'dead-relay',
        event: claimed[0] as OutboxEvent,
        sinksDone: ['s'],
        now: clock.now(),
      }),
    ).toBe(false);
    await rows.close();
  });

  it('lets three relays drain 600 events together with none published twice', async () => {
    const tenant = unique('t');
    const seen = new Map<string, number>();
    const sink: OutboxSink = {
      async publish(e) {
        seen.set(e.id, (seen.get(e.id) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 1));
        return {};
      },
    };
    const make = () =>
      suite.make({ outbox: { routes: [{ topic: 'bulk', sink: 's' }], sinks: { s: sink } } });
    const producer = make();
    for (let i = 0; i < 6; i++) {
      await producer.withTransaction(tenant, (tx) =>
        producer.outbox.addMany(
          tx,
          Array.from({ length: 100 }, (_, n) => ({ topic: 'bulk', payload: { n } })),
        ),
      );
    }
    const relays = await Promise.all(
      [make(), make(), make()].map((d) =>
        d.outbox.createRelay({ batchSize: 25, pollIntervalMs: 20 }),
      ),
    );
    for (const r of relays) await r.start();
    await waitFor(async () => (await producer.outbox.counts({ tenant })).published === 600, {
      timeoutMs: 60_000,
      what: 'all 600 events published',
    });
    for (const r of relays) await r.stop();
    expect(seen.size).toBe(600);
    expect([...seen.values()].filter((n) => n !== 1)).toEqual([]);
  });

  describe('webhook sink against a local HTTP server', () => {
    let server: Server;
    let url: string;
    const got: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
    let answer = 200;
    beforeAll(async () => {
      server = createServer((req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          got.push({ headers: req.headers, body });
          res.writeHead(answer);
          res.end();
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      url = `http://localhost:${(server.address() as AddressInfo).port}/hook`;
    });
    afterAll(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });

    it('signs, sends the event id as Idempotency-Key, retries 500 and dies on 400; localhost needs the allowlist', async () => {
      const tenant = unique('t');
      const outbox = {
        routes: [{ topic: 'invoice.*', sink: 'hook' }],
        sinks: { hook: { kind: 'webhook' as const, url, secret: 'whsec_1', timeoutMs: 2_000 } },
        maxAttempts: 2,
      };
      const blocked = suite.make({ outbox });
      const e0 = await blocked.withTransaction(tenant, (tx) =>
        blocked.outbox.add(tx, { topic: 'invoice.paid', payload: {} }),
      );
      expect(await (await blocked.outbox.createRelay()).runOnce()).toBe(1);
      expect(await blocked.outbox.get(e0.id, { tenant })).toMatchObject({
        status: 'dead',
        lastError: expect.stringContaining('WEBHOOK_URL_REFUSED'),
      });
      expect(got).toHaveLength(0);

      const d = suite.make({ outbox, webhooks: { allow: ['localhost'] } });
      const e = await d.withTransaction(tenant, (tx) =>
        d.outbox.add(tx, { topic: 'invoice.paid', key: 'inv_1', payload: { amount: 5 } }),
      );
      const relay = await d.outbox.createRelay({ retry: { baseMs: 1, capMs: 2 } });
      answer = 500;
      expect(await relay.runOnce()).toBe(1);
      expect((await d.outbox.get(e.id, { tenant })).status).toBe('failed');
      answer = 200;
      await waitFor(async () => (await relay.runOnce()) === 1, { what: 'the retry' });
      expect((await d.outbox.get(e.id, { tenant })).status).toBe('published');
      expect(got).toHaveLength(2);
      const last = got[1] as { headers: IncomingHttpHeaders; body: string };
      expect(last.headers['idempotency-key']).toBe(e.id);
      expect(JSON.parse(last.body)).toMatchObject({
        id: e.id,
        topic: 'invoice.paid',
        key: 'inv_1',
        payload: { amount: 5 },
      });
      expect(
        verifyWebhookSignature(
          'whsec_1',
          String(last.headers['docket-signature']),
          last.body,
          Math.floor(Date.now() / 1000),
        ),
      ).toBe(true);
      answer = 400;
      const e2 = await d.withTransaction(tenant, (tx) =>
        d.outbox.add(tx, { topic: 'invoice.void', payload: {} }),
      );
      expect(await relay.runOnce()).toBe(1);
      expect(await d.outbox.get(e2.id, { tenant })).toMatchObject({ status: 'dead', attempts: 1 });
    });
  });
});
