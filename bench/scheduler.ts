// (f) The scheduler (SPEC N-4): lock acquire and release latency per lock backend (the database
// lease on SQLite and PostgreSQL, Redis, etcd), and many tasks on three scheduler processes
// sharing one PostgreSQL store, counting double and missed runs from the executions table and
// the handlers' own log. Through the compiled package, like the other sections.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { LockBackend } from '../src/index.js';
import { createDatabase, type BenchDatabase } from './db.js';
import { now, percentile, progress, sleep } from './stats.js';
import { loadDocket } from './systems/docket.js';

/** Redis server of the Redis lock rows. */
export const BENCH_REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** etcd server of the etcd lock rows. */
export const BENCH_ETCD_URL = process.env.BENCH_ETCD_URL ?? 'http://127.0.0.1:2379';

/** A lock backend the latency rows cover. */
export type LockBenchBackend = 'sqlite' | 'postgres' | 'redis' | 'etcd';

/** Sequential acquire → release cycles on one backend. */
export interface LockLatencyResult {
  backend: LockBenchBackend;
  /** Acquire call durations, ms. */
  acquire: number[];
  /** Release call durations, ms. */
  release: number[];
}

/** Many tasks on several scheduler processes, over a window of ticks. */
export interface MultiInstanceResult {
  tasks: number;
  instances: number;
  /** Every task ticks every this many seconds. */
  periodS: number;
  windowS: number;
  /** Ticks in the window (tasks × windowS / periodS). */
  expectedTicks: number;
  /** Ticks of the window with no execution row, or only a `skipped` one (missed). */
  missed: number;
  /** Ticks with more than one execution row (the unique index forbids it). */
  doubleRows: number;
  /** Ticks whose handler was called more than once (from the handlers' own log). */
  doubleCalls: number;
  /** Execution rows of the window by status. */
  statuses: Record<string, number>;
  /** Skipped rows of the window by reason. */
  skipReasons: Record<string, number>;
  /** started_at − scheduled_for of the window's runs, ms. */
  lagMs: { p50: number; p99: number; max: number };
  /** Ticks each instance ran. */
  perInstance: number[];
  /** Seconds after the window's end until every tick of it had a row (or the deadline). */
  drainS: number;
}

/** Everything the scheduler section measured. */
export interface SchedulerBenchResults {
  cycles: number;
  locks: LockLatencyResult[];
  runs: MultiInstanceResult[];
  /** Why a row is missing (e.g. etcd unreachable). */
  notes: string[];
}

const LEASE_MS = 30_000;
const WARMUP = 100;

async function cycles(locks: LockBackend, n: number, backend: LockBenchBackend) {
  const r: LockLatencyResult = { backend, acquire: [], release: [] };
  for (let i = 0; i < WARMUP + n; i++) {
    // 50 names in turn: every acquire after the first round re-takes a released lock.
    const name = `bench-lock-${i % 50}`;
    const t0 = now();
    const grant = await locks.lockAcquire({
      name,
      owner: `o${i}`,
      leaseMs: LEASE_MS,
      now: Date.now(),
    });
    const t1 = now();
    if (!grant) throw new Error(`${backend}: a released lock was not granted`);
    if (!(await locks.lockRelease({ grant }))) throw new Error(`${backend}: release refused`);
    const t2 = now();
    if (i >= WARMUP) {
      r.acquire.push(t1 - t0);
      r.release.push(t2 - t1);
    }
  }
  return r;
}

