import { randomBytes } from 'node:crypto';
import { DocketError } from '../core/errors.js';
import {
  encodeResult,
  leaseLostError,
  recordFailure,
  completeJobs,
  startAttempt,
  type ExecutionDeps,
} from './execution.js';
import { admitClaimed } from './rate-limits.js';
import type { JobHandler } from './registry.js';
import type { Job } from './types.js';

/** A lane of balanced batch processing: job types matched by name or `prefix.*`, capped per batch. */
export interface Lane {
  /** Lane name, reported in results. */
  name: string;
  /** Type names or `prefix.*` patterns; `*` matches every type not taken by an earlier lane. */
  match: string[];
  /** Most jobs this lane may take in one batch. Default: no cap beyond `max`. */
  max?: number;
}

/** Default lanes: maintenance first, email capped, then everything else (SPEC Q-10). */
export const DEFAULT_LANES: readonly Lane[] = [
  { name: 'maintenance', match: ['docket.*'], max: 5 },
  { name: 'email', match: ['email', 'email.*'], max: 10 },
  { name: 'default', match: ['*'] },
];

/** Options of one on-demand batch. */
export interface ProcessBatchOptions {
  /** Most jobs to process, 1–50. Default 1. */
  max?: number;
  /** Time budget in ms; no job starts after it is spent. Default 20,000. */
  budgetMs?: number;
  /** Only this job type. */
  type?: string;
  /** Only this tenant. */
  tenant?: string;
  /** `balanced` (lanes in order with caps) or `strict` (plain priority order). Default balanced. */
  mode?: 'balanced' | 'strict';
  /** Lanes for balanced mode. Default DEFAULT_LANES. */
  lanes?: readonly Lane[];
}

/** What a batch did. */
export interface ProcessBatchResult {
  /** Jobs started. */
  processed: number;
  /** Jobs that succeeded. */
  succeeded: number;
  /** Jobs scheduled for a retry. */
  retried: number;
  /** Jobs moved to the dead-letter queue. */
  dead: number;
  /** Jobs processed per lane (balanced) or under `strict`. */
  byLane: Record<string, number>;
  /** Time spent, ms. */
  durationMs: number;
  /** True when the budget ended the batch. */
  budgetExhausted: boolean;
}

const matches = (type: string, pattern: string) =>
  pattern === '*' ||
  pattern === type ||
  (pattern.endsWith('.*') && type.startsWith(pattern.slice(0, -1)));

/** Splits known types into lanes, each type in the first lane that matches it. */
export function assignLanes(
  types: readonly string[],
  lanes: readonly Lane[],
): Array<{ lane: Lane; types: string[] }> {
  const taken = new Set<string>();
  return lanes.map((lane) => {
    const mine = types.filter((t) => !taken.has(t) && lane.match.some((p) => matches(t, p)));
    mine.forEach((t) => taken.add(t));
    return { lane, types: mine };
  });
}

/**
 * Processes at most `max` jobs within `budgetMs`, one at a time, in this process — for cron
 * and serverless callers (`POST /v1/queue/process`). Balanced mode walks the lanes in order so a
 * flood in one lane cannot starve another; strict mode takes jobs in priority order.
 */
