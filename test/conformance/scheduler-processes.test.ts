// Scheduler instances as separate processes on every store (SPEC S-2): three processes run
// several every-second tasks together on the real clock. Every tick in the observed window ran
// exactly once: one execution row per (task, second), one handler call per row, none missing.
// When one instance is SIGKILLed mid-window, the others carry on: still one row per tick, no
// tick runs twice, and the dead instance's unfinished runs end as failed once its lease is over.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Docket, TaskExecution } from '../../src/index.js';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import { BACKENDS, ETCD_URL, REDIS_URL, useDocketSuite, waitFor } from '../helpers/backends.js';
import { spawnScheduler, type WorkerProcess } from '../helpers/processes.js';

const TASKS = 4;
const WINDOW_S = 8;

function readLines(file: string): string[][] {
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(' '));
}

/**
 * Per task: no tick has two rows or two handler calls anywhere, and every second of
 * [from, to) has exactly one row. Returns the window's rows and the handler calls.
 */
function checkTicks(all: TaskExecution[], out: string, from: number, to: number) {
  const lines = readLines(out);
  return Array.from({ length: TASKS }, (_, i) => {
    const task = `every-second-${i}`;
    const rows = all.filter((e) => e.task === task);
    expect(new Set(rows.map((e) => e.scheduledFor)).size).toBe(rows.length);
    const calls = lines.filter((l) => l[0] === task).map((l) => Number(l[1]));
    expect(new Set(calls).size).toBe(calls.length);
    const inWindow = rows
      .filter((e) => e.scheduledFor >= from && e.scheduledFor < to)
      .sort((a, b) => a.scheduledFor - b.scheduledFor);
    expect(inWindow.map((e) => e.scheduledFor)).toEqual(
      Array.from({ length: WINDOW_S }, (_, s) => from + s * 1000),
    );
    return { inWindow, calls };
  });
}

