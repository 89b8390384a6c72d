import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { DocketDatabase } from '../../src/store/index.js';
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { DocketOptions } from '../../src/config/index.js';
import {
  createDocket,
  type CreateDocketOptions,
  type Docket,
  type JobMap,
} from '../../src/index.js';

/** Stores every conformance suite runs against. */
export const BACKENDS = ['sqlite', 'postgres'] as const;
/** Queue backends the job conformance suites run against: each store alone, and with Redis. */
export const QUEUE_BACKENDS = [...BACKENDS, 'sqlite+redis', 'postgres+redis'] as const;
/** A backend name. */
export type BackendName = (typeof QUEUE_BACKENDS)[number];

/** Redis server URL for tests (each test store uses its own key prefix). */
export const REDIS_URL = process.env.DOCKET_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** etcd client URL for tests (each test file uses its own key prefix). */
export const ETCD_URL = process.env.DOCKET_TEST_ETCD_URL ?? 'http://127.0.0.1:2379';

/** PostgreSQL server URL for tests (database part replaced per test). */
export const PG_ADMIN_URL =
  process.env.DOCKET_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A fresh, isolated store for one test file; `dispose()` removes it. */
export interface TestStore {
  /** Store options to pass to createDocket. */
  store: NonNullable<DocketOptions['store']>;
  /** Data folder for this store. */
  dataDir: string;
  /** Environment variables selecting this store (for child processes). */
  env: Record<string, string>;
  /** PostgreSQL URL of the test database (postgres only). */
  url?: string;
  /** Queue options to pass to createDocket (the Redis lane, for `…+redis`). */
  queue?: DocketOptions['queue'];
  /** Removes the database / files. */
  dispose(): Promise<void>;
}

/** Creates a fresh store: a temp SQLite file, or a new PostgreSQL database; with Redis for `…+redis`. */
export async function createTestStore(backend: BackendName): Promise<TestStore> {
  const [storeName, queue] = backend.split('+') as ['sqlite' | 'postgres', 'redis' | undefined];
  const ts = await createStore(storeName);
  if (queue !== 'redis') return ts;
  const prefix = `docket-test-${randomBytes(6).toString('hex')}`;
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
  } catch (err) {
    throw new Error(
      `Redis is required for the redis suites (${REDIS_URL}): ${(err as Error).message}`,
    );
  }
  return {
    ...ts,
    queue: { backend: 'redis', url: REDIS_URL, prefix },
    env: {
      ...ts.env,
      DOCKET_QUEUE: 'redis',
      DOCKET_REDIS_URL: REDIS_URL,
      DOCKET_REDIS_PREFIX: prefix,
    },
    async dispose() {
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length) await redis.del(...keys);
      await redis.quit();
      await ts.dispose();
    },
  };
}