export async function processBatch(
  deps: ExecutionDeps,
  handlers: Readonly<Record<string, JobHandler<unknown> | undefined>>,
  options: ProcessBatchOptions = {},
): Promise<ProcessBatchResult> {
  const max = options.max ?? 1;
  const budgetMs = options.budgetMs ?? 20_000;
  if (!Number.isInteger(max) || max < 1 || max > 50) {
    throw new DocketError('VALIDATION_FAILED', 'max must be an integer 1–50', { field: 'max' });
  }
  if (!Number.isFinite(budgetMs) || budgetMs < 1 || budgetMs > 300_000) {
    throw new DocketError('VALIDATION_FAILED', 'budgetMs must be 1–300000', { field: 'budgetMs' });
  }
  const mode = options.mode ?? 'balanced';
  if (mode !== 'balanced' && mode !== 'strict') {
    throw new DocketError('VALIDATION_FAILED', 'mode must be balanced or strict', {
      field: 'mode',
    });
  }
  const known = Object.keys(handlers).filter((t) => handlers[t]);
  if (options.type !== undefined && !known.includes(options.type)) {
    throw new DocketError('UNKNOWN_JOB_TYPE', `no handler for job type ${options.type}`, {
      type: options.type,
    });
  }
  const types = options.type ? [options.type] : known;
  const plan =
    mode === 'strict' || options.type
      ? [{ lane: { name: mode === 'strict' ? 'strict' : 'type', match: ['*'] } as Lane, types }]
      : assignLanes(types, options.lanes ?? DEFAULT_LANES);

  const started = deps.clock.now();
  const deadline = started + budgetMs;
  const workerId = `batch:${randomBytes(4).toString('hex')}`;
  const result: ProcessBatchResult = {
    processed: 0,
    succeeded: 0,
    retried: 0,
    dead: 0,
    byLane: {},
    durationMs: 0,
    budgetExhausted: false,
  };

  for (const { lane, types: laneTypes } of plan) {
    if (laneTypes.length === 0) continue;
    let taken = 0;
    const cap = Math.min(lane.max ?? max, max);
    while (result.processed < max && taken < cap) {
      if (deps.clock.now() >= deadline) {
        result.budgetExhausted = true;
        break;
      }
      const [claimed] = await deps.backend.jobClaimBatch({
        workerId,
        limit: 1,
        now: deps.clock.now(),
        leaseMs: deps.config.jobs.leaseMs,
        types: laneTypes,
        tenant: options.tenant,
      });
      if (!claimed) break;
      // Over its type's rate limit: back to pending until the next window; try the next job.
      const [job] = (await admitClaimed(deps, workerId, [claimed])).admitted;
      if (!job) continue;
      taken++;
      result.processed++;
      result.byLane[lane.name] = (result.byLane[lane.name] ?? 0) + 1;
      await runOne(
        deps,
        handlers[job.type] as JobHandler<unknown>,
        job,
        workerId,
        result,
        deadline,
      );
    }
    if (result.budgetExhausted || result.processed >= max) break;
  }
  result.durationMs = deps.clock.now() - started;
  return result;
}

async function runOne(
  deps: ExecutionDeps,
  handler: JobHandler<unknown>,
  job: Job,
  workerId: string,
  result: ProcessBatchResult,
  deadline: number,
): Promise<void> {
  // The budget bounds a running job too: its timeout is cut to what is left of the budget.
  const attempt = startAttempt(deps, job, handler, { maxTimeoutMs: deadline - deps.clock.now() });
  // Heartbeat like a worker, so a job longer than its lease is not reaped and run twice.
  const leaseMs = deps.config.jobs.leaseMs;
  const heartbeat = setInterval(
    () => {
      const now = deps.clock.now();
      deps.backend
        .jobHeartbeat({ workerId, jobs: [job], leaseUntil: now + leaseMs, now })
        .then((held) => {
          if (!held.includes(job.id)) attempt.abort(leaseLostError());
        })
        .catch((err: unknown) => deps.logger.warn({ err, jobId: job.id }, 'heartbeat failed'));
    },
    Math.max(50, Math.floor(leaseMs / 3)),
  );
  let outcome;
  try {
    outcome = await attempt.outcome;
  } finally {
    clearInterval(heartbeat);
  }
  if (outcome.kind === 'succeeded') {
    const resultJson = encodeResult(deps, job, outcome.result);
    const done = await completeJobs(deps, workerId, [
      { id: job.id, tenantId: job.tenantId, resultJson, type: job.type },
    ]);
    if (done.length === 1) result.succeeded++;
  } else if (outcome.kind === 'failed') {
    const r = await recordFailure(deps, job, workerId, outcome.error);
    if (r === 'retried') result.retried++;
    if (r === 'dead') result.dead++;
  }
}
