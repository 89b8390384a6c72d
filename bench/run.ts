// `npm run bench`: Docket (SQLite, PostgreSQL), graphile-worker and pg-boss measured in one
// process run, interleaved, each system in its own fresh database. Progress goes to stderr, the
// Markdown report to stdout; `--write` also writes docs/BENCHMARKS.md. All databases are dropped.
//
// Environment: BENCH_RUNS (default 3), BENCH_QUICK=1 (small sizes, for a smoke run),
// BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres), BENCH_ONLY (comma list of
// system keys: sqlite,docket,graphile,pgboss,redis (Docket + Redis and BullMQ),audit,outbox,
// scheduler),
// BENCH_AUDIT_EVENTS (default 1,000,000), BENCH_OUTBOX_EVENTS (default 20,000), BENCH_NATS_URL
// (default nats://127.0.0.1:4222), BENCH_OUTBOX_STORES / BENCH_OUTBOX_SINKS (comma lists, default
// sqlite,postgres and jobs,nats), BENCH_SCHEDULER_CYCLES (lock cycles, default 2,000),
// BENCH_SCHEDULER_TASKS (default 1,000), BENCH_SCHEDULER_PERIODS (tick periods in s, default 1,10),
// BENCH_SCHEDULER_WINDOW_S (default 60), BENCH_REDIS_URL, BENCH_ETCD_URL, BENCH_JSON (also write the raw results there;
// `tsx bench/run.ts --render FILE [--write]` re-renders them), BENCH_AUTOEXPLAIN_MS.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { measureAudit } from './audit.js';
import { measureOutbox } from './outbox.js';
import { measureScheduler } from './scheduler.js';
import { serverVersion } from './db.js';
import { measureEnqueue, measureLatency, measureThroughput } from './measure.js';
import { renderReport, type Machine, type Results } from './report.js';
import { progress } from './stats.js';
import {
  docketSettingLabel,
  settingLabel,
  type BenchSystem,
  type WorkerSetting,
} from './system.js';
import { createDocketSystem } from './systems/docket.js';
import { createGraphileSystem } from './systems/graphile-worker.js';
import { createPgBossSystem } from './systems/pg-boss.js';
import { createBullmqSystem } from './systems/bullmq.js';

const quick = process.env.BENCH_QUICK === '1';
const RUNS = Number(process.env.BENCH_RUNS ?? (quick ? 1 : 3));
const AUDIT_EVENTS = Number(process.env.BENCH_AUDIT_EVENTS ?? (quick ? 20_000 : 1_000_000));
const AUDIT_QUERIES = quick ? 70 : 700;
const OUTBOX_EVENTS = Number(process.env.BENCH_OUTBOX_EVENTS ?? (quick ? 2_000 : 20_000));
const SIZES = {
  single: quick ? 200 : 2_000,
  batchTotal: quick ? 2_000 : 20_000,
  batchSize: 1_000,
  throughput: quick ? 2_000 : 20_000,
  latency: quick ? 50 : 300,
  latencyGapMs: 10,
};

/** Worker settings tried per system; the first is the common baseline (concurrency 10). */
// `concurrency 10, prefetch 500` mirrors graphile-worker's concurrency 10 + localQueue 500.
const DOCKET_SETTINGS: WorkerSetting[] = [
  { concurrency: 10 },
  { concurrency: 10, prefetch: 100 },
  { concurrency: 10, prefetch: 500 },
  { concurrency: 100, prefetch: 500 },
];
const PEER_SETTINGS: WorkerSetting[] = [{ concurrency: 10 }];

interface Entry {
  key: string;
  system: BenchSystem;
  settings: WorkerSetting[];
  /** Only measured for latency (a variant of another system). */
  latencyOnly?: boolean;
  /** Only measured for throughput (a variant of another system). */
  throughputOnly?: boolean;
}

/** Report text: generated tables plus the hand-written analysis in bench/NOTES.md. */
function composeReport(results: Results, machine: Machine, seconds: number): string {
  const notesUrl = new URL('./NOTES.md', import.meta.url);
  const notes = existsSync(notesUrl) ? readFileSync(notesUrl, 'utf8') : '';
  const report = `${renderReport(results, machine, seconds)}${notes ? `\n${notes}` : ''}`;
  return report.endsWith('\n') ? report : `${report}\n`;
}

