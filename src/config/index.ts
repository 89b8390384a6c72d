import ipaddr from 'ipaddr.js';
import { resolve } from 'node:path';
import { DocketError } from '../core/errors.js';

/** Retry policy of a job type: capped exponential backoff with jitter. */
export interface RetryPolicy {
  /** Delay before the first retry, in ms. Default 1000. */
  baseMs: number;
  /** Upper bound on any retry delay, in ms. Default 3_600_000 (1 h). */
  capMs: number;
  /** Attempts before the job goes to the dead-letter queue. Default 10. */
  maxAttempts: number;
}

/** Store (source of truth) selection. */
export type StoreConfig =
  | {
      /** Embedded SQLite file. */
      dialect: 'sqlite';
      /** Path of the database file. Default `./data/docket.sqlite`. */
      path: string;
    }
  | {
      /** PostgreSQL. */
      dialect: 'postgres';
      /** Owner connection URL: runs migrations and the engine (as role `docket_system`). */
      url: string;
      /**
       * URL tenant transactions connect with: a non-superuser login that is not a member of
       * `docket_system`, so row-level security binds it. Default: `url` with the user replaced
       * by `docket_app` and no password.
       */
      appUrl: string;
      /** Connections per pool (tenant pool and system pool each). Default 10. */
      poolSize: number;
    };

/** Job defaults applied to every type unless the type overrides them. */
export interface JobDefaults {
  /** Retry policy. */
  retry: RetryPolicy;
  /** Handler timeout in ms; the AbortSignal fires then. Default 300_000 (5 min). */
  timeoutMs: number;
  /** Time after the timeout before the job is recorded as timed out and its slot freed. Default 5000. */
  graceMs: number;
  /** Lease length a claim grants; heartbeats extend it. Default 30_000. */
  leaseMs: number;
  /** Queue name when none is given. Default `default`. */
  queue: string;
}

/** Complete, validated Docket configuration. */
export interface DocketConfig {
  /** Store selection. */
  store: StoreConfig;
  /** Maximum serialized payload size in bytes. Default 262_144 (256 KiB). */
  payloadLimitBytes: number;
  /** Defaults per job. */
  jobs: JobDefaults;
  /** Retention of finished jobs. */
  retention: {
    /**
     * Age after which succeeded and canceled jobs are pruned, ms; 0 removes a job the moment it
     * succeeds (no history or result kept, like BullMQ's `removeOnComplete` and graphile-worker),
     * the cheapest completion there is. Default 7 days.
     */
    succeededMs: number;
    /** Age after which failed jobs that are no longer in the DLQ are pruned, ms. Default 30 days. */
    failedMs: number;
    /**
     * Age after which final (`sent`, `failed`) effect ledger rows are pruned, ms; at least
     * `failedMs`, so no job that could still be replayed loses the record of its effect.
     * Default 90 days.
     */
    effectsMs: number;
  };
  /** Folder for the embedded store and local data. Default `./data`. */
  dataDir: string;
  /** Where the queue's dispatch lives (SPEC Q-14): in the store, or Redis beside the store. */
  queue: QueueConfig;
  /** The audit log (SPEC A). */
  audit: AuditConfig;
  /** Outgoing HTTP (the `http` job type, webhook sinks): which targets may be reached. */
  webhooks: WebhookConfig;
  /** The built-in `email` job type (SPEC O-9). */
  email: EmailConfig;
}

/** Settings every email transport shares. */
interface EmailCommon {
  /** Sender when a message names none, e.g. `Shop <noreply@shop.example>`. Default none. */
  from: string | null;
  /** Domain of the deterministic `Message-ID`s. Default the `from` address's domain, else `docket.invalid`. */
  messageIdDomain: string;
  /** Longest one send may take before its effect counts as lost, ms. Default 120,000. */
  leaseMs: number;
}

