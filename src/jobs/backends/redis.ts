import { EventEmitter } from 'node:events';
import { Redis } from 'ioredis';
import type { Logger } from '../../core/logger.js';
import type { TenantTransaction } from '../../store/index.js';
import type {
  JobBackend,
  JobBackendCapabilities,
  JobChange,
  JobClaimBatchParams,
  JobFailureParams,
  JobInsertOutcome,
  JobRef,
  JobState,
  KeyedJobClaims,
} from '../backend.js';
import type { DlqItem, Job, Page } from '../types.js';
import { RedisDispatch, refOf, type DispatchRef } from './redis-dispatch.js';

/** The parameters of a JobBackend method. */
type Params<K extends keyof JobBackend> = JobBackend[K] extends (p: infer P) => unknown ? P : never;

const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);
const RECONCILE_PAGE = 1000;
/** Claim rounds per jobClaimBatch when the store turns messages down. */
const CLAIM_ROUNDS = 16;

/**
 * `DOCKET_QUEUE=redis`: the store (SQLite or PostgreSQL) stays the truth for every job; Redis
 * carries the dispatch messages (SPEC ). Every state change is the store's
 * guarded write; the message follows it (published after the job row commits, acked after the
 * completion commits, rescheduled after a retry commits). A message the store disagrees with
 * is fixed from the store's state at claim time, and a reconciliation pass republishes pending
 * jobs that have no message (a crash between commit and publish, a Redis restart) and drops
 * messages of finished jobs, so losing Redis loses nothing.
 */
export class RedisJobBackend implements JobBackend {
  readonly capabilities: JobBackendCapabilities = { crossProcessWakeups: true };
  private readonly wakeups = new EventEmitter();
  private readonly inTx = new WeakMap<object, Job[]>();
  /** Dispatch facts of jobs claimed here (id → queue and type), for their later writes. */
  private readonly held = new Map<string, DispatchRef>();
  private subscriber: Redis | undefined;
  private reconcileTimer: NodeJS.Timeout | undefined;
  private reconciling: Promise<number> | undefined;
  private unwatch: (() => void) | undefined;

  constructor(
    private readonly store: JobBackend & KeyedJobClaims,
    /** The Redis side (exposed for diagnostics and tests). */
    readonly dispatch: RedisDispatch,
    private readonly logger: Logger,
    private readonly now: () => number,
    /** How often pending jobs without a message are republished, ms. */
    private readonly reconcileIntervalMs: number,
  ) {
    this.wakeups.setMaxListeners(0);
  }

  /** Connects to Redis (a clear error naming the URL if it is down) and reconciles. */
  async start(): Promise<void> {
    await this.dispatch.start();
    try {
      await this.startAfterConnect();
    } catch (err) {
      await this.stop().catch(() => undefined);
      throw err;
    }
  }

  private async startAfterConnect(): Promise<void> {
    await this.store.start();
    // Redis going away mid-run: claims fail (workers log and sleep until the poll interval
    // or a wake-up), publications wait for reconciliation, /readyz says why. When ioredis has
    // reconnected, reconcile at once: a restarted Redis is empty, and every pending job needs
    // its message back before any worker can claim it.
    this.unwatch = this.dispatch.onConnectionChange({
      lost: (err) =>
        this.logger.warn(
          { err, url: this.dispatch.safeUrl },
          'lost the Redis connection; workers pause and jobs wait in the store until it is back',
        ),
      back: () => {
        this.logger.info({ url: this.dispatch.safeUrl }, 'Redis is back; reconciling');
        this.reconcile().catch((err: unknown) =>
          this.logger.warn({ err }, 'reconciling after the Redis reconnect failed; retrying'),
        );
      },
    });
    const sub = this.dispatch.client.duplicate({ enableAutoPipelining: false });
    sub.on('error', (err) => this.logger.warn({ err }, 'Redis wake-up connection failed'));
    // Another process's wake-up. Our own are skipped: every publish and wake here has already
    // woken this process's workers, whose claim follows the publish on the same connection.
    sub.on('message', (_channel: string, message: string) => {
      if (!this.dispatch.isOwnWake(message)) this.wakeups.emit('available');
    });
    await sub.connect();
    await sub.subscribe(this.dispatch.wakeChannel);
    this.subscriber = sub;
    await this.reconcile();
    // Its own timer, not the reaper's: it must run wherever the backend runs.
    this.reconcileTimer = setInterval(() => {
      this.reconcile().catch((err: unknown) =>
        this.logger.warn({ err }, 'reconciling Redis with the store failed; retrying'),
      );
    }, this.reconcileIntervalMs);
    this.reconcileTimer.unref();
  }

