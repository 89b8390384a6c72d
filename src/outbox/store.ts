// Outbox rows on both stores (SPEC O-1 … O-5). Every state change is a guarded UPDATE (the
// expected state and, for a relay, its lease in the WHERE clause), and the database's trigger
// refuses any transition O-1 does not name, whoever writes.
import {
  CompiledQuery,
  Kysely,
  PostgresDialect,
  sql,
  type ExpressionBuilder,
  type PostgresPool,
  type PostgresPoolClient,
  type Transaction,
} from 'kysely';
import pg from 'pg';
import { appendAuditEvents, prepareAuditEvent, principalFromActor } from '../audit/index.js';
import type { JsonValue } from '../audit/content.js';
import { DocketError } from '../core/errors.js';
import { isUuid } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import type { Store } from '../store/index.js';
import type { DocketDatabase, OutboxEventsTable } from '../store/schema.js';
import type { OutboxEvent, OutboxStatus } from './types.js';

/** Characters of a topic; route patterns add `*`. */
export const TOPIC = /^[A-Za-z0-9._:-]{1,200}$/;
/** Characters of a route pattern (a topic plus `*`). */
export const ROUTE = /^[A-Za-z0-9._:*-]{1,200}$/;

/** Checks a route's topic pattern (CONFIG_INVALID). */
export function validateRoutePattern(pattern: string): void {
  if (!ROUTE.test(pattern)) {
    throw new DocketError(
      'CONFIG_INVALID',
      `outbox route topic ${JSON.stringify(pattern)} must be 1–200 of A-Z a-z 0-9 . _ : - *`,
      { name: 'outbox.routes', value: pattern },
    );
  }
}

/** Whether a topic matches a route pattern (`*` = any run of characters). */
export function topicMatches(pattern: string, topic: string): boolean {
  const re = new RegExp(
    `^${pattern
      .split('*')
      .map((p) => p.replace(/[.]/g, '\\.'))
      .join('.*')}$`,
  );
  return re.test(topic);
}

/** A route pattern as a PostgreSQL LIKE pattern (`_` escaped) or a SQLite GLOB pattern. */
function likePattern(pattern: string): string {
  return pattern.replace(/[\\%_]/g, (c) => `\\${c}`).replace(/\*/g, '%');
}

/** SQLite's claimable condition over `c` (see CLAIMABLE_PG). */
function sqliteClaimable(patterns: readonly string[], ordered: boolean) {
  return sql<boolean>`exists (select 1 from json_each(${JSON.stringify(patterns)}) r where c.topic glob r.value)
      and (${ordered ? 0 : 1} or c.key is null or not exists (
        select 1 from outbox_events o
        where o.tenant_id = c.tenant_id and o.key = c.key and o.id < c.id
          and o.status in ('pending', 'publishing', 'failed')))`;
}

/** The row as the API shows it. */
export function rowToEvent(r: OutboxEventsTable): OutboxEvent {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    topic: r.topic,
    key: r.key,
    payload: (typeof r.payload === 'string' ? JSON.parse(r.payload) : r.payload) as JsonValue,
    headers: (typeof r.headers === 'string' ? JSON.parse(r.headers) : r.headers) as Record<
      string,
      string
    >,
    traceId: r.trace_id,
    status: r.status as OutboxStatus,
    attempts: Number(r.attempts),
    maxAttempts: Number(r.max_attempts),
    availableAt: Number(r.available_at),
    leaseOwner: r.lease_owner,
    leaseUntil: r.lease_until === null ? null : Number(r.lease_until),
    lastError: r.last_error,
    sinksDone: JSON.parse(r.sinks_done) as string[],
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    publishedAt: r.published_at === null ? null : Number(r.published_at),
  };
}

/** A new event's row (validated by the service). */
export type NewOutboxRow = Omit<
  OutboxEventsTable,
  'status' | 'attempts' | 'lease_owner' | 'lease_until' | 'last_error' | 'published_at'
>;

// The PostgreSQL claim (see OutboxStore.claim for its shape). $1 owner, $2 lease until, $3 now,
// $4 limit, $5 LIKE patterns, $6 ordered. A named statement on the claim pool's connections:
// planned once per connection instead of on every claim (1.6–6 ms under load).
const claimablePg = (patterns: string, ordered: string) => `c.topic like any(${patterns}::text[])
  and (not ${ordered}::boolean or c.key is null or not exists (
    select 1 from outbox_events o
    where o.tenant_id = c.tenant_id and o.key = c.key and o.id < c.id
      and o.status in ('pending', 'publishing', 'failed')))`;
