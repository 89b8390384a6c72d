// The scheduler (SPEC S-1 … S-5): tasks registered in code, persisted with their runtime
// state, and a tick loop every instance runs. A tick runs exactly once across instances
// because running it starts with an insert into scheduler_executions that a unique index
// admits once per (task, scheduled_for); the shared cursor (next_due_at) only moves forward by
// guarded updates. Operator changes (enable, disable, schedule) are rows every pass re-reads.
import { randomUUID } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import { prepareAuditEvent, principalFromActor, appendAuditEvents } from '../audit/index.js';
import type { Clock } from '../core/clock.js';
import { newTraceId, resolveTraceId } from '../core/context.js';
import { DocketError } from '../core/errors.js';
import type { IdGenerator } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import { IntervalService, type Service } from '../core/service.js';
import type { Store } from '../store/index.js';
import type { DocketDatabase } from '../store/schema.js';
import type { Transaction } from 'kysely';
import { parseSchedule, type Schedule } from './cron.js';
import { openLockBackend, type SchedulerLocks } from './lock-backends.js';
import type { LockBackend, LockGrant } from './locks.js';
import { forEachConcurrently, prepareConcurrentlyStartInOrder } from './bounded.js';
import {
  inlineWork,
  launchRun,
  takeRunLock,
  taskLockName,
  type ActiveRun,
  type RunnerDeps,
  type TaskWork,
} from './runner.js';
import { threadWork } from './thread.js';
import { SchedulerStore, type TaskDefinitionRow } from './store.js';
import type {
  ExecutionListFilter,
  SchedulerActorOptions,
  SchedulerScope,
  SchedulerTask,
  TaskDefinition,
  TaskExecution,
  TaskHandler,
  TaskIsolation,
  TaskStats,
} from './types.js';
import { EXECUTION_STATUSES } from './types.js';

/** Scheduler options of createDocket. */
export interface SchedulerOptions {
  /** Tasks registered at construction. Default none. */
  tasks?: TaskDefinition[];
  /** How often each instance looks for due ticks, ms. Default 1000. */
  tickMs?: number;
  /** Lease of task locks and of a running execution's heartbeat, ms. Default 30_000. */
  leaseMs?: number;
  /** A tick older than this when first seen was missed (catchUp applies), ms. Default 60_000. */
  misfireMs?: number;
  /** Finished executions older than this are deleted by `docket.prune` (SPEC S-3), ms. Default 30 days. */
  retentionMs?: number;
  /**
   * The lock provider: a LockBackend, or `{ backend: 'database' | 'redis' | 'etcd', url?, prefix? }`
   * (a Docket-made backend, connected at start and closed at stop). Default the database lease
   * (scheduler_locks).
   */
  locks?: SchedulerLocks;
  /** This instance's id in execution rows. Default a random id. */
  instanceId?: string;
  /**
   * How many due task runs a pass prepares at once (lock, fencing token) while it starts them
   * in priority order; handlers then run in the background regardless. Default 16.
   */
  concurrency?: number;
}

/** What the scheduler needs from Docket. */
export interface SchedulerDeps {
  store: Store;
  clock: Clock;
  ids: IdGenerator;
  logger: Logger;
}

const SAME_PASS = 'an earlier tick of this task started in the same pass (overlap: forbid)';
const NAME = /^[A-Za-z0-9_.:-]{1,200}$/;
const TENANT = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** A validated task definition with its defaults filled in. */
export interface ResolvedTaskDefinition extends Required<
  Omit<TaskDefinition, 'handler' | 'module' | 'export'>
> {
  /** The handler of an inline task; null for a thread task. */
  handler: TaskHandler | null;
  /** File URL of a thread task's module; null for an inline task. */
  module: string | null;
  /** The export a thread task calls. */
  export: string;
}

interface Registered {
  def: ResolvedTaskDefinition;
  work: TaskWork;
}

