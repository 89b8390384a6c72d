import type { Clock } from '../core/clock.js';
import type { IdGenerator } from '../core/ids.js';
import type { JobBackend } from './backend.js';
import type { JobError } from './types.js';

/** Named points between DLQ steps where tests inject crashes. */
export type Failpoint = 'dlq.afterBegin' | 'dlq.afterRecord';

/** Dependencies of the DLQ sequence. */
export interface DeadLetterDeps {
  backend: JobBackend;
  clock: Clock;
  ids: IdGenerator;
  /** Test hook called between steps; a crash test kills the process here. */
  failpoint?: (name: Failpoint) => void | Promise<void>;
}

/**
 * Moves a leased job to the dead-letter queue: `processing → dlq_pending` (guarded by the
 * lease), then the DLQ item + audit row + `dlq_recorded` in one transaction, then `failed`.
 * A crash between steps leaves a status the reaper resumes from (resumeDeadLetter).
 */
export async function moveToDeadLetter(
  deps: DeadLetterDeps,
  p: { id: string; tenantId: string; workerId: string; error: JobError },
): Promise<boolean> {
  const begun = await deps.backend.jobDeadLetterBegin({ ...p, now: deps.clock.now() });
  if (!begun) return false;
  await deps.failpoint?.('dlq.afterBegin');
  await resumeDeadLetter(deps, { id: p.id, tenantId: p.tenantId, status: 'dlq_pending' });
  return true;
}

/** Finishes the DLQ sequence from whichever step a job was left at. */
export async function resumeDeadLetter(
  deps: DeadLetterDeps,
  p: { id: string; tenantId: string; status: string },
): Promise<void> {
  if (p.status === 'dlq_pending') {
    const now = deps.clock.now();
    await deps.backend.jobDeadLetterRecord({
      id: p.id,
      tenantId: p.tenantId,
      now,
      dlqItemId: deps.ids.next(),
      audit: {
        tenantId: p.tenantId,
        action: 'job.dead_lettered',
        resourceType: 'job',
        resourceId: p.id,
        actor: 'system:worker',
        traceId: '',
        data: {},
        createdAt: now,
      },
    });
    await deps.failpoint?.('dlq.afterRecord');
  }
  await deps.backend.jobDeadLetterFinish({
    id: p.id,
    tenantId: p.tenantId,
    now: deps.clock.now(),
  });
}