const CLAIMABLE_PG = claimablePg('$5', '$6');
const CLAIM_PG = `
update outbox_events e
set status = 'publishing', attempts = e.attempts + 1, lease_owner = $1, lease_until = $2,
    updated_at = $3
where (e.tenant_id, e.id) in (
  select x.tenant_id, x.id from (
    select * from (
      select c.tenant_id, c.id from outbox_events c
      where c.status = 'publishing' and c.lease_until < $3 and ${CLAIMABLE_PG}
      order by c.lease_until
      limit $4
      for update skip locked) expired
    union all
    select * from (
      select c.tenant_id, c.id from outbox_events c
      where c.status in ('pending', 'failed') and c.available_at <= $3 and ${CLAIMABLE_PG}
      order by c.available_at, c.id
      limit $4
      for update skip locked) due) x
  limit $4)
returning e.*`;

// A relay's batch marked published, under its lease: primary-key probes, as
// (tenant_id = $1 and id = any($2)) is an index condition of the (tenant_id, id) key.
const MARK_PUBLISHED_PG = `
update outbox_events
set status = 'published', lease_owner = null, lease_until = null, sinks_done = $4,
    published_at = $5, updated_at = $5
where tenant_id = $1 and id = any($2::uuid[]) and status = 'publishing' and lease_owner = $3
returning id`;

// In-store publication (see OutboxStore.publishInStore): the due events, locked for the
// transaction instead of leased. $1 now, $2 limit, $3 LIKE patterns, $4 ordered.
const SELECT_DUE_PG = `
select c.* from outbox_events c
where c.status in ('pending', 'failed') and c.available_at <= $1 and ${claimablePg('$3', '$4')}
order by c.available_at, c.id
limit $2
for update skip locked`;

// …and marked published in the same transaction: `pending | failed → published`.
const MARK_IN_STORE_PG = `
update outbox_events
set status = 'published', attempts = attempts + 1, sinks_done = $3, published_at = $4,
    updated_at = $4
where tenant_id = $1 and id = any($2::uuid[]) and status in ('pending', 'failed')`;

/** Statements of the claim connections run as named (prepared once per connection) statements. */
const NAMED_ON_CLAIM_POOL = new Map([
  [SELECT_DUE_PG, 'docket_outbox_select_due'],
  [MARK_IN_STORE_PG, 'docket_outbox_mark_in_store'],
]);

/**
 * A pool for Kysely over the claim connections that sends the statements above as named ones
 * (Kysely itself has no prepared statements).
 */
function namedStatementPool(pool: pg.Pool): PostgresPool {
  return {
    async connect() {
      const client = await pool.connect();
      return {
        // Kysely streams no results here, so only the (text, values) form is used.
        query: ((text: string, values: ReadonlyArray<unknown>) => {
          const name = NAMED_ON_CLAIM_POOL.get(text);
          return client.query(name ? { name, text, values: [...values] } : text, [...values]);
        }) as unknown as PostgresPoolClient['query'],
        release: () => client.release(),
      };
    },
    end: () => Promise.resolve(),
  };
}

/** What a relay's in-store publication of one batch did. */
export interface InStorePublication {
  /** The events published (empty when none was due). */
  events: OutboxEvent[];
  /** The transaction they were published in (committed). */
  trx: Transaction<DocketDatabase> | undefined;
}

/** Outbox reads and guarded writes. */
export class OutboxStore {
  private claims: pg.Pool | undefined;
  private claimDb: Kysely<DocketDatabase> | undefined;

  constructor(
    private readonly store: Store,
    private readonly logger?: Logger,
  ) {}

