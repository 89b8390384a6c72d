import type { RetryPolicy } from '../config/index.js';

/**
 * Delay before retrying after `attempt` failed attempts: exponential (`baseMs * 2^(attempt-1)`),
 * capped at `capMs`, with "equal jitter" — uniformly in [d/2, d] — so retries of many jobs that
 * failed together spread out while each stays within a predictable window.
 */
export function backoffDelay(
  policy: RetryPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  const exp = policy.baseMs * 2 ** Math.max(0, attempt - 1);
  const capped = Math.min(policy.capMs, exp);
  return Math.round(capped / 2 + random() * (capped / 2));
}
