import { DocketError } from '../../core/errors.js';
import type { JobState } from '../backend.js';
import type { DlqItem, Job, JobError, JobStatus } from '../types.js';

/** A jobs row as both dialects return it (JSON as text, times as numbers). */
export interface JobRow {
  id: string;
  tenant_id: string;
  queue: string;
  type: string;
  payload: string;
  priority: number;
  status: string;
  available_at: number;
  attempts: number;
  max_attempts: number;
  last_error: string | null;
  locked_by: string | null;
  locked_at: number | null;
  lease_until: number | null;
  idempotency_key: string | null;
  trace_id: string;
  result: string | null;
  timeout_ms: number | null;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
}

/** Decodes a stored row into a Job. */
export function rowToJob(r: JobRow): Job {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    queue: r.queue,
    type: r.type,
    payload: JSON.parse(r.payload) as unknown,
    priority: r.priority,
    status: r.status as JobStatus,
    availableAt: r.available_at,
    attempts: r.attempts,
    maxAttempts: r.max_attempts,
    lastError: r.last_error === null ? null : (JSON.parse(r.last_error) as JobError),
    lockedBy: r.locked_by,
    lockedAt: r.locked_at,
    leaseUntil: r.lease_until,
    idempotencyKey: r.idempotency_key,
    traceId: r.trace_id,
    result: r.result === null ? null : (JSON.parse(r.result) as unknown),
    timeoutMs: r.timeout_ms,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    finishedAt: r.finished_at,
  };
}

/** The columns a claim returns (see CLAIMED in the backends): what it set is known already. */
export type ClaimedJobRow = Pick<
  JobRow,
  | 'id'
  | 'tenant_id'
  | 'queue'
  | 'type'
  | 'payload'
  | 'priority'
  | 'available_at'
  | 'attempts'
  | 'max_attempts'
  | 'last_error'
  | 'idempotency_key'
  | 'trace_id'
  | 'timeout_ms'
  | 'created_at'
>;

/** Decodes a row returned by a claim made by `workerId` at `now`. */
export function claimedRowToJob(
  r: ClaimedJobRow,
  claim: { workerId: string; now: number; leaseUntil: number },
): Job {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    queue: r.queue,
    type: r.type,
    payload: JSON.parse(r.payload) as unknown,
    priority: r.priority,
    status: 'processing',
    availableAt: r.available_at,
    attempts: r.attempts,
    maxAttempts: r.max_attempts,
    lastError: r.last_error === null ? null : (JSON.parse(r.last_error) as JobError),
    lockedBy: claim.workerId,
    lockedAt: claim.now,
    leaseUntil: claim.leaseUntil,
    idempotencyKey: r.idempotency_key,
    traceId: r.trace_id,
    result: null,
    timeoutMs: r.timeout_ms,
    createdAt: r.created_at,
    updatedAt: claim.now,
    finishedAt: null,
  };
}

/** The columns of a job's state (JobState). */
export type StateRow = Pick<
  JobRow,
  | 'id'
  | 'tenant_id'
  | 'queue'
  | 'type'
  | 'status'
  | 'available_at'
  | 'lease_until'
  | 'priority'
  | 'trace_id'
  | 'attempts'
>;

/** Decodes a job's state. */
export function rowToJobState(r: StateRow): JobState {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    queue: r.queue,
    type: r.type,
    status: r.status,
    availableAt: r.available_at,
    leaseUntil: r.lease_until,
    priority: r.priority,
    traceId: r.trace_id,
    attempts: r.attempts,
  };
}

/** A dlq_items row. */
export interface DlqRow {
  id: string;
  tenant_id: string;
  job_id: string;
  type: string;
  queue: string;
  attempts: number;
  last_error: string | null;
  trace_id: string;
  created_at: number;
  replayed_at: number | null;
}

/** Decodes a DLQ row. */
export function rowToDlqItem(r: DlqRow): DlqItem {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    jobId: r.job_id,
    type: r.type,
    queue: r.queue,
    attempts: r.attempts,
    lastError: r.last_error === null ? null : (JSON.parse(r.last_error) as JobError),
    traceId: r.trace_id,
    createdAt: r.created_at,
    replayedAt: r.replayed_at,
  };
}

/** Encodes a keyset cursor (the last id of a page). */
export function encodeCursor(id: string): string {
  return Buffer.from(JSON.stringify({ id }), 'utf8').toString('base64url');
}

/** Decodes a keyset cursor; INVALID_CURSOR when it is not one of ours. */
export function decodeCursor(cursor: string): string {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as {
      id?: unknown;
    };
    if (typeof parsed.id === 'string' && /^[0-9a-f-]{36}$/i.test(parsed.id)) return parsed.id;
  } catch {
    // fall through to the error below
  }
  throw new DocketError('INVALID_CURSOR', 'the cursor is not valid', { cursor });
}