  /**
   * Connections for PostgreSQL claims, with settings of their own:
   * - synchronous_commit = off: a claim need not be durable. Lost in a crash, its events are
   *   simply claimable again and published again (at least once, O-2), and the relay's durable
   *   mark-published commit flushes it anyway. Not waiting for its WAL flush saves a disk sync
   *   (~2.8 ms on the benchmark host) per batch; the job queue's claims do the same.
   * - enable_sort = off keeps the ordered index walks whatever the statistics say: with those
   *   of a table analyzed while empty, PostgreSQL bitmap-scanned and sorted every due row.
   * - jit = off: the walk's estimated cost (the planner expects the topic filter to drop most
   *   rows) passes jit_above_cost, and compiling the plan took ~60 ms of every 100-event claim
   *   (auto_explain: the Limit started at 59.6 ms over an Append done at 0.3 ms; the drain went
   *   from 1.3k to 3.5k events/s without it).
   */
  private claimPool(): pg.Pool {
    if (this.store.dialect !== 'postgres') throw new Error('claim pool is PostgreSQL only');
    if (this.claims) return this.claims;
    const base = this.store.systemPool.options;
    const pool = new pg.Pool({
      ...base,
      max: 2,
      options:
        `${base.options ?? ''} -c synchronous_commit=off -c enable_sort=off -c jit=off`.trim(),
      application_name: 'docket:outbox-claim',
    });
    // An idle connection that breaks is dropped by the pool; the next claim opens another.
    pool.on('error', (err) => this.logger?.warn({ err }, 'idle outbox claim connection failed'));
    return (this.claims = pool);
  }

  /** Kysely over the claim connections (PostgreSQL), for in-store publication. */
  private claimKysely(): Kysely<DocketDatabase> {
    this.claimDb ??= new Kysely<DocketDatabase>({
      dialect: new PostgresDialect({ pool: namedStatementPool(this.claimPool()) }),
    });
    return this.claimDb;
  }

  /**
   * In-store publication of one batch (SPEC O-2, O-6; migration 016): in one transaction, the
   * due events are locked (SKIP LOCKED: relays take disjoint batches) instead of leased, handed
   * to `publish` with that transaction (it returns each event's sinks accepted), and marked
   * `published`; all of it commits together or
   * not at all, so nothing is lost and no event yields two jobs. Only due pending and failed
   * events are taken (expired leases go through `claim`); per-key ordering holds as in `claim`.
   * On PostgreSQL the transaction runs on the claim connections, whose commits are asynchronous:
   * a commit lost in a crash loses the sink's rows and the mark together, and the events are
   * pending again. A throw from `publish` rolls everything back and is rethrown.
   */
  async publishInStore(
    p: { now: number; limit: number; patterns: readonly string[]; ordered: boolean },
    publish: (
      trx: Transaction<DocketDatabase>,
      events: OutboxEvent[],
    ) => Promise<ReadonlyMap<string, readonly string[]>>,
  ): Promise<InStorePublication> {
    const none: InStorePublication = { events: [], trx: undefined };
    if (p.patterns.length === 0) return none;
    const mark = async (
      trx: Transaction<DocketDatabase>,
      events: OutboxEvent[],
      sinksDone: ReadonlyMap<string, readonly string[]>,
    ) => {
      // One statement per (tenant, sinks accepted): one for a batch of one tenant and route.
      const groups = new Map<string, { tenant: string; done: string; ids: string[] }>();
      for (const e of events) {
        const done = JSON.stringify(sinksDone.get(e.id) ?? e.sinksDone);
        const k = `${e.tenantId}\u0000${done}`;
        const g = groups.get(k);
        if (g) g.ids.push(e.id);
        else groups.set(k, { tenant: e.tenantId, done, ids: [e.id] });
      }
      let marked = 0;
      for (const { tenant, ids, done } of groups.values()) {
        if (this.store.dialect === 'postgres') {
          const r = await trx.executeQuery(
            CompiledQuery.raw(MARK_IN_STORE_PG, [tenant, ids, done, p.now]),
          );
          marked += Number(r.numAffectedRows ?? 0);
        } else {
          const r = await trx
            .updateTable('outbox_events')
            .set((eb) => ({
              status: 'published',
              attempts: eb('attempts', '+', 1),
              sinks_done: done,
              published_at: p.now,
              updated_at: p.now,
            }))
            .where('tenant_id', '=', tenant)
            .where('id', 'in', ids)
            .where('status', 'in', ['pending', 'failed'])
            .executeTakeFirst();
          marked += Number(r.numUpdatedRows);
        }
      }
      // The rows are locked by this transaction: anything else is a bug, and rolls back.
      if (marked !== events.length) {
        throw new Error(`in-store publication marked ${marked} of ${events.length} events`);
      }
    };
    const run = async (trx: Transaction<DocketDatabase>): Promise<InStorePublication> => {
      const rows =
        this.store.dialect === 'postgres'
          ? (
              await trx.executeQuery<OutboxEventsTable>(
                CompiledQuery.raw(SELECT_DUE_PG, [
                  p.now,
                  p.limit,
                  p.patterns.map(likePattern),
                  p.ordered,
                ]),
              )
            ).rows
          : (
              await sql<OutboxEventsTable>`
                select c.* from outbox_events c
                where c.status in ('pending', 'failed') and c.available_at <= ${p.now}
                  and ${sqliteClaimable(p.patterns, p.ordered)}
                order by c.available_at, c.id
                limit ${p.limit}`.execute(trx)
            ).rows;
      if (rows.length === 0) return none;
      const events = rows.map(rowToEvent);
      await mark(trx, events, await publish(trx, events));
      return { events, trx };
    };
    if (this.store.dialect === 'postgres') {
      return this.claimKysely().transaction().execute(run);
    }
    return this.store.withSystemTransaction(run);
  }

