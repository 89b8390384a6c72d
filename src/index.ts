export { createDocket, createDocketFromEnv } from './docket.js';
export type { CreateDocketOptions, Docket, DocketTransaction, EnqueueItem } from './docket.js';
export type { DocketConfig, DocketOptions, RetryPolicy } from './config/index.js';
export { DocketError, ERROR_CODES, isDocketError, type ErrorCode } from './core/errors.js';
export { ManualClock, systemClock, type Clock } from './core/clock.js';
export type { IdGenerator } from './core/ids.js';
export { PermanentJobError, RetryJobError, DEFAULT_LANES } from './jobs/index.js';
export type {
  ActorOptions,
  DlqItem,
  EnqueueOptions,
  EnqueueResult,
  Job,
  JobContext,
  JobError,
  JobHandler,
  JobHandlers,
  JobListFilter,
  JobMap,
  JobStatus,
  JobTypeOptions,
  Lane,
  Page,
  ProcessBatchOptions,
  ProcessBatchResult,
} from './jobs/index.js';
export type { Worker, WorkerOptions, ReapResult } from './worker/index.js';
export type { HttpJobPayload } from './jobs/builtins/http-request.js';
