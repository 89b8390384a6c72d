// Runs one claimed execution: takes the task lock (overlap 'forbid'), calls the handler with an
// AbortSignal, aborts it at timeoutMs and, if it has not settled graceMs later, records the run
// as timed_out, releases the lock and raises an alert, whatever the handler does afterwards (a
// thread task's thread is terminated first; an inline handler cannot be stopped).
import { raiseAlert } from '../alerts/index.js';
import type { Clock } from '../core/clock.js';
import type { IdGenerator } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import type { Kysely } from 'kysely';
import type { DocketDatabase } from '../store/schema.js';
import type { LockBackend, LockGrant } from './locks.js';
import type { SchedulerStore } from './store.js';
import type { SchedulerTask, TaskContext, TaskExecution, TaskHandler } from './types.js';

/** A run's work once started: its outcome, and a way to stop it if it ignores its signal. */
export interface StartedWork {
  /** Settles as the handler does. */
  outcome: Promise<unknown>;
  /** Ends work that outlived its grace period (a thread); absent where that is impossible. */
  terminate?: () => Promise<void>;
}

/** Starts one run of a task's work with the run's context. */
export type TaskWork = (ctx: TaskContext) => StartedWork;

/** The work of an inline task: the handler, called in this event loop. */
export function inlineWork(handler: TaskHandler): TaskWork {
  return (ctx) => ({ outcome: (async () => handler(ctx))() });
}

/** How long a terminated thread may take to exit before the run is recorded anyway, ms. */
const TERMINATE_DEADLINE_MS = 5000;

/** What the runner needs. */
export interface RunnerDeps {
  rows: SchedulerStore;
  locks: LockBackend;
  db: Kysely<DocketDatabase>;
  clock: Clock;
  ids: IdGenerator;
  logger: Logger;
  /** Lease of locks and execution heartbeats, ms. */
  leaseMs: number;
}

/** A run in progress on this instance. */
export interface ActiveRun {
  execution: TaskExecution;
  grant: LockGrant | null;
  /** Settles when the run is recorded as finished (or was finished by someone else). */
  done: Promise<void>;
  /** Aborts the handler's signal and gives it `graceMs` (its row was canceled elsewhere). */
  cancel: () => void;
}

/** The lock name of a task. */
export function taskLockName(task: string): string {
  return `scheduler.task:${task}`;
}

/**
 * The lock a run of `exec` holds: `held` (manual trigger), a new grant ('forbid' cron tick,
 * recorded on the execution), null ('allow'), or 'skipped' when the lock is taken — the
 * execution is then recorded as skipped.
 */
export async function takeRunLock(
  deps: RunnerDeps,
  task: SchedulerTask,
  exec: TaskExecution,
  held: LockGrant | null,
): Promise<LockGrant | null | 'skipped'> {
  let grant = held;
  if (task.overlap === 'forbid' && !grant) {
    let skipped = 'the previous run still holds the task lock (overlap: forbid)';
    try {
      grant = await deps.locks.lockAcquire({
        name: taskLockName(task.name),
        owner: exec.id,
        leaseMs: deps.leaseMs,
        now: deps.clock.now(),
      });
    } catch (err) {
      // The lock backend went away: the tick is recorded as not run (never run unlocked).
      deps.logger.warn({ err, task: task.name, executionId: exec.id }, 'taking a task lock failed');
      skipped = `lock backend unavailable: ${errorMessage(err)}`;
    }
    if (!grant) {
      await deps.rows.finishExecution({
        id: exec.id,
        status: 'skipped',
        now: deps.clock.now(),
        error: skipped,
      });
      return 'skipped';
    }
  }
  // A lock taken here (cron tick) is recorded now; a manual trigger's went in with the insert.
  if (grant && !held) await deps.rows.setFencingToken(exec.id, grant.token);
  return grant;
}

/** Calls the work of `exec` (its lock, if any, taken); `onDone` once the run is recorded. */
export function launchRun(
  deps: RunnerDeps,
  task: SchedulerTask,
  work: TaskWork,
  exec: TaskExecution,
  grant: LockGrant | null,
  onDone: () => void,
): ActiveRun {
  const run: ActiveRun = { execution: exec, grant, done: Promise.resolve(), cancel: () => {} };
  run.done = execute(deps, task, work, exec, grant, (cancel) => (run.cancel = cancel)).finally(
    onDone,
  );
  return run;
}

