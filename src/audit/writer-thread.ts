// Entry of the audit writer thread (node:worker_threads): it owns its own store connection and
// appends the batches the main thread's AuditWriter posts (chain hashing, serialization and
// the insert), so none of that runs on the thread that records events. Replies carry only
// success or the error's code and message; buffering, retries, alerts and drop counting stay
// with the AuditWriter on the main thread.
import { parentPort, workerData } from 'node:worker_threads';
import type { DocketConfig } from '../config/index.js';
import { DocketError, isDocketError } from '../core/errors.js';
import { silentLogger } from '../core/logger.js';
import { openStore, type Store } from '../store/index.js';
import { auditBatchAppenderFor, type AuditBatchAppender } from './backends/index.js';
import type { AppendReply, AppendRequest, ThreadErrorShape } from './thread-appender.js';

const port = parentPort;
if (!port) throw new Error('writer-thread.ts runs only as a worker thread');
const config = (workerData as { config: DocketConfig }).config;
let store: Store | undefined;
let appendBatch: AuditBatchAppender | undefined;

function errorShape(err: unknown): ThreadErrorShape {
  if (isDocketError(err)) return { code: err.code, message: err.message, details: err.details };
  return { message: err instanceof Error ? err.message : String(err) };
}

async function append(req: Extract<AppendRequest, { kind: 'append' }>): Promise<AppendReply> {
  try {
    if (!appendBatch) {
      store = await openStore(config, silentLogger()).catch((err: unknown) => {
        // Not the events' fault: the AuditWriter must retry them, not isolate and drop them.
        throw new DocketError(
          'STORE_UNAVAILABLE',
          'the audit writer thread cannot open the store',
          {
            reason: err instanceof Error ? err.message : String(err),
          },
        );
      });
      appendBatch = auditBatchAppenderFor(store);
    }
    await appendBatch(req.events, req.now);
    return { id: req.id, ok: true };
  } catch (err) {
    return { id: req.id, ok: false, error: errorShape(err) };
  }
}

// One request at a time, in arrival order: the chain is appended in the order events were
// recorded, and the AuditWriter never has more than one flush in flight anyway.
let queue: Promise<void> = Promise.resolve();
port.on('message', (req: AppendRequest) => {
  queue = queue.then(async () => {
    if (req.kind === 'close') {
      await store?.close().catch(() => undefined);
      store = undefined;
      appendBatch = undefined;
      port.close();
      return;
    }
    port.postMessage(await append(req));
  });
});
