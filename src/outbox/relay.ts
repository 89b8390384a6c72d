// The outbox relay (SPEC O-2, O-3): claims batches of due events under a lease, hands each to
// the sinks its routes name, and records the outcome with guarded updates. Several relays (in
// several processes) share the work: a claim takes rows no other relay holds (SKIP LOCKED on
// PostgreSQL, SQLite's single writer), and the lease makes an event held by a relay that died
// mid-batch claimable again once it expires. Publication is at least once per sink; sinks are
// idempotent by event id where the destination allows.
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import pg from 'pg';
import type { RetryPolicy } from '../config/index.js';
import type { Logger } from '../core/logger.js';
import type { Store } from '../store/index.js';
import { DocketError } from '../core/errors.js';
import { backoffDelay } from '../jobs/retry-policy.js';
import type { Transaction } from 'kysely';
import type { DocketDatabase } from '../store/schema.js';
import { topicMatches, type OutboxStore } from './store.js';
import {
  PermanentSinkError,
  type OutboxEvent,
  type OutboxRoute,
  type OutboxSink,
  type SinkOutcome,
} from './types.js';

/** The transaction an in-store sink wrote in. */
type InStoreTransaction = Transaction<DocketDatabase>;

/** Options of a relay. */
export interface RelayOptions {
  /**
   * Events claimed per round on the leased path (sinks outside the store). Default 250 when
   * every routed sink takes a batch at once (`publishMany`: NATS, the job queue), else 100
   * (webhooks and RabbitMQ publish event by event, so the batch is also how many requests one
   * lane has in flight).
   */
  batchSize?: number;
  /**
   * Events per in-store batch (one transaction: lock, enqueue their jobs, mark published).
   * Default 500: the transaction's fixed cost (round trips, the lock walk) is spread over more
   * events, and nothing is held outside the store while it runs.
   */
  inStoreBatchSize?: number;
  /** How long a claimed event stays this relay's before another may take it over, ms. Default 30,000. */
  leaseMs?: number;
  /** Fallback poll when no wake-up arrives, ms. Default 1,000. */
  pollIntervalMs?: number;
  /** Batches in flight at once: the next is claimed while one is out at the sinks. Default 2. */
  concurrency?: number;
  /** Per-key ordering (O-3): a key's events go out one at a time in order. Default true. */
  ordered?: boolean;
  /** Backoff between attempts of one event. Default base 1 s, cap 10 min. */
  retry?: Pick<RetryPolicy, 'baseMs' | 'capMs'>;
  /** Stable id recorded as the lease owner. Default `hostname:pid:random`. */
  relayId?: string;
  /**
   * When every route goes to an in-store sink (the job queue), publish in the claim's own
   * transaction (`pending → published` in one step, no lease). Default true; false always
   * leases (`publishing`) first.
   */
  inStore?: boolean;
}

/** What a relay needs. */
export interface RelayDeps {
  store: Store;
  outbox: OutboxStore;
  routes: readonly OutboxRoute[];
  sinks: Readonly<Record<string, OutboxSink>>;
  logger: Logger;
  now: () => number;
  /** In-process wake-ups (events added by this process). */
  wakeups: EventEmitter;
}

/** A running relay. */
export interface OutboxRelay {
  /** Its lease owner id. */
  readonly id: string;
  /** Starts claiming (and listening for wake-ups). */
  start(): Promise<void>;
  /** Claims and publishes one batch now; returns how many events it claimed. */
  runOnce(): Promise<number>;
  /** Stops after the batch in flight (its events are recorded; none is left leased). */
  stop(): Promise<void>;
}

/** A batch size option: an integer 1–10,000 (the most one enqueueMany takes). */
function batchOption(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > 10_000) {
    throw new DocketError('CONFIG_INVALID', `relay ${name} must be an integer 1–10000`, {
      name,
      value,
    });
  }
  return value;
}

