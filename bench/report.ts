// Renders the benchmark results as the Markdown of docs/BENCHMARKS.md.
import type { AuditBenchResult } from './audit.js';
import type { OutboxBenchResults } from './outbox.js';
import type { SchedulerBenchResults } from './scheduler.js';
import type { ThroughputResult } from './measure.js';
import { fmtInt, fmtMs, fmtRatio, median, percentile, table } from './stats.js';

/** Everything one `npm run bench` measured. */
export interface Results {
  runs: number;
  sizes: {
    single: number;
    batchTotal: number;
    batchSize: number;
    throughput: number;
    latency: number;
    latencyGapMs: number;
  };
  systems: Array<{ key: string; name: string }>;
  /** jobs/s per run, by system key. */
  enqueueSingle: Record<string, number[]>;
  enqueueBatch: Record<string, number[]>;
  /** Per system key, per setting label, one result per run. */
  throughput: Record<string, Record<string, ThroughputResult[]>>;
  /** Latency samples (ms) pooled over runs, by system key. */
  latency: Record<string, number[]>;
  /** Audit ingest and query results by store (SPEC N-3), when measured. */
  audit?: Partial<Record<'sqlite' | 'postgres', AuditBenchResult>>;
  /** Outbox relay drains and latency (issue 5 item 10), when measured. */
  outbox?: OutboxBenchResults;
  /** Scheduler lock latency and the multi-instance run (SPEC N-4), when measured. */
  scheduler?: SchedulerBenchResults;
}

/** Facts about the host. */
export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  postgres: string;
  date: string;
  load: string;
}

const BASELINE = 'concurrency 10';

/** Best setting (by median rate) of a system: [label, median rate]. */
export function bestSetting(r: Results, key: string): [string, number] {
  let best: [string, number] = ['', Number.NaN];
  for (const [label, runs] of Object.entries(r.throughput[key] ?? {})) {
    const m = median(runs.map((x) => x.rate));
    if (!(m <= best[1])) best = [label, m];
  }
  return best;
}

function tp(r: Results, key: string, label = BASELINE): number {
  // Docket's baseline row is its default worker (concurrency 10, adaptive prefetch).
  const runs =
    r.throughput[key]?.[label] ?? r.throughput[key]?.[`${label}, adaptive prefetch (default)`];
  return median((runs ?? []).map((x) => x.rate));
}

