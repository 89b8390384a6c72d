import type { DlqItem, Job, JobError } from '../jobs/index.js';
import { JOB_STATUSES } from '../jobs/index.js';

// JSON schemas shared by the routes. They validate requests and, through @fastify/swagger, are
// the OpenAPI document: one source for both (SPEC H-1).

/** An ISO 8601 date-time string. */
export const isoTime = { type: 'string', format: 'date-time' } as const;
/** JSON schema of an ISO 8601 time or null. */
export const isoTimeOrNull = { type: ['string', 'null'], format: 'date-time' } as const;
const anyJson = {} as const;

/** Job type names: as JOB_TYPE_PATTERN in the jobs module. */
export const jobTypeSchema = {
  type: 'string',
  pattern: '^[A-Za-z][A-Za-z0-9_.:-]{0,127}$',
} as const;

/** Fields of one job to enqueue (POST /v1/jobs and each item of a batch). */
export const enqueueBodySchema = {
  type: 'object',
  required: ['type'],
  additionalProperties: false,
  properties: {
    type: jobTypeSchema,
    payload: { description: 'JSON payload (default {}).' },
    queue: { type: 'string', pattern: '^[A-Za-z0-9_.:-]{1,64}$' },
    priority: { type: 'integer', minimum: -1_000_000, maximum: 1_000_000 },
    runAt: { ...isoTime, description: 'Earliest start time (ISO 8601 with offset).' },
    delayMs: { type: 'integer', minimum: 0, maximum: 366 * 86_400_000 },
    idempotencyKey: { type: 'string', minLength: 1, maxLength: 255 },
    maxAttempts: { type: 'integer', minimum: 1, maximum: 1000 },
    timeoutMs: { type: 'integer', minimum: 1, maximum: 86_400_000 },
  },
  not: { required: ['runAt', 'delayMs'] },
} as const;

/** Body of POST /v1/jobs (and each batch item). */
export interface EnqueueBody {
  type: string;
  payload?: unknown;
  queue?: string;
  priority?: number;
  runAt?: string;
  delayMs?: number;
  idempotencyKey?: string;
  maxAttempts?: number;
  timeoutMs?: number;
}

const jobErrorSchema = {
  type: ['object', 'null'],
  properties: {
    message: { type: 'string' },
    name: { type: 'string' },
    permanent: { type: 'boolean' },
    attempt: { type: 'integer' },
    at: isoTime,
  },
} as const;

/** A job as the API returns it (times are ISO 8601). */
export const jobSchema = {
  $id: 'Job',
  type: 'object',
  properties: {
    id: { type: 'string' },
    tenantId: { type: 'string' },
    queue: { type: 'string' },
    type: { type: 'string' },
    payload: anyJson,
    priority: { type: 'integer' },
    status: { type: 'string', enum: [...JOB_STATUSES] },
    availableAt: isoTime,
    attempts: { type: 'integer' },
    maxAttempts: { type: 'integer' },
    lastError: jobErrorSchema,
    lockedBy: { type: ['string', 'null'] },
    lockedAt: isoTimeOrNull,
    leaseUntil: isoTimeOrNull,
    idempotencyKey: { type: ['string', 'null'] },
    traceId: { type: 'string' },
    result: anyJson,
    timeoutMs: { type: ['integer', 'null'] },
    createdAt: isoTime,
    updatedAt: isoTime,
    finishedAt: isoTimeOrNull,
  },
} as const;

/** A dead-letter item as the API returns it. */
export const dlqItemSchema = {
  $id: 'DlqItem',
  type: 'object',
  properties: {
    id: { type: 'string' },
    tenantId: { type: 'string' },
    jobId: { type: 'string' },
    type: { type: 'string' },
    queue: { type: 'string' },
    attempts: { type: 'integer' },
    lastError: jobErrorSchema,
    traceId: { type: 'string' },
    createdAt: isoTime,
    replayedAt: isoTimeOrNull,
  },
} as const;

/** Documented error responses, by status. */
export function errorResponses(...statuses: number[]): Record<number, { $ref: string }> {
  return Object.fromEntries(statuses.map((s) => [s, { $ref: 'ErrorBody#' }]));
}

/** `{ job }` response schema. */
export const jobResponseSchema = {
  type: 'object',
  properties: { job: { $ref: 'Job#' } },
} as const;

/** Response schema of a paged list: `{ items: [<ref>], nextCursor }`. */
export const pageResponseSchema = (ref: string) =>
  ({
    type: 'object',
    properties: {
      items: { type: 'array', items: { $ref: `${ref}#` } },
      nextCursor: { type: ['string', 'null'] },
    },
  }) as const;

/** Query of the paged list endpoints. */
export const pageQuerySchema = {
  cursor: { type: 'string', minLength: 1, maxLength: 512 },
  limit: { type: 'integer', minimum: 1, maximum: 200 },
} as const;

/** Query schema of a comma-separated list of `statuses` (`?status=pending,failed`). */
export const statusListSchema = (statuses: readonly string[]) =>
  ({
    type: 'string',
    pattern: `^(${statuses.join('|')})(,(${statuses.join('|')}))*$`,
    description: 'Comma-separated statuses',
  }) as const;

/** The distinct statuses of a list that statusListSchema validated; undefined for none. */
export function parseStatusList<S extends string>(list: string | undefined): S[] | undefined {
  return list ? ([...new Set(list.split(','))] as S[]) : undefined;
}

/** Path parameter schema of a job id (any string: an unknown or malformed id is a 404). */
export const jobIdParamsSchema = (name: string) =>
  ({
    type: 'object',
    required: [name],
    properties: { [name]: { type: 'string', minLength: 1, maxLength: 128 } },
  }) as const;

const iso = (ms: number): string => new Date(ms).toISOString();
/** Epoch ms as ISO 8601, null stays null. */
export const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));

/** A JobError with an ISO time. */
export type JobErrorDto = Omit<JobError, 'at'> & { at: string };

function errorDto(e: JobError | null): JobErrorDto | null {
  return e === null ? null : { ...e, at: iso(e.at) };
}

/** A job as the API returns it. */
export interface JobDto {
  id: string;
  tenantId: string;
  queue: string;
  type: string;
  payload: unknown;
  priority: number;
  status: Job['status'];
  availableAt: string;
  attempts: number;
  maxAttempts: number;
  lastError: JobErrorDto | null;
  lockedBy: string | null;
  lockedAt: string | null;
  leaseUntil: string | null;
  idempotencyKey: string | null;
  traceId: string;
  result: unknown;
  timeoutMs: number | null;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
}

/** Serializes a job with ISO 8601 times. */
export function jobDto(job: Job): JobDto {
  return {
    ...job,
    availableAt: iso(job.availableAt),
    lastError: errorDto(job.lastError),
    lockedAt: isoOrNull(job.lockedAt),
    leaseUntil: isoOrNull(job.leaseUntil),
    createdAt: iso(job.createdAt),
    updatedAt: iso(job.updatedAt),
    finishedAt: isoOrNull(job.finishedAt),
  };
}

/** A dead-letter item as the API returns it. */
export type DlqItemDto = Omit<DlqItem, 'lastError' | 'createdAt' | 'replayedAt'> & {
  lastError: JobErrorDto | null;
  createdAt: string;
  replayedAt: string | null;
};

/** Serializes a dead-letter item with ISO 8601 times. */
export function dlqItemDto(item: DlqItem): DlqItemDto {
  return {
    ...item,
    lastError: errorDto(item.lastError),
    createdAt: iso(item.createdAt),
    replayedAt: isoOrNull(item.replayedAt),
  };
}
