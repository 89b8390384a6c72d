// (e) The outbox relay: how fast relays drain pre-inserted events into a sink (Docket's own job
// queue, NATS JetStream), and the end-to-end latency from `outbox.add` to the event being
// published at a steady, moderate rate; on SQLite and PostgreSQL, through the public API of the
// package under test (compiled, like the queue systems).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import type { CreateDocketOptions, Docket, OutboxRelay } from '../src/index.js';
import { createDatabase, type BenchDatabase } from './db.js';
import { now, progress, rate, sleep } from './stats.js';
import { loadDocket } from './systems/docket.js';

/** NATS server for the NATS sink rows. */
export const BENCH_NATS_URL = process.env.BENCH_NATS_URL ?? 'nats://127.0.0.1:4222';

/** A sink the outbox benchmark publishes to. */
export type OutboxBenchSink = 'jobs' | 'nats';

/** One drain: `events` pre-inserted, then `relays` relays publish them all. */
export interface OutboxDrainResult {
  store: 'sqlite' | 'postgres';
  sink: OutboxBenchSink;
  relays: number;
  events: number;
  /** Events/s from the relays' start until every event is recorded published. */
  rate: number;
  /** Events/s of the untimed pre-insert (`addMany` in batches of 1,000, one transaction each). */
  addRate: number;
}

/** Steady-rate latency samples: `published_at - created_at` of each event, ms. */
export interface OutboxLatencyResult {
  store: 'sqlite' | 'postgres';
  sink: OutboxBenchSink;
  /** Events added per second. */
  ratePerSecond: number;
  samples: number[];
}

/** Everything the outbox section measured. */
export interface OutboxBenchResults {
  events: number;
  drains: OutboxDrainResult[];
  latency: OutboxLatencyResult[];
  /** Why a row is missing (e.g. NATS unreachable). */
  notes: string[];
}

const TENANT = 'bench';
const TOPIC = 'bench.event';
const ADD_BATCH = 1000;

