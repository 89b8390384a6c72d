import type Database from 'better-sqlite3';
import type { SqliteStore } from '../../store/index.js';
import type {
  JobBackend,
  JobRef,
  JobState,
  KeyedJobClaims,
  JobBackendCapabilities,
  JobClaimBatchParams,
  JobCompletion,
  JobFailureParams,
} from '../backend.js';
import type { Job } from '../types.js';
import { claimedRowToJob, rowToJobState, type ClaimedJobRow, type StateRow } from './rows.js';
import { SqlJobBackendBase } from './sql-common.js';

// SQLite has one writer at a time, so a claim is a single UPDATE ... RETURNING over a
// sub-select: the statement is its own write transaction and no two claimers can pick the same
// row. Statements are prepared once and run synchronously on the raw connection while Kysely's
// connection mutex is held (store.exclusive), so they never interleave with a caller's open
// transaction. Arrays travel as JSON and are expanded with json_each.

// What a claim returns: the columns it did not set itself (see claimedRowToJob).
const CLAIMED = `id, tenant_id, queue, type, payload, priority, available_at, attempts,
  max_attempts, last_error, idempotency_key, trace_id, timeout_ms, created_at`;

const STATE = `id, tenant_id, queue, type, status, available_at, lease_until, priority, trace_id,
  attempts`;

const SQL = {
  claimAll: `
    update jobs set status = 'processing', attempts = attempts + 1, locked_by = @workerId,
      locked_at = @now, lease_until = @leaseUntil, updated_at = @now
    where id in (
      select id from jobs where status = 'pending' and available_at <= @now
      order by priority, available_at, id limit @limit)
    returning ${CLAIMED}`,
  claimFiltered: `
    update jobs set status = 'processing', attempts = attempts + 1, locked_by = @workerId,
      locked_at = @now, lease_until = @leaseUntil, updated_at = @now
    where id in (
      select id from jobs where status = 'pending' and available_at <= @now
        and (@types is null or type in (select value from json_each(@types)))
        and (@excludeTypes is null or type not in (select value from json_each(@excludeTypes)))
        and (@queues is null or queue in (select value from json_each(@queues)))
        and (@tenant is null or tenant_id = @tenant)
      order by priority, available_at, id limit @limit)
    returning ${CLAIMED}`,
  complete: `
    update jobs set status = 'succeeded', result = @result, locked_by = null, locked_at = null,
      lease_until = null, finished_at = @now, updated_at = @now
    where id = @id and locked_by = @workerId and status = 'processing'`,
  claimKeys: `
    update jobs set status = 'processing', attempts = attempts + 1, locked_by = @workerId,
      locked_at = @now, lease_until = @leaseUntil, updated_at = @now
    where id in (select value from json_each(@ids)) and status = 'pending' and available_at <= @now
    returning ${CLAIMED}`,
  states: `
    select ${STATE} from jobs where id in (select value from json_each(@ids))`,
  pendingPage: `
    select ${STATE} from jobs where status = 'pending'
      and (@priority is null or (priority, available_at, id) > (@priority, @availableAt, @id))
    order by priority, available_at, id limit @limit`,
  completeRemove: `
    delete from jobs where id = @id and locked_by = @workerId and status = 'processing'`,
  retry: `
    update jobs set status = 'pending', available_at = @availableAt, last_error = @error,
      locked_by = null, locked_at = null, lease_until = null, updated_at = @now
    where id = @id and locked_by = @workerId and status = 'processing'`,
  dlqBegin: `
    update jobs set status = 'dlq_pending', last_error = @error, locked_by = null,
      locked_at = null, lease_until = null, updated_at = @now
    where id = @id and locked_by = @workerId and status = 'processing'`,
  heartbeat: `
    update jobs set lease_until = @leaseUntil, updated_at = @now
    where id in (select value from json_each(@ids)) and locked_by = @workerId and status = 'processing'
    returning id`,
  release: `
    update jobs set status = 'pending', attempts = max(attempts - 1, 0), locked_by = null,
      locked_at = null, lease_until = null, updated_at = @now,
      available_at = coalesce(@availableAt, available_at)
    where id in (select value from json_each(@ids)) and locked_by = @workerId and status = 'processing'
    returning id`,
  reap: `
    update jobs
    set status = case when attempts >= max_attempts then 'dlq_pending' else 'pending' end,
      available_at = @now, locked_by = null, locked_at = null, lease_until = null, updated_at = @now,
      last_error = json_object('name', 'LEASE_EXPIRED',
        'message', 'the worker''s lease expired before the job finished',
        'attempt', attempts, 'at', @now)
    where id in (select id from jobs where status = 'processing' and lease_until < @now
                 order by lease_until limit @limit)
    returning id, status`,
} as const;

type Statements = { [K in keyof typeof SQL]: Database.Statement };

/** Jobs on SQLite: single-writer claims, prepared statements, in-process wake-ups. */
export class SqliteJobBackend extends SqlJobBackendBase implements JobBackend, KeyedJobClaims {
  readonly capabilities: JobBackendCapabilities = { crossProcessWakeups: false };
  private statements: Statements | undefined;

  constructor(private readonly sqliteStore: SqliteStore) {
    super(sqliteStore);
  }

  private run<T>(fn: (s: Statements, db: Database.Database) => T): Promise<T> {
    return this.sqliteStore.exclusive((db) => {
      this.statements ??= Object.fromEntries(
        Object.entries(SQL).map(([k, text]) => [k, db.prepare(text)]),
      ) as Statements;
      return fn(this.statements, db);
    });
  }

