// Fresh, disposable databases for the benchmark: one PostgreSQL database per system.
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** PostgreSQL server URL (the database part is replaced per system). */
export const PG_ADMIN_URL =
  process.env.BENCH_PG_URL ??
  process.env.DOCKET_TEST_PG_URL ??
  'postgres://postgres@127.0.0.1:5432/postgres';

/** A database created for one benchmarked system. */
export interface BenchDatabase {
  name: string;
  url: string;
  /** Runs one statement as the connecting (admin) user in this database. */
  exec(sql: string): Promise<pg.QueryResult>;
  /** Drops the database (forcing out any connection still open). */
  drop(): Promise<void>;
}

/** Creates an empty database named `bench_<label>_<random>`. */
export async function createDatabase(label: string): Promise<BenchDatabase> {
  const name = `bench_${label}_${randomBytes(4).toString('hex')}`;
  await withAdmin(PG_ADMIN_URL, async (c) => {
    await c.query(`create database ${name}`);
    // Diagnosis aid: BENCH_AUTOEXPLAIN_MS=5 logs the plan of every statement slower than 5 ms
    // to the server log (auto_explain).
    const ms = Number(process.env.BENCH_AUTOEXPLAIN_MS);
    if (ms > 0) {
      await c.query(`alter database ${name} set session_preload_libraries = 'auto_explain'`);
      await c.query(`alter database ${name} set auto_explain.log_min_duration = ${ms}`);
    }
  });
  const url = PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
  return {
    name,
    url,
    exec: (sql) => withAdmin(url, (c) => c.query(sql)),
    drop: async () => {
      await withAdmin(PG_ADMIN_URL, (c) => c.query(`drop database if exists ${name} with (force)`));
    },
  };
}

/** Server facts for the report. */
export async function serverVersion(): Promise<string> {
  const r = await withAdmin(PG_ADMIN_URL, (c) =>
    c.query<{ v: string }>(`select current_setting('server_version') as v`),
  );
  return r.rows[0]?.v ?? 'unknown';
}

async function withAdmin<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}
