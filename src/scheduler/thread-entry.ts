// Entry of a task thread (isolation: 'thread'): imports the task's module, calls its export with
// the run's context and an AbortSignal of this thread (aborted when the scheduler says so), and
// reports the outcome once. The scheduler terminates the thread after the report, or at the end
// of the grace period if none came, so nothing here needs to clean up.
import { parentPort, workerData } from 'node:worker_threads';
import type { TaskThreadData, TaskThreadMessage, TaskThreadResult } from './thread.js';

const port = parentPort;
const data = workerData as TaskThreadData;
const controller = new AbortController();

function report(result: TaskThreadResult): void {
  port?.postMessage(result);
}

async function main(): Promise<void> {
  port?.on('message', (m: TaskThreadMessage) => {
    if (m.kind === 'abort') controller.abort(new Error(m.reason));
  });
  try {
    const mod = (await import(data.module)) as Record<string, unknown>;
    const handler = mod[data.exportName];
    if (typeof handler !== 'function') {
      throw new Error(`task module ${data.module} has no function export "${data.exportName}"`);
    }
    await (handler as (ctx: unknown) => unknown)({ ...data.context, signal: controller.signal });
    report({ kind: 'result', ok: true });
  } catch (err) {
    report({
      kind: 'result',
      ok: false,
      error: {
        name: err instanceof Error ? err.name : 'Error',
        message: err instanceof Error ? err.message : String(err),
        stack: err instanceof Error ? (err.stack ?? null) : null,
      },
    });
  }
}

void main();