  /** Claims due jobs in one write statement. */
  async jobClaimBatch(p: JobClaimBatchParams): Promise<Job[]> {
    const filtered = Boolean(
      p.types?.length || p.excludeTypes?.length || p.queues?.length || p.tenant,
    );
    const base = {
      now: p.now,
      limit: p.limit,
      workerId: p.workerId,
      leaseUntil: p.now + p.leaseMs,
    };
    const rows = await this.run((s) =>
      filtered
        ? (s.claimFiltered.all({
            ...base,
            types: p.types?.length ? JSON.stringify(p.types) : null,
            excludeTypes: p.excludeTypes?.length ? JSON.stringify(p.excludeTypes) : null,
            queues: p.queues?.length ? JSON.stringify(p.queues) : null,
            tenant: p.tenant ?? null,
          }) as ClaimedJobRow[])
        : (s.claimAll.all(base) as ClaimedJobRow[]),
    );
    return rows
      .map((r) => claimedRowToJob(r, base))
      .sort(
        (a, b) =>
          a.priority - b.priority || a.availableAt - b.availableAt || (a.id < b.id ? -1 : 1),
      );
  }

  /** Completes many jobs in one transaction. */
  async jobCompleteMany(p: {
    workerId: string;
    items: JobCompletion[];
    now: number;
    remove?: boolean;
  }): Promise<string[]> {
    return this.run((s, db) =>
      db.transaction(() => {
        const done: string[] = [];
        for (const item of p.items) {
          const r = p.remove
            ? s.completeRemove.run({ id: item.id, workerId: p.workerId })
            : s.complete.run({
                id: item.id,
                result: item.resultJson,
                now: p.now,
                workerId: p.workerId,
              });
          if (r.changes === 1) done.push(item.id);
        }
        return done;
      })(),
    );
  }

  /** Claims named jobs that are pending and due (the Redis lane's store-side claim). */
  async jobClaimByKeys(p: {
    workerId: string;
    jobs: readonly JobRef[];
    now: number;
    leaseMs: number;
  }): Promise<Job[]> {
    if (p.jobs.length === 0) return [];
    const claim = { workerId: p.workerId, now: p.now, leaseUntil: p.now + p.leaseMs };
    const rows = await this.run(
      (s) =>
        s.claimKeys.all({
          ...claim,
          ids: JSON.stringify(p.jobs.map((j) => j.id)),
        }) as ClaimedJobRow[],
    );
    return rows.map((r) => claimedRowToJob(r, claim));
  }

  /** States of named jobs. */
  async jobStates(p: { jobs: readonly JobRef[] }): Promise<JobState[]> {
    if (p.jobs.length === 0) return [];
    const ids = JSON.stringify(p.jobs.map((j) => j.id));
    const rows = await this.run((s) => s.states.all({ ids }) as StateRow[]);
    return rows.map(rowToJobState);
  }

  /** Pending jobs of every tenant, in id order. */
  async jobPendingPage(p: { after?: JobState; limit: number }): Promise<JobState[]> {
    const rows = await this.run(
      (s) =>
        s.pendingPage.all({
          priority: p.after?.priority ?? null,
          availableAt: p.after?.availableAt ?? null,
          id: p.after?.id ?? null,
          limit: p.limit,
        }) as StateRow[],
    );
    return rows.map(rowToJobState);
  }

  /** Schedules a retry. */
  async jobRetry(p: JobFailureParams & { availableAt: number }): Promise<boolean> {
    return this.run(
      (s) =>
        s.retry.run({
          id: p.id,
          workerId: p.workerId,
          availableAt: p.availableAt,
          error: JSON.stringify(p.error),
          now: p.now,
        }).changes === 1,
    );
  }

  /** DLQ step 1. */
  async jobDeadLetterBegin(p: JobFailureParams): Promise<boolean> {
    return this.run(
      (s) =>
        s.dlqBegin.run({
          id: p.id,
          workerId: p.workerId,
          error: JSON.stringify(p.error),
          now: p.now,
        }).changes === 1,
    );
  }

  /** Extends leases. */
  async jobHeartbeat(p: {
    workerId: string;
    jobs: JobRef[];
    leaseUntil: number;
    now: number;
  }): Promise<string[]> {
    return this.run((s) =>
      (
        s.heartbeat.all({
          ids: JSON.stringify(p.jobs.map((j) => j.id)),
          workerId: p.workerId,
          leaseUntil: p.leaseUntil,
          now: p.now,
        }) as Array<{ id: string }>
      ).map((r) => r.id),
    );
  }

  /** Releases jobs back to pending. */
  async jobRelease(p: {
    workerId: string;
    jobs: JobRef[];
    now: number;
    availableAt?: number;
  }): Promise<string[]> {
    const ids = JSON.stringify(p.jobs.map((j) => j.id));
    const availableAt = p.availableAt ?? null;
    const rows = await this.run(
      (s) =>
        s.release.all({ ids, workerId: p.workerId, now: p.now, availableAt }) as Array<{
          id: string;
        }>,
    );
    if (rows.length) this.notifyJobsAvailable();
    return rows.map((r) => r.id);
  }

  /** Recovers expired leases. */
  async jobReapExpired(p: {
    now: number;
    limit: number;
  }): Promise<{ requeued: string[]; deadLettered: string[] }> {
    const rows = await this.run(
      (s) => s.reap.all({ now: p.now, limit: p.limit }) as Array<{ id: string; status: string }>,
    );
    if (rows.length) this.notifyJobsAvailable();
    return {
      requeued: rows.filter((r) => r.status === 'pending').map((r) => r.id),
      deadLettered: rows.filter((r) => r.status === 'dlq_pending').map((r) => r.id),
    };
  }

  /** Nothing to open: wake-ups are in-process on SQLite. */
  async start(): Promise<void> {}

  /** Nothing to close. */
  async stop(): Promise<void> {}
}
