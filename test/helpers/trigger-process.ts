// A real Docket process for the cross-process trigger test. Configured by environment:
//   DOCKET_STORE / DOCKET_SQLITE_PATH / DOCKET_DATABASE_URL  the store
//   TEST_OUT    file to append "scheduled <key> <triggerId> <deduplicated> <pid>" and
//               "fired <triggerId> <pid>" lines to
//   TEST_GO     file whose appearance starts the race (so every process schedules at once)
//   TEST_KEYS   number of dedupe keys `key-<i>` each process schedules (default 20)
// Prints "ready" once started; after the race its worker fires due triggers until SIGTERM.
import { appendFileSync, existsSync } from 'node:fs';
import { createDocketFromEnv } from '../../src/index.js';

const out = process.env.TEST_OUT ?? '';
const go = process.env.TEST_GO ?? '';
const keys = Number(process.env.TEST_KEYS ?? 20);
const docket = createDocketFromEnv({
  reapIntervalMs: 0,
  pruneIntervalMs: 0,
  triggers: {
    handlers: {
      'cross.reminder': ({ trigger }) =>
        void appendFileSync(out, `fired ${trigger.id} ${process.pid}\n`),
    },
  },
});
await docket.start();
const worker = docket.createWorker({ concurrency: 4, pollIntervalMs: 50 });
process.stdout.write('ready\n');
while (!existsSync(go)) await new Promise((r) => setTimeout(r, 5));
const results = await Promise.all(
  Array.from({ length: keys }, (_, i) =>
    docket.triggers.schedule(
      { type: 'cross.reminder', target: `key-${i}`, fireAt: Date.now(), dedupeKey: `key-${i}` },
      { tenant: 'acme' },
    ),
  ),
);
appendFileSync(
  out,
  results
    .map((r, i) => `scheduled key-${i} ${r.trigger.id} ${r.deduplicated} ${process.pid}\n`)
    .join(''),
);
await worker.start();
process.on('SIGTERM', () => {
  void (async () => {
    await worker.stop();
    await docket.close();
    process.exit(0);
  })();
});
