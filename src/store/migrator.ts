import { Migrator, sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import { DocketError } from '../core/errors.js';
import { MIGRATIONS } from './migrations/index.js';

/** The tables Docket creates (documented in the README). */
export const DOCKET_TABLES = [
  'tenants',
  'api_keys',
  'jobs',
  'dlq_items',
  'audit_events',
  'audit_chain',
  'audit_checkpoints',
  'audit_settings',
  'audit_purge_guard',
  'effects_purge_guard',
  'alerts',
  'rate_counters',
  'outbox_events',
  'outbox_consumed',
  'webhook_deliveries',
  'effects',
  'scheduler_tasks',
  'scheduler_executions',
  'scheduler_locks',
  'proposals',
  'proposal_applies',
  'due_triggers',
  'due_trigger_keys',
] as const;

/** Runs Docket's migrations for one dialect through Kysely's Migrator (which locks). */
export async function runMigrations<DB>(
  db: Kysely<DB>,
  dialect: 'postgres' | 'sqlite',
): Promise<string[]> {
  const provider: MigrationProvider = {
    async getMigrations() {
      const out: Record<string, Migration> = {};
      for (const m of MIGRATIONS) {
        out[m.name] = {
          async up(trx) {
            for (const stmt of m[dialect]) await sql.raw(stmt).execute(trx);
          },
          async down(trx) {
            for (const stmt of m.down[dialect]) await sql.raw(stmt).execute(trx);
          },
        };
      }
      return out;
    },
  };
  const migrator = new Migrator({
    db,
    provider,
    migrationTableName: 'docket_migrations',
    migrationLockTableName: 'docket_migrations_lock',
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    if (error instanceof DocketError) throw error;
    if ((error as { code?: string }).code === '42P07' || /already exists/.test(String(error))) {
      throw new DocketError(
        'CONFIG_INVALID',
        `Docket's tables (${DOCKET_TABLES.join(', ')}) clash with existing tables in this database: ${String(error)}`,
        { tables: DOCKET_TABLES },
        { cause: error },
      );
    }
    const code = (error as { code?: string }).code;
    if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'ETIMEDOUT') throw error;
    throw new DocketError(
      'STORE_UNAVAILABLE',
      `migration failed: ${String(error)}`,
      {},
      { cause: error },
    );
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
