import { DocketError } from '../core/errors.js';
import type { ExecutionDeps } from './execution.js';
import type { RateLimit } from './registry.js';
import type { Job } from './types.js';

/** Refuses a rate limit that is not positive integers (CONFIG_INVALID). */
export function validateRateLimit(type: string, rl: RateLimit | undefined): void {
  if (rl === undefined) return;
  const ok =
    Number.isInteger(rl.max) &&
    rl.max > 0 &&
    Number.isInteger(rl.perMs) &&
    rl.perMs > 0 &&
    (rl.scope === undefined || rl.scope === 'global' || rl.scope === 'tenant');
  if (!ok) {
    throw new DocketError(
      'CONFIG_INVALID',
      `jobTypes.${type}.rateLimit needs positive integers max and perMs (scope 'global' or 'tenant')`,
      { type, rateLimit: rl },
    );
  }
}

/**
 * Admits claimed jobs under their types' rate limits (SPEC Q-11): each limited group (type, or
 * type and tenant) takes its starts from the store's shared window counter; the jobs over the
 * allowance go back to `pending` until the next window, without counting an attempt. Returns
 * the admitted jobs in claim order. Jobs of unlimited types pass untouched (no I/O).
 */
export async function admitClaimed(
  deps: Pick<ExecutionDeps, 'backend' | 'clock' | 'typeOptions'>,
  workerId: string,
  jobs: readonly Job[],
): Promise<Job[]> {
  const groups = new Map<string, { rl: RateLimit; jobs: Job[] }>();
  for (const j of jobs) {
    const rl = deps.typeOptions(j.type)?.rateLimit;
    if (!rl) continue;
    const key = rl.scope === 'tenant' ? `${j.type}\t${j.tenantId}` : j.type;
    const g = groups.get(key) ?? { rl, jobs: [] };
    g.jobs.push(j);
    groups.set(key, g);
  }
  if (groups.size === 0) return [...jobs];
  const now = deps.clock.now();
  const refused = new Set<string>();
  for (const [key, g] of groups) {
    const windowStart = Math.floor(now / g.rl.perMs) * g.rl.perMs;
    const granted = await deps.backend.rateLimitTake({
      key,
      windowStart,
      max: g.rl.max,
      n: g.jobs.length,
    });
    const over = g.jobs.slice(granted);
    if (over.length === 0) continue;
    for (const j of over) refused.add(j.id);
    await deps.backend.jobRelease({
      workerId,
      jobs: over,
      now,
      availableAt: windowStart + g.rl.perMs,
    });
  }
  return jobs.filter((j) => !refused.has(j.id));
}
