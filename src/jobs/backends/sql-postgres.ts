import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { Logger } from '../../core/logger.js';
import type { DocketDatabase, PostgresStore } from '../../store/index.js';
import type {
  JobBackend,
  JobInsertOutcome,
  JobRef,
  JobState,
  KeyedJobClaims,
  JobBackendCapabilities,
  JobClaimBatchParams,
  JobCompletion,
  JobFailureParams,
} from '../backend.js';
import type { Job, NewJob } from '../types.js';
import {
  claimedRowToJob,
  rowToJobState,
  rowToJob,
  type ClaimedJobRow,
  type JobRow,
  type StateRow,
} from './rows.js';
import { FairClaims } from './fair-claims.js';
import { SqlJobBackendBase, type JobInsertParams } from './sql-common.js';

/** A row of CLAIM_FAIR: a claimed job (columns null when the round claimed none) and the round. */
type FairClaimRow = ClaimedJobRow & { ring_size: number; ring_cursor: string | null };

// Hot-path statements, one each, prepared by name so PostgreSQL plans them once per connection.
//
// Index budget (migration 003): the primary key is (tenant_id, id), so it also serves a tenant's
// newest-first listing, and retention finds finished jobs through a BRIN index. A claim therefore
// adds two index entries per job (primary key, jobs_lease) and a completion one (primary key)
// plus a BRIN range update, instead of three each: in a CPU-accounted 20,000-job drain
// PostgreSQL's share fell from ~850 to ~680 ms (bench/NOTES.md). The engine's writes name the
// tenant with the id (JobRef) so they stay index lookups.
// They run on the system pool (role docket_system): claiming is the engine's explicit
// cross-tenant operation; tenant-facing reads go through RLS-scoped tenant transactions.

// Claims are fair across tenants (SPEC Q-11; the rounds and their semantics are in
// fair-claims.ts). One statement is one round:
//
// - ring: the tenants with a claimable job (pending, due, matching the claimer's filters),
//   from the one after the cursor onwards and wrapping around, at most $2 of them. It is a
//   loose index scan of jobs_fair (tenant_id, priority, available_at, id): each step descends
//   to the next tenant_id and stops at its first claimable entry, so when every pending job is
//   claimable its cost grows with the tenants visited, not with their backlogs; PostgreSQL
//   stops the recursion as soon as it has $2 tenants. `lowest` (the first tenant, for the wrap) is computed only if needed. The
//   lateral is kept unflattened (offset 0) so each step's descent runs once, not once per use.
// - each ring tenant's share (fairShare in fair-claims.ts: $2 / n, one more for the first
//   $2 % n) is picked by an ordered walk of that tenant's part of jobs_fair with FOR UPDATE SKIP
//   LOCKED, so concurrent claimers never block on or double-claim a row, and no more rows are
//   locked than are claimed (shares add up to $2; no sort, no discarded locks).
// - one UPDATE leases the picked rows by ctid (a TID scan, not a join: the rows are locked by
//   this very statement, so their ctid cannot change before the UPDATE reaches them; the
//   earlier join on id re-probed the primary key for every row: 5,130 → 4,465 buffer hits for a
//   294-row claim).
// - every result row carries the ring's size and the next cursor, and a round that claimed
//   nothing still returns one row (job columns null), so the cursor moves past tenants with
//   nothing due instead of visiting them again.
//
// The filters are "($n is null or ...)" conditions checked per entry; they cannot change the
// plan, which is fixed by the tenant bounds and the ORDER BY on jobs_fair (and enable_sort =
// off on the claim pool, see claimPool). Trade-off: jobs a claimer cannot take (other types,
// not yet due) that sort before its own within a tenant are walked past, by the ring's step
// and by the pick; a claim whose types are rare among a large backlog of other types pays for
// that backlog (as the cross-tenant claim did before).
//
// Claims return only what a handler needs: payload_hash, result, locked_by and the other
// columns a claim fixes are known to the caller (claimedRowToJob), and each returned column is
// parsed per row in JavaScript.
const CLAIMED = `j.id, j.tenant_id, j.queue, j.type, j.payload, j.priority, j.available_at, j.attempts,
  j.max_attempts, j.last_error, j.idempotency_key, j.trace_id, j.timeout_ms, j.created_at`;

