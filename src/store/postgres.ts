import { Kysely, PostgresDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import type { StoreConfig } from '../config/index.js';
import { DocketError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { StoreBase, StoreCapabilities } from './index.js';
import { runMigrations } from './migrator.js';
import type { DocketDatabase } from './schema.js';

/** Role every tenant-scoped connection runs as; row-level security applies to it. */
export const APP_ROLE = 'docket_app';
/** Role the engine runs as for explicit cross-tenant work (claiming, reaping, pruning). */
export const SYSTEM_ROLE = 'docket_system';

const INT8_OID = 20;
const JSON_OID = 114;
const JSONB_OID = 3802;

// bigint epoch-ms columns become numbers; JSON stays text so backends decode it in one place.
const typeParsers = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID) return (v: string) => Number(v);
    if (oid === JSON_OID || oid === JSONB_OID) return (v: string) => v;
    return pg.types.getTypeParser(oid, format ?? 'text');
  },
} as unknown as pg.CustomTypesConfig;

/** PostgreSQL store: two pools (tenant role and system role) and a listener connection. */
export interface PostgresStore extends StoreBase {
  /** Dialect tag. */
  readonly dialect: 'postgres';
  /** Pool whose connections run as the system role; hot paths use it with prepared statements. */
  readonly systemPool: pg.Pool;
  /** Pool whose connections run as the application role (RLS applies). */
  readonly tenantPool: pg.Pool;
  /** Connection settings for dedicated clients (LISTEN). */
  readonly connectionString: string;
  /**
   * Runs `fn` on one system-role connection of the pool, for protocol features Kysely does not
   * expose (COPY); connection errors become STORE_UNAVAILABLE. `fn` owns any transaction it opens.
   */
  withSystemClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
}

function makePool(url: string, role: string | undefined, max: number, logger: Logger): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    types: typeParsers,
    ...(role ? { options: `-c role=${role}` } : {}),
    application_name: `docket:${role ?? APP_ROLE}`,
  });
  pool.on('error', (err) => logger.warn({ err, role }, 'idle PostgreSQL connection failed'));
  return pool;
}