  /** Disconnects. */
  async stop(): Promise<void> {
    clearInterval(this.reconcileTimer);
    this.unwatch?.();
    this.unwatch = undefined;
    await this.reconciling?.catch(() => undefined);
    await this.subscriber?.quit().catch(() => this.subscriber?.disconnect());
    this.subscriber = undefined;
    await this.dispatch.stop();
    await this.store.stop();
  }

  private async publish(jobs: readonly JobState[] | readonly Job[]): Promise<number> {
    if (jobs.length === 0) return 0;
    this.wakeups.emit('available');
    return this.dispatch.publishMany(jobs, this.now());
  }

  /** Publishes after the store committed; on failure, reconciliation republishes later. */
  private async publishOrLog(jobs: readonly Job[]): Promise<void> {
    await this.publish(jobs).catch((err: unknown) =>
      this.logger.warn({ err }, 'publishing to Redis failed; reconciliation will republish'),
    );
  }

  private async wake(): Promise<void> {
    this.wakeups.emit('available');
    await this.dispatch.wake().catch((err: unknown) => this.logger.warn({ err }, 'wake failed'));
  }

  /** Inserts in the store, then publishes (after the caller's commit, for a transaction). */
  async jobInsertMany(p: Params<'jobInsertMany'>): Promise<JobInsertOutcome[]> {
    const out = await this.store.jobInsertMany(p);
    const inserted = out.filter((o) => o.kind === 'inserted').map((o) => o.job);
    if (p.tx) {
      this.inTx.set(p.tx, [...(this.inTx.get(p.tx) ?? []), ...inserted]);
    } else {
      await this.publishOrLog(inserted);
    }
    return out;
  }

  /** Publishes the jobs a committed transaction inserted. */
  async jobTransactionCommitted(tx: TenantTransaction): Promise<void> {
    const jobs = this.inTx.get(tx);
    this.inTx.delete(tx);
    // The transaction has committed: a Redis failure must not surface as its failure.
    if (jobs?.length) await this.publishOrLog(jobs);
  }

  /**
   * Pops messages round-robin across tenants, then claims their jobs in the store. Messages
   * the store turns down (stale: the job finished, was pruned, or is not due) are settled and
   * more are popped, up to 16 rounds, so stale messages rarely make a worker with work waiting
   * go to sleep (a mass of them, left by rows deleted behind Docket's back, is cleared at up to
   * 16 × limit per claim).
   */
  async jobClaimBatch(p: JobClaimBatchParams): Promise<Job[]> {
    const jobs: Job[] = [];
    for (let round = 0; round < CLAIM_ROUNDS && jobs.length < p.limit; round++) {
      const r = await this.claimRound({ ...p, limit: p.limit - jobs.length });
      jobs.push(...r.jobs);
      if (r.messages === 0 || r.jobs.length === r.messages) break;
    }
    return jobs.sort(
      (a, b) => a.priority - b.priority || a.availableAt - b.availableAt || (a.id < b.id ? -1 : 1),
    );
  }

  private async claimRound(p: JobClaimBatchParams): Promise<{ jobs: Job[]; messages: number }> {
    const messages = await this.dispatch.claim({
      now: p.now,
      limit: p.limit,
      visibilityMs: p.leaseMs,
      tenants: p.tenant ? [p.tenant] : undefined,
      queues: p.queues,
      types: p.types,
      excludeTypes: p.excludeTypes,
    });
    if (messages.length === 0) return { jobs: [], messages: 0 };
    const refs = messages.map(refOf);
    let jobs: Job[];
    try {
      jobs = await this.store.jobClaimByKeys({
        workerId: p.workerId,
        jobs: refs.map((r) => ({ id: r.id, tenantId: r.tenantId })),
        now: p.now,
        leaseMs: p.leaseMs,
      });
    } catch (err) {
      // Not claimed in the store: the messages go back (reconciliation also rescues them).
      for (const r of refs) await this.dispatch.nack(r, p.now, p.now).catch(() => undefined);
      throw err;
    }
    const claimed = new Set(jobs.map((j) => j.id));
    for (const r of refs) if (claimed.has(r.id)) this.held.set(r.id, r);
    const unclaimed = refs.filter((r) => !claimed.has(r.id));
    // The claimed jobs are leased in the store now: return them even if Redis fails here (the
    // unsettled messages are redelivered at their visibility deadline).
    if (unclaimed.length) {
      await this.settleUnclaimed(unclaimed, p.now).catch((err: unknown) =>
        this.logger.warn({ err }, 'settling stale Redis messages failed'),
      );
    }
    return { jobs, messages: messages.length };
  }

