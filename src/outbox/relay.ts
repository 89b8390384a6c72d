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
import { backoffDelay } from '../jobs/retry-policy.js';
import { topicMatches, type OutboxStore } from './store.js';
import {
  PermanentSinkError,
  type OutboxEvent,
  type OutboxRoute,
  type OutboxSink,
} from './types.js';

/** Options of a relay. */
export interface RelayOptions {
  /** Events claimed per round. Default 100. */
  batchSize?: number;
  /** How long a claimed event stays this relay's before another may take it over, ms. Default 30,000. */
  leaseMs?: number;
  /** Fallback poll when no wake-up arrives, ms. Default 1,000. */
  pollIntervalMs?: number;
  /** Per-key ordering (O-3): a key's events go out one at a time in order. Default true. */
  ordered?: boolean;
  /** Backoff between attempts of one event. Default base 1 s, cap 10 min. */
  retry?: Pick<RetryPolicy, 'baseMs' | 'capMs'>;
  /** Stable id recorded as the lease owner. Default `hostname:pid:random`. */
  relayId?: string;
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

/** Creates a relay (not started). */
export function createRelay(deps: RelayDeps, o: RelayOptions = {}): OutboxRelay {
  const id = o.relayId ?? `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  const batchSize = o.batchSize ?? 100;
  const leaseMs = o.leaseMs ?? 30_000;
  const pollMs = o.pollIntervalMs ?? 1000;
  const ordered = o.ordered ?? true;
  const retry: RetryPolicy = {
    baseMs: o.retry?.baseMs ?? 1000,
    capMs: o.retry?.capMs ?? 600_000,
    maxAttempts: 1,
  };
  const patterns = [...new Set(deps.routes.map((r) => r.topic))];
  let running = false;
  let loopDone: Promise<void> | undefined;
  let wake: (() => void) | undefined;
  let woken = false;
  let listener: pg.Client | undefined;
  let listenRetry: NodeJS.Timeout | undefined;
  const inFlight = new AbortController();

  const signal = () => {
    if (wake) wake();
    else woken = true;
  };

  const sinksFor = (topic: string): string[] => [
    ...new Set(deps.routes.filter((r) => topicMatches(r.topic, topic)).map((r) => r.sink)),
  ];

  async function publishOne(event: OutboxEvent): Promise<void> {
    const now = () => deps.now();
    const done = [...event.sinksDone];
    if (event.attempts > event.maxAttempts) {
      // Claimed again after leases expired more times than it has attempts (its relays died).
      await deps.outbox.markFailed({
        owner: id,
        event,
        sinksDone: done,
        error: event.lastError ?? `lease expired ${event.attempts - 1} times`,
        dead: true,
        availableAt: now(),
        now: now(),
      });
      return;
    }
    let error: string | undefined;
    let permanent = false;
    for (const name of sinksFor(event.topic)) {
      if (done.includes(name)) continue;
      const sink = deps.sinks[name];
      if (!sink) {
        error = `route names sink "${name}", which is not configured`;
        permanent = true;
        break;
      }
      try {
        await sink.publish(event, inFlight.signal);
        done.push(name);
      } catch (err) {
        error = `${name}: ${(err as Error).message ?? String(err)}`;
        permanent = err instanceof PermanentSinkError;
        break;
      }
    }
    if (error === undefined) {
      const ok = await deps.outbox.markPublished({ owner: id, event, sinksDone: done, now: now() });
      if (!ok)
        deps.logger.warn(
          { eventId: event.id },
          'outbox lease lost before the event was marked published',
        );
      return;
    }
    const dead = permanent || event.attempts >= event.maxAttempts;
    const t = now();
    const ok = await deps.outbox.markFailed({
      owner: id,
      event,
      sinksDone: done,
      error,
      dead,
      availableAt: dead ? t : t + backoffDelay(retry, event.attempts),
      now: t,
    });
    if (ok && dead) {
      deps.logger.warn({ eventId: event.id, topic: event.topic, error }, 'outbox event is dead');
    }
    if (!ok)
      deps.logger.warn({ eventId: event.id }, 'outbox lease lost before the failure was recorded');
  }

  async function runOnce(): Promise<number> {
    const events = await deps.outbox.claim({
      owner: id,
      now: deps.now(),
      leaseMs,
      limit: batchSize,
      patterns,
      ordered,
    });
    if (events.length === 0) return 0;
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
      await Promise.all(
        events.map((e) =>
          publishOne(e).catch((err: unknown) =>
            deps.logger.error({ err, eventId: e.id }, 'recording an outbox outcome failed'),
          ),
        ),
      );
    } finally {
      clearInterval(beat);
    }
    return events.length;
  }

  async function loop(): Promise<void> {
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
      if (n === batchSize) continue;
      if (woken) {
        woken = false;
        continue;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, pollMs);
        wake = () => {
          clearTimeout(t);
          wake = undefined;
          resolve();
        };
      });
      wake = undefined;
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
      loopDone = loop();
    },
    runOnce,
    async stop() {
      if (!running) return;
      running = false;
      deps.wakeups.off('added', signal);
      clearTimeout(listenRetry);
      wake?.();
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
