import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { DocketError } from '../core/errors.js';
import type { Service } from '../core/service.js';
import {
  admitClaimed,
  completeJobs,
  encodeResult,
  leaseLostError,
  recordFailure,
  startAttempt,
  type ExecutionDeps,
  type JobCompletion,
  type JobHandler,
  type RunningAttempt,
  RetryJobError,
} from '../jobs/index.js';
import type { Job } from '../jobs/index.js';

/** Worker options. */
export interface WorkerOptions {
  /** Handlers keyed by job type; the worker claims only these types. */
  handlers: Record<string, JobHandler<never> | undefined>;
  /** Jobs run at once. Default 10. */
  concurrency?: number;
  /** Only these queues. Default all. */
  queues?: string[];
  /**
   * Jobs claimed ahead of free slots, to hide claim latency. A number fixes it; `'auto'` adapts
   * it between `concurrency` and `maxPrefetch`: it doubles while claims come back full and the
   * buffer runs dry before the next claim (short jobs), and halves while buffered jobs wait
   * (long jobs), so a busy worker claims in big batches without hoarding slow jobs. Default `'auto'`.
   */
  prefetch?: number | 'auto';
  /** Upper bound of the adaptive prefetch. Default 1000. */
  maxPrefetch?: number;
  /** Fallback poll interval when no wake-up arrives, ms. Default 1000 (200 without cross-process wake-ups). */
  pollIntervalMs?: number;
  /** Lease per claim, ms. Default `jobs.leaseMs`. */
  leaseMs?: number;
  /** Stable id for `locked_by`. Default `hostname:pid:random`. */
  workerId?: string;
}

/** A running worker. */
export interface Worker extends Service {
  /** This worker's id (`locked_by`). */
  readonly id: string;
  /** Stops claiming, waits up to `deadlineMs` for running jobs, then releases the rest. */
  stop(options?: { deadlineMs?: number }): Promise<void>;
  /** Jobs running now. */
  readonly running: number;
}

