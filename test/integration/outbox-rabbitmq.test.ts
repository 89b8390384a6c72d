// The RabbitMQ sink against the real broker (SPEC O-6): events added in a transaction reach a
// durable queue through a relay as persistent messages with message id = event id and their
// headers, accepted only once the broker confirmed them; a nack (a full queue refusing
// publishes), an unroutable message, a missing exchange and an unreachable broker leave the
// event failed with a clear error and retried, never lost; after a lost connection the next
// publish opens a new one; bad configuration is refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKENDS, useDocketSuite, waitFor } from '../helpers/backends.js';
import {
  closedPort,
  expectSinkRefused,
  rabbitAdmin,
  RABBITMQ_URL,
  startTcpProxy,
  uniqueName,
  type RabbitAdmin,
} from '../helpers/brokers.js';

describe.each(BACKENDS)('RabbitMQ sink on %s', (backend) => {
  const suite = useDocketSuite(backend);
  let admin: RabbitAdmin;
  beforeAll(async () => {
    admin = await rabbitAdmin();
  });
  afterAll(async () => {
    await admin?.close();
  });

  /** An exchange and queue of the test's own, and a Docket routing `order.*` to them. */
  async function setup(
    o: { url?: string; bindingKey?: string; queueArgs?: Record<string, unknown> } = {},
  ) {
    const exchange = uniqueName('docket_test_x');
    const queue = `${exchange}_q`;
    await admin.createTopology(exchange, queue, o.bindingKey ?? 'order.#', o.queueArgs);
    const tenant = uniqueName('t');
    const sink = {
      kind: 'rabbitmq' as const,
      url: o.url ?? RABBITMQ_URL,
      exchange,
      timeoutMs: 2000,
      connectTimeoutMs: 1000,
    };
    const d = suite.make({
      outbox: { routes: [{ topic: 'order.*', sink: 'rabbit' }], sinks: { rabbit: sink } },
    });
    const relay = await d.outbox.createRelay({ retry: { baseMs: 1, capMs: 2 } });
    return { exchange, queue, tenant, sink, d, relay };
  }

  it('publishes added events as persistent, confirmed messages with message id = event id and the headers', async () => {
    const { queue, tenant, d, relay } = await setup();
    const events = await d.withTransaction(tenant, (tx) =>
      d.outbox.addMany(tx, [
        {
          topic: 'order.placed',
          key: 'o1',
          payload: { id: 'o1', total: 42 },
          headers: { 'schema-version': '3' },
        },
        { topic: 'order.paid', payload: { id: 'o2' } },
      ]),
    );
    expect(await relay.runOnce()).toBe(2);
    expect((await d.outbox.counts({ tenant })).published).toBe(2);
    const msgs = await admin.drain(queue);
    expect(msgs).toHaveLength(2);
    const byId = new Map(msgs.map((m) => [m.properties.messageId as string, m]));
    for (const e of events) {
      const m = byId.get(e.id);
      expect(m, `message of ${e.id}`).toBeDefined();
      expect(m?.fields.routingKey).toBe(e.topic);
      expect(m?.properties).toMatchObject({
        deliveryMode: 2, // persistent
        contentType: 'application/json',
        type: e.topic,
        appId: 'docket',
        timestamp: Math.floor(e.createdAt / 1000),
      });
      expect(m?.properties.headers).toMatchObject({
        'Docket-Event-Id': e.id,
        'Docket-Event-Topic': e.topic,
        'Docket-Tenant': tenant,
        'Docket-Trace-Id': e.traceId,
      });
      expect(JSON.parse(m?.content.toString() ?? '')).toEqual({
        id: e.id,
        tenant,
        topic: e.topic,
        key: e.key,
        payload: e.payload,
        createdAt: new Date(e.createdAt).toISOString(),
      });
    }
    expect(byId.get(events[0]?.id ?? '')?.properties.headers).toMatchObject({
      'Docket-Event-Key': 'o1',
      'schema-version': '3',
    });
  });

  it('counts a nack as a refusal: a full queue that rejects publishes leaves the event failed until there is room', async () => {
    const { queue, tenant, d, relay } = await setup({
      queueArgs: { 'x-max-length': 1, 'x-overflow': 'reject-publish' },
    });
    const [first] = await d.withTransaction(tenant, (tx) =>
      d.outbox.addMany(tx, [{ topic: 'order.placed', payload: { n: 1 } }]),
    );
    expect(await relay.runOnce()).toBe(1);
    const second = await d.withTransaction(tenant, (tx) =>
      d.outbox.add(tx, { topic: 'order.placed', payload: { n: 2 } }),
    );
    expect(await relay.runOnce()).toBe(1);
    expect((await d.outbox.get(first?.id ?? '', { tenant })).status).toBe('published');
    const refused = await d.outbox.get(second.id, { tenant });
    expect(refused.status).toBe('failed');
    expect(refused.lastError).toContain('rabbit: RabbitMQ refused the message (nack)');
    // A consumer makes room; the retry is confirmed.
    expect((await admin.drain(queue)).map((m) => m.properties.messageId)).toEqual([first?.id]);
    await waitFor(async () => (await relay.runOnce()) === 1, { what: 'the retry' });
    expect((await d.outbox.get(second.id, { tenant })).status).toBe('published');
    expect((await admin.drain(queue)).map((m) => m.properties.messageId)).toEqual([second.id]);
  });

  it('refuses an unroutable message (no queue bound) and a missing exchange, then publishes once they exist', async () => {
    const { exchange, queue, tenant, d, relay } = await setup({ bindingKey: 'other.#' });
    const e = await d.withTransaction(tenant, (tx) =>
      d.outbox.add(tx, { topic: 'order.placed', payload: {} }),
    );
    expect(await relay.runOnce()).toBe(1);
    const unroutable = await d.outbox.get(e.id, { tenant });
    expect(unroutable.status).toBe('failed');
    expect(unroutable.lastError).toContain(
      `RabbitMQ returned the message as unroutable: no queue is bound to exchange "${exchange}" with routing key "order.placed"`,
    );
    await admin.channel.bindQueue(queue, exchange, 'order.#');
    await waitFor(async () => (await relay.runOnce()) === 1, { what: 'the retry' });
    expect((await d.outbox.get(e.id, { tenant })).status).toBe('published');
    expect(await admin.drain(queue)).toHaveLength(1);

    // An exchange that does not exist closes the channel (404); the next publish opens a new one.
    const missing = uniqueName('docket_test_missing');
    const d2 = suite.make({
      outbox: {
        routes: [{ topic: 'order.*', sink: 'rabbit' }],
        sinks: { rabbit: { kind: 'rabbitmq', url: RABBITMQ_URL, exchange: missing } },
      },
    });
    const e2 = await d2.withTransaction(tenant, (tx) =>
      d2.outbox.add(tx, { topic: 'order.placed', payload: {} }),
    );
    const relay2 = await d2.outbox.createRelay({ retry: { baseMs: 1, capMs: 2 } });
    expect(await relay2.runOnce()).toBe(1);
    const noExchange = await d2.outbox.get(e2.id, { tenant });
    expect(noExchange.status).toBe('failed');
    expect(noExchange.lastError).toContain(`NOT_FOUND - no exchange '${missing}'`);
    await admin.createTopology(missing, `${missing}_q`, '#');
    await waitFor(async () => (await relay2.runOnce()) === 1, { what: 'the retry' });
    expect((await d2.outbox.get(e2.id, { tenant })).status).toBe('published');
    expect((await admin.drain(`${missing}_q`)).map((m) => m.properties.messageId)).toEqual([e2.id]);
  });

  it('leaves the event failed with a clear error when RabbitMQ is unreachable, and publishes it on a retry', async () => {
    const port = await closedPort();
    const down = `amqp://guest:secret@127.0.0.1:${port}`;
    const { queue, tenant, d, relay, sink } = await setup({ url: down });
    const e = await d.withTransaction(tenant, (tx) =>
      d.outbox.add(tx, { topic: 'order.placed', payload: {} }),
    );
    expect(await relay.runOnce()).toBe(1);
    const failed = await d.outbox.get(e.id, { tenant });
    expect(failed).toMatchObject({ status: 'failed', attempts: 1 });
    expect(failed.lastError).toContain(
      `rabbit: RabbitMQ unreachable at amqp://guest:***@127.0.0.1:${port}`,
    );
    expect(failed.lastError).toContain('ECONNREFUSED');
    expect(failed.lastError).not.toContain('secret');
    const up = suite.make({
      outbox: {
        routes: [{ topic: 'order.*', sink: 'rabbit' }],
        sinks: { rabbit: { ...sink, url: RABBITMQ_URL } },
      },
    });
    const relay2 = await up.outbox.createRelay({ retry: { baseMs: 1, capMs: 2 } });
    await waitFor(async () => (await relay2.runOnce()) === 1, { what: 'the retry' });
    expect(await up.outbox.get(e.id, { tenant })).toMatchObject({
      status: 'published',
      attempts: 2,
    });
    expect((await admin.drain(queue)).map((m) => m.properties.messageId)).toEqual([e.id]);
  });

  it('opens a new connection after the old one was lost', async () => {
    const proxy = await startTcpProxy(Number(new URL(RABBITMQ_URL).port || 5672));
    try {
      const u = new URL(RABBITMQ_URL);
      u.host = `127.0.0.1:${proxy.port}`;
      const { queue, tenant, d, relay } = await setup({ url: u.toString() });
      const add = (n: number) =>
        d.withTransaction(tenant, (tx) =>
          d.outbox.add(tx, { topic: 'order.placed', payload: { n } }),
        );
      const a = await add(1);
      expect(await relay.runOnce()).toBe(1);
      expect(proxy.accepted).toBe(1);
      proxy.cut(); // the network drops the connection
      const b = await add(2);
      await waitFor(
        async () => {
          await relay.runOnce();
          return (await d.outbox.get(b.id, { tenant })).status === 'published';
        },
        { what: 'the event after the cut' },
      );
      expect(proxy.accepted).toBe(2);
      expect((await admin.drain(queue)).map((m) => m.properties.messageId)).toEqual([a.id, b.id]);
    } finally {
      await proxy.close();
    }
  });

  it('refuses bad RabbitMQ sink configuration with CONFIG_INVALID', () => {
    const bad = (sink: Record<string, unknown>, field: string) =>
      expectSinkRefused((o) => suite.make(o), sink, field);
    bad({ kind: 'rabbitmq', exchange: 'x' }, 'url');
    bad({ kind: 'rabbitmq', url: 'http://127.0.0.1:5672', exchange: 'x' }, 'url');
    bad({ kind: 'rabbitmq', url: RABBITMQ_URL }, 'exchange');
    bad({ kind: 'rabbitmq', url: RABBITMQ_URL, exchange: 'x', routingKey: '{key}' }, 'routingKey');
    bad({ kind: 'rabbitmq', url: RABBITMQ_URL, exchange: 'x', timeoutMs: -1 }, 'timeoutMs');
    bad({ kind: 'rabbitmq', url: RABBITMQ_URL, exchange: 'x', mandatory: 'yes' }, 'mandatory');
  });
});
