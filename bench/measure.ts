// The three workloads, measured identically for every system.
import { now, rate, sleep } from './stats.js';
import type { BenchSystem, WorkerSetting } from './system.js';

/** Enqueue rates (jobs/s). */
export interface EnqueueResult {
  single: number;
  batch: number;
}

/** (a) Sequential single enqueues, then batch enqueues through the batch API. */
export async function measureEnqueue(
  sys: BenchSystem,
  sizes: { single: number; batchTotal: number; batchSize: number },
): Promise<EnqueueResult> {
  await sys.open();
  try {
    await sys.reset();
    // A few untimed calls so connections and prepared statements exist for every system.
    for (let i = 0; i < 20; i++) await sys.enqueue(-1);
    await sys.reset();
    let t = now();
    for (let i = 0; i < sizes.single; i++) await sys.enqueue(i);
    const single = rate(sizes.single, now() - t);
    await sys.reset();
    t = now();
    for (let i = 0; i < sizes.batchTotal; i += sizes.batchSize)
      await sys.enqueueBatch(i, Math.min(sizes.batchSize, sizes.batchTotal - i));
    const batch = rate(sizes.batchTotal, now() - t);
    await sys.reset();
    return { single, batch };
  } finally {
    await sys.close();
  }
}

/** One throughput measurement. */
export interface ThroughputResult {
  /** Jobs/s from the first handler start until every job is recorded complete in the store. */
  rate: number;
  /** Jobs/s from the worker's start() call (includes its startup) to the same end point. */
  rateWithStartup: number;
  /** Handler invocations beyond one per job (must be 0). */
  duplicates: number;
}

/**
 * (b) Drains `n` pre-enqueued no-op jobs with one worker: the clock runs until the last
 * completion is visible in the database, not just until the last handler ran.
 */
export async function measureThroughput(
  sys: BenchSystem,
  setting: WorkerSetting,
  n: number,
): Promise<ThroughputResult> {
  await sys.open();
  try {
    await sys.reset();
    for (let i = 0; i < n; i += 1000) await sys.enqueueBatch(i, Math.min(1000, n - i));
    const seen = new Uint8Array(n);
    let count = 0;
    let duplicates = 0;
    let first = 0;
    let resolveAll: () => void = () => undefined;
    const all = new Promise<void>((r) => (resolveAll = r));
    const t0 = now();
    await sys.startWorker(setting, (i) => {
      if (count === 0) first = now();
      if (seen[i]) duplicates++;
      else {
        seen[i] = 1;
        if (++count === n) resolveAll();
      }
    });
    await withTimeout(all, 300_000, () => `${sys.name}: ${count}/${n} jobs ran`);
    while ((await sys.remaining()) > 0) await sleep(2);
    const end = now();
    await sys.stopWorker();
    await sys.reset();
    return { rate: rate(n, end - first), rateWithStartup: rate(n, end - t0), duplicates };
  } finally {
    await sys.close();
  }
}

/**
 * (c) Enqueue-to-start latency on an idle, already started worker: `n` jobs enqueued one at a
 * time, `gapMs` apart, each measured from just before the enqueue call to its handler's start.
 * Returns the samples in ms.
 */
export async function measureLatency(
  sys: BenchSystem,
  n: number,
  gapMs: number,
): Promise<number[]> {
  await sys.open();
  try {
    await sys.reset();
    const startedAt = new Float64Array(n);
    const latency = new Float64Array(n).fill(Number.NaN);
    let count = 0;
    let resolveAll: () => void = () => undefined;
    const all = new Promise<void>((r) => (resolveAll = r));
    await sys.startWorker({ concurrency: 10 }, (i) => {
      if (i < 0 || !Number.isNaN(latency[i])) return;
      latency[i] = now() - (startedAt[i] as number);
      if (++count === n) resolveAll();
    });
    // Warm-up job (not measured), then let the worker go idle.
    await sys.enqueue(-1);
    await sleep(1000);
    for (let i = 0; i < n; i++) {
      startedAt[i] = now();
      await sys.enqueue(i);
      await sleep(gapMs);
    }
    await withTimeout(all, 60_000, () => `${sys.name}: ${count}/${n} latency jobs ran`);
    await sys.stopWorker();
    await sys.reset();
    return [...latency];
  } finally {
    await sys.close();
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out: ${what()}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