const LEASE = `status = 'processing', attempts = j.attempts + 1, locked_by = $3, locked_at = $1,
    lease_until = $1 + $4::bigint, updated_at = $1`;

// What a claim may take besides being pending: due, and the claimer's filters (null = any).
const CLAIMABLE = `available_at <= $1
  and ($6::text[] is null or type = any($6))
  and ($7::text[] is null or not (type = any($7)))
  and ($8::text[] is null or queue = any($8))`;

// The first claimable job's tenant after `after` (all tenants when null). Ordered by all of
// jobs_fair's columns, not written min(tenant_id): min() was planned as a walk of the primary
// key (tenant_id, id), which holds every finished job too (32 ms for one step of a tenant with
// a drained backlog, EXPLAIN ANALYZE on PostgreSQL 15); no other index has this order, and the
// claim pool's enable_sort = off rules out sorting.
const FIRST_TENANT = (after: string | null) => `(
    select tenant_id from jobs
    where status = 'pending' ${after ? `and tenant_id > ${after}` : ''} and ${CLAIMABLE}
    order by tenant_id, priority, available_at, id limit 1)`;

const NEXT_TENANT = (after: string) => `coalesce(${FIRST_TENANT(after)}, (select t from lowest))`;

const CLAIM_FAIR = `
with recursive lowest as (select ${FIRST_TENANT(null)} as t),
ring(tenant_id, pos, first) as (
  select s.t, 1, s.t from (select ${NEXT_TENANT('$5')} as t) s
  where s.t is not null
  union all
  select s.t, r.pos + 1, r.first
  from ring r cross join lateral (select ${NEXT_TENANT('r.tenant_id')} as t offset 0) s
  where r.pos < $2 and s.t <> r.first
),
sized as (
  select z.n, (select tenant_id from ring where pos = coalesce(nullif($2 % z.n, 0), z.n)) as cursor
  from (select count(*)::int as n from ring) z),
claimed as (
  update jobs j set ${LEASE}
  where j.ctid = any(array(
    select c.ctid from ring r cross join sized z cross join lateral unnest(array(
      select ctid from jobs
      where tenant_id = r.tenant_id and status = 'pending' and ${CLAIMABLE}
      order by priority, available_at, id
      limit $2 / z.n + case when r.pos <= $2 % z.n then 1 else 0 end
      for update skip locked)) as c(ctid)))
  returning ${CLAIMED}
)
select z.n as ring_size, z.cursor as ring_cursor, j.* from sized z left join claimed j on true`;

// A claim for one tenant (processBatch with a tenant): nothing to share, so the plain ordered
// walk of that tenant's part of jobs_fair. Runs on the system pool (see claimPool).
const CLAIM_TENANT = `
update jobs j set ${LEASE}
where j.ctid = any(array(
  select ctid from jobs
  where tenant_id = $5 and status = 'pending' and ${CLAIMABLE}
  order by priority, available_at, id
  limit $2
  for update skip locked))
returning ${CLAIMED}`;

// One job outside a caller's transaction (the common enqueue): a prepared single-row VALUES
// insert, parsed and planned once per connection. Against the general path's unnamed unnest
// statement it took a scratch one-row insert (10 ms apart, as the latency bench) from p50
// 1.26–1.31 to 0.92 ms on this machine; a repeated idempotency key inserts nothing and takes
// the general path, which resolves the existing job or reports the conflict.
const INSERT_ONE = `
insert into jobs (id, tenant_id, queue, type, payload, payload_hash, priority, status,
  available_at, attempts, max_attempts, idempotency_key, trace_id, timeout_ms, created_at,
  updated_at)
values ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, 0, $9, $10, $11, $12, $13, $13)
on conflict (tenant_id, idempotency_key) where idempotency_key is not null do nothing
returning *`;