function emit(report: string): void {
  process.stdout.write(report);
  if (process.argv.includes('--write')) {
    writeFileSync(new URL('../docs/BENCHMARKS.md', import.meta.url), report);
    progress('wrote docs/BENCHMARKS.md');
  }
}

async function main(): Promise<void> {
  // `--render FILE`: re-render a report from results saved with BENCH_JSON, without measuring.
  const renderFrom = process.argv[process.argv.indexOf('--render') + 1];
  if (process.argv.includes('--render') && renderFrom) {
    const saved = JSON.parse(readFileSync(renderFrom, 'utf8')) as {
      results: Results;
      machine: Machine;
      seconds: number;
    };
    emit(composeReport(saved.results, saved.machine, saved.seconds));
    return;
  }
  const only = process.env.BENCH_ONLY?.split(',');
  const want = (k: string) => !only || only.includes(k);
  const entries: Entry[] = [];
  let disposed: Promise<void> | undefined;
  const disposeAll = () =>
    (disposed ??= (async () => {
      for (const e of entries) {
        await e.system.close().catch(() => undefined);
        await e.system
          .dispose()
          .catch((err: unknown) => progress(`dispose failed: ${String(err)}`));
      }
    })());
  // Ctrl-C still drops every database this run created.
  const onInterrupt = () => {
    progress('interrupted: dropping the benchmark databases');
    void disposeAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', onInterrupt);
  const started = Date.now();
  const loadAtStart = loadavg();
  try {
    progress(`creating databases (runs=${RUNS}${quick ? ', quick sizes' : ''})`);
    if (want('sqlite'))
      entries.push({
        key: 'sqlite',
        system: await createDocketSystem({ dialect: 'sqlite' }),
        settings: DOCKET_SETTINGS,
      });
    if (want('docket')) {
      entries.push({
        key: 'docket',
        system: await createDocketSystem({ dialect: 'postgres' }),
        settings: DOCKET_SETTINGS,
      });
      entries.push({
        key: 'docket-remote',
        system: await createDocketSystem({
          dialect: 'postgres',
          separateProducer: true,
          name: 'Docket (PostgreSQL), producer in another instance',
        }),
        settings: [],
        latencyOnly: true,
      });
      entries.push({
        key: 'docket-remove',
        system: await createDocketSystem({
          dialect: 'postgres',
          removeSucceeded: true,
          name: 'Docket (PostgreSQL), succeeded jobs removed',
        }),
        settings: [DOCKET_SETTINGS[0] as WorkerSetting, DOCKET_SETTINGS[3] as WorkerSetting],
        throughputOnly: true,
      });
    }
    if (want('graphile'))
      entries.push({
        key: 'graphile',
        system: await createGraphileSystem(),
        settings: PEER_SETTINGS,
      });
    if (want('redis')) {
      entries.push({
        key: 'docket-redis',
        system: await createDocketSystem({
          dialect: 'postgres',
          redis: true,
          name: 'Docket (PostgreSQL + Redis queue)',
        }),
        settings: [DOCKET_SETTINGS[0] as WorkerSetting, DOCKET_SETTINGS[3] as WorkerSetting],
      });
      // The same Redis lane with SQLite as the truth: its enqueue commit is not an fsync'd
      // PostgreSQL commit (~2.8 ms here), which is most of the PostgreSQL row's latency.
      entries.push({
        key: 'docket-sqlite-redis',
        system: await createDocketSystem({
          dialect: 'sqlite',
          redis: true,
          name: 'Docket (SQLite + Redis queue)',
        }),
        settings: [],
        latencyOnly: true,
      });
      entries.push({ key: 'bullmq', system: await createBullmqSystem(), settings: PEER_SETTINGS });
    }
    if (want('pgboss'))
      entries.push({ key: 'pgboss', system: await createPgBossSystem(), settings: PEER_SETTINGS });

    const results: Results = {
      runs: RUNS,
      sizes: SIZES,
      systems: entries.map((e) => ({ key: e.key, name: e.system.name })),
      enqueueSingle: {},
      enqueueBatch: {},
      throughput: {},
      latency: {},
    };
    for (const e of entries) {
      progress(`installing schema: ${e.system.name}`);
      await e.system.open();
      await e.system.close();
    }

    for (let run = 0; run < RUNS; run++) {
      // Rotate the order each run so no system always goes first (the host drifts over time).
      const order = entries.map((_, k) => entries[(k + run) % entries.length] as Entry);
      for (const e of order.filter((x) => !x.latencyOnly && !x.throughputOnly)) {
        progress(`run ${run + 1}/${RUNS} enqueue: ${e.system.name}`);
        const r = await measureEnqueue(e.system, SIZES);
        (results.enqueueSingle[e.key] ??= []).push(r.single);
        (results.enqueueBatch[e.key] ??= []).push(r.batch);
      }
      for (const e of order.filter((x) => !x.latencyOnly)) {
        for (const setting of e.settings) {
          const label =
            e.settings === PEER_SETTINGS ? settingLabel(setting) : docketSettingLabel(setting);
          progress(`run ${run + 1}/${RUNS} throughput: ${e.system.name} ${label}`);
          const r = await measureThroughput(e.system, setting, SIZES.throughput);
          progress(`  ${Math.round(r.rate).toLocaleString('en-US')} jobs/s`);
          ((results.throughput[e.key] ??= {})[label] ??= []).push(r);
        }
      }
      for (const e of order.filter((x) => !x.throughputOnly)) {
        progress(`run ${run + 1}/${RUNS} latency: ${e.system.name}`);
        const r = await measureLatency(e.system, SIZES.latency, SIZES.latencyGapMs);
        (results.latency[e.key] ??= []).push(...r);
      }
    }
    if (want('audit')) {
      results.audit = {};
      for (const store of ['sqlite', 'postgres'] as const) {
        progress(`audit: ${store}, ${AUDIT_EVENTS.toLocaleString('en-US')} events`);
        results.audit[store] = await measureAudit(store, AUDIT_EVENTS, AUDIT_QUERIES);
      }
    }
    if (want('outbox')) {
      results.outbox = await measureOutbox({
        events: OUTBOX_EVENTS,
        runs: RUNS,
        relayCounts: [1, 2],
        latencyEvents: quick ? 100 : 1000,
        latencyGapMs: 5,
        stores: process.env.BENCH_OUTBOX_STORES?.split(',') as Array<'sqlite' | 'postgres'>,
        sinks: process.env.BENCH_OUTBOX_SINKS?.split(',') as Array<'jobs' | 'nats'>,
      });
    }
    if (want('scheduler')) {
      results.scheduler = await measureScheduler({
        cycles: Number(process.env.BENCH_SCHEDULER_CYCLES ?? (quick ? 200 : 2000)),
        tasks: Number(process.env.BENCH_SCHEDULER_TASKS ?? (quick ? 100 : 1000)),
        instances: 3,
        periods: (process.env.BENCH_SCHEDULER_PERIODS ?? '1,10')
          .split(',')
          .filter(Boolean)
          .map(Number),
        windowS: Number(process.env.BENCH_SCHEDULER_WINDOW_S ?? (quick ? 10 : 60)),
      });
    }
    const machine = await machineFacts(loadAtStart);
    const seconds = (Date.now() - started) / 1000;
    if (process.env.BENCH_JSON)
      writeFileSync(process.env.BENCH_JSON, JSON.stringify({ results, machine, seconds }, null, 2));
    emit(composeReport(results, machine, seconds));
  } finally {
    process.off('SIGINT', onInterrupt);
    await disposeAll();
    progress(`done in ${Math.round((Date.now() - started) / 1000)} s; databases dropped`);
  }
}

function loadavg(): string {
  return os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' / ');
}

async function machineFacts(loadAtStart: string) {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    postgres: await serverVersion(),
    date: new Date().toISOString(),
    load: `${loadAtStart} at start, ${loadavg()} at end (1/5/15-min load averages)`,
  };
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