  /** Closes the claim connections (PostgreSQL). */
  async close(): Promise<void> {
    const pool = this.claims;
    this.claims = undefined;
    const db = this.claimDb;
    this.claimDb = undefined;
    await db?.destroy().catch(() => undefined);
    await pool?.end().catch(() => undefined);
  }

  /** Inserts events in the caller's transaction (they commit or roll back with it). */
  async add(trx: Transaction<DocketDatabase>, rows: readonly NewOutboxRow[]): Promise<void> {
    if (rows.length === 0) return;
    await trx
      .insertInto('outbox_events')
      .values(
        rows.map((r) => ({
          ...r,
          status: 'pending',
          attempts: 0,
          lease_owner: null,
          lease_until: null,
          last_error: null,
          published_at: null,
        })),
      )
      .execute();
    // Relays in other processes wake at commit (PostgreSQL delivers NOTIFY only then).
    if (this.store.dialect === 'postgres') {
      await sql`select pg_notify('docket_outbox', '')`.execute(trx);
    }
  }

  /**
   * Claims up to `limit` due events whose topic has a route: publishing ones whose lease
   * expired (a relay died mid-batch) first, then pending ones and failed ones whose retry is
   * due, oldest first. With `ordered`, an event is claimable only when no earlier event of its
   * key is still unfinished (pending, publishing or failed), so a key's events go out one at a
   * time, in order.
   *
   * Why two branches and no ORDER BY over both: one `status in (…) and available_at <= now or
   * status = 'publishing' and lease_until < now` condition cannot walk an index in claim order,
   * so PostgreSQL read every due row and sorted them for each claim (EXPLAIN ANALYZE with 20,000
   * pending events: a bitmap scan of all 20,000 and a sort, 118 ms per 100-event claim; the
   * relay drained 1.3k events/s). Each branch here is an ordered walk of its own partial index
   * (outbox_leases, outbox_due) that stops after `limit` rows, and the outer LIMIT stops
   * reading the due branch once the expired ones (almost always none) and the due ones add up
   * to `limit`. Expired leases come first so recovery never waits behind a backlog.
   * Trade-off of the ordered walk: due events of topics no route names (left pending) that sort
   * before routed ones are walked past by every claim, as the job queue's claims walk past other
   * types.
   */
  async claim(p: {
    owner: string;
    now: number;
    leaseMs: number;
    limit: number;
    patterns: readonly string[];
    ordered: boolean;
  }): Promise<OutboxEvent[]> {
    if (p.patterns.length === 0) return [];
    const leaseUntil = p.now + p.leaseMs;
    if (this.store.dialect === 'postgres') {
      const res = await this.claimPool().query<OutboxEventsTable>({
        name: 'docket_outbox_claim',
        text: CLAIM_PG,
        values: [p.owner, leaseUntil, p.now, p.limit, p.patterns.map(likePattern), p.ordered],
      });
      return res.rows.map(rowToEvent).sort(byTime);
    }
    const claimable = sqliteClaimable(p.patterns, p.ordered);
    return this.store.withSystemTransaction(async (trx) => {
      const res = await sql<OutboxEventsTable>`
        update outbox_events
        set status = 'publishing', attempts = attempts + 1, lease_owner = ${p.owner},
            lease_until = ${leaseUntil}, updated_at = ${p.now}
        where (tenant_id, id) in (
          select tenant_id, id from (
            select * from (
              select c.tenant_id, c.id from outbox_events c
              where c.status = 'publishing' and c.lease_until < ${p.now} and ${claimable}
              order by c.lease_until
              limit ${p.limit})
            union all
            select * from (
              select c.tenant_id, c.id from outbox_events c
              where c.status in ('pending', 'failed') and c.available_at <= ${p.now}
                and ${claimable}
              order by c.available_at, c.id
              limit ${p.limit}))
          limit ${p.limit})
        returning *`.execute(trx);
      return res.rows.map(rowToEvent).sort(byTime);
    });
  }

