import type { DlqItem, Job, JobError, JobListFilter, NewJob, Page } from './types.js';
import type { TenantTransaction } from '../store/index.js';

/** What a backend can do; core code asks these rather than naming a backend. */
export interface JobBackendCapabilities {
  /** Wake-ups reach other processes (LISTEN/NOTIFY). */
  crossProcessWakeups: boolean;
}

/** Parameters of a claim. */
export interface JobClaimBatchParams {
  /** Worker id written to `locked_by`. */
  workerId: string;
  /** Maximum jobs to claim. */
  limit: number;
  /** Current time, epoch ms. */
  now: number;
  /** Lease length, ms. */
  leaseMs: number;
  /** Only these types (none = all). */
  types?: readonly string[];
  /** Never these types. */
  excludeTypes?: readonly string[];
  /** Only these queues (none = all). */
  queues?: readonly string[];
  /** Only this tenant. */
  tenant?: string;
}

/**
 * A job by its key. On PostgreSQL the primary key is `(tenant_id, id)` (one index serves both
 * lookups and a tenant's newest-first listing), so the engine's writes name the tenant too.
 */
export interface JobRef {
  /** Job id. */
  id: string;
  /** The job's tenant. */
  tenantId: string;
}

/** One job's completion. */
export interface JobCompletion extends JobRef {
  /** The job's type (lets maintenance jobs be kept when succeeded jobs are removed). */
  type?: string;
  /** JSON-encoded result, or null. */
  resultJson: string | null;
}

/** A failed attempt to record. */
export interface JobFailureParams extends JobRef {
  /** Worker that held the lease. */
  workerId: string;
  /** The error. */
  error: JobError;
  /** Current time. */
  now: number;
}

/** Insert outcome per job, in input order. */
export type JobInsertOutcome = { kind: 'inserted'; job: Job } | { kind: 'existing'; job: Job };

/** A job after a guarded operator transition, and whether the transition happened. */
export interface JobChange {
  job: Job;
  changed: boolean;
}

/** Audit event written in the same transaction as a state change (its id comes from its time). */
export interface AuditEntry {
  tenantId: string;
  action: string;
  resourceType: string;
  resourceId: string;
  actor: string;
  traceId: string;
  data: Record<string, unknown>;
  createdAt: number;
}

/** Where a job stands in the store, for a dispatcher deciding what to do with its message. */
export interface JobState extends JobRef {
  queue: string;
  type: string;
  status: string;
  availableAt: number;
  leaseUntil: number | null;
  priority: number;
  traceId: string;
  attempts: number;
}

/**
 * Claims by key, for a queue whose dispatch order comes from elsewhere (the Redis lane): the
 * store still decides, with the same guard as a claim (`pending` and due).
 */
export interface KeyedJobClaims {
  /** Claims these jobs if they are pending and due; returns the ones claimed. */
  jobClaimByKeys(p: {
    workerId: string;
    jobs: readonly JobRef[];
    now: number;
    leaseMs: number;
  }): Promise<Job[]>;
  /** The state of these jobs (absent ones are missing from the result). */
  jobStates(p: { jobs: readonly JobRef[] }): Promise<JobState[]>;
  /**
   * A page of pending jobs of every tenant in (tenant, priority, available_at, id) order after
   * `after`, for reconciliation: a keyset walk of the claim index, no sort.
   */
  jobPendingPage(p: { after?: JobState; limit: number }): Promise<JobState[]>;
}

/**
 * Storage of jobs for one dialect. Every method is one guarded state change (or read) and
 * returns what actually happened; callers never assume a transition took place.
 */
