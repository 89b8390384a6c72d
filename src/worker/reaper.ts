import { IntervalService } from '../core/service.js';
import { resumeDeadLetter, type DeadLetterDeps } from '../jobs/index.js';
import type { Logger } from '../core/logger.js';

/** Result of one reaper pass. */
export interface ReapResult {
  /** Jobs whose lease expired and that went back to pending. */
  requeued: number;
  /** Jobs whose lease expired with no attempts left, now dead-lettered. */
  deadLettered: number;
  /** Jobs a crash had left between DLQ steps, now finished. */
  resumed: number;
}

/**
 * Returns expired leases to `pending` (the attempt was counted at claim), dead-letters those
 * out of attempts, and resumes DLQ sequences a crash interrupted (SPEC ).
 */
export class Reaper extends IntervalService {
  constructor(
    private readonly deps: DeadLetterDeps & { logger: Logger },
    intervalMs: number,
    private readonly batchSize = 500,
  ) {
    super(
      intervalMs,
      () => this.reap(),
      (err) => deps.logger.error({ err }, 'reaper pass failed'),
    );
  }

  /** One full pass. */
  override runOnce(): Promise<ReapResult> {
    return this.reap();
  }

  private async reap(): Promise<ReapResult> {
    const result: ReapResult = { requeued: 0, deadLettered: 0, resumed: 0 };
    const expiredIntoDlq = new Set<string>();
    for (;;) {
      const r = await this.deps.backend.jobReapExpired({
        now: this.deps.clock.now(),
        limit: this.batchSize,
      });
      result.requeued += r.requeued.length;
      result.deadLettered += r.deadLettered.length;
      r.deadLettered.forEach((id) => expiredIntoDlq.add(id));
      if (r.requeued.length + r.deadLettered.length < this.batchSize) break;
    }
    for (;;) {
      const stuck = await this.deps.backend.jobDeadLetterStuck({ limit: this.batchSize });
      for (const s of stuck) {
        await resumeDeadLetter(this.deps, s);
        // Jobs this pass sent to the DLQ count as dead-lettered; only a crash's leftovers as resumed.
        if (!expiredIntoDlq.has(s.id)) result.resumed++;
      }
      if (stuck.length < this.batchSize) break;
    }
    if (result.requeued || result.deadLettered || result.resumed) {
      this.deps.logger.info(result, 'reaper recovered jobs');
    }
    return result;
  }
}
