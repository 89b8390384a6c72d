// A real scheduler instance for multi-process tests. Configured by environment:
//   DOCKET_STORE / DOCKET_SQLITE_PATH / DOCKET_DATABASE_URL  the store
//   TEST_OUT       file to append "<task> <scheduledFor> <pid>\n" to for every run
//   TEST_TASKS     number of every-second tasks `every-second-<i>` (default 3)
//   TEST_TICK_MS   scheduler pass interval (default 200)
// Prints "ready" once the scheduler runs; SIGTERM stops it gracefully.
import { appendFileSync } from 'node:fs';
import { createDocketFromEnv, type TaskDefinition } from '../../src/index.js';
import { createLogger } from '../../src/core/logger.js';

const out = process.env.TEST_OUT ?? '';
const tasks: TaskDefinition[] = Array.from(
  { length: Number(process.env.TEST_TASKS ?? 3) },
  (_, i) => ({
    name: `every-second-${i}`,
    cron: '* * * * * *',
    handler: (ctx) => appendFileSync(out, `${ctx.task} ${ctx.scheduledFor} ${process.pid}\n`),
  }),
);
const docket = createDocketFromEnv({
  logger: createLogger(process.env.DOCKET_LOG_LEVEL ?? 'warn'),
  reapIntervalMs: 0,
  pruneIntervalMs: 0,
  scheduler: { tasks, tickMs: Number(process.env.TEST_TICK_MS ?? 200), leaseMs: 5000 },
});
await docket.start();
// The scheduler's timers are unref'd (they never keep a process alive by themselves).
const keepAlive = setInterval(() => undefined, 1 << 30);
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void (async () => {
    await docket.close();
    clearInterval(keepAlive);
    process.exit(0);
  })();
});
