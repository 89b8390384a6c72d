// A real worker process for crash and concurrency tests. Configured by environment:
//   DOCKET_STORE / DOCKET_SQLITE_PATH / DOCKET_DATABASE_URL  the store
//   TEST_OUT          file to append "<jobId>\n" to for every `record` job run
//   TEST_STARTED      file to append "<jobId>\n" to when a `hang` job starts
//   TEST_FAILPOINT    failpoint at which the process SIGKILLs itself (test fault injection:
//                     a dead-letter step, or effect.providerAnswered / effect.recorded)
//   DOCKET_SMTP_URL / DOCKET_EMAIL_*  email settings of the built-in `email` job type
//   TEST_CONCURRENCY  worker concurrency (default 10)
//   TEST_LEASE_MS     lease length (default 30000)
//   TEST_ENQUEUE_KEY  instead of working: enqueue 20 jobs with this idempotency key and exit
// Prints "ready" once the worker is claiming.
import { appendFileSync } from 'node:fs';
import { createDocketFromEnv, PermanentJobError } from '../../src/index.js';

const out = process.env.TEST_OUT;
const started = process.env.TEST_STARTED;
const docket = createDocketFromEnv({
  reapIntervalMs: 0,
  failpoint: (name) => {
    if (name === process.env.TEST_FAILPOINT) process.kill(process.pid, 'SIGKILL');
  },
  handlers: {
    record: async ({ job }) => {
      if (out) appendFileSync(out, `${job.id}\n`);
    },
    hang: async ({ job }) => {
      if (started) appendFileSync(started, `${job.id}\n`);
      await new Promise(() => undefined);
    },
    boom: async () => {
      throw new PermanentJobError('boom');
    },
  },
});
await docket.start();
if (process.env.TEST_ENQUEUE_KEY) {
  // Enqueue mode: race other processes on one idempotency key, print the ids, exit.
  const results = await Promise.all(
    Array.from({ length: 20 }, () =>
      docket.enqueue(
        'record',
        { same: true },
        { tenant: 'race', idempotencyKey: process.env.TEST_ENQUEUE_KEY },
      ),
    ),
  );
  process.stdout.write(`ready ${JSON.stringify(results.map((r) => [r.job.id, r.deduplicated]))}\n`);
  await docket.close();
  process.exit(0);
}
const worker = docket.createWorker({
  concurrency: Number(process.env.TEST_CONCURRENCY ?? 10),
  leaseMs: Number(process.env.TEST_LEASE_MS ?? 30_000),
  pollIntervalMs: 50,
});
await worker.start();
process.stdout.write('ready\n');
const shutdown = async () => {
  await worker.stop({ deadlineMs: 5000 });
  await docket.close();
  process.exit(0);
};
process.on('SIGTERM', () => void shutdown());