/** Opens (without migrating) a PostgreSQL store. */
export async function openPostgresStore(
  config: Extract<StoreConfig, { dialect: 'postgres' }>,
  logger: Logger,
): Promise<PostgresStore> {
  const systemPool = makePool(config.url, SYSTEM_ROLE, config.poolSize, logger);
  // Tenant transactions log in as their own non-superuser role (not SET ROLE from the owner):
  // code holding a tenant transaction must not be able to `SET ROLE` its way out of RLS.
  const tenantPool = makePool(config.appUrl, undefined, config.poolSize, logger);
  const systemDb = new Kysely<DocketDatabase>({
    dialect: new PostgresDialect({ pool: systemPool }),
  });
  const tenantDb = new Kysely<DocketDatabase>({
    dialect: new PostgresDialect({ pool: tenantPool }),
  });
  const capabilities: StoreCapabilities = {
    supportsListenNotify: true,
    supportsSkipLocked: true,
    supportsRowLevelSecurity: true,
  };

  return {
    dialect: 'postgres',
    capabilities,
    systemDb,
    systemPool,
    tenantPool,
    connectionString: config.url,
    async withTenantTransaction<T>(
      tenant: string,
      fn: (trx: Transaction<DocketDatabase>) => Promise<T>,
    ) {
      return translate(() =>
        tenantDb.transaction().execute(async (trx) => {
          await sql`select set_config('app.current_tenant', ${tenant}, true)`.execute(trx);
          return fn(trx);
        }),
      );
    },
    async withSystemStatement<T>(fn: (d: Kysely<DocketDatabase>) => Promise<T>) {
      return translate(() => fn(systemDb));
    },
    async withSystemTransaction<T>(fn: (trx: Transaction<DocketDatabase>) => Promise<T>) {
      return translate(() => systemDb.transaction().execute(fn));
    },
    async withSystemClient<T>(fn: (client: pg.PoolClient) => Promise<T>) {
      return translate(async () => {
        const client = await systemPool.connect();
        let failed: unknown;
        try {
          return await fn(client);
        } catch (err) {
          failed = err;
          throw err;
        } finally {
          // A connection whose work failed is not reused: its state (an aborted COPY, a
          // transaction left open) is unknown.
          client.release(failed instanceof Error ? failed : undefined);
        }
      });
    },
    async migrate() {
      // Roles and migrations need the connecting user itself (not the limited roles).
      const admin = new pg.Pool({ connectionString: config.url, max: 1, types: typeParsers });
      const adminDb = new Kysely<DocketDatabase>({ dialect: new PostgresDialect({ pool: admin }) });
      try {
        return await translate(async () => {
          await ensureRoles(admin);
          return runMigrations(adminDb, 'postgres');
        });
      } finally {
        await adminDb.destroy();
        if (!admin.ended) await admin.end().catch(() => undefined);
      }
    },
    async ping() {
      await translate(() => systemPool.query('select 1'));
    },
    async analyze() {
      // autovacuum keeps PostgreSQL's statistics.
    },
    async verify() {
      const res = await translate(() =>
        tenantPool.query(
          `select current_user as role, r.rolsuper as su, r.rolbypassrls as bypass,
                  pg_has_role(current_user, $1, 'MEMBER') as system_member
           from pg_roles r where r.rolname = current_user`,
          [SYSTEM_ROLE],
        ),
      );
      const row = res.rows[0] as {
        role: string;
        su: boolean;
        bypass: boolean;
        system_member: boolean;
      };
      if (!row || row.su || row.bypass || row.system_member) {
        throw new DocketError(
          'CONFIG_INVALID',
          `tenant connections run as ${row?.role ?? '?'}, which escapes row-level security; ` +
            `use a non-superuser role that is not a member of ${SYSTEM_ROLE} (default ${APP_ROLE})`,
          { role: row?.role },
        );
      }
    },
    async close() {
      await Promise.all([systemDb.destroy(), tenantDb.destroy()]);
      // Hot paths query the pools directly, so Kysely may never have owned (and ended) them.
      await Promise.all(
        [systemPool, tenantPool].filter((p) => !p.ended).map((p) => p.end().catch(() => undefined)),
      );
    },
  };
}

/**
 * Creates the roles if the user may: `docket_app` (LOGIN, the tenant connections' role, bound by
 * RLS) and `docket_system` (NOLOGIN, the engine's cross-tenant role, granted to the owner).
 */
async function ensureRoles(pool: pg.Pool): Promise<void> {
  const create = async (role: string, attrs: string) => {
    const exists = await pool.query('select rolcanlogin from pg_roles where rolname = $1', [role]);
    if (exists.rowCount === 0) {
      try {
        await pool.query(`create role ${role} ${attrs}`);
      } catch (err) {
        // Another process created it between our check and create: fine.
        const code = (err as { code?: string }).code;
        if (code !== '42710' && code !== '23505') {
          throw new DocketError(
            'STORE_UNAVAILABLE',
            `cannot create role ${role}; create it (${attrs}) as documented in the README`,
            {},
            { cause: err },
          );
        }
      }
    } else if (
      attrs.includes('login') &&
      !(exists.rows[0] as { rolcanlogin: boolean }).rolcanlogin
    ) {
      await pool.query(`alter role ${role} login`);
    }
  };
  await create(APP_ROLE, 'login noinherit nosuperuser');
  await create(SYSTEM_ROLE, 'nologin');
  const member = await pool.query(
    `select pg_has_role(current_user, $1, 'MEMBER') as ok,
            (select rolsuper from pg_roles where rolname = current_user) as su`,
    [SYSTEM_ROLE],
  );
  const row = member.rows[0] as { ok: boolean; su: boolean };
  if (!row.ok && !row.su) await pool.query(`grant ${SYSTEM_ROLE} to current_user`);
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'ETIMEDOUT',
  '57P01',
  '57P03',
  '08006',
  '08001',
]);

/** Translates connection-level driver errors into STORE_UNAVAILABLE at the driver boundary. */
async function translate<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code && CONNECTION_CODES.has(code)) {
      throw new DocketError(
        'STORE_UNAVAILABLE',
        `PostgreSQL unavailable: ${(err as Error).message}`,
        {},
        { cause: err },
      );
    }
    throw err;
  }
}