/** Where the `email` job type sends (SPEC O-9): SMTP in production, `.eml` files by default. */
export type EmailConfig =
  | (EmailCommon & {
      /** One `.eml` file per message, named by its Message-ID (the embedded default). */
      transport: 'file';
      /** Folder of the files. Default `<dataDir>/mail`. */
      dir: string;
    })
  | (EmailCommon & {
      /** An SMTP server (nodemailer's SMTP transport). */
      transport: 'smtp';
      /** `smtp://user:pass@host:port` or `smtps://…`; alternative to host/port. Default none. */
      url: string | null;
      /** Server host. Default `127.0.0.1` when no url is given. */
      host: string;
      /** Server port. Default 587 (465 with `secure`). */
      port: number;
      /** TLS from the first byte (port 465); otherwise STARTTLS when offered. Default false. */
      secure: boolean;
      /** Login. Default none. */
      auth: { user: string; pass: string } | null;
      /** Connect, greeting and socket-inactivity timeout, ms. Default 30,000. */
      timeoutMs: number;
    });

/** Outgoing HTTP safety (SPEC O-7). */
export interface WebhookConfig {
  /**
   * Exceptions to "public addresses only", for development and tests: hostnames (`localhost`)
   * or addresses and CIDR ranges (`127.0.0.1`, `10.0.0.0/8`, `::1`). Default none.
   */
  allow: string[];
}

/** Audit log settings (SPEC ). */
export interface AuditConfig {
  /** Days events are kept unless a tenant sets its own retention at runtime. Default 90. */
  retentionDays: number;
  /** How often the retention purge runs, ms (0 disables it). Default 3_600_000. */
  purgeIntervalMs: number;
  /**
   * Events per batched write (bigger batches amortize index page writes). Default 20_000 on
   * SQLite, whose commit cost is the index pages it dirties; 5000 on PostgreSQL.
   */
  batchSize: number;
  /** Longest an event waits before a batched write, ms. Default 200. */
  flushIntervalMs: number;
  /** Events buffered in memory at most. Default 50_000. */
  maxBuffer: number;
  /** Longest `audit.record()` waits for buffer room before dropping the event, ms. Default 100. */
  maxBlockMs: number;
  /**
   * Whether batched writes run on a worker thread with its own store connection (chain hashing,
   * serialization and the insert leave the recording thread). Default true on PostgreSQL;
   * false on SQLite, where a second connection's write lock would make the recording thread's
   * own writes (job claims, completions) wait synchronously for each flush to commit.
   */
  writerThread: boolean;
}

/** The queue backend: the store itself (default), or Redis as the dispatch lane. */
export type QueueConfig =
  | { backend: 'store' }
  | {
      backend: 'redis';
      /** Redis URL. Default `redis://127.0.0.1:6379`. */
      url: string;
      /** First segment of every key. Default `docket`. */
      prefix: string;
      /** Second segment of every key (the deployment environment). Default `default`. */
      env: string;
      /** How often pending jobs missing from Redis are republished, ms. Default 10_000. */
      reconcileIntervalMs: number;
    };

/** Partial configuration accepted by createDocket; everything has a default. */
export interface DocketOptions {
  /** Store selection; default embedded SQLite under `dataDir`. */
  store?:
    | { dialect: 'sqlite'; path?: string }
    | { dialect: 'postgres'; url: string; appUrl?: string; poolSize?: number };
  /** Maximum payload size in bytes. Default 262_144. */
  payloadLimitBytes?: number;
  /** Job defaults. */
  jobs?: Partial<Omit<JobDefaults, 'retry'>> & { retry?: Partial<RetryPolicy> };
  /** Retention of finished jobs. */
  retention?: Partial<DocketConfig['retention']>;
  /** Data folder. Default `./data`. */
  dataDir?: string;
  /** Queue backend: `{ backend: 'redis', url }` puts dispatch in Redis. Default the store. */
  queue?:
    | { backend: 'store' }
    | {
        backend: 'redis';
        url?: string;
        prefix?: string;
        env?: string;
        reconcileIntervalMs?: number;
      };
  /** Audit log settings. */
  audit?: Partial<AuditConfig>;
  /** Outgoing HTTP safety: `{ allow: ['localhost'] }` lets development reach local servers. */
  webhooks?: Partial<WebhookConfig>;
  /** Email transport: `{ transport: 'smtp', url }` in production. Default `.eml` files in `<dataDir>/mail`. */
  email?: EmailOptions;
}