/** Every execution in the store, through the keyset pages. */
async function allExecutions(d: Docket): Promise<TaskExecution[]> {
  const all: TaskExecution[] = [];
  let cursor: string | undefined;
  do {
    const page = await d.scheduler.executions({ cursor, limit: 500 });
    all.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return all;
}

/**
 * Three scheduler processes on `suite`'s store with `baseEnv`: every tick of every task in the
 * window ran exactly once, shared between the processes. `track` gets the processes to clean up.
 */
async function threeInstancesRunEveryTickOnce(
  suite: ReturnType<typeof useDocketSuite>,
  baseEnv: Record<string, string>,
  track: (procs: WorkerProcess[]) => void,
): Promise<void> {
  const out = join(suite.ts.dataDir, 'runs.txt');
  writeFileSync(out, '');
  const env = { ...baseEnv, TEST_OUT: out, TEST_TASKS: String(TASKS) };
  const procs = await Promise.all([0, 1, 2].map(() => spawnScheduler(env)));
  track(procs);
  // The window starts after every instance is up and ends before any stops.
  const from = Math.ceil(Date.now() / 1000) * 1000 + 1000;
  const to = from + WINDOW_S * 1000;
  const d = suite.make();
  await waitFor(
    async () => {
      const page = await d.scheduler.executions({ limit: 500 });
      return (
        page.items.filter((e) => e.scheduledFor >= to && e.status === 'succeeded').length >= TASKS
      );
    },
    { timeoutMs: (WINDOW_S + 20) * 1000, what: 'ticks past the window' },
  );
  for (const p of procs) p.child.kill('SIGTERM');
  await Promise.all(procs.map((p) => p.exited));

  const pids = new Set<string>();
  for (const { inWindow, calls } of checkTicks(await allExecutions(d), out, from, to)) {
    // Every second of the window succeeded, with one handler call each.
    expect(inWindow.every((e) => e.status === 'succeeded')).toBe(true);
    expect(calls.filter((t) => t >= from && t < to).sort()).toEqual(
      inWindow.map((e) => e.scheduledFor),
    );
  }
  for (const line of readLines(out)) pids.add(line[2] as string);
  // The work was shared: more than one process won ticks.
  expect(pids.size).toBeGreaterThan(1);
}

describe.each(BACKENDS)('scheduler processes on %s', (backend) => {
  const suite = useDocketSuite(backend);
  let procs: WorkerProcess[] = [];

  afterEach(async () => {
    for (const p of procs) {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
      await p.exited;
    }
    procs = [];
  });

  it(
    'three instances run every tick of every task exactly once, none missed',
    () => threeInstancesRunEveryTickOnce(suite, suite.ts.env, (p) => (procs = p)),
    90_000,
  );

  it('a SIGKILLed instance neither doubles nor loses ticks; its runs end failed, its locks expire', async () => {
    const out = join(suite.ts.dataDir, 'runs-kill.txt');
    writeFileSync(out, '');
    const env = { ...suite.ts.env, TEST_OUT: out, TEST_TASKS: String(TASKS) };
    procs = await Promise.all([0, 1, 2].map(() => spawnScheduler(env)));
    const from = Math.ceil(Date.now() / 1000) * 1000 + 1000;
    const to = from + WINDOW_S * 1000;
    const d = suite.make();
    const rowsPast = async (t: number) =>
      (await d.scheduler.executions({ limit: 500 })).items.filter((e) => e.scheduledFor >= t)
        .length;
    await waitFor(async () => (await rowsPast(from + 3000)) >= TASKS, {
      timeoutMs: 30_000,
      what: 'ticks mid-window',
    });
    const victim = procs[0]!;
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    await victim.exited;
    await waitFor(async () => (await rowsPast(to)) >= TASKS, {
      timeoutMs: 40_000,
      what: 'ticks past the window',
    });
    // The dead instance's running rows are failed by the survivors after its 5 s lease.
    await waitFor(
      async () =>
        (await d.scheduler.executions({ status: ['running'], limit: 500 })).items.every(
          (e) => e.scheduledFor > to,
        ),
      { timeoutMs: 30_000, what: 'orphaned runs to be failed' },
    );
    for (const p of procs.slice(1)) p.child.kill('SIGTERM');
    await Promise.all(procs.map((p) => p.exited));

    for (const { inWindow } of checkTicks(await allExecutions(d), out, from, to)) {
      // Only runs the dead instance had claimed (at most a pass or two) failed; while its task
      // lock's 5 s lease ran out, ticks were skipped (overlap: forbid), and only then.
      const failed = inWindow.filter((e) => e.status === 'failed');
      expect(failed.length).toBeLessThanOrEqual(2);
      const skipped = inWindow.filter((e) => e.status === 'skipped');
      for (const e of skipped) {
        expect(e.scheduledFor).toBeGreaterThanOrEqual(killedAt - 2000);
        expect(e.scheduledFor).toBeLessThanOrEqual(killedAt + 5000 + 2000);
        expect(e.error).toMatch(/lock/);
      }
      expect(
        failed.length + skipped.length + inWindow.filter((e) => e.status === 'succeeded').length,
      ).toBe(WINDOW_S);
    }
  }, 150_000);
});

// The same three processes with their task locks in Redis and in etcd (SPEC S-2) instead of the
// database lease: the store still elects each tick's one execution; the lock backend must never
// let two runs of a task overlap nor keep a tick from running.
describe.each<{ locks: string; env: Record<string, string> }>([
  { locks: 'redis', env: { DOCKET_REDIS_URL: REDIS_URL } },
  { locks: 'etcd', env: { DOCKET_ETCD_URL: ETCD_URL } },
])('scheduler processes with $locks locks', ({ locks, env }) => {
  const suite = useDocketSuite('postgres');
  let procs: WorkerProcess[] = [];
  afterEach(async () => {
    for (const p of procs) {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
      await p.exited;
    }
    procs = [];
  });

  it('three instances run every tick of every task exactly once, none missed', async () => {
    const prefix = `docket-test-${randomBytes(4).toString('hex')}${locks === 'redis' ? ':' : '/'}`;
    await threeInstancesRunEveryTickOnce(
      suite,
      {
        ...suite.ts.env,
        ...env,
        DOCKET_SCHEDULER_LOCKS: locks,
        DOCKET_SCHEDULER_LOCKS_PREFIX: prefix,
      },
      (p) => (procs = p),
    );
    // Every succeeded run held a grant of the chosen backend: a task's fencing tokens grow
    // with its ticks.
    const rows = await allExecutions(suite.make());
    for (let i = 0; i < TASKS; i++) {
      const tokens = rows
        .filter((e) => e.task === `every-second-${i}` && e.status === 'succeeded')
        .sort((a, b) => a.scheduledFor - b.scheduledFor)
        .map((e) => e.fencingToken as number);
      expect(tokens.length).toBeGreaterThanOrEqual(WINDOW_S);
      for (let k = 1; k < tokens.length; k++) expect(tokens[k]!).toBeGreaterThan(tokens[k - 1]!);
    }
    await removeLockKeys(locks, prefix);
  }, 90_000);
});

async function removeLockKeys(locks: string, prefix: string): Promise<void> {
  if (locks === 'redis') {
    const r = new Redis(REDIS_URL);
    const keys = await r.keys(`${prefix}*`);
    if (keys.length) await r.del(...keys);
    await r.quit();
  } else {
    const c = new Etcd3({ hosts: ETCD_URL });
    await c.delete().prefix(prefix);
    c.close();
  }
}