  /** A message whose job was not claimable: follow the store's state. */
  private async settleUnclaimed(refs: DispatchRef[], now: number): Promise<void> {
    const states = new Map(
      (await this.store.jobStates({ jobs: refs })).map((s) => [s.id, s] as const),
    );
    const gone: DispatchRef[] = [];
    for (const r of refs) {
      const s = states.get(r.id);
      if (!s || TERMINAL.has(s.status)) gone.push(r);
      else if (s.status === 'dlq_pending' || s.status === 'dlq_recorded')
        await this.dispatch.bury(r, now);
      else if (s.status === 'pending')
        await this.dispatch.nack(r, Math.max(now, s.availableAt), now, s.availableAt);
      // Running elsewhere: look again when its lease ends (the reaper requeues it if it died),
      // and no sooner than a second from now.
      else await this.dispatch.nack(r, Math.max(now + 1000, s.leaseUntil ?? now), now);
    }
    await this.dispatch.ackMany(gone);
  }

  private refOf(j: JobRef): DispatchRef | undefined {
    return this.held.get(j.id);
  }

  private async refsOf(jobs: readonly JobRef[]): Promise<DispatchRef[]> {
    const missing = jobs.filter((j) => !this.held.has(j.id));
    const fetched = new Map(
      (missing.length ? await this.store.jobStates({ jobs: missing }) : []).map(
        (s) => [s.id, s] as const,
      ),
    );
    const out: DispatchRef[] = [];
    for (const j of jobs) {
      const r = this.refOf(j) ?? fetched.get(j.id);
      if (r) out.push({ id: r.id, tenantId: r.tenantId, queue: r.queue, type: r.type });
    }
    return out;
  }

  /** Completes in the store, then acks the messages of the jobs completed. */
  async jobCompleteMany(p: Params<'jobCompleteMany'>): Promise<string[]> {
    const done = await this.store.jobCompleteMany(p);
    const byId = new Map(p.items.map((i) => [i.id, i] as const));
    const refs = await this.refsOf(done.map((id) => byId.get(id) as JobRef));
    for (const id of done) this.held.delete(id);
    await this.dispatch
      .ackMany(refs)
      .catch((err: unknown) => this.logger.warn({ err }, 'acking Redis messages failed'));
    return done;
  }

  /** Retry in the store, then the message is due again at the retry time. */
  async jobRetry(p: JobFailureParams & { availableAt: number }): Promise<boolean> {
    const [ref] = await this.refsOf([p]);
    const ok = await this.store.jobRetry(p);
    this.held.delete(p.id);
    // The store committed: a Redis failure is not the retry's failure. The in-flight message
    // is redelivered at its visibility deadline (or republished by reconciliation) and then
    // follows the store's state.
    if (ok && ref) {
      await this.dispatch
        .nack(ref, p.availableAt, p.now, p.availableAt)
        .catch((err: unknown) => this.logger.warn({ err }, 'rescheduling a Redis message failed'));
    }
    if (ok && p.availableAt <= p.now) await this.wake();
    return ok;
  }

  /** DLQ step 1 in the store; the message goes to the dead set. */
  async jobDeadLetterBegin(p: JobFailureParams): Promise<boolean> {
    const [ref] = await this.refsOf([p]);
    const ok = await this.store.jobDeadLetterBegin(p);
    this.held.delete(p.id);
    if (ok && ref) {
      await this.dispatch
        .bury(ref, p.now)
        .catch((err: unknown) => this.logger.warn({ err }, 'burying a Redis message failed'));
    }
    return ok;
  }

  /** DLQ step 2 (store only). */
  jobDeadLetterRecord(p: Params<'jobDeadLetterRecord'>): Promise<boolean> {
    return this.store.jobDeadLetterRecord(p);
  }

  /** DLQ step 3 (store only). */
  jobDeadLetterFinish(p: Params<'jobDeadLetterFinish'>): Promise<boolean> {
    return this.store.jobDeadLetterFinish(p);
  }

  /** Jobs stuck between DLQ steps (store only). */
  jobDeadLetterStuck(
    p: Params<'jobDeadLetterStuck'>,
  ): Promise<Array<{ id: string; tenantId: string; status: string }>> {
    return this.store.jobDeadLetterStuck(p);
  }

  /** Extends leases in the store and the messages' visibility with them. */
  async jobHeartbeat(p: Params<'jobHeartbeat'>): Promise<string[]> {
    const held = await this.store.jobHeartbeat(p);
    const set = new Set(held);
    await this.dispatch
      .extend(await this.refsOf(p.jobs.filter((j) => set.has(j.id))), p.leaseUntil)
      .catch((err: unknown) => this.logger.warn({ err }, 'extending Redis visibility failed'));
    return held;
  }

