import { randomBytes } from 'node:crypto';
import { PostgresAdapter, sql, type Kysely, type RawBuilder, type Transaction } from 'kysely';
import { DocketError } from '../core/errors.js';
import type { AuditEventsTable, DocketDatabase } from '../store/schema.js';
import { auditRowInserterFor } from './backends/index.js';
import {
  AUDIT_EVENT_COLUMNS,
  GENESIS_HASH,
  auditEventsByTenant,
  chainAuditEvents,
  chainHash,
  type AuditChainHead,
} from './chain.js';
import { idAtTime, timeOfId } from './event.js';
import { isUuid } from '../core/ids.js';
import type { AuditContent } from './content.js';
import type { AuditEvent, AuditEventFilter, AuditOutcome, AuditVerifyResult } from './types.js';

type Db = Kysely<DocketDatabase> | Transaction<DocketDatabase>;

/** An event ready to be chained: every column except seq and the hashes (`data` is JSON text). */
export type PreparedAuditEvent = Omit<AuditEventsTable, 'seq' | 'prev_hash' | 'hash'>;

// Rows per insert statement: bounds one statement's memory (JSON text / arrays).
const INSERT_CHUNK = 5000;

/**
 * Appends events to their tenants' hash chains inside `trx` (the caller's transaction, or the
 * batched writer's). The head upsert takes the tenant's chain row lock (PostgreSQL: ON CONFLICT
 * DO UPDATE locks the row and returns its latest committed version; SQLite: one writer), so
 * concurrent appends of a tenant, from any process, serialize and never fork the chain.
 * Tenants are locked in sorted order so two multi-tenant flushes cannot deadlock.
 */
export async function appendAuditEvents(
  trx: Transaction<DocketDatabase>,
  events: readonly PreparedAuditEvent[],
  now: number,
): Promise<AuditEventsTable[]> {
  const rows: AuditEventsTable[] = [];
  const heads: Array<[string, AuditChainHead]> = [];
  for (const [tenant, list] of auditEventsByTenant(events)) {
    const head = await trx
      .insertInto('audit_chain')
      .values({ tenant_id: tenant, seq: 0, hash: GENESIS_HASH, updated_at: now })
      .onConflict((oc) => oc.column('tenant_id').doUpdateSet({ updated_at: now }))
      .returning(['seq', 'hash'])
      .executeTakeFirstOrThrow();
    heads.push([tenant, chainAuditEvents(list, { seq: Number(head.seq), hash: head.hash }, rows)]);
  }
  const insert = auditRowInserterFor(trx);
  for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
    await insert(trx, rows.slice(i, i + INSERT_CHUNK));
  }
  for (const [tenant, h] of heads) {
    await trx
      .updateTable('audit_chain')
      .set({ seq: h.seq, hash: h.hash, updated_at: now })
      .where('tenant_id', '=', tenant)
      .execute();
  }
  return rows;
}

