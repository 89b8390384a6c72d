// The contract every benchmarked queue implements; run.ts measures all of them the same way.

/** How a worker is configured for one measurement. */
export interface WorkerSetting {
  /** Handlers running at once. */
  concurrency: number;
  /** Docket only: jobs claimed ahead of free slots (default = concurrency). */
  prefetch?: number;
}

/** Called by the no-op handler as it starts, with the job's payload index. */
export type OnJob = (i: number) => void;

/** A queue under test, bound to its own fresh database (or SQLite file). */
export interface BenchSystem {
  /** Display name. */
  readonly name: string;
  /** Connects (installing the schema on first use). */
  open(): Promise<void>;
  /** Enqueues one no-op job with payload `{ i }`. */
  enqueue(i: number): Promise<void>;
  /** Enqueues `count` no-op jobs (payloads `from`…) with the system's batch API, one call. */
  enqueueBatch(from: number, count: number): Promise<void>;
  /** Starts a worker running the no-op handler. */
  startWorker(setting: WorkerSetting, onJob: OnJob): Promise<void>;
  /** Stops the worker (gracefully: pending completions are written). */
  stopWorker(): Promise<void>;
  /** Jobs not yet recorded as completed in the database. */
  remaining(): Promise<number>;
  /** Deletes every job and vacuums, so each measurement starts from an empty queue. */
  reset(): Promise<void>;
  /** Disconnects. */
  close(): Promise<void>;
  /** Removes the database / files. */
  dispose(): Promise<void>;
}

/** "concurrency 10, prefetch 100" style label of a worker setting. */
export function settingLabel(s: WorkerSetting): string {
  return `concurrency ${s.concurrency}${s.prefetch !== undefined ? `, prefetch ${s.prefetch}` : ''}`;
}

/** Label of a Docket worker setting: no prefetch given means the adaptive default. */
export function docketSettingLabel(s: WorkerSetting): string {
  return s.prefetch === undefined
    ? `concurrency ${s.concurrency}, adaptive prefetch (default)`
    : settingLabel(s);
}