/** A worker id unique across machines and restarts: `host:pid:random` (it is the lease token). */
export function newWorkerId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(8).toString('hex')}`;
}

interface Slot {
  job: Job;
  attempt: RunningAttempt;
  /** Lease end as of the last successful heartbeat; past it the job may be running elsewhere. */
  leaseUntil: number;
}

/**
 * The run loop: claims in batches into a small local buffer, runs up to `concurrency` handlers,
 * batches completions into one statement per flush, heartbeats all held leases in one statement,
 * and aborts a handler whose lease was lost.
 */
export class JobWorker implements Worker {
  readonly id: string;
  private readonly concurrency: number;
  /** Current prefetch (fixed, or adapted when `prefetch: 'auto'`). */
  private prefetch: number;
  private readonly adaptive: boolean;
  private readonly minPrefetch: number;
  private readonly maxPrefetch: number;
  private lastClaimFull = false;
  /** A slot was free while the buffer was empty since the last claim. */
  private starved = false;
  private lastClaimAt = 0;
  /** Size asked for by the most recent claim (0 when there was no room to claim). */
  private lastWanted = 0;
  private readonly pollIntervalMs: number;
  private readonly leaseMs: number;
  private readonly types: string[];
  private readonly buffer: Job[] = [];
  private readonly slots = new Map<string, Slot>();
  /** Jobs whose completion is queued or being written; their leases must still be heartbeated. */
  private readonly completing = new Map<string, Job>();
  private completionQueue: JobCompletion[] = [];
  private flushing: Promise<void> | undefined;
  private state: 'idle' | 'running' | 'stopping' | 'stopped' = 'idle';
  private wake: (() => void) | undefined;
  /** A wake-up that arrived while the loop was busy (claiming); consumed before sleeping. */
  private wokenWhileBusy = false;
  private loopDone: Promise<void> | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private heartbeating = false;
  /** Rate-limited types whose window is spent, until when (not claimed before then). */
  private readonly spentUntil = new Map<string, number>();
  private wakeTimer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private readonly failures = new Set<Promise<unknown>>();
  private stopping: Promise<void> | undefined;
  /** Wall-clock time after which a stopping worker gives up writing completions. */
  private stopDeadline = Infinity;

  constructor(
    private readonly deps: ExecutionDeps,
    private readonly options: WorkerOptions,
  ) {
    this.id = options.workerId ?? newWorkerId();
    this.concurrency = options.concurrency ?? 10;
    this.adaptive = options.prefetch === undefined || options.prefetch === 'auto';
    this.minPrefetch = this.concurrency;
    this.maxPrefetch = Math.max(this.minPrefetch, options.maxPrefetch ?? 1000);
    this.prefetch = typeof options.prefetch === 'number' ? options.prefetch : this.minPrefetch;
    this.pollIntervalMs =
      options.pollIntervalMs ?? (deps.backend.capabilities.crossProcessWakeups ? 1000 : 200);
    this.leaseMs = options.leaseMs ?? deps.config.jobs.leaseMs;
    this.types = Object.keys(options.handlers).filter((t) => options.handlers[t]);
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) {
      throw new DocketError('CONFIG_INVALID', 'concurrency must be a positive integer');
    }
    if (this.types.length === 0)
      throw new DocketError('CONFIG_INVALID', 'a worker needs at least one handler');
  }

  /** Jobs running now. */
  get running(): number {
    return this.slots.size;
  }

  /** Starts claiming. */
  async start(): Promise<void> {
    if (this.state !== 'idle') return;
    this.state = 'running';
    this.unsubscribe = this.deps.backend.onJobsAvailable(() => this.signal());
    this.heartbeatTimer = setInterval(
      () => void this.heartbeat(),
      Math.max(50, Math.floor(this.leaseMs / 3)),
    );
    this.heartbeatTimer.unref();
    this.loopDone = this.loop();
  }

  /** One claim-and-dispatch pass (used by tests); the worker must be started. */
  async runOnce(): Promise<number> {
    if (this.state !== 'running') {
      throw new DocketError(
        'CONFIG_INVALID',
        'runOnce needs a started worker (claimed jobs would be stranded)',
      );
    }
    return this.fill();
  }

  private async loop(): Promise<void> {
    while (this.state === 'running') {
      let claimed = 0;
      let wanted = 0;
      try {
        this.lastWanted = 0;
        claimed = await this.fill();
        wanted = this.lastWanted;
      } catch (err) {
        this.deps.logger.error(
          { err, workerId: this.id },
          'claim failed; retrying after the poll interval',
        );
      }
      if (this.state !== 'running') break;
      // Full claim: go again as soon as a slot frees. Short claim: sleep until woken or polled.
      if (wanted > 0 && claimed === wanted) continue;
      if (this.wokenWhileBusy) {
        this.wokenWhileBusy = false;
        continue;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wanted > 0 ? this.pollIntervalMs : this.pollIntervalMs * 5);
        this.wake = () => {
          clearTimeout(t);
          this.wake = undefined;
          resolve();
        };
      });
    }
  }

  /** Wakes the loop after `ms` (one pending timer at a time). */
  private wakeAt(ms: number): void {
    if (this.wakeTimer) return;
    this.wakeTimer = setTimeout(
      () => {
        this.wakeTimer = undefined;
        this.signal();
      },
      Math.max(1, Math.min(ms, 2_147_483_647)),
    );
    this.wakeTimer.unref();
  }

  /** Wakes the loop now, or on its next sleep if it is busy claiming (no wake-up is lost). */
  private signal(): void {
    if (this.wake) this.wake();
    else this.wokenWhileBusy = true;
  }

  /**
   * Adapts the prefetch to how fast the buffer drains (see WorkerOptions.prefetch): grow when a
   * slot found the buffer empty since the last full claim; shrink when buffered jobs have been
   * waiting for over a second (jobs are slow, and another worker could be running them).
   */
  private adaptPrefetch(): void {
    if (!this.adaptive) return;
    if (this.starved && this.lastClaimFull) {
      this.prefetch = Math.min(this.maxPrefetch, this.prefetch * 2);
    } else if (this.buffer.length > 0 && Date.now() - this.lastClaimAt > 1000) {
      this.prefetch = Math.max(this.minPrefetch, Math.floor(this.prefetch / 2));
    }
    this.starved = false;
  }

  /** The handler types worth claiming now: those whose rate-limit window is not spent. */
  private claimableTypes(now: number): string[] {
    if (this.spentUntil.size === 0) return this.types;
    for (const [t, until] of this.spentUntil) if (until <= now) this.spentUntil.delete(t);
    return this.types.filter((t) => !this.spentUntil.has(t));
  }

  private async fill(): Promise<number> {
    this.adaptPrefetch();
    const want = this.concurrency + this.prefetch - this.slots.size - this.buffer.length;
    this.lastWanted = Math.max(0, want);
    if (want <= 0) return 0;
    const now = this.deps.clock.now();
    const types = this.claimableTypes(now);
    if (types.length === 0) {
      // Every type's window is spent: sleep until the first one reopens.
      this.lastWanted = 0;
      this.wakeAt(Math.min(...this.spentUntil.values()) - now);
      return 0;
    }
    const jobs = await this.deps.backend.jobClaimBatch({
      workerId: this.id,
      limit: want,
      now,
      leaseMs: this.leaseMs,
      types,
      queues: this.options.queues,
    });
    this.lastClaimFull = jobs.length === want;
    this.lastClaimAt = Date.now();
    const admission = await admitClaimed(this.deps, this.id, jobs);
    for (const [t, until] of admission.spentUntil) this.spentUntil.set(t, until);
    this.buffer.push(...admission.admitted);
    this.dispatch();
    this.lastWanted = want;
    return jobs.length;
  }

  private dispatch(): void {
    if (this.buffer.length === 0 && this.slots.size < this.concurrency) this.starved = true;
    while (
      this.slots.size < this.concurrency &&
      this.buffer.length > 0 &&
      this.state === 'running'
    ) {
      const job = this.buffer.shift() as Job;
      const handler = this.options.handlers[job.type] as JobHandler<unknown>;
      // Re-claiming our own job means our earlier lease on it lapsed: that run is no longer ours.
      this.slots.get(job.id)?.attempt.abort(leaseLostError());
      const attempt = startAttempt(this.deps, job, handler);
      this.slots.set(job.id, { job, attempt, leaseUntil: job.leaseUntil ?? 0 });
      void attempt.outcome.then((outcome) => this.settle(job, outcome));
    }
  }

  private settle(job: Job, outcome: Awaited<RunningAttempt['outcome']>): void {
    // A job released by a forced shutdown, or re-claimed after our lease lapsed, is no longer
    // this run's: ignore its late outcome.
    if (this.slots.get(job.id)?.job !== job) return;
    this.slots.delete(job.id);
    if (outcome.kind === 'succeeded') {
      const resultJson = encodeResult(this.deps, job, outcome.result);
      this.completing.set(job.id, job);
      this.completionQueue.push({ id: job.id, tenantId: job.tenantId, resultJson, type: job.type });
      this.flushing ??= this.flushCompletions();
    } else if (outcome.kind === 'failed') {
      this.completing.set(job.id, job);
      const p = recordFailure(this.deps, job, this.id, outcome.error)
        .then((r) => {
          if (r === 'lost')
            this.deps.logger.warn({ jobId: job.id }, 'lease lost before the failure was recorded');
        })
        .catch((err: unknown) =>
          this.deps.logger.error({ err, jobId: job.id }, 'recording a failure failed'),
        )
        .finally(() => {
          this.completing.delete(job.id);
          this.failures.delete(p);
        });
      this.failures.add(p);
    } else {
      this.deps.logger.warn({ jobId: job.id }, 'job abandoned: its lease was lost');
    }
    this.dispatch();
    this.signal();
  }

  private async flushCompletions(): Promise<void> {
    try {
      while (this.completionQueue.length > 0) {
        const batch = this.completionQueue;
        this.completionQueue = [];
        try {
          const done = new Set(await completeJobs(this.deps, this.id, batch));
          for (const item of batch) {
            if (!done.has(item.id)) {
              this.deps.logger.warn(
                { jobId: item.id },
                'completion refused: the lease was lost before it was written',
              );
            }
          }
        } catch (err) {
          // The jobs stay leased to us; the reaper re-runs them after the lease if we cannot recover.
          this.deps.logger.error(
            { err, count: batch.length },
            'writing completions failed; retrying',
          );
          if (Date.now() > this.stopDeadline) {
            this.deps.logger.error(
              { count: batch.length },
              'giving up on completions at the shutdown deadline; the reaper will re-run these jobs',
            );
            return;
          }
          this.completionQueue.unshift(...batch);
          await new Promise((r) => setTimeout(r, 250));
          continue;
        }
        for (const item of batch) this.completing.delete(item.id);
      }
    } finally {
      this.flushing = undefined;
    }
  }

  private async heartbeat(): Promise<void> {
    // One heartbeat at a time: overlapping ones would race each other's row updates.
    if (this.heartbeating) return;
    this.heartbeating = true;
    try {
      await this.heartbeatOnce();
    } finally {
      this.heartbeating = false;
    }
  }

  private async heartbeatOnce(): Promise<void> {
    const jobs = [
      ...[...this.slots.values()].map((s) => s.job),
      ...this.buffer,
      ...this.completing.values(),
    ];
    if (jobs.length === 0) return;
    const now = this.deps.clock.now();
    try {
      const held = new Set(
        await this.deps.backend.jobHeartbeat({
          workerId: this.id,
          jobs,
          leaseUntil: now + this.leaseMs,
          now,
        }),
      );
      for (const [id, slot] of this.slots) {
        if (held.has(id)) slot.leaseUntil = now + this.leaseMs;
        else slot.attempt.abort(leaseLostError());
      }
      for (let i = this.buffer.length - 1; i >= 0; i--) {
        if (!held.has((this.buffer[i] as Job).id)) this.buffer.splice(i, 1);
      }
    } catch (err) {
      this.deps.logger.warn({ err, workerId: this.id }, 'heartbeat failed');
      // Without a renewed lease, a job past its lease end may already run elsewhere: stop ours.
      for (const slot of this.slots.values()) {
        if (slot.leaseUntil <= now) slot.attempt.abort(leaseLostError());
      }
    }
  }

  /** Graceful shutdown: stop claiming, wait for running jobs until the deadline, release the rest. */
  stop(options: { deadlineMs?: number } = {}): Promise<void> {
    if (this.state === 'idle') {
      this.state = 'stopped';
      return Promise.resolve();
    }
    this.stopping ??= this.shutdown(options.deadlineMs ?? 30_000);
    return this.stopping;
  }

  private async shutdown(deadlineMs: number): Promise<void> {
    this.state = 'stopping';
    this.stopDeadline = Date.now() + deadlineMs;
    this.unsubscribe?.();
    this.wake?.();
    try {
      await this.loopDone;
      const unstarted = this.buffer.splice(0);
      // Never started: hand them back without counting an attempt.
      if (unstarted.length) {
        await this.deps.backend.jobRelease({
          workerId: this.id,
          jobs: unstarted,
          now: this.deps.clock.now(),
        });
      }
      while (this.slots.size > 0 && Date.now() < this.stopDeadline) {
        await Promise.race([
          ...[...this.slots.values()].map((s) => s.attempt.outcome),
          new Promise((r) => setTimeout(r, Math.max(0, this.stopDeadline - Date.now()))),
        ]);
      }
      // Started but unfinished at the deadline: the attempt counts (a handler that always hangs
      // must still reach the DLQ), and the job is retried at once elsewhere.
      const interrupted = [...this.slots.values()];
      this.slots.clear();
      for (const s of interrupted) s.attempt.abort(new Error('worker shutting down'));
      await Promise.all(
        interrupted.map((s) =>
          recordFailure(
            this.deps,
            s.job,
            this.id,
            new RetryJobError(
              'the worker shut down before the job finished',
              this.deps.clock.now(),
            ),
          ).catch((err: unknown) =>
            this.deps.logger.error({ err, jobId: s.job.id }, 'releasing an interrupted job failed'),
          ),
        ),
      );
      while (this.flushing || this.failures.size > 0) {
        await Promise.all([this.flushing, ...this.failures]);
      }
    } finally {
      clearInterval(this.heartbeatTimer);
      clearTimeout(this.wakeTimer);
      this.state = 'stopped';
    }
  }
}