// Rows of many jobs by key, as the ctid array an UPDATE's TID scan takes: one primary-key probe
// per (tenant_id, id) pair. Written as a LATERAL lookup behind LIMIT 1 (which keeps PostgreSQL
// from flattening it into a join it may reorder), so the plan is the same whatever the
// statistics say: with those of a freshly filled table the planner turned
// "tenant_id = any($t) and id = any($ids)" into a scan of the tenant's whole key range with id as
// a filter (EXPLAIN on 20,000 rows analyzed while empty), and an earlier join with unnest() into
// a nested loop that re-ran the unnest per job row (O(batch²): a 300-job completion took 44.9 ms
// against 11.2 ms).
//
// The ctids come from the statement's snapshot. A row that another transaction updates after
// it (the same worker's heartbeat racing its completion, say) has a new ctid, which the TID
// scan's EvalPlanQual recheck no longer matches (PostgreSQL 15.20 rechecks the TID list), so
// the row is skipped, not wrongly written. Every statement built on this is therefore followed,
// for the jobs it did not return, by its one-row twin keyed by (tenant_id, id) (see
// withKeyFallback), whose recheck re-evaluates the key and the guard on the newest version.
const ROWS_BY_KEY = (tenants: string, ids: string) => `j.ctid = any(array(
  select k.ctid from unnest(${tenants}::text[], ${ids}::uuid[]) as v(tenant_id, id)
  cross join lateral (
    select ctid from jobs where tenant_id = v.tenant_id and id = v.id limit 1) k))`;

// Completion of many jobs in one round trip (workers batch completions that finish while the
// previous batch is in flight). Guarded by lease holder and status (Q-4); each row's result is
// picked from the parallel array by array_position (a linear search in C over one batch).
//
// The status guard is written "coalesce(j.status, '') = 'processing'" (identical for the NOT
// NULL status column) so that it does not match the predicate of the partial index jobs_lease,
// whose entries include every 'processing' row version not yet vacuumed (auto_explain caught
// single completions of 108 ms and 192 ms scanning it).
//
// It runs on the claim connections (see claimPool), where enable_seqscan = off keeps a custom
// plan from choosing a sequential scan of jobs while the statistics still describe an emptier
// table.
const COMPLETE_MANY = `
update jobs j
set status = 'succeeded', result = ($2::text[])[array_position($1::uuid[], j.id)]::jsonb,
    locked_by = null, locked_at = null, lease_until = null, finished_at = $3, updated_at = $3
where ${ROWS_BY_KEY('$5', '$1')} and j.locked_by = $4 and coalesce(j.status, '') = 'processing'
returning j.id`;

// retention.succeededMs = 0: the completion is a delete, the cheapest write PostgreSQL has (no
// new row version, no index entry, one WAL record per row): in a CPU-accounted 20,000-job
// drain PostgreSQL's share fell from ~680 to ~520 ms. Same guard as COMPLETE_MANY.
const COMPLETE_MANY_REMOVE = `
delete from jobs j
where ${ROWS_BY_KEY('$2', '$1')} and j.locked_by = $3 and coalesce(j.status, '') = 'processing'
returning j.id`;

// Claim by key (the Redis lane names the jobs): the same lease as CLAIM_FAIR, guarded by
// status and due time; a job another claimer took first is rechecked by EvalPlanQual and
// skipped.
const CLAIM_KEYS = `
update jobs j set ${LEASE}
where ${ROWS_BY_KEY('$5', '$2')} and j.status = 'pending' and j.available_at <= $1
returning ${CLAIMED}`;

const STATE_COLUMNS = `j.id, j.tenant_id, j.queue, j.type, j.status, j.available_at, j.lease_until,
  j.priority, j.trace_id, j.attempts`;

const JOB_STATES = `select ${STATE_COLUMNS} from jobs j where ${ROWS_BY_KEY('$1', '$2')}`;

