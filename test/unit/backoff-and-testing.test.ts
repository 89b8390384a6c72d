import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocket, type Docket } from '../../src/index.js';
import { backoffDelay } from '../../src/jobs/index.js';
import { assertEnqueued, runJobInline } from '../../src/testing.js';
import { createTestStore, type TestStore } from '../helpers/backends.js';

describe('backoffDelay', () => {
  it('stays within [d/2, d] for d = min(cap, base·2^(attempt−1)), and never exceeds the cap', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60_000 }),
        fc.integer({ min: 0, max: 86_400_000 }),
        fc.integer({ min: 1, max: 60 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (baseMs, extra, attempt, r) => {
          const capMs = baseMs + extra;
          const d = Math.min(capMs, baseMs * 2 ** (attempt - 1));
          const delay = backoffDelay({ baseMs, capMs, maxAttempts: 10 }, attempt, () => r);
          return delay >= Math.floor(d / 2) && delay <= Math.ceil(d) && delay <= capMs;
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('grows with the attempt until the cap (for a fixed jitter draw)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 30 }),
        (baseMs, attempt) => {
          const policy = { baseMs, capMs: baseMs * 1000, maxAttempts: 10 };
          return (
            backoffDelay(policy, attempt + 1, () => 0.5) >= backoffDelay(policy, attempt, () => 0.5)
          );
        },
      ),
    );
  });
});

describe('docket/testing helpers and the prune maintenance job', () => {
  type Jobs = { greet: { name: string }; 'docket.prune': Record<string, never> };
  let ts: TestStore;
  let docket: Docket<Jobs>;
  beforeAll(async () => {
    ts = await createTestStore('sqlite');
    docket = createDocket<Jobs>({
      store: ts.store,
      reapIntervalMs: 0,
      handlers: { greet: async ({ payload }) => `hello ${payload.name}` },
    });
  });
  afterAll(async () => {
    await docket.close();
    await ts.dispose();
  });

  it('runs a job inline and asserts enqueued jobs', async () => {
    const job = await runJobInline(docket, 'greet', { name: 'ada' }, { tenant: 'acme' });
    expect(job).toMatchObject({ status: 'succeeded', result: 'hello ada' });
    await docket.enqueue('greet', { name: 'bob' }, { tenant: 'acme' });
    expect(
      await assertEnqueued(docket, { tenant: 'acme', type: 'greet', payload: { name: 'bob' } }),
    ).toHaveLength(1);
    await expect(
      assertEnqueued(docket, { tenant: 'acme', type: 'greet', payload: { name: 'zed' } }),
    ).rejects.toMatchObject({
      code: 'JOB_NOT_FOUND',
    });
  });

  it('ships docket.prune as a built-in job type', async () => {
    const job = await runJobInline(docket, 'docket.prune', {}, { tenant: 'system' });
    expect(job.status).toBe('succeeded');
    expect(job.result).toMatchObject({ pruned: expect.any(Number) });
  });
});
