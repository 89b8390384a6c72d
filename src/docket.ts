import type { Kysely, Transaction } from 'kysely';
import {
  optionsFromEnv,
  resolveConfig,
  schedulerLocksFromEnv,
  type DocketConfig,
  type DocketOptions,
} from './config/index.js';
import { systemClock, type Clock } from './core/clock.js';
import { DocketError } from './core/errors.js';
import { currentContext, requireTenant, runWithContext } from './core/context.js';
import { uuidV7Generator, type IdGenerator } from './core/ids.js';
import { silentLogger, type Logger } from './core/logger.js';
import { IntervalService } from './core/service.js';
import {
  JobsService,
  jobBackendFor,
  processBatch,
  type ActorOptions,
  type DlqItem,
  type EnqueueOptions,
  type EnqueueResult,
  type ExecutionDeps,
  type Failpoint,
  type Job,
  type JobBackend,
  type JobContext,
  type JobHandler,
  type JobHandlers,
  type JobListFilter,
  type JobMap,
  type JobTypeOptions,
  type Page,
  type ProcessBatchOptions,
  type ProcessBatchResult,
} from './jobs/index.js';
import { createHttpJobHandler, createHttpPayloadValidator } from './jobs/builtins/http-request.js';
import { validateRateLimit } from './jobs/rate-limits.js';
import {
  OutboxService,
  validateOutboxOptions,
  type OutboxListFilter,
  type OutboxOptions,
  type UnroutedTopics,
} from './outbox/service.js';
import type { WebhookDelivery } from './outbox/deliveries.js';
import type { OutboxRelay, RelayOptions } from './outbox/relay.js';
import type { OutboxJobPayload } from './outbox/sinks.js';
import type { OutboxAddInput, OutboxEvent } from './outbox/types.js';
import {
  EffectsService,
  createEmailJobHandler,
  createEmailTransport,
  validateEmailPayload,
  type Effect,
  type EffectFailpoint,
  type EffectInput,
  type EffectOutcome,
  type EffectProvider,
  type EffectReservation,
  type EffectState,
  type EmailTransport,
} from './effects/index.js';
import type { JsonValue } from './audit/content.js';
import {
  AuditService,
  type ActionOf,
  type AuditDefinition,
  type AuditEvent,
  type AuditEventFilter,
  type AuditPrincipal,
  type AuditReceipt,
  type AuditRecordOptions,
  type AuditResource,
  type AuditSettings,
  type AuditVerifyResult,
  type ResourceTypeOf,
} from './audit/index.js';
import { createMetrics, type DocketMetrics } from './core/metrics.js';
import {
  openStore,
  type DocketDatabase,
  type Store,
  type TenantTransaction,
} from './store/index.js';
import {
  Scheduler,
  resolveLocks,
  resolveTaskDefinition,
  type ExecutionListFilter,
  type SchedulerActorOptions,
  type SchedulerOptions,
  type SchedulerScope,
  type SchedulerTask,
  type TaskDefinition,
  type TaskExecution,
  type TaskStats,
  TriggerRegistry,
  TriggerService,
  type DueTrigger,
  type ScheduleTriggerInput,
  type ScheduleTriggerOptions,
  type ScheduleTriggerResult,
  type TriggerHandler,
  type TriggerJobPayload,
  type TriggerListFilter,
  type TriggersOptions,
  type TriggerTypeOptions,
} from './scheduler/index.js';
import {
  ProposalsService,
  type Proposal,
  type ProposalActorOptions,
  type ProposalApplyInput,
  type ProposalApplyOutcome,
  type ProposalInput,
  type ProposalKind,
  type ProposalListFilter,
  type ProposalsOptions,
} from './proposals/index.js';
import {
  JobWorker,
  newWorkerId,
  Reaper,
  type ReapResult,
  type Worker,
  type WorkerOptions,
} from './worker/index.js';

/** Type of the built-in maintenance job that prunes finished jobs past retention (SPEC Q-13). */
export const PRUNE_JOB = 'docket.prune';
/** Type of the built-in maintenance job that purges audit events past retention (SPEC A-7). */
export const AUDIT_PURGE_JOB = 'docket.audit_purge';
/** Tenant that owns Docket's own maintenance jobs. */
export const SYSTEM_TENANT = 'system';

/** Options of createDocket: configuration plus injected collaborators. */
export interface CreateDocketOptions<
  M extends JobMap,
  D extends AuditDefinition = AuditDefinition,
> extends DocketOptions {
  /**
   * The application's audit actions and resource types (from `defineAudit`); other actions are
   * then refused with AUDIT_ACTION_UNKNOWN. Default none: any well-formed action is accepted.
   */
  auditDefinition?: D;
  /** Handlers used by `createWorker()` and `processBatch()` when none are given. */
  handlers?: JobHandlers<M>;
  /** Per-type options; declaring types (or handlers) makes other types UNKNOWN_JOB_TYPE. */
  jobTypes?: { [K in keyof M & string]?: JobTypeOptions };
  /**
   * Reject job types that are neither declared (`jobTypes`/`handlers`) nor built in, even when
   * none are declared. The service sets this. Default false (any well-formed type name).
   */
  strictTypes?: boolean;
  /** Register the built-in `http` and `email` job types (and maintenance jobs). Default true. */
  builtins?: boolean;
  /** Run migrations on start. Default true. */
  migrate?: boolean;
  /** Reaper pass interval, ms (0 disables it). Default 1000. */
  reapIntervalMs?: number;
  /** How often `start()` enqueues the `docket.prune` maintenance job, ms (0 disables it). Default 3_600_000. */
  pruneIntervalMs?: number;
  /** Logger. Default silent. */
  logger?: Logger;
  /** Clock. Default system clock. */
  clock?: Clock;
  /** Id generator. Default UUIDv7. */
  ids?: IdGenerator;
  /** Randomness for retry jitter. Default Math.random. */
  random?: () => number;
  /**
   * Test-only crash injection: called at named points (between dead-letter steps, right after
   * an effect's provider answered, right after its answer was recorded). Default none.
   */
  failpoint?: (name: Failpoint | EffectFailpoint) => void | Promise<void>;
  /** The transactional outbox: routes from topics to sinks (SPEC O). Default none. */
  outbox?: OutboxOptions;
  /** The cron scheduler (SPEC S): tasks and tick settings. Default no tasks. */
  scheduler?: SchedulerOptions;
  /** Due triggers (SPEC S-6): handlers and options by trigger type. Default none. */
  triggers?: TriggersOptions;
  /** Proposals, confirm-before-apply (SPEC S-7): kinds and limits. Default no kinds. */
  proposals?: ProposalsOptions;
}

