// Choosing the scheduler's lock backend (SPEC S-2): an instance the application made, or
// settings (`{ backend: 'database' | 'redis' | 'etcd', url, prefix }`) resolved here.
import type { Kysely } from 'kysely';
import { resolveSchedulerLocks, type SchedulerLocksOptions } from '../config/index.js';
import type { DocketDatabase } from '../store/schema.js';
import { EtcdLockBackend } from './locks-etcd.js';
import { RedisLockBackend } from './locks-redis.js';
import { DatabaseLockBackend, type LockBackend } from './locks.js';

/** A lock backend instance, or the settings of one of Docket's. */
export type SchedulerLocks = LockBackend | SchedulerLocksOptions;

/** True when `locks` is a backend instance (not settings). */
export function isLockBackend(locks: SchedulerLocks): locks is LockBackend {
  return typeof (locks as Partial<LockBackend>).lockAcquire === 'function';
}

/** Validates lock settings now (CONFIG_INVALID); an instance passes through. */
export function resolveLocks(locks: SchedulerLocks | undefined): SchedulerLocks | undefined {
  return locks === undefined || isLockBackend(locks) ? locks : resolveSchedulerLocks(locks);
}

/**
 * The backend to use; `owned` when Docket made it (and so stops it). No I/O: a backend
 * connects on `start()` or its first operation.
 */
export function openLockBackend(
  locks: SchedulerLocks | undefined,
  db: Kysely<DocketDatabase>,
): { locks: LockBackend; owned: boolean } {
  if (locks && isLockBackend(locks)) return { locks, owned: false };
  const c = resolveSchedulerLocks(locks ?? { backend: 'database' });
  if (c.backend === 'redis') {
    return { locks: new RedisLockBackend({ url: c.url, prefix: c.prefix }), owned: true };
  }
  if (c.backend === 'etcd') {
    return { locks: new EtcdLockBackend({ url: c.url, prefix: c.prefix }), owned: true };
  }
  return { locks: new DatabaseLockBackend(db), owned: true };
}
