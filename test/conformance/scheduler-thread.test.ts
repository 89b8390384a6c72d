// isolation: 'thread' and concurrent starts within a pass, on every store: a thread task's
// outcome (success, failure with its stack, a timeout it honours) is recorded like an inline
// one's; one that never yields is stopped — its thread terminated, the run timed_out, the lock
// free for the next run; and a pass prepares many due runs at once but starts them in priority
// order, each tick once, one run per 'forbid' task.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DatabaseLockBackend,
  ManualClock,
  type LockBackend,
  type TaskDefinition,
} from '../../src/index.js';
import { reportFile } from '../fixtures/scheduler-thread-task.js';
import { BACKENDS, useDocketSuite, waitFor } from '../helpers/backends.js';

const MODULE = new URL('../fixtures/scheduler-thread-task.ts', import.meta.url);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each(BACKENDS)('scheduler threads and concurrency on %s', (backend) => {
  const suite = useDocketSuite(backend, { pruneIntervalMs: 0 });
  let n = 0;
  const unique = (base: string) => `${base}-${backend}-${++n}`;
  const yearly = '0 0 1 1 *';

  const reports: string[] = [];
  afterAll(() => reports.forEach((f) => rmSync(f, { force: true })));

  /** A thread task of the fixture module; its report file starts absent. */
  function threadTask(name: string, exportName: string, o: Partial<TaskDefinition> = {}) {
    reports.push(reportFile(name));
    rmSync(reportFile(name), { force: true });
    return { name, cron: yearly, isolation: 'thread', module: MODULE, export: exportName, ...o };
  }

  it('a thread task runs on another thread with its context and succeeds, by cron and by trigger', async () => {
    const clock = new ManualClock(Date.parse('2026-05-01T00:00:00Z'));
    const name = unique('thread-ok');
    const d = suite.make({
      clock,
      scheduler: {
        tasks: [threadTask(name, 'default', { cron: '* * * * * *' }) as TaskDefinition],
      },
    });
    await d.scheduler.runOnce();
    clock.advance(1000);
    const [tick] = await d.scheduler.runOnce();
    await d.scheduler.idle();
    expect(await d.scheduler.execution(tick!.id)).toMatchObject({ status: 'succeeded' });
    const cron = JSON.parse(readFileSync(reportFile(name), 'utf8'));
    expect(cron).toMatchObject({ isMainThread: false, signal: true });
    expect(cron.context).toMatchObject({
      task: name,
      executionId: tick!.id,
      scheduledFor: tick!.scheduledFor,
      trigger: 'cron',
      traceId: tick!.traceId,
    });
    expect(cron.context.fencingToken).toBeGreaterThan(0);

    const manual = await d.scheduler.trigger(name);
    await d.scheduler.idle();
    expect(await d.scheduler.execution(manual.id)).toMatchObject({ status: 'succeeded' });
    const m = JSON.parse(readFileSync(reportFile(name), 'utf8'));
    expect(m.context).toMatchObject({
      executionId: manual.id,
      trigger: 'manual',
      fencingToken: manual.fencingToken,
    });
    expect(m.threadId).not.toBe(cron.threadId); // a fresh thread per run
  });

  it('a thread task that throws is failed with its message and stack; a missing export fails the run', async () => {
    const failing = unique('thread-fails');
    const missing = unique('thread-missing');
    const d = suite.make({
      scheduler: {
        tasks: [
          threadTask(failing, 'failing') as TaskDefinition,
          threadTask(missing, 'notAHandler') as TaskDefinition,
        ],
      },
    });
    await d.start();
    const e = await d.scheduler.trigger(failing);
    const m = await d.scheduler.trigger(missing);
    await d.scheduler.idle();
    const done = await d.scheduler.execution(e.id);
    expect(done).toMatchObject({ status: 'failed', error: 'the thread task failed on purpose' });
    expect(done.stack).toMatch(/failing/);
    expect(done.stack).toMatch(/scheduler-thread-task/);
    const lost = await d.scheduler.execution(m.id);
    expect(lost.status).toBe('failed');
    expect(lost.error).toMatch(/no function export "notAHandler"/);
  });

  it('a thread task that never yields is timed_out after timeout + grace, its thread terminated and its lock freed', async () => {
    const name = unique('thread-spins');
    const d = suite.make({
      scheduler: {
        tasks: [threadTask(name, 'spinning', { timeoutMs: 3000, graceMs: 200 }) as TaskDefinition],
      },
    });
    await d.start();
    const e = await d.scheduler.trigger(name);
    await waitFor(() => existsSync(reportFile(name)), { what: 'the loop to beat' });
    await d.scheduler.idle();
    const done = await d.scheduler.execution(e.id);
    expect(done.status).toBe('timed_out');
    expect(done.error).toMatch(/timeoutMs 3000 \+ graceMs 200; its thread was terminated/);
    expect(done.durationMs).toBeGreaterThanOrEqual(3200);
    // The loop beat every few ms while it ran; once terminated it beats no more.
    const beats = readFileSync(reportFile(name), 'utf8');
    expect(Number(beats)).toBeGreaterThan(0);
    await sleep(400);
    expect(readFileSync(reportFile(name), 'utf8')).toBe(beats);
    const db = await d.internals.systemDb();
    const alerts = await db
      .selectFrom('alerts')
      .selectAll()
      .where('key', '=', `scheduler.task_timed_out:${name}`)
      .execute();
    expect(alerts).toHaveLength(1);
    // The lock is free: the next run is admitted (and stopped the same way).
    const again = await d.scheduler.trigger(name);
    expect(again.fencingToken).toBeGreaterThan(e.fencingToken!);
    await d.scheduler.idle();
    expect((await d.scheduler.execution(again.id)).status).toBe('timed_out');
  });

  it('a thread task that honours its signal is timed_out as soon as it rejects', async () => {
    const name = unique('thread-polite');
    const d = suite.make({
      scheduler: {
        tasks: [threadTask(name, 'polite', { timeoutMs: 100, graceMs: 60_000 }) as TaskDefinition],
      },
    });
    await d.start();
    const started = Date.now();
    const e = await d.scheduler.trigger(name);
    await d.scheduler.idle();
    expect(Date.now() - started).toBeLessThan(20_000);
    const done = await d.scheduler.execution(e.id);
    expect(done.status).toBe('timed_out');
    expect(done.error).toMatch(/aborted at timeoutMs 100: task .* timed out after 100 ms/);
  });

  it('thread options are validated at registration', () => {
    const d = suite.make();
    const base = { cron: yearly };
    const refused = [
      { ...base, isolation: 'thread' },
      { ...base, isolation: 'thread', module: './relative.js' },
      { ...base, isolation: 'thread', module: new URL('https://example.com/t.js') },
      { ...base, isolation: 'thread', module: MODULE, handler: () => undefined },
      { ...base, isolation: 'thread', module: MODULE, export: '' },
      { ...base, module: MODULE, handler: () => undefined },
      { ...base, isolation: 'process', handler: () => undefined },
    ];
    for (const bad of refused) {
      expect(() => d.scheduler.register({ name: unique('bad'), ...bad } as TaskDefinition)).toThrow(
        expect.objectContaining({ code: 'VALIDATION_FAILED' }),
      );
    }
    d.scheduler.register({
      name: unique('path'),
      ...base,
      isolation: 'thread',
      module: MODULE.pathname,
    });
  });

  it('a concurrency below 1 is refused', async () => {
    await expect(
      suite.make({ scheduler: { concurrency: 0 } }).scheduler.runOnce(),
    ).rejects.toMatchObject({ code: 'VALIDATION_FAILED', details: { field: 'concurrency' } });
  });

  it('one pass runs many due tasks once each, prepares them concurrently and starts them in priority order', async () => {
    const clock = new ManualClock(Date.parse('2026-05-01T00:00:00Z'));
    const started: string[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const tasks: TaskDefinition[] = Array.from({ length: 40 }, (_, i) => ({
      name: unique(`many-${String(i).padStart(2, '0')}`),
      cron: '* * * * * *',
      priority: (i * 7) % 5,
      overlap: i % 4 === 0 ? 'allow' : 'forbid',
      handler: (ctx) => void started.push(ctx.task),
    }));
    // Counts lock acquisitions in flight through the real database lock backend.
    const through: { real?: LockBackend } = {};
    const counting: LockBackend = {
      async lockAcquire(p) {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        try {
          return await (through.real as LockBackend).lockAcquire(p);
        } finally {
          inFlight--;
        }
      },
      lockExtend: (p) => (through.real as LockBackend).lockExtend(p),
      lockRelease: (p) => (through.real as LockBackend).lockRelease(p),
    };
    const d0 = suite.make({ clock, scheduler: { concurrency: 4, locks: counting, tasks } });
    through.real = new DatabaseLockBackend(await d0.internals.systemDb());
    await d0.scheduler.runOnce();
    clock.advance(1000);
    const claimed = await d0.scheduler.runOnce();
    await d0.scheduler.idle();
    expect(claimed).toHaveLength(40);
    const order = [...tasks]
      .sort((a, b) => a.priority! - b.priority! || (a.name < b.name ? -1 : 1))
      .map((t) => t.name);
    expect(started).toEqual(order);
    expect(maxInFlight).toBe(4);
    for (const t of tasks) {
      const runs = (await d0.scheduler.executions({ task: t.name })).items;
      expect(runs.map((e) => e.status)).toEqual(['succeeded']);
    }
  });

  it('two instances passing at once with concurrency claim every tick of many tasks exactly once', async () => {
    const clock = new ManualClock(Date.parse('2026-05-01T00:00:00Z'));
    const seen: string[] = [];
    const tasks = (): TaskDefinition[] =>
      Array.from({ length: 30 }, (_, i) => ({
        name: `pair-${backend}-${i}`,
        cron: '* * * * * *',
        handler: (ctx) => void seen.push(`${ctx.task}@${ctx.scheduledFor}`),
      }));
    const a = suite.make({ clock, scheduler: { concurrency: 8, tasks: tasks() } });
    const b = suite.make({ clock, scheduler: { concurrency: 8, tasks: tasks() } });
    await a.scheduler.runOnce();
    for (let i = 0; i < 5; i++) {
      clock.advance(1000);
      await Promise.all([a.scheduler.runOnce(), b.scheduler.runOnce()]);
      await Promise.all([a.scheduler.idle(), b.scheduler.idle()]);
    }
    expect(seen).toHaveLength(150);
    expect(new Set(seen).size).toBe(150);
    const rows = (await a.scheduler.executions({ limit: 500 })).items.filter((e) =>
      e.task.startsWith(`pair-${backend}-`),
    );
    expect(rows).toHaveLength(150);
    expect(new Set(rows.map((e) => e.status))).toEqual(new Set(['succeeded']));
  });

  it('a forbid task with several ticks due in one pass starts one run and skips the rest', async () => {
    const clock = new ManualClock(Date.parse('2026-05-01T00:00:00Z'));
    const name = unique('late');
    let runs = 0;
    const d = suite.make({
      clock,
      scheduler: { tasks: [{ name, cron: '* * * * * *', handler: () => void runs++ }] },
    });
    await d.scheduler.runOnce();
    clock.advance(3000);
    expect(await d.scheduler.runOnce()).toHaveLength(3);
    await d.scheduler.idle();
    const e = (await d.scheduler.executions({ task: name })).items;
    expect(e.map((x) => x.status)).toEqual(['skipped', 'skipped', 'succeeded']);
    expect(runs).toBe(1);
  });
});
