// The outbox as Docket exposes it (SPEC O-1 … O-6): add in the caller's transaction, read,
// replay, exactly-once consumers, and relays that publish to configured sinks.
import { EventEmitter } from 'node:events';
import type { Transaction } from 'kysely';
import { DocketError } from '../core/errors.js';
import type { IdGenerator } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import { resolveTraceId } from '../core/context.js';
import { decodeCursor, encodeCursor } from '../jobs/backends/rows.js';
import type { Store } from '../store/index.js';
import type { DocketDatabase } from '../store/schema.js';
import { createRelay, type OutboxRelay, type RelayOptions } from './relay.js';
import { DeliveryStore, type WebhookDelivery } from './deliveries.js';
import {
  deliverWebhook,
  jobsSink,
  webhookSink,
  type EnqueueForSink,
  type EnqueueInStoreForSink,
  type EnqueueManyForSink,
  type OutboxJobPayload,
} from './sinks.js';
import { natsSink, validateNatsSinkOptions, type NatsSinkOptions } from './sink-nats.js';
import {
  rabbitMqSink,
  validateRabbitMqSinkOptions,
  type RabbitMqSinkOptions,
} from './sink-rabbitmq.js';
import { OutboxStore, ROUTE, TOPIC, validateRoutePattern, type NewOutboxRow } from './store.js';
import {
  OUTBOX_STATUSES,
  type OutboxAddInput,
  type OutboxEvent,
  type OutboxRoute,
  type OutboxSink,
  type OutboxStatus,
} from './types.js';
import type { UrlSafetyOptions } from './url-safety.js';
import type { WebhookDeliveryRecord } from './webhook-request.js';

/**
 * A sink by configuration: Docket's job queue, a webhook, NATS JetStream, RabbitMQ, or an object
 * of your own.
 */
export type OutboxSinkConfig =
  | { kind: 'jobs'; /** Job type each event becomes. */ type: string }
  | {
      kind: 'webhook';
      /** Target URL (public addresses only unless `webhooks.allow` admits it). */
      url: string;
      /** Signing secret of the `Docket-Signature` header. */
      secret: string;
      /** Per-request timeout, ms. Default 10,000. */
      timeoutMs?: number;
    }
  | ({ kind: 'nats' } & NatsSinkOptions)
  | ({ kind: 'rabbitmq' } & RabbitMqSinkOptions)
  | OutboxSink;

const SINK_KINDS = ['jobs', 'webhook', 'nats', 'rabbitmq'];

/** Outbox options of createDocket. */
export interface OutboxOptions {
  /** Topic patterns to sink names; an event goes to every sink whose route matches its topic. */
  routes?: OutboxRoute[];
  /** Sinks by name. */
  sinks?: Record<string, OutboxSinkConfig>;
  /** Publication attempts before an event is dead. Default 10. */
  maxAttempts?: number;
}

/** Filter and page of `outbox.list`. */
export interface OutboxListFilter {
  /** Only events in these states. Default all. */
  status?: OutboxStatus[];
  /** Only events whose topic matches this pattern (`*` = any run of characters). Default all. */
  topic?: string;
  /**
   * Only events whose topic this instance's routes match (true) or match none of (false: what
   * no relay of this configuration will ever claim). Default both.
   */
  routed?: boolean;
  /** `nextCursor` of the previous page. */
  cursor?: string;
  /** Page size, 1–200. Default 50. */
  limit?: number;
}

/** Topics of waiting events that no route matches (SPEC O-2: they wait, visibly). */
export interface UnroutedTopics {
  /** The route patterns this instance judged by. */
  routes: string[];
  /** Waiting (pending or failed) events whose topic no route matches, over every topic. */
  waiting: number;
  /** Each topic with its waiting (pending or failed) events and the oldest one's time. */
  topics: Array<{ topic: string; waiting: number; oldestCreatedAt: number }>;
}
const HEADER_BYTES = 8192;

/** What the service needs. */
export interface OutboxServiceDeps {
  store: Store;
  logger: Logger;
  now: () => number;
  ids: IdGenerator;
  options: OutboxOptions;
  webhooks: UrlSafetyOptions;
  payloadLimitBytes: number;
  enqueue: EnqueueForSink;
  /** Batch enqueue for one tenant (the jobs sink's batch path). */
  enqueueMany: EnqueueManyForSink;
  /** Enqueue inside the relay's claim transaction (in-store publication of the jobs sink). */
  enqueueInStore?: EnqueueInStoreForSink;
  tenantOfTx: (tx: object) => string | undefined;
  withTransaction: <T>(
    tenant: string,
    fn: (tx: Transaction<DocketDatabase>) => Promise<T>,
  ) => Promise<T>;
}

