// pg-boss 12 at its documented best for throughput: batch fetches (batchSize 50) with
// burstWhenBatchFull, 10 local fetch loops, LISTEN/NOTIFY on (useListenNotify on the instance
// and notify on the queue).
import { PgBoss } from 'pg-boss';
import { createDatabase } from '../db.js';
import type { BenchSystem, OnJob, WorkerSetting } from '../system.js';

const QUEUE = 'noop';
/** Jobs fetched per round trip by each local fetch loop. */
export const PGBOSS_BATCH_SIZE = 50;

/** Creates a pg-boss system on a fresh PostgreSQL database. */
export async function createPgBossSystem(): Promise<BenchSystem> {
  const db = await createDatabase('pgboss');
  let boss: PgBoss | undefined;
  let working = false;
  const b = () => {
    if (!boss) throw new Error('pg-boss system is not open');
    return boss;
  };

  return {
    name: 'pg-boss',
    async open() {
      boss = new PgBoss({ connectionString: db.url, useListenNotify: true, schedule: false });
      boss.on('error', (err) => process.stderr.write(`pg-boss error: ${String(err)}\n`));
      await boss.start();
      if (!(await boss.getQueue(QUEUE))) await boss.createQueue(QUEUE, { notify: true });
    },
    async enqueue(i) {
      await b().send(QUEUE, { i });
    },
    async enqueueBatch(from, count) {
      await b().insert(
        QUEUE,
        Array.from({ length: count }, (_, k) => ({ data: { i: from + k } })),
      );
    },
    async startWorker(setting: WorkerSetting, onJob: OnJob) {
      working = true;
      await b().work<{ i: number }>(
        QUEUE,
        {
          batchSize: PGBOSS_BATCH_SIZE,
          localConcurrency: setting.concurrency,
          burstWhenBatchFull: true,
          pollingIntervalSeconds: 0.5,
        },
        async (jobs) => {
          for (const job of jobs) onJob(job.data.i);
        },
      );
    },
    async stopWorker() {
      if (working) await b().offWork(QUEUE, { wait: true });
      working = false;
    },
    async remaining() {
      const r = await db.exec(
        `select count(*)::int as n from pgboss.job where name = '${QUEUE}' and state <> 'completed'`,
      );
      return (r.rows[0] as { n: number }).n;
    },
    async reset() {
      await b().deleteAllJobs(QUEUE);
      await db.exec('vacuum analyze');
    },
    async close() {
      await boss?.stop({ graceful: true, close: true });
      boss = undefined;
    },
    async dispose() {
      await db.drop();
    },
  };
}
