// The real message brokers the sink tests talk to (NATS with JetStream on :4222, RabbitMQ on
// :5672), each test making streams, exchanges and queues of its own under unique names and
// deleting them afterwards; plus a TCP proxy a test can cut to lose a connection for real. An
// unreachable broker fails the test (as an unreachable PostgreSQL or Redis does), never skips it.
import { randomBytes } from 'node:crypto';
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager, type StoredMsg } from '@nats-io/jetstream';
import amqp, { type Channel, type ChannelModel, type GetMessage } from 'amqplib';
import { expect } from 'vitest';
import type { OutboxOptions } from '../../src/index.js';
import { freePort } from './redis-server.js';

/** NATS server URL for tests. */
export const NATS_URL = process.env.DOCKET_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
/** RabbitMQ URL for tests. */
export const RABBITMQ_URL =
  process.env.DOCKET_TEST_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** A name no other test (or test run) uses. */
export const uniqueName = (prefix: string) => `${prefix}_${randomBytes(5).toString('hex')}`;

/** A JetStream admin connection that deletes the streams it made on `close()`. */
export interface NatsAdmin {
  jsm: JetStreamManager;
  /** Creates a stream storing `subjects` (duplicate window 2 minutes). */
  createStream(name: string, subjects: string[]): Promise<void>;
  /** Every message of a stream, in order. */
  messages(stream: string): Promise<StoredMsg[]>;
  /** Deletes the streams this admin created and disconnects. */
  close(): Promise<void>;
}

/** Connects to the test NATS server (a clear failure when it is unreachable). */
export async function natsAdmin(): Promise<NatsAdmin> {
  let nc: NatsConnection;
  try {
    nc = await connect({ servers: NATS_URL, timeout: 3000 });
  } catch (err) {
    throw new Error(
      `NATS with JetStream is required for the NATS sink suite (${NATS_URL}): ${(err as Error).message}`,
    );
  }
  const jsm = await jetstreamManager(nc);
  const made: string[] = [];
  return {
    jsm,
    async createStream(name, subjects) {
      await jsm.streams.add({ name, subjects, duplicate_window: 120_000_000_000 });
      made.push(name);
    },
    async messages(stream) {
      const info = await jsm.streams.info(stream);
      const out: StoredMsg[] = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(stream, { seq });
        if (m) out.push(m);
      }
      return out;
    },
    async close() {
      for (const s of made) await jsm.streams.delete(s).catch(() => undefined);
      await nc.close();
    },
  };
}

/** A RabbitMQ admin channel that deletes the exchanges and queues it made on `close()`. */
export interface RabbitAdmin {
  channel: Channel;
  /** A durable topic exchange and a durable queue bound to it with `bindingKey`. */
  createTopology(
    exchange: string,
    queue: string,
    bindingKey: string,
    queueArgs?: Record<string, unknown>,
  ): Promise<void>;
  /** Takes every message now in a queue (acknowledged). */
  drain(queue: string): Promise<GetMessage[]>;
  /** Deletes what this admin created and disconnects. */
  close(): Promise<void>;
}

/** Connects to the test RabbitMQ (a clear failure when it is unreachable). */
export async function rabbitAdmin(): Promise<RabbitAdmin> {
  let model: ChannelModel;
  try {
    model = await amqp.connect(RABBITMQ_URL, { timeout: 3000 });
  } catch (err) {
    throw new Error(
      `RabbitMQ is required for the RabbitMQ sink suite (${RABBITMQ_URL}): ${(err as Error).message}`,
    );
  }
  model.on('error', () => undefined);
  const channel = await model.createChannel();
  const exchanges: string[] = [];
  const queues: string[] = [];
  return {
    channel,
    async createTopology(exchange, queue, bindingKey, queueArgs) {
      await channel.assertExchange(exchange, 'topic', { durable: true });
      exchanges.push(exchange);
      await channel.assertQueue(queue, { durable: true, arguments: queueArgs });
      queues.push(queue);
      await channel.bindQueue(queue, exchange, bindingKey);
    },
    async drain(queue) {
      const out: GetMessage[] = [];
      for (;;) {
        const m = await channel.get(queue, { noAck: true });
        if (!m) return out;
        out.push(m);
      }
    },
    async close() {
      for (const q of queues) await channel.deleteQueue(q).catch(() => undefined);
      for (const e of exchanges) await channel.deleteExchange(e).catch(() => undefined);
      await model.close();
    },
  };
}

/** A port nothing listens on (an unreachable broker). */
export const closedPort = freePort;

/**
 * Expects `make` (a suite's Docket factory) to refuse `sink` as the only sink, named `s`, with
 * CONFIG_INVALID naming `outbox.sinks.s.<field>`.
 */
export function expectSinkRefused(
  make: (o: { outbox: OutboxOptions }) => unknown,
  sink: Record<string, unknown>,
  field: string,
): void {
  expect(() =>
    make({ outbox: { routes: [{ topic: 'x', sink: 's' }], sinks: { s: sink as never } } }),
  ).toThrow(
    expect.objectContaining({
      code: 'CONFIG_INVALID',
      details: expect.objectContaining({ name: `outbox.sinks.s.${field}` }),
    }) as Error,
  );
}

/** A TCP proxy to a real server whose connections a test can cut (a network failure). */
export interface TcpProxy {
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Destroys every open connection (the proxy keeps accepting new ones). */
  cut(): void;
  close(): Promise<void>;
}

/** Starts a proxy on a free port forwarding to `127.0.0.1:targetPort`. */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const open = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer((client) => {
    accepted++;
    const upstream = tcpConnect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      open.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        open.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    port,
    get accepted() {
      return accepted;
    },
    cut() {
      for (const s of open) s.destroy();
    },
    async close() {
      for (const s of open) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
