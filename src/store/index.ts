import type { Kysely, Transaction } from 'kysely';
import type { DocketConfig } from '../config/index.js';
import type { Logger } from '../core/logger.js';
import type { DocketDatabase } from './schema.js';
import { openPostgresStore } from './postgres.js';
import { openSqliteStore } from './sqlite.js';

export type { DocketDatabase } from './schema.js';
/** A table Docket owns. */
export type DocketTable = keyof import('./schema.js').DocketDatabase;
export type { PostgresStore } from './postgres.js';
export type { SqliteStore } from './sqlite.js';
export { APP_ROLE, SYSTEM_ROLE } from './postgres.js';

/** What a store can do; core code asks these instead of checking the dialect. */
export interface StoreCapabilities {
  /** LISTEN/NOTIFY wake-ups across processes. */
  supportsListenNotify: boolean;
  /** `FOR UPDATE SKIP LOCKED` claims. */
  supportsSkipLocked: boolean;
  /** Row-level security enforces tenant isolation in the database itself. */
  supportsRowLevelSecurity: boolean;
}

/** A Kysely transaction opened by Docket for one tenant. */
export type TenantTransaction = Transaction<DocketDatabase>;

/** The database handle shared by every capability. */
export interface StoreBase {
  /** Capabilities of this store. */
  readonly capabilities: StoreCapabilities;
  /** Runs `fn` in a transaction scoped to `tenant` (RLS on PostgreSQL). */
  withTenantTransaction<T>(tenant: string, fn: (trx: TenantTransaction) => Promise<T>): Promise<T>;
  /** Runs `fn` in a transaction that may touch every tenant (engine internals, operator calls). */
  withSystemTransaction<T>(fn: (trx: Transaction<DocketDatabase>) => Promise<T>): Promise<T>;
  /** Runs autocommit statements on the system handle (guarded and translated like transactions). */
  withSystemStatement<T>(fn: (db: Kysely<DocketDatabase>) => Promise<T>): Promise<T>;
  /** The system (cross-tenant) query handle. */
  readonly systemDb: Kysely<DocketDatabase>;
  /** Applies pending migrations (idempotent; safe from several processes at once). */
  migrate(): Promise<string[]>;
  /** Checks the store is set up safely (PostgreSQL: the tenant role cannot escape RLS). */
  verify(): Promise<void>;
  /** Quick connectivity probe for /readyz and `docket doctor`. */
  ping(): Promise<void>;
  /**
   * Refreshes planner statistics of `tables` where the database does not do it by itself
   * (SQLite: sampled `ANALYZE`; PostgreSQL's autovacuum does it). Maintenance jobs call it.
   */
  analyze(tables: readonly DocketTable[]): Promise<void>;
  /** Closes every connection. */
  close(): Promise<void>;
}

/** A store of either dialect; `dialect` discriminates for backend selection only. */
export type Store = PostgresStoreT | SqliteStoreT;
type PostgresStoreT = import('./postgres.js').PostgresStore;
type SqliteStoreT = import('./sqlite.js').SqliteStore;

/** Opens the store the configuration names. No migrations are run here. */
export async function openStore(config: DocketConfig, logger: Logger): Promise<Store> {
  return config.store.dialect === 'postgres'
    ? openPostgresStore(config.store, logger)
    : openSqliteStore(config.store, logger);
}
