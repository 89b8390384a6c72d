import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocket, type Docket } from '../../src/index.js';
import { backoffDelay } from '../../src/jobs/index.js';
import { assertEnqueued, runJobInline } from '../../src/testing.js';
import { createTestStore, type TestStore } from '../helpers/backends.js';

describe('backoffDelay', () => {
  it('stays within [d/2, d] for d = min(cap, base·2^(attempt−1)) over random inputs', () => {
    let seed = 42;
    const rand = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 5000; i++) {
      const baseMs = 1 + Math.floor(rand() * 10_000);
      const capMs = baseMs + Math.floor(rand() * 1_000_000);
      const attempt = 1 + Math.floor(rand() * 40);
      const d = Math.min(capMs, baseMs * 2 ** (attempt - 1));
      const delay = backoffDelay({ baseMs, capMs, maxAttempts: 10 }, attempt, rand);
      expect(delay).toBeGreaterThanOrEqual(Math.floor(d / 2));
      expect(delay).toBeLessThanOrEqual(Math.ceil(d));
    }
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