async function execute(
  deps: RunnerDeps,
  task: SchedulerTask,
  work: TaskWork,
  exec: TaskExecution,
  grant: LockGrant | null,
  onCancel: (cancel: () => void) => void,
): Promise<void> {
  const controller = new AbortController();
  let abortTimer: NodeJS.Timeout | undefined;
  let graceTimer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'deadline'>((resolve) => {
    const stop = (reason: string) => {
      if (controller.signal.aborted) return;
      clearTimeout(abortTimer);
      controller.abort(new Error(reason));
      graceTimer = setTimeout(() => resolve('deadline'), task.graceMs);
    };
    abortTimer = setTimeout(
      () => stop(`task ${task.name} timed out after ${task.timeoutMs} ms`),
      task.timeoutMs,
    );
    // Canceled: the row is final already, so what follows records nothing (guarded on
    // running); the grace period, a thread's termination and the lock release still apply.
    onCancel(() => stop(`execution ${exec.id} of task ${task.name} was canceled`));
  });
  let started: StartedWork;
  try {
    started = work({
      task: task.name,
      executionId: exec.id,
      scheduledFor: exec.scheduledFor,
      trigger: exec.trigger,
      fencingToken: grant?.token ?? null,
      signal: controller.signal,
      traceId: exec.traceId,
    });
  } catch (err) {
    started = { outcome: Promise.reject(err) };
  }
  const settled = started.outcome.then(
    () => ({ ok: true as const }),
    (err: unknown) => ({ ok: false as const, err }),
  );
  try {
    const outcome = await Promise.race([settled, deadline]);
    const terminated = outcome === 'deadline' && (await terminate(deps, task, exec, started));
    const now = deps.clock.now();
    if (outcome === 'deadline' || (!outcome.ok && controller.signal.aborted)) {
      const finished = await deps.rows.finishExecution({
        id: exec.id,
        status: 'timed_out',
        now,
        error:
          outcome === 'deadline'
            ? `did not finish within timeoutMs ${task.timeoutMs} + graceMs ${task.graceMs}` +
              (terminated ? '; its thread was terminated' : '')
            : `aborted at timeoutMs ${task.timeoutMs}: ${errorMessage(outcome.err)}`,
      });
      if (finished) await alertTimeout(deps, task, finished);
      if (outcome === 'deadline' && !terminated) {
        // The handler ignored its signal: its late result is logged, never recorded.
        void settled.then((late) =>
          deps.logger.warn(
            { task: task.name, executionId: exec.id, ok: late.ok },
            'a timed-out task handler settled after its grace period',
          ),
        );
      }
    } else if (outcome.ok) {
      await deps.rows.finishExecution({ id: exec.id, status: 'succeeded', now });
    } else {
      await deps.rows.finishExecution({
        id: exec.id,
        status: 'failed',
        now,
        error: errorMessage(outcome.err),
        stack: outcome.err instanceof Error ? (outcome.err.stack ?? null) : null,
      });
    }
  } catch (err) {
    deps.logger.error(
      { err, task: task.name, executionId: exec.id },
      'recording a task run failed',
    );
  } finally {
    clearTimeout(abortTimer);
    clearTimeout(graceTimer);
    if (grant) {
      await deps.locks
        .lockRelease({ grant })
        .catch((err: unknown) =>
          deps.logger.error({ err, task: task.name }, 'releasing a task lock failed'),
        );
    }
  }
}

/** Stops work past its grace period if it can be stopped; true once it has. */
async function terminate(
  deps: RunnerDeps,
  task: SchedulerTask,
  exec: TaskExecution,
  started: StartedWork,
): Promise<boolean> {
  if (!started.terminate) return false;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      started.terminate().then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), TERMINATE_DEADLINE_MS))),
    ]);
  } catch (err) {
    deps.logger.error({ err, task: task.name, executionId: exec.id }, 'terminating a task failed');
    return false;
  } finally {
    clearTimeout(timer);
  }
}

async function alertTimeout(deps: RunnerDeps, task: SchedulerTask, e: TaskExecution) {
  await raiseAlert(
    deps.db,
    {
      key: `scheduler.task_timed_out:${task.name}`,
      source: 'scheduler',
      severity: 'warning',
      message: `scheduler task ${task.name} timed out (execution ${e.id})`,
      details: {
        task: task.name,
        executionId: e.id,
        timeoutMs: task.timeoutMs,
        graceMs: task.graceMs,
      },
      tenantId: task.tenantId,
    },
    deps.ids,
    deps.clock.now(),
  ).catch((err: unknown) =>
    deps.logger.error({ err, task: task.name }, 'raising a scheduler timeout alert failed'),
  );
}

function errorMessage(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.length > 2000 ? m.slice(0, 2000) : m;
}
