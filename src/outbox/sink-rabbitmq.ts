// The RabbitMQ sink (SPEC O-6), on a confirm channel: an event is accepted only when the broker
// acks it (publisher confirms), which for a persistent message routed to durable queues means it
// is written to disk. A nack, a channel or connection lost before the ack, or no ack within the
// timeout is a refusal the relay retries. Messages are published `mandatory`, so a message no
// queue is bound for is returned by the broker (before its ack) and counts as refused rather
// than vanishing. The sink does not declare exchanges or queues: the topology is the operator's.
import type { ChannelModel, ConfirmChannel, Message } from 'amqplib';
import { DocketError } from '../core/errors.js';
import { BrokerConnection } from './broker-connection.js';
import {
  brokerBody,
  brokerHeaders,
  renderTemplate,
  unknownPlaceholders,
} from './broker-message.js';
import type { OutboxEvent, OutboxSink, SinkReceipt } from './types.js';

/** Options of a RabbitMQ sink (`{ kind: 'rabbitmq', … }`). */
export interface RabbitMqSinkOptions {
  /** AMQP URL, e.g. `amqp://user:pass@host:5672/vhost` (`amqps://` for TLS). Required. */
  url: string;
  /** Exchange to publish to; `''` is the default exchange (routing key = queue name). Required. */
  exchange: string;
  /** Routing key of each event; `{topic}` and `{tenant}` are replaced. Default `{topic}`. */
  routingKey?: string;
  /** How long to wait for the broker's confirm, ms. Default 10,000. */
  timeoutMs?: number;
  /** How long to wait for a connection, ms. Default 5,000. */
  connectTimeoutMs?: number;
  /** Refuse (and retry) a message no queue is bound for, instead of letting the broker drop it. Default true. */
  mandatory?: boolean;
}

/** Checks a RabbitMQ sink's options at createDocket time (CONFIG_INVALID). */
export function validateRabbitMqSinkOptions(sink: string, o: RabbitMqSinkOptions): void {
  const bad = (field: string, message: string, value: unknown) =>
    new DocketError('CONFIG_INVALID', `outbox sink "${sink}": ${message}`, {
      name: `outbox.sinks.${sink}.${field}`,
      value,
    });
  let url: URL | undefined;
  try {
    url = typeof o.url === 'string' ? new URL(o.url) : undefined;
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'amqp:' && url.protocol !== 'amqps:')) {
    // The URL may carry a password: it is not echoed back.
    throw bad('url', 'url must be an amqp:// or amqps:// URL', undefined);
  }
  if (typeof o.exchange !== 'string' || o.exchange.length > 255) {
    throw bad('exchange', 'exchange must be a name of at most 255 characters (or "")', o.exchange);
  }
  const rk = o.routingKey ?? '{topic}';
  if (typeof rk !== 'string' || unknownPlaceholders(rk).length > 0 || rk.length > 255) {
    throw bad(
      'routingKey',
      'routingKey is at most 255 characters and may use only the placeholders {topic} and {tenant}',
      rk,
    );
  }
  for (const f of ['timeoutMs', 'connectTimeoutMs'] as const) {
    const v = o[f];
    if (v !== undefined && (!Number.isInteger(v) || v < 1 || v > 600_000)) {
      throw bad(f, `${f} must be an integer 1–600000`, v);
    }
  }
  if (o.mandatory !== undefined && typeof o.mandatory !== 'boolean') {
    throw bad('mandatory', 'mandatory must be a boolean', o.mandatory);
  }
}

interface Open {
  model: ChannelModel;
  channel: ConfirmChannel;
  /** Message ids the broker returned as unroutable, waiting for their confirm. */
  returned: Map<string, number>;
  /** Why the channel or connection closed, once it did. */
  lost(): string | undefined;
}

/**
 * Publishes each event to `exchange` with `routingKey`, persistent, `messageId = event id`,
 * `type = topic`, the broker envelope as JSON body and the event's headers plus Docket's as
 * AMQP headers, and resolves when the broker confirms it. After a lost connection or channel
 * the next publish opens new ones.
 */
