// isolation: 'thread' — each run of the task imports its module on a fresh worker thread. The
// thread's only link to the scheduler is messages: the context goes in as workerData (a
// function or a live AbortSignal cannot cross), an abort is a message the thread turns into its
// own AbortSignal, and the outcome comes back as one message. Because a thread can be
// terminated, a handler that ignores its signal — even a synchronous `while (true) {}` — stops at
// the end of the grace period instead of holding the process (inline runs cannot be stopped).
import { Worker } from 'node:worker_threads';
import type { StartedWork, TaskWork } from './runner.js';
import type { TaskContext } from './types.js';

/** What a task thread is started with. */
export interface TaskThreadData {
  /** File URL of the task module. */
  module: string;
  /** The export to call. */
  exportName: string;
  /** The run's context without its signal. */
  context: Omit<TaskContext, 'signal'>;
}

/** A message to a task thread. */
export type TaskThreadMessage = { kind: 'abort'; reason: string };

/** The one message a task thread sends: the handler's outcome. */
export type TaskThreadResult =
  | { kind: 'result'; ok: true }
  | { kind: 'result'; ok: false; error: { name: string; message: string; stack: string | null } };

const TS_MODULE = /\.[cm]?tsx?$/;

// Under tsx (tests, `npm start`) Docket's own sources are .ts, and a user's task module may be
// .ts too. A worker does not inherit the parent's module hooks, and Node 20 refuses a .ts entry
// even with `--import tsx` in execArgv (see src/audit/thread-appender.ts), so a one-line
// bootstrap registers tsx first. Built code with a .js module runs the entry directly.
function spawnTaskThread(data: TaskThreadData): Worker {
  const ownTs = import.meta.url.endsWith('.ts');
  const entry = new URL(ownTs ? './thread-entry.ts' : './thread-entry.js', import.meta.url);
  if (!ownTs && !TS_MODULE.test(new URL(data.module).pathname)) {
    return new Worker(entry, { workerData: data });
  }
  const boot = `import('tsx/esm/api').then((t) => t.register()).then(() => import(${JSON.stringify(entry.href)}));`;
  return new Worker(boot, { eval: true, workerData: data });
}

function threadError(e: { name: string; message: string; stack: string | null }): Error {
  const err = new Error(e.message);
  err.name = e.name;
  err.stack = e.stack ?? `${e.name}: ${e.message}`;
  return err;
}

/** The work of a thread task: `module`'s `exportName`, run on a new thread per run. */
export function threadWork(module: string, exportName: string): TaskWork {
  return (ctx: TaskContext): StartedWork => {
    const { signal, ...context } = ctx;
    const worker = spawnTaskThread({ module, exportName, context });
    const onAbort = () => {
      const reason: unknown = signal.reason;
      worker.postMessage({
        kind: 'abort',
        reason: reason instanceof Error ? reason.message : String(reason),
      } satisfies TaskThreadMessage);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const outcome = new Promise<void>((resolve, reject) => {
      worker.on('message', (m: TaskThreadResult) => {
        if (m.kind !== 'result') return;
        if (m.ok) resolve();
        else reject(threadError(m.error));
      });
      worker.once('error', reject);
      worker.once('exit', (code) =>
        reject(new Error(`the task thread exited (code ${code}) before reporting an outcome`)),
      );
    }).finally(() => {
      signal.removeEventListener('abort', onAbort);
      // Whatever the handler left behind (timers, sockets) ends with its thread.
      void worker.terminate();
    });
    return {
      outcome,
      terminate: async () => {
        await worker.terminate();
      },
    };
  };
}
