import type { DocketConfig } from '../../config/index.js';
import type { Clock } from '../../core/clock.js';
import type { IdGenerator } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import type { Store } from '../../store/index.js';
import type { JobBackend } from '../backend.js';
import { RedisDispatch } from './redis-dispatch.js';
import { RedisJobBackend } from './redis.js';
import { PostgresJobBackend } from './sql-postgres.js';
import { SqliteJobBackend } from './sql-sqlite.js';

/** The job backend for a store and queue setting: the one place that maps them to a backend. */
export function jobBackendFor(
  store: Store,
  logger: Logger,
  deps: { config: Pick<DocketConfig, 'queue'>; clock: Clock; ids: IdGenerator },
): JobBackend {
  const sql =
    store.dialect === 'postgres'
      ? new PostgresJobBackend(store, logger)
      : new SqliteJobBackend(store);
  const q = deps.config.queue;
  if (q.backend !== 'redis') return sql;
  const dispatch = new RedisDispatch({
    url: q.url,
    prefix: q.prefix,
    env: q.env,
    newId: () => deps.ids.next(),
  });
  return new RedisJobBackend(sql, dispatch, logger, () => deps.clock.now(), q.reconcileIntervalMs);
}
