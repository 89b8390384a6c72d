import { Migrator, sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import { DocketError } from '../core/errors.js';
import { MIGRATIONS } from './migrations/index.js';

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