/** Validates a task definition and fills its defaults; SCHEDULE_INVALID / VALIDATION_FAILED. */
export function resolveTaskDefinition(t: TaskDefinition): ResolvedTaskDefinition {
  const bad = (field: string, message: string) =>
    new DocketError('VALIDATION_FAILED', message, { field, task: t?.name });
  if (!t || typeof t !== 'object') throw bad('task', 'a task is an object');
  if (typeof t.name !== 'string' || !NAME.test(t.name)) {
    throw bad('name', 'a task name is 1–200 characters of A-Z a-z 0-9 _ . : -');
  }
  const isolation: TaskIsolation = t.isolation ?? 'inline';
  if (isolation !== 'inline' && isolation !== 'thread') {
    throw bad('isolation', "isolation is 'inline' or 'thread'");
  }
  let module: string | null = null;
  if (isolation === 'inline') {
    if (typeof t.handler !== 'function') throw bad('handler', 'a task needs a handler function');
    if (t.module !== undefined || t.export !== undefined) {
      throw bad('module', "module and export are for isolation: 'thread' only");
    }
  } else {
    // A function cannot cross to a thread: the thread imports the module itself, and a handler
    // given as well would be a second, silently unused definition of the work.
    if (t.handler !== undefined) {
      throw bad('handler', "a task with isolation: 'thread' names a module, not a handler");
    }
    module = threadModuleUrl(t.module);
    if (module === null) {
      throw bad('module', "isolation: 'thread' needs module: a file URL or an absolute path");
    }
    if (t.export !== undefined && (typeof t.export !== 'string' || t.export === '')) {
      throw bad('export', 'export is the name of the function the module exports');
    }
  }
  const timezone = t.timezone ?? 'UTC';
  parseSchedule(t.cron, timezone);
  const int = (field: keyof TaskDefinition, v: unknown, def: number, min: number) => {
    const n = v ?? def;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) {
      throw bad(field, `${field} must be an integer ≥ ${min}`);
    }
    return n;
  };
  const tenant = t.tenant ?? 'system';
  if (typeof tenant !== 'string' || !TENANT.test(tenant))
    throw bad('tenant', 'tenant is not valid');
  const overlap = t.overlap ?? 'forbid';
  if (overlap !== 'forbid' && overlap !== 'allow')
    throw bad('overlap', "overlap is 'forbid' or 'allow'");
  const catchUp = t.catchUp ?? 'skip';
  if (catchUp !== 'skip' && catchUp !== 'once') throw bad('catchUp', "catchUp is 'skip' or 'once'");
  return {
    name: t.name,
    cron: t.cron,
    timezone,
    handler: isolation === 'inline' ? (t.handler as TaskHandler) : null,
    isolation,
    module,
    export: t.export ?? 'default',
    tenant,
    timeoutMs: int('timeoutMs', t.timeoutMs, 60_000, 1),
    graceMs: int('graceMs', t.graceMs, 30_000, 0),
    priority: int('priority', t.priority, 0, -1_000_000),
    overlap,
    catchUp,
    enabled: t.enabled ?? true,
  };
}

/** The file: URL of a thread task's module, or null when it is not a file URL or absolute path. */
function threadModuleUrl(m: unknown): string | null {
  if (m instanceof URL) return m.protocol === 'file:' ? m.href : null;
  if (typeof m !== 'string' || m === '') return null;
  if (m.startsWith('file:')) return URL.canParse(m) ? new URL(m).href : null;
  return isAbsolute(m) ? pathToFileURL(m).href : null;
}

/** A due tick to claim, or a task's cursor to move, as planned by a pass. */
interface TickPlan {
  task: SchedulerTask;
  /** Ticks to claim, in order. */
  ticks: number[];
  /** The cursor the plan was made from (null: not scheduled yet). */
  expected: number | null;
  /** The cursor after the planned ticks. */
  next: number | null;
}