/** Proposals of a Docket instance, confirm-before-apply (SPEC S-7). */
export interface DocketProposals {
  /** Declares a kind: `apply(tx, proposal, candidate, ctx)` and `currentVersion(tx, proposal)`. */
  register<DB = DocketDatabase>(kind: string, definition: ProposalKind<DB>): void;
  /** Creates an `open` proposal (audited); VALIDATION_FAILED, PAYLOAD_TOO_LARGE, PROPOSAL_KIND_UNKNOWN. */
  create(input: ProposalInput, options?: ProposalActorOptions): Promise<Proposal>;
  /** Creates an `open` proposal inside a transaction from withTransaction. */
  createTx<DB>(
    tx: DocketTransaction<DB>,
    input: ProposalInput,
    options?: Omit<ProposalActorOptions, 'tenant'>,
  ): Promise<Proposal>;
  /**
   * Applies a proposal in one transaction with its kind's callback, once per proposal; the same
   * key and request replay the stored outcome. IDEMPOTENCY_CONFLICT, PROPOSAL_EXPIRED,
   * PROPOSAL_STALE, PROPOSAL_NOT_OPEN, PROPOSAL_NOT_FOUND, PROPOSAL_NO_CANDIDATE.
   */
  apply(
    id: string,
    input: ProposalApplyInput,
    options?: ProposalActorOptions,
  ): Promise<ProposalApplyOutcome>;
  /** Rejects an open proposal (audited); PROPOSAL_NOT_OPEN, PROPOSAL_EXPIRED. */
  reject(
    id: string,
    rejection?: { reason?: string },
    options?: ProposalActorOptions,
  ): Promise<Proposal>;
  /** One proposal; PROPOSAL_NOT_FOUND if absent or another tenant's. */
  get(id: string, options?: { tenant?: string }): Promise<Proposal>;
  /** A page of proposals, newest first, filtered by state, kind and target. */
  list(filter?: ProposalListFilter, options?: { tenant?: string }): Promise<Page<Proposal>>;
  /** Moves every open proposal past its expiry to `expired` now; returns how many. */
  expireOnce(): Promise<number>;
}

/** The cron scheduler of a Docket instance (SPEC S-1 … S-5). */
export interface DocketScheduler {
  /** Registers a task (validated now: SCHEDULE_INVALID, VALIDATION_FAILED); persisted on start. */
  register(task: TaskDefinition): void;
  /** Tasks visible to the scope (a tenant's, or every task without one), by name. */
  list(scope?: SchedulerScope): Promise<SchedulerTask[]>;
  /** One task; TASK_NOT_FOUND. */
  get(name: string, scope?: SchedulerScope): Promise<SchedulerTask>;
  /** Enables cron ticks (audited), effective on every instance's next pass. */
  enable(name: string, options?: SchedulerActorOptions): Promise<SchedulerTask>;
  /** Disables cron ticks (audited), effective on every instance's next pass. */
  disable(name: string, options?: SchedulerActorOptions): Promise<SchedulerTask>;
  /** Overrides the schedule, or restores the code's with null (audited); SCHEDULE_INVALID. */
  updateSchedule(
    name: string,
    schedule: { cron: string; timezone?: string } | null,
    options?: SchedulerActorOptions,
  ): Promise<SchedulerTask>;
  /** Runs a task now through the lock path (audited); TASK_DISABLED, TASK_RUNNING. */
  trigger(name: string, options?: SchedulerActorOptions): Promise<TaskExecution>;
  /** A page of executions, newest first. */
  executions(
    filter?: ExecutionListFilter,
    scope?: SchedulerScope,
  ): Promise<{ items: TaskExecution[]; nextCursor: string | null }>;
  /** One execution; EXECUTION_NOT_FOUND. */
  execution(id: string, scope?: SchedulerScope): Promise<TaskExecution>;
  /** Cancels a running execution (audited); its instance stops it within a tick. EXECUTION_NOT_RUNNING. */
  cancelExecution(
    id: string,
    options?: SchedulerActorOptions & { reason?: string },
  ): Promise<TaskExecution>;
  /** Per-task stats over a window (default 24 h). */
  stats(options?: SchedulerScope & { task?: string; windowMs?: number }): Promise<TaskStats[]>;
  /** One scheduler pass now (tests drive time with a ManualClock and call this). */
  runOnce(): Promise<TaskExecution[]>;
  /** Waits until every run this instance started is recorded as finished. */
  idle(): Promise<void>;
}

/** Due triggers of a Docket instance (SPEC S-6). */
export interface DocketTriggers {
  /**
   * Registers the handler of a trigger type (VALIDATION_FAILED for a bad or repeated name);
   * register before creating workers, which claim only the types known when they are made.
   */
  register<P = JsonValue>(
    type: string,
    handler: TriggerHandler<P>,
    options?: TriggerTypeOptions,
  ): void;
  /**
   * Schedules a trigger and its firing job in one transaction; within an open dedupe window of
   * (tenant, type, dedupeKey) the existing trigger is returned with `deduplicated: true`.
   * UNKNOWN_TRIGGER_TYPE, VALIDATION_FAILED, PAYLOAD_TOO_LARGE.
   */
  schedule<P extends JsonValue = JsonValue>(
    input: ScheduleTriggerInput<P>,
    options?: ScheduleTriggerOptions,
  ): Promise<ScheduleTriggerResult<P>>;
  /** Schedules inside a transaction from withTransaction: it exists only if that commits. */
  scheduleTx<P extends JsonValue = JsonValue, DB = DocketDatabase>(
    tx: DocketTransaction<DB>,
    input: ScheduleTriggerInput<P>,
    options?: Omit<ScheduleTriggerOptions, 'tenant'>,
  ): Promise<ScheduleTriggerResult<P>>;
  /** One trigger; TRIGGER_NOT_FOUND if absent or another tenant's. */
  get(id: string, options?: { tenant?: string }): Promise<DueTrigger>;
  /** A page of the tenant's triggers, newest first, filtered by state and type. */
  list(filter?: TriggerListFilter, options?: { tenant?: string }): Promise<Page<DueTrigger>>;
  /** Counts by state (the tenant's). */
  counts(options?: { tenant?: string }): Promise<Record<string, number>>;
  /** Cancels a pending trigger (audited); TRIGGER_NOT_FOUND, TRIGGER_NOT_PENDING. */
  cancel(id: string, options?: ActorOptions): Promise<DueTrigger>;
  /** Registered trigger types, sorted. */
  types(): string[];
  /**
   * Settles pending triggers whose job ended without an outcome (last attempt timed out or
   * crashed: `failed`; job canceled by an operator: `canceled`); returns how many. `start()`
   * runs it every 30 s (or every `reapIntervalMs` if longer).
   */
  sweepOnce(): Promise<number>;
}