/** Partial email settings accepted by createDocket (see EmailConfig for the defaults). */
export interface EmailOptions {
  /** `file` (default) or `smtp` (the default when `url` or `host` is given). */
  transport?: 'file' | 'smtp';
  /** Folder of `.eml` files (file transport). */
  dir?: string;
  /** SMTP URL. */
  url?: string;
  /** SMTP host. */
  host?: string;
  /** SMTP port. */
  port?: number;
  /** SMTP over TLS from the first byte. */
  secure?: boolean;
  /** SMTP login. */
  auth?: { user: string; pass: string };
  /** SMTP timeouts, ms. */
  timeoutMs?: number;
  /** Default sender. */
  from?: string;
  /** Message-ID domain. */
  messageIdDomain?: string;
  /** Lease of one send, ms. */
  leaseMs?: number;
}

const DAY = 86_400_000;

/** Applies defaults and validates; the result is frozen. */
export function resolveConfig(options: DocketOptions = {}): DocketConfig {
  const dataDir = resolve(options.dataDir ?? './data');
  const store: StoreConfig =
    options.store?.dialect === 'postgres'
      ? {
          dialect: 'postgres',
          url: options.store.url,
          appUrl: options.store.appUrl ?? appUrlFrom(options.store.url),
          poolSize: options.store.poolSize ?? 10,
        }
      : { dialect: 'sqlite', path: resolve(options.store?.path ?? `${dataDir}/docket.sqlite`) };
  const retry: RetryPolicy = {
    baseMs: options.jobs?.retry?.baseMs ?? 1000,
    capMs: options.jobs?.retry?.capMs ?? 3_600_000,
    maxAttempts: options.jobs?.retry?.maxAttempts ?? 10,
  };
  const config: DocketConfig = {
    store,
    payloadLimitBytes: options.payloadLimitBytes ?? 262_144,
    jobs: {
      retry,
      timeoutMs: options.jobs?.timeoutMs ?? 300_000,
      graceMs: options.jobs?.graceMs ?? 5000,
      leaseMs: options.jobs?.leaseMs ?? 30_000,
      queue: options.jobs?.queue ?? 'default',
    },
    retention: {
      succeededMs: options.retention?.succeededMs ?? 7 * DAY,
      failedMs: options.retention?.failedMs ?? 30 * DAY,
      effectsMs: options.retention?.effectsMs ?? 90 * DAY,
    },
    dataDir,
    queue:
      options.queue?.backend === 'redis'
        ? {
            backend: 'redis',
            url: options.queue.url ?? 'redis://127.0.0.1:6379',
            prefix: options.queue.prefix ?? 'docket',
            env: options.queue.env ?? 'default',
            reconcileIntervalMs: options.queue.reconcileIntervalMs ?? 10_000,
          }
        : { backend: 'store' },
    audit: {
      retentionDays: options.audit?.retentionDays ?? 90,
      purgeIntervalMs: options.audit?.purgeIntervalMs ?? 3_600_000,
      batchSize: options.audit?.batchSize ?? (store.dialect === 'sqlite' ? 20_000 : 5000),
      flushIntervalMs: options.audit?.flushIntervalMs ?? 200,
      maxBuffer: options.audit?.maxBuffer ?? 50_000,
      maxBlockMs: options.audit?.maxBlockMs ?? 100,
      writerThread: options.audit?.writerThread ?? store.dialect === 'postgres',
    },
    webhooks: { allow: [...(options.webhooks?.allow ?? [])] },
    email: resolveEmail(options.email ?? {}, dataDir),
  };
  validateConfig(config);
  return deepFreeze(config);
}

