import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect, type Transaction } from 'kysely';
import type { StoreConfig } from '../config/index.js';
import { DocketError } from '../core/errors.js';
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
   * Runs synchronous work on the raw connection so it never interleaves with a caller's open
   * transaction on the same connection: at once when none is open, else after it (through
   * Kysely's connection mutex).
   */
  exclusive<T>(fn: (db: Database.Database) => T, options?: ExclusiveOptions): Promise<T>;
}

/** How exclusive() runs its work. */
export interface ExclusiveOptions {
  /**
   * Always take the connection's turn through the mutex, even when it is free (a batch writer
   * that wants producers to run, and its batches to grow, between its writes). Default false.
   */
  queued?: boolean;
}

interface SharedHandle {
  raw: Database.Database;
  db: Kysely<DocketDatabase>;
  refs: number;
}

// One connection per database file per process, shared by every store opened on it. Two
// connections in one process would deadlock: better-sqlite3 waits for a lock synchronously,
// blocking the event loop that the lock holder (an open async transaction) needs to finish.
// Sharing the connection puts every in-process user behind Kysely's one connection mutex;
// other processes wait on SQLite's busy timeout without blocking anyone here.
const shared = new Map<string, SharedHandle>();

function acquire(path: string): SharedHandle {
  const existing = path === ':memory:' ? undefined : shared.get(path);
  if (existing) {
    existing.refs++;
    return existing;
  }
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const raw = new Database(path);
  raw.pragma('journal_mode = WAL');
  raw.pragma('synchronous = NORMAL');
  raw.pragma('busy_timeout = 10000');
  // Checkpoint at 16,384 WAL pages (64 MiB) rather than SQLite's 1,000: a batched audit write
  // of 20,000 events dirties thousands of index pages, so at 1,000 every commit was followed
  // by a checkpoint copying them all again (measured in bench/NOTES.md, "Audit ingest").
  // The WAL file is cut back to 64 MiB after a checkpoint that lets it restart.
  raw.pragma('wal_autocheckpoint = 16384');
  raw.pragma('journal_size_limit = 67108864');
  raw.pragma('foreign_keys = ON');
  const handle = {
    raw,
    db: new Kysely<DocketDatabase>({ dialect: new SqliteDialect({ database: raw }) }),
    refs: 1,
  };
  if (path !== ':memory:') shared.set(path, handle);
  return handle;
}

// Marks code running inside a transaction that holds a connection, so a call that would wait for
// that same connection (and so wait forever) fails at once with a clear error instead.
const holding = new AsyncLocalStorage<Database.Database>();

function assertNotHolding(raw: Database.Database): void {
  if (holding.getStore() === raw) {
    throw new DocketError(
      'TX_INVALID',
      'on SQLite a Docket call inside withTransaction must use the transaction (enqueueTx); ' +
        'other calls would wait for the connection the transaction holds',
    );
  }
}

const UNAVAILABLE = new Set([
  'SQLITE_BUSY',
  'SQLITE_LOCKED',
  'SQLITE_CANTOPEN',
  'SQLITE_FULL',
  'SQLITE_IOERR',
]);

/** A lock or I/O error as STORE_UNAVAILABLE; any other error as it is. */
function translateSqliteError(err: unknown): unknown {
  const code = (err as { code?: string }).code ?? '';
  if (UNAVAILABLE.has(code) || [...UNAVAILABLE].some((c) => code.startsWith(`${c}_`))) {
    return new DocketError(
      'STORE_UNAVAILABLE',
      `SQLite unavailable: ${(err as Error).message}`,
      { code },
      { cause: err },
    );
  }
  return err;
}

/** Translates lock and I/O errors into STORE_UNAVAILABLE at the driver boundary. */
async function translateSqlite<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw translateSqliteError(err);
  }
}

/** Opens (without migrating) the SQLite store, creating its folder. */
export async function openSqliteStore(
  config: Extract<StoreConfig, { dialect: 'sqlite' }>,
  _logger: Logger,
): Promise<SqliteStore> {
  const handle = acquire(config.path);
  const { raw, db } = handle;
  let closed = false;
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
    exclusive<T>(fn: (d: Database.Database) => T, options?: ExclusiveOptions): Promise<T> {
      try {
        assertNotHolding(raw);
        // No transaction is open on the connection: the synchronous work runs at once, since it
        // cannot interleave with anything (statements outside a transaction are atomic, and
        // Kysely's next query waits for this tick). This skips the mutex's promise chain on
        // every hot-path statement (claims, completions, the audit writer). An open transaction
        // (an application's withTransaction awaiting between statements) still waits its turn.
        if (!raw.inTransaction && !options?.queued) return Promise.resolve(fn(raw));
      } catch (err) {
        return Promise.reject(translateSqliteError(err));
      }
      return translateSqlite(() => db.connection().execute(async () => fn(raw)));
    },
    async withTenantTransaction<T>(
      _tenant: string,
      fn: (trx: Transaction<DocketDatabase>) => Promise<T>,
    ) {
      // SQLite has no RLS: tenant filters are applied by every query in the backend.
      assertNotHolding(raw);
      return translateSqlite(() =>
        db.transaction().execute((trx) => holding.run(raw, () => fn(trx))),
      );
    },
    async withSystemStatement<T>(fn: (d: Kysely<DocketDatabase>) => Promise<T>) {
      assertNotHolding(raw);
      return translateSqlite(() => fn(db));
    },
    async withSystemTransaction<T>(fn: (trx: Transaction<DocketDatabase>) => Promise<T>) {
      assertNotHolding(raw);
      return translateSqlite(() =>
        db.transaction().execute((trx) => holding.run(raw, () => fn(trx))),
      );
    },
    async migrate() {
      return runMigrations(db, 'sqlite');
    },
    async verify() {},
    async ping() {
      await db.connection().execute(async () => raw.prepare('select 1').get());
    },
    async analyze(tables) {
      // Only the named tables: statistics gathered on \`jobs\` in the middle of a drain (all rows
      // pending) made SQLite's claim plan 3× slower for the rest of it (npm run bench, 2.3k vs
      // 7–8k jobs/s). Without statistics on audit_events, SQLite walked the time range instead
      // of the actor index for "actor + last 7 days" over 1M events (p50 44 ms, ~2 ms with).
      assertNotHolding(raw);
      await translateSqlite(() =>
        db.connection().execute(async () => {
          raw.pragma('analysis_limit = 1000');
          for (const t of tables) raw.exec(`analyze ${t}`);
        }),
      );
    },
    async close() {
      if (closed) return;
      closed = true;
      if (--handle.refs > 0) return;
      shared.delete(config.path);
      await db.destroy();
    },
  };
}
