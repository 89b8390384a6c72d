// The NATS JetStream sink against the real server (SPEC O-6): events added in a transaction
// reach a stream through a relay with message id = event id and their headers; a republished
// event (its relay died after publishing, before marking it) is stored once thanks to the
// stream's duplicate window; an unreachable server or a subject no stream binds leaves the
// event failed with a clear error and retried, never lost; bad configuration is refused. A
// batch goes out in one call and each of its events gets its own answer (stored, duplicate,
// refused, timed out).
import { randomBytes, randomUUID } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PermanentSinkError, type OutboxEvent } from '../../src/index.js';
import { natsSink } from '../../src/outbox/sink-nats.js';
import { OutboxStore } from '../../src/outbox/store.js';
import { BACKENDS, useDocketSuite, waitFor } from '../helpers/backends.js';
import {
  closedPort,
  expectSinkRefused,
  natsAdmin,
  NATS_URL,
  startTcpProxy,
  uniqueName,
  type NatsAdmin,
} from '../helpers/brokers.js';

describe.each(BACKENDS)('NATS JetStream sink on %s', (backend) => {
  const suite = useDocketSuite(backend);
  let admin: NatsAdmin;
  beforeAll(async () => {
    admin = await natsAdmin();
  });
  afterAll(async () => {
    await admin?.close();
  });

  /** A stream of the test's own on `<prefix>.>` and a Docket routing `topic` to it. */
  async function setup(o: { stream?: boolean; servers?: string } = {}) {
    const prefix = uniqueName('docket_test');
    const stream = prefix.toUpperCase();
    if (o.stream !== false) await admin.createStream(stream, [`${prefix}.>`]);
    const tenant = uniqueName('t');
    const sink = {
      kind: 'nats' as const,
      servers: o.servers ?? NATS_URL,
      subject: `${prefix}.{tenant}.{topic}`,
      timeoutMs: 2000,
      connectTimeoutMs: 1000,
    };
    const d = suite.make({
      outbox: { routes: [{ topic: 'order.*', sink: 'nats' }], sinks: { nats: sink } },
    });
    return { prefix, stream, tenant, sink, d };
  }

  it('publishes added events to the stream with message id = event id, the envelope and the headers', async () => {
    const { stream, tenant, d, prefix } = await setup();
    const events = await d.withTransaction(tenant, (tx) =>
      d.outbox.addMany(tx, [
        {
          topic: 'order.placed',
          key: 'o1',
          payload: { id: 'o1', total: 42 },
          headers: { 'content-type': 'application/json', 'schema-version': '3' },
        },
        { topic: 'order.paid', payload: { id: 'o2' } },
        { topic: 'order.shipped', key: 'o3', payload: null },
      ]),
    );
    const relay = await d.outbox.createRelay();
    expect(await relay.runOnce()).toBe(3);
    expect((await d.outbox.counts({ tenant })).published).toBe(3);

    const msgs = await admin.messages(stream);
    expect(msgs).toHaveLength(3);
    const byId = new Map(msgs.map((m) => [m.header.get('Nats-Msg-Id'), m]));
    for (const e of events) {
      const m = byId.get(e.id);
      expect(m, `message of ${e.id}`).toBeDefined();
      expect(m?.subject).toBe(`${prefix}.${tenant}.${e.topic}`);
      expect(m?.header.get('Docket-Event-Id')).toBe(e.id);
      expect(m?.header.get('Docket-Event-Topic')).toBe(e.topic);
      expect(m?.header.get('Docket-Tenant')).toBe(tenant);
      expect(m?.header.get('Docket-Trace-Id')).toBe(e.traceId);
      expect(m?.header.get('Docket-Event-Key')).toBe(e.key ?? '');
      expect(m?.json()).toEqual({
        id: e.id,
        tenant,
        topic: e.topic,
        key: e.key,
        payload: e.payload,
        createdAt: new Date(e.createdAt).toISOString(),
      });
    }
    const first = byId.get(events[0]?.id ?? '');
    expect(first?.header.get('content-type')).toBe('application/json');
    expect(first?.header.get('schema-version')).toBe('3');
  });

  it('stores a republished event once: the relay died after publishing, the next one publishes it again', async () => {
    const { stream, tenant, d, sink } = await setup();
    const e = await d.withTransaction(tenant, (tx) =>
      d.outbox.add(tx, { topic: 'order.placed', payload: { n: 1 } }),
    );
    // The first relay claims the event, publishes it, and dies before marking it published.
    const rows = new OutboxStore(await d.internals.store());
    const [claimed] = await rows.claim({
      owner: 'crashed-relay',
      now: Date.now(),
      leaseMs: 100,
      limit: 10,
      patterns: ['order.*'],
      ordered: true,
    });
    await rows.close();
    expect(claimed?.id).toBe(e.id);
    const direct = natsSink(sink);
    try {
      const receipt = await direct.publish(claimed as OutboxEvent, new AbortController().signal);
      expect(receipt.ref).toBe(`${stream}:1`);
      // Publishing the same event again straight away: JetStream answers "duplicate", accepted.
      const again = await direct.publish(claimed as OutboxEvent, new AbortController().signal);
      expect(again.ref).toBe(`${stream}:1 (duplicate)`);
    } finally {
      await direct.close?.();
    }
    // Its lease expires; a live relay takes the event over and publishes it again.
    await new Promise((r) => setTimeout(r, 150));
    const relay = await d.outbox.createRelay();
    expect(await relay.runOnce()).toBe(1);
    expect(await d.outbox.get(e.id, { tenant })).toMatchObject({
      status: 'published',
      attempts: 2,
    });
    const msgs = await admin.messages(stream);
    expect(msgs.map((m) => m.header.get('Nats-Msg-Id'))).toEqual([e.id]);
  });

  it('leaves the event failed with a clear error when NATS is unreachable, and publishes it on a retry', async () => {
    const down = `nats://127.0.0.1:${await closedPort()}`;
    const { stream, tenant, d, prefix, sink } = await setup({ servers: down });
    const e = await d.withTransaction(tenant, (tx) =>
      d.outbox.add(tx, { topic: 'order.placed', payload: {} }),
    );
    const relay = await d.outbox.createRelay({ retry: { baseMs: 1, capMs: 2 } });
    expect(await relay.runOnce()).toBe(1);
    const failed = await d.outbox.get(e.id, { tenant });
    expect(failed).toMatchObject({ status: 'failed', attempts: 1 });
    expect(failed.lastError).toContain(`nats: NATS unreachable at ${down}`);
    // The server is back (here: the right address): the retry publishes it.
    const up = suite.make({
      outbox: {
        routes: [{ topic: 'order.*', sink: 'nats' }],
        sinks: { nats: { ...sink, servers: NATS_URL, subject: `${prefix}.{tenant}.{topic}` } },
      },
    });
    const relay2 = await up.outbox.createRelay({ retry: { baseMs: 1, capMs: 2 } });
    await waitFor(async () => (await relay2.runOnce()) === 1, { what: 'the retry' });
    expect(await up.outbox.get(e.id, { tenant })).toMatchObject({
      status: 'published',
      attempts: 2,
    });
    expect((await admin.messages(stream)).map((m) => m.header.get('Nats-Msg-Id'))).toEqual([e.id]);
  });

  it('retries an event whose subject no stream binds (503 no responders) until a stream does', async () => {
    const { stream, tenant, d, prefix } = await setup({ stream: false });
    const e = await d.withTransaction(tenant, (tx) =>
      d.outbox.add(tx, { topic: 'order.placed', payload: {} }),
    );
    const relay = await d.outbox.createRelay({ retry: { baseMs: 1, capMs: 2 } });
    expect(await relay.runOnce()).toBe(1);
    const failed = await d.outbox.get(e.id, { tenant });
    expect(failed.status).toBe('failed');
    expect(failed.lastError).toContain(
      `no JetStream stream stores subject "${prefix}.${tenant}.order.placed"`,
    );
    await admin.createStream(stream, [`${prefix}.>`]);
    await waitFor(async () => (await relay.runOnce()) === 1, { what: 'the retry' });
    expect((await d.outbox.get(e.id, { tenant })).status).toBe('published');
    expect(await admin.messages(stream)).toHaveLength(1);
  });

  it('publishes again after the connection was lost (the client reconnects), and closes', async () => {
    const proxy = await startTcpProxy(Number(new URL(NATS_URL).port || 4222));
    try {
      const { stream, tenant, d } = await setup({ servers: `nats://127.0.0.1:${proxy.port}` });
      const add = (n: number) =>
        d.withTransaction(tenant, (tx) =>
          d.outbox.add(tx, { topic: 'order.placed', payload: { n } }),
        );
      const relay = await d.outbox.createRelay({ retry: { baseMs: 1, capMs: 2 } });
      const a = await add(1);
      expect(await relay.runOnce()).toBe(1);
      proxy.cut(); // the network drops the connection
      const b = await add(2);
      await waitFor(
        async () => {
          await relay.runOnce();
          return (await d.outbox.get(b.id, { tenant })).status === 'published';
        },
        { what: 'the event after the cut' },
      );
      expect(proxy.accepted).toBeGreaterThanOrEqual(2);
      expect((await admin.messages(stream)).map((m) => m.header.get('Nats-Msg-Id'))).toEqual([
        a.id,
        b.id,
      ]);
      proxy.cut();
      await d.close(); // returns although the connection is down
    } finally {
      await proxy.close();
    }
  });

  it('refuses bad NATS sink configuration with CONFIG_INVALID', () => {
    const bad = (sink: Record<string, unknown>, field: string) =>
      expectSinkRefused((o) => suite.make(o), sink, field);
    bad({ kind: 'nats' }, 'servers');
    bad({ kind: 'nats', servers: [] }, 'servers');
    bad({ kind: 'nats', servers: NATS_URL, subject: 'a.{key}' }, 'subject');
    bad({ kind: 'nats', servers: NATS_URL, subject: 'a..{topic}' }, 'subject');
    bad({ kind: 'nats', servers: NATS_URL, subject: 'a.>' }, 'subject');
    bad({ kind: 'nats', servers: NATS_URL, stream: 'a.b' }, 'stream');
    bad({ kind: 'nats', servers: NATS_URL, timeoutMs: 0 }, 'timeoutMs');
    bad({ kind: 'natz', servers: NATS_URL }, 'kind');
  });
});