const ADDRESS = /^(?:[^<>\r\n]*<)?[^\s<>@]+@([^\s<>@]+?)>?$/;

function resolveEmail(o: EmailOptions, dataDir: string): EmailConfig {
  const invalid = (name: string, message: string, value: unknown) =>
    new DocketError('CONFIG_INVALID', message, { name: `email.${name}`, value });
  const from = o.from ?? null;
  const domain = from === null ? undefined : ADDRESS.exec(from.trim())?.[1];
  if (from !== null && !domain) {
    throw invalid('from', 'email.from must be an address, e.g. Shop <noreply@shop.example>', from);
  }
  const messageIdDomain = o.messageIdDomain ?? domain ?? 'docket.invalid';
  if (!/^[A-Za-z0-9.-]{1,253}$/.test(messageIdDomain)) {
    throw invalid(
      'messageIdDomain',
      'email.messageIdDomain must be a domain name',
      messageIdDomain,
    );
  }
  const leaseMs = o.leaseMs ?? 120_000;
  if (!Number.isInteger(leaseMs) || leaseMs < 1000 || leaseMs > 3_600_000) {
    throw invalid('leaseMs', 'email.leaseMs must be an integer 1000–3600000', leaseMs);
  }
  const common = { from, messageIdDomain, leaseMs };
  const transport = o.transport ?? (o.url || o.host ? 'smtp' : 'file');
  if (transport === 'file')
    return { ...common, transport, dir: resolve(o.dir ?? `${dataDir}/mail`) };
  if (transport !== 'smtp') {
    throw invalid('transport', 'email.transport must be file or smtp', transport);
  }
  if (o.url !== undefined && !/^smtps?:\/\//.test(o.url)) {
    throw invalid('url', 'email.url must start with smtp:// or smtps://', o.url);
  }
  const secure = o.secure ?? false;
  const port = o.port ?? (secure ? 465 : 587);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw invalid('port', 'email.port must be 1–65535', port);
  }
  const timeoutMs = o.timeoutMs ?? 30_000;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > leaseMs) {
    throw invalid(
      'timeoutMs',
      'email.timeoutMs must be an integer from 100 to email.leaseMs',
      timeoutMs,
    );
  }
  return {
    ...common,
    transport,
    url: o.url ?? null,
    host: o.host ?? '127.0.0.1',
    port,
    secure,
    auth: o.auth ? { user: o.auth.user, pass: o.auth.pass } : null,
    timeoutMs,
  };
}