/** Creates a relay (not started). */
export function createRelay(deps: RelayDeps, o: RelayOptions = {}): OutboxRelay {
  const id = o.relayId ?? `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  const patterns = [...new Set(deps.routes.map((r) => r.topic))];
  const routedSinks = [...new Set(deps.routes.map((r) => r.sink))];
  // A batch path per sink means a bigger batch costs one call, not more requests in flight.
  const batched =
    routedSinks.length > 0 && routedSinks.every((n) => deps.sinks[n]?.publishMany !== undefined);
  const batchSize = batchOption('batchSize', o.batchSize ?? (batched ? 250 : 100));
  const inStoreBatchSize = batchOption('inStoreBatchSize', o.inStoreBatchSize ?? 500);
  const leaseMs = o.leaseMs ?? 30_000;
  const pollMs = o.pollIntervalMs ?? 1000;
  const ordered = o.ordered ?? true;
  const concurrency = o.concurrency ?? 2;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 16) {
    throw new DocketError('CONFIG_INVALID', 'relay concurrency must be an integer 1–16', {
      name: 'concurrency',
      value: concurrency,
    });
  }
  const retry: RetryPolicy = {
    baseMs: o.retry?.baseMs ?? 1000,
    capMs: o.retry?.capMs ?? 600_000,
    maxAttempts: 1,
  };
  // In-store publication only when no route leaves the store: a batch is then all or nothing.
  const inStore =
    (o.inStore ?? true) &&
    routedSinks.length > 0 &&
    routedSinks.every((n) => deps.sinks[n]?.publishInStore !== undefined);
  let running = false;
  let loopDone: Promise<void> | undefined;
  /** Lanes waiting for work, each woken by a wake-up or its poll timer. */
  const waiting = new Set<() => void>();
  let woken = false;
  let listener: pg.Client | undefined;
  let listenRetry: NodeJS.Timeout | undefined;
  const inFlight = new AbortController();

  const signal = () => {
    if (waiting.size === 0) woken = true;
    for (const w of [...waiting]) w();
  };

  // Topics repeat across events: each topic's sinks are worked out once (matching compiles a
  // pattern, which a drain's profile showed at ~9 µs per event).
  const sinksOfTopic = new Map<string, readonly string[]>();
  const sinksFor = (topic: string): readonly string[] => {
    let sinks = sinksOfTopic.get(topic);
    if (!sinks) {
      sinks = [
        ...new Set(deps.routes.filter((r) => topicMatches(r.topic, topic)).map((r) => r.sink)),
      ];
      if (sinksOfTopic.size >= 10_000) sinksOfTopic.clear();
      sinksOfTopic.set(topic, sinks);
    }
    return sinks;
  };

  /** One claimed event on its way through its sinks. */
  interface InFlight {
    event: OutboxEvent;
    /** Sinks that accepted it (before and during this attempt). */
    done: string[];
    /** Sinks still to go, in route order. */
    todo: string[];
    error?: string;
    permanent?: boolean;
  }

  /** Hands a group of events to one sink: its batch path if it has one, else one call each. */
  async function publishTo(name: string, group: InFlight[]): Promise<void> {
    const sink = deps.sinks[name];
    const accepted = (f: InFlight) => {
      f.done.push(name);
      f.todo.shift();
    };
    const refused = (f: InFlight, err: unknown) => {
      f.error = `${name}: ${(err as Error)?.message ?? String(err)}`;
      f.permanent = err instanceof PermanentSinkError;
    };
    if (!sink) {
      for (const f of group) {
        f.error = `route names sink "${name}", which is not configured`;
        f.permanent = true;
      }
      return;
    }
    if (sink.publishMany && group.length > 1) {
      let outcomes: SinkOutcome[];
      try {
        outcomes = await sink.publishMany(
          group.map((f) => f.event),
          inFlight.signal,
        );
      } catch (err) {
        outcomes = group.map(() => ({ ok: false, error: err }));
      }
      group.forEach((f, i) => {
        const o = outcomes[i];
        if (o?.ok) accepted(f);
        else refused(f, o ? o.error : new Error('the sink returned no outcome for this event'));
      });
      return;
    }
    await Promise.all(
      group.map(async (f) => {
        try {
          await sink.publish(f.event, inFlight.signal);
          accepted(f);
        } catch (err) {
          refused(f, err);
        }
      }),
    );
  }

  /**
   * Publishes a claimed batch: each event goes to its routes' sinks in order, stopping at the
   * first that refuses it; the sinks of one step take their events together (a sink with a
   * batch path gets them in one call). Then the published events are marked with one guarded
   * statement and each failure is recorded.
   */
  async function publishBatch(events: readonly OutboxEvent[]): Promise<void> {
    const flights: InFlight[] = [];
    const exhausted: OutboxEvent[] = [];
    for (const event of events) {
      // Claimed again after leases expired more times than it has attempts (its relays died).
      if (event.attempts > event.maxAttempts) exhausted.push(event);
      else
        flights.push({
          event,
          done: [...event.sinksDone],
          todo: sinksFor(event.topic).filter((n) => !event.sinksDone.includes(n)),
        });
    }
    for (;;) {
      const step = new Map<string, InFlight[]>();
      for (const f of flights) {
        const next = f.error === undefined ? f.todo[0] : undefined;
        if (next === undefined) continue;
        const group = step.get(next);
        if (group) group.push(f);
        else step.set(next, [f]);
      }
      if (step.size === 0) break;
      await Promise.all([...step].map(([name, group]) => publishTo(name, group)));
    }
    const published = flights.filter((f) => f.error === undefined);
    const marking = deps.outbox
      .markPublishedMany({
        owner: id,
        items: published.map((f) => ({ event: f.event, sinksDone: f.done })),
        now: deps.now(),
      })
      .then((marked) => {
        for (const f of published) {
          if (!marked.has(f.event.id))
            deps.logger.warn(
              { eventId: f.event.id },
              'outbox lease lost before the event was marked published',
            );
        }
      });
    const failures = [
      ...exhausted.map((event) =>
        recordFailure(event, [...event.sinksDone], {
          error: event.lastError ?? `lease expired ${event.attempts - 1} times`,
          dead: true,
        }),
      ),
      ...flights
        .filter((f) => f.error !== undefined)
        .map((f) =>
          recordFailure(f.event, f.done, {
            error: f.error as string,
            dead: Boolean(f.permanent) || f.event.attempts >= f.event.maxAttempts,
          }),
        ),
    ];
    const results = await Promise.allSettled([marking, ...failures]);
    for (const r of results) {
      if (r.status === 'rejected')
        deps.logger.error({ err: r.reason }, 'recording an outbox outcome failed');
    }
  }

  /** `publishing → failed` with a backoff, or `→ dead`, under this relay's lease. */
  async function recordFailure(
    event: OutboxEvent,
    sinksDone: string[],
    o: { error: string; dead: boolean },
  ): Promise<void> {
    const t = deps.now();
    const ok = await deps.outbox.markFailed({
      owner: id,
      event,
      sinksDone,
      error: o.error,
      dead: o.dead,
      availableAt: o.dead ? t : t + backoffDelay(retry, event.attempts),
      now: t,
    });
    if (ok && o.dead) {
      deps.logger.warn(
        { eventId: event.id, topic: event.topic, error: o.error },
        'outbox event is dead',
      );
    }
    if (!ok)
      deps.logger.warn({ eventId: event.id }, 'outbox lease lost before the failure was recorded');
  }

  /**
   * Publishes one batch inside the claim transaction (in-store sinks only): each event goes to
   * its routes' sinks in route order, then all are marked published in the same commit. Returns
   * how many were published, or -1 when the batch was refused (rolled back): the caller then
   * takes it through the leased path, where each event succeeds or fails on its own.
   */
  async function publishInStoreOnce(): Promise<number> {
    let written: Array<[OutboxSink, InStoreTransaction]> = [];
    try {
      const r = await deps.outbox.publishInStore(
        { now: deps.now(), limit: inStoreBatchSize, patterns, ordered },
        async (trx, events) => {
          written = [];
          const done = new Map<string, string[]>();
          const bySink = new Map<string, OutboxEvent[]>();
          for (const e of events) {
            const all = [...e.sinksDone];
            for (const name of sinksFor(e.topic)) {
              if (all.includes(name)) continue;
              all.push(name);
              const list = bySink.get(name);
              if (list) list.push(e);
              else bySink.set(name, [e]);
            }
            done.set(e.id, all);
          }
          for (const [name, list] of bySink) {
            const sink = deps.sinks[name] as OutboxSink;
            await sink.publishInStore?.(trx, list);
            written.push([sink, trx]);
          }
          return done;
        },
      );
      for (const [sink, trx] of written) {
        await sink
          .inStoreCommitted?.(trx)
          .catch((err: unknown) =>
            deps.logger.warn({ err }, 'an in-store sink failed after its transaction committed'),
          );
      }
      return r.events.length;
    } catch (err) {
      deps.logger.warn(
        { err, relayId: id },
        'an in-store outbox batch was refused; publishing it event by event',
      );
      return -1;
    }
  }

  async function runOnce(): Promise<number> {
    let fast = 0;
    if (inStore) {
      fast = await publishInStoreOnce();
      // A full batch: more are due. Otherwise the leased claim below takes what the in-store
      // path does not (expired leases of a relay that died, a refused batch).
      if (fast === inStoreBatchSize) return fast;
    }
    const events = await deps.outbox.claim({
      owner: id,
      now: deps.now(),
      leaseMs,
      limit: batchSize,
      patterns,
      ordered,
    });
    if (events.length === 0) return Math.max(0, fast);
    // Keep the leases while the batch is out (a slow sink must not let another relay take over).
    const beat = setInterval(
      () => {
        deps.outbox
          .extend({ owner: id, events, leaseUntil: deps.now() + leaseMs })
          .catch((err: unknown) => deps.logger.warn({ err }, 'extending outbox leases failed'));
      },
      Math.max(50, Math.floor(leaseMs / 3)),
    );
    try {
      // Events of one key never share a batch when ordered (only the earliest is claimable).
      await publishBatch(events);
    } finally {
      clearInterval(beat);
    }
    return Math.max(0, fast) + events.length;
  }

  /**
   * One lane: claims and publishes batches back to back while they come full, else waits for a
   * wake-up or the poll interval. `concurrency` lanes run at once, so the next batch is claimed
   * while one is out at the sinks (a key's order holds: the claim itself refuses an event
   * whose earlier event is unfinished, whichever lane holds that one).
   */
  async function lane(): Promise<void> {
    while (running) {
      let n = 0;
      try {
        n = await runOnce();
      } catch (err) {
        deps.logger.error(
          { err, relayId: id },
          'outbox claim failed; retrying after the poll interval',
        );
      }
      if (!running) break;
      if (n >= batchSize) continue;
      if (woken) {
        woken = false;
        continue;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          waiting.delete(done);
          resolve();
        };
        const t = setTimeout(done, pollMs);
        waiting.add(done);
      });
    }
  }

  async function listen(): Promise<void> {
    if (deps.store.dialect !== 'postgres' || !running) return;
    const client = new pg.Client({
      ...deps.store.systemPool.options,
      application_name: 'docket:outbox',
    });
    const again = (err: unknown) => {
      if (listener === client) listener = undefined;
      client.removeAllListeners();
      client.on('error', () => undefined);
      client.end().catch(() => undefined);
      if (!running) return;
      deps.logger.warn({ err }, 'outbox LISTEN connection lost; polling until it returns');
      listenRetry = setTimeout(() => void listen(), 1000);
      listenRetry.unref();
    };
    client.on('error', again);
    client.on('notification', signal);
    try {
      await client.connect();
      await client.query('listen docket_outbox');
      listener = client;
      signal(); // anything added while not listening
    } catch (err) {
      again(err);
    }
  }

  return {
    id,
    async start() {
      if (running) return;
      running = true;
      deps.wakeups.on('added', signal);
      await listen();
      loopDone = Promise.all(Array.from({ length: concurrency }, lane)).then(() => undefined);
    },
    runOnce,
    async stop() {
      if (!running) return;
      running = false;
      deps.wakeups.off('added', signal);
      clearTimeout(listenRetry);
      for (const w of [...waiting]) w();
      await loopDone;
      const l = listener;
      listener = undefined;
      if (l) {
        l.removeAllListeners();
        l.on('error', () => undefined);
        await l.end().catch(() => undefined);
      }
    },
  };
}
