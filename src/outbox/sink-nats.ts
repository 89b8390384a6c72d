// The NATS JetStream sink (SPEC O-6). Each event is published with the JetStream message id
// `Nats-Msg-Id = event id`, so a stream's duplicate window drops an event the relay publishes
// again (it crashed after the publish and before marking the event published); the sink waits
// for the PubAck, and a PubAck flagged `duplicate` is an acceptance like any other. The sink
// does not create streams: a stream binding the subjects is the operator's, and an event whose
// subject no stream binds is refused (retried) until one does.
import type { MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import type { JetStreamClient } from '@nats-io/jetstream';
import { DocketError } from '../core/errors.js';
import { BrokerConnection } from './broker-connection.js';
import {
  brokerBody,
  brokerHeaders,
  renderTemplate,
  unknownPlaceholders,
} from './broker-message.js';
import {
  PermanentSinkError,
  type OutboxEvent,
  type OutboxSink,
  type SinkReceipt,
} from './types.js';

/** Options of a NATS JetStream sink (`{ kind: 'nats', … }`). */
export interface NatsSinkOptions {
  /** Server URL(s): `nats://host:4222` or `host:port`. Required. */
  servers: string | string[];
  /** Subject of each event; `{topic}` and `{tenant}` are replaced. Default `docket.{topic}`. */
  subject?: string;
  /** The stream that must store the events (its name is sent as `Nats-Expected-Stream`). Default any stream binding the subject. */
  stream?: string;
  /** How long to wait for the PubAck, ms. Default 10,000. */
  timeoutMs?: number;
  /** How long to wait for a connection, ms. Default 5,000. */
  connectTimeoutMs?: number;
  /** User for user/password authentication. Default none. */
  user?: string;
  /** Password for user/password authentication. Default none. */
  pass?: string;
  /** Token authentication. Default none. */
  token?: string;
  /** Connection name the server shows (`nats server report connections`). Default `docket-outbox`. */
  name?: string;
}

/** Default subject template. */
export const DEFAULT_NATS_SUBJECT = 'docket.{topic}';

/** A subject one may publish to: dot-separated non-empty tokens, no wildcards or whitespace. */
function isPublishSubject(s: string): boolean {
  return (
    s.length > 0 &&
    s.length <= 1024 &&
    s.split('.').every((t) => t.length > 0 && t !== '*' && t !== '>' && !/[\s*>]/.test(t))
  );
}

/** Checks a NATS sink's options at createDocket time (CONFIG_INVALID). */
export function validateNatsSinkOptions(sink: string, o: NatsSinkOptions): void {
  const bad = (field: string, message: string, value: unknown) =>
    new DocketError('CONFIG_INVALID', `outbox sink "${sink}": ${message}`, {
      name: `outbox.sinks.${sink}.${field}`,
      value,
    });
  const servers = typeof o.servers === 'string' ? [o.servers] : o.servers;
  if (
    !Array.isArray(servers) ||
    servers.length === 0 ||
    servers.some((s) => typeof s !== 'string' || s.trim() === '')
  ) {
    throw bad('servers', 'servers must be a server URL or a non-empty list of them', o.servers);
  }
  const subject = o.subject ?? DEFAULT_NATS_SUBJECT;
  const unknown = typeof subject === 'string' ? unknownPlaceholders(subject) : [];
  if (typeof subject !== 'string' || unknown.length > 0) {
    throw bad('subject', 'subject may use only the placeholders {topic} and {tenant}', subject);
  }
  if (!isPublishSubject(subject.replace(/\{(topic|tenant)\}/g, 't'))) {
    throw bad(
      'subject',
      'subject must be dot-separated non-empty tokens without wildcards or spaces',
      subject,
    );
  }
  if (o.stream !== undefined && (typeof o.stream !== 'string' || !/^[^\s.*>]+$/.test(o.stream))) {
    throw bad('stream', 'stream must be a stream name (no spaces, dots, * or >)', o.stream);
  }
  for (const f of ['timeoutMs', 'connectTimeoutMs'] as const) {
    const v = o[f];
    if (v !== undefined && (!Number.isInteger(v) || v < 1 || v > 600_000)) {
      throw bad(f, `${f} must be an integer 1–600000`, v);
    }
  }
  for (const f of ['user', 'pass', 'token', 'name'] as const) {
    if (o[f] !== undefined && typeof o[f] !== 'string') throw bad(f, `${f} must be a string`, '…');
  }
}

interface Connected {
  nc: NatsConnection;
  js: JetStreamClient;
  headers: () => MsgHdrs;
}

/**
 * Publishes each event to JetStream on `subject` with message id = event id, the broker
 * envelope as body (see docs/outbox.md) and the event's headers plus Docket's as NATS headers.
 * Connection errors, timeouts and "no stream for this subject" are retried by the relay; a
 * subject or header NATS can never carry makes the event dead (PermanentSinkError).
 */
export function natsSink(o: NatsSinkOptions): OutboxSink {
  const subjectTemplate = o.subject ?? DEFAULT_NATS_SUBJECT;
  const timeoutMs = o.timeoutMs ?? 10_000;
  const servers = typeof o.servers === 'string' ? [o.servers] : [...o.servers];
  const where = servers.join(',');
  const connection = new BrokerConnection<Connected>(async (lost) => {
    const [{ connect, headers }, { jetstream }] = await Promise.all([
      import('@nats-io/transport-node'),
      import('@nats-io/jetstream'),
    ]);
    const nc = await connect({
      servers,
      name: o.name ?? 'docket-outbox',
      timeout: o.connectTimeoutMs ?? 5000,
      user: o.user,
      pass: o.pass,
      token: o.token,
      // Keep reconnecting while the sink lives; publishes meanwhile time out and are retried.
      maxReconnectAttempts: -1,
      // The client otherwise builds two Error objects (stack traces) per request to enrich a
      // possible failure: ~23 µs of CPU per event in a relay drain's profile. The sink's own
      // errors say what failed.
      noAsyncTraces: true,
    });
    // A connection that closed for good is replaced by the next publish.
    void nc.closed().then(lost);
    return { nc, js: jetstream(nc, { timeout: timeoutMs }), headers };
  }, 'NATS');

  return {
    async publish(event: OutboxEvent, signal: AbortSignal): Promise<SinkReceipt> {
      signal.throwIfAborted();
      const subject = renderTemplate(subjectTemplate, event);
      if (!isPublishSubject(subject)) {
        throw new PermanentSinkError(`"${subject}" is not a NATS subject one can publish to`);
      }
      let c: Connected;
      try {
        c = await connection.get();
      } catch (err) {
        throw new Error(`NATS unreachable at ${where}: ${describe(err)}`, { cause: err });
      }
      const h = c.headers();
      try {
        for (const [k, v] of Object.entries(brokerHeaders(event))) h.set(k, v);
      } catch (err) {
        throw new PermanentSinkError(`a header NATS cannot carry: ${describe(err)}`, {
          cause: err,
        });
      }
      try {
        const ack = await c.js.publish(subject, brokerBody(event), {
          msgID: event.id,
          headers: h,
          timeout: timeoutMs,
          ...(o.stream ? { expect: { streamName: o.stream } } : {}),
        });
        return { ref: `${ack.stream}:${ack.seq}${ack.duplicate ? ' (duplicate)' : ''}` };
      } catch (err) {
        throw new Error(publishFailure(err, subject, timeoutMs), { cause: err });
      }
    },
    async close() {
      await connection.close(async ({ nc }) => {
        if (nc.isClosed()) return;
        // Drain flushes what is in flight; a connection that is down would wait for its
        // server, so a deadline closes it outright instead.
        const deadline = new Promise<'late'>((resolve) =>
          setTimeout(resolve, 2000, 'late').unref(),
        );
        const drained = await Promise.race([nc.drain().catch(() => 'late' as const), deadline]);
        if (drained === 'late') await nc.close().catch(() => undefined);
      });
    },
  };
}

/** A refused publish in words an operator can act on (it lands in the event's last_error). */
function publishFailure(err: unknown, subject: string, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; code?: number; apiError?: () => unknown };
  if (e.name === 'JetStreamNotEnabled' || /no responders/i.test(describe(err))) {
    return (
      `no JetStream stream stores subject "${subject}" (NATS answered 503 no responders): ` +
      'create a stream that binds it, or check that JetStream is enabled'
    );
  }
  if (e.name === 'TimeoutError') {
    return `no PubAck for subject "${subject}" within ${timeoutMs} ms (NATS disconnected or slow)`;
  }
  if (e.name === 'JetStreamApiError') {
    return `JetStream refused subject "${subject}": ${e.message ?? ''} (err_code ${String(e.code)})`;
  }
  return `NATS publish to "${subject}" failed: ${describe(err)}`;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
  return `${err.message}${cause}`;
}