function validateConfig(c: DocketConfig): void {
  const positive: Array<[string, number]> = [
    ['payloadLimitBytes', c.payloadLimitBytes],
    ['jobs.retry.baseMs', c.jobs.retry.baseMs],
    ['jobs.retry.capMs', c.jobs.retry.capMs],
    ['jobs.retry.maxAttempts', c.jobs.retry.maxAttempts],
    ['jobs.timeoutMs', c.jobs.timeoutMs],
    ['jobs.leaseMs', c.jobs.leaseMs],
  ];
  positive.push(['retention.failedMs', c.retention.failedMs]);
  if (!(c.retention.effectsMs >= c.retention.failedMs)) {
    throw new DocketError(
      'CONFIG_INVALID',
      'retention.effectsMs must be at least retention.failedMs: a failed job replayed from the DLQ would otherwise repeat an effect whose record was pruned',
      { name: 'retention.effectsMs', value: c.retention.effectsMs },
    );
  }
  if (c.store.dialect === 'postgres') positive.push(['store.poolSize', c.store.poolSize]);
  positive.push(
    ['audit.retentionDays', c.audit.retentionDays],
    ['audit.batchSize', c.audit.batchSize],
    ['audit.flushIntervalMs', c.audit.flushIntervalMs],
    ['audit.maxBuffer', c.audit.maxBuffer],
  );
  for (const [name, v] of [
    ['retention.succeededMs', c.retention.succeededMs],
    ['audit.purgeIntervalMs', c.audit.purgeIntervalMs],
    ['audit.maxBlockMs', c.audit.maxBlockMs],
  ] as const) {
    if (!Number.isInteger(v) || v < 0) {
      throw new DocketError('CONFIG_INVALID', `${name} must be an integer >= 0`, {
        name,
        value: v,
      });
    }
  }
  if (c.queue.backend === 'redis' && !(c.queue.reconcileIntervalMs >= 100)) {
    throw new DocketError('CONFIG_INVALID', 'queue.reconcileIntervalMs must be at least 100', {
      name: 'queue.reconcileIntervalMs',
      value: c.queue.reconcileIntervalMs,
    });
  }
  for (const entry of c.webhooks.allow) {
    if (!isAllowEntry(entry)) {
      throw new DocketError(
        'CONFIG_INVALID',
        `webhooks.allow entries are hostnames, addresses or CIDR ranges; got ${JSON.stringify(entry)}`,
        { name: 'webhooks.allow', value: entry },
      );
    }
  }
  if (c.audit.retentionDays > 36_500) {
    throw new DocketError('CONFIG_INVALID', 'audit.retentionDays must be at most 36500', {
      name: 'audit.retentionDays',
      value: c.audit.retentionDays,
    });
  }
  for (const [name, v] of positive) {
    if (!Number.isInteger(v) || v <= 0) {
      throw new DocketError('CONFIG_INVALID', `${name} must be a positive integer`, {
        name,
        value: v,
      });
    }
  }
  for (const [name, v] of [
    ['jobs.timeoutMs', c.jobs.timeoutMs],
    ['jobs.graceMs', c.jobs.graceMs],
    ['jobs.leaseMs', c.jobs.leaseMs],
  ] as const) {
    if (v > 2_147_483_647) {
      throw new DocketError('CONFIG_INVALID', `${name} must be at most 2147483647 ms`, {
        name,
        value: v,
      });
    }
  }
  for (const [name, v] of positive) {
    if (!Number.isFinite(v) || v <= 0) {
      throw new DocketError('CONFIG_INVALID', `${name} must be a positive number`, {
        name,
        value: v,
      });
    }
  }
  if (c.jobs.graceMs < 0) throw new DocketError('CONFIG_INVALID', 'jobs.graceMs must be >= 0');
  if (c.store.dialect === 'postgres' && !/^postgres(ql)?:\/\//.test(c.store.url)) {
    throw new DocketError('CONFIG_INVALID', 'store url must start with postgres://', {
      url: c.store.url,
    });
  }
}