async function databaseLocks(store: 'sqlite' | 'postgres', n: number) {
  const { createDocket, DatabaseLockBackend } = await loadDocket();
  const dataDir = mkdtempSync(join(tmpdir(), 'docket-bench-locks-'));
  const db: BenchDatabase | undefined =
    store === 'postgres' ? await createDatabase('locks') : undefined;
  const d = createDocket({
    store: db
      ? { dialect: 'postgres', url: db.url }
      : { dialect: 'sqlite', path: join(dataDir, 'docket.sqlite') },
    dataDir,
    builtins: false,
    reapIntervalMs: 0,
  });
  try {
    return await cycles(new DatabaseLockBackend(await d.internals.systemDb()), n, store);
  } finally {
    await d.close();
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function serverLocks(backend: 'redis' | 'etcd', n: number) {
  const { RedisLockBackend, EtcdLockBackend } = await loadDocket();
  const prefix = `bench-locks-${randomBytes(4).toString('hex')}${backend === 'redis' ? ':' : '/'}`;
  const locks =
    backend === 'redis'
      ? new RedisLockBackend({ url: BENCH_REDIS_URL, prefix })
      : new EtcdLockBackend({ url: BENCH_ETCD_URL, prefix });
  await locks.start();
  try {
    return await cycles(locks, n, backend);
  } finally {
    await locks.stop();
    await removeKeys(backend, prefix);
  }
}

async function removeKeys(backend: 'redis' | 'etcd', prefix: string) {
  if (backend === 'redis') {
    const r = new Redis(BENCH_REDIS_URL);
    const keys = await r.keys(`${prefix}*`);
    if (keys.length) await r.del(...keys);
    await r.quit();
  } else {
    const c = new Etcd3({ hosts: BENCH_ETCD_URL });
    await c.delete().prefix(prefix);
    c.close();
  }
}

const instanceScript = fileURLToPath(new URL('./scheduler-instance.ts', import.meta.url));
const root = fileURLToPath(new URL('..', import.meta.url));

function spawnInstance(env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', instanceScript], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) resolve(child);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => reject(new Error(`scheduler instance exited ${code}: ${out}`)));
  });
}