// Walks jobs_fair (tenant_id, priority, available_at, id) by keyset: no sort of the pending set
// per page.
const PENDING_PAGE = `
select ${STATE_COLUMNS} from jobs j
where j.status = 'pending'
  and ($5::text is null
    or (j.tenant_id, j.priority, j.available_at, j.id) > ($5, $1::int, $3::bigint, $4::uuid))
order by j.tenant_id, j.priority, j.available_at, j.id limit $2`;

// One-row twins of the ctid-array statements, for the rows those skipped (see ROWS_BY_KEY).
const COMPLETE_ONE = `
update jobs j
set status = 'succeeded', result = $2::jsonb, locked_by = null, locked_at = null,
    lease_until = null, finished_at = $3, updated_at = $3
where j.tenant_id = $5 and j.id = $1 and j.locked_by = $4 and coalesce(j.status, '') = 'processing'
returning j.id`;

const COMPLETE_ONE_REMOVE = `
delete from jobs j
where j.tenant_id = $2 and j.id = $1 and j.locked_by = $3 and coalesce(j.status, '') = 'processing'
returning j.id`;

const HEARTBEAT_ONE = `
update jobs j set lease_until = $3, updated_at = $4
where j.tenant_id = $5 and j.id = $1 and j.locked_by = $2 and j.status = 'processing'
returning j.id`;

const RELEASE_ONE = `
update jobs j set status = 'pending', attempts = greatest(j.attempts - 1, 0), locked_by = null,
  locked_at = null, lease_until = null, updated_at = $3, available_at = coalesce($5, j.available_at)
where j.tenant_id = $4 and j.id = $1 and j.locked_by = $2 and j.status = 'processing'
returning j.id`;

const RETRY = `
update jobs set status = 'pending', available_at = $3, last_error = $4::jsonb, locked_by = null,
  locked_at = null, lease_until = null, updated_at = $5
where tenant_id = $6 and id = $1 and locked_by = $2 and status = 'processing'`;

const DLQ_BEGIN = `
update jobs set status = 'dlq_pending', last_error = $3::jsonb, locked_by = null,
  locked_at = null, lease_until = null, updated_at = $4
where tenant_id = $5 and id = $1 and locked_by = $2 and status = 'processing'`;

const HEARTBEAT = `
update jobs j set lease_until = $3, updated_at = $4
where ${ROWS_BY_KEY('$5', '$1')} and j.locked_by = $2 and j.status = 'processing'
returning j.id`;

const RELEASE = `
update jobs j set status = 'pending', attempts = greatest(j.attempts - 1, 0), locked_by = null,
  locked_at = null, lease_until = null, updated_at = $3, available_at = coalesce($5, j.available_at)
where ${ROWS_BY_KEY('$4', '$1')} and j.locked_by = $2 and j.status = 'processing'
returning j.id`;

const REAP = `
with expired as (
  select ctid from jobs
  where status = 'processing' and lease_until < $1
  order by lease_until
  limit $2
  for update skip locked
)
update jobs j
set status = case when j.attempts >= j.max_attempts then 'dlq_pending' else 'pending' end,
    available_at = $1, locked_by = null, locked_at = null, lease_until = null, updated_at = $1,
    last_error = jsonb_build_object('name', 'LEASE_EXPIRED',
      'message', 'the worker''s lease expired before the job finished',
      'attempt', j.attempts, 'at', $1::bigint)
from expired where j.ctid = expired.ctid
returning j.id, j.status`;

const LISTEN_CHANNEL = 'docket_jobs';

/** The tenant of each job, parallel to its id (the key arrays of ROWS_BY_KEY). */
function tenantsOf(jobs: readonly JobRef[]): string[] {
  return jobs.map((j) => j.tenantId);
}