/** Reads DocketOptions from environment variables (see the README's configuration table). */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): DocketOptions {
  const dialect = env.DOCKET_STORE ?? (env.DOCKET_DATABASE_URL ? 'postgres' : 'sqlite');
  // the queue backend: the store itself (DOCKET_QUEUE unset or naming the store), or redis.
  const queue = env.DOCKET_QUEUE;
  if (queue !== undefined && queue !== '' && queue !== dialect && queue !== 'redis') {
    throw new DocketError(
      'CONFIG_INVALID',
      `DOCKET_QUEUE must be ${dialect} (the store) or redis, not ${queue}`,
      { queue, store: dialect },
    );
  }
  const num = (name: string): number | undefined => {
    const raw = env[name];
    if (raw === undefined || raw === '') return undefined;
    const n = Number(raw);
    if (!Number.isFinite(n)) throw new DocketError('CONFIG_INVALID', `${name} must be a number`);
    return n;
  };
  let store: DocketOptions['store'];
  if (dialect === 'postgres') {
    const url = env.DOCKET_DATABASE_URL;
    if (!url)
      throw new DocketError('CONFIG_INVALID', 'DOCKET_STORE=postgres needs DOCKET_DATABASE_URL');
    store = {
      dialect: 'postgres',
      url,
      appUrl: env.DOCKET_APP_DATABASE_URL || undefined,
      poolSize: num('DOCKET_PG_POOL_SIZE'),
    };
  } else if (dialect === 'sqlite') {
    store = { dialect: 'sqlite', path: env.DOCKET_SQLITE_PATH };
  } else {
    throw new DocketError(
      'CONFIG_INVALID',
      `DOCKET_STORE must be sqlite or postgres, got ${dialect}`,
    );
  }
  return {
    store,
    dataDir: env.DOCKET_DATA_DIR,
    payloadLimitBytes: num('DOCKET_PAYLOAD_LIMIT_BYTES'),
    jobs: {
      leaseMs: num('DOCKET_LEASE_MS'),
      timeoutMs: num('DOCKET_JOB_TIMEOUT_MS'),
      graceMs: num('DOCKET_JOB_GRACE_MS'),
      retry: { maxAttempts: num('DOCKET_MAX_ATTEMPTS') },
    },
    retention: {
      succeededMs: num('DOCKET_RETENTION_SUCCEEDED_MS'),
      failedMs: num('DOCKET_RETENTION_FAILED_MS'),
      effectsMs: num('DOCKET_RETENTION_EFFECTS_MS'),
    },
    queue:
      queue === 'redis'
        ? {
            backend: 'redis',
            url: env.DOCKET_REDIS_URL || undefined,
            prefix: env.DOCKET_REDIS_PREFIX || undefined,
            env: env.DOCKET_ENV || undefined,
          }
        : undefined,
    webhooks: env.DOCKET_WEBHOOK_ALLOW
      ? {
          allow: env.DOCKET_WEBHOOK_ALLOW.split(',')
            .map((e) => e.trim())
            .filter(Boolean),
        }
      : undefined,
    email: emailFromEnv(env, num),
    audit: {
      retentionDays: num('DOCKET_AUDIT_RETENTION_DAYS'),
      maxBuffer: num('DOCKET_AUDIT_MAX_BUFFER'),
      maxBlockMs: num('DOCKET_AUDIT_MAX_BLOCK_MS'),
    },
  };
}

/** Email settings from DOCKET_EMAIL_* / DOCKET_SMTP_URL (undefined: all defaults). */
function emailFromEnv(
  env: NodeJS.ProcessEnv,
  num: (name: string) => number | undefined,
): EmailOptions | undefined {
  const o: EmailOptions = {
    transport: (env.DOCKET_EMAIL_TRANSPORT || undefined) as EmailOptions['transport'],
    url: env.DOCKET_SMTP_URL || undefined,
    dir: env.DOCKET_MAIL_DIR || undefined,
    from: env.DOCKET_EMAIL_FROM || undefined,
    messageIdDomain: env.DOCKET_EMAIL_MESSAGE_ID_DOMAIN || undefined,
    leaseMs: num('DOCKET_EMAIL_LEASE_MS'),
    timeoutMs: num('DOCKET_SMTP_TIMEOUT_MS'),
  };
  return Object.values(o).some((v) => v !== undefined) ? o : undefined;
}

