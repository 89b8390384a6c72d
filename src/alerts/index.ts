import { sql, type Kysely } from 'kysely';
import type { DocketDatabase } from '../store/schema.js';

/** Severity of an alert. */
export type AlertSeverity = 'info' | 'warning' | 'critical';

/** An alert to raise; repeated raises of an unresolved key count occurrences on one row. */
export interface AlertInput {
  /** Deduplication key, e.g. `audit.writer.failing`. */
  key: string;
  /** Component that raised it. */
  source: string;
  /** Severity. */
  severity: AlertSeverity;
  /** One-line description for operators. */
  message: string;
  /** Structured context. */
  details: Record<string, unknown>;
  /** Tenant concerned, if any. */
  tenantId?: string;
}

/**
 * Records an alert (SPEC OPS-2), or counts one more occurrence of the open alert with the same
 * key. The ops module lists, acknowledges and resolves these rows.
 */
export async function raiseAlert(
  db: Kysely<DocketDatabase>,
  a: AlertInput,
  ids: { next(): string },
  now: number,
): Promise<void> {
  const details = JSON.stringify(a.details);
  await db
    .insertInto('alerts')
    .values({
      id: ids.next(),
      key: a.key,
      tenant_id: a.tenantId ?? null,
      source: a.source,
      severity: a.severity,
      message: a.message,
      details,
      status: 'open',
      occurrences: 1,
      first_seen_at: now,
      last_seen_at: now,
    })
    .onConflict((oc) =>
      oc
        .column('key')
        // A literal, not a parameter: SQLite matches an upsert's target to the partial index
        // alerts_open_key only when the WHERE is the index's own text ("ON CONFLICT clause does
        // not match any PRIMARY KEY or UNIQUE constraint" otherwise, so no alert was ever
        // written on SQLite).
        .where('status', '<>', sql.lit('resolved'))
        .doUpdateSet((eb) => ({
          occurrences: eb('alerts.occurrences', '+', 1),
          last_seen_at: now,
          message: a.message,
          details,
        })),
    )
    .execute();
}
