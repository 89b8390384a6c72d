// Conformance cases that need real processes and real signals (SPEC, W-2, W-3).
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocket, type Docket } from '../../src/index.js';
import { QUEUE_BACKENDS, createTestStore, waitFor, type TestStore } from '../helpers/backends.js';
import { spawnWorker, type WorkerProcess } from '../helpers/processes.js';

type Jobs = Record<string, unknown>;
const lines = (file: string) =>
  existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];

describe.each(QUEUE_BACKENDS)('process conformance on %s', (backend) => {
  let ts: TestStore;
  let docket: Docket<Jobs>;
  let dir: string;
  const children: WorkerProcess[] = [];

  beforeAll(async () => {
    ts = await createTestStore(backend);
    docket = createDocket<Jobs>({
      store: ts.store,
      dataDir: ts.dataDir,
      queue: ts.queue,
      reapIntervalMs: 0,
    });
    await docket.migrate();
    dir = mkdtempSync(join(tmpdir(), 'docket-proc-'));
  });
  afterAll(async () => {
    for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGKILL');
    await docket.close();
    await ts.dispose();
  });

  const spawn = async (env: Record<string, string>) => {
    const w = await spawnWorker({ ...ts.env, ...env });
    children.push(w);
    return w;
  };

  it('3 worker processes run 10,000 jobs with none run twice and none lost', async () => {
    const tenant = 'many';
    const total = 10_000;
    // All three are up and waiting before the first job exists: on a loaded host a process
    // that started late used to find the other two done with everything.
    const outs = [0, 1, 2].map((i) => join(dir, `run-${i}.txt`));
    const workers = await Promise.all(
      outs.map((out) => spawn({ TEST_OUT: out, TEST_CONCURRENCY: '10' })),
    );
    for (let i = 0; i < total; i += 1000) {
      await docket.enqueueMany(
        Array.from({ length: 1000 }, (_, k) => ({ type: 'record', payload: { n: i + k } })),
        { tenant },
      );
    }
    await waitFor(async () => ((await docket.jobs.counts({ tenant })).succeeded ?? 0) === total, {
      timeoutMs: 120_000,
      what: 'all jobs succeeded',
    });
    for (const w of workers) w.child.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.exited));
    const runs = outs.flatMap(lines);
    expect(runs.length).toBe(total);
    expect(new Set(runs).size).toBe(total);
    // Every process took part (the claim is shared, not one process winning everything).
    for (const out of outs) expect(lines(out).length).toBeGreaterThan(0);
    expect(await docket.jobs.counts({ tenant })).toEqual({ succeeded: total });
  }, 180_000);

  it('creates one job when 3 processes enqueue the same idempotency key at once', async () => {
    const racers = await Promise.all(
      [0, 1, 2].map(() => spawnWorker({ ...ts.env, TEST_ENQUEUE_KEY: 'race-key' })),
    );
    await Promise.all(racers.map((r) => r.exited));
    const seen = racers.flatMap((r) => {
      const line =
        r
          .output()
          .split('\n')
          .find((l) => l.startsWith('ready ')) ?? 'ready []';
      return JSON.parse(line.slice('ready '.length)) as Array<[string, boolean]>;
    });
    expect(seen).toHaveLength(60);
    expect(new Set(seen.map(([id]) => id)).size).toBe(1);
    expect(seen.filter(([, dedup]) => !dedup)).toHaveLength(1);
    expect((await docket.jobs.list({}, { tenant: 'race' })).items).toHaveLength(1);
  }, 60_000);

  it('a SIGKILLed worker’s job is finished by another worker after the lease expires', async () => {
    const tenant = 'killed';
    const started = join(dir, 'started.txt');
    const { job } = await docket.enqueue('hang', {}, { tenant });
    const victim = await spawn({
      TEST_STARTED: started,
      TEST_LEASE_MS: '1500',
      TEST_CONCURRENCY: '1',
    });
    await waitFor(() => lines(started).includes(job.id), { what: 'job started in the victim' });
    victim.child.kill('SIGKILL');
    expect((await victim.exited).signal).toBe('SIGKILL');
    expect((await docket.jobs.get(job.id, { tenant })).status).toBe('processing');

    const finisher = createDocket<Jobs>({
      store: ts.store,
      dataDir: ts.dataDir,
      queue: ts.queue,
      reapIntervalMs: 100,
      handlers: { hang: async () => 'finished' },
    });
    await finisher.start();
    const worker = finisher.createWorker({ concurrency: 1, pollIntervalMs: 50 });
    await worker.start();
    const done = await waitFor(
      async () => {
        const j = await docket.jobs.get(job.id, { tenant });
        return j.status === 'succeeded' ? j : null;
      },
      { timeoutMs: 15_000, what: 'job finished by the second worker' },
    );
    expect(done.attempts).toBe(2);
    expect(done.result).toBe('finished');
    await worker.stop();
    await finisher.close();
  }, 60_000);

  for (const failpoint of ['dlq.afterBegin', 'dlq.afterRecord'] as const) {
    it(`resumes the DLQ sequence after a crash at ${failpoint}`, async () => {
      const tenant = `crash-${failpoint.replace('.', '-')}`;
      const { job } = await docket.enqueue('boom', {}, { tenant });
      const w = await spawn({ TEST_FAILPOINT: failpoint, TEST_CONCURRENCY: '1' });
      expect((await w.exited).signal).toBe('SIGKILL');
      const stuck = await docket.jobs.get(job.id, { tenant });
      expect(stuck.status).toBe(failpoint === 'dlq.afterBegin' ? 'dlq_pending' : 'dlq_recorded');
      const r = await docket.reapOnce();
      expect(r.resumed + r.deadLettered).toBeGreaterThanOrEqual(1);
      expect((await docket.jobs.get(job.id, { tenant })).status).toBe('failed');
      const items = await docket.dlq.list({ tenant });
      expect(items.items.map((i) => i.jobId)).toEqual([job.id]);
      const db = await docket.internals.systemDb();
      const audits = await db
        .selectFrom('audit_events')
        .select('action')
        .where('resource_id', '=', job.id)
        .execute();
      expect(audits.map((a) => a.action)).toEqual(['job.dead_lettered']);
      // A second pass finds nothing left to do: the sequence is not repeated.
      await docket.reapOnce();
      expect((await docket.dlq.list({ tenant })).items).toHaveLength(1);
    }, 60_000);
  }
});