/** The default tenant-connection URL: the owner URL with user `docket_app` and no password. */
export function appUrlFrom(url: string): string {
  try {
    const u = new URL(url);
    u.username = 'docket_app';
    u.password = '';
    return u.toString();
  } catch {
    return url;
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

const HOSTNAME = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$/i;

/** A webhook allowlist entry: a hostname, an IP address or a CIDR range. */
function isAllowEntry(entry: string): boolean {
  if (entry.includes('/')) {
    try {
      ipaddr.parseCIDR(entry);
      return true;
    } catch {
      return false;
    }
  }
  return ipaddr.isValid(entry) || HOSTNAME.test(entry);
}

/** Where the scheduler's task locks live (SPEC S-2). */
export type SchedulerLocksConfig =
  | {
      /** The `scheduler_locks` table of the store. */
      backend: 'database';
    }
  | {
      /** Redis (one Lua script per operation). */
      backend: 'redis';
      /** Redis URL. Default `redis://127.0.0.1:6379`. */
      url: string;
      /** Start of every key. Default `docket:locks:`. */
      prefix: string;
    }
  | {
      /** etcd v3 (a lease plus guarded transactions). */
      backend: 'etcd';
      /** Client URL(s) of the cluster, comma-separated. Default `http://127.0.0.1:2379`. */
      url: string;
      /** Start of every key. Default `docket/locks/`. */
      prefix: string;
    };

/** Partial lock settings accepted by `createDocket({ scheduler: { locks } })`. */
export interface SchedulerLocksOptions {
  /** `database` (default), `redis` or `etcd`. */
  backend: 'database' | 'redis' | 'etcd';
  /** Server URL (redis:// or rediss://; http:// or https:// for etcd). Default the local server. */
  url?: string;
  /** Start of every key. Default `docket:locks:` (Redis), `docket/locks/` (etcd). */
  prefix?: string;
}

const LOCK_URL = { redis: /^rediss?:\/\//, etcd: /^https?:\/\// } as const;

/** Applies defaults to lock settings and validates them; CONFIG_INVALID naming the value. */
export function resolveSchedulerLocks(o: SchedulerLocksOptions): SchedulerLocksConfig {
  const invalid = (field: string, message: string, value: unknown) =>
    new DocketError('CONFIG_INVALID', message, { name: `scheduler.locks.${field}`, value });
  const backend = o?.backend;
  if (backend === 'database') return { backend };
  if (backend !== 'redis' && backend !== 'etcd') {
    throw invalid(
      'backend',
      `scheduler.locks.backend must be database, redis or etcd, not ${JSON.stringify(backend)}`,
      backend,
    );
  }
  const url = o.url ?? (backend === 'redis' ? 'redis://127.0.0.1:6379' : 'http://127.0.0.1:2379');
  const scheme = LOCK_URL[backend];
  if (typeof url !== 'string' || !url.split(',').every((u) => scheme.test(u.trim()))) {
    throw invalid(
      'url',
      `scheduler.locks.url of ${backend} must start with ${backend === 'redis' ? 'redis:// or rediss://' : 'http:// or https://'}, not ${JSON.stringify(url)}`,
      url,
    );
  }
  const prefix = o.prefix ?? (backend === 'redis' ? 'docket:locks:' : 'docket/locks/');
  if (typeof prefix !== 'string' || prefix.length === 0 || prefix.length > 200) {
    throw invalid('prefix', 'scheduler.locks.prefix must be 1–200 characters', prefix);
  }
  return { backend, url, prefix };
}

/**
 * Lock settings from DOCKET_SCHEDULER_LOCKS (database|redis|etcd), DOCKET_REDIS_URL,
 * DOCKET_ETCD_URL and DOCKET_SCHEDULER_LOCKS_PREFIX; undefined when unset. CONFIG_INVALID
 * naming the value when the backend is none of the three.
 */
export function schedulerLocksFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): SchedulerLocksConfig | undefined {
  const backend = env.DOCKET_SCHEDULER_LOCKS;
  if (backend === undefined || backend === '') return undefined;
  if (backend !== 'database' && backend !== 'redis' && backend !== 'etcd') {
    throw new DocketError(
      'CONFIG_INVALID',
      `DOCKET_SCHEDULER_LOCKS must be database, redis or etcd, not ${JSON.stringify(backend)}`,
      { name: 'DOCKET_SCHEDULER_LOCKS', value: backend },
    );
  }
  return resolveSchedulerLocks({
    backend,
    url: (backend === 'redis' ? env.DOCKET_REDIS_URL : env.DOCKET_ETCD_URL) || undefined,
    prefix: env.DOCKET_SCHEDULER_LOCKS_PREFIX || undefined,
  });
}