/** Validates outbox options at createDocket time (CONFIG_INVALID). */
export function validateOutboxOptions(o: OutboxOptions | undefined): void {
  if (!o) return;
  for (const [name, c] of Object.entries(o.sinks ?? {})) validateSinkConfig(name, c);
  for (const r of o.routes ?? []) {
    validateRoutePattern(r.topic);
    if (!o.sinks || !(r.sink in o.sinks)) {
      throw new DocketError(
        'CONFIG_INVALID',
        `outbox route ${r.topic} names unknown sink "${r.sink}"`,
        {
          name: 'outbox.routes',
          value: r.sink,
        },
      );
    }
  }
  const m = o.maxAttempts;
  if (m !== undefined && (!Number.isInteger(m) || m < 1 || m > 1000)) {
    throw new DocketError('CONFIG_INVALID', 'outbox.maxAttempts must be an integer 1–1000', {
      name: 'outbox.maxAttempts',
      value: m,
    });
  }
}

/** Checks one sink's configuration (CONFIG_INVALID naming the sink and the field). */
function validateSinkConfig(name: string, c: OutboxSinkConfig): void {
  const bad = (field: string, message: string, value?: unknown) =>
    new DocketError('CONFIG_INVALID', `outbox sink "${name}": ${message}`, {
      name: `outbox.sinks.${name}${field ? `.${field}` : ''}`,
      value,
    });
  if (!c || typeof c !== 'object') throw bad('', 'a sink is a configuration object or a sink');
  if ('publish' in c) {
    if (typeof c.publish !== 'function') throw bad('publish', 'publish must be a function');
    return;
  }
  switch (c.kind) {
    case 'jobs':
      if (typeof c.type !== 'string' || c.type === '') throw bad('type', 'type names a job type');
      return;
    case 'webhook':
      if (typeof c.url !== 'string' || c.url === '') throw bad('url', 'url is required');
      if (typeof c.secret !== 'string' || c.secret === '') {
        throw bad('secret', 'secret is required (it signs every request)');
      }
      return;
    case 'nats':
      return validateNatsSinkOptions(name, c);
    case 'rabbitmq':
      return validateRabbitMqSinkOptions(name, c);
    default:
      throw bad(
        'kind',
        `kind must be one of ${SINK_KINDS.join(', ')} (or pass an object with publish())`,
        (c as { kind?: unknown }).kind,
      );
  }
}

/** The outbox service of one Docket instance. */
export class OutboxService {
  readonly rows: OutboxStore;
  /** Stored webhook deliveries. */
  readonly deliveryRows: DeliveryStore;
  /** Emits 'added' when a transaction that added events committed in this process. */
  readonly wakeups = new EventEmitter();
  private readonly added = new WeakSet<object>();
  private sinks: Record<string, OutboxSink> | undefined;
  /** Sinks built from configuration, whose connections close() releases. */
  private readonly owned: OutboxSink[] = [];

  constructor(private readonly deps: OutboxServiceDeps) {
    this.rows = new OutboxStore(deps.store, deps.logger);
    this.deliveryRows = new DeliveryStore(deps.store);
    this.wakeups.setMaxListeners(0);
  }

  /** Writes events in `tx` (from withTransaction); they exist only if it commits. */
  async add(
    tx: Transaction<DocketDatabase>,
    inputs: readonly OutboxAddInput[],
  ): Promise<OutboxEvent[]> {
    const tenant = this.deps.tenantOfTx(tx);
    if (!tenant) {
      throw new DocketError(
        'TX_INVALID',
        'outbox.add needs a transaction from docket.withTransaction',
      );
    }
    const now = this.deps.now();
    const rows: NewOutboxRow[] = inputs.map((i, n) => this.row(tenant, i, now, n));
    await this.rows.add(tx, rows);
    this.added.add(tx);
    return rows.map((r) => ({
      id: r.id,
      tenantId: r.tenant_id,
      topic: r.topic,
      key: r.key,
      payload: JSON.parse(r.payload) as OutboxEvent['payload'],
      headers: JSON.parse(r.headers) as Record<string, string>,
      traceId: r.trace_id,
      status: 'pending',
      attempts: 0,
      maxAttempts: r.max_attempts,
      availableAt: r.available_at,
      leaseOwner: null,
      leaseUntil: null,
      lastError: null,
      sinksDone: [],
      createdAt: r.created_at,
      updatedAt: r.updated_at,
      publishedAt: null,
    }));
  }

