// The scheduler's rows: tasks, executions and their guarded transitions (migration 012).
// Every state change is a single guarded statement whose affected-row count says whether it
// happened; nothing here assumes a transition took place.
import { sql, type Kysely, type Transaction } from 'kysely';
import { decodeCursor, encodeCursor } from '../jobs/backends/rows.js';
import type {
  DocketDatabase,
  SchedulerExecutionsTable,
  SchedulerTasksTable,
} from '../store/schema.js';
import type {
  ExecutionListFilter,
  ExecutionStatus,
  ExecutionTrigger,
  SchedulerTask,
  TaskExecution,
} from './types.js';

type Db = Kysely<DocketDatabase> | Transaction<DocketDatabase>;

/** The definition columns every instance upserts on start. */
export interface TaskDefinitionRow {
  name: string;
  tenantId: string;
  cron: string;
  timezone: string;
  timeoutMs: number;
  graceMs: number;
  priority: number;
  overlap: 'forbid' | 'allow';
  catchUp: 'skip' | 'once';
  enabled: boolean;
}

/** A new execution row. */
export interface NewExecution {
  id: string;
  task: string;
  tenantId: string;
  scheduledFor: number;
  trigger: ExecutionTrigger;
  status: 'running' | 'skipped';
  instanceId: string;
  traceId: string;
  now: number;
  leaseUntil: number;
  error?: string;
  /** Token of a lock taken before the insert (manual triggers). */
  fencingToken?: number;
}

// Rows per multi-row statement: 15 parameters a row stays far below SQLite's 32,766 and
// PostgreSQL's 65,535 bound parameters.
const CLAIM_CHUNK = 500;
const CURSOR_CHUNK = 200;

/** The column values of a new execution. */
function executionValues(e: NewExecution) {
  const finished = e.status !== 'running';
  return {
    id: e.id,
    task: e.task,
    tenant_id: e.tenantId,
    scheduled_for: e.scheduledFor,
    trigger_kind: e.trigger,
    status: e.status,
    instance_id: e.instanceId,
    fencing_token: e.fencingToken ?? null,
    trace_id: e.traceId,
    started_at: e.now,
    lease_until: finished ? null : e.leaseUntil,
    finished_at: finished ? e.now : null,
    duration_ms: finished ? 0 : null,
    error: e.error ?? null,
    stack: null,
  };
}