async function createStore(backend: 'sqlite' | 'postgres'): Promise<TestStore> {
  const dataDir = mkdtempSync(join(tmpdir(), 'docket-test-'));
  if (backend === 'sqlite') {
    const path = join(dataDir, 'docket.sqlite');
    return {
      store: { dialect: 'sqlite', path },
      dataDir,
      env: { DOCKET_STORE: 'sqlite', DOCKET_SQLITE_PATH: path, DOCKET_DATA_DIR: dataDir },
      async dispose() {
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  }
  const name = `docket_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  try {
    await admin.connect();
  } catch (err) {
    throw new Error(
      `PostgreSQL is required for the postgres suite (${PG_ADMIN_URL}): ${(err as Error).message}`,
    );
  }
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
  return {
    store: { dialect: 'postgres', url, poolSize: 5 },
    dataDir,
    url,
    env: {
      DOCKET_STORE: 'postgres',
      DOCKET_DATABASE_URL: url,
      DOCKET_DATA_DIR: dataDir,
      DOCKET_PG_POOL_SIZE: '4',
    },
    async dispose() {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Waits until `check` returns a truthy value or the deadline passes. */
export async function waitFor<T>(
  check: () => Promise<T> | T,
  options: { timeoutMs?: number; what?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${options.what ?? 'condition'}${last ? `: ${String(last)}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Creates an application table `(id, tenant_id)` of the test's own in the store, usable inside
 * withTransaction (granted to Docket's roles on PostgreSQL).
 */
export async function createBusinessTable(
  ts: TestStore,
  docket: { internals: { systemDb(): Promise<Kysely<DocketDatabase>> } },
  table: string,
): Promise<void> {
  if (ts.url) {
    const c = new pg.Client({ connectionString: ts.url });
    await c.connect();
    await c.query(`create table ${table} (id text primary key, tenant_id text not null)`);
    await c.query(`grant select, insert on ${table} to docket_app, docket_system`);
    await c.end();
  } else {
    await sql`create table ${sql.table(table)} (id text primary key, tenant_id text not null)`.execute(
      await docket.internals.systemDb(),
    );
  }
}

/**
 * Runs raw SQL as the database owner with the audit_events triggers out of the way, as someone
 * with direct database access could (to prove that `audit verify` catches tampering).
 */
export async function runBehindTriggers(
  ts: TestStore,
  docket: { internals: { systemDb(): Promise<Kysely<DocketDatabase>> } },
  statement: string,
): Promise<void> {
  if (ts.url) {
    const c = new pg.Client({ connectionString: ts.url });
    await c.connect();
    try {
      await c.query('begin');
      await c.query('set local session_replication_role = replica');
      await c.query(statement);
      await c.query('commit');
    } finally {
      await c.end();
    }
    return;
  }
  const db = await docket.internals.systemDb();
  const triggers = await sql<{ name: string; sql: string }>`
    select name, sql from sqlite_master where type = 'trigger' and tbl_name = 'audit_events'`.execute(
    db,
  );
  for (const t of triggers.rows) await sql.raw(`drop trigger ${t.name}`).execute(db);
  try {
    await sql.raw(statement).execute(db);
  } finally {
    for (const t of triggers.rows) await sql.raw(t.sql).execute(db);
  }
}

/** A conformance suite's store and Docket factory (see useDocketSuite). */
export interface DocketSuite<M extends JobMap> {
  /** The file's store (set once the suite's beforeAll has run). */
  readonly ts: TestStore;
  /** Opens a Docket on the store: suite defaults, then `extra`; it is closed after the test. */
  make(extra?: CreateDocketOptions<M>): Docket<M>;
}

/**
 * Registers the hooks of a conformance suite: a fresh store (migrated once) for `backend`, every
 * Docket the test opened closed after it, the store removed at the end. Docket instances get
 * the store, its queue (for `…+redis`), `reapIntervalMs: 0` and `defaults`.
 */
export function useDocketSuite<M extends JobMap = JobMap>(
  backend: BackendName,
  defaults: CreateDocketOptions<M> = {},
): DocketSuite<M> {
  let ts: TestStore | undefined;
  const opened: Docket<M>[] = [];
  const store = (): TestStore => {
    if (!ts) throw new Error('the suite store is not created yet (use it inside a test)');
    return ts;
  };
  const make = (extra: CreateDocketOptions<M> = {}) => {
    const s = store();
    const d = createDocket<M>({
      store: s.store,
      dataDir: s.dataDir,
      queue: s.queue,
      reapIntervalMs: 0,
      ...defaults,
      ...extra,
    });
    opened.push(d);
    return d;
  };
  beforeAll(async () => {
    ts = await createTestStore(backend);
    await make().migrate();
  });
  // Each test closes what it opened, so connections never pile up on the server.
  afterEach(async () => {
    for (const d of opened.splice(0)) await d.close();
  });
  afterAll(async () => {
    await ts?.dispose();
  });
  return {
    get ts() {
      return store();
    },
    make,
  };
}
