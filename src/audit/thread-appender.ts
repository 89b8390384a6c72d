import { Worker } from 'node:worker_threads';
import type { DocketConfig } from '../config/index.js';
import { DocketError, type ErrorCode } from '../core/errors.js';
import type { PreparedAuditEvent } from './store.js';

/** A message to the audit writer thread. */
export type AppendRequest =
  { kind: 'append'; id: number; events: PreparedAuditEvent[]; now: number } | { kind: 'close' };

/** An error as it crosses the thread boundary (a DocketError keeps its code). */
export interface ThreadErrorShape {
  /** DocketError code, if it was one. */
  code?: ErrorCode;
  /** The error's message. */
  message: string;
  /** DocketError details. */
  details?: Record<string, unknown>;
}

/** The thread's answer to one append. */
export type AppendReply =
  { id: number; ok: true } | { id: number; ok: false; error: ThreadErrorShape };

const CLOSE_DEADLINE_MS = 5000;

// Under tsx (tests, `npm start`, the benchmarks) the sources are .ts and the thread needs the
// same loader. A worker does not inherit the parent's module hooks, and with `--import tsx` in
// its execArgv Node 20 still refused the .ts entry (ERR_UNKNOWN_FILE_EXTENSION), so a one-line
// bootstrap registers tsx, then imports the entry. The built package runs the .js directly.
function spawnThread(workerData: unknown): Worker {
  if (!import.meta.url.endsWith('.ts')) {
    return new Worker(new URL('./writer-thread.js', import.meta.url), { workerData });
  }
  const entry = new URL('./writer-thread.ts', import.meta.url).href;
  const boot = `import('tsx/esm/api').then((t) => t.register()).then(() => import(${JSON.stringify(entry)}));`;
  return new Worker(boot, { eval: true, workerData });
}

/**
 * Appends audit batches on a worker thread that has its own store connection (PostgreSQL: a
 * system-role pool; SQLite: a second connection to the same file, waiting on the busy timeout
 * in its own thread). The chain lock is the database's (the audit_chain head row), so the
 * thread's appends serialize with transactional `record(tx, …)` appends and other processes
 * as before. The thread starts on the first append and is started again after a crash; a
 * crash fails the appends in flight with STORE_UNAVAILABLE, which the AuditWriter retries.
 */
export class AuditThreadAppender {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: () => void; reject: (err: unknown) => void }
  >();

  constructor(private readonly config: DocketConfig) {}

  /** Whether the thread is running (it starts on the first append, ends at close). */
  get running(): boolean {
    return this.worker !== undefined;
  }

  /** Appends `events` (chain + insert) in one transaction on the thread. */
  append(events: PreparedAuditEvent[], now: number): Promise<void> {
    const worker = (this.worker ??= this.spawn());
    const id = this.nextId++;
    // The thread keeps the process alive only while an append is in flight.
    if (this.pending.size === 0) worker.ref();
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ kind: 'append', id, events, now } satisfies AppendRequest);
    });
  }

  private spawn(): Worker {
    const worker = spawnThread({ config: this.config });
    worker.unref();
    worker.on('message', (reply: AppendReply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) worker.unref();
      if (reply.ok) p.resolve();
      else p.reject(rebuildError(reply.error));
    });
    worker.on('error', (err) => this.failAll(worker, err));
    worker.on('exit', (code) => this.failAll(worker, new Error(`exited with code ${code}`)));
    return worker;
  }

  private failAll(worker: Worker, cause: unknown): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    for (const p of this.pending.values()) {
      p.reject(
        new DocketError('STORE_UNAVAILABLE', 'the audit writer thread stopped', {}, { cause }),
      );
    }
    this.pending.clear();
  }

  /** Closes the thread's connection and ends the thread (terminated after 5 s). */
  async close(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    this.worker = undefined;
    worker.ref();
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage({ kind: 'close' } satisfies AppendRequest);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>(
      (r) => (timer = setTimeout(() => r('late'), CLOSE_DEADLINE_MS)),
    );
    if ((await Promise.race([exited, late])) === 'late') await worker.terminate();
    clearTimeout(timer);
    for (const p of this.pending.values()) {
      p.reject(new DocketError('STORE_UNAVAILABLE', 'the audit writer thread was closed'));
    }
    this.pending.clear();
  }
}

function rebuildError(e: ThreadErrorShape): Error {
  return e.code ? new DocketError(e.code, e.message, e.details ?? {}) : new Error(e.message);
}
