// Due triggers across real processes on every store (SPEC S-6): three processes race to
// schedule the same dedupe keys at once and then fire what is due with their workers. Each key
// ends with one trigger (one process created it, every other call got it back deduplicated),
// and each trigger's handler ran exactly once, in whichever process claimed its job.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BACKENDS, useDocketSuite, waitFor } from '../helpers/backends.js';
import { spawnTriggerProcess, type WorkerProcess } from '../helpers/processes.js';

const KEYS = 20;
const PROCESSES = 3;

describe.each(BACKENDS)('trigger processes on %s', (backend) => {
  const suite = useDocketSuite(backend);
  let procs: WorkerProcess[] = [];

  afterEach(async () => {
    for (const p of procs) p.child.kill('SIGTERM');
    await Promise.all(procs.map((p) => p.exited));
    procs = [];
  });

  it('concurrent schedules of one key from three processes make one trigger, fired once', async () => {
    const out = join(suite.ts.dataDir, 'triggers.out');
    const go = join(suite.ts.dataDir, 'triggers.go');
    writeFileSync(out, '');
    const env = { ...suite.ts.env, TEST_OUT: out, TEST_GO: go, TEST_KEYS: String(KEYS) };
    procs = await Promise.all(Array.from({ length: PROCESSES }, () => spawnTriggerProcess(env)));
    writeFileSync(go, 'go');
    const lines = () =>
      readFileSync(out, 'utf8')
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(' '));
    await waitFor(() => lines().filter((l) => l[0] === 'scheduled').length === KEYS * PROCESSES, {
      timeoutMs: 60_000,
      what: 'every process scheduled every key',
    });
    const d = suite.make();
    await waitFor(
      async () =>
        (await d.triggers.counts({ tenant: 'acme' })).triggered === KEYS &&
        lines().filter((l) => l[0] === 'fired').length >= KEYS,
      { timeoutMs: 60_000, what: 'every trigger fired' },
    );
    const scheduled = lines().filter((l) => l[0] === 'scheduled');
    for (let i = 0; i < KEYS; i++) {
      const calls = scheduled.filter((l) => l[1] === `key-${i}`);
      expect(new Set(calls.map((l) => l[2])).size).toBe(1);
      expect(calls.filter((l) => l[3] === 'false')).toHaveLength(1);
    }
    const fired = lines().filter((l) => l[0] === 'fired');
    expect(fired).toHaveLength(KEYS);
    expect(new Set(fired.map((l) => l[1]))).toEqual(new Set(scheduled.map((l) => l[2])));
    expect(await d.triggers.counts({ tenant: 'acme' })).toEqual({ triggered: KEYS });
    const jobs = await d.jobs.list(
      { type: 'docket.trigger:cross.reminder', limit: 200 },
      {
        tenant: 'acme',
      },
    );
    expect(jobs.items).toHaveLength(KEYS);
  });
});