  /** Called by withTransaction after a commit: wakes this process's relays. */
  committed(tx: object): void {
    if (this.added.has(tx)) this.wakeups.emit('added');
  }

  private row(tenant: string, i: OutboxAddInput, now: number, n: number): NewOutboxRow {
    const bad = (field: string, message: string) =>
      new DocketError('VALIDATION_FAILED', message, { field: `[${n}].${field}` });
    if (!i || typeof i !== 'object') throw bad('', 'an outbox event is an object');
    if (typeof i.topic !== 'string' || !TOPIC.test(i.topic)) {
      throw bad('topic', 'topic must be 1–200 of A-Z a-z 0-9 . _ : -');
    }
    if (
      i.key !== undefined &&
      (typeof i.key !== 'string' || i.key.length < 1 || i.key.length > 200)
    ) {
      throw bad('key', 'key must be a string of 1–200 characters');
    }
    let payload: string | undefined;
    try {
      payload = JSON.stringify(i.payload ?? null);
    } catch {
      payload = undefined;
    }
    if (payload === undefined) throw bad('payload', 'payload must be JSON (no cycles, no BigInt)');
    if (Buffer.byteLength(payload) > this.deps.payloadLimitBytes) {
      throw new DocketError('PAYLOAD_TOO_LARGE', 'outbox payload exceeds payloadLimitBytes', {
        field: `[${n}].payload`,
        limit: this.deps.payloadLimitBytes,
      });
    }
    const headers = i.headers ?? {};
    if (
      typeof headers !== 'object' ||
      Object.values(headers).some((v) => typeof v !== 'string') ||
      Buffer.byteLength(JSON.stringify(headers)) > HEADER_BYTES
    ) {
      throw bad('headers', `headers must map names to strings, ${HEADER_BYTES} bytes at most`);
    }
    const maxAttempts = i.maxAttempts ?? this.deps.options.maxAttempts ?? 10;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 1000) {
      throw bad('maxAttempts', 'maxAttempts must be an integer 1–1000');
    }
    const availableAt = i.availableAt ?? now;
    if (!Number.isInteger(availableAt) || availableAt < 0) {
      throw bad('availableAt', 'availableAt must be epoch milliseconds');
    }
    return {
      id: this.deps.ids.next(),
      tenant_id: tenant,
      topic: i.topic,
      key: i.key ?? null,
      payload,
      headers: JSON.stringify(headers),
      trace_id: resolveTraceId(),
      max_attempts: maxAttempts,
      available_at: availableAt,
      sinks_done: '[]',
      created_at: now,
      updated_at: now,
    };
  }

  /** One event (OUTBOX_EVENT_NOT_FOUND if absent or another tenant's). */
  async get(tenant: string, id: string): Promise<OutboxEvent> {
    const e = await this.rows.get(tenant, id);
    if (!e) throw new DocketError('OUTBOX_EVENT_NOT_FOUND', `outbox event ${id} not found`, { id });
    return e;
  }

  /** A page of a tenant's events, newest first. */
  async list(
    tenant: string,
    o: OutboxListFilter = {},
  ): Promise<{ items: OutboxEvent[]; nextCursor: string | null }> {
    const limit = pageLimit(o.limit);
    for (const s of o.status ?? []) {
      if (!OUTBOX_STATUSES.includes(s)) {
        throw new DocketError('VALIDATION_FAILED', `unknown outbox status ${String(s)}`, {
          field: 'status',
        });
      }
    }
    if (o.topic !== undefined && (typeof o.topic !== 'string' || !ROUTE.test(o.topic))) {
      throw new DocketError('VALIDATION_FAILED', 'topic must be 1–200 of A-Z a-z 0-9 . _ : - *', {
        field: 'topic',
      });
    }
    if (o.routed !== undefined && typeof o.routed !== 'boolean') {
      throw new DocketError('VALIDATION_FAILED', 'routed must be true or false', {
        field: 'routed',
      });
    }
    const before = o.cursor ? decodeCursor(o.cursor) : undefined;
    const rows = await this.rows.list({
      tenant,
      statuses: o.status,
      topic: o.topic,
      routed: o.routed === undefined ? undefined : { patterns: this.patterns(), value: o.routed },
      before,
      limit: limit + 1,
    });
    return page(rows, limit);
  }

  /** The topics of a tenant's waiting events that none of this instance's routes match. */
  async unrouted(tenant: string, o: { limit?: number } = {}): Promise<UnroutedTopics> {
    const routes = this.patterns();
    const r = await this.rows.unroutedTopics({
      tenant,
      patterns: routes,
      limit: pageLimit(o.limit, 200),
    });
    return { routes, ...r };
  }

  private patterns(): string[] {
    return [...new Set((this.deps.options.routes ?? []).map((r) => r.topic))];
  }

  /** Replays a dead event (audited); OUTBOX_EVENT_NOT_DEAD if it is not dead. */
  async replay(tenant: string, id: string, o: { actor?: string; traceId?: string } = {}) {
    const r = await this.rows.replay({
      tenant,
      id,
      actor: o.actor ?? 'library',
      traceId: resolveTraceId(o.traceId),
      now: this.deps.now(),
    });
    if (!r) throw new DocketError('OUTBOX_EVENT_NOT_FOUND', `outbox event ${id} not found`, { id });
    if (!r.changed) {
      throw new DocketError(
        'OUTBOX_EVENT_NOT_DEAD',
        `outbox event ${id} is ${r.event.status}, not dead`,
        {
          id,
          status: r.event.status,
        },
      );
    }
    this.wakeups.emit('added');
    return r.event;
  }

  /** Counts by state. */
  counts(tenant: string): Promise<Record<string, number>> {
    return this.rows.counts(tenant);
  }

  /** A page of an event's webhook deliveries, oldest first (OUTBOX_EVENT_NOT_FOUND). */
  async deliveries(
    tenant: string,
    eventId: string,
    o: { cursor?: string; limit?: number } = {},
  ): Promise<{ items: WebhookDelivery[]; nextCursor: string | null }> {
    const limit = pageLimit(o.limit);
    const after = o.cursor ? decodeCursor(o.cursor) : undefined;
    await this.get(tenant, eventId);
    const rows = await this.deliveryRows.listForEvent({
      tenant,
      eventId,
      after,
      limit: limit + 1,
    });
    return page(rows, limit);
  }

  /** One stored webhook delivery (DELIVERY_NOT_FOUND if absent or another tenant's). */
  async delivery(tenant: string, id: string): Promise<WebhookDelivery> {
    const d = await this.deliveryRows.get(tenant, id);
    if (!d) {
      throw new DocketError('DELIVERY_NOT_FOUND', `webhook delivery ${id} not found`, {
        id,
      });
    }
    return d;
  }

  /**
   * Performs a stored delivery's request again: the same event to the same sink as configured
   * now (URL safety, signing, `Idempotency-Key` = event id), stored as a new delivery that links
   * the one it repeats, audited as `outbox.delivery_rerun`. The event's state does not change
   * (replay a dead event to have the relay publish it). SINK_NOT_CONFIGURED when the
   * delivery's sink is no longer a webhook sink of this instance.
   */
  async rerun(
    tenant: string,
    deliveryId: string,
    o: { actor?: string; traceId?: string } = {},
  ): Promise<WebhookDelivery> {
    const original = await this.delivery(tenant, deliveryId);
    const sink = this.deps.options.sinks?.[original.sink];
    if (!sink || 'publish' in sink || sink.kind !== 'webhook') {
      throw new DocketError(
        'SINK_NOT_CONFIGURED',
        `sink "${original.sink}" is not a configured webhook sink`,
        { sink: original.sink },
      );
    }
    const event = await this.get(tenant, original.eventId);
    const record = await deliverWebhook({ ...sink, allow: this.deps.webhooks.allow }, event);
    return this.deliveryRows.addRerun({
      id: this.deps.ids.next(),
      event,
      sink: original.sink,
      attempt: original.attempt,
      record,
      repeatsDeliveryId: original.id,
      now: this.deps.now(),
      actor: o.actor ?? 'library',
      traceId: resolveTraceId(o.traceId),
    });
  }

  /** Stores a relay's delivery the moment the request returned; a failed write is logged. */
  private async storeDelivery(
    sink: string,
    event: OutboxEvent,
    record: WebhookDeliveryRecord,
  ): Promise<void> {
    try {
      await this.deliveryRows.add({
        id: this.deps.ids.next(),
        event,
        sink,
        attempt: event.attempts,
        record,
        repeatsDeliveryId: null,
        now: this.deps.now(),
      });
    } catch (err) {
      // The request happened either way; its outcome still decides the event's state.
      this.deps.logger.error(
        { err, eventId: event.id, sink, class: record.class },
        'storing a webhook delivery failed',
      );
    }
  }

  /**
   * A job handler for events delivered by a `jobs` sink that applies each event exactly once
   * for `consumer`: the handler's writes (through `tx`) and the `(event_id, consumer)` record
   * commit together, so a redelivered event is acknowledged without a second effect (O-4).
   */
  consumer(
    consumer: string,
    handler: (event: OutboxJobPayload, tx: Transaction<DocketDatabase>) => Promise<void>,
  ): (ctx: {
    payload: OutboxJobPayload;
    job: { tenantId: string };
  }) => Promise<{ duplicate: boolean }> {
    if (typeof consumer !== 'string' || consumer.length < 1 || consumer.length > 200) {
      throw new DocketError('CONFIG_INVALID', 'a consumer name is 1–200 characters', {
        name: 'consumer',
      });
    }
    return async (ctx) =>
      this.deps.withTransaction(ctx.job.tenantId, async (tx) => {
        const first = await this.rows.recordConsumed(tx, {
          tenant: ctx.job.tenantId,
          consumer,
          eventId: ctx.payload.eventId,
          now: this.deps.now(),
        });
        if (!first) return { duplicate: true };
        await handler(ctx.payload, tx);
        return { duplicate: false };
      });
  }

  /** The configured sinks, built once. */
  private sinkMap(): Record<string, OutboxSink> {
    if (this.sinks) return this.sinks;
    const out: Record<string, OutboxSink> = {};
    for (const [name, c] of Object.entries(this.deps.options.sinks ?? {})) {
      if ('publish' in c) out[name] = c;
      else if (c.kind === 'jobs')
        out[name] = jobsSink(
          c.type,
          this.deps.enqueue,
          this.deps.enqueueMany,
          this.deps.enqueueInStore,
        );
      else if (c.kind === 'nats') out[name] = this.built(natsSink(c));
      else if (c.kind === 'rabbitmq') out[name] = this.built(rabbitMqSink(c));
      else {
        out[name] = webhookSink({
          ...c,
          allow: this.deps.webhooks.allow,
          onDelivery: (event, record) => this.storeDelivery(name, event, record),
        });
      }
    }
    return (this.sinks = out);
  }

  private built(sink: OutboxSink): OutboxSink {
    this.owned.push(sink);
    return sink;
  }

  /** Closes the connections of the sinks built from configuration (sink objects passed in are the caller's). */
  async close(): Promise<void> {
    await this.rows.close();
    const owned = this.owned.splice(0);
    await Promise.all(
      owned.map((s) =>
        s
          .close?.()
          .catch((err: unknown) => this.deps.logger.warn({ err }, 'closing an outbox sink failed')),
      ),
    );
  }

  /** A relay over this instance's routes and sinks (not started). */
  createRelay(o: RelayOptions = {}): OutboxRelay {
    return createRelay(
      {
        store: this.deps.store,
        outbox: this.rows,
        routes: this.deps.options.routes ?? [],
        sinks: this.sinkMap(),
        logger: this.deps.logger,
        now: this.deps.now,
        wakeups: this.wakeups,
      },
      o,
    );
  }
}

function pageLimit(limit: number | undefined, fallback = 50): number {
  const n = limit ?? fallback;
  if (!Number.isInteger(n) || n < 1 || n > 200) {
    throw new DocketError('VALIDATION_FAILED', 'limit must be an integer 1–200', {
      field: 'limit',
    });
  }
  return n;
}

/** The first `limit` of `limit + 1` rows, and a cursor when there were more. */
function page<T extends { id: string }>(
  rows: T[],
  limit: number,
): { items: T[]; nextCursor: string | null } {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items, nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null };
}