/** Maps a stored row to the public event shape. */
export function rowToAuditEvent(row: AuditEventsTable): AuditEvent {
  const data = (typeof row.data === 'string' ? JSON.parse(row.data) : row.data) as AuditContent;
  return {
    id: row.id,
    tenantId: row.tenant_id,
    seq: Number(row.seq),
    action: row.action,
    outcome: row.outcome as AuditOutcome,
    resource: {
      type: row.resource_type,
      id: row.resource_id,
      ...(row.resource_name !== null ? { name: row.resource_name } : {}),
    },
    actor: {
      type: row.actor_type,
      id: row.actor_id,
      ...(row.actor_display !== null ? { display: row.actor_display } : {}),
    },
    traceId: row.trace_id,
    clientIp: row.client_ip,
    userAgent: row.user_agent,
    ...(data.diff ? { diff: data.diff } : {}),
    ...(data.metadata !== undefined ? { metadata: data.metadata } : {}),
    ...(data.truncated ? { truncated: data.truncated } : {}),
    createdAt: Number(row.created_at),
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

function encodeCursor(id: string): string {
  return Buffer.from(JSON.stringify({ after: id }), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { after?: unknown };
    if (typeof v.after === 'string' && isUuid(v.after)) return v.after.toLowerCase();
  } catch {
    // not base64url JSON: reported below
  }
  throw new DocketError('INVALID_CURSOR', 'the cursor is not valid', { cursor });
}

/** The event's UTC day as SQLite's day indexes spell it (migration 018): keep it verbatim. */
const AUDIT_DAY_SQL = sql<number>`created_at / 86400000`;
/** The same on PostgreSQL: its stored generated column (migration 019). */
const AUDIT_DAY_PG = sql<number>`day`;
const DAY_MS = 86_400_000;

/**
 * One page of a tenant's events, newest first, keyset-paginated on id. Ids carry the event's
 * time (see auditEventId), so a time range is also an id range and every filter walks one
 * index ending in id: (tenant_id, id), or the actor, action or resource index. The actor and
 * resource indexes are prefixed by the event's day (migrations 018, 019), so those filters walk
 * them one day at a time, newest day first, until the page is full.
 */
export async function queryAuditEvents(
  db: Db,
  tenant: string,
  f: AuditEventFilter & { limit: number },
): Promise<{ items: AuditEvent[]; nextCursor: string | null }> {
  const cursor = f.cursor !== undefined ? decodeCursor(f.cursor) : undefined;
  const where = [sql`tenant_id = ${tenant}`];
  if (f.actorId !== undefined) where.push(sql`actor_id = ${f.actorId}`);
  if (f.action !== undefined) where.push(sql`action = ${f.action}`);
  if (f.resourceType !== undefined) where.push(sql`resource_type = ${f.resourceType}`);
  if (f.resourceId !== undefined) where.push(sql`resource_id = ${f.resourceId}`);
  if (f.outcome !== undefined) where.push(sql`outcome = ${f.outcome}`);
  if (f.from !== undefined) where.push(sql`id >= ${idAtTime(f.from)} and created_at >= ${f.from}`);
  if (f.to !== undefined) where.push(sql`id < ${idAtTime(f.to)} and created_at < ${f.to}`);
  if (cursor !== undefined) where.push(sql`id < ${cursor}`);
  const want = f.limit + 1;
  const rows =
    f.actorId !== undefined || f.resourceType !== undefined
      ? await queryAuditDays(db, tenant, f, where, cursor, want)
      : (
          await sql<AuditEventsTable>`
            select * from audit_events where ${sql.join(where, sql` and `)}
            order by id desc limit ${want}`.execute(db)
        ).rows;
  const page = rows.slice(0, f.limit).map(rowToAuditEvent);
  const last = page[page.length - 1];
  return {
    items: page,
    nextCursor: rows.length > f.limit && last ? encodeCursor(last.id) : null,
  };
}

/**
 * Actor and resource filters (migrations 018, 019): the day-prefixed index walked newest
 * days first. Every id of day d is below every id of day d + 1, so the batches' rows
 * concatenate in id order. A batch is one statement over a run of days (one index seek per
 * day, then a sort of only the matching rows; the first run is 1 day on SQLite, 8 on
 * PostgreSQL); a run that does not fill the page doubles the next one, up to 64 days, and a
 * run with nothing jumps to the next day that holds events of the tenant. On SQLite the
 * statements name their index: with ANALYZE's sampled statistics the planner sometimes
 * preferred walking the primary key backwards, reading half the table per page.
 */
async function queryAuditDays(
  db: Db,
  tenant: string,
  f: AuditEventFilter,
  where: readonly RawBuilder<unknown>[],
  cursor: string | undefined,
  want: number,
): Promise<AuditEventsTable[]> {
  // SQLite takes the index by name; PostgreSQL has no hints (see the lateral form below).
  const sqlite = !(db.getExecutor().adapter instanceof PostgresAdapter);
  const indexed = (name: string) => (sqlite ? sql.raw(`indexed by ${name}`) : sql``);
  const dayOf = sqlite ? AUDIT_DAY_SQL : AUDIT_DAY_PG;
  const index = indexed(
    f.actorId !== undefined ? 'audit_events_actor_day' : 'audit_events_resource_day',
  );
  const highs = [Number.MAX_SAFE_INTEGER];
  if (cursor !== undefined) highs.push(timeOfId(cursor));
  if (f.to !== undefined) highs.push(f.to - 1);
  const low = f.from !== undefined ? Math.floor(Math.max(0, f.from) / DAY_MS) : 0;
  const newestDay = async (atMost: number): Promise<number | undefined> => {
    if (atMost < low) return undefined;
    const r = await sql<{ day: number }>`
      select ${dayOf} as day from audit_events ${indexed('audit_events_actor_day')}
      where tenant_id = ${tenant} and ${dayOf} <= ${atMost}
      order by ${dayOf} desc limit 1`.execute(db);
    const day = r.rows[0]?.day;
    return day === undefined ? undefined : Number(day);
  };
  const rows: AuditEventsTable[] = [];
  let day = await newestDay(Math.floor(Math.min(...highs) / DAY_MS));
  // A statement costs a round trip and its planning on PostgreSQL: start with a week there.
  let span = sqlite ? 1 : 8;
  while (day !== undefined && day >= low) {
    const top = day;
    const first = Math.max(low, top - span + 1);
    const days = Array.from({ length: top - first + 1 }, (_, i) => top - i);
    const limit = want - rows.length;
    const got = sqlite
      ? await sql<AuditEventsTable>`
          select * from audit_events ${index}
          where ${sql.join(where, sql` and `)} and ${AUDIT_DAY_SQL} in (${sql.join(days)})
          order by id desc limit ${limit}`.execute(db)
      : // PostgreSQL: one ordered index scan per day that stops at the page size (the equality
        // on the day column lets the index give id order, and is leakproof, so it stays an
        // index condition under row-level security), merged.
        await sql<AuditEventsTable>`
          select e.* from unnest(${days}::bigint[]) as d(wanted)
          cross join lateral (
            select * from audit_events
            where ${sql.join(where, sql` and `)} and ${AUDIT_DAY_PG} = d.wanted
            order by id desc limit ${limit}) e
          order by e.id desc limit ${limit}`.execute(db);
    rows.push(...got.rows);
    if (rows.length >= want || first <= low) break;
    day = got.rows.length > 0 ? first - 1 : await newestDay(first - 1);
    span = Math.min(span * 2, 64);
  }
  return rows;
}

/** One event of the tenant, or undefined. */
export async function findAuditEvent(
  db: Db,
  tenant: string,
  id: string,
): Promise<AuditEvent | undefined> {
  const row = await db
    .selectFrom('audit_events')
    .selectAll()
    .where('tenant_id', '=', tenant)
    .where('id', '=', id)
    .executeTakeFirst();
  return row ? rowToAuditEvent(row as AuditEventsTable) : undefined;
}

/** Tenants that have an audit chain. */
export async function auditTenants(db: Db): Promise<string[]> {
  const rows = await db
    .selectFrom('audit_chain')
    .select('tenant_id')
    .orderBy('tenant_id')
    .execute();
  return rows.map((r) => r.tenant_id);
}

const VERIFY_PAGE = 1000;
// Every column but data, which verification selects as its exact stored text.
const HASHED_COLUMNS = AUDIT_EVENT_COLUMNS.filter((c) => c !== 'data');

/**
 * Walks one tenant's chain from its latest retention checkpoint (or the genesis) to its head
 * and reports the first broken link: a recomputed hash that differs from the stored one, a
 * prev_hash that is not the previous event's hash, a missing seq, or a head (last seq/hash)
 * that the events do not reach, which is how a deleted tail shows.
 */
export async function verifyAuditChain(
  db: Db,
  tenant: string,
  onEvents: (n: number) => void = () => undefined,
): Promise<Omit<AuditVerifyResult, 'tenants'>> {
  for (let attempt = 0; ; attempt++) {
    const result = await walkChain(db, tenant, onEvents);
    // A purge that ran between reading the checkpoint and the first page shows as a gap at
    // the start; read the new checkpoint once more before calling it broken.
    if (result.broken?.reason === 'sequence_gap' && result.events === 0 && attempt === 0) continue;
    return result;
  }
}

async function walkChain(
  db: Db,
  tenant: string,
  onEvents: (n: number) => void,
): Promise<Omit<AuditVerifyResult, 'tenants'>> {
  const cp = await db
    .selectFrom('audit_checkpoints')
    .select(['seq', 'hash'])
    .where('tenant_id', '=', tenant)
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirst();
  let expected = Number(cp?.seq ?? 0) + 1;
  let prev = cp?.hash ?? GENESIS_HASH;
  let events = 0;
  const broken = (
    seq: number,
    eventId: string | null,
    reason: NonNullable<AuditVerifyResult['broken']>['reason'],
    message: string,
  ) => ({ ok: false, events, broken: { tenantId: tenant, seq, eventId, reason, message } });
  for (;;) {
    const rows = (await db
      .selectFrom('audit_events')
      .select(HASHED_COLUMNS)
      // The exact stored JSON text (the pg driver would otherwise parse json columns).
      .select(sql<string>`cast(data as text)`.as('data'))
      .where('tenant_id', '=', tenant)
      .where('seq', '>=', expected)
      .orderBy('seq')
      .limit(VERIFY_PAGE)
      .execute()) as AuditEventsTable[];
    for (const row of rows) {
      const seq = Number(row.seq);
      if (seq !== expected)
        return broken(expected, null, 'sequence_gap', `event ${expected} is missing`);
      if (row.prev_hash !== prev)
        return broken(seq, row.id, 'prev_hash_mismatch', 'prev_hash is not the previous hash');
      if (chainHash(prev, row) !== row.hash)
        return broken(seq, row.id, 'hash_mismatch', 'the event was changed after it was written');
      prev = row.hash;
      expected += 1;
      events += 1;
    }
    onEvents(rows.length);
    if (rows.length < VERIFY_PAGE) break;
  }
  const head = await db
    .selectFrom('audit_chain')
    .select(['seq', 'hash'])
    .where('tenant_id', '=', tenant)
    .executeTakeFirst();
  const headSeq = Number(head?.seq ?? 0);
  if (headSeq !== expected - 1 || (head?.hash ?? GENESIS_HASH) !== prev) {
    return broken(
      headSeq,
      null,
      'head_mismatch',
      `the chain head is at seq ${headSeq} but the events end at ${expected - 1}`,
    );
  }
  return { ok: true, events };
}

/**
 * Removes the tenant's oldest events created before `cutoff`, at most `batch`, as a prefix of
 * the chain (it stops at the first newer event even if older ones follow), and records the
 * last removed event's seq and hash as a checkpoint in the same transaction. The guard row
 * is what lets the append-only trigger accept these deletes; it never commits.
 */
export async function purgeAuditPrefix(
  trx: Transaction<DocketDatabase>,
  p: { tenant: string; cutoff: number; batch: number; now: number },
): Promise<number> {
  const txid = randomBytes(12).toString('hex');
  await trx.insertInto('audit_purge_guard').values({ txid }).execute();
  try {
    const rows = await trx
      .selectFrom('audit_events')
      .select(['seq', 'hash', 'created_at'])
      .where('tenant_id', '=', p.tenant)
      .orderBy('seq')
      .limit(p.batch)
      .execute();
    let last: { seq: number; hash: string } | undefined;
    let removed = 0;
    for (const r of rows) {
      if (Number(r.created_at) >= p.cutoff) break;
      last = { seq: Number(r.seq), hash: r.hash };
      removed += 1;
    }
    if (!last) return 0;
    await trx
      .deleteFrom('audit_events')
      .where('tenant_id', '=', p.tenant)
      .where('seq', '<=', last.seq)
      .execute();
    await trx
      .insertInto('audit_checkpoints')
      .values({ tenant_id: p.tenant, seq: last.seq, hash: last.hash, removed, created_at: p.now })
      .execute();
    return removed;
  } finally {
    await trx.deleteFrom('audit_purge_guard').where('txid', '=', txid).execute();
  }
}

/** The tenant's retention override in days, if one was set. */
export async function readRetentionDays(db: Db, tenant: string): Promise<number | undefined> {
  const row = await db
    .selectFrom('audit_settings')
    .select('retention_days')
    .where('tenant_id', '=', tenant)
    .executeTakeFirst();
  return row ? Number(row.retention_days) : undefined;
}

/** Sets the tenant's retention in days. */
export async function writeRetentionDays(
  db: Db,
  tenant: string,
  days: number,
  now: number,
): Promise<void> {
  await db
    .insertInto('audit_settings')
    .values({ tenant_id: tenant, retention_days: days, updated_at: now })
    .onConflict((oc) =>
      oc.column('tenant_id').doUpdateSet({ retention_days: days, updated_at: now }),
    )
    .execute();
}