  /** Extends this relay's leases; returns the ids still held. */
  async extend(p: { owner: string; events: readonly OutboxEvent[]; leaseUntil: number }) {
    if (p.events.length === 0) return [];
    return this.store.withSystemStatement(async (db) => {
      const rows = await db
        .updateTable('outbox_events')
        .set({ lease_until: p.leaseUntil })
        .where('status', '=', 'publishing')
        .where('lease_owner', '=', p.owner)
        .where(
          'id',
          'in',
          p.events.map((e) => e.id),
        )
        .returning('id')
        .execute();
      return rows.map((r) => r.id);
    });
  }

  /** `publishing → published`, only under this relay's lease. */
  async markPublished(p: {
    owner: string;
    event: OutboxEvent;
    sinksDone: readonly string[];
    now: number;
  }): Promise<boolean> {
    return this.store.withSystemStatement(async (db) => {
      const r = await db
        .updateTable('outbox_events')
        .set({
          status: 'published',
          lease_owner: null,
          lease_until: null,
          sinks_done: JSON.stringify(p.sinksDone),
          published_at: p.now,
          updated_at: p.now,
        })
        .where(heldBy(p.owner, p.event))
        .executeTakeFirst();
      return Number(r.numUpdatedRows) === 1;
    });
  }

  /**
   * `publishing → published` for a relay's batch, only under this relay's lease: one UPDATE
   * per (tenant, sinks accepted) group, which is one for a batch of one tenant whose events all
   * went to the same sinks; on PostgreSQL all groups commit together. Returns the ids marked (an
   * event whose lease was lost is not among them).
   */
  async markPublishedMany(p: {
    owner: string;
    items: ReadonlyArray<{ event: OutboxEvent; sinksDone: readonly string[] }>;
    now: number;
  }): Promise<Set<string>> {
    const marked = new Set<string>();
    if (p.items.length === 0) return marked;
    const groups = new Map<string, { tenant: string; done: string; ids: string[] }>();
    for (const { event, sinksDone } of p.items) {
      const done = JSON.stringify(sinksDone);
      const k = `${event.tenantId}\u0000${done}`;
      const g = groups.get(k);
      if (g) g.ids.push(event.id);
      else groups.set(k, { tenant: event.tenantId, done, ids: [event.id] });
    }
    if (this.store.dialect === 'postgres') {
      // A named statement (planned once per connection), autocommit for the usual single
      // group; several groups commit together in one transaction.
      const pool = this.store.systemPool;
      const run = async (q: pg.Pool | pg.PoolClient) => {
        for (const g of groups.values()) {
          const res = await q.query<{ id: string }>({
            name: 'docket_outbox_mark_published',
            text: MARK_PUBLISHED_PG,
            values: [g.tenant, g.ids, p.owner, g.done, p.now],
          });
          for (const r of res.rows) marked.add(r.id);
        }
      };
      if (groups.size === 1) await run(pool);
      else {
        const client = await pool.connect();
        try {
          await client.query('begin');
          await run(client);
          await client.query('commit');
        } catch (err) {
          await client.query('rollback').catch(() => undefined);
          throw err;
        } finally {
          client.release();
        }
      }
      return marked;
    }
    await this.store.withSystemTransaction(async (trx) => {
      for (const g of groups.values()) {
        const rows = await trx
          .updateTable('outbox_events')
          .set({
            status: 'published',
            lease_owner: null,
            lease_until: null,
            sinks_done: g.done,
            published_at: p.now,
            updated_at: p.now,
          })
          .where('tenant_id', '=', g.tenant)
          .where('id', 'in', g.ids)
          .where('status', '=', 'publishing')
          .where('lease_owner', '=', p.owner)
          .returning('id')
          .execute();
        for (const r of rows) marked.add(r.id);
      }
    });
    return marked;
  }