export interface JobBackend {
  /** Capabilities of this backend. */
  readonly capabilities: JobBackendCapabilities;
  /**
   * Inserts jobs for one tenant; a repeated idempotency key returns the existing job, and a
   * repeated key with another payload throws IDEMPOTENCY_CONFLICT inside the transaction.
   */
  jobInsertMany(p: {
    tenant: string;
    jobs: NewJob[];
    tx?: TenantTransaction;
  }): Promise<JobInsertOutcome[]>;
  /**
   * Claims up to `limit` due jobs, round-robin across tenants (each tenant's share in priority
   * order; SPEC Q-11, see backends/fair-claims.ts), each round atomically.
   */
  jobClaimBatch(p: JobClaimBatchParams): Promise<Job[]>;
  /** Completes jobs still leased to `workerId`; returns the ids that were completed. */
  jobCompleteMany(p: {
    workerId: string;
    items: JobCompletion[];
    now: number;
    /** Delete the rows instead of keeping them as `succeeded` (retention.succeededMs = 0). */
    remove?: boolean;
  }): Promise<string[]>;
  /** Returns a leased job to `pending` for a retry at `availableAt`; false if the lease was lost. */
  jobRetry(p: JobFailureParams & { availableAt: number }): Promise<boolean>;
  /** Step 1 of the DLQ sequence: `processing → dlq_pending`; false if the lease was lost. */
  jobDeadLetterBegin(p: JobFailureParams): Promise<boolean>;
  /** Step 2: writes the DLQ item and audit row and moves `dlq_pending → dlq_recorded`, atomically. */
  jobDeadLetterRecord(p: {
    id: string;
    tenantId: string;
    now: number;
    dlqItemId: string;
    audit: AuditEntry;
  }): Promise<boolean>;
  /** Step 3: `dlq_recorded → failed`. */
  jobDeadLetterFinish(p: { id: string; tenantId: string; now: number }): Promise<boolean>;
  /** Jobs stuck between DLQ steps (after a crash). */
  jobDeadLetterStuck(p: {
    limit: number;
  }): Promise<Array<{ id: string; tenantId: string; status: string }>>;
  /** Extends leases of jobs still held by `workerId`; returns the ids still held. */
  jobHeartbeat(p: {
    workerId: string;
    jobs: JobRef[];
    leaseUntil: number;
    now: number;
  }): Promise<string[]>;
  /**
   * Returns unstarted or abandoned jobs to `pending` without counting an attempt, due at
   * `availableAt` (default: as they were).
   */
  jobRelease(p: {
    workerId: string;
    jobs: JobRef[];
    now: number;
    availableAt?: number;
  }): Promise<string[]>;
  /**
   * Takes up to `n` of the `max` starts of a rate-limit window, atomically across processes;
   * returns how many were granted.
   */
  rateLimitTake(p: { key: string; windowStart: number; max: number; n: number }): Promise<number>;
  /** Deletes rate-limit counters of windows that started before `before`. */
  rateLimitPrune(p: { before: number }): Promise<number>;
  /** Expired leases: requeues those with attempts left, begins DLQ for the rest. */
  jobReapExpired(p: {
    now: number;
    limit: number;
  }): Promise<{ requeued: string[]; deadLettered: string[] }>;
  /** One job of a tenant, or null. */
  jobGet(p: { tenant: string; id: string }): Promise<Job | null>;
  /** A page of a tenant's jobs, newest first. */
  jobList(p: { tenant: string; filter: JobListFilter }): Promise<Page<Job>>;
  /** Cancels a pending or processing job with its audit row; null if not found. */
  jobCancel(p: {
    tenant: string;
    id: string;
    now: number;
    audit: AuditEntry;
  }): Promise<JobChange | null>;
  /** Re-queues a failed (dead) or canceled job with fresh attempts, audited. */
  jobReplay(p: {
    tenant: string;
    id: string;
    now: number;
    audit: AuditEntry;
    requireDead: boolean;
  }): Promise<JobChange | null>;
  /** Removes a dead job's unreplayed DLQ item (the job is then pruned by retention), audited; false if none. */
  dlqPurge(p: { tenant: string; jobId: string; audit: AuditEntry }): Promise<boolean>;
  /** A page of a tenant's DLQ items not yet replayed, newest first. */
  dlqList(p: { tenant: string; cursor?: string; limit: number }): Promise<Page<DlqItem>>;
  /** Deletes finished jobs older than the cutoffs (never unreplayed DLQ jobs). */
  jobPrune(p: { succeededBefore: number; failedBefore: number; limit: number }): Promise<number>;
  /** Counts by status for one tenant (or all, for the operator). */
  jobCountByStatus(p: { tenant?: string }): Promise<Record<string, number>>;
  /** Registers a wake-up callback fired when jobs may have become available. */
  onJobsAvailable(listener: () => void): () => void;
  /** Wakes this process's listeners (after a commit that made jobs available). */
  notifyJobsAvailable(): void;
  /** Checks the queue's own server, when it has one (Redis); throws STORE_UNAVAILABLE if down. */
  ping?(): Promise<void>;
  /** Called after a withTransaction commit that may have inserted jobs through `tx`. */
  jobTransactionCommitted?(tx: TenantTransaction): Promise<void>;
  /** Starts listening for cross-process wake-ups (PostgreSQL LISTEN). */
  start(): Promise<void>;
  /** Stops listening. */
  stop(): Promise<void>;
}
