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

/** What admission decided: the jobs to run, and globally limited types spent until a time. */
export interface Admission {
  /** Jobs to run, in claim order. */
  admitted: Job[];
  /** Types (global scope) whose window is used up, with the window's end: claim none before. */
  spentUntil: Map<string, number>;
}

/**
 * Admits claimed jobs under their types' rate limits (SPEC Q-11): each limited group (type, or
 * type and tenant) takes its starts from the store's shared window counter; the jobs over the
 * allowance go back to `pending` until the next window, without counting an attempt. Jobs of
 * unlimited types pass untouched (no I/O). If the counter cannot be read, the group's jobs go
 * back a second later (never stranded in `processing` until their lease ends).
 */
export async function admitClaimed(
  deps: Pick<ExecutionDeps, 'backend' | 'clock' | 'typeOptions' | 'logger'>,
  workerId: string,
  jobs: readonly Job[],
): Promise<Admission> {
  const spentUntil = new Map<string, number>();
  const groups = new Map<string, { rl: RateLimit; type: string; jobs: Job[] }>();
  for (const j of jobs) {
    const rl = deps.typeOptions(j.type)?.rateLimit;
    if (!rl) continue;
    const key = rl.scope === 'tenant' ? `${j.type}\t${j.tenantId}` : j.type;
    const g = groups.get(key) ?? { rl, type: j.type, jobs: [] };
    g.jobs.push(j);
    groups.set(key, g);
  }
  if (groups.size === 0) return { admitted: [...jobs], spentUntil };
  const now = deps.clock.now();
  const refused = new Set<string>();
  for (const [key, g] of groups) {
    const windowStart = Math.floor(now / g.rl.perMs) * g.rl.perMs;
    const windowEnd = windowStart + g.rl.perMs;
    let granted: number;
    let until = windowEnd;
    try {
      granted = await deps.backend.rateLimitTake({
        key,
        windowStart,
        max: g.rl.max,
        n: g.jobs.length,
      });
    } catch (err) {
      deps.logger.warn({ err, key }, 'rate-limit counter unavailable; jobs go back for a second');
      granted = 0;
      until = now + 1000;
    }
    const over = g.jobs.slice(granted);
    if (over.length === 0) continue;
    for (const j of over) refused.add(j.id);
    if (g.rl.scope !== 'tenant') spentUntil.set(g.type, until);
    await deps.backend.jobRelease({ workerId, jobs: over, now, availableAt: until });
  }
  return { admitted: jobs.filter((j) => !refused.has(j.id)), spentUntil };
}
