export { createDocket, createDocketFromEnv } from './docket.js';
export type {
  CreateDocketOptions,
  Docket,
  DocketAudit,
  DocketTransaction,
  EnqueueItem,
} from './docket.js';
export type {
  AuditConfig,
  DocketConfig,
  DocketOptions,
  EmailConfig,
  EmailOptions,
  RetryPolicy,
  SchedulerLocksConfig,
  SchedulerLocksOptions,
} from './config/index.js';
export { BUILTIN_AUDIT_ACTIONS, defineAudit } from './audit/index.js';
export type {
  AuditContent,
  AuditDefinition,
  AuditDiffEntry,
  AuditEvent,
  AuditEventFilter,
  AuditOutcome,
  AuditPrincipal,
  AuditReceipt,
  AuditRecordOptions,
  AuditResource,
  AuditResourceOptions,
  AuditSettings,
  AuditVerifyResult,
  JsonValue,
} from './audit/index.js';
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
export { signWebhook, verifyWebhookSignature } from './outbox/webhook-request.js';
export { PermanentSinkError } from './outbox/types.js';
export type {
  OutboxAddInput,
  OutboxEvent,
  OutboxRoute,
  OutboxSink,
  OutboxStatus,
  SinkOutcome,
  SinkReceipt,
} from './outbox/types.js';
export type {
  OutboxListFilter,
  OutboxOptions,
  OutboxSinkConfig,
  UnroutedTopics,
} from './outbox/service.js';
export type { WebhookDelivery } from './outbox/deliveries.js';
export type { OutboxRelay, RelayOptions } from './outbox/relay.js';
export type { OutboxJobPayload, WebhookSinkOptions } from './outbox/sinks.js';
export type { NatsSinkOptions } from './outbox/sink-nats.js';
export type { RabbitMqSinkOptions } from './outbox/sink-rabbitmq.js';
export { BROKER_HEADERS, type BrokerEnvelope } from './outbox/broker-message.js';
export type { WebhookDeliveryRecord, DeliveryClass } from './outbox/webhook-request.js';
export { EffectUnknownError, EFFECT_STATES } from './effects/index.js';
export type {
  Effect,
  EffectAnswer,
  EffectCall,
  EffectError,
  EffectInput,
  EffectOutcome,
  EffectProvider,
  EffectReservation,
  EffectState,
  EmailJobPayload,
  EmailJobResult,
} from './effects/index.js';
export type { DocketScheduler } from './docket.js';
export { DatabaseLockBackend, EtcdLockBackend, RedisLockBackend } from './scheduler/index.js';
export type {
  ExecutionListFilter,
  ExecutionStatus,
  ExecutionTrigger,
  EtcdLockBackendOptions,
  LockAcquireParams,
  LockBackend,
  LockGrant,
  RedisLockBackendOptions,
  SchedulerLocks,
  SchedulerOptions,
  SchedulerTask,
  TaskContext,
  TaskDefinition,
  TaskExecution,
  TaskHandler,
  TaskIsolation,
  TaskStats,
} from './scheduler/index.js';
export type { DocketProposals } from './docket.js';
export { PROPOSAL_STATES } from './proposals/index.js';
export type {
  Proposal,
  ProposalActorOptions,
  ProposalApplyContext,
  ProposalApplyInput,
  ProposalApplyOutcome,
  ProposalCandidate,
  ProposalInput,
  ProposalKind,
  ProposalListFilter,
  ProposalState,
  ProposalsOptions,
  ProposalVersion,
} from './proposals/index.js';
export type { DocketTriggers } from './docket.js';
export { TRIGGER_STATES } from './scheduler/index.js';
export type {
  DueTrigger,
  ScheduleTriggerInput,
  ScheduleTriggerOptions,
  ScheduleTriggerResult,
  TriggerContext,
  TriggerHandler,
  TriggerListFilter,
  TriggerOutcome,
  TriggerState,
  TriggerTypeOptions,
  TriggersOptions,
} from './scheduler/index.js';
