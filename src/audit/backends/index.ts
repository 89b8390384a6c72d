import { PostgresAdapter, type Transaction } from 'kysely';
import type { AuditEventsTable, DocketDatabase } from '../../store/schema.js';
import { insertAuditRowsPostgres } from './sql-postgres.js';
import { insertAuditRowsSqlite } from './sql-sqlite.js';

/** Inserts chained audit rows with one statement, in the dialect's fastest form. */
export type AuditRowInserter = (
  trx: Transaction<DocketDatabase>,
  rows: readonly AuditEventsTable[],
) => Promise<void>;

/** The inserter for the transaction's dialect (the one place the dialect is chosen). */
export function auditRowInserterFor(trx: Transaction<DocketDatabase>): AuditRowInserter {
  return trx.getExecutor().adapter instanceof PostgresAdapter
    ? insertAuditRowsPostgres
    : insertAuditRowsSqlite;
}
