import { sql, type Transaction } from 'kysely';
import type { AuditEventsTable, DocketDatabase } from '../../store/schema.js';

/**
 * One multi-row insert of audit events on SQLite: the rows travel as one JSON array parameter
 * read back by json_each, so the statement text (and its prepare cost) is the same for every
 * batch size, instead of a VALUES list with 18 parameters per row.
 */
export async function insertAuditRowsSqlite(
  trx: Transaction<DocketDatabase>,
  rows: readonly AuditEventsTable[],
): Promise<void> {
  const json = JSON.stringify(
    rows.map((r) => [
      r.id,
      r.tenant_id,
      r.seq,
      r.action,
      r.outcome,
      r.resource_type,
      r.resource_id,
      r.resource_name,
      r.actor_type,
      r.actor_id,
      r.actor_display,
      r.trace_id,
      r.client_ip,
      r.user_agent,
      r.data,
      r.created_at,
      r.prev_hash,
      r.hash,
    ]),
  );
  await sql`
    insert into audit_events (id, tenant_id, seq, action, outcome, resource_type, resource_id,
      resource_name, actor_type, actor_id, actor_display, trace_id, client_ip, user_agent, data,
      created_at, prev_hash, hash)
    select value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
      value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11,
      value ->> 12, value ->> 13, value ->> 14, value ->> 15, value ->> 16, value ->> 17
    from json_each(${json})`.execute(trx);
}