/** A transaction handed out by withTransaction; Docket's `…Tx` writes join it. */
export type DocketTransaction<DB = DocketDatabase> = Transaction<DB>;

/** One item of a typed batch enqueue. */
export type EnqueueItem<M extends JobMap> = {
  [K in keyof M & string]: { type: K; payload: M[K]; options?: Omit<EnqueueOptions, 'tenant'> };
}[keyof M & string];

/** The audit log of a Docket instance (SPEC A), typed by the declared vocabulary. */
export interface DocketAudit<A extends string = string, R extends string = string> {
  /** Queues an event for the batched writer (returns at once, or after at most `maxBlockMs`). */
  record(
    action: A,
    resource: AuditResource<R>,
    options?: AuditRecordOptions,
  ): Promise<AuditReceipt>;
  /** Writes an event inside a transaction from withTransaction: it commits or rolls back with it. */
  record<DB>(
    tx: DocketTransaction<DB>,
    action: A,
    resource: AuditResource<R>,
    options?: Omit<AuditRecordOptions, 'tenant'>,
  ): Promise<AuditEvent>;
  /** A page of the tenant's events, newest first. */
  list(filter?: AuditEventFilter, options?: { tenant?: string }): Promise<Page<AuditEvent>>;
  /** One event; AUDIT_EVENT_NOT_FOUND if absent or another tenant's. */
  get(id: string, options?: { tenant?: string }): Promise<AuditEvent>;
  /** Walks the hash chain of one tenant or of all tenants and reports the first broken link. */
  verify(options?: {
    tenant?: string;
    onProgress?: (p: { tenant: string; events: number }) => void;
  }): Promise<AuditVerifyResult>;
  /** The tenant's retention settings. */
  getSettings(options?: { tenant?: string }): Promise<AuditSettings>;
  /** Changes the tenant's retention at runtime (audited). */
  setSettings(
    settings: { retentionDays: number },
    options?: { tenant?: string; actor?: AuditPrincipal; clientIp?: string; userAgent?: string },
  ): Promise<AuditSettings>;
  /** Removes events past retention now (keeping chains verifiable); returns how many. */
  purgeOnce(): Promise<number>;
  /** Writes every queued event now. */
  flush(): Promise<void>;
}

