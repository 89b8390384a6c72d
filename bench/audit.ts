// (d) The audit log (SPEC N-3): ingest rate through the batched writer, then the latency of
// filtered queries over everything ingested (1,000,000 events by default), on SQLite and
// PostgreSQL, through Docket's public API.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDocket, ManualClock, type AuditEventFilter } from '../src/index.js';
import { createDatabase } from './db.js';
import { now, percentile, progress } from './stats.js';

/** Results of one audit measurement. */
export interface AuditBenchResult {
  /** Events recorded. */
  events: number;
  /** Events/s from the first record() until flush() returned (all committed). */
  ingestRate: number;
  /** Events the writer dropped (must be 0: the producer waits instead). */
  dropped: number;
  /** Query latencies (ms) by filter kind. */
  queries: Record<string, number[]>;
}

const ACTIONS = ['invoice.create', 'invoice.void', 'user.login', 'user.update', 'doc.share'];
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);

/** Records `events` events into one tenant, spread over 90 days, then runs `queries` queries. */
export async function measureAudit(
  dialect: 'sqlite' | 'postgres',
  events: number,
  queries: number,
): Promise<AuditBenchResult> {
  const dataDir = mkdtempSync(join(tmpdir(), 'docket-bench-audit-'));
  const db = dialect === 'postgres' ? await createDatabase('audit') : undefined;
  const clock = new ManualClock(T0);
  const step = Math.floor((90 * DAY) / events);
  const docket = createDocket({
    store: db
      ? { dialect: 'postgres', url: db.url }
      : { dialect: 'sqlite', path: join(dataDir, 'a.sqlite') },
    dataDir,
    clock,
    reapIntervalMs: 0,
    pruneIntervalMs: 0,
    // The producer is back-pressured rather than dropped, so the rate is the writer's.
    audit: { maxBlockMs: 600_000, purgeIntervalMs: 0 },
  });
  const tenant = 'bench';
  try {
    await docket.start();
    const t = now();
    let lastReport = t;
    for (let i = 0; i < events; i++) {
      clock.advance(step);
      const user = `user-${i % 1000}`;
      const r = await docket.audit.record(
        ACTIONS[i % ACTIONS.length] as string,
        { type: i % 2 ? 'invoice' : 'user', id: `res-${i % 10_000}` },
        {
          tenant,
          actor: { type: 'user', id: user },
          outcome: i % 20 === 0 ? 'failure' : 'success',
          clientIp: '203.0.113.9',
          before: i % 4 === 0 ? { status: 'open', total: i } : undefined,
          after: i % 4 === 0 ? { status: 'void', total: i } : undefined,
          metadata: { request: i, reason: 'benchmark' },
        },
      );
      if (r.status !== 'queued') throw new Error('the audit writer dropped an event');
      if (now() - lastReport > 5000) {
        lastReport = now();
        progress(
          `  audit ${dialect}: ${i.toLocaleString('en-US')} / ${events.toLocaleString('en-US')}`,
        );
      }
    }
    await docket.audit.flush();
    const ingestRate = (events * 1000) / (now() - t);
    const metrics = await docket.internals.metrics.registry.getSingleMetricAsString(
      'docket_audit_events_dropped_total',
    );
    const dropped = [...metrics.matchAll(/ (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);

    // Statistics as the hourly docket.audit_purge job leaves them on SQLite (ANALYZE audit_events)
    // and as autovacuum would on PostgreSQL (it is off on the benchmark server).
    if (db) await db.exec('analyze audit_events');
    else await docket.audit.purgeOnce();
    const end = clock.now();
    const kinds: Array<[string, (k: number) => AuditEventFilter]> = [
      ['no filter (newest page)', () => ({})],
      ['actor', (k) => ({ actorId: `user-${k % 1000}` })],
      ['action', (k) => ({ action: ACTIONS[k % ACTIONS.length] })],
      [
        'resource type + id',
        (k) => ({
          resourceType: k % 2 ? 'invoice' : 'user',
          resourceId: `res-${(k * 7919) % 10_000}`,
        }),
      ],
      ['outcome = failure', () => ({ outcome: 'failure' })],
      ['time range (1 day)', (k) => ({ from: T0 + (k % 89) * DAY, to: T0 + ((k % 89) + 1) * DAY })],
      [
        'actor + time range (7 days)',
        (k) => ({
          actorId: `user-${k % 1000}`,
          from: end - ((k % 80) + 7) * DAY,
          to: end - (k % 80) * DAY,
        }),
      ],
    ];
    const out: Record<string, number[]> = {};
    for (let q = 0; q < queries; q++) {
      const [label, filter] = kinds[q % kinds.length] as [string, (k: number) => AuditEventFilter];
      const f = filter(q);
      const s = now();
      const page = await docket.audit.list({ ...f, limit: 50 }, { tenant });
      // Every other query also fetches the second page through the cursor.
      if (q % 2 && page.nextCursor)
        await docket.audit.list({ ...f, limit: 50, cursor: page.nextCursor }, { tenant });
      (out[label] ??= []).push(now() - s);
    }
    const all = Object.values(out).flat();
    progress(
      `  audit ${dialect}: ${Math.round(ingestRate).toLocaleString('en-US')} events/s, query p95 ${percentile(all, 0.95).toFixed(2)} ms`,
    );
    return { events, ingestRate, dropped, queries: out };
  } finally {
    await docket.close();
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