/** A fresh store with a Docket whose outbox routes `bench.*` to one sink. */
async function openBench(store: 'sqlite' | 'postgres', sink: OutboxBenchSink, natsPrefix: string) {
  const { createDocket } = await loadDocket();
  const dataDir = mkdtempSync(join(tmpdir(), 'docket-bench-outbox-'));
  const db: BenchDatabase | undefined =
    store === 'postgres' ? await createDatabase('outbox') : undefined;
  const options: CreateDocketOptions<Record<string, unknown>> = {
    store: db
      ? { dialect: 'postgres', url: db.url }
      : { dialect: 'sqlite', path: join(dataDir, 'docket.sqlite') },
    dataDir,
    reapIntervalMs: 0,
    pruneIntervalMs: 0,
    outbox: {
      routes: [{ topic: 'bench.*', sink: 'out' }],
      sinks: {
        out:
          sink === 'jobs'
            ? { kind: 'jobs', type: 'bench.deliver' }
            : { kind: 'nats', servers: BENCH_NATS_URL, subject: `${natsPrefix}.{topic}` },
      },
    },
  };
  const opened: Docket[] = [];
  const make = () => {
    const d = createDocket(options);
    opened.push(d);
    return d;
  };
  const main = make();
  await main.migrate();
  return {
    main,
    make,
    db,
    async reset() {
      const sys = await main.internals.systemDb();
      await sys.deleteFrom('outbox_events').execute();
      await sys.deleteFrom('jobs').execute();
      if (db) await db.exec('vacuum analyze');
      else await sql`vacuum`.execute(sys);
    },
    /** Whether any event is not published yet: two probes of the claim indexes, cheap to poll. */
    async unfinished(): Promise<boolean> {
      const sys = await main.internals.systemDb();
      const r = await sql<{ open: number | boolean }>`select (
          exists (select 1 from outbox_events where status in ('pending', 'failed'))
          or exists (select 1 from outbox_events where status = 'publishing')) as open`.execute(
        sys,
      );
      return Boolean(Number(r.rows[0]?.open));
    },
    async dispose() {
      for (const d of opened) await d.close().catch(() => undefined);
      await db?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A NATS stream of the benchmark's own on `<prefix>.>`, deleted by `drop()`. */
async function natsStream(prefix: string) {
  const [{ connect }, { jetstreamManager }] = await Promise.all([
    import('@nats-io/transport-node'),
    import('@nats-io/jetstream'),
  ]);
  const nc = await connect({ servers: BENCH_NATS_URL, timeout: 3000 });
  const jsm = await jetstreamManager(nc);
  const name = prefix.toUpperCase();
  await jsm.streams.add({ name, subjects: [`${prefix}.>`] });
  return {
    async messages(): Promise<number> {
      return (await jsm.streams.info(name)).state.messages;
    },
    async purge() {
      await jsm.streams.purge(name);
    },
    async drop() {
      await jsm.streams.delete(name).catch(() => undefined);
      await nc.close();
    },
  };
}

async function addEvents(d: Docket, count: number): Promise<number> {
  const t = now();
  for (let i = 0; i < count; i += ADD_BATCH) {
    const n = Math.min(ADD_BATCH, count - i);
    await d.withTransaction(TENANT, (tx) =>
      d.outbox.addMany(
        tx,
        Array.from({ length: n }, (_, k) => ({ topic: TOPIC, payload: { i: i + k } })),
      ),
    );
  }
  return rate(count, now() - t);
}

/** Runs the outbox section: drains per store, sink and relay count, then steady latency. */
export async function measureOutbox(o: {
  events: number;
  runs: number;
  relayCounts: number[];
  latencyEvents: number;
  latencyGapMs: number;
  /** Stores to measure. Default both. */
  stores?: ReadonlyArray<'sqlite' | 'postgres'>;
  /** Sinks to measure. Default both (NATS if reachable). */
  sinks?: readonly OutboxBenchSink[];
}): Promise<OutboxBenchResults> {
  const out: OutboxBenchResults = { events: o.events, drains: [], latency: [], notes: [] };
  const wanted = o.sinks ?? ['jobs', 'nats'];
  const sinks: OutboxBenchSink[] = wanted.filter((s) => s === 'jobs');
  if (wanted.includes('nats')) {
    try {
      const probe = await natsStream(`bench_probe_${randomBytes(4).toString('hex')}`);
      await probe.drop();
      sinks.push('nats');
    } catch (err) {
      const why = `NATS sink rows skipped: ${BENCH_NATS_URL} unreachable (${(err as Error).message})`;
      progress(why);
      out.notes.push(why);
    }
  }
  for (const store of o.stores ?? (['sqlite', 'postgres'] as const)) {
    for (const sink of sinks) {
      const prefix = `bench_outbox_${randomBytes(4).toString('hex')}`;
      const stream = sink === 'nats' ? await natsStream(prefix) : undefined;
      const b = await openBench(store, sink, prefix);
      try {
        for (let run = 0; run < o.runs; run++) {
          for (const relays of o.relayCounts) {
            await b.reset();
            await stream?.purge();
            const addRate = await addEvents(b.main, o.events);
            const instances = Array.from({ length: relays }, () => b.make());
            // Connections open before the clock starts (as a running relay's would be).
            for (const d of instances) await d.ping();
            const rs: OutboxRelay[] = [];
            for (const d of instances) rs.push(await d.outbox.createRelay());
            const t = now();
            for (const r of rs) await r.start();
            while (await b.unfinished()) await sleep(20);
            const ms = now() - t;
            for (const r of rs) await r.stop();
            for (const d of instances) await d.close();
            if (stream && (await stream.messages()) !== o.events) {
              throw new Error(`the stream holds ${await stream.messages()} of ${o.events} events`);
            }
            const r = rate(o.events, ms);
            progress(
              `run ${run + 1}/${o.runs} outbox ${store} → ${sink}, ${relays} relay(s): ` +
                `${Math.round(r).toLocaleString('en-US')} events/s`,
            );
            out.drains.push({ store, sink, relays, events: o.events, rate: r, addRate });
          }
        }
        out.latency.push(await measureLatency(b, store, sink, o.latencyEvents, o.latencyGapMs));
        await stream?.purge();
      } finally {
        await b.dispose();
        await stream?.drop();
      }
    }
  }
  return out;
}

/** One event per transaction every `gapMs`, one relay running; published_at − created_at. */
async function measureLatency(
  b: Awaited<ReturnType<typeof openBench>>,
  store: 'sqlite' | 'postgres',
  sink: OutboxBenchSink,
  count: number,
  gapMs: number,
): Promise<OutboxLatencyResult> {
  await b.reset();
  const relay = await b.main.outbox.createRelay();
  await relay.start();
  // A warm-up event, not measured.
  await b.main.withTransaction(TENANT, (tx) =>
    b.main.outbox.add(tx, { topic: TOPIC, payload: {} }),
  );
  while (await b.unfinished()) await sleep(20);
  await b.reset();
  progress(`outbox latency ${store} → ${sink}: ${count} events, one every ${gapMs} ms`);
  for (let i = 0; i < count; i++) {
    await b.main.withTransaction(TENANT, (tx) =>
      b.main.outbox.add(tx, { topic: TOPIC, payload: { i } }),
    );
    await sleep(gapMs);
  }
  while (await b.unfinished()) await sleep(20);
  await relay.stop();
  const sys = await b.main.internals.systemDb();
  const rows = await sys
    .selectFrom('outbox_events')
    .select(['created_at', 'published_at'])
    .execute();
  return {
    store,
    sink,
    ratePerSecond: Math.round(1000 / gapMs),
    samples: rows.map((r) => Number(r.published_at) - Number(r.created_at)),
  };
}
