import { DocketError, isDocketError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Service } from '../core/service.js';
import type { PreparedAuditEvent } from './store.js';

/** Options of the batched audit writer (SPEC A-5). */
export interface AuditWriterOptions {
  /** Events per flush (one transaction). Default: `audit.batchSize` (20,000 SQLite, 5,000 PostgreSQL). */
  batchSize: number;
  /** Longest an event waits in the buffer before a flush, ms. Default 200. */
  flushIntervalMs: number;
  /** Events held in memory at most; beyond it `record()` waits, then drops. Default 50_000. */
  maxBuffer: number;
  /** Longest `record()` waits for buffer room before dropping the event, ms. Default 100. */
  maxBlockMs: number;
  /** First retry delay after a failed flush, ms (doubles up to 5 s). Default 100. */
  retryBaseMs: number;
  /** Consecutive failed flushes after which an alert is raised. Default 5. */
  alertAfterFailures: number;
}

/** What the writer needs from the rest of Docket. */
export interface AuditWriterDeps {
  /** Appends events in one transaction (chain + one multi-row insert). */
  append(events: PreparedAuditEvent[]): Promise<void>;
  /** Persists an alert row; may fail while the store is down. */
  raiseAlert(alert: {
    key: string;
    message: string;
    details: Record<string, unknown>;
  }): Promise<void>;
  /** Frees what `append` holds (the writer thread); called last by `stop()`. */
  release?(): Promise<void>;
  /** Counters for /metrics. */
  metrics: {
    written(n: number): void;
    dropped(n: number, reason: 'buffer_full' | 'rejected' | 'shutdown'): void;
    flushFailed(): void;
    buffered(n: number): void;
  };
  logger: Logger;
}

const RETRY_CAP_MS = 5000;

/**
 * Bounded in-memory buffer flushed by size and by interval, one transaction per flush. A
 * failed flush keeps its events at the head of the buffer and is retried with backoff; after
 * `alertAfterFailures` failures in a row an alert is raised (and re-raised once the store
 * answers again, with the count of events dropped meanwhile). An event the store rejects on
 * its own (not a connection failure) is isolated by retrying the batch one event at a time,
 * so one bad event cannot block the others; it is dropped, logged and counted.
 */
export class AuditWriter implements Service {
  private buffer: PreparedAuditEvent[] = [];
  private waiters: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private failures = 0;
  private droppedSinceAlert = 0;
  private alertPending = false;
  private stopped = true;

  constructor(
    private readonly deps: AuditWriterDeps,
    private readonly options: AuditWriterOptions,
  ) {}

  /** Events waiting to be written. */
  get pending(): number {
    return this.buffer.length;
  }

  /** Starts the interval flush. */
  async start(): Promise<void> {
    this.stopped = false;
  }

  /** Queues an event; waits at most `maxBlockMs` for buffer room, then drops it. */
  async enqueue(event: PreparedAuditEvent): Promise<'queued' | 'dropped'> {
    if (this.buffer.length >= this.options.maxBuffer) {
      await this.waitForRoom();
      if (this.buffer.length >= this.options.maxBuffer) {
        this.drop(1, 'buffer_full');
        return 'dropped';
      }
    }
    this.buffer.push(event);
    // The gauge is refreshed every 1,024 events and after each flush, not per event.
    if ((this.buffer.length & 1023) === 0) this.deps.metrics.buffered(this.buffer.length);
    if (this.buffer.length >= this.options.batchSize) this.kick();
    else this.timer ??= setTimeout(() => this.kick(), this.options.flushIntervalMs);
    return 'queued';
  }