/** A Docket instance. */
export interface Docket<M extends JobMap = JobMap, D extends AuditDefinition = AuditDefinition> {
  /** The audit log. */
  readonly audit: DocketAudit<ActionOf<D>, ResourceTypeOf<D>>;
  /** The resolved, frozen configuration. */
  readonly config: DocketConfig;
  /** Opens the store, migrates and starts background services (reaper). Idempotent. */
  start(): Promise<void>;
  /** Applies pending migrations and returns their names. */
  migrate(): Promise<string[]>;
  /** Stops background services and closes connections. */
  close(): Promise<void>;
  /** Runs `fn` with `tenant` (and trace) as the ambient context. */
  withTenant<T>(tenant: string, fn: () => T, options?: { traceId?: string }): T;
  /** Runs `fn` in a store transaction scoped to `tenant`; pass `tx` to `enqueueTx` to join it. */
  withTransaction<T, DB = DocketDatabase>(
    tenant: string,
    fn: (tx: DocketTransaction<DB>) => Promise<T>,
  ): Promise<T>;
  /** Enqueues one job. */
  enqueue<K extends keyof M & string>(
    type: K,
    payload: M[K],
    options?: EnqueueOptions,
  ): Promise<EnqueueResult<M[K]>>;
  /** Enqueues one job inside a transaction from withTransaction. */
  enqueueTx<K extends keyof M & string, DB>(
    tx: DocketTransaction<DB>,
    type: K,
    payload: M[K],
    options?: Omit<EnqueueOptions, 'tenant'>,
  ): Promise<EnqueueResult<M[K]>>;
  /** Enqueues many jobs for one tenant atomically. */
  enqueueMany(items: EnqueueItem<M>[], options?: { tenant?: string }): Promise<EnqueueResult[]>;
  /** Enqueues many jobs inside a transaction from withTransaction. */
  enqueueManyTx<DB>(tx: DocketTransaction<DB>, items: EnqueueItem<M>[]): Promise<EnqueueResult[]>;
  /** Reading and operator actions on jobs. */
  readonly jobs: {
    /** One job; JOB_NOT_FOUND if absent or another tenant's. */
    get(id: string, options?: { tenant?: string }): Promise<Job>;
    /** A page of jobs, newest first. */
    list(filter?: JobListFilter, options?: { tenant?: string }): Promise<Page<Job>>;
    /** Cancels a pending or running job. */
    cancel(id: string, options?: ActorOptions): Promise<Job>;
    /** Runs a failed or canceled job again. */
    retry(id: string, options?: ActorOptions): Promise<Job>;
    /** Counts by status (the tenant's). */
    counts(options?: { tenant?: string }): Promise<Record<string, number>>;
  };
  /** The transactional outbox (SPEC O). */
  readonly outbox: {
    /** Writes events in a transaction from withTransaction: they exist only if it commits. */
    add<DB>(tx: DocketTransaction<DB>, event: OutboxAddInput): Promise<OutboxEvent>;
    /** Writes many events in a transaction from withTransaction. */
    addMany<DB>(tx: DocketTransaction<DB>, events: OutboxAddInput[]): Promise<OutboxEvent[]>;
    /** One event; OUTBOX_EVENT_NOT_FOUND if absent or another tenant's. */
    get(id: string, options?: { tenant?: string }): Promise<OutboxEvent>;
    /** A page of events, newest first, filtered by state, topic pattern and whether routed. */
    list(filter?: OutboxListFilter, options?: { tenant?: string }): Promise<Page<OutboxEvent>>;
    /** Topics of waiting events that none of this instance's routes match, oldest first. */
    unrouted(options?: { tenant?: string; limit?: number }): Promise<UnroutedTopics>;
    /** A page of an event's stored webhook deliveries, oldest first. */
    deliveries(
      eventId: string,
      page?: { cursor?: string; limit?: number },
      options?: { tenant?: string },
    ): Promise<Page<WebhookDelivery>>;
    /** One stored webhook delivery; DELIVERY_NOT_FOUND if absent or another tenant's. */
    delivery(id: string, options?: { tenant?: string }): Promise<WebhookDelivery>;
    /** Performs a stored delivery's request again and stores it linked to it (audited). */
    rerun(deliveryId: string, options?: ActorOptions): Promise<WebhookDelivery>;
    /** Publishes a dead event again (audited); OUTBOX_EVENT_NOT_DEAD if it is not dead. */
    replay(id: string, options?: ActorOptions): Promise<OutboxEvent>;
    /** Counts by state (the tenant's). */
    counts(options?: { tenant?: string }): Promise<Record<string, number>>;
    /**
     * A job handler applying events from a `jobs` sink exactly once for `consumer`: the
     * handler's writes through `tx` commit with the `(event_id, consumer)` record.
     */
    consumer<DB = DocketDatabase>(
      consumer: string,
      handler: (event: OutboxJobPayload, tx: DocketTransaction<DB>) => Promise<void>,
    ): JobHandler<OutboxJobPayload>;
    /** Creates (does not start) a relay that publishes due events to the configured sinks. */
    createRelay(options?: RelayOptions): Promise<OutboxRelay>;
  };
  /** The effect ledger (SPEC O-8): external side effects done at most once per key. */
  readonly effects: {
    /**
     * Calls the provider (`fn`) unless the effect with this key was already sent, and records
     * its answer before returning; a retry after `sent` replays the recorded result. With
     * `tx === null` it runs now, outside any transaction.
     */
    run<R extends JsonValue = JsonValue>(
      tx: null,
      input: EffectInput,
      fn: EffectProvider<R>,
    ): Promise<EffectOutcome<R>>;
    /**
     * In a transaction from withTransaction: the effect is reserved (or found sent) inside it,
     * and the provider is called only after it commits; `outcome` settles then.
     */
    run<R extends JsonValue = JsonValue, DB = DocketDatabase>(
      tx: DocketTransaction<DB>,
      input: Omit<EffectInput, 'tenant'>,
      fn: EffectProvider<R>,
    ): Promise<EffectReservation<R>>;
    /** One effect by key; EFFECT_NOT_FOUND if absent or another tenant's. */
    get(key: string, options?: { tenant?: string }): Promise<Effect>;
    /** A page of effects, newest first, optionally of some states. */
    list(
      filter?: { state?: EffectState[]; cursor?: string; limit?: number },
      options?: { tenant?: string },
    ): Promise<Page<Effect>>;
    /** Resolves an `unknown` effect as sent or failed (audited); EFFECT_NOT_UNKNOWN otherwise. */
    resolve(
      key: string,
      resolution: { outcome: 'sent' | 'failed'; providerMessageId?: string; note?: string },
      options?: ActorOptions,
    ): Promise<Effect>;
    /** Counts by state (the tenant's). */
    counts(options?: { tenant?: string }): Promise<Record<string, number>>;
    /** Moves every expired provider call to `unknown` (or retryable `failed`) now; returns how many. */
    sweepOnce(): Promise<number>;
  };
  /** The cron scheduler (SPEC S). */
  readonly scheduler: DocketScheduler;
  /** Proposals, confirm-before-apply (SPEC S-7). */
  readonly proposals: DocketProposals;
  /** Due triggers (SPEC S-6). */
  readonly triggers: DocketTriggers;
  /** The dead-letter queue. */
  readonly dlq: {
    /** A page of dead-lettered jobs. */
    list(options?: { tenant?: string; cursor?: string; limit?: number }): Promise<Page<DlqItem>>;
    /** Replays a dead job; JOB_NOT_IN_DLQ if it is not dead. */
    replay(jobId: string, options?: ActorOptions): Promise<Job>;
    /** Removes a dead job from the DLQ without running it (retention then prunes it). */
    purge(jobId: string, options?: ActorOptions): Promise<void>;
  };
  /** Creates (does not start) a worker. */
  createWorker(
    options?: Partial<Omit<WorkerOptions, 'handlers'>> & { handlers?: JobHandlers<M> },
  ): Worker;
  /** Processes at most `max` jobs within `budgetMs` in this process (SPEC Q-10). */
  processBatch(options?: ProcessBatchOptions): Promise<ProcessBatchResult>;
  /** Runs one reaper pass now. */
  reapOnce(): Promise<ReapResult>;
  /** Deletes finished jobs past retention; returns how many. */
  pruneOnce(): Promise<number>;
  /** Checks the store answers. */
  ping(): Promise<void>;
  /** Internals for the service, CLI and tests. */
  readonly internals: {
    store(): Promise<Store>;
    backend(): Promise<JobBackend>;
    systemDb(): Promise<Kysely<DocketDatabase>>;
    handlers: Readonly<Record<string, JobHandler<unknown> | undefined>>;
    logger: Logger;
    clock: Clock;
    ids: IdGenerator;
    metrics: DocketMetrics;
    auditService(): Promise<AuditService>;
  };
}

/** Creates a Docket instance. No I/O happens until `start()` or the first operation. */
export function createDocket<
  M extends JobMap = JobMap,
  D extends AuditDefinition = AuditDefinition,
