import type { Logger } from '../../core/logger.js';
import type { Store } from '../../store/index.js';
import type { JobBackend } from '../backend.js';
import { PostgresJobBackend } from './sql-postgres.js';
import { SqliteJobBackend } from './sql-sqlite.js';

/** The job backend for a store: the one place that maps a store to its backend. */
export function jobBackendFor(store: Store, logger: Logger): JobBackend {
  return store.dialect === 'postgres'
    ? new PostgresJobBackend(store, logger)
    : new SqliteJobBackend(store);
}
