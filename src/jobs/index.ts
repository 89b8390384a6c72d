export * from './types.js';
export type {
  AuditEntry,
  JobBackend,
  JobBackendCapabilities,
  JobClaimBatchParams,
  JobCompletion,
  JobRef,
  JobFailureParams,
} from './backend.js';
export { admitClaimed, validateRateLimit } from './rate-limits.js';
export { jobBackendFor } from './backends/index.js';
export { JobsService, type EnqueueOptions, type ActorOptions } from './service.js';
export { PermanentJobError, RetryJobError } from './handler-errors.js';
export type { JobContext, JobHandler, JobHandlers, JobMap, JobTypeOptions } from './registry.js';
export { backoffDelay } from './retry-policy.js';
export {
  moveToDeadLetter,
  resumeDeadLetter,
  type DeadLetterDeps,
  type Failpoint,
} from './dead-letter.js';
export {
  encodeResult,
  recordFailure,
  completeJobs,
  startAttempt,
  leaseLostError,
  type AttemptOutcome,
  type ExecutionDeps,
  type RunningAttempt,
} from './execution.js';
export {
  processBatch,
  DEFAULT_LANES,
  type Lane,
  type ProcessBatchOptions,
  type ProcessBatchResult,
} from './lanes.js';
