import type { RetryPolicy } from '../config/index.js';
import type { Logger } from '../core/logger.js';
import type { Job } from './types.js';

/** Map of job type name to payload type, e.g. `{ sendEmail: { to: string } }`. */
export type JobMap = Record<string, unknown>;

/** What a handler receives. */
export interface JobContext<Payload> {
  /** The claimed job. */
  job: Job<Payload>;
  /** The job's payload (typed from the job-type map). */
  payload: Payload;
  /** Aborted at the job's timeout or when its lease is lost; stop work promptly. */
  signal: AbortSignal;
  /** The job's tenant (also the ambient tenant context while the handler runs). */
  tenant: string;
  /** The job's trace id. */
  traceId: string;
  /** Attempt number, starting at 1. */
  attempt: number;
  /** Logger bound to the job, tenant and trace. */
  logger: Logger;
}

/** A handler for one job type; its return value is stored as the job's result. */
export type JobHandler<Payload> = (ctx: JobContext<Payload>) => unknown;

/** Handlers keyed by job type; payload types are inferred from the map. */
export type JobHandlers<M extends JobMap> = { [K in keyof M & string]?: JobHandler<M[K]> };

/** Per-type options. */
export interface JobTypeOptions {
  /** Retry policy overrides. Default: the global `jobs.retry`. */
  retry?: Partial<RetryPolicy>;
  /** Handler timeout, ms. Default: `jobs.timeoutMs`. */
  timeoutMs?: number;
  /** Grace after the timeout, ms. Default: `jobs.graceMs`. */
  graceMs?: number;
  /** Default queue. Default: `jobs.queue`. */
  queue?: string;
  /** Default priority. Default 0. */
  priority?: number;
  /** Validates a payload at enqueue time; throw a DocketError to reject it. Default none. */
  validate?: (payload: unknown) => void;
  /**
   * At most `max` starts per `perMs` window (fixed windows), counted in the store so every
   * process shares it; `scope: 'tenant'` gives each tenant its own allowance. A claimed job over
   * the limit goes back to pending until the next window, without counting an attempt.
   * Default none.
   */
  rateLimit?: RateLimit;
}

/** A per-type rate limit (SPEC Q-11), e.g. `{ max: 60, perMs: 60_000 }` for 60 a minute. */
export interface RateLimit {
  /** Starts allowed per window. */
  max: number;
  /** Window length, ms. */
  perMs: number;
  /** One allowance for all tenants (`global`, default) or one per tenant. */
  scope?: 'global' | 'tenant';
}

/** Job type names are dotted identifiers: letters, digits, `_`, `-`, `.`, `:`; up to 128 chars. */
export const JOB_TYPE_PATTERN = /^[A-Za-z][A-Za-z0-9_.:-]{0,127}$/;
