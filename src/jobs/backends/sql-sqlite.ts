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
  JobInsertOutcome,
} from '../backend.js';
import type { Job } from '../types.js';
import {
  claimedRowToJob,
  rowToJob,
  rowToJobState,
  type ClaimedJobRow,
  type JobRow,
  type StateRow,
} from './rows.js';
import { cursorPosition, fairShare, FairClaims } from './fair-claims.js';
import { newJobRow, SqlJobBackendBase, type JobInsertParams } from './sql-common.js';

// SQLite has one writer at a time, so a claim is a single UPDATE ... RETURNING over a
// sub-select: the statement is its own write transaction and no two claimers can pick the same
// row. Statements are prepared once and run synchronously on the raw connection through
// store.exclusive, so they never interleave with a caller's open transaction (they wait for
// it). Arrays travel as JSON and are expanded with json_each.

// What a claim returns: the columns it did not set itself (see claimedRowToJob).
const CLAIMED = `id, tenant_id, queue, type, payload, priority, available_at, attempts,
  max_attempts, last_error, idempotency_key, trace_id, timeout_ms, created_at`;

const STATE = `id, tenant_id, queue, type, status, available_at, lease_until, priority, trace_id,
  attempts`;

// What a claim may take besides being pending: due, and the claimer's filters (null = any).
const CLAIMABLE = `available_at <= @now
  and (@types is null or type in (select value from json_each(@types)))
  and (@excludeTypes is null or type not in (select value from json_each(@excludeTypes)))
  and (@queues is null or queue in (select value from json_each(@queues)))`;

const SQL = {
  // Claims are fair across tenants (fair-claims.ts): a round finds the ring's tenants with a
  // claimable job with nextTenant (a seek of jobs_fair each, which walks only what sorts
  // before the tenant's first claimable job: SQLite's partial index holds only live pending
  // rows, never claimed ones) and claims each tenant's share with claimTenant,
  // all inside one write transaction. INDEXED BY pins the ordered walk of the tenant's part of
  // jobs_fair: with statistics of a table that was all pending, SQLite's planner has chosen
  // worse claim plans before (bench/NOTES.md, "PRAGMA optimize").
  nextTenant: `
    select coalesce(
      (select min(tenant_id) from jobs indexed by jobs_fair
       where status = 'pending' and tenant_id > @after and ${CLAIMABLE}),
      (select min(tenant_id) from jobs indexed by jobs_fair
       where status = 'pending' and ${CLAIMABLE})) as tenant`,
  claimTenant: `
    update jobs set status = 'processing', attempts = attempts + 1, locked_by = @workerId,
      locked_at = @now, lease_until = @leaseUntil, updated_at = @now
    where id in (
      select id from jobs indexed by jobs_fair
      where tenant_id = @tenant and status = 'pending' and ${CLAIMABLE}
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
    select ${STATE} from jobs indexed by jobs_fair where status = 'pending'
      and (@tenant is null
        or (tenant_id, priority, available_at, id) > (@tenant, @priority, @availableAt, @id))
    order by tenant_id, priority, available_at, id limit @limit`,
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
  // The common enqueue (one job, no caller transaction), without building the query each time;
  // the conflict target is the partial unique index of idempotency keys, as in insertJobRows.
  insertOne: `
    insert into jobs (id, tenant_id, queue, type, payload, payload_hash, priority, status,
      available_at, attempts, max_attempts, idempotency_key, trace_id, timeout_ms, created_at,
      updated_at)
    values (@id, @tenant_id, @queue, @type, @payload, @payload_hash, @priority, @status,
      @available_at, @attempts, @max_attempts, @idempotency_key, @trace_id, @timeout_ms,
      @created_at, @updated_at)
    on conflict (tenant_id, idempotency_key) where idempotency_key is not null do nothing
    returning *`,
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
  private readonly fair = new FairClaims();

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

  /**
   * One job outside a caller's transaction (the common enqueue) through a prepared statement;
   * batches, transactions and a repeated idempotency key take the general path.
   */
  override async jobInsertMany(p: JobInsertParams): Promise<JobInsertOutcome[]> {
    const j = p.jobs[0];
    if (p.tx || p.jobs.length !== 1 || !j) return super.jobInsertMany(p);
    const row = await this.run(
      (s) => s.insertOne.get(newJobRow(p.tenant, j)) as JobRow | undefined,
    );
    // Its idempotency key is taken: the general path resolves the existing job (or conflict).
    if (!row) return super.jobInsertMany(p);
    this.notifyJobsAvailable();
    return [{ kind: 'inserted', job: rowToJob(row) }];
  }

  /** Claims due jobs round-robin across tenants (fair-claims.ts), a round per transaction. */
  async jobClaimBatch(p: JobClaimBatchParams): Promise<Job[]> {
    const claim = { now: p.now, workerId: p.workerId, leaseUntil: p.now + p.leaseMs };
    const params = {
      ...claim,
      types: p.types?.length ? JSON.stringify(p.types) : null,
      excludeTypes: p.excludeTypes?.length ? JSON.stringify(p.excludeTypes) : null,
      queues: p.queues?.length ? JSON.stringify(p.queues) : null,
    };
    const toJobs = (rows: unknown[]) =>
      (rows as ClaimedJobRow[]).map((r) => claimedRowToJob(r, claim));
    const jobs = p.tenant
      ? await this.run((s) =>
          toJobs(s.claimTenant.all({ ...params, tenant: p.tenant, limit: p.limit })),
        )
      : await this.fair.claim(p.limit, ({ limit, cursor }) =>
          this.run((s, db) =>
            db
              .transaction(() => {
                const ring = this.ring(s, params, cursor, limit);
                const claimed = ring.flatMap((tenant, i) =>
                  toJobs(
                    s.claimTenant.all({
                      ...params,
                      tenant,
                      limit: fairShare(limit, ring.length, i + 1),
                    }),
                  ),
                );
                const at = ring[cursorPosition(limit, ring.length) - 1] ?? null;
                return { jobs: claimed, tenants: ring.length, cursor: at };
                // BEGIN IMMEDIATE: the round reads (the ring) before it writes, and a deferred
                // transaction upgrading to a write after another process committed fails at once
                // with SQLITE_BUSY_SNAPSHOT instead of waiting (3 worker processes on one file: a
                // 10,000-job drain stalled past 120 s that way); taking the write lock up front
                // makes a second claimer wait on the busy timeout instead.
              })
              .immediate(),
          ),
        );
    return jobs.sort(
      (a, b) => a.priority - b.priority || a.availableAt - b.availableAt || (a.id < b.id ? -1 : 1),
    );
  }

  /** Up to `limit` tenants with claimable jobs, after `cursor` in tenant order and wrapping. */
  private ring(s: Statements, filters: object, cursor: string, limit: number): string[] {
    const ring: string[] = [];
    let after = cursor;
    while (ring.length < limit) {
      const { tenant } = s.nextTenant.get({ ...filters, after }) as { tenant: string | null };
      if (tenant === null || tenant === ring[0]) break;
      ring.push(tenant);
      after = tenant;
    }
    return ring;
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

  /** Pending jobs of every tenant, in (tenant, priority, available_at, id) order. */
  async jobPendingPage(p: { after?: JobState; limit: number }): Promise<JobState[]> {
    const rows = await this.run(
      (s) =>
        s.pendingPage.all({
          priority: p.after?.priority ?? null,
          availableAt: p.after?.availableAt ?? null,
          id: p.after?.id ?? null,
          tenant: p.after?.tenantId ?? null,
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
