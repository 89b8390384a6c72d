// Docket on SQLite or PostgreSQL, through its public API (createDocket, enqueue, enqueueMany,
// createWorker), with default configuration. It loads the compiled package (dist/, built by
// `npm run bench` first), as an application runs it and as the peers run from their published
// builds; BENCH_DOCKET_MODULE=../../src/index.js measures the TypeScript sources through tsx.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import type * as DocketModule from '../../src/index.js';
import type { Docket, Worker } from '../../src/index.js';
import { createDatabase, type BenchDatabase } from '../db.js';
import type { BenchSystem, OnJob, WorkerSetting } from '../system.js';
import { BENCH_REDIS_URL, deleteRedisPrefix } from './bullmq.js';

type Jobs = { noop: { i: number } };
const TENANT = 'bench';

/** Options of the Docket system under test. */
export interface DocketSystemOptions {
  dialect: 'sqlite' | 'postgres';
  /**
   * Enqueue through a second Docket instance (as another process would), so the worker is woken
   * only by PostgreSQL NOTIFY and not by the in-process wake-up. Used for a latency variant.
   */
  separateProducer?: boolean;
  /** Remove succeeded jobs at completion (`retention.succeededMs: 0`), as graphile-worker does. */
  removeSucceeded?: boolean;
  /** Dispatch through Redis (`queue: { backend: 'redis' }`), the store staying the truth. */
  redis?: boolean;
  name?: string;
}

let docketModule: Promise<typeof DocketModule> | undefined;
/** The package under test (compiled by default; see the header). */
export function loadDocket(): Promise<typeof DocketModule> {
  const specifier = process.env.BENCH_DOCKET_MODULE ?? '../../dist/index.js';
  return (docketModule ??= import(specifier) as Promise<typeof DocketModule>);
}

/** Creates a Docket system on a fresh SQLite file or PostgreSQL database. */
export async function createDocketSystem(o: DocketSystemOptions): Promise<BenchSystem> {
  const { createDocket } = await loadDocket();
  const redisPrefix = `bench-docket-${randomBytes(4).toString('hex')}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'docket-bench-'));
  const db: BenchDatabase | undefined =
    o.dialect === 'postgres' ? await createDatabase('docket') : undefined;
  const store = db
    ? ({ dialect: 'postgres', url: db.url } as const)
    : ({ dialect: 'sqlite', path: join(dataDir, 'docket.sqlite') } as const);
  let onJob: OnJob = () => undefined;
  let docket: Docket<Jobs> | undefined;
  let producer: Docket<Jobs> | undefined;
  let worker: Worker | undefined;

  const make = () =>
    createDocket<Jobs>({
      store,
      dataDir,
      ...(o.removeSucceeded ? { retention: { succeededMs: 0 } } : {}),
      ...(o.redis
        ? { queue: { backend: 'redis' as const, url: BENCH_REDIS_URL, prefix: redisPrefix } }
        : {}),
      handlers: { noop: ({ payload }) => onJob(payload.i) },
    });
  const d = () => {
    if (!docket) throw new Error('docket system is not open');
    return docket;
  };
  const p = () => producer ?? d();

  return {
    name: o.name ?? (o.dialect === 'postgres' ? 'Docket (PostgreSQL)' : 'Docket (SQLite)'),
    async open() {
      docket = make();
      await docket.start();
      if (o.separateProducer) {
        producer = make();
        await producer.ping();
      }
    },
    async enqueue(i) {
      await p().enqueue('noop', { i }, { tenant: TENANT });
    },
    async enqueueBatch(from, count) {
      const items = Array.from({ length: count }, (_, k) => ({
        type: 'noop' as const,
        payload: { i: from + k },
      }));
      await p().enqueueMany(items, { tenant: TENANT });
    },
    async startWorker(setting: WorkerSetting, cb: OnJob) {
      onJob = cb;
      worker = d().createWorker({ concurrency: setting.concurrency, prefetch: setting.prefetch });
      await worker.start();
    },
    async stopWorker() {
      await worker?.stop();
      worker = undefined;
      onJob = () => undefined;
    },
    async remaining() {
      const sys = await d().internals.systemDb();
      const r = await sys
        .selectFrom('jobs')
        .select((eb) => eb.fn.countAll<number | string>().as('n'))
        // With removal, the only succeeded rows left are Docket's own maintenance jobs.
        .where('status', '<>', 'succeeded')
        .executeTakeFirstOrThrow();
      return Number(r.n);
    },
    async reset() {
      const sys = await d().internals.systemDb();
      await sys.deleteFrom('jobs').execute();
      // Deleting rows behind Docket's back leaves their Redis messages: clear them too.
      if (o.redis) await deleteRedisPrefix(redisPrefix);
      if (db) await db.exec('vacuum analyze');
      else await sql`vacuum`.execute(sys);
    },
    async close() {
      await producer?.close();
      await docket?.close();
      producer = docket = worker = undefined;
    },
    async dispose() {
      if (o.redis) await deleteRedisPrefix(redisPrefix);
      await db?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