  private waitForRoom(): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, this.options.maxBlockMs);
      const waiter = () => done();
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.waiters.push(waiter);
    });
  }

  private kick(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.flushing ??= this.drain(true).finally(() => {
      this.flushing = undefined;
      // Events that arrived during a failed flush need the next attempt scheduled.
      if (this.buffer.length > 0 && !this.timer) {
        const delay = this.failures
          ? Math.min(RETRY_CAP_MS, this.options.retryBaseMs * 2 ** (this.failures - 1))
          : this.options.flushIntervalMs;
        this.timer = setTimeout(() => this.kick(), delay);
        if (this.stopped) this.timer.unref();
      }
    });
  }

  /** Writes everything buffered now (tests, shutdown); rejects if the store stays down. */
  async flush(): Promise<void> {
    while (this.buffer.length > 0 || this.flushing) {
      if (!this.flushing) this.kick();
      await this.flushing;
      if (this.failures > 0 && this.buffer.length > 0) {
        throw new DocketError('STORE_UNAVAILABLE', 'audit events could not be written', {
          pending: this.buffer.length,
        });
      }
    }
  }

  /** One flush pass. */
  async runOnce(): Promise<void> {
    this.kick();
    await this.flushing;
  }

  /**
   * Writes one batch of whatever is buffered, then keeps going while at least a tenth of a
   * batch arrived during the previous write (so an asynchronous store is kept busy with
   * batches that grow with the load). Fewer wait for the interval or for a full batch: writing
   * them at once made batches tiny on SQLite, whose writes block the producer (measured:
   * 10-event flushes and 2.6k events/s, against 7.4k with this rule).
   */
  private async drain(first: boolean): Promise<void> {
    const worthIt = Math.max(1, Math.floor(this.options.batchSize / 10));
    let force = first;
    while (this.buffer.length >= worthIt || (force && this.buffer.length > 0)) {
      force = false;
      const batch = this.buffer.slice(0, this.options.batchSize);
      try {
        await this.write(batch);
      } catch (err) {
        this.onFlushFailed(err, batch.length);
        return;
      }
      this.buffer.splice(0, batch.length);
      this.deps.metrics.buffered(this.buffer.length);
      for (const w of this.waiters.splice(0)) w();
      if (this.failures > 0 || this.alertPending) await this.onRecovered();
    }
  }

  private async write(batch: PreparedAuditEvent[]): Promise<void> {
    try {
      await this.deps.append(batch);
      this.deps.metrics.written(batch.length);
    } catch (err) {
      if (isDocketError(err, 'STORE_UNAVAILABLE') || batch.length === 1) throw err;
      // The store answered but refused the batch: find and drop the event(s) it refuses.
      for (const e of batch) {
        try {
          await this.deps.append([e]);
          this.deps.metrics.written(1);
        } catch (one) {
          if (isDocketError(one, 'STORE_UNAVAILABLE')) throw one;
          this.deps.logger.error(
            { err: one, eventId: e.id, action: e.action, tenantId: e.tenant_id },
            'the store refused an audit event; dropped',
          );
          this.drop(1, 'rejected');
        }
      }
    }
  }

  private onFlushFailed(err: unknown, size: number): void {
    this.failures += 1;
    this.deps.metrics.flushFailed();
    this.deps.logger.error(
      { err, failures: this.failures, batch: size, buffered: this.buffer.length },
      'writing audit events failed; retrying',
    );
    if (this.failures >= this.options.alertAfterFailures) this.alertPending = true;
  }

  private async onRecovered(): Promise<void> {
    const failures = this.failures;
    this.failures = 0;
    if (!this.alertPending) return;
    this.alertPending = false;
    const dropped = this.droppedSinceAlert;
    this.droppedSinceAlert = 0;
    await this.deps
      .raiseAlert({
        key: 'audit.writer.failing',
        message: `audit writes failed ${failures} times in a row; ${dropped} events were dropped`,
        details: { failures, dropped },
      })
      .catch((err: unknown) => this.deps.logger.error({ err }, 'raising the audit alert failed'));
  }

  private drop(n: number, reason: 'buffer_full' | 'rejected' | 'shutdown'): void {
    this.droppedSinceAlert += n;
    this.deps.metrics.dropped(n, reason);
    if (reason === 'rejected') this.alertPending = true;
  }

  /** Flushes what it can within `deadlineMs`, then drops (and counts) the rest. */
  async stop(options: { deadlineMs?: number } = {}): Promise<void> {
    this.stopped = true;
    const deadline = options.deadlineMs ?? 5000;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.flush().catch(() => undefined),
      new Promise((r) => (timer = setTimeout(r, deadline))),
    ]);
    clearTimeout(timer);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.buffer.length > 0) {
      this.deps.logger.error(
        { dropped: this.buffer.length },
        'audit events still unwritten at shutdown were dropped',
      );
      this.drop(this.buffer.length, 'shutdown');
      this.buffer = [];
    }
    await this.deps.release?.();
  }
}
