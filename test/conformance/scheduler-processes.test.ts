// Scheduler instances as separate processes on every store (SPEC S-2): three processes run
// several every-second tasks together on the real clock. Every tick in the observed window ran
// exactly once: one execution row per (task, second), one handler call per row, none missing.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BACKENDS, useDocketSuite, waitFor } from '../helpers/backends.js';
import { spawnScheduler, type WorkerProcess } from '../helpers/processes.js';

const TASKS = 4;
const WINDOW_S = 8;

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

  it('three instances run every tick of every task exactly once, none missed', async () => {
    const out = join(suite.ts.dataDir, 'runs.txt');
    writeFileSync(out, '');
    const env = { ...suite.ts.env, TEST_OUT: out, TEST_TASKS: String(TASKS) };
    procs = await Promise.all([0, 1, 2].map(() => spawnScheduler(env)));
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

    const all = [];
    let cursor: string | undefined;
    do {
      const page = await d.scheduler.executions({ cursor, limit: 500 });
      all.push(...page.items);
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    const runs = readFileSync(out, 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(' '));
    const pids = new Set<string>();
    for (let i = 0; i < TASKS; i++) {
      const task = `every-second-${i}`;
      const rows = all.filter((e) => e.task === task);
      // No tick has two rows or two handler calls, anywhere (not only in the window).
      expect(new Set(rows.map((e) => e.scheduledFor)).size).toBe(rows.length);
      const calls = runs.filter((r) => r[0] === task).map((r) => Number(r[1]));
      expect(new Set(calls).size).toBe(calls.length);
      // Every second of the window ran once and succeeded.
      const inWindow = rows
        .filter((e) => e.scheduledFor >= from && e.scheduledFor < to)
        .sort((a, b) => a.scheduledFor - b.scheduledFor);
      expect(inWindow.map((e) => e.scheduledFor)).toEqual(
        Array.from({ length: WINDOW_S }, (_, s) => from + s * 1000),
      );
      expect(inWindow.every((e) => e.status === 'succeeded')).toBe(true);
      expect(calls.filter((t) => t >= from && t < to).sort()).toEqual(
        inWindow.map((e) => e.scheduledFor),
      );
      for (const r of runs) pids.add(r[2] as string);
    }
    // The work was shared: more than one process won ticks.
    expect(pids.size).toBeGreaterThan(1);
  }, 90_000);
});
