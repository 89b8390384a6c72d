// The scheduler on every store (SPEC S-1 … S-5), driven by a ManualClock and runOnce():
// DST days in a real timezone, runtime changes seen by every instance, exactly-once ticks
// between instances, overlap, catch-up, manual triggers, timeouts and stats.
import { describe, expect, it } from 'vitest';
import { ManualClock, type TaskContext, type TaskDefinition } from '../../src/index.js';
import { BACKENDS, useDocketSuite, waitFor } from '../helpers/backends.js';

const iso = (ms: number) => new Date(ms).toISOString();

describe.each(BACKENDS)('scheduler on %s', (backend) => {
  const suite = useDocketSuite(backend, { pruneIntervalMs: 0 });
  let n = 0;
  const unique = (base: string) => `${base}-${++n}`;

  /** Drives the clock from `from` to `to` in `stepMs` steps, one pass per step. */
  async function drive(
    d: ReturnType<typeof suite.make>,
    clock: ManualClock,
    to: number,
    stepMs: number,
  ) {
    while (clock.now() < to) {
      clock.advance(Math.min(stepMs, to - clock.now()));
      await d.scheduler.runOnce();
      await d.scheduler.idle();
    }
  }

  async function ticksOf(d: ReturnType<typeof suite.make>, task: string) {
    const out: number[] = [];
    let cursor: string | undefined;
    do {
      const page = await d.scheduler.executions({ task, cursor, limit: 500 });
      out.push(...page.items.map((e) => e.scheduledFor));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    return out.sort((a, b) => a - b);
  }

  it.each([
    ['spring-forward', '2026-03-28T23:00:00Z', 23, '2026-03-29T01:00:00.000Z'],
    ['fall-back', '2026-10-24T22:00:00Z', 25, '2026-10-25T00:30:00.000Z'],
  ])(
    'on the %s day in Europe/Berlin an hourly task ticks every real hour once and a 02:30 task once',
    async (_day, midnight, hours, daily) => {
      const start = Date.parse(midnight);
      const clock = new ManualClock(start - 60_000);
      const hourly = unique('hourly');
      const at0230 = unique('daily-0230');
      const noop = async () => undefined;
      const d = suite.make({
        clock,
        scheduler: {
          misfireMs: 3_600_000,
          tasks: [
            { name: hourly, cron: '0 * * * *', timezone: 'Europe/Berlin', handler: noop },
            { name: at0230, cron: '0 30 2 * * *', timezone: 'Europe/Berlin', handler: noop },
          ],
        },
      });
      await d.scheduler.runOnce();
      await drive(d, clock, start + hours * 3_600_000 - 1, 7 * 60_000);
      const ticks = await ticksOf(d, hourly);
      expect(ticks).toHaveLength(hours);
      expect(ticks.map(iso)).toEqual(
        Array.from({ length: hours }, (_, i) => iso(start + i * 3_600_000)),
      );
      expect((await ticksOf(d, at0230)).map(iso)).toEqual([daily]);
      const runs = await d.scheduler.executions({ task: hourly, limit: 500 });
      expect(new Set(runs.items.map((e) => e.status))).toEqual(new Set(['succeeded']));
    },
  );

  it('two instances sharing the store run each tick exactly once', async () => {
    const clock = new ManualClock(Date.parse('2026-05-01T00:00:00Z'));
    const name = unique('every-second');
    const seen: number[] = [];
    const task = (): TaskDefinition => ({
      name,
      cron: '* * * * * *',
      handler: (ctx: TaskContext) => void seen.push(ctx.scheduledFor),
    });
    const a = suite.make({ clock, scheduler: { tasks: [task()] } });
    const b = suite.make({ clock, scheduler: { tasks: [task()] } });
    await a.scheduler.runOnce();
    for (let i = 0; i < 20; i++) {
      clock.advance(500);
      await Promise.all([a.scheduler.runOnce(), b.scheduler.runOnce()]);
    }
    await Promise.all([a.scheduler.idle(), b.scheduler.idle()]);
    const ticks = await ticksOf(a, name);
    expect(ticks).toHaveLength(10);
    expect(new Set(ticks).size).toBe(10);
    expect(seen.sort()).toEqual(ticks);
  });

  it('disable, enable and a new schedule made on one instance take effect on the other', async () => {
    const clock = new ManualClock(Date.parse('2026-05-01T00:00:00Z'));
    const name = unique('minutely');
    const task = (): TaskDefinition => ({ name, cron: '* * * * *', handler: () => undefined });
    const a = suite.make({ clock, scheduler: { tasks: [task()] } });
    const b = suite.make({ clock, scheduler: { tasks: [task()] } });
    await b.scheduler.runOnce();
    await drive(b, clock, clock.now() + 120_000, 30_000);
    expect(await ticksOf(a, name)).toHaveLength(2);

    const off = await a.scheduler.disable(name, { actor: 'user:ops' });
    expect(off.enabled).toBe(false);
    await drive(b, clock, clock.now() + 180_000, 30_000);
    expect(await ticksOf(a, name)).toHaveLength(2);

    await a.scheduler.enable(name);
    const hourly = await a.scheduler.updateSchedule(name, { cron: '0 * * * *', timezone: 'UTC' });
    expect(hourly).toMatchObject({ cron: '0 * * * *', overridden: true, enabled: true });
    const from = clock.now();
    await drive(b, clock, from + 2 * 3_600_000, 60_000);
    const later = (await ticksOf(a, name)).slice(2);
    expect(later.every((t) => t % 3_600_000 === 0)).toBe(true);
    expect(later).toHaveLength(2);

    const audit = await a.audit.list({ resourceType: 'scheduler_task' }, { tenant: 'system' });
    expect(audit.items.map((e) => e.action)).toEqual(
      expect.arrayContaining([
        'scheduler.task_disabled',
        'scheduler.task_enabled',
        'scheduler.task_rescheduled',
      ]),
    );
  });

  it('an invalid cron or timezone is refused at registration and update, changing nothing', async () => {
    const d = suite.make();
    const name = unique('valid');
    d.scheduler.register({ name, cron: '*/5 * * * *', handler: () => undefined });
    for (const bad of [
      { cron: '61 * * * *' },
      { cron: '* * * * *', timezone: 'Mars/Olympus' },
      { cron: '' },
    ]) {
      expect(() =>
        d.scheduler.register({
          name: unique('bad'),
          handler: () => undefined,
          ...bad,
        } as TaskDefinition),
      ).toThrow(expect.objectContaining({ code: 'SCHEDULE_INVALID' }));
    }
    await d.start();
    await expect(
      d.scheduler.updateSchedule(name, { cron: '* * * * *', timezone: 'Nowhere/Land' }),
    ).rejects.toMatchObject({ code: 'SCHEDULE_INVALID' });
    expect(await d.scheduler.get(name)).toMatchObject({ cron: '*/5 * * * *', overridden: false });
    await expect(d.scheduler.get('no-such-task')).rejects.toMatchObject({ code: 'TASK_NOT_FOUND' });
  });

  it('overlap forbid skips a tick while the previous run holds the lock; allow runs both', async () => {
    const clock = new ManualClock(Date.parse('2026-05-01T00:00:00Z'));
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const forbid = unique('forbid');
    const allow = unique('allow');
    const d = suite.make({
      clock,
      scheduler: {
        tasks: [
          { name: forbid, cron: '* * * * * *', handler: () => gate },
          { name: allow, cron: '* * * * * *', overlap: 'allow', handler: () => gate },
        ],
      },
    });
    await d.scheduler.runOnce();
    clock.advance(1000);
    await d.scheduler.runOnce();
    clock.advance(1000);
    await d.scheduler.runOnce();
    await waitFor(async () => {
      const s = (await d.scheduler.executions({ task: forbid })).items.map((e) => e.status);
      return s.includes('skipped') && s.includes('running');
    });
    await expect(d.scheduler.trigger(forbid)).rejects.toMatchObject({ code: 'TASK_RUNNING' });
    release();
    await d.scheduler.idle();
    const f = (await d.scheduler.executions({ task: forbid })).items;
    expect(f.map((e) => e.status).sort()).toEqual(['skipped', 'succeeded']);
    expect(f.find((e) => e.status === 'succeeded')?.fencingToken).toBeGreaterThan(0);
    const a = (await d.scheduler.executions({ task: allow })).items;
    expect(a.map((e) => e.status)).toEqual(['succeeded', 'succeeded']);
  });

  it('catchUp skip records one skipped run for a long outage; once runs the latest missed tick once', async () => {
    const clock = new ManualClock(Date.parse('2026-05-01T00:00:00Z'));
    const skip = unique('skip');
    const once = unique('once');
    const d = suite.make({
      clock,
      scheduler: {
        misfireMs: 30_000,
        tasks: [
          { name: skip, cron: '* * * * *', handler: () => undefined },
          { name: once, cron: '* * * * *', catchUp: 'once', handler: () => undefined },
        ],
      },
    });
    await d.scheduler.runOnce();
    clock.advance(10 * 60_000 + 10_000);
    await d.scheduler.runOnce();
    await d.scheduler.idle();
    const s = (await d.scheduler.executions({ task: skip })).items;
    const o = (await d.scheduler.executions({ task: once })).items;
    // 00:01 … 00:09 were missed; 00:10 is within misfireMs and runs normally.
    expect(s.map((e) => [iso(e.scheduledFor), e.status])).toEqual([
      ['2026-05-01T00:10:00.000Z', 'succeeded'],
      ['2026-05-01T00:09:00.000Z', 'skipped'],
    ]);
    expect(s[1]?.error).toMatch(/missed 9 tick/);
    // One pass starts one run of an overlap 'forbid' task: the caught-up 00:09 runs, and 00:10,
    // due in the same pass, would overlap it.
    expect(o.map((e) => [iso(e.scheduledFor), e.status])).toEqual([
      ['2026-05-01T00:10:00.000Z', 'skipped'],
      ['2026-05-01T00:09:00.000Z', 'succeeded'],
    ]);
    expect(o[0]?.error).toMatch(/earlier tick of this task started in the same pass/);
  });

  it('a manual trigger runs the task, is audited, and is refused for a disabled task', async () => {
    const name = unique('manual');
    let ran = 0;
    const d = suite.make({
      scheduler: {
        tasks: [{ name, cron: '0 0 1 1 *', tenant: 'acme', handler: () => void ran++ }],
      },
    });
    await d.start();
    const e = await d.scheduler.trigger(name, { actor: 'user:alice', tenant: 'acme' });
    expect(e).toMatchObject({ trigger: 'manual', status: 'running', tenantId: 'acme' });
    expect(e.fencingToken).toBeGreaterThan(0);
    await d.scheduler.idle();
    expect(await d.scheduler.execution(e.id)).toMatchObject({ status: 'succeeded' });
    expect(ran).toBe(1);
    await expect(d.scheduler.trigger(name, { tenant: 'other' })).rejects.toMatchObject({
      code: 'TASK_NOT_FOUND',
    });
    await expect(d.scheduler.execution(e.id, { tenant: 'other' })).rejects.toMatchObject({
      code: 'EXECUTION_NOT_FOUND',
    });
    const audit = await d.audit.list({ action: 'scheduler.task_triggered' }, { tenant: 'acme' });
    expect(audit.items[0]).toMatchObject({ resource: { id: name } });
    await d.scheduler.disable(name);
    await expect(d.scheduler.trigger(name)).rejects.toMatchObject({ code: 'TASK_DISABLED' });
    expect((await d.scheduler.executions({ task: name })).items).toHaveLength(1);
  });

  it('a handler that ignores its signal is timed_out after graceMs, its lock freed and an alert raised', async () => {
    const name = unique('stuck');
    let aborted = false;
    const d = suite.make({
      scheduler: {
        tasks: [
          {
            name,
            cron: '0 0 1 1 *',
            timeoutMs: 50,
            graceMs: 100,
            handler: (ctx) => {
              ctx.signal.addEventListener('abort', () => (aborted = true));
              return new Promise(() => undefined);
            },
          },
        ],
      },
    });
    await d.start();
    const e = await d.scheduler.trigger(name);
    await d.scheduler.idle();
    const done = await d.scheduler.execution(e.id);
    expect(aborted).toBe(true);
    expect(done).toMatchObject({ status: 'timed_out' });
    expect(done.durationMs).toBeGreaterThanOrEqual(100);
    // The lock is free again: a new run is admitted.
    const again = await d.scheduler.trigger(name);
    expect(again.fencingToken).toBeGreaterThan(e.fencingToken!);
    const db = await d.internals.systemDb();
    const alerts = await db
      .selectFrom('alerts')
      .selectAll()
      .where('key', '=', `scheduler.task_timed_out:${name}`)
      .execute();
    expect(alerts).toHaveLength(1);
  });

  it('canceling a running execution from another instance stops it within a pass, frees the lock and is audited', async () => {
    const name = unique('cancel');
    const aborts: string[] = [];
    let ignoring = false;
    const task: TaskDefinition = {
      name,
      cron: '0 0 1 1 *',
      tenant: 'acme',
      timeoutMs: 60_000,
      graceMs: 150,
      handler: (ctx) =>
        new Promise((resolve, reject) => {
          ctx.signal.addEventListener('abort', () => {
            aborts.push(String((ctx.signal.reason as Error).message));
            if (!ignoring) reject(ctx.signal.reason as Error);
          });
        }),
    };
    const a = suite.make({ scheduler: { tasks: [task] } });
    const b = suite.make({ scheduler: { tasks: [{ ...task, handler: () => undefined }] } });
    const e = await a.scheduler.trigger(name, { tenant: 'acme' });
    // Another tenant cannot see it, let alone cancel it.
    await expect(b.scheduler.cancelExecution(e.id, { tenant: 'other' })).rejects.toMatchObject({
      code: 'EXECUTION_NOT_FOUND',
    });
    const canceled = await b.scheduler.cancelExecution(e.id, {
      tenant: 'acme',
      actor: 'user:ops',
      reason: 'stuck on a report',
    });
    expect(canceled).toMatchObject({
      status: 'canceled',
      error: 'canceled by user:ops: stuck on a report',
    });
    expect(aborts).toEqual([]); // instance a learns of it at its next pass
    await a.scheduler.runOnce();
    await a.scheduler.idle();
    expect(aborts).toHaveLength(1);
    expect(aborts[0]).toContain('was canceled');
    // The handler's rejection recorded nothing over the cancel.
    expect(await a.scheduler.execution(e.id)).toMatchObject({ status: 'canceled' });
    await expect(b.scheduler.cancelExecution(e.id)).rejects.toMatchObject({
      code: 'EXECUTION_NOT_RUNNING',
      details: { status: 'canceled' },
    });
    const audit = await a.audit.list(
      { action: 'scheduler.execution_canceled' },
      { tenant: 'acme' },
    );
    expect(audit.items[0]).toMatchObject({
      resource: { id: name },
      actor: { type: 'user', id: 'ops' },
      metadata: { executionId: e.id, reason: 'stuck on a report' },
    });
    // A handler that ignores the abort still gives the lock back after graceMs.
    ignoring = true;
    const second = await a.scheduler.trigger(name, { tenant: 'acme' });
    expect(second.fencingToken).toBeGreaterThan(e.fencingToken!);
    await a.scheduler.cancelExecution(second.id);
    await a.scheduler.idle();
    const third = await a.scheduler.trigger(name, { tenant: 'acme' });
    expect(third.fencingToken).toBeGreaterThan(second.fencingToken!);
    ignoring = false;
    await a.scheduler.cancelExecution(third.id);
    await a.scheduler.idle();
    expect((await a.scheduler.executions({ task: name })).items.map((x) => x.status)).toEqual([
      'canceled',
      'canceled',
      'canceled',
    ]);
  });

  it('a run whose instance stopped heart-beating is failed by another instance after the lease', async () => {
    const clock = new ManualClock(Date.parse('2026-05-01T00:00:00Z'));
    const name = unique('orphaned');
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const hang = () => gate;
    const a = suite.make({
      clock,
      scheduler: { leaseMs: 10_000, tasks: [{ name, cron: '* * * * *', handler: hang }] },
    });
    const b = suite.make({
      clock,
      scheduler: { leaseMs: 10_000, tasks: [{ name, cron: '* * * * *', handler: hang }] },
    });
    await a.scheduler.runOnce();
    clock.advance(60_000);
    const [started] = await a.scheduler.runOnce();
    expect(started?.status).toBe('running');
    // a never passes again (as if it died); b fails the run once the lease is over, not before.
    clock.advance(5_000);
    await b.scheduler.runOnce();
    expect((await b.scheduler.execution(started!.id)).status).toBe('running');
    clock.advance(6_000);
    await b.scheduler.runOnce();
    const lost = await b.scheduler.execution(started!.id);
    expect(lost).toMatchObject({ status: 'failed' });
    expect(lost.error).toMatch(/stopped/);
    // a's handler finishing late changes nothing: the row is final.
    release();
    await a.scheduler.idle();
    expect((await a.scheduler.execution(started!.id)).status).toBe('failed');
  });

  it('a handler that honours its signal is timed_out at once when it rejects after the abort', async () => {
    const name = unique('polite');
    const d = suite.make({
      scheduler: {
        tasks: [
          {
            name,
            cron: '0 0 1 1 *',
            timeoutMs: 30,
            graceMs: 60_000,
            handler: (ctx) =>
              new Promise((_, reject) =>
                ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)),
              ),
          },
        ],
      },
    });
    await d.start();
    const started = Date.now();
    const e = await d.scheduler.trigger(name);
    await d.scheduler.idle();
    expect(Date.now() - started).toBeLessThan(10_000);
    const done = await d.scheduler.execution(e.id);
    expect(done.status).toBe('timed_out');
    expect(done.error).toMatch(/aborted at timeoutMs 30/);
  });

  it('pruning deletes finished executions past retention and keeps newer ones', async () => {
    const clock = new ManualClock(Date.parse('2026-05-01T00:00:00Z'));
    const name = unique('retained');
    const d = suite.make({
      clock,
      scheduler: {
        retentionMs: 3 * 60_000,
        tasks: [{ name, cron: '* * * * *', handler: () => undefined }],
      },
    });
    await d.scheduler.runOnce();
    await drive(d, clock, clock.now() + 6 * 60_000, 60_000);
    expect(await ticksOf(d, name)).toHaveLength(6);
    await d.pruneOnce();
    const kept = await ticksOf(d, name);
    // Now 00:06 and 3 min retention: runs that finished at 00:03 or later stay.
    expect(kept.map(iso)).toEqual([
      '2026-05-01T00:03:00.000Z',
      '2026-05-01T00:04:00.000Z',
      '2026-05-01T00:05:00.000Z',
      '2026-05-01T00:06:00.000Z',
    ]);
  });

  it('stats give success rate, average and p95 duration, failures and last and next run', async () => {
    const clock = new ManualClock(Date.parse('2026-05-01T00:00:00Z'));
    const name = unique('stats');
    let i = 0;
    const d = suite.make({
      clock,
      scheduler: {
        tasks: [
          {
            name,
            cron: '* * * * *',
            handler: () => {
              clock.advance(++i * 100);
              if (i % 4 === 0) throw new Error(`failure ${i}`);
            },
          },
        ],
      },
    });
    await d.scheduler.runOnce();
    await drive(d, clock, clock.now() + 8 * 60_000, 60_000);
    const [st] = await d.scheduler.stats({ task: name });
    expect(st).toMatchObject({ task: name, finished: 8, succeeded: 6, failures: 2 });
    expect(st?.successRate).toBeCloseTo(0.75);
    expect(st?.avgDurationMs).toBeCloseTo(450);
    expect(st?.p95DurationMs).toBe(800);
    expect(st?.lastStatus).toBe('failed');
    expect(st?.nextRunAt).toBeGreaterThan(clock.now());
    const failed = await d.scheduler.executions({ task: name, status: ['failed'] });
    expect(failed.items[0]?.stack).toMatch(/failure 8/);
  });
});