  /** Releases in the store; the messages are due again now. */
  async jobRelease(p: Params<'jobRelease'>): Promise<string[]> {
    const refs = await this.refsOf(p.jobs);
    const released = new Set(await this.store.jobRelease(p));
    const at = p.availableAt ?? p.now;
    for (const r of refs) {
      this.held.delete(r.id);
      if (!released.has(r.id)) continue;
      await this.dispatch
        .nack(r, at, p.now, p.availableAt)
        .catch((err: unknown) => this.logger.warn({ err }, 'requeueing a Redis message failed'));
    }
    if (released.size) await this.wake();
    return [...released];
  }

  /** Store reaper, plus redelivery of messages whose visibility expired. */
  async jobReapExpired(
    p: Params<'jobReapExpired'>,
  ): Promise<{ requeued: string[]; deadLettered: string[] }> {
    const r = await this.store.jobReapExpired(p);
    const redelivered = await this.dispatch.expire(p.now, p.limit);
    if (r.requeued.length || redelivered.length) await this.wake();
    return r;
  }

  /** Redis answers (readiness). */
  ping(): Promise<void> {
    return this.dispatch.ping();
  }

  /** One job (store). */
  jobGet(p: Params<'jobGet'>): Promise<Job | null> {
    return this.store.jobGet(p);
  }

  /** A page of jobs (store). */
  jobList(p: Params<'jobList'>): Promise<Page<Job>> {
    return this.store.jobList(p);
  }

  /** Cancels in the store; the message is dropped. */
  async jobCancel(p: Params<'jobCancel'>): Promise<JobChange | null> {
    const change = await this.store.jobCancel(p);
    if (change?.changed) {
      // A leftover message is dropped when it is next claimed (the store says canceled).
      await this.dispatch
        .ack(change.job)
        .catch((err: unknown) => this.logger.warn({ err }, 'dropping a Redis message failed'));
    }
    return change;
  }

  /** Replays in the store; a fresh message is published. */
  async jobReplay(p: Params<'jobReplay'>): Promise<JobChange | null> {
    const change = await this.store.jobReplay(p);
    if (change?.changed) {
      // Rescue moves the job's message out of the dead set (or publishes one); if Redis fails
      // here, reconciliation does the same.
      await this.dispatch
        .rescue([change.job], this.now())
        .then(() => this.wake())
        .catch((err: unknown) => this.logger.warn({ err }, 'republishing a replay failed'));
    }
    return change;
  }

  /** DLQ purge (store). */
  dlqPurge(p: Params<'dlqPurge'>): Promise<boolean> {
    return this.store.dlqPurge(p);
  }

  /** DLQ list (store). */
  dlqList(p: Params<'dlqList'>): Promise<Page<DlqItem>> {
    return this.store.dlqList(p);
  }

  /** Retention (store); messages of pruned jobs are already gone. */
  jobPrune(p: Params<'jobPrune'>): Promise<number> {
    return this.store.jobPrune(p);
  }

  /** Rate limits are counted in the store (the truth), shared by every process. */
  rateLimitTake(p: Params<'rateLimitTake'>): Promise<number> {
    return this.store.rateLimitTake(p);
  }

  /** Removes old rate-limit counters (store). */
  rateLimitPrune(p: Params<'rateLimitPrune'>): Promise<number> {
    return this.store.rateLimitPrune(p);
  }

  /** Counts (store). */
  jobCountByStatus(p: Params<'jobCountByStatus'>): Promise<Record<string, number>> {
    return this.store.jobCountByStatus(p);
  }

  /** Subscribes to wake-ups (this process's and other processes' via Redis pub/sub). */
  onJobsAvailable(listener: () => void): () => void {
    this.wakeups.on('available', listener);
    return () => this.wakeups.off('available', listener);
  }

  /** Wakes this process's listeners. */
  notifyJobsAvailable(): void {
    this.wakeups.emit('available');
  }

  /**
   * Rebuilds dispatch state from the store: every pending job without a message gets one (a
   * crash between commit and publish, a flushed or restarted Redis). Returns how many were
   * republished.
   */
  reconcile(): Promise<number> {
    // One pass at a time (the timer and explicit calls share it).
    this.reconciling ??= this.reconcilePass().finally(() => (this.reconciling = undefined));
    return this.reconciling;
  }

  private async reconcilePass(): Promise<number> {
    let republished = 0;
    // Messages whose visibility passed go back to ready even where no reaper runs.
    await this.dispatch.expire(this.now(), RECONCILE_PAGE);
    let after: JobState | undefined;
    for (;;) {
      const page = await this.store.jobPendingPage({ after, limit: RECONCILE_PAGE });
      if (page.length === 0) break;
      republished += await this.dispatch.rescue(page, this.now());
      after = page[page.length - 1];
      if (page.length < RECONCILE_PAGE) break;
    }
    if (republished) {
      this.logger.info({ republished }, 'made pending jobs claimable again in Redis');
      await this.wake();
    }
    return republished;
  }
}