/** The scheduler of one Docket instance; a Service (start, stop, runOnce). */
export class Scheduler implements Service {
  private readonly tasks = new Map<string, Registered>();
  private unsynced = new Set<string>();
  private readonly schedules = new Map<string, Schedule>();
  private readonly active = new Map<string, ActiveRun>();
  private readonly rows: SchedulerStore;
  private readonly locks: LockBackend;
  private readonly ownsLocks: boolean;
  private readonly runner: RunnerDeps;
  private readonly loop: IntervalService;
  private readonly leaseMs: number;
  private readonly misfireMs: number;
  private readonly retentionMs: number;
  private readonly concurrency: number;
  /** This instance's id in execution rows. */
  readonly instanceId: string;

  constructor(
    private readonly deps: SchedulerDeps,
    options: SchedulerOptions = {},
  ) {
    this.leaseMs = options.leaseMs ?? 30_000;
    this.misfireMs = options.misfireMs ?? 60_000;
    this.retentionMs = options.retentionMs ?? 30 * 86_400_000;
    this.instanceId = options.instanceId ?? `scheduler-${randomUUID().slice(0, 8)}`;
    this.concurrency = options.concurrency ?? 16;
    if (!Number.isSafeInteger(this.concurrency) || this.concurrency < 1) {
      throw new DocketError('VALIDATION_FAILED', 'scheduler.concurrency must be an integer ≥ 1', {
        field: 'concurrency',
      });
    }
    this.rows = new SchedulerStore(deps.store.systemDb);
    ({ locks: this.locks, owned: this.ownsLocks } = openLockBackend(
      options.locks,
      deps.store.systemDb,
    ));
    this.runner = {
      rows: this.rows,
      locks: this.locks,
      db: deps.store.systemDb,
      clock: deps.clock,
      ids: deps.ids,
      logger: deps.logger,
      leaseMs: this.leaseMs,
    };
    this.loop = new IntervalService(
      options.tickMs ?? 1000,
      () => this.pass(),
      (err) => deps.logger.error({ err }, 'scheduler pass failed'),
    );
  }

  /** Registers a task (validated now; persisted by the next pass). */
  register(task: TaskDefinition): void {
    const def = resolveTaskDefinition(task);
    if (this.tasks.has(def.name)) {
      throw new DocketError('VALIDATION_FAILED', `task ${def.name} is registered already`, {
        field: 'name',
        task: def.name,
      });
    }
    const work =
      def.handler !== null ? inlineWork(def.handler) : threadWork(def.module as string, def.export);
    this.tasks.set(def.name, { def, work });
    this.unsynced.add(def.name);
  }

  /** Names of the tasks registered on this instance. */
  registered(): string[] {
    return [...this.tasks.keys()];
  }

  /** Starts the tick loop. */
  async start(): Promise<void> {
    // An unreachable Redis or etcd stops the start here, with LOCKS_UNAVAILABLE naming it.
    await this.locks.start?.();
    await this.sync();
    await this.loop.start();
  }