  /**
   * `publishing → failed` (a retry at `availableAt`) or `→ dead` with its error recorded and,
   * for dead, an audit row in the same transaction. Only under this relay's lease.
   */
  async markFailed(p: {
    owner: string;
    event: OutboxEvent;
    sinksDone: readonly string[];
    error: string;
    dead: boolean;
    availableAt: number;
    now: number;
  }): Promise<boolean> {
    return this.store.withSystemTransaction(async (trx) => {
      const r = await trx
        .updateTable('outbox_events')
        .set({
          status: p.dead ? 'dead' : 'failed',
          lease_owner: null,
          lease_until: null,
          last_error: p.error.slice(0, 2000),
          sinks_done: JSON.stringify(p.sinksDone),
          available_at: p.availableAt,
          updated_at: p.now,
        })
        .where(heldBy(p.owner, p.event))
        .executeTakeFirst();
      const ok = Number(r.numUpdatedRows) === 1;
      if (ok && p.dead) {
        await this.audit(trx, p.event, 'outbox.event_dead', 'system:relay', p.now, {
          attempts: p.event.attempts,
          error: p.error.slice(0, 500),
        });
      }
      return ok;
    });
  }

  /** One event of a tenant, or null. */
  async get(tenant: string, id: string): Promise<OutboxEvent | null> {
    if (!isUuid(id)) return null;
    return this.store.withTenantTransaction(tenant, async (trx) => {
      const row = await trx
        .selectFrom('outbox_events')
        .selectAll()
        .where('tenant_id', '=', tenant)
        .where('id', '=', id)
        .executeTakeFirst();
      return row ? rowToEvent(row) : null;
    });
  }

  /**
   * A page of a tenant's events, newest first: optionally of some states, of topics matching a
   * pattern (`*` = any run of characters), and with topics some of `routes` match (`routed`
   * true) or none does (false).
   */
  async list(p: {
    tenant: string;
    statuses?: readonly OutboxStatus[];
    topic?: string;
    routed?: { patterns: readonly string[]; value: boolean };
    before?: string;
    limit: number;
  }): Promise<OutboxEvent[]> {
    return this.store.withTenantTransaction(p.tenant, async (trx) => {
      let q = trx.selectFrom('outbox_events').selectAll().where('tenant_id', '=', p.tenant);
      if (p.statuses?.length) q = q.where('status', 'in', [...p.statuses]);
      if (p.topic !== undefined) q = q.where(this.topicIn([p.topic]));
      if (p.routed) {
        const matched = this.topicIn(p.routed.patterns);
        q = q.where((eb) => (p.routed?.value ? matched : eb.not(matched)));
      }
      if (p.before) q = q.where('id', '<', p.before);
      const rows = await q.orderBy('id', 'desc').limit(p.limit).execute();
      return rows.map(rowToEvent);
    });
  }

  /**
   * The tenant's waiting (pending or failed) events that no route pattern matches: how many,
   * and per topic how many and since when, oldest first. A relay never claims them (SPEC O-2).
   */
  async unroutedTopics(p: { tenant: string; patterns: readonly string[]; limit: number }): Promise<{
    waiting: number;
    topics: Array<{ topic: string; waiting: number; oldestCreatedAt: number }>;
  }> {
    return this.store.withTenantTransaction(p.tenant, async (trx) => {
      const total = await trx
        .selectFrom('outbox_events')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('tenant_id', '=', p.tenant)
        .where('status', 'in', ['pending', 'failed'])
        .where((eb) => eb.not(this.topicIn(p.patterns)))
        .executeTakeFirstOrThrow();
      const rows = await trx
        .selectFrom('outbox_events')
        .select([
          'topic',
          (eb) => eb.fn.countAll<number>().as('n'),
          (eb) => eb.fn.min('created_at').as('oldest'),
        ])
        .where('tenant_id', '=', p.tenant)
        .where('status', 'in', ['pending', 'failed'])
        .where((eb) => eb.not(this.topicIn(p.patterns)))
        .groupBy('topic')
        .orderBy('oldest')
        .orderBy('topic')
        .limit(p.limit)
        .execute();
      const topics = rows.map((r) => ({
        topic: r.topic,
        waiting: Number(r.n),
        oldestCreatedAt: Number(r.oldest),
      }));
      return { waiting: Number(total.n), topics };
    });
  }

