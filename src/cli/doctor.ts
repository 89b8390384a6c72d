import { Command } from 'commander';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import {
  resolveConfig,
  optionsFromEnv,
  schedulerLocksFromEnv,
  type DocketConfig,
} from '../config/index.js';
import { createEmailTransport } from '../effects/index.js';
import { EtcdLockBackend, RedisLockBackend } from '../scheduler/index.js';
import { parseApiKey } from '../http/index.js';
import { APP_ROLE, SYSTEM_ROLE, openStore, type Store } from '../store/index.js';
import { MIGRATIONS } from '../store/migrations/index.js';
import { cliLogger, intFromEnv, loadHandlersModule, say } from './runtime.js';

/** One doctor finding. */
interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

type Probe = () => Promise<string>;

async function probe(name: string, fn: Probe): Promise<Check> {
  try {
    return { name, ok: true, detail: await fn() };
  } catch (err) {
    return { name, ok: false, detail: (err as Error).message };
  }
}

function describeStore(c: DocketConfig): string {
  return c.store.dialect === 'sqlite'
    ? `sqlite at ${c.store.path}`
    : `postgres at ${c.store.url.replace(/\/\/[^@/]*@/, '//***@')}`;
}

async function checkConfig(env: NodeJS.ProcessEnv, config: DocketConfig): Promise<string> {
  intFromEnv(env, 'DOCKET_PORT', 8080);
  intFromEnv(env, 'DOCKET_CONCURRENCY', 10, 1);
  const key = env.DOCKET_BOOTSTRAP_API_KEY;
  if (key && !parseApiKey(key))
    throw new Error('DOCKET_BOOTSTRAP_API_KEY is not dk_<keyId>_<secret>');
  const mod = await loadHandlersModule(env.DOCKET_HANDLERS);
  const handlers = mod ? `, ${Object.keys(mod.handlers).length} handler(s)` : '';
  return `${describeStore(config)}${handlers}`;
}

/** Names of the applied migrations, read as the configured owner user (who ran them). */
async function appliedMigrations(store: Store, config: DocketConfig): Promise<Set<string>> {
  type MigrationsDb = { docket_migrations: { name: string } };
  // On PostgreSQL the migration table belongs to the owner, not to the engine's restricted
  // roles, so it is read over a connection of its own.
  const own =
    config.store.dialect === 'postgres'
      ? new Kysely<MigrationsDb>({
          dialect: new PostgresDialect({
            pool: new pg.Pool({ connectionString: config.store.url, max: 1 }),
          }),
        })
      : undefined;
  const db = own ?? store.systemDb.withTables<MigrationsDb>();
  try {
    const rows = await db.selectFrom('docket_migrations').select('name').execute();
    return new Set(rows.map((r) => r.name));
  } finally {
    await own?.destroy();
  }
}

async function checkMigrations(store: Store, config: DocketConfig): Promise<string> {
  const applied = await appliedMigrations(store, config);
  const pending = MIGRATIONS.map((m) => m.name).filter((n) => !applied.has(n));
  if (pending.length > 0) throw new Error(`pending: ${pending.join(', ')} — run docket migrate`);
  return `${applied.size} applied, none pending`;
}

async function checkRoles(store: Store): Promise<string> {
  if (!store.capabilities.supportsRowLevelSecurity) return 'not needed for this store';
  const db = store.systemDb.withTables<{ pg_roles: { rolname: string } }>();
  const roles = await db
    .selectFrom('pg_roles')
    .select('rolname')
    .where('rolname', 'in', [APP_ROLE, SYSTEM_ROLE])
    .execute();
  for (const role of [APP_ROLE, SYSTEM_ROLE]) {
    if (!roles.some((r) => r.rolname === role)) {
      throw new Error(`role ${role} is missing — run docket migrate`);
    }
  }
  // The tenant connections' login must be bound by row-level security...
  await store.verify();
  // ...and able to work: a tenant transaction proves it can connect and read.
  await store.withTenantTransaction('doctor', (trx) =>
    trx.selectFrom('jobs').select('id').limit(1).execute(),
  );
  return `tenant connections are bound by row-level security; ${SYSTEM_ROLE} usable`;
}

/** DOCKET_SCHEDULER_LOCKS: the database lease, or a Redis / etcd server that must answer. */
async function checkSchedulerLocks(env: NodeJS.ProcessEnv): Promise<string> {
  const c = schedulerLocksFromEnv(env) ?? { backend: 'database' as const };
  if (c.backend === 'database') return 'database lease (scheduler_locks)';
  const locks =
    c.backend === 'redis'
      ? new RedisLockBackend({ url: c.url, prefix: c.prefix })
      : new EtcdLockBackend({ url: c.url, prefix: c.prefix });
  try {
    await locks.start();
    return `${c.backend} at ${locks.safeUrl} answers`;
  } finally {
    await locks.stop();
  }
}

/** Runs every check; the store checks are skipped when the configuration is unusable. */
export async function runDoctor(env: NodeJS.ProcessEnv = process.env): Promise<Check[]> {
  let config: DocketConfig | undefined;
  const checks = [
    await probe('configuration', async () => {
      config = resolveConfig(optionsFromEnv(env));
      return checkConfig(env, config);
    }),
  ];
  if (!config) return checks;
  const resolved = config;
  checks.push(
    await probe('email', async () => {
      const transport = createEmailTransport(resolved.email);
      try {
        return await transport.verify();
      } finally {
        transport.close();
      }
    }),
  );
  checks.push(await probe('scheduler locks', () => checkSchedulerLocks(env)));
  let store: Store | undefined;
  try {
    const connectivity = await probe('store connectivity', async () => {
      store = await openStore(resolved, cliLogger(env));
      await store.ping();
      return describeStore(resolved);
    });
    checks.push(connectivity);
    if (store && connectivity.ok) {
      const opened = store;
      checks.push(await probe('migrations', () => checkMigrations(opened, resolved)));
      checks.push(await probe('postgres roles', () => checkRoles(opened)));
    }
  } finally {
    await store?.close().catch(() => undefined);
  }
  return checks;
}

/** `docket doctor`: checks configuration, email, connectivity, migrations and roles; non-zero on a problem. */
export function doctorCommand(): Command {
  return new Command('doctor')
    .description(
      'check configuration, the email transport, store connectivity, migrations and PostgreSQL roles',
    )
    .action(async () => {
      const checks = await runDoctor();
      for (const c of checks) say(`${c.ok ? 'ok  ' : 'FAIL'}  ${c.name}: ${c.detail}`);
      const failed = checks.filter((c) => !c.ok).length;
      say(failed === 0 ? 'all checks passed' : `${failed} check(s) failed`);
      if (failed > 0) process.exitCode = 1;
    });
}
