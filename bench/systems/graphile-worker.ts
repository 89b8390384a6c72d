// graphile-worker at its documented best for throughput: a local queue (localQueue.size 500)
// and batched completions (completeJobBatchDelay 0), LISTEN/NOTIFY wake-ups (built in).
import {
  Logger,
  makeWorkerUtils,
  run,
  runMigrations,
  type Runner,
  type WorkerUtils,
} from 'graphile-worker';
import { createDatabase } from '../db.js';
import type { BenchSystem, OnJob, WorkerSetting } from '../system.js';

const silent = new Logger(() => () => undefined);

/** Creates a graphile-worker system on a fresh PostgreSQL database. */
export async function createGraphileSystem(): Promise<BenchSystem> {
  const db = await createDatabase('graphile');
  let utils: WorkerUtils | undefined;
  let runner: Runner | undefined;
  const u = () => {
    if (!utils) throw new Error('graphile-worker system is not open');
    return utils;
  };

  return {
    name: 'graphile-worker',
    async open() {
      await runMigrations({ connectionString: db.url, logger: silent });
      utils = await makeWorkerUtils({ connectionString: db.url, logger: silent });
    },
    async enqueue(i) {
      await u().addJob('noop', { i });
    },
    async enqueueBatch(from, count) {
      await u().addJobs(
        Array.from({ length: count }, (_, k) => ({ identifier: 'noop', payload: { i: from + k } })),
      );
    },
    async startWorker(setting: WorkerSetting, onJob: OnJob) {
      runner = await run({
        connectionString: db.url,
        concurrency: setting.concurrency,
        noHandleSignals: true,
        logger: silent,
        taskList: {
          noop: async (payload) => onJob((payload as { i: number }).i),
        },
        preset: {
          worker: {
            localQueue: { size: 500 },
            completeJobBatchDelay: 0,
            failJobBatchDelay: 0,
          },
        },
      });
    },
    async stopWorker() {
      await runner?.stop();
      runner = undefined;
    },
    async remaining() {
      // Completed jobs are deleted by graphile-worker.
      const r = await db.exec('select count(*)::int as n from graphile_worker._private_jobs');
      return (r.rows[0] as { n: number }).n;
    },
    async reset() {
      await db.exec('delete from graphile_worker._private_jobs');
      await db.exec('vacuum analyze');
    },
    async close() {
      await utils?.release();
      utils = undefined;
    },
    async dispose() {
      await db.drop();
    },
  };
}