  /** `topic` matches one of the route patterns (false for none), as the claim matches them. */
  private topicIn(patterns: readonly string[]) {
    if (patterns.length === 0) return sql<boolean>`1 = 0`;
    if (this.store.dialect === 'postgres') {
      return sql<boolean>`topic like any(${patterns.map(likePattern)}::text[])`;
    }
    return sql<boolean>`exists (select 1 from json_each(${JSON.stringify(patterns)}) r
      where topic glob r.value)`;
  }

  /** `dead → pending` with attempts reset, audited in the same transaction; null if absent. */
  async replay(p: {
    tenant: string;
    id: string;
    actor: string;
    traceId: string;
    now: number;
  }): Promise<{ event: OutboxEvent; changed: boolean } | null> {
    if (!isUuid(p.id)) return null;
    // The system role moves events (tenants may only add and read them); the tenant filter keeps
    // the operation to the caller's tenant.
    return this.store.withSystemTransaction(async (trx) => {
      const row = await trx
        .updateTable('outbox_events')
        .set({ status: 'pending', attempts: 0, available_at: p.now, updated_at: p.now })
        .where('tenant_id', '=', p.tenant)
        .where('id', '=', p.id)
        .where('status', '=', 'dead')
        .returningAll()
        .executeTakeFirst();
      if (!row) {
        const cur = await trx
          .selectFrom('outbox_events')
          .selectAll()
          .where('tenant_id', '=', p.tenant)
          .where('id', '=', p.id)
          .executeTakeFirst();
        return cur ? { event: rowToEvent(cur), changed: false } : null;
      }
      const event = rowToEvent(row);
      await this.audit(trx, event, 'outbox.event_replayed', p.actor, p.now, {}, p.traceId);
      if (this.store.dialect === 'postgres') {
        await sql`select pg_notify('docket_outbox', '')`.execute(trx);
      }
      return { event, changed: true };
    });
  }

  /**
   * Records that `consumer` applied `eventId`, in the consumer's transaction; false when it
   * already had (a redelivery), in which case the caller must not apply it again.
   */
  async recordConsumed(
    trx: Transaction<DocketDatabase>,
    p: { tenant: string; consumer: string; eventId: string; now: number },
  ): Promise<boolean> {
    const r = await trx
      .insertInto('outbox_consumed')
      .values({
        tenant_id: p.tenant,
        consumer: p.consumer,
        event_id: p.eventId,
        consumed_at: p.now,
      })
      .onConflict((oc) => oc.columns(['tenant_id', 'consumer', 'event_id']).doNothing())
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) === 1;
  }

  /** Counts of a tenant's events by state. */
  async counts(tenant: string): Promise<Record<string, number>> {
    return this.store.withTenantTransaction(tenant, async (trx) => {
      const rows = await trx
        .selectFrom('outbox_events')
        .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
        .where('tenant_id', '=', tenant)
        .groupBy('status')
        .execute();
      return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
    });
  }

  private async audit(
    trx: Transaction<DocketDatabase>,
    event: OutboxEvent,
    action: string,
    actor: string,
    now: number,
    data: Record<string, JsonValue>,
    traceId: string = event.traceId,
  ): Promise<void> {
    const prepared = prepareAuditEvent({
      tenant: event.tenantId,
      traceId,
      createdAt: now,
      action,
      resource: { type: 'outbox_event', id: event.id, name: event.topic },
      actor: principalFromActor(actor),
      metadata: Object.keys(data).length ? data : undefined,
    });
    await appendAuditEvents(trx, [prepared], now);
  }
}

/** The guard of every relay write: the event is still publishing under this relay's lease. */
function heldBy(owner: string, e: OutboxEvent) {
  return (eb: ExpressionBuilder<DocketDatabase, 'outbox_events'>) =>
    eb.and([
      eb('tenant_id', '=', e.tenantId),
      eb('id', '=', e.id),
      eb('status', '=', 'publishing'),
      eb('lease_owner', '=', owner),
    ]);
}

function byTime(a: OutboxEvent, b: OutboxEvent): number {
  return a.availableAt - b.availableAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
