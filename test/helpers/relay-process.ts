// A real outbox relay process for crash and concurrency tests. Configured by environment:
//   DOCKET_STORE / DOCKET_SQLITE_PATH / DOCKET_DATABASE_URL  the store
//   DOCKET_WEBHOOK_ALLOW  must admit the test's webhook receiver (127.0.0.1)
//   TEST_WEBHOOK_URL  where every event (topic `*`) is delivered by a webhook sink
//   TEST_RELAY_ID     the relay's lease owner id
//   TEST_LEASE_MS     lease length (default 30000)
//   TEST_BATCH        events claimed per round (default 100)
//   TEST_CONCURRENCY  batches in flight at once (default 2)
// Prints "ready" once the relay is claiming; SIGTERM stops it gracefully.
import { createDocketFromEnv } from '../../src/index.js';

const docket = createDocketFromEnv({
  reapIntervalMs: 0,
  pruneIntervalMs: 0,
  outbox: {
    routes: [{ topic: '*', sink: 'receiver' }],
    sinks: {
      receiver: {
        kind: 'webhook',
        url: process.env.TEST_WEBHOOK_URL ?? '',
        secret: 'whsec_relays',
        timeoutMs: 10_000,
      },
    },
  },
});
const relay = await docket.outbox.createRelay({
  relayId: process.env.TEST_RELAY_ID,
  leaseMs: Number(process.env.TEST_LEASE_MS ?? 30_000),
  batchSize: Number(process.env.TEST_BATCH ?? 100),
  concurrency: Number(process.env.TEST_CONCURRENCY ?? 2),
  pollIntervalMs: 50,
  retry: { baseMs: 10, capMs: 50 },
});
await relay.start();
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void (async () => {
    await relay.stop();
    await docket.close();
    process.exit(0);
  })();
});
