// Public types of the scheduler (SPEC S-1 … S-5).

/** Statuses of an execution (SPEC S-3). */
export const EXECUTION_STATUSES = [
  'running',
  'succeeded',
  'failed',
  'timed_out',
  'canceled',
  'skipped',
] as const;
/** Status of an execution. */
export type ExecutionStatus = (typeof EXECUTION_STATUSES)[number];

/** What started an execution. */
export type ExecutionTrigger = 'cron' | 'manual';

/** What a task handler receives. */
export interface TaskContext {
  /** Task name. */
  task: string;
  /** Execution id. */
  executionId: string;
  /** The tick this run is for, epoch ms (the trigger time for manual runs). */
  scheduledFor: number;
  /** cron or manual. */
  trigger: ExecutionTrigger;
  /** Fencing token of the task lock (overlap 'forbid'); pass it to anything that checks it. */
  fencingToken: number | null;
  /** Aborted at `timeoutMs`; the handler should stop. */
  signal: AbortSignal;
  /** Trace id of this run. */
  traceId: string;
}

/** A task handler; a thrown error makes the execution `failed`. */
export type TaskHandler = (ctx: TaskContext) => Promise<unknown> | unknown;

/** Where a task's handler runs: in the scheduler's event loop, or on its own worker thread. */
export type TaskIsolation = 'inline' | 'thread';

/** A task as registered in code (SPEC S-1). */
export interface TaskDefinition {
  /** Unique task name, 1–200 characters of `[A-Za-z0-9_.:-]`. */
  name: string;
  /** Cron expression, 5 fields or 6 with seconds first (croner syntax). */
  cron: string;
  /** IANA timezone the expression is read in. Default 'UTC'. */
  timezone?: string;
  /** The work (isolation 'inline'); a thread task names a `module` instead. */
  handler?: TaskHandler;
  /**
   * 'thread': each run imports `module` on a fresh worker thread, which is terminated at the end
   * of the grace period, so even a handler that never yields cannot hold the task. Default 'inline'.
   */
  isolation?: TaskIsolation;
  /** The module of a thread task: a file URL or an absolute path. Required for 'thread' only. */
  module?: URL | string;
  /** The module's export that is the handler of a thread task. Default 'default'. */
  export?: string;
  /** Tenant that owns the task; 'system' tasks are visible only to operators. Default 'system'. */
  tenant?: string;
  /** The handler's signal is aborted after this long, ms. Default 60_000. */
  timeoutMs?: number;
  /** After the abort, how long the handler gets before the run is `timed_out`, ms. Default 30_000. */
  graceMs?: number;
  /** Smaller runs first when several ticks are due in one pass. Default 0. */
  priority?: number;
  /** 'forbid': a tick is skipped while the previous run holds the task lock. Default 'forbid'. */
  overlap?: 'forbid' | 'allow';
  /** Ticks missed while no instance ran: 'skip' records one skipped run, 'once' runs once. Default 'skip'. */
  catchUp?: 'skip' | 'once';
  /** Whether the task starts enabled when first registered (later, the stored state wins). Default true. */
  enabled?: boolean;
}

/** A task as stored: definition plus runtime state. */
export interface SchedulerTask {
  /** Task name. */
  name: string;
  /** Owning tenant. */
  tenantId: string;
  /** Effective cron expression (the override if set, else the code's). */
  cron: string;
  /** Effective timezone. */
  timezone: string;
  /** The code's expression and timezone. */
  defaultSchedule: { cron: string; timezone: string };
  /** Whether the schedule is an operator override. */
  overridden: boolean;
  /** Whether cron ticks run. */
  enabled: boolean;
  /** Timeout, ms. */
  timeoutMs: number;
  /** Grace after the timeout, ms. */
  graceMs: number;
  /** Priority. */
  priority: number;
  /** Overlap policy. */
  overlap: 'forbid' | 'allow';
  /** Catch-up policy. */
  catchUp: 'skip' | 'once';
  /** Next tick not yet claimed, epoch ms (null while disabled or not yet scheduled). */
  nextRunAt: number | null;
  /** Incremented on every runtime change. */
  version: number;
  /** Epoch ms. */
  createdAt: number;
  /** Epoch ms. */
  updatedAt: number;
}

/** One run of a task (SPEC S-3). */
export interface TaskExecution {
  /** Execution id (time-sortable). */
  id: string;
  /** Task name. */
  task: string;
  /** Tenant of the task. */
  tenantId: string;
  /** The tick, epoch ms. */
  scheduledFor: number;
  /** cron or manual. */
  trigger: ExecutionTrigger;
  /** Status. */
  status: ExecutionStatus;
  /** Instance that ran it. */
  instanceId: string;
  /** Fencing token of the task lock, if one was taken. */
  fencingToken: number | null;
  /** Trace id. */
  traceId: string;
  /** Epoch ms. */
  startedAt: number;
  /** Epoch ms, null while running. */
  finishedAt: number | null;
  /** Duration, ms, null while running. */
  durationMs: number | null;
  /** Error message of a failed, timed-out or skipped run. */
  error: string | null;
  /** Stack of a failed run. */
  stack: string | null;
}

/** Stats of one task over a window (SPEC S-4). */
export interface TaskStats {
  /** Task name. */
  task: string;
  /** Window start, epoch ms. */
  since: number;
  /** Finished runs in the window (succeeded + failed + timed_out). */
  finished: number;
  /** Succeeded runs in the window. */
  succeeded: number;
  /** Failed or timed-out runs in the window. */
  failures: number;
  /** Skipped ticks in the window. */
  skipped: number;
  /** succeeded / finished, null without finished runs. */
  successRate: number | null;
  /** Average duration of finished runs, ms. */
  avgDurationMs: number | null;
  /** 95th percentile duration of finished runs, ms. */
  p95DurationMs: number | null;
  /** Latest execution's start, epoch ms. */
  lastRunAt: number | null;
  /** Latest execution's status. */
  lastStatus: ExecutionStatus | null;
  /** Next tick, epoch ms. */
  nextRunAt: number | null;
}

/** Filter of the execution list. */
export interface ExecutionListFilter {
  /** Only this task's. */
  task?: string;
  /** Only these statuses. */
  status?: ExecutionStatus[];
  /** Only cron or manual runs. */
  trigger?: ExecutionTrigger;
  /** Keyset cursor from a previous page. */
  cursor?: string;
  /** Page size, 1–500. Default 50. */
  limit?: number;
}

/** Who may see what: a tenant sees its tasks; an operator (no tenant) sees every task. */
export interface SchedulerScope {
  /** The caller's tenant; undefined = operator. */
  tenant?: string;
}

/** Who did an operator action, for the audit row. */
export interface SchedulerActorOptions extends SchedulerScope {
  /** Actor recorded in the audit row. Default 'library'. */
  actor?: string;
  /** Trace id. */
  traceId?: string;
}