async function stopInstance(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

interface Row {
  task: string;
  scheduled_for: string;
  status: string;
  started_at: string;
  instance_id: string;
  error: string | null;
}

/** Three (or `instances`) scheduler processes on one fresh PostgreSQL database. */
async function multiInstance(o: {
  tasks: number;
  instances: number;
  periodS: number;
  windowS: number;
}): Promise<MultiInstanceResult> {
  const { createDocket } = await loadDocket();
  const db = await createDatabase('sched');
  const dir = mkdtempSync(join(tmpdir(), 'docket-bench-sched-'));
  const out = join(dir, 'runs.txt');
  writeFileSync(out, '');
  const migrator = createDocket({ store: { dialect: 'postgres', url: db.url }, dataDir: dir });
  await migrator.migrate();
  await migrator.close();
  const children: ChildProcess[] = [];
  const client = new pg.Client({ connectionString: db.url });
  try {
    const env = {
      BENCH_STORE_URL: db.url,
      BENCH_TASKS: String(o.tasks),
      BENCH_PERIOD_S: String(o.periodS),
      BENCH_OUT: out,
    };
    for (let i = 0; i < o.instances; i++) children.push(await spawnInstance(env));
    await client.connect();
    // The window starts on a period boundary a few seconds after every instance is up.
    const periodMs = o.periodS * 1000;
    const from = Math.ceil((Date.now() + 5000) / periodMs) * periodMs;
    const to = from + o.windowS * 1000;
    const expectedTicks = (o.tasks * o.windowS) / o.periodS;
    progress(
      `  window ${new Date(from).toISOString()} + ${o.windowS} s: ${expectedTicks.toLocaleString('en-US')} ticks expected`,
    );
    await sleep(Math.max(0, to - Date.now()));
    // Late ticks are still claimed within misfireMs (60 s); then the window is what it is.
    const deadline = to + 75_000;
    let drainS = 0;
    for (;;) {
      const r = await client.query<{ n: string; running: string }>(
        `select count(*) as n, count(*) filter (where status = 'running') as running
           from scheduler_executions where scheduled_for >= $1 and scheduled_for < $2`,
        [from, to],
      );
      const done = Number(r.rows[0]?.n) >= expectedTicks && Number(r.rows[0]?.running) === 0;
      drainS = (Date.now() - to) / 1000;
      if (done || Date.now() > deadline) break;
      await sleep(500);
    }
    for (const c of children) await stopInstance(c);
    const rows = (
      await client.query<Row>(
        `select task, scheduled_for, status, started_at, instance_id, error from scheduler_executions
          where trigger_kind = 'cron' and scheduled_for >= $1 and scheduled_for < $2`,
        [from, to],
      )
    ).rows;
    const byTick = new Map<string, Row[]>();
    for (const r of rows) {
      const k = `${r.task} ${r.scheduled_for}`;
      byTick.set(k, [...(byTick.get(k) ?? []), r]);
    }
    const calls = new Map<string, number>();
    for (const line of readFileSync(out, 'utf8').split('\n')) {
      const [task, at] = line.split(' ');
      if (!task || Number(at) < from || Number(at) >= to) continue;
      calls.set(`${task} ${at}`, (calls.get(`${task} ${at}`) ?? 0) + 1);
    }
    let missed = 0;
    let doubleRows = 0;
    for (let i = 0; i < o.tasks; i++) {
      for (let t = from + (o.periodS === 1 ? 0 : (i % o.periodS) * 1000); t < to; t += periodMs) {
        const tick = byTick.get(`bench-task-${i} ${t}`) ?? [];
        if (tick.length > 1) doubleRows++;
        if (!tick.some((r) => r.status !== 'skipped')) missed++;
      }
    }
    const statuses: Record<string, number> = {};
    const skipReasons: Record<string, number> = {};
    for (const r of rows) {
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
      // "missed 3 tick(s) while …" and "missed 12 tick(s) …" are one reason.
      const reason = (r.error ?? '').replace(/\d+/g, 'N');
      if (r.status === 'skipped') skipReasons[reason] = (skipReasons[reason] ?? 0) + 1;
    }
    const ran = rows.filter((r) => r.status !== 'skipped');
    const lag = ran.map((r) => Number(r.started_at) - Number(r.scheduled_for));
    const instances = [...new Set(ran.map((r) => r.instance_id))];
    return {
      ...o,
      expectedTicks,
      missed,
      doubleRows,
      doubleCalls: [...calls.values()].filter((n) => n > 1).length,
      statuses,
      skipReasons,
      lagMs: {
        p50: percentile(lag, 0.5),
        p99: percentile(lag, 0.99),
        max: lag.length ? Math.max(...lag) : Number.NaN,
      },
      perInstance: instances.map((id) => ran.filter((r) => r.instance_id === id).length),
      drainS,
    };
  } finally {
    for (const c of children) await stopInstance(c).catch(() => undefined);
    await client.end().catch(() => undefined);
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs the scheduler section. */
export async function measureScheduler(o: {
  cycles: number;
  tasks: number;
  instances: number;
  /** Tick periods (s) of the multi-instance runs, e.g. [1, 10]. */
  periods: number[];
  windowS: number;
}): Promise<SchedulerBenchResults> {
  const res: SchedulerBenchResults = { cycles: o.cycles, locks: [], runs: [], notes: [] };
  for (const backend of ['sqlite', 'postgres', 'redis', 'etcd'] as const) {
    progress(`scheduler: lock latency, ${backend}, ${o.cycles} acquire/release cycles`);
    try {
      res.locks.push(
        backend === 'sqlite' || backend === 'postgres'
          ? await databaseLocks(backend, o.cycles)
          : await serverLocks(backend, o.cycles),
      );
    } catch (err) {
      res.notes.push(`${backend} lock latency not measured: ${(err as Error).message}`);
    }
  }
  for (const periodS of o.periods) {
    progress(
      `scheduler: ${o.tasks} tasks every ${periodS} s on ${o.instances} instances (PostgreSQL), ${o.windowS} s window`,
    );
    const r = await multiInstance({
      tasks: o.tasks,
      instances: o.instances,
      periodS,
      windowS: o.windowS,
    });
    progress(`  missed ${r.missed}, double rows ${r.doubleRows}, double calls ${r.doubleCalls}`);
    res.runs.push(r);
  }
  return res;
}
