// Test helpers for applications that use Docket (`import { … } from 'docket/testing'`), in the
// spirit of River's rivertest and Oban.Testing.
import type { Docket } from './docket.js';
import { DocketError } from './core/errors.js';
import type { Job, JobMap } from './jobs/index.js';
import { canonicalJson } from './jobs/hashing.js';

/** Enqueues a job and runs it right now in this process with the instance's handlers; returns the final job. */
export async function runJobInline<M extends JobMap, K extends keyof M & string>(
  docket: Docket<M>,
  type: K,
  payload: M[K],
  options: { tenant: string },
): Promise<Job<M[K]>> {
  const { job } = await docket.enqueue(type, payload, {
    tenant: options.tenant,
    idempotencyKey: undefined,
  });
  await docket.processBatch({ max: 1, type, tenant: options.tenant, mode: 'strict' });
  return (await docket.jobs.get(job.id, { tenant: options.tenant })) as Job<M[K]>;
}

/** Returns the tenant's pending jobs of `type` (matching `payload` if given); throws if there are none. */
export async function assertEnqueued<M extends JobMap, K extends keyof M & string>(
  docket: Docket<M>,
  expected: { tenant: string; type: K; payload?: Partial<M[K]> },
): Promise<Job<M[K]>[]> {
  const page = await docket.jobs.list(
    { type: expected.type, status: ['pending'], limit: 200 },
    { tenant: expected.tenant },
  );
  const matches = page.items.filter(
    (j) => expected.payload === undefined || containsAll(j.payload, expected.payload),
  );
  if (matches.length === 0) {
    throw new DocketError('JOB_NOT_FOUND', `expected a pending ${expected.type} job`, {
      tenant: expected.tenant,
      payload: expected.payload,
      pending: page.items.map((j) => j.payload),
    });
  }
  return matches as Job<M[K]>[];
}

function containsAll(actual: unknown, expected: unknown): boolean {
  if (expected === null || typeof expected !== 'object')
    return canonicalJson(actual) === canonicalJson(expected);
  if (actual === null || typeof actual !== 'object') return false;
  return Object.entries(expected as Record<string, unknown>).every(([k, v]) =>
    containsAll((actual as Record<string, unknown>)[k], v),
  );
}