/** Jobs on PostgreSQL: SKIP LOCKED claims, batched completions, LISTEN/NOTIFY wake-ups. */
export class PostgresJobBackend extends SqlJobBackendBase implements JobBackend, KeyedJobClaims {
  readonly capabilities: JobBackendCapabilities = { crossProcessWakeups: true };
  private listener: pg.Client | undefined;
  private claims: pg.Pool | undefined;
  private completions: pg.Pool | undefined;
  private stopped = true;
  private readonly fair = new FairClaims();
  private reconnectTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly pgStore: PostgresStore,
    private readonly logger: Logger,
  ) {
    super(pgStore);
  }

  private query(name: string, text: string, values: unknown[]) {
    return this.pgStore.systemPool.query({ name, text, values });
  }

  /**
   * Connections for the worker's claims: the system pool's settings plus enable_sort = off.
   *
   * Why: the claim must walk an index in claim order and stop after `limit` rows. When the
   * table's statistics are stale, for example analyzed while every job had succeeded and then
   * hit by a burst of enqueues, PostgreSQL estimates one pending row, and every plan then costs
   * about the same; it regularly picked "index scan + sort of every pending row" and kept that
   * plan, so each claim cost O(backlog). auto_explain during `npm run bench` logged 1,397
   * claims (of ~2,000) of one 20,000-job drain with that plan, and the drain ran at 1.6k instead
   * of 6.7k jobs/s (concurrency 10). Disabling sort only on these connections leaves the ordered
   * walk as the plan whatever the statistics say. The fair claim (CLAIM_FAIR, every claim
   * not limited to one tenant) runs here; a claim for one tenant stays on the system pool,
   * where the planner may still sort a small matching set. Completions run on a pool of their
   * own with enable_seqscan = off, which keeps both statements on their indexes. Trade-off: a
   * worker for types that are rare among a large backlog of other types walks past that
   * backlog (within each tenant) instead of sorting its own jobs.
   *
   * Claims also commit with synchronous_commit = off: the commit returns before its WAL record
   * is flushed, which on this machine's disk takes a claim from ~2.8 ms to ~0.1 ms (pgbench,
   * one-row INSERT, one client: 354 vs 10,971 tps) and removes one fsync from every
   * enqueue-to-start path. A claim need not be durable: if the database crashes before the
   * record is flushed, the job is simply pending again and runs again, which at-least-once
   * delivery (Q-4) already allows; and any later durable commit (the job's completion) flushes
   * the WAL up to and including the claim. Completions stay durable on their own connections.
   */
  private claimPool(): pg.Pool {
    // Not started (or stopped): no extra connections to leak; the system pool serves.
    if (this.stopped) return this.pgStore.systemPool;
    this.claims ??= this.enginePool(
      'docket:claim',
      '-c enable_sort=off -c enable_seqscan=off -c synchronous_commit=off',
    );
    return this.claims;
  }

  /** Connections for completions: the claim pool's plan settings, durable commits. */
  private completionPool(): pg.Pool {
    if (this.stopped) return this.pgStore.systemPool;
    this.completions ??= this.enginePool('docket:complete', '-c enable_seqscan=off');
    return this.completions;
  }

  private enginePool(name: string, options: string): pg.Pool {
    const base = this.pgStore.systemPool.options;
    const pool = new pg.Pool({
      ...base,
      max: Math.min(2, base.max ?? 2),
      options: `${base.options ?? ''} ${options}`.trim(),
      application_name: name,
    });
    pool.on('error', (err) =>
      this.logger.warn({ err, pool: name }, 'idle PostgreSQL connection failed'),
    );
    return pool;
  }

  /** One job outside a transaction through INSERT_ONE; everything else takes the general path. */
  override async jobInsertMany(p: JobInsertParams): Promise<JobInsertOutcome[]> {
    const j = p.jobs[0];
    if (p.tx || p.jobs.length !== 1 || !j) return super.jobInsertMany(p);
    const values = [
      j.id,
      p.tenant,
      j.queue,
      j.type,
      j.payloadJson,
      j.payloadHash,
      j.priority,
      j.availableAt,
      j.maxAttempts,
      j.idempotencyKey,
      j.traceId,
      j.timeoutMs,
      j.createdAt,
    ];
    const res = await this.pgStore.withSystemStatement(() =>
      this.query('docket_insert_one', INSERT_ONE, values),
    );
    const row = res.rows[0] as JobRow | undefined;
    if (!row) return super.jobInsertMany(p);
    this.notifyJobsAvailable();
    return [{ kind: 'inserted', job: rowToJob(row) }];
  }

  /**
   * Bulk insert: one array parameter per column expanded by unnest, instead of Kysely's VALUES
   * list with 16 parameters per row (16,000 for a 1,000-job chunk) that PostgreSQL parses and
   * plans anew for each batch size. Measured by `npm run bench` (batch enqueue).
   */
  protected override async insertJobRows(
    trx: Kysely<DocketDatabase>,
    tenant: string,
    chunk: NewJob[],
  ): Promise<JobRow[]> {
    const col = <T>(f: (j: NewJob) => T): T[] => chunk.map(f);
    const res = await sql<JobRow>`
      insert into jobs (id, tenant_id, queue, type, payload, payload_hash, priority, status,
        available_at, attempts, max_attempts, idempotency_key, trace_id, timeout_ms, created_at,
        updated_at)
      select v.id, ${tenant}, v.queue, v.type, v.payload, v.payload_hash, v.priority, 'pending',
        v.available_at, 0, v.max_attempts, v.idempotency_key, v.trace_id, v.timeout_ms,
        v.created_at, v.created_at
      from unnest(
        ${col((j) => j.id)}::uuid[], ${col((j) => j.queue)}::text[], ${col((j) => j.type)}::text[],
        ${col((j) => j.payloadJson)}::jsonb[], ${col((j) => j.payloadHash)}::text[],
        ${col((j) => j.priority)}::int[], ${col((j) => j.availableAt)}::bigint[],
        ${col((j) => j.maxAttempts)}::int[], ${col((j) => j.idempotencyKey)}::text[],
        ${col((j) => j.traceId)}::text[], ${col((j) => j.timeoutMs)}::int[],
        ${col((j) => j.createdAt)}::bigint[])
        as v(id, queue, type, payload, payload_hash, priority, available_at, max_attempts,
             idempotency_key, trace_id, timeout_ms, created_at)
      on conflict (tenant_id, idempotency_key) where idempotency_key is not null do nothing
      returning *`.execute(trx);
    return res.rows;
  }

  /** Claims due jobs with SKIP LOCKED, round-robin across tenants (fair-claims.ts). */
  async jobClaimBatch(p: JobClaimBatchParams): Promise<Job[]> {
    const claimed = { workerId: p.workerId, now: p.now, leaseUntil: p.now + p.leaseMs };
    const filters = [
      p.types?.length ? p.types : null,
      p.excludeTypes?.length ? p.excludeTypes : null,
      p.queues?.length ? p.queues : null,
    ];
    const base = (limit: number) => [p.now, limit, p.workerId, p.leaseMs];
    let jobs: Job[];
    if (p.tenant) {
      const res = await this.query('docket_claim_tenant', CLAIM_TENANT, [
        ...base(p.limit),
        p.tenant,
        ...filters,
      ]);
      jobs = (res.rows as ClaimedJobRow[]).map((r) => claimedRowToJob(r, claimed));
    } else {
      jobs = await this.fair.claim(p.limit, async ({ limit, cursor }) => {
        const res = await this.claimPool().query({
          name: 'docket_claim_fair',
          text: CLAIM_FAIR,
          values: [...base(limit), cursor, ...filters],
        });
        const rows = res.rows as FairClaimRow[];
        return {
          jobs: rows.filter((r) => r.id !== null).map((r) => claimedRowToJob(r, claimed)),
          tenants: rows[0]?.ring_size ?? 0,
          cursor: rows[0]?.ring_cursor ?? null,
        };
      });
    }
    return jobs.sort(
      (a, b) => a.priority - b.priority || a.availableAt - b.availableAt || (a.id < b.id ? -1 : 1),
    );
  }

  /** Completes many jobs in one statement. */
  async jobCompleteMany(p: {
    workerId: string;
    items: JobCompletion[];
    now: number;
    remove?: boolean;
  }): Promise<string[]> {
    const pool = this.completionPool();
    const res = p.remove
      ? await pool.query({
          name: 'docket_complete_many_remove',
          text: COMPLETE_MANY_REMOVE,
          values: [p.items.map((i) => i.id), tenantsOf(p.items), p.workerId],
        })
      : await pool.query({
          name: 'docket_complete_many',
          text: COMPLETE_MANY,
          values: [
            p.items.map((i) => i.id),
            p.items.map((i) => i.resultJson),
            p.now,
            p.workerId,
            tenantsOf(p.items),
          ],
        });
    return this.withKeyFallback(p.items, res.rows, (i) =>
      p.remove
        ? pool.query({
            name: 'docket_complete_one_remove',
            text: COMPLETE_ONE_REMOVE,
            values: [i.id, i.tenantId, p.workerId],
          })
        : pool.query({
            name: 'docket_complete_one',
            text: COMPLETE_ONE,
            values: [i.id, i.resultJson, p.now, p.workerId, i.tenantId],
          }),
    );
  }

  /**
   * The ids a ctid-array statement wrote, plus those its one-row twin writes for the jobs it
   * skipped because they were updated concurrently (see ROWS_BY_KEY). The twin applies the
   * same guard, so a job that really was lost stays unwritten.
   */
  private async withKeyFallback<T extends JobRef>(
    items: readonly T[],
    rows: Array<{ id: string }>,
    one: (item: T) => Promise<pg.QueryResult>,
  ): Promise<string[]> {
    const done = rows.map((r) => r.id);
    if (done.length === items.length) return done;
    const seen = new Set(done);
    for (const item of items) {
      if (seen.has(item.id)) continue;
      if ((await one(item)).rowCount === 1) done.push(item.id);
    }
    return done;
  }

  /** Claims named jobs that are pending and due (the Redis lane's store-side claim). */
  async jobClaimByKeys(p: {
    workerId: string;
    jobs: readonly JobRef[];
    now: number;
    leaseMs: number;
  }): Promise<Job[]> {
    if (p.jobs.length === 0) return [];
    const res = await this.claimPool().query({
      name: 'docket_claim_keys',
      text: CLAIM_KEYS,
      values: [p.now, p.jobs.map((j) => j.id), p.workerId, p.leaseMs, tenantsOf(p.jobs)],
    });
    const claimed = { workerId: p.workerId, now: p.now, leaseUntil: p.now + p.leaseMs };
    return (res.rows as ClaimedJobRow[]).map((r) => claimedRowToJob(r, claimed));
  }

  /** States of named jobs. */
  async jobStates(p: { jobs: readonly JobRef[] }): Promise<JobState[]> {
    if (p.jobs.length === 0) return [];
    const res = await this.query('docket_job_states', JOB_STATES, [
      tenantsOf(p.jobs),
      p.jobs.map((j) => j.id),
    ]);
    return (res.rows as StateRow[]).map(rowToJobState);
  }

  /** Pending jobs of every tenant, in (tenant, priority, available_at, id) order. */
  async jobPendingPage(p: { after?: JobState; limit: number }): Promise<JobState[]> {
    const res = await this.query('docket_pending_page', PENDING_PAGE, [
      p.after?.priority ?? null,
      p.limit,
      p.after?.availableAt ?? null,
      p.after?.id ?? null,
      p.after?.tenantId ?? null,
    ]);
    return (res.rows as StateRow[]).map(rowToJobState);
  }

  /** Schedules a retry. */
  async jobRetry(p: JobFailureParams & { availableAt: number }): Promise<boolean> {
    const res = await this.query('docket_retry', RETRY, [
      p.id,
      p.workerId,
      p.availableAt,
      JSON.stringify(p.error),
      p.now,
      p.tenantId,
    ]);
    return res.rowCount === 1;
  }

  /** DLQ step 1. */
  async jobDeadLetterBegin(p: JobFailureParams): Promise<boolean> {
    const res = await this.query('docket_dlq_begin', DLQ_BEGIN, [
      p.id,
      p.workerId,
      JSON.stringify(p.error),
      p.now,
      p.tenantId,
    ]);
    return res.rowCount === 1;
  }

  /** Extends leases. */
  async jobHeartbeat(p: {
    workerId: string;
    jobs: JobRef[];
    leaseUntil: number;
    now: number;
  }): Promise<string[]> {
    const res = await this.query('docket_heartbeat', HEARTBEAT, [
      p.jobs.map((j) => j.id),
      p.workerId,
      p.leaseUntil,
      p.now,
      tenantsOf(p.jobs),
    ]);
    return this.withKeyFallback(p.jobs, res.rows, (j) =>
      this.query('docket_heartbeat_one', HEARTBEAT_ONE, [
        j.id,
        p.workerId,
        p.leaseUntil,
        p.now,
        j.tenantId,
      ]),
    );
  }

  /** Releases jobs back to pending. */
  async jobRelease(p: {
    workerId: string;
    jobs: JobRef[];
    now: number;
    availableAt?: number;
  }): Promise<string[]> {
    const at = p.availableAt ?? null;
    const res = await this.query('docket_release', RELEASE, [
      p.jobs.map((j) => j.id),
      p.workerId,
      p.now,
      tenantsOf(p.jobs),
      at,
    ]);
    return this.withKeyFallback(p.jobs, res.rows, (j) =>
      this.query('docket_release_one', RELEASE_ONE, [j.id, p.workerId, p.now, j.tenantId, at]),
    );
  }

  /** Recovers expired leases. */
  async jobReapExpired(p: {
    now: number;
    limit: number;
  }): Promise<{ requeued: string[]; deadLettered: string[] }> {
    const res = await this.query('docket_reap', REAP, [p.now, p.limit]);
    const rows = res.rows as Array<{ id: string; status: string }>;
    return {
      requeued: rows.filter((r) => r.status === 'pending').map((r) => r.id),
      deadLettered: rows.filter((r) => r.status === 'dlq_pending').map((r) => r.id),
    };
  }

  /** Opens the LISTEN connection (reconnecting with backoff if it drops). */
  async start(): Promise<void> {
    this.stopped = false;
    await this.connectListener(0);
  }

  private async connectListener(attempt: number): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client({
      connectionString: this.pgStore.connectionString,
      application_name: 'docket:listen',
      // A half-open TCP connection would otherwise leave workers silently on polling.
      keepAlive: true,
    });
    let retried = false;
    // Runs once per client however it failed (error event, end event or a failed connect).
    const retry = (err: unknown) => {
      if (retried) return;
      retried = true;
      client.removeAllListeners();
      client.on('error', () => undefined);
      client.end().catch(() => undefined);
      if (this.listener === client) this.listener = undefined;
      if (this.stopped) return;
      const delay = Math.min(30_000, 250 * 2 ** attempt);
      this.logger.warn(
        { err, delay },
        'LISTEN connection lost; workers fall back to polling until it returns',
      );
      this.reconnectTimer = setTimeout(() => void this.connectListener(attempt + 1), delay);
      this.reconnectTimer.unref();
    };
    client.on('error', retry);
    client.on('end', () => retry(new Error('LISTEN connection ended')));
    client.on('notification', () => this.notifyJobsAvailable());
    try {
      await client.connect();
      await client.query(`listen ${LISTEN_CHANNEL}`);
      this.listener = client;
      // Anything inserted while we were not listening is picked up by this wake-up.
      this.notifyJobsAvailable();
      attempt = 0;
    } catch (err) {
      retry(err);
    }
  }

  /** Closes the LISTEN connection and the claim connections. */
  async stop(): Promise<void> {
    this.stopped = true;
    const pools = [this.claims, this.completions];
    this.claims = undefined;
    this.completions = undefined;
    for (const pool of pools) await pool?.end().catch(() => undefined);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const l = this.listener;
    this.listener = undefined;
    if (l) {
      l.removeAllListeners();
      l.on('error', () => undefined);
      await l.end().catch(() => undefined);
    }
  }
}