export function rabbitMqSink(o: RabbitMqSinkOptions): OutboxSink {
  const routingKey = o.routingKey ?? '{topic}';
  const timeoutMs = o.timeoutMs ?? 10_000;
  const mandatory = o.mandatory ?? true;
  const where = redact(o.url);
  const connection = new BrokerConnection<Open>(async (forget) => {
    const amqp = await import('amqplib');
    const model = await amqp.connect(o.url, {
      timeout: o.connectTimeoutMs ?? 5000,
      clientProperties: { connection_name: 'docket-outbox' },
    });
    const returned = new Map<string, number>();
    let lost: string | undefined;
    const gone = (why: string) => {
      lost ??= why;
      forget();
    };
    // 'error' precedes 'close' and carries the reason (e.g. 404 no exchange): keep it for the
    // confirms the close fails, and never let an 'error' event go unhandled.
    model.on('error', (err: Error) => gone(`connection error: ${err.message}`));
    model.on('close', () => gone('connection closed'));
    try {
      const channel = await model.createConfirmChannel();
      channel.on('error', (err: Error) => gone(err.message));
      channel.on('close', () => {
        gone('channel closed');
        model.close().catch(() => undefined);
      });
      channel.on('return', (m: Message) => {
        const id = String(m.properties.messageId);
        returned.set(id, (returned.get(id) ?? 0) + 1);
      });
      return { model, channel, returned, lost: () => lost };
    } catch (err) {
      await model.close().catch(() => undefined);
      throw err;
    }
  }, 'RabbitMQ');

  return {
    async publish(event: OutboxEvent, signal: AbortSignal): Promise<SinkReceipt> {
      signal.throwIfAborted();
      const rk = renderTemplate(routingKey, event);
      let c: Open;
      try {
        c = await connection.get();
      } catch (err) {
        throw new Error(`RabbitMQ unreachable at ${where}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      const target = `exchange "${o.exchange}" with routing key "${rk}"`;
      await new Promise<void>((resolve, reject) => {
        let settled = false;
        const finish = (err?: Error) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          if (err) reject(err);
          else resolve();
        };
        const timer = setTimeout(
          () => finish(new Error(`no confirm from RabbitMQ for ${target} within ${timeoutMs} ms`)),
          timeoutMs,
        );
        try {
          c.channel.publish(
            o.exchange,
            rk,
            brokerBody(event),
            {
              persistent: true,
              mandatory,
              messageId: event.id,
              type: event.topic,
              contentType: 'application/json',
              timestamp: Math.floor(event.createdAt / 1000),
              appId: 'docket',
              headers: brokerHeaders(event),
            },
            (err: unknown) => {
              const n = c.returned.get(event.id) ?? 0;
              if (n > 0) {
                if (n === 1) c.returned.delete(event.id);
                else c.returned.set(event.id, n - 1);
              }
              if (err) {
                const lost = c.lost();
                finish(
                  new Error(
                    lost
                      ? `RabbitMQ lost the channel before confirming (${target}): ${lost}`
                      : `RabbitMQ refused the message (nack) for ${target}`,
                  ),
                );
              } else if (n > 0) {
                finish(
                  new Error(
                    `RabbitMQ returned the message as unroutable: no queue is bound to ${target}`,
                  ),
                );
              } else finish();
            },
          );
        } catch (err) {
          // Publishing on a channel that already closed throws at once (its 'close' handler has
          // already cleared it, so the next publish opens a new one).
          finish(
            new Error(
              `RabbitMQ publish to ${target} failed: ${c.lost() ?? (err as Error).message}`,
              { cause: err },
            ),
          );
        }
      });
      return { ref: `${o.exchange}/${rk}` };
    },
    async close() {
      await connection.close(async (conn) => {
        if (conn.lost()) return;
        // amqplib's close() waits for the broker's close-ok and never settles if the socket
        // dies meanwhile: the 'close' event, or at worst a deadline, ends the wait.
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            resolve();
          };
          const timer = setTimeout(done, Math.min(timeoutMs, 2000));
          conn.model.once('close', done);
          conn.model.close().then(done, done);
        });
      });
    },
  };
}

/** The URL without its password (it goes into error messages and last_error). */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'the configured URL';
  }
}