  /** Stops the loop and waits (up to `deadlineMs`, default 10 s) for runs in progress. */
  async stop(o: { deadlineMs?: number } = {}): Promise<void> {
    await this.loop.stop();
    const runs = [...this.active.values()].map((r) => r.done);
    if (runs.length) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(runs),
        new Promise((r) => (timer = setTimeout(r, o.deadlineMs ?? 10_000))),
      ]);
      clearTimeout(timer);
    }
    if (this.ownsLocks) await this.locks.stop?.();
  }

  /** One pass now: recovery, heartbeats, due ticks. Returns the executions it started. */
  runOnce(): Promise<TaskExecution[]> {
    return this.pass();
  }

  /** Waits until every run this instance started has been recorded as finished. */
  async idle(): Promise<void> {
    while (this.active.size) await Promise.all([...this.active.values()].map((r) => r.done));
  }

  /** Persists definitions registered since the last sync (start and every pass do this). */
  async sync(): Promise<void> {
    if (this.unsynced.size === 0) return;
    const names = [...this.unsynced];
    this.unsynced = new Set();
    const defs: TaskDefinitionRow[] = names.map((n) => {
      const d = (this.tasks.get(n) as Registered).def;
      return { ...d, tenantId: d.tenant };
    });
    try {
      await this.rows.upsertDefinitions(defs, this.deps.clock.now());
    } catch (err) {
      for (const n of names) this.unsynced.add(n);
      throw err;
    }
  }

  private schedule(task: SchedulerTask): Schedule {
    const key = `${task.cron}\u0000${task.timezone}`;
    let s = this.schedules.get(key);
    if (!s) {
      s = parseSchedule(task.cron, task.timezone);
      this.schedules.set(key, s);
    }
    return s;
  }

  private async pass(): Promise<TaskExecution[]> {
    await this.sync();
    const now = this.deps.clock.now();
    const lost = await this.rows.failAbandoned(now);
    if (lost.length)
      this.deps.logger.warn(
        { executions: lost.map((e) => e.id) },
        'scheduler runs lost their instance',
      );
    await this.heartbeat(now);
    const tasks = (await this.rows.tasksByName(this.registered())).sort(
      (a, b) => a.priority - b.priority || (a.name < b.name ? -1 : 1),
    );
    const won = await this.claimDueTicks(
      tasks.filter((t) => t.enabled),
      now,
    );
    await this.startClaimed(tasks, won);
    return tasks.flatMap((t) => won.get(t.name) ?? []);
  }

  private async heartbeat(now: number): Promise<void> {
    const runs = [...this.active.values()];
    const running = await this.rows.extendLeases(
      runs.map((r) => r.execution.id),
      now + this.leaseMs,
    );
    // A run whose row is no longer running was canceled (from any instance): stop it here.
    for (const r of runs) if (!running.has(r.execution.id)) r.cancel();
    await forEachConcurrently(runs, this.concurrency, async (r) => {
      if (!r.grant) return;
      const kept = await this.locks
        .lockExtend({ grant: r.grant, leaseMs: this.leaseMs, now })
        .catch((err: unknown) => {
          this.deps.logger.error({ err, task: r.execution.task }, 'extending a task lock failed');
          return true;
        });
      if (!kept) {
        this.deps.logger.warn({ task: r.execution.task }, 'a running task lost its lock lease');
      }
    });
  }

  /**
   * Claims the due ticks of `tasks` (enabled, in start order): one multi-row insert that the
   * unique (task, scheduled_for) index admits once per tick across instances, then one guarded
   * move of every cursor past what was planned. Insert before move, so a crash in between
   * leaves a cursor another instance moves (its inserts conflict), never a lost tick. Returns
   * the executions this instance won, by task, in tick order.
   */
  private async claimDueTicks(
    tasks: readonly SchedulerTask[],
    now: number,
  ): Promise<Map<string, TaskExecution[]>> {
    const won = new Map<string, TaskExecution[]>();
    const add = (e: TaskExecution) => {
      const list = won.get(e.task);
      if (list) list.push(e);
      else won.set(e.task, [e]);
    };
    // Missed ticks (rare: after an outage) keep their per-task path, which moves the cursor.
    const misfired = new Set(
      tasks.filter((t) => t.nextRunAt !== null && t.nextRunAt < now - this.misfireMs),
    );
    const resumed = new Map<string, number | null>();
    await forEachConcurrently([...misfired], this.concurrency, async (task) => {
      try {
        const r = await this.claimMissed(task, now);
        if (!r) return; // another instance handled them
        resumed.set(task.name, r.next);
        if (r.claimed) add(r.claimed);
      } catch (err) {
        this.deps.logger.error({ err, task: task.name }, 'scheduling a task failed');
      }
    });
    const plans: TickPlan[] = [];
    for (const task of tasks) {
      const cursor = misfired.has(task) ? resumed.get(task.name) : task.nextRunAt;
      if (cursor === undefined) continue;
      const plan = this.planTicks(task, cursor, now);
      if (plan) plans.push(plan);
    }
    // An 'forbid' task runs one tick per pass; the others due with it (a late pass) are claimed
    // as skipped in the same insert rather than as runs finished one statement each.
    const rows = plans.flatMap((p) =>
      p.ticks.map((t, i) =>
        i === 0 || p.task.overlap === 'allow'
          ? this.newExecution(p.task, t, 'cron', now)
          : {
              ...this.newExecution(p.task, t, 'cron', now),
              status: 'skipped' as const,
              error: SAME_PASS,
            },
      ),
    );
    for (const e of await this.rows.claimTicks(rows)) add(e);
    await this.rows.moveCursors(
      plans.map((p) => ({
        name: p.task.name,
        expected: p.expected,
        next: p.next,
        version: p.task.version,
      })),
    );
    for (const list of won.values()) list.sort((a, b) => a.scheduledFor - b.scheduledFor);
    return won;
  }

  /** The ticks of `task` due at `now` from `cursor` (at most 1000), and the cursor after them. */
  private planTicks(task: SchedulerTask, cursor: number | null, now: number): TickPlan | null {
    const schedule = this.schedule(task);
    if (task.nextRunAt === null) {
      return { task, ticks: [], expected: null, next: schedule.next(now) };
    }
    const expected = cursor;
    const ticks: number[] = [];
    while (cursor !== null && cursor <= now && ticks.length < 1000) {
      ticks.push(cursor);
      cursor = schedule.next(cursor);
    }
    return ticks.length ? { task, ticks, expected, next: cursor } : null;
  }

  /**
   * Ticks missed while no instance ran: the cursor's guarded move elects the one instance that
   * records (skip) or claims (once) the latest missed tick. Null when another instance did.
   */
  private async claimMissed(
    task: SchedulerTask,
    now: number,
  ): Promise<{ next: number | null; claimed: TaskExecution | null } | null> {
    const schedule = this.schedule(task);
    const cursor = task.nextRunAt as number;
    let last: number = cursor;
    let missed = 1;
    for (
      let t = schedule.next(cursor);
      t !== null && t < now - this.misfireMs;
      t = schedule.next(t)
    ) {
      last = t;
      if (++missed > 100_000) break;
    }
    const next = schedule.next(last);
    const version = task.version;
    if (!(await this.rows.moveCursor({ name: task.name, expected: cursor, next, version }))) {
      return null;
    }
    const row = this.newExecution(task, last, 'cron', now);
    if (task.catchUp === 'once') {
      const [claimed] = await this.rows.claimTicks([row]);
      return { next, claimed: claimed ?? null };
    }
    await this.rows.insertExecution({
      ...row,
      status: 'skipped',
      error: `missed ${missed} tick(s) while no instance ran (catchUp: skip)`,
    });
    return { next, claimed: null };
  }

  /**
   * Starts the runs this pass won, task by task in priority order: up to `concurrency` tasks
   * take their locks at once, but no task's handler starts before an earlier task's. An
   * 'forbid' task starts at most one run per pass; its other won ticks are skipped.
   */
  private async startClaimed(
    tasks: readonly SchedulerTask[],
    won: Map<string, TaskExecution[]>,
  ): Promise<void> {
    const units = tasks.filter(
      (t) => won.get(t.name)?.some((e) => e.status === 'running') && this.tasks.has(t.name),
    );
    type Ready = { exec: TaskExecution; grant: LockGrant | null }[];
    await prepareConcurrentlyStartInOrder(
      units,
      this.concurrency,
      async (task): Promise<Ready> => {
        const execs = (won.get(task.name) as TaskExecution[]).filter((e) => e.status === 'running');
        try {
          if (task.overlap === 'allow') return execs.map((exec) => ({ exec, grant: null }));
          const [first, ...later] = execs as [TaskExecution, ...TaskExecution[]];
          for (const e of later) {
            await this.rows.finishExecution({
              id: e.id,
              status: 'skipped',
              now: this.deps.clock.now(),
              error: SAME_PASS,
            });
          }
          const grant = await takeRunLock(this.runner, task, first, null);
          return grant === 'skipped' ? [] : [{ exec: first, grant }];
        } catch (err) {
          this.deps.logger.error({ err, task: task.name }, 'starting a task run failed');
          await this.failUnstarted(execs, err);
          return [];
        }
      },
      (task, ready) => {
        const work = (this.tasks.get(task.name) as Registered).work;
        for (const { exec, grant } of ready) this.launch(task, work, exec, grant);
      },
    );
  }

  /** Records runs that could not be started as failed (else they wait for their lease). */
  private async failUnstarted(execs: readonly TaskExecution[], err: unknown): Promise<void> {
    for (const e of execs) {
      await this.rows
        .finishExecution({
          id: e.id,
          status: 'failed',
          now: this.deps.clock.now(),
          error: `the run could not be started: ${err instanceof Error ? err.message : String(err)}`,
        })
        .catch(() => undefined);
    }
  }

  private newExecution(
    task: SchedulerTask,
    scheduledFor: number,
    trigger: 'cron' | 'manual',
    now: number,
    traceId?: string,
  ) {
    return {
      id: this.deps.ids.next(),
      task: task.name,
      tenantId: task.tenantId,
      scheduledFor,
      trigger,
      status: 'running' as const,
      instanceId: this.instanceId,
      traceId: traceId ?? newTraceId(),
      now,
      leaseUntil: now + this.leaseMs,
    };
  }

  private launch(
    task: SchedulerTask,
    work: TaskWork,
    exec: TaskExecution,
    grant: LockGrant | null,
  ) {
    const run = launchRun(this.runner, task, work, exec, grant, () => this.active.delete(exec.id));
    this.active.set(exec.id, run);
  }

  private async visibleTask(name: string, scope: SchedulerScope, db?: Transaction<DocketDatabase>) {
    const task = typeof name === 'string' ? await this.rows.getTask(name, db) : undefined;
    if (!task || (scope.tenant !== undefined && task.tenantId !== scope.tenant)) {
      throw new DocketError('TASK_NOT_FOUND', `task ${String(name)} not found`, { task: name });
    }
    return task;
  }

  /** Every task the scope may see, by name. */
  listTasks(scope: SchedulerScope = {}): Promise<SchedulerTask[]> {
    return this.rows.listTasks(scope.tenant);
  }

  /** One task; TASK_NOT_FOUND if absent or not visible to the scope. */
  getTask(name: string, scope: SchedulerScope = {}): Promise<SchedulerTask> {
    return this.visibleTask(name, scope);
  }

  /** Enables or disables cron ticks (audited); effective on every instance's next pass. */
  setEnabled(
    name: string,
    enabled: boolean,
    o: SchedulerActorOptions = {},
  ): Promise<SchedulerTask> {
    return this.change(name, o, enabled ? 'scheduler.task_enabled' : 'scheduler.task_disabled', {
      enabled,
    });
  }

  /** Overrides the schedule (null restores the code's), audited; SCHEDULE_INVALID. */
  updateSchedule(
    name: string,
    schedule: { cron: string; timezone?: string } | null,
    o: SchedulerActorOptions = {},
  ): Promise<SchedulerTask> {
    const s = schedule === null ? null : parseSchedule(schedule?.cron, schedule?.timezone ?? 'UTC');
    return this.change(name, o, 'scheduler.task_rescheduled', {
      schedule: s ? { cron: s.cron, timezone: s.timezone } : null,
    });
  }

  private async change(
    name: string,
    o: SchedulerActorOptions,
    action: string,
    p: { enabled?: boolean; schedule?: { cron: string; timezone: string } | null },
  ): Promise<SchedulerTask> {
    const now = this.deps.clock.now();
    return this.deps.store.withSystemTransaction(async (trx) => {
      const before = await this.visibleTask(name, o, trx);
      const after = (await this.rows.updateRuntime(trx, { name, ...p, now })) as SchedulerTask;
      await this.audit(trx, before, action, o, now, {
        enabled: after.enabled,
        cron: after.cron,
        timezone: after.timezone,
      });
      return after;
    });
  }

  /**
   * Runs a task now through the same lock path as cron ticks (audited). TASK_DISABLED for a
   * disabled task, TASK_RUNNING while an 'forbid' task's lock is held, TASK_NOT_FOUND when it
   * is not registered on this instance.
   */
  async trigger(name: string, o: SchedulerActorOptions = {}): Promise<TaskExecution> {
    const task = await this.visibleTask(name, o);
    const reg = this.tasks.get(task.name);
    if (!reg) {
      throw new DocketError('TASK_NOT_FOUND', `task ${name} has no handler on this instance`, {
        task: name,
      });
    }
    if (!task.enabled) {
      throw new DocketError('TASK_DISABLED', `task ${name} is disabled; enable it to run it`, {
        task: name,
      });
    }
    const now = this.deps.clock.now();
    const row = this.newExecution(task, now, 'manual', now, resolveTraceId(o.traceId));
    let grant: LockGrant | null = null;
    if (task.overlap === 'forbid') {
      grant = await this.locks.lockAcquire({
        name: taskLockName(task.name),
        owner: row.id,
        leaseMs: this.leaseMs,
        now,
      });
      if (!grant) {
        throw new DocketError('TASK_RUNNING', `task ${name} is running (overlap: forbid)`, {
          task: name,
        });
      }
    }
    try {
      await this.deps.store.withSystemTransaction(async (trx) => {
        await this.rows.insertExecution({ ...row, fencingToken: grant?.token }, trx);
        await this.audit(trx, task, 'scheduler.task_triggered', o, now, { executionId: row.id });
      });
    } catch (err) {
      if (grant) await this.locks.lockRelease({ grant }).catch(() => undefined);
      throw err;
    }
    const exec = (await this.rows.getExecution(row.id)) as TaskExecution;
    this.launch(task, reg.work, exec, grant);
    return exec;
  }

  private async audit(
    trx: Transaction<DocketDatabase>,
    task: SchedulerTask,
    action: string,
    o: SchedulerActorOptions,
    now: number,
    data: Record<string, string | number | boolean | null>,
  ): Promise<void> {
    const prepared = prepareAuditEvent({
      tenant: task.tenantId,
      traceId: resolveTraceId(o.traceId),
      createdAt: now,
      action,
      resource: { type: 'scheduler_task', id: task.name, name: task.name },
      actor: principalFromActor(o.actor),
      metadata: data,
    });
    await appendAuditEvents(trx, [prepared], now);
  }

  /** A page of executions, newest first. */
  listExecutions(filter: ExecutionListFilter = {}, scope: SchedulerScope = {}) {
    if (
      filter.limit !== undefined &&
      (!Number.isInteger(filter.limit) || filter.limit < 1 || filter.limit > 500)
    ) {
      throw new DocketError('VALIDATION_FAILED', 'limit must be an integer 1–500', {
        field: 'limit',
      });
    }
    for (const s of filter.status ?? []) {
      if (!(EXECUTION_STATUSES as readonly string[]).includes(s)) {
        throw new DocketError('VALIDATION_FAILED', `status ${s} is not an execution status`, {
          field: 'status',
        });
      }
    }
    return this.rows.listExecutions({ ...filter, tenant: scope.tenant });
  }

  /**
   * Cancels a running execution (SPEC S-3 `canceled`, audited): its row becomes `canceled` at
   * once; the instance running it aborts the handler's signal at its next pass (within one
   * tick), gives it `graceMs`, terminates a thread task, and then releases the task lock.
   * EXECUTION_NOT_FOUND; EXECUTION_NOT_RUNNING when it already finished.
   */
  async cancelExecution(
    id: string,
    o: SchedulerActorOptions & { reason?: string } = {},
  ): Promise<TaskExecution> {
    const current = await this.getExecution(id, o);
    const now = this.deps.clock.now();
    const actor = o.actor ?? 'library';
    const reason = `canceled by ${actor}${o.reason ? `: ${o.reason.slice(0, 500)}` : ''}`;
    const canceled = await this.deps.store.withSystemTransaction(async (trx) => {
      const row = await this.rows.cancelExecution(trx, { id: current.id, now, reason });
      if (!row) return undefined;
      const task = await this.rows.getTask(row.task, trx);
      if (task)
        await this.audit(trx, task, 'scheduler.execution_canceled', o, now, {
          executionId: row.id,
          reason: o.reason ?? null,
        });
      return row;
    });
    if (!canceled) {
      const now2 = await this.getExecution(id, o);
      throw new DocketError(
        'EXECUTION_NOT_RUNNING',
        `execution ${id} is ${now2.status}; only a running execution can be canceled`,
        { id, status: now2.status },
      );
    }
    // Running here: stop it now rather than at the next pass.
    this.active.get(canceled.id)?.cancel();
    return canceled;
  }

  /** One execution; EXECUTION_NOT_FOUND if absent or not visible to the scope. */
  async getExecution(id: string, scope: SchedulerScope = {}): Promise<TaskExecution> {
    const e = /^[0-9a-f-]{36}$/i.test(String(id)) ? await this.rows.getExecution(id) : undefined;
    if (!e || (scope.tenant !== undefined && e.tenantId !== scope.tenant)) {
      throw new DocketError('EXECUTION_NOT_FOUND', `execution ${String(id)} not found`, { id });
    }
    return e;
  }

  /** Deletes finished executions past retention; returns how many. */
  async pruneOnce(): Promise<number> {
    const before = this.deps.clock.now() - this.retentionMs;
    let total = 0;
    for (;;) {
      const n = await this.rows.pruneExecutions(before, 1000);
      total += n;
      if (n < 1000) return total;
    }
  }

  /** Per-task stats over the last `windowMs` (default 24 h). */
  async stats(o: SchedulerScope & { task?: string; windowMs?: number } = {}): Promise<TaskStats[]> {
    const windowMs = o.windowMs ?? 86_400_000;
    if (!Number.isSafeInteger(windowMs) || windowMs < 1) {
      throw new DocketError('VALIDATION_FAILED', 'windowMs must be a positive integer', {
        field: 'windowMs',
      });
    }
    const tasks =
      o.task !== undefined ? [await this.visibleTask(o.task, o)] : await this.listTasks(o);
    const since = this.deps.clock.now() - windowMs;
    const out: TaskStats[] = [];
    for (const t of tasks) {
      const { rows, latest } = await this.rows.executionsSince(t.name, since);
      const finished = rows.filter((r) => ['succeeded', 'failed', 'timed_out'].includes(r.status));
      const succeeded = finished.filter((r) => r.status === 'succeeded').length;
      const durations = finished.map((r) => r.durationMs ?? 0).sort((a, b) => a - b);
      out.push({
        task: t.name,
        since,
        finished: finished.length,
        succeeded,
        failures: finished.length - succeeded,
        skipped: rows.filter((r) => r.status === 'skipped').length,
        successRate: finished.length ? succeeded / finished.length : null,
        avgDurationMs: durations.length
          ? durations.reduce((a, b) => a + b, 0) / durations.length
          : null,
        p95DurationMs: durations.length
          ? (durations[Math.ceil(0.95 * durations.length) - 1] as number)
          : null,
        lastRunAt: latest?.startedAt ?? null,
        lastStatus: latest?.status ?? null,
        nextRunAt: t.enabled ? t.nextRunAt : null,
      });
    }
    return out;
  }
}