>(options: CreateDocketOptions<M, D> = {}): Docket<M, D> {
  const config = resolveConfig(options);
  validateOutboxOptions(options.outbox);
  const logger = options.logger ?? silentLogger();
  const clock = options.clock ?? systemClock;
  const ids = options.ids ?? uuidV7Generator;
  let emailTransport: EmailTransport | undefined;
  const builtinHandlers: Record<string, JobHandler<unknown>> = options.builtins === false
    ? {}
    : {
        http: createHttpJobHandler(config.webhooks) as JobHandler<unknown>,
        email: createEmailJobHandler({
          config: config.email,
          effects: () => effects(),
          transport: () => (emailTransport ??= createEmailTransport(config.email)),
        }) as JobHandler<unknown>,
        [PRUNE_JOB]: async () => ({ pruned: await docket.pruneOnce() }),
        [AUDIT_PURGE_JOB]: async () => ({ purged: await docket.audit.purgeOnce() }),
      };
  const handlers: Record<string, JobHandler<unknown> | undefined> = {
    ...builtinHandlers,
    ...(options.handlers as Record<string, JobHandler<unknown> | undefined>),
  };
  const declared = options.jobTypes || options.handlers || options.strictTypes;
  const typeMap = new Map<string, JobTypeOptions>();
  if (options.builtins !== false) {
    typeMap.set('http', {
      validate: createHttpPayloadValidator(config.webhooks),
      retry: { maxAttempts: 5 },
    });
    typeMap.set('email', {
      validate: (payload) => validateEmailPayload(payload, config.email),
      retry: { maxAttempts: 10 },
    });
    typeMap.set(PRUNE_JOB, { retry: { maxAttempts: 3 } });
    typeMap.set(AUDIT_PURGE_JOB, { retry: { maxAttempts: 3 } });
  }
  for (const t of Object.keys(options.handlers ?? {})) typeMap.set(t, {});
  for (const [t, o] of Object.entries(options.jobTypes ?? {})) {
    validateRateLimit(t, (o as JobTypeOptions | undefined)?.rateLimit);
    typeMap.set(t, (o ?? {}) as JobTypeOptions);
  }
  // Each trigger type fires through its own internal job type, so a worker claims only the
  // triggers it has a handler for (SPEC S-6).
  const triggerRegistry = new TriggerRegistry();
  const triggerJobHandlers: Record<string, JobHandler<unknown>> = {};
  const registerTrigger = (
    type: string,
    handler: TriggerHandler<never>,
    o?: TriggerTypeOptions,
  ): void => {
    const jobType = triggerRegistry.register(type, handler, o);
    const fire: JobHandler<unknown> = async (ctx) =>
      (await triggers()).fire(ctx as JobContext<TriggerJobPayload>);
    triggerJobHandlers[jobType] = fire;
    handlers[jobType] = fire;
    typeMap.set(jobType, triggerRegistry.jobTypeOptions(type));
  };
  for (const [t, h] of Object.entries(options.triggers?.handlers ?? {})) {
    registerTrigger(t, h, options.triggers?.types?.[t]);
  }
  const triggerRetentionMs = options.triggers?.retentionMs ?? 30 * 86_400_000;
  if (!Number.isInteger(triggerRetentionMs) || triggerRetentionMs < 0) {
    throw new DocketError('CONFIG_INVALID', 'triggers.retentionMs must be a non-negative integer', {
      name: 'triggers.retentionMs',
    });
  }
  const knownTypes = () => (declared ? typeMap : undefined);
  const typeOptions = (type: string) => typeMap.get(type);

  const txTenants = new WeakMap<object, string>();
  let opened: Promise<{ store: Store; backend: JobBackend }> | undefined;
  let reaper: Reaper | undefined;
  const maintenance: IntervalService[] = [];
  let closed = false;
  const metrics = createMetrics();

  const ready = () => {
    opened ??= (async () => {
      const store = await openStore(config, logger);
      try {
        if (options.migrate !== false) await store.migrate();
        await store.verify();
        const backend = jobBackendFor(store, logger, { config, clock, ids });
        await backend.start();
        return { store, backend };
      } catch (err) {
        await store.close().catch(() => undefined);
        throw err;
      }
    })();
    // A failed start (store down) is not cached: the next call tries again.
    opened.catch(() => (opened = undefined));
    return opened;
  };

  let jobsService: JobsService | undefined;
  const jobs = async () => {
    const { backend } = await ready();
    jobsService ??= new JobsService({
      backend,
      config,
      clock,
      ids,
      knownTypes,
      typeOptions,
      tenantOfTx: (tx) => txTenants.get(tx),
    });
    return jobsService;
  };
  const execDeps = async (): Promise<ExecutionDeps> => {
    const { backend } = await ready();
    return {
      backend,
      config,
      clock,
      ids,
      logger,
      typeOptions,
      random: options.random,
      failpoint: options.failpoint,
    };
  };
  const workers = new Set<Worker>();
  const relays = new Set<OutboxRelay>();

  let outboxService: OutboxService | undefined;
  const outbox = async () => {
    const { store } = await ready();
    outboxService ??= new OutboxService({
      store,
      logger,
      now: () => clock.now(),
      ids,
      options: options.outbox ?? {},
      webhooks: config.webhooks,
      payloadLimitBytes: config.payloadLimitBytes,
      enqueue: async (type, payload, o) =>
        (await docket.enqueue(type as keyof M & string, payload as M[keyof M & string], o)).job,
      enqueueMany: async (tenant, items) =>
        (await (await jobs()).enqueueMany(items, { tenant })).map((r) => r.job),
      enqueueInStore: {
        enqueueMany: async (trx, tenant, items) =>
          (await jobs()).enqueueMany(items, { tenant, systemTx: trx }),
        committed: async (trx) => {
          const { backend } = await ready();
          await backend.jobTransactionCommitted?.(trx);
          backend.notifyJobsAvailable();
        },
      },
      tenantOfTx: (tx) => txTenants.get(tx),
      withTransaction: (tenant, fn) => docket.withTransaction(tenant, fn),
    });
    return outboxService;
  };

  let effectsService: EffectsService | undefined;
  const effects = async () => {
    const { store } = await ready();
    effectsService ??= new EffectsService({
      store,
      logger,
      now: () => clock.now(),
      ids,
      payloadLimitBytes: config.payloadLimitBytes,
      tenantOfTx: (tx) => txTenants.get(tx),
      failpoint: options.failpoint,
    });
    return effectsService;
  };
  let effectSweeper: IntervalService | undefined;
  const proposalsService = new ProposalsService(
    {
      store: async () => (await ready()).store,
      clock,
      ids,
      logger,
      tenantOfTx: (tx) => txTenants.get(tx),
    },
    options.proposals,
  );
  let proposalSweeper: IntervalService | undefined;

  let triggerService: TriggerService | undefined;
  const triggers = async () => {
    const { store } = await ready();
    triggerService ??= new TriggerService({
      store,
      registry: triggerRegistry,
      clock,
      ids,
      logger,
      payloadLimitBytes: config.payloadLimitBytes,
      tenantOfTx: (tx) => txTenants.get(tx),
      withTransaction: (tenant, fn) => docket.withTransaction(tenant, fn),
      enqueueTx: async (tx, type, payload, o) => {
        const [r] = await (await jobs()).enqueueMany([{ type, payload, options: o }], { tx });
        return (r as EnqueueResult).job;
      },
    });
    return triggerService;
  };
  let triggerSweeper: IntervalService | undefined;

  let auditService: AuditService | undefined;
  const audit = async () => {
    const { store } = await ready();
    if (!auditService) {
      auditService = new AuditService({
        store,
        config,
        clock,
        ids,
        logger,
        metrics,
        definition: options.auditDefinition,
        tenantOfTx: (tx) => txTenants.get(tx),
      });
      await auditService.writer.start();
    }
    return auditService;
  };
  const taskDefs: TaskDefinition[] = [];
  const addTask = (t: TaskDefinition) => {
    const def = resolveTaskDefinition(t);
    if (taskDefs.some((d) => d.name === def.name)) {
      throw new DocketError('VALIDATION_FAILED', `task ${def.name} is registered already`, {
        field: 'name',
        task: def.name,
      });
    }
    taskDefs.push(t);
  };
  for (const t of options.scheduler?.tasks ?? []) addTask(t);
  // Lock settings are validated now (CONFIG_INVALID); the backend connects at start.
  const schedulerLocks = resolveLocks(options.scheduler?.locks);
  let schedulerService: Scheduler | undefined;
  let started = false;
  const scheduler = async () => {
    const { store } = await ready();
    if (!schedulerService) {
      schedulerService = new Scheduler(
        { store, clock, ids, logger },
        options.scheduler && { ...options.scheduler, locks: schedulerLocks },
      );
      for (const t of taskDefs) schedulerService.register(t);
    }
    // Rows exist before any read or operator change, even on an instance that never ticks.
    await schedulerService.sync();
    return schedulerService;
  };

  /** Enqueues a maintenance job once per interval however many instances run (the key dedupes). */
  const everyInterval = (type: string, every: number) =>
    new IntervalService(
      every,
      () =>
        docket.enqueue(type as keyof M & string, {} as M[keyof M & string], {
          tenant: SYSTEM_TENANT,
          idempotencyKey: `${type}:${Math.floor(clock.now() / every)}`,
        }),
      (err) => logger.error({ err, type }, 'scheduling a maintenance job failed'),
    );

  const docket: Docket<M, D> = {
    config,
    async start() {
      const deps = await execDeps();
      const interval = options.reapIntervalMs ?? 1000;
      if (!reaper && interval > 0) {
        reaper = new Reaper(deps, interval);
        await reaper.start();
        // Lost provider calls become visible as `unknown` on the reaper's beat.
        effectSweeper = new IntervalService(
          interval,
          async () => (await effects()).sweepOnce(),
          (err) => logger.error({ err }, 'sweeping expired effect calls failed'),
        );
        await effectSweeper.start();
        // Open proposals past their expiry become `expired` on the same beat.
        proposalSweeper = new IntervalService(
          interval,
          () => proposalsService.expireOnce(),
          (err) => logger.error({ err }, 'expiring proposals failed'),
        );
        await proposalSweeper.start();
        // Triggers whose job ended without an outcome (a timed-out or crashed last attempt):
        // rare, so a slower beat than the reaper's keeps the scan off a busy store.
        triggerSweeper = new IntervalService(
          Math.max(interval, 30_000),
          async () => (await triggers()).sweepOnce(),
          (err) => logger.error({ err }, 'settling stranded triggers failed'),
        );
        await triggerSweeper.start();
      }
      if (maintenance.length === 0 && options.builtins !== false) {
        const pruneEvery = options.pruneIntervalMs ?? 3_600_000;
        if (pruneEvery > 0) maintenance.push(everyInterval(PRUNE_JOB, pruneEvery));
        const purgeEvery = config.audit.purgeIntervalMs;
        if (purgeEvery > 0) maintenance.push(everyInterval(AUDIT_PURGE_JOB, purgeEvery));
        for (const m of maintenance) await m.start();
      }
      await audit();
      started = true;
      if (taskDefs.length) await (await scheduler()).start();
    },
    async migrate() {
      const store = await openStore(config, logger);
      try {
        return await store.migrate();
      } finally {
        await store.close();
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await reaper?.stop();
      await effectSweeper?.stop();
      await proposalSweeper?.stop();
      await triggerSweeper?.stop();
      await schedulerService?.stop();
      for (const m of maintenance) await m.stop();
      await Promise.all([...workers].map((w) => w.stop()));
      await Promise.all([...relays].map((r) => r.stop()));
      await outboxService?.close();
      await auditService?.writer.stop();
      emailTransport?.close();
      if (opened) {
        const { store, backend } = await opened;
        await backend.stop();
        await store.close();
      }
    },
    withTenant(tenant, fn, o) {
      return runWithContext({ tenant, traceId: o?.traceId }, fn);
    },
    async withTransaction<T, DB>(tenant: string, fn: (tx: DocketTransaction<DB>) => Promise<T>) {
      requireTenant(tenant);
      const { store, backend } = await ready();
      let committed: object | undefined;
      let out: T;
      try {
        out = await store.withTenantTransaction(tenant, async (trx) => {
          committed = trx;
          txTenants.set(trx, tenant);
          return runWithContext({ tenant, traceId: currentContext()?.traceId }, () =>
            fn(trx as unknown as DocketTransaction<DB>),
          );
        });
      } catch (err) {
        if (committed) effectsService?.transactionEnded(committed, false);
        throw err;
      }
      // Jobs enqueued in the transaction are committed now: hand them to the queue's dispatch
      // (Redis) and wake this process's workers.
      if (committed) await backend.jobTransactionCommitted?.(committed as TenantTransaction);
      if (committed) outboxService?.committed(committed);
      // Effects reserved in the transaction may call their providers now that it committed.
      if (committed) effectsService?.transactionEnded(committed, true);
      backend.notifyJobsAvailable();
      return out;
    },
    outbox: {
      async add(tx, event) {
        const [e] = await (await outbox()).add(tx as unknown as TenantTransaction, [event]);
        return e as OutboxEvent;
      },
      async addMany(tx, events) {
        return (await outbox()).add(tx as unknown as TenantTransaction, events);
      },
      async get(id, o) {
        return (await outbox()).get(requireTenant(o?.tenant), id);
      },
      async list(filter, o) {
        return (await outbox()).list(requireTenant(o?.tenant), filter);
      },
      async replay(id, o) {
        return (await outbox()).replay(requireTenant(o?.tenant), id, o);
      },
      async counts(o) {
        return (await outbox()).counts(requireTenant(o?.tenant));
      },
      async unrouted(o) {
        return (await outbox()).unrouted(requireTenant(o?.tenant), o);
      },
      async deliveries(eventId, p, o) {
        return (await outbox()).deliveries(requireTenant(o?.tenant), eventId, p);
      },
      async delivery(id, o) {
        return (await outbox()).delivery(requireTenant(o?.tenant), id);
      },
      async rerun(id, o) {
        return (await outbox()).rerun(requireTenant(o?.tenant), id, o);
      },
      consumer(name, handler) {
        // Validated now; the service (and its store) is opened on the first delivery.
        if (typeof name !== 'string' || name.length < 1 || name.length > 200) {
          throw new DocketError('CONFIG_INVALID', 'a consumer name is 1–200 characters', {
            name: 'consumer',
          });
        }
        let h: ReturnType<OutboxService['consumer']> | undefined;
        return async (ctx) => {
          h ??= (await outbox()).consumer(
            name,
            handler as unknown as Parameters<OutboxService['consumer']>[1],
          );
          return h(ctx);
        };
      },
      async createRelay(o) {
        const relay = (await outbox()).createRelay(o);
        relays.add(relay);
        return relay;
      },
    },
    effects: {
      run: (async (
        tx: DocketTransaction<unknown> | null,
        input: EffectInput,
        fn: EffectProvider<JsonValue>,
      ) => {
        const service = await effects();
        if (tx === null) return service.run(input, fn);
        return service.reserve(tx as unknown as TenantTransaction, input, fn);
      }) as Docket<M, D>['effects']['run'],
      get: async (key, o) => (await effects()).get(requireTenant(o?.tenant), key),
      list: async (filter, o) => (await effects()).list(requireTenant(o?.tenant), filter),
      resolve: async (key, resolution, o) =>
        (await effects()).resolve(requireTenant(o?.tenant), key, {
          ...resolution,
          actor: o?.actor,
          traceId: o?.traceId,
        }),
      counts: async (o) => (await effects()).counts(requireTenant(o?.tenant)),
      sweepOnce: async () => (await effects()).sweepOnce(),
    },
    async enqueue(type, payload, o) {
      const [r] = await (
        await jobs()
      ).enqueueMany([{ type, payload, options: o }], { tenant: o?.tenant });
      return r as EnqueueResult<M[typeof type]>;
    },
    async enqueueTx(tx, type, payload, o) {
      const [r] = await (
        await jobs()
      ).enqueueMany([{ type, payload, options: o }], {
        tx: tx as unknown as TenantTransaction,
      });
      return r as EnqueueResult<M[typeof type]>;
    },
    async enqueueMany(items, o) {
      return (await jobs()).enqueueMany(items, { tenant: o?.tenant });
    },
    async enqueueManyTx(tx, items) {
      return (await jobs()).enqueueMany(items, { tx: tx as unknown as TenantTransaction });
    },
    jobs: {
      get: async (id, o) => (await jobs()).get(id, o),
      list: async (f, o) => (await jobs()).list(f, o),
      cancel: async (id, o) => (await jobs()).cancel(id, o),
      retry: async (id, o) => (await jobs()).retry(id, o),
      counts: async (o) =>
        (await ready()).backend.jobCountByStatus({ tenant: requireTenant(o?.tenant) }),
    },
    scheduler: {
      register(t) {
        addTask(t);
        if (schedulerService) schedulerService.register(t);
        if (started) {
          scheduler()
            .then((s) => s.start())
            .catch((err: unknown) => logger.error({ err, task: t.name }, 'starting a task failed'));
        }
      },
      list: async (o) => (await scheduler()).listTasks(o),
      get: async (name, o) => (await scheduler()).getTask(name, o),
      enable: async (name, o) => (await scheduler()).setEnabled(name, true, o),
      disable: async (name, o) => (await scheduler()).setEnabled(name, false, o),
      updateSchedule: async (name, s, o) => (await scheduler()).updateSchedule(name, s, o),
      trigger: async (name, o) => (await scheduler()).trigger(name, o),
      executions: async (f, o) => (await scheduler()).listExecutions(f, o),
      execution: async (id, o) => (await scheduler()).getExecution(id, o),
      cancelExecution: async (id, o) => (await scheduler()).cancelExecution(id, o),
      stats: async (o) => (await scheduler()).stats(o),
      runOnce: async () => (await scheduler()).runOnce(),
      idle: async () => (await scheduler()).idle(),
    },
    proposals: {
      register: (kind, def) => proposalsService.register(kind, def),
      create: (input, o) => proposalsService.create(input, o),
      createTx: (tx, input, o) =>
        proposalsService.createTx(tx as unknown as TenantTransaction, input, o),
      apply: (id, input, o) => proposalsService.apply(id, input, o),
      reject: (id, r, o) => proposalsService.reject(id, r, o),
      get: (id, o) => proposalsService.get(id, o),
      list: (f, o) => proposalsService.list(f, o),
      expireOnce: () => proposalsService.expireOnce(),
    },
    triggers: {
      register(type, handler, o) {
        registerTrigger(type, handler as TriggerHandler<never>, o);
      },
      async schedule(input, o) {
        const tenant = requireTenant(o?.tenant);
        return (await (
          await triggers()
        ).schedule(tenant, input, o)) as ScheduleTriggerResult<never>;
      },
      async scheduleTx(tx, input, o) {
        return (await (
          await triggers()
        ).scheduleTx(tx as unknown as TenantTransaction, input, o)) as ScheduleTriggerResult<never>;
      },
      get: async (id, o) => (await triggers()).get(requireTenant(o?.tenant), id),
      list: async (f, o) => (await triggers()).list(requireTenant(o?.tenant), f),
      counts: async (o) => (await triggers()).counts(requireTenant(o?.tenant)),
      cancel: async (id, o) => (await triggers()).cancel(requireTenant(o?.tenant), id, o),
      types: () => triggerRegistry.names(),
      sweepOnce: async () => (await triggers()).sweepOnce(),
    },
    dlq: {
      list: async (o) => (await jobs()).listDeadLetters(o),
      replay: async (id, o) => (await jobs()).replayDeadLetter(id, o),
      purge: async (id, o) => (await jobs()).purgeDeadLetter(id, o),
    },
    createWorker(o = {}) {
      const { handlers: own, ...rest } = o;
      const lazy = new LazyWorker(execDeps, {
        ...rest,
        // Built-ins stay in every worker so maintenance (docket.prune) always has a runner.
        handlers: (own
          ? {
              ...builtinHandlers,
              ...triggerJobHandlers,
              ...(own as Record<string, JobHandler<unknown>>),
            }
          : handlers) as Record<string, JobHandler<never>>,
      });
      workers.add(lazy);
      return lazy;
    },
    async processBatch(o = {}) {
      // Inside a tenant context, a batch without an explicit tenant stays within that tenant.
      return processBatch(await execDeps(), handlers, { tenant: currentContext()?.tenant, ...o });
    },
    async reapOnce() {
      return new Reaper(await execDeps(), 0).runOnce();
    },
    async pruneOnce() {
      const { backend } = await ready();
      const now = clock.now();
      let total = 0;
      for (;;) {
        const n = await backend.jobPrune({
          succeededBefore: now - config.retention.succeededMs,
          failedBefore: now - config.retention.failedMs,
          limit: 1000,
        });
        total += n;
        if (n < 1000) break;
      }
      // Rate-limit windows that ended a day (or the longest window) ago are long over.
      const longest = Math.max(
        86_400_000,
        ...[...typeMap.values()].map((o) => 2 * (o.rateLimit?.perMs ?? 0)),
      );
      await backend.rateLimitPrune({ before: now - longest });
      // Final effect ledger rows past their retention (O-8), never unknown or in-flight ones.
      const effectRows = await (await effects()).purgeOnce(now - config.retention.effectsMs);
      if (effectRows)
        logger.info({ effects: effectRows }, 'pruned effect ledger rows past retention');
      // Scheduler history past its retention (SPEC S-3) goes with the same maintenance job.
      const executions = await (await scheduler()).pruneOnce();
      if (executions) logger.info({ executions }, 'pruned scheduler executions past retention');
      const finished = await (await triggers()).pruneOnce(now - triggerRetentionMs);
      if (finished) logger.info({ triggers: finished }, 'pruned final triggers past retention');
      return total;
    },
    audit: {
      async record(...args: unknown[]) {
        // The hot path of the batched writer: no extra await once the service exists.
        const service = auditService ?? (await audit());
        if (typeof args[0] === 'string') {
          const [action, resource, o] = args as [string, AuditResource, AuditRecordOptions?];
          return service.record(action, resource, o);
        }
        const [tx, action, resource, o] = args as [
          object,
          string,
          AuditResource,
          AuditRecordOptions?,
        ];
        return service.recordTx(tx, action, resource, o);
      },
      list: async (f, o) => (await audit()).list(f, o),
      get: async (id, o) => (await audit()).get(id, o),
      verify: async (o) => (await audit()).verify(o),
      getSettings: async (o) => (await audit()).getSettings(o),
      setSettings: async (s, o) => (await audit()).setSettings(s, o),
      purgeOnce: async () => (await audit()).purgeOnce(),
      flush: async () => (await audit()).writer.flush(),
    } as DocketAudit<ActionOf<D>, ResourceTypeOf<D>>,
    async ping() {
      const { store, backend } = await ready();
      await store.ping();
      await backend.ping?.();
    },
    internals: {
      store: async () => (await ready()).store,
      backend: async () => (await ready()).backend,
      systemDb: async () => (await ready()).store.systemDb,
      handlers,
      logger,
      clock,
      ids,
      metrics,
      auditService: audit,
    },
  };
  return docket;
}

/** Creates a Docket from environment variables (the service and CLI use this). */
export function createDocketFromEnv<
  M extends JobMap = JobMap,
  D extends AuditDefinition = AuditDefinition,
>(extra: Omit<CreateDocketOptions<M, D>, keyof DocketOptions> = {}): Docket<M, D> {
  // DOCKET_SCHEDULER_LOCKS chooses the scheduler's lock backend unless `extra` names one.
  const locks = extra.scheduler?.locks ?? schedulerLocksFromEnv();
  const scheduler = locks ? { ...extra.scheduler, locks } : extra.scheduler;
  return createDocket<M, D>({ ...optionsFromEnv(), ...extra, scheduler });
}

/** A worker whose construction waits for the store (createWorker is synchronous). */
class LazyWorker implements Worker {
  private inner: JobWorker | undefined;
  private starting: Promise<JobWorker> | undefined;
  readonly id: string;

  constructor(
    private readonly deps: () => Promise<ExecutionDeps>,
    private readonly options: WorkerOptions,
  ) {
    this.id = options.workerId ?? newWorkerId();
  }

  get running(): number {
    return this.inner?.running ?? 0;
  }

  private get(): Promise<JobWorker> {
    this.starting ??= this.deps().then(
      (d) => (this.inner = new JobWorker(d, { ...this.options, workerId: this.id })),
    );
    return this.starting;
  }

  async start(): Promise<void> {
    await (await this.get()).start();
  }

  async runOnce(): Promise<number> {
    return (await this.get()).runOnce();
  }

  async stop(o?: { deadlineMs?: number }): Promise<void> {
    if (this.starting) await (await this.starting).stop(o);
  }
}
