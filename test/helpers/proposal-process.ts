// One apply of a proposal from its own process, for the cross-process race test. Configured by
// environment:
//   DOCKET_STORE / DOCKET_SQLITE_PATH / DOCKET_DATABASE_URL  the store
//   TEST_PROPOSAL_ID  the proposal to apply (kind `proc.apply`, tenant `acme`)
//   TEST_KEY          this process's idempotency key
//   TEST_GO           a file whose appearance starts the apply (all processes start together)
// Prints "ready" once Docket is open, then `result <json>` ({ ok } or { code }) and exits.
import { existsSync } from 'node:fs';
import type { Kysely } from 'kysely';
import { createDocketFromEnv, isDocketError } from '../../src/index.js';
import { createLogger } from '../../src/core/logger.js';

interface AppDB {
  proc_applied: { id: string; tenant_id: string };
}

const key = process.env.TEST_KEY ?? '';
const docket = createDocketFromEnv({
  logger: createLogger(process.env.DOCKET_LOG_LEVEL ?? 'warn'),
  reapIntervalMs: 0,
  pruneIntervalMs: 0,
  builtins: false,
});
docket.proposals.register<AppDB>('proc.apply', {
  currentVersion: () => 1,
  async apply(tx, p) {
    await tx.insertInto('proc_applied').values({ id: key, tenant_id: p.tenantId }).execute();
    return { appliedBy: key };
  },
});
// Open the store (and its pool) before the start signal, so the race is between applies.
await ((await docket.internals.systemDb()) as unknown as Kysely<AppDB>)
  .selectFrom('proc_applied')
  .select('id')
  .execute();
process.stdout.write('ready\n');
while (!existsSync(process.env.TEST_GO ?? '')) await new Promise((r) => setTimeout(r, 2));
let result: { ok: true } | { code: string };
try {
  await docket.proposals.apply(
    process.env.TEST_PROPOSAL_ID ?? '',
    { idempotencyKey: key },
    { tenant: 'acme', actor: `process:${process.pid}` },
  );
  result = { ok: true };
} catch (err) {
  result = { code: isDocketError(err) ? err.code : String(err) };
}
process.stdout.write(`result ${JSON.stringify(result)}\n`);
await docket.close();
