// The NATS JetStream sink (SPEC O-6). Each event is published with the JetStream message id
// `Nats-Msg-Id = event id`, so a stream's duplicate window drops an event the relay publishes
// again (it crashed after the publish and before marking the event published); the sink waits
// for the PubAck, and a PubAck flagged `duplicate` is an acceptance like any other. The sink
// does not create streams: a stream binding the subjects is the operator's, and an event whose
// subject no stream binds is refused (retried) until one does.
//
// A batch goes out as plain NATS publishes whose reply subjects are tokens under one inbox this
// connection subscribes to once, and is waited for with one timer: the JetStream client's
// publish is a request per message (a reply subscription entry, a timer, a race of promises and
// a "cancelled" Error with its stack trace built after every answer), which cost ~40 µs of CPU
// per event against ~14 µs this way (bench/NOTES.md, "NATS sink: one inbox per connection").
// The PubAck is JetStream's documented reply, `{ stream, seq, duplicate? }` or `{ error }`.
import type { Msg, MsgHdrs, NatsConnection } from '@nats-io/transport-node';
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
  type SinkOutcome,
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
  headers: () => MsgHdrs;
  /** The inbox whose `<inbox>.<token>` subjects receive this connection's PubAcks. */
  inbox: string;
  /** Who waits for the PubAck of each token still out. */
  waiting: Map<string, (ack: Msg) => void>;
  /** The next token (base 36). */
  next: number;
}

/** What JetStream answers a publish with (its PubAck, or an API error). */
interface PubAckBody {
  stream?: string;
  seq?: number;
  duplicate?: boolean;
  error?: { code?: number; err_code?: number; description?: string };
}

