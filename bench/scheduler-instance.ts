// One scheduler instance of the N-4 multi-instance run (bench/scheduler.ts spawns three), on the
// compiled package. Environment:
//   BENCH_STORE_URL   PostgreSQL URL of the run's database (migrated by the parent)
//   BENCH_TASKS       number of tasks `bench-task-<i>`
//   BENCH_PERIOD_S    each task ticks every this many seconds, task i at second i mod period
//   BENCH_OUT         file to append "<task> <scheduledFor> <pid>\n" to for every handler call
//   BENCH_TICK_MS     scheduler pass interval (default 250)
//   BENCH_LOCKS       lock backend: database (default), redis or etcd (DOCKET_REDIS_URL / DOCKET_ETCD_URL)
// Prints "ready" once its scheduler runs; SIGTERM stops it gracefully.
import { appendFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDocket } from './systems/docket.js';

const { createDocket } = await loadDocket();
const out = process.env.BENCH_OUT ?? '';
const period = Number(process.env.BENCH_PERIOD_S ?? 1);
const cron = (i: number) => (period === 1 ? '* * * * * *' : `${i % period}-59/${period} * * * * *`);
const backend = (process.env.BENCH_LOCKS ?? 'database') as 'database' | 'redis' | 'etcd';
const docket = createDocket({
  store: { dialect: 'postgres', url: process.env.BENCH_STORE_URL ?? '', poolSize: 10 },
  dataDir: mkdtempSync(join(tmpdir(), 'docket-bench-sched-')),
  migrate: false,
  builtins: false,
  reapIntervalMs: 0,
  pruneIntervalMs: 0,
  scheduler: {
    tickMs: Number(process.env.BENCH_TICK_MS ?? 250),
    locks:
      backend === 'database'
        ? undefined
        : {
            backend,
            url: backend === 'redis' ? process.env.DOCKET_REDIS_URL : process.env.DOCKET_ETCD_URL,
            prefix: process.env.DOCKET_SCHEDULER_LOCKS_PREFIX,
          },
    tasks: Array.from({ length: Number(process.env.BENCH_TASKS ?? 1000) }, (_, i) => ({
      name: `bench-task-${i}`,
      cron: cron(i),
      handler: (ctx: { task: string; scheduledFor: number }) =>
        appendFileSync(out, `${ctx.task} ${ctx.scheduledFor} ${process.pid}\n`),
    })),
  },
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