/** The report. */
export function renderReport(r: Results, m: Machine, seconds: number): string {
  const name = (key: string) => r.systems.find((s) => s.key === key)?.name ?? key;
  const has = (key: string) => r.systems.some((s) => s.key === key);
  const queueKeys = r.systems.map((s) => s.key).filter((k) => r.enqueueSingle[k]);
  const dups = Object.values(r.throughput)
    .flatMap((bySetting) => Object.values(bySetting).flat())
    .reduce((n, x) => n + x.duplicates, 0);

  const enqueueTable = table(
    [
      'System',
      `Single (${fmtInt(r.sizes.single)} sequential), jobs/s`,
      `Batch (${fmtInt(r.sizes.batchTotal)} in batches of ${fmtInt(r.sizes.batchSize)}), jobs/s`,
    ],
    queueKeys.map((k) => [
      name(k),
      fmtInt(median(r.enqueueSingle[k] ?? [])),
      fmtInt(median(r.enqueueBatch[k] ?? [])),
    ]),
  );

  const tpRows: string[][] = [];
  for (const k of r.systems.map((s) => s.key).filter((x) => r.throughput[x])) {
    for (const [label, runs] of Object.entries(r.throughput[k] ?? {})) {
      tpRows.push([
        name(k),
        label +
          (label === bestSetting(r, k)[0] && Object.keys(r.throughput[k] ?? {}).length > 1
            ? ' (best)'
            : ''),
        fmtInt(median(runs.map((x) => x.rate))),
        runs.map((x) => fmtInt(x.rate)).join(' / '),
        fmtInt(median(runs.map((x) => x.rateWithStartup))),
      ]);
    }
  }
  const throughputTable = table(
    ['System', 'Worker setting', 'Median jobs/s', 'Per run', 'Median jobs/s incl. worker start'],
    tpRows,
  );

  const latencyTable = table(
    ['System', 'Samples', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms'],
    r.systems
      .filter((s) => r.latency[s.key])
      .map((s) => {
        const v = (r.latency[s.key] ?? []).filter((x) => Number.isFinite(x));
        return [
          s.name,
          String(v.length),
          fmtMs(percentile(v, 0.5)),
          fmtMs(percentile(v, 0.95)),
          fmtMs(percentile(v, 0.99)),
          fmtMs(Math.max(...v)),
        ];
      }),
  );

  const ratios: string[] = [];
  const targets: string[] = [];
  if (has('docket')) {
    const d10 = tp(r, 'docket');
    const [bestLabel, dBest] = bestSetting(r, 'docket');
    for (const peer of ['graphile', 'pgboss'].filter(has)) {
      const p = tp(r, peer);
      ratios.push(
        `- Docket-PG / ${name(peer)}: **${fmtRatio(d10 / p)}** at concurrency 10 ` +
          `(${fmtInt(d10)} vs ${fmtInt(p)} jobs/s); **${fmtRatio(dBest / p)}** with Docket at its ` +
          `best setting (${bestLabel}, ${fmtInt(dBest)} jobs/s).`,
      );
    }
    // Like for like: graphile-worker deletes a job when it completes, as Docket does with
    // retention.succeededMs = 0; Docket's default also keeps every succeeded job for 7 days.
    const removed = has('docket-remove') ? tp(r, 'docket-remove') : Number.NaN;
    const [removedBestLabel, removedBest] = bestSetting(r, 'docket-remove');
    for (const peer of ['graphile', 'pgboss'].filter((p) => has(p) && has('docket-remove'))) {
      const p = tp(r, peer);
      ratios.push(
        `- Docket-PG with succeeded jobs removed / ${name(peer)}: **${fmtRatio(removed / p)}** at ` +
          `concurrency 10 (${fmtInt(removed)} vs ${fmtInt(p)} jobs/s); **${fmtRatio(removedBest / p)}** ` +
          `at its best setting (${removedBestLabel}, ${fmtInt(removedBest)} jobs/s).`,
      );
    }
    if (has('graphile')) {
      const g = tp(r, 'graphile');
      const verdict = (x: number) => (x >= g ? '**met**' : '**not met**');
      targets.push(
        `- N-1 (Docket on PostgreSQL ≥ graphile-worker), default (keeps succeeded jobs): ` +
          `${verdict(d10)} at concurrency 10 (${fmtRatio(d10 / g)}); ${verdict(dBest)} at Docket's best setting (${fmtRatio(dBest / g)}).`,
      );
      if (has('docket-remove')) {
        targets.push(
          `- N-1 like for like (succeeded jobs removed, as graphile-worker does): ${verdict(removed)} ` +
            `at concurrency 10 (${fmtRatio(removed / g)}); ${verdict(removedBest)} at the best setting (${fmtRatio(removedBest / g)}).`,
        );
      }
    }
    if (has('pgboss')) {
      const p = tp(r, 'pgboss');
      targets.push(
        `- N-1 (several times pg-boss): ${fmtRatio(d10 / p)} at concurrency 10, ${fmtRatio(dBest / p)} at the best setting — ` +
          `${d10 / p >= 3 ? '**met**' : d10 / p >= 2 ? '**borderline** (2–3×)' : '**not met**'} at concurrency 10.`,
      );
    }
    if (has('docket-redis') && has('bullmq')) {
      const dr = tp(r, 'docket-redis');
      const [drBestLabel, drBest] = bestSetting(r, 'docket-redis');
      const b = tp(r, 'bullmq');
      ratios.push(
        `- Docket-PG + Redis queue / BullMQ: **${fmtRatio(dr / b)}** at concurrency 10 (${fmtInt(dr)} vs ${fmtInt(b)} jobs/s); ` +
          `**${fmtRatio(drBest / b)}** at Docket's best setting (${drBestLabel}, ${fmtInt(drBest)} jobs/s). ` +
          'Docket keeps every job durable in PostgreSQL; BullMQ keeps them in Redis only.',
      );
      targets.push(
        `- N-1 on Redis (Docket + Redis ≥ BullMQ): ${dr >= b ? '**met**' : '**not met**'} at concurrency 10 (${fmtRatio(dr / b)}); ` +
          `${drBest >= b ? '**met**' : '**not met**'} at the best setting (${fmtRatio(drBest / b)}).`,
      );
      for (const k of ['docket-redis', 'docket-sqlite-redis'].filter((x) => r.latency[x])) {
        const p99 = percentile(r.latency[k] ?? [], 0.99);
        targets.push(
          `- Redis latency target (issue 4: p99 < 5 ms), ${name(k)}: p99 ${fmtMs(p99)} ms — ${p99 < 5 ? '**met**' : '**not met**'}.`,
        );
      }
    }
    for (const k of ['docket', 'docket-remote'].filter((x) => r.latency[x])) {
      const p99 = percentile(r.latency[k] ?? [], 0.99);
      targets.push(
        `- N-2 (p99 < 10 ms), ${name(k)}: p99 ${fmtMs(p99)} ms — ${p99 < 10 ? '**met**' : '**not met**'}.`,
      );
    }
  }

  return `# Benchmarks

Generated by \`npm run bench -- --write\` (\`tsx bench/run.ts\`); \`npm run bench\` alone prints
the same report to stdout and progress to stderr. Numbers are from **one run of the command on
one machine**; the host drifts up to 2× between runs minutes apart, so compare systems only
within one report.

## Machine

| | |
| --- | --- |
| Date | ${m.date} |
| CPU | ${m.cpu} |
| Cores | ${m.cores} |
| Memory | ${m.memoryGiB} GiB |
| Node.js | ${m.node} |
| PostgreSQL | ${m.postgres} (local, 127.0.0.1, default server settings) |
| Host load | ${m.load} |
| Runs | ${r.runs} interleaved (system order rotated each run); medians reported |
| Duration | ${Math.round(seconds)} s |

## Systems and settings

Each system gets its own freshly created database (dropped at the end) on the same PostgreSQL
server, and is driven from the same process through its public API. Peers run at their
documented best, never at defaults:

- **Docket (SQLite)** / **Docket (PostgreSQL)**: the compiled package (\`dist/\`, built by
  \`npm run bench\`) in its default configuration (PostgreSQL pool of 10; succeeded jobs kept
  7 days), \`enqueue\` / \`enqueueMany\`, \`createWorker({ concurrency, prefetch })\`. Several
  worker settings are measured; the best is marked.
- **Docket (PostgreSQL), succeeded jobs removed**: the same with \`retention: { succeededMs: 0 }\`,
  which deletes a job when it succeeds — what graphile-worker always does (and BullMQ's
  \`removeOnComplete\`), so this row is the like-for-like comparison; throughput only.
- **graphile-worker** ${'0.17.3'}: \`run({ concurrency: 10, preset: { worker: { localQueue: { size: 500 },
  completeJobBatchDelay: 0, failJobBatchDelay: 0 } } })\`; \`addJob\` / \`addJobs\`; LISTEN/NOTIFY is built in.
- **Docket (PostgreSQL + Redis queue)**: \`queue: { backend: 'redis' }\` — PostgreSQL stays the
  truth for every job, Redis carries the dispatch messages. **Docket (SQLite + Redis queue)**:
  the same lane with the embedded SQLite store as the truth (latency only).
- **BullMQ** ${'5.81.5'}: one \`Worker\` with \`concurrency: 10\`, \`removeOnComplete: { count: 0 }\`,
  \`add\` / \`addBulk\`; jobs live in Redis only.
- **pg-boss** 12.35.0: \`new PgBoss({ useListenNotify: true })\`, queue created with \`notify: true\`,
  \`work(queue, { batchSize: 50, localConcurrency: 10, burstWhenBatchFull: true,
  pollingIntervalSeconds: 0.5 })\`; \`send\` / \`insert\`.

## (a) Enqueue rate

${enqueueTable}

## (b) Throughput: ${fmtInt(r.sizes.throughput)} no-op jobs, one worker process

The queue is filled first (untimed); the clock runs from the first handler start until the
database shows every job completed (not merely handled). Median of ${r.runs} runs.
"Incl. worker start" also counts the worker's start-up (connections, first claim).
Duplicate handler runs observed: ${dups}.

${throughputTable}

## (c) Enqueue-to-start latency on an idle worker

${fmtInt(r.sizes.latency)} jobs per run enqueued one at a time, ${r.sizes.latencyGapMs} ms apart, on a worker
(concurrency 10) started beforehand and warmed with one job; measured from just before the
enqueue call to the start of the handler. Samples pooled over ${r.runs} runs. Docket wakes a
worker in the same process directly after the enqueue commits; the "producer in another
instance" row enqueues through a second Docket instance, so the worker is woken only by
PostgreSQL LISTEN/NOTIFY, as it would be across processes.

${latencyTable}

## Ratios and targets (SPEC N-1, N-2)

${ratios.join('\n')}

${targets.join('\n')}
${r.audit ? renderAudit(r.audit) : ''}${r.outbox ? renderOutbox(r.outbox) : ''}${r.scheduler ? renderScheduler(r.scheduler) : ''}`;
}

/** Section (e): outbox relay throughput per store, sink and relay count, and latency. */
export function renderOutbox(o: OutboxBenchResults): string {
  const label = { sqlite: 'SQLite', postgres: 'PostgreSQL' } as const;
  const sinkLabel = { jobs: 'Docket job queue', nats: 'NATS JetStream' } as const;
  const groups = new Map<string, OutboxBenchResults['drains']>();
  for (const d of o.drains) {
    const k = `${d.store}|${d.sink}|${d.relays}`;
    groups.set(k, [...(groups.get(k) ?? []), d]);
  }
  const drains = table(
    ['Store', 'Sink', 'Relays', 'Median events/s', 'Per run', 'Pre-insert (addMany), events/s'],
    [...groups.values()].map((runs) => {
      const first = runs[0] as OutboxBenchResults['drains'][number];
      return [
        label[first.store],
        sinkLabel[first.sink],
        String(first.relays),
        fmtInt(median(runs.map((x) => x.rate))),
        runs.map((x) => fmtInt(x.rate)).join(' / '),
        fmtInt(median(runs.map((x) => x.addRate))),
      ];
    }),
  );
  const latency = table(
    ['Store', 'Sink', 'Samples', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms'],
    o.latency.map((l) => [
      label[l.store],
      sinkLabel[l.sink],
      String(l.samples.length),
      fmtMs(percentile(l.samples, 0.5)),
      fmtMs(percentile(l.samples, 0.95)),
      fmtMs(percentile(l.samples, 0.99)),
      fmtMs(Math.max(...l.samples)),
    ]),
  );
  const pg = o.drains.filter((d) => d.store === 'postgres');
  const targets = (['jobs', 'nats'] as const)
    .filter((s) => pg.some((d) => d.sink === s && d.relays === 1))
    .map((s) => {
      const m = median(pg.filter((d) => d.sink === s && d.relays === 1).map((d) => d.rate));
      return `- Outbox target (≥ 10,000 events/s on PostgreSQL), one relay → ${sinkLabel[s]}: ${fmtInt(m)} events/s — ${m >= 10_000 ? '**met**' : '**not met**'}.`;
    });
  const gap = o.latency[0]?.ratePerSecond;
  return `
## (e) Outbox relay: throughput and end-to-end latency

${fmtInt(o.events)} events are added first (untimed: \`outbox.addMany\` in transactions of 1,000
events, one tenant, no ordering key), then the given number of relays (each its own Docket
instance with default relay options) start, and the clock runs until the store shows every
event \`published\`. The job-queue sink enqueues one job per event (no worker runs); the NATS
sink publishes to a JetStream stream of the run's own on the local server and waits for each
PubAck. Median of the runs.

${drains}

Latency: one event per transaction, added every ${gap ? Math.round(1000 / gap) : 'n/a'} ms
(at most ~${gap ?? 'n/a'} events/s) with one relay already running in the adding instance;
each sample is the event's \`published_at − created_at\` as the store recorded them
(millisecond timestamps of the same clock: add → every sink accepted and the event marked).

${latency}

${targets.join('\n')}${o.notes.length ? `\n\n${o.notes.map((n) => `- ${n}`).join('\n')}` : ''}
`;
}

/** Section (d): the audit log's ingest rate and query latency (SPEC N-3). */
function renderAudit(a: NonNullable<Results['audit']>): string {
  const stores = (['sqlite', 'postgres'] as const).filter((k) => a[k]);
  const label = { sqlite: 'SQLite', postgres: 'PostgreSQL' } as const;
  const first = a[stores[0] ?? 'sqlite'];
  const kinds = first ? Object.keys(first.queries) : [];
  const ingest = table(
    [
      'Store',
      'Events',
      'Ingest, events/s',
      'Dropped',
      'Query p50 ms',
      'Query p95 ms',
      'Query p99 ms',
    ],
    stores.map((k) => {
      const x = a[k] as AuditBenchResult;
      const all = Object.values(x.queries).flat();
      return [
        label[k],
        fmtInt(x.events),
        fmtInt(x.ingestRate),
        fmtInt(x.dropped),
        fmtMs(percentile(all, 0.5)),
        fmtMs(percentile(all, 0.95)),
        fmtMs(percentile(all, 0.99)),
      ];
    }),
  );
  const perKind = table(
    ['Filter', ...stores.map((k) => `${label[k]} p50 / p95 ms`)],
    kinds.map((kind) => [
      kind,
      ...stores.map((k) => {
        const v = (a[k] as AuditBenchResult).queries[kind] ?? [];
        return `${fmtMs(percentile(v, 0.5))} / ${fmtMs(percentile(v, 0.95))}`;
      }),
    ]),
  );
  const targets = stores.map((k) => {
    const x = a[k] as AuditBenchResult;
    const p95 = percentile(Object.values(x.queries).flat(), 0.95);
    return (
      `- N-3, ${label[k]}: ingest ${fmtInt(x.ingestRate)} events/s — ` +
      `${x.ingestRate >= 20_000 ? '**met**' : '**not met**'} (≥ 20,000); query p95 ${fmtMs(p95)} ms — ` +
      `${p95 < 50 ? '**met**' : '**not met**'} (< 50 ms).`
    );
  });
  return `
## (d) Audit log: batched ingest and filtered queries (SPEC N-3)

One Docket instance records events one \`audit.record()\` call at a time into one tenant
(1,000 actors, 10,000 resources, five actions, 5 % failures, a before/after diff on every
fourth event, spread over 90 days of event time), through the batched writer; the producer
waits for buffer room instead of dropping (\`audit.maxBlockMs\` raised), so the rate is the
writer's, measured until \`flush()\` returned with everything committed. Then queries of each
kind below run through \`audit.list()\` (page of 50; every other query also fetches the
second page through its cursor) over all the events of that tenant.

${ingest}

${perKind}

${targets.join('\n')}
`;
}

/** Section (f): scheduler lock latency per backend and the multi-instance run (SPEC N-4). */
export function renderScheduler(s: SchedulerBenchResults): string {
  const label = {
    sqlite: 'database lease, SQLite',
    postgres: 'database lease, PostgreSQL',
    redis: 'Redis',
    etcd: 'etcd',
  } as const;
  const locks = table(
    [
      'Lock backend',
      'acquire p50 ms',
      'acquire p99 ms',
      'acquire max ms',
      'release p50 ms',
      'release p99 ms',
      'p99 < 10 ms',
    ],
    s.locks.map((l) => {
      const p99 = percentile(l.acquire, 0.99);
      return [
        label[l.backend],
        fmtMs(percentile(l.acquire, 0.5)),
        fmtMs(p99),
        fmtMs(Math.max(...l.acquire)),
        fmtMs(percentile(l.release, 0.5)),
        fmtMs(percentile(l.release, 0.99)),
        p99 < 10 && percentile(l.release, 0.99) < 10 ? 'met' : '**not met**',
      ];
    }),
  );
  const runs = table(
    [
      'Tasks × period',
      'instances',
      'window',
      'ticks expected',
      'double runs',
      'missed',
      'statuses',
      'start lag p50 / p99 / max ms',
      'ticks per instance',
    ],
    s.runs.map((r) => [
      `${fmtInt(r.tasks)} × every ${r.periodS} s`,
      String(r.instances),
      `${r.windowS} s`,
      fmtInt(r.expectedTicks),
      String(r.doubleRows + r.doubleCalls),
      fmtInt(r.missed),
      Object.entries(r.statuses)
        .map(([k, v]) => `${k} ${fmtInt(v)}`)
        .join(', '),
      `${fmtInt(r.lagMs.p50)} / ${fmtInt(r.lagMs.p99)} / ${fmtInt(r.lagMs.max)}`,
      r.perInstance.map(fmtInt).join(' / '),
    ]),
  );
  return `
## (f) Scheduler: lock latency and many tasks on three instances (SPEC N-4)

Lock latency: ${fmtInt(s.cycles)} sequential acquire → release cycles per backend (after 100
untimed), cycling over 50 lock names so each acquire re-takes a released lock, one client, on
this host's servers (PostgreSQL, Redis, etcd on loopback).

${locks}

Many tasks: three \`docket\` scheduler processes (each its own Docket on one fresh PostgreSQL
database, database lease locks, pass interval 250 ms) run the same tasks; a tick's handler
appends a line to a file. Counted over the window's ticks from \`scheduler_executions\` and the
file: **double runs** = ticks with more than one execution row or handler call; **missed** =
ticks with no execution, or only a \`skipped\` one (a tick claimed after \`misfireMs\`);
start lag = \`started_at − scheduled_for\`.

${runs}
${skipped(s)}${s.notes.length ? `\n${s.notes.map((n) => `- ${n}`).join('\n')}\n` : ''}`;
}

function skipped(s: SchedulerBenchResults): string {
  const lines = s.runs.flatMap((r) =>
    Object.entries(r.skipReasons ?? {}).map(
      ([why, n]) => `- ${fmtInt(r.tasks)} × every ${r.periodS} s: ${fmtInt(n)} skipped: ${why}`,
    ),
  );
  return lines.length ? `\nSkipped ticks by reason:\n\n${lines.join('\n')}\n` : '';
}