describe('NATS JetStream sink batches', () => {
  let admin: NatsAdmin;
  beforeAll(async () => {
    admin = await natsAdmin();
  });
  afterAll(async () => {
    await admin?.close();
  });

  const event = (topic: string, n: number): OutboxEvent => ({
    id: randomUUID(),
    tenantId: 'batch',
    topic,
    key: null,
    payload: { n },
    headers: {},
    traceId: randomBytes(16).toString('hex'),
    status: 'publishing',
    attempts: 1,
    maxAttempts: 5,
    availableAt: 0,
    leaseOwner: 'test',
    leaseUntil: null,
    lastError: null,
    sinksDone: [],
    createdAt: Date.now(),
    updatedAt: Date.now(),
    publishedAt: null,
  });
  const signal = () => new AbortController().signal;

  it('sends a batch in one call and answers each event: stored, duplicate, or refused on its own', async () => {
    const prefix = uniqueName('docket_batch');
    const stream = prefix.toUpperCase();
    await admin.createStream(stream, [`${prefix}.>`]);
    const sink = natsSink({ servers: NATS_URL, subject: `${prefix}.{topic}`, timeoutMs: 2000 });
    try {
      const good = Array.from({ length: 40 }, (_, n) => event('order.placed', n));
      // A topic whose subject has an empty token: NATS can never carry it.
      const unsendable = event('order..placed', 99);
      const batch = [...good.slice(0, 20), unsendable, ...good.slice(20), good[3] as OutboxEvent];
      const outcomes = await sink.publishMany?.(batch, signal());
      expect(outcomes).toHaveLength(batch.length);
      const refs = (outcomes ?? []).map((o) => (o.ok ? o.receipt.ref : undefined));
      // Every good event stored once, in order; the repeat of good[3] is JetStream's duplicate.
      expect(refs.slice(0, 20)).toEqual(good.slice(0, 20).map((_, k) => `${stream}:${k + 1}`));
      expect(refs.slice(21, 41)).toEqual(good.slice(20).map((_, k) => `${stream}:${k + 21}`));
      expect(refs[41]).toBe(`${stream}:4 (duplicate)`);
      const refused = outcomes?.[20];
      expect(refused?.ok).toBe(false);
      expect(refused && !refused.ok && refused.error).toBeInstanceOf(PermanentSinkError);
      const stored = await admin.messages(stream);
      expect(stored.map((m) => m.header.get('Nats-Msg-Id'))).toEqual(good.map((e) => e.id));
    } finally {
      await sink.close?.();
    }
  });

  it('refuses every event of a batch JetStream refuses (expected stream) and times out unanswered ones', async () => {
    const prefix = uniqueName('docket_batch');
    await admin.createStream(prefix.toUpperCase(), [`${prefix}.>`]);
    const wrong = natsSink({ servers: NATS_URL, subject: `${prefix}.{topic}`, stream: 'NOT_IT' });
    // A plain subscriber on the subject answers nothing: no 503, no PubAck, so the batch times out.
    const nc = await connect({ servers: NATS_URL });
    nc.subscribe(`${prefix}_silent.>`, { callback: () => undefined });
    const silent = natsSink({
      servers: NATS_URL,
      subject: `${prefix}_silent.{topic}`,
      timeoutMs: 300,
    });
    try {
      const refusedAll = await wrong.publishMany?.([event('a', 1), event('b', 2)], signal());
      for (const o of refusedAll ?? []) {
        expect(o.ok).toBe(false);
        expect(!o.ok && (o.error as Error).message).toMatch(
          new RegExp(
            `JetStream refused subject "${prefix}\\.[ab]": .*expected stream.*\\(err_code \\d+\\)`,
          ),
        );
      }
      const started = Date.now();
      const timedOut = await silent.publishMany?.([event('c', 3), event('d', 4)], signal());
      expect(Date.now() - started).toBeLessThan(2000);
      for (const o of timedOut ?? []) {
        expect(!o.ok && (o.error as Error).message).toMatch(
          /no PubAck for subject .* within 300 ms/,
        );
      }
      // A stopped relay's batch ends at once.
      const stop = new AbortController();
      const pending = silent.publishMany?.([event('e', 5)], stop.signal);
      stop.abort();
      const [aborted] = (await pending) ?? [];
      expect(!aborted?.ok && (aborted?.error as Error).message).toMatch(/relay stopped/);
    } finally {
      await wrong.close?.();
      await silent.close?.();
      await nc.close();
    }
  });
});
