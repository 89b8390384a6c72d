import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect, type Transaction } from 'kysely';
import type { StoreConfig } from '../config/index.js';
import type { Logger } from '../core/logger.js';
import type { StoreBase, StoreCapabilities } from './index.js';
import { runMigrations } from './migrator.js';
import type { DocketDatabase } from './schema.js';

/** SQLite store: one connection per process, serialized by Kysely's connection mutex. */
export interface SqliteStore extends StoreBase {
  /** Dialect tag. */
  readonly dialect: 'sqlite';
  /** The raw connection; only use it inside `exclusive()`. */
  readonly raw: Database.Database;
  /**
   * Runs synchronous work on the raw connection while holding Kysely's connection, so it never
   * interleaves with a caller's open transaction on the same connection.
   */
  exclusive<T>(fn: (db: Database.Database) => T): Promise<T>;
}

/** Opens (without migrating) the SQLite store, creating its folder. */
export async function openSqliteStore(
  config: Extract<StoreConfig, { dialect: 'sqlite' }>,
  _logger: Logger,
): Promise<SqliteStore> {
  if (config.path !== ':memory:') mkdirSync(dirname(config.path), { recursive: true });
  const raw = new Database(config.path);
  raw.pragma('journal_mode = WAL');
  raw.pragma('synchronous = NORMAL');
  raw.pragma('busy_timeout = 10000');
  raw.pragma('foreign_keys = ON');
  const db = new Kysely<DocketDatabase>({ dialect: new SqliteDialect({ database: raw }) });
  const capabilities: StoreCapabilities = {
    supportsListenNotify: false,
    supportsSkipLocked: false,
    supportsRowLevelSecurity: false,
  };
  return {
    dialect: 'sqlite',
    capabilities,
    systemDb: db,
    raw,
    exclusive<T>(fn: (d: Database.Database) => T) {
      return db.connection().execute(async () => fn(raw));
    },
    async withTenantTransaction<T>(
      _tenant: string,
      fn: (trx: Transaction<DocketDatabase>) => Promise<T>,
    ) {
      // SQLite has no RLS: tenant filters are applied by every query in the backend.
      return db.transaction().execute(fn);
    },
    async withSystemTransaction<T>(fn: (trx: Transaction<DocketDatabase>) => Promise<T>) {
      return db.transaction().execute(fn);
    },
    async migrate() {
      return runMigrations(db, 'sqlite');
    },
    async ping() {
      await db.connection().execute(async () => raw.prepare('select 1').get());
    },
    async close() {
      await db.destroy();
    },
  };
}
