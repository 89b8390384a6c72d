// BullMQ at its documented best for throughput: one Worker with `concurrency`, completed jobs
// removed (`removeOnComplete: { count: 0 }`; `true` breaks its scripts, see MACHINE-NOTES), bulk
// adds with `addBulk`. It keeps its jobs in Redis only (no durable store behind it).
import { randomBytes } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { BenchSystem, OnJob, WorkerSetting } from '../system.js';

/** Redis for the benchmark (the machine's local server). */
export const BENCH_REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Deletes every key under `prefix` (a benchmark's own keys). */
export async function deleteRedisPrefix(prefix: string): Promise<void> {
  const r = new Redis(BENCH_REDIS_URL);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await r.del(...keys);
    } while (cursor !== '0');
  } finally {
    await r.quit();
  }
}

/** Creates a BullMQ system under its own key prefix on the local Redis. */
export async function createBullmqSystem(): Promise<BenchSystem> {
  const prefix = `bench-bullmq-${randomBytes(4).toString('hex')}`;
  const connection = { url: BENCH_REDIS_URL, maxRetriesPerRequest: null };
  let queue: Queue | undefined;
  let worker: Worker | undefined;
  const q = () => {
    if (!queue) throw new Error('bullmq system is not open');
    return queue;
  };
  return {
    name: 'BullMQ',
    async open() {
      queue = new Queue('noop', { connection, prefix });
      await queue.waitUntilReady();
    },
    async enqueue(i) {
      await q().add('noop', { i }, { removeOnComplete: { count: 0 } });
    },
    async enqueueBatch(from, count) {
      await q().addBulk(
        Array.from({ length: count }, (_, k) => ({
          name: 'noop',
          data: { i: from + k },
          opts: { removeOnComplete: { count: 0 } },
        })),
      );
    },
    async startWorker(setting: WorkerSetting, onJob: OnJob) {
      worker = new Worker('noop', async (job) => onJob((job.data as { i: number }).i), {
        connection,
        prefix,
        concurrency: setting.concurrency,
        removeOnComplete: { count: 0 },
      });
      await worker.waitUntilReady();
    },
    async stopWorker() {
      await worker?.close();
      worker = undefined;
    },
    async remaining() {
      const c = await q().getJobCounts('wait', 'active', 'delayed', 'prioritized', 'paused');
      return Object.values(c).reduce((n, x) => n + x, 0);
    },
    async reset() {
      await q().obliterate({ force: true });
    },
    async close() {
      await queue?.close();
      queue = undefined;
    },
    async dispose() {
      await deleteRedisPrefix(prefix);
    },
  };
}
