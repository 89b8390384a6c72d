/** Every job status (SPEC Q-2). */
export const JOB_STATUSES = [
  'pending',
  'processing',
  'succeeded',
  'failed',
  'canceled',
  'dlq_pending',
  'dlq_recorded',
] as const;

/** A job's status. */
export type JobStatus = (typeof JOB_STATUSES)[number];

/** The error a failed attempt left on the job. */
export interface JobError {
  /** Error message. */
  message: string;
  /** Error name or Docket code (`JOB_TIMEOUT`, `LEASE_EXPIRED`, ...). */
  name: string;
  /** True when the handler marked it permanent (no retry). */
  permanent?: boolean;
  /** Attempt number that failed. */
  attempt: number;
  /** Time of failure, epoch ms. */
  at: number;
}

/** A stored job. Times are epoch milliseconds. */
export interface Job<Payload = unknown> {
  /** Time-sortable id (UUIDv7). */
  id: string;
  /** Owning tenant. */
  tenantId: string;
  /** Queue name. */
  queue: string;
  /** Job type; selects the handler. */
  type: string;
  /** JSON payload. */
  payload: Payload;
  /** Smaller runs first. */
  priority: number;
  /** Current status. */
  status: JobStatus;
  /** Not claimed before this time. */
  availableAt: number;
  /** Attempts started so far. */
  attempts: number;
  /** Attempts allowed before the dead-letter queue. */
  maxAttempts: number;
  /** Error of the last failed attempt. */
  lastError: JobError | null;
  /** Worker holding the lease. */
  lockedBy: string | null;
  /** When the current lease was granted. */
  lockedAt: number | null;
  /** When the current lease expires. */
  leaseUntil: number | null;
  /** Tenant-scoped idempotency key. */
  idempotencyKey: string | null;
  /** W3C trace id. */
  traceId: string;
  /** Handler's return value once succeeded. */
  result: unknown;
  /** Per-job timeout override in ms. */
  timeoutMs: number | null;
  /** Creation time. */
  createdAt: number;
  /** Last update time. */
  updatedAt: number;
  /** Time the job reached a final status. */
  finishedAt: number | null;
}

/** A job ready to insert (already validated and defaulted). */
export interface NewJob {
  id: string;
  tenantId: string;
  queue: string;
  type: string;
  payloadJson: string;
  /** SHA-256 of the canonical payload, kept only with an idempotency key (it detects conflicts). */
  payloadHash: string | null;
  priority: number;
  availableAt: number;
  maxAttempts: number;
  idempotencyKey: string | null;
  traceId: string;
  timeoutMs: number | null;
  createdAt: number;
}

/** Result of one enqueue. */
export interface EnqueueResult<Payload = unknown> {
  /** The job (new, or the existing one for a repeated idempotency key). */
  job: Job<Payload>;
  /** True when the idempotency key matched an existing job with the same payload. */
  deduplicated: boolean;
}

/** A dead-letter queue item. */
export interface DlqItem {
  /** Item id. */
  id: string;
  /** Owning tenant. */
  tenantId: string;
  /** The dead job. */
  jobId: string;
  /** Job type. */
  type: string;
  /** Queue name. */
  queue: string;
  /** Attempts the job made. */
  attempts: number;
  /** Its last error. */
  lastError: JobError | null;
  /** Trace id. */
  traceId: string;
  /** When the job was dead-lettered. */
  createdAt: number;
  /** When it was replayed, if it was. */
  replayedAt: number | null;
}

/** A page of results with an opaque cursor for the next page. */
export interface Page<T> {
  /** Items of this page. */
  items: T[];
  /** Cursor for the next page, or null at the end. */
  nextCursor: string | null;
}

/** Filters for listing jobs. */
export interface JobListFilter {
  /** Only these statuses. */
  status?: JobStatus[];
  /** Only this type. */
  type?: string;
  /** Only this queue. */
  queue?: string;
  /** Opaque cursor from a previous page. */
  cursor?: string;
  /** Page size, 1–200. Default 50. */
  limit?: number;
}