/** Converts a task row to the domain type. */
export function rowToTask(r: SchedulerTasksTable): SchedulerTask {
  return {
    name: r.name,
    tenantId: r.tenant_id,
    cron: r.cron_override ?? r.cron_default,
    timezone: r.timezone_override ?? r.timezone_default,
    defaultSchedule: { cron: r.cron_default, timezone: r.timezone_default },
    overridden: r.cron_override !== null,
    enabled: r.enabled === 1,
    timeoutMs: r.timeout_ms,
    graceMs: r.grace_ms,
    priority: r.priority,
    overlap: r.overlap as SchedulerTask['overlap'],
    catchUp: r.catch_up as SchedulerTask['catchUp'],
    nextRunAt: r.next_due_at === null ? null : Number(r.next_due_at),
    version: r.version,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

/** Converts an execution row to the domain type. */
export function rowToExecution(r: SchedulerExecutionsTable): TaskExecution {
  return {
    id: r.id,
    task: r.task,
    tenantId: r.tenant_id,
    scheduledFor: Number(r.scheduled_for),
    trigger: r.trigger_kind as ExecutionTrigger,
    status: r.status as ExecutionStatus,
    instanceId: r.instance_id,
    fencingToken: r.fencing_token === null ? null : Number(r.fencing_token),
    traceId: r.trace_id,
    startedAt: Number(r.started_at),
    finishedAt: r.finished_at === null ? null : Number(r.finished_at),
    durationMs: r.duration_ms === null ? null : Number(r.duration_ms),
    error: r.error,
    stack: r.stack,
  };
}

/** Queries and guarded updates of the scheduler tables. */
export class SchedulerStore {
  constructor(private readonly db: Kysely<DocketDatabase>) {}

  /** Inserts or refreshes the definitions; runtime state (enabled, override, cursor) is kept. */
  async upsertDefinitions(defs: readonly TaskDefinitionRow[], now: number): Promise<void> {
    for (const d of defs) {
      await this.db
        .insertInto('scheduler_tasks')
        .values({
          name: d.name,
          tenant_id: d.tenantId,
          cron_default: d.cron,
          timezone_default: d.timezone,
          cron_override: null,
          timezone_override: null,
          enabled: d.enabled ? 1 : 0,
          timeout_ms: d.timeoutMs,
          grace_ms: d.graceMs,
          priority: d.priority,
          overlap: d.overlap,
          catch_up: d.catchUp,
          next_due_at: null,
          version: 1,
          created_at: now,
          updated_at: now,
        })
        .onConflict((oc) =>
          oc.column('name').doUpdateSet((eb) => ({
            tenant_id: eb.ref('excluded.tenant_id'),
            cron_default: eb.ref('excluded.cron_default'),
            timezone_default: eb.ref('excluded.timezone_default'),
            timeout_ms: eb.ref('excluded.timeout_ms'),
            grace_ms: eb.ref('excluded.grace_ms'),
            priority: eb.ref('excluded.priority'),
            overlap: eb.ref('excluded.overlap'),
            catch_up: eb.ref('excluded.catch_up'),
          })),
        )
        .execute();
      // A changed code schedule (and no override) restarts the cursor from now.
      await this.db
        .updateTable('scheduler_tasks')
        .set({ next_due_at: null, updated_at: now })
        .where('name', '=', d.name)
        .where('cron_override', 'is', null)
        .where('next_due_at', 'is not', null)
        .where((eb) =>
          eb.or([eb('cron_default', '!=', d.cron), eb('timezone_default', '!=', d.timezone)]),
        )
        .execute();
    }
  }

  /** The rows of the named tasks. */
  async tasksByName(names: readonly string[]): Promise<SchedulerTask[]> {
    if (names.length === 0) return [];
    const rows = await this.db
      .selectFrom('scheduler_tasks')
      .selectAll()
      .where('name', 'in', names)
      .execute();
    return rows.map(rowToTask);
  }

  /** Every task, optionally only one tenant's, by name. */
  async listTasks(tenant?: string): Promise<SchedulerTask[]> {
    let q = this.db.selectFrom('scheduler_tasks').selectAll().orderBy('name');
    if (tenant !== undefined) q = q.where('tenant_id', '=', tenant);
    return (await q.execute()).map(rowToTask);
  }

  /** One task or undefined. */
  async getTask(name: string, db: Db = this.db): Promise<SchedulerTask | undefined> {
    const r = await db
      .selectFrom('scheduler_tasks')
      .selectAll()
      .where('name', '=', name)
      .executeTakeFirst();
    return r ? rowToTask(r) : undefined;
  }

  /** Sets the cursor if it is still `expected` (null = not scheduled yet). */
  async moveCursor(p: {
    name: string;
    expected: number | null;
    next: number | null;
    version: number;
  }): Promise<boolean> {
    const r = await this.db
      .updateTable('scheduler_tasks')
      .set({ next_due_at: p.next })
      .where('name', '=', p.name)
      .where('version', '=', p.version)
      .where('next_due_at', p.expected === null ? 'is' : '=', p.expected)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /**
   * Moves many cursors in one statement per chunk, each only if it is still `expected` at
   * `version` (the guard of moveCursor); returns the names whose cursor moved. One round trip
   * instead of one per task is what lets a pass keep up with many every-second tasks.
   */
  async moveCursors(
    moves: readonly {
      name: string;
      expected: number | null;
      next: number | null;
      version: number;
    }[],
  ): Promise<Set<string>> {
    const moved = new Set<string>();
    for (let i = 0; i < moves.length; i += CURSOR_CHUNK) {
      const chunk = moves.slice(i, i + CURSOR_CHUNK);
      const rows = await this.db
        .updateTable('scheduler_tasks')
        .set({
          // The cast types the parameters: alone inside CASE, PostgreSQL would read them as text.
          next_due_at: sql<number | null>`case ${sql.ref('name')} ${sql.join(
            chunk.map((m) => sql`when ${m.name} then cast(${m.next} as bigint)`),
            sql` `,
          )} end`,
        })
        .where((eb) =>
          eb.or(
            chunk.map((m) =>
              eb.and([
                eb('name', '=', m.name),
                eb('version', '=', m.version),
                m.expected === null
                  ? eb('next_due_at', 'is', null)
                  : eb('next_due_at', '=', m.expected),
              ]),
            ),
          ),
        )
        .returning('name')
        .execute();
      for (const r of rows) moved.add(r.name);
    }
    return moved;
  }

  /** Runtime change of enabled state or schedule (audited by the caller in `trx`). */
  async updateRuntime(
    trx: Transaction<DocketDatabase>,
    p: {
      name: string;
      enabled?: boolean;
      schedule?: { cron: string; timezone: string } | null;
      now: number;
    },
  ): Promise<SchedulerTask | undefined> {
    const r = await trx
      .updateTable('scheduler_tasks')
      .set((eb) => ({
        ...(p.enabled === undefined ? {} : { enabled: p.enabled ? 1 : 0 }),
        ...(p.schedule === undefined
          ? {}
          : {
              cron_override: p.schedule?.cron ?? null,
              timezone_override: p.schedule?.timezone ?? null,
            }),
        // The next tick is computed from now by the next pass: no catch-up for ticks passed
        // while disabled or under the old schedule.
        next_due_at: null,
        version: eb('version', '+', 1),
        updated_at: p.now,
      }))
      .where('name', '=', p.name)
      .returningAll()
      .executeTakeFirst();
    return r ? rowToTask(r) : undefined;
  }

  /** Claims a tick (or records a manual/skipped run); false when the tick was claimed already. */
  async insertExecution(e: NewExecution, db: Db = this.db): Promise<boolean> {
    const r = await db
      .insertInto('scheduler_executions')
      .values(executionValues(e))
      .onConflict((oc) =>
        // A literal, not a parameter: SQLite matches the target to the partial unique index only
        // when the WHERE is the index's own text (see src/alerts).
        oc
          .columns(['task', 'scheduled_for'])
          .where('trigger_kind', '=', sql.lit('cron'))
          .doNothing(),
      )
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) === 1;
  }

  /**
   * Claims many ticks with one multi-row insert per chunk; the unique index on (task,
   * scheduled_for) admits each tick once across instances, and the rows returned are the ticks
   * this call won (ON CONFLICT DO NOTHING returns only inserted rows, on both dialects).
   */
  async claimTicks(rows: readonly NewExecution[]): Promise<TaskExecution[]> {
    const won: TaskExecution[] = [];
    for (let i = 0; i < rows.length; i += CLAIM_CHUNK) {
      const inserted = await this.db
        .insertInto('scheduler_executions')
        .values(rows.slice(i, i + CLAIM_CHUNK).map(executionValues))
        .onConflict((oc) =>
          oc
            .columns(['task', 'scheduled_for'])
            .where('trigger_kind', '=', sql.lit('cron'))
            .doNothing(),
        )
        .returningAll()
        .execute();
      won.push(...inserted.map(rowToExecution));
    }
    return won;
  }

  /** Records the fencing token of the lock a running execution took. */
  async setFencingToken(id: string, token: number): Promise<void> {
    await this.db
      .updateTable('scheduler_executions')
      .set({ fencing_token: token })
      .where('id', '=', id)
      .where('status', '=', 'running')
      .execute();
  }

  /** Extends the heartbeat lease of running executions of this instance; returns the ids still running. */
  async extendLeases(ids: readonly string[], leaseUntil: number): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const rows = await this.db
      .updateTable('scheduler_executions')
      .set({ lease_until: leaseUntil })
      .where('id', 'in', ids)
      .where('status', '=', 'running')
      .returning('id')
      .execute();
    return new Set(rows.map((r) => r.id));
  }

  /** running → canceled, with who and why in `error`; the row, or undefined if not running. */
  async cancelExecution(
    trx: Transaction<DocketDatabase>,
    p: { id: string; now: number; reason: string },
  ): Promise<TaskExecution | undefined> {
    const r = await trx
      .updateTable('scheduler_executions')
      .set((eb) => ({
        status: 'canceled',
        finished_at: p.now,
        lease_until: null,
        duration_ms: eb(eb.val(p.now), '-', eb.ref('started_at')),
        error: p.reason,
      }))
      .where('id', '=', p.id)
      .where('status', '=', 'running')
      .returningAll()
      .executeTakeFirst();
    return r ? rowToExecution(r) : undefined;
  }

  /** running → a final status; false when the run was finished already (e.g. timed out). */
  async finishExecution(p: {
    id: string;
    status: Exclude<ExecutionStatus, 'running'>;
    now: number;
    error?: string | null;
    stack?: string | null;
  }): Promise<TaskExecution | undefined> {
    const r = await this.db
      .updateTable('scheduler_executions')
      .set((eb) => ({
        status: p.status,
        finished_at: p.now,
        lease_until: null,
        duration_ms: eb(eb.val(p.now), '-', eb.ref('started_at')),
        error: p.error ?? null,
        stack: p.stack ?? null,
      }))
      .where('id', '=', p.id)
      .where('status', '=', 'running')
      .returningAll()
      .executeTakeFirst();
    return r ? rowToExecution(r) : undefined;
  }

  /** Fails running executions whose instance stopped heart-beating (crash recovery). */
  async failAbandoned(now: number): Promise<TaskExecution[]> {
    const rows = await this.db
      .updateTable('scheduler_executions')
      .set((eb) => ({
        status: 'failed',
        finished_at: now,
        lease_until: null,
        duration_ms: eb(eb.val(now), '-', eb.ref('started_at')),
        error: 'the instance running this execution stopped (lease expired)',
      }))
      .where('status', '=', 'running')
      .where('lease_until', '<', now)
      .returningAll()
      .execute();
    return rows.map(rowToExecution);
  }

  /** One execution or undefined. */
  async getExecution(id: string): Promise<TaskExecution | undefined> {
    const r = await this.db
      .selectFrom('scheduler_executions')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return r ? rowToExecution(r) : undefined;
  }

  /** A page of executions, newest first (keyset on the time-sortable id). */
  async listExecutions(
    f: ExecutionListFilter & { tenant?: string },
  ): Promise<{ items: TaskExecution[]; nextCursor: string | null }> {
    const limit = f.limit ?? 50;
    let q = this.db.selectFrom('scheduler_executions').selectAll().orderBy('id', 'desc');
    if (f.tenant !== undefined) q = q.where('tenant_id', '=', f.tenant);
    if (f.task !== undefined) q = q.where('task', '=', f.task);
    if (f.status?.length) q = q.where('status', 'in', f.status);
    if (f.trigger !== undefined) q = q.where('trigger_kind', '=', f.trigger);
    if (f.cursor !== undefined) q = q.where('id', '<', decodeCursor(f.cursor));
    const rows = await q.limit(limit + 1).execute();
    const items = rows.slice(0, limit).map(rowToExecution);
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null };
  }

  /** Executions of a task started since `since` (for stats), plus the latest one. */
  async executionsSince(
    task: string,
    since: number,
  ): Promise<{ rows: TaskExecution[]; latest: TaskExecution | undefined }> {
    const rows = await this.db
      .selectFrom('scheduler_executions')
      .selectAll()
      .where('task', '=', task)
      .where('started_at', '>=', since)
      .execute();
    const latest = await this.db
      .selectFrom('scheduler_executions')
      .selectAll()
      .where('task', '=', task)
      .orderBy('id', 'desc')
      .limit(1)
      .executeTakeFirst();
    return { rows: rows.map(rowToExecution), latest: latest ? rowToExecution(latest) : undefined };
  }

  /** Deletes up to `limit` finished executions that finished before `before`; returns how many. */
  async pruneExecutions(before: number, limit: number): Promise<number> {
    const r = await this.db
      .deleteFrom('scheduler_executions')
      .where(
        'id',
        'in',
        this.db
          .selectFrom('scheduler_executions')
          .select('id')
          .where('status', '!=', 'running')
          .where('finished_at', '<', before)
          .limit(limit),
      )
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }
}