/** An event ready to go out: its subject, body and headers. */
interface Outgoing {
  index: number;
  subject: string;
  body: Buffer;
  headers: MsgHdrs;
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
    const { connect, createInbox, headers } = await import('@nats-io/transport-node');
    const nc = await connect({
      servers,
      name: o.name ?? 'docket-outbox',
      timeout: o.connectTimeoutMs ?? 5000,
      user: o.user,
      pass: o.pass,
      token: o.token,
      // Keep reconnecting while the sink lives; publishes meanwhile time out and are retried.
      maxReconnectAttempts: -1,
    });
    const inbox = createInbox();
    const waiting = new Map<string, (ack: Msg) => void>();
    // Resubscribed by the client after a reconnect; an answer nobody waits for (it came after
    // its batch timed out) is dropped.
    nc.subscribe(`${inbox}.*`, {
      callback: (err, msg) => {
        if (err) return;
        const token = msg.subject.slice(inbox.length + 1);
        const resolve = waiting.get(token);
        if (resolve) {
          waiting.delete(token);
          resolve(msg);
        }
      },
    });
    // A connection that closed for good is replaced by the next publish.
    void nc.closed().then(lost);
    return { nc, headers, inbox, waiting, next: 0 };
  }, 'NATS');

  /** The subject, body and headers of an event, or why NATS can never carry it. */
  function prepare(event: OutboxEvent, index: number, c: Connected): Outgoing | SinkOutcome {
    const subject = renderTemplate(subjectTemplate, event);
    if (!isPublishSubject(subject)) {
      return {
        ok: false,
        error: new PermanentSinkError(`"${subject}" is not a NATS subject one can publish to`),
      };
    }
    const h = c.headers();
    try {
      for (const [k, v] of Object.entries(brokerHeaders(event))) h.set(k, v);
    } catch (err) {
      return {
        ok: false,
        error: new PermanentSinkError(`a header NATS cannot carry: ${describe(err)}`, {
          cause: err,
        }),
      };
    }
    h.set('Nats-Msg-Id', event.id);
    if (o.stream) h.set('Nats-Expected-Stream', o.stream);
    return { index, subject, body: brokerBody(event), headers: h };
  }

  async function publishMany(
    events: readonly OutboxEvent[],
    signal: AbortSignal,
  ): Promise<SinkOutcome[]> {
    signal.throwIfAborted();
    let c: Connected;
    try {
      c = await connection.get();
    } catch (err) {
      const error = new Error(`NATS unreachable at ${where}: ${describe(err)}`, { cause: err });
      return events.map(() => ({ ok: false, error }));
    }
    const outcomes: Array<SinkOutcome | undefined> = new Array(events.length);
    const out: Outgoing[] = [];
    events.forEach((event, i) => {
      const p = prepare(event, i, c);
      if ('ok' in p) outcomes[i] = p;
      else out.push(p);
    });
    const tokens: string[] = [];
    await new Promise<void>((resolve) => {
      let open = out.length;
      const settle = (x: Outgoing, outcome: SinkOutcome) => {
        if (outcomes[x.index] !== undefined) return;
        outcomes[x.index] = outcome;
        if (--open === 0) finish();
      };
      const finish = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      /** Every event still waiting ends with `error` (timeout, abort). */
      const giveUp = (error: (x: Outgoing) => Error) => {
        out.forEach((x, k) => {
          c.waiting.delete(tokens[k] as string);
          if (outcomes[x.index] === undefined) outcomes[x.index] = { ok: false, error: error(x) };
        });
        finish();
      };
      const timer = setTimeout(
        () =>
          giveUp(
            (x) =>
              new Error(
                `no PubAck for subject "${x.subject}" within ${timeoutMs} ms (NATS disconnected or slow)`,
              ),
          ),
        timeoutMs,
      );
      const onAbort = () => giveUp(() => new Error('the relay stopped before the PubAck'));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      if (open === 0) return finish();
      for (const x of out) {
        const token = (c.next++).toString(36);
        tokens.push(token);
        c.waiting.set(token, (ack) => settle(x, pubAckOutcome(ack, x.subject)));
        try {
          c.nc.publish(x.subject, x.body, { reply: `${c.inbox}.${token}`, headers: x.headers });
        } catch (err) {
          c.waiting.delete(token);
          settle(x, {
            ok: false,
            error: new Error(`NATS publish to "${x.subject}" failed: ${describe(err)}`, {
              cause: err,
            }),
          });
        }
      }
    });
    return outcomes as SinkOutcome[];
  }

  return {
    async publish(event: OutboxEvent, signal: AbortSignal): Promise<SinkReceipt> {
      const [outcome] = await publishMany([event], signal);
      if (!outcome) throw new Error('the NATS sink returned no outcome');
      if (!outcome.ok) throw outcome.error;
      return outcome.receipt;
    },
    publishMany,
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

/** The outcome a PubAck (or JetStream's refusal, or NATS's "no responders") means. */
function pubAckOutcome(ack: Msg, subject: string): SinkOutcome {
  if (ack.data.length === 0 && ack.headers?.code === 503) {
    return {
      ok: false,
      error: new Error(
        `no JetStream stream stores subject "${subject}" (NATS answered 503 no responders): ` +
          'create a stream that binds it, or check that JetStream is enabled',
      ),
    };
  }
  let body: PubAckBody;
  try {
    body = ack.json<PubAckBody>();
  } catch (err) {
    return {
      ok: false,
      error: new Error(
        `JetStream answered subject "${subject}" with something other than a PubAck`,
        {
          cause: err,
        },
      ),
    };
  }
  if (body.error) {
    return {
      ok: false,
      error: new Error(
        `JetStream refused subject "${subject}": ${body.error.description ?? ''} (err_code ${String(body.error.err_code)})`,
      ),
    };
  }
  if (typeof body.stream !== 'string' || body.stream === '') {
    return {
      ok: false,
      error: new Error(`JetStream answered subject "${subject}" with an invalid PubAck`),
    };
  }
  return {
    ok: true,
    receipt: { ref: `${body.stream}:${String(body.seq)}${body.duplicate ? ' (duplicate)' : ''}` },
  };
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
  return `${err.message}${cause}`;
}
