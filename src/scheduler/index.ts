// The scheduler's public face (SPEC S): other folders import only from here.
export {
  Scheduler,
  resolveTaskDefinition,
  type SchedulerDeps,
  type SchedulerOptions,
} from './service.js';
export {
  DatabaseLockBackend,
  type LockBackend,
  type LockGrant,
  type LockAcquireParams,
} from './locks.js';
export { RedisLockBackend, type RedisLockBackendOptions } from './locks-redis.js';
export { EtcdLockBackend, type EtcdLockBackendOptions } from './locks-etcd.js';
export { resolveLocks, type SchedulerLocks } from './lock-backends.js';
export { parseSchedule, type Schedule } from './cron.js';
export * from './types.js';
export {
  TriggerRegistry,
  TriggerService,
  triggerJobType,
  type TriggerJobPayload,
  type TriggerServiceDeps,
} from './triggers.js';
export * from './triggers-types.js';
