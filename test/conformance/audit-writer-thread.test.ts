// The batched audit writer on its worker thread (SPEC A-5), against every store: what the
// AuditWriter promises (flush after commit, retries, isolation of refused events, drop
// counting, a clean close) must hold when the appends run on another thread and connection.
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { AuditThreadAppender, type PreparedAuditEvent } from '../../src/audit/index.js';
import { resolveConfig } from '../../src/config/index.js';
import { isDocketError, type Docket } from '../../src/index.js';
import { BACKENDS, useDocketSuite } from '../helpers/backends.js';

type Jobs = Record<string, unknown>;
let n = 0;
const unique = (p: string) => `${p}${++n}${Math.random().toString(36).slice(2, 6)}`;

async function droppedCount(d: Docket, reason: string): Promise<number> {
  const text = await d.internals.metrics.registry.getSingleMetricAsString(
    'docket_audit_events_dropped_total',
  );
  const m = new RegExp(`reason="${reason}"[^}]*} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

describe.each(BACKENDS)('audit writer thread on %s', (backend) => {
  // The thread is the default on PostgreSQL only; this suite tests it on both stores.
  const { make } = useDocketSuite<Jobs>(backend, { audit: { writerThread: true } });

  it('flush() resolves once every event queued before it is committed by the thread', async () => {
    const d = make();
    const tenants = [unique('t'), unique('t')];
    for (let i = 0; i < 12_000; i++) {
      const tenant = tenants[i % 2] as string;
      const r = await d.audit.record('doc.edit', { type: 'doc', id: String(i) }, { tenant });
      expect(r.status).toBe('queued');
    }
    await d.audit.flush();
    expect((await d.internals.auditService()).writerThread?.running).toBe(true);
    for (const tenant of tenants) {
      expect(await d.audit.verify({ tenant })).toMatchObject({ ok: true, events: 6000 });
    }
  });

  it('text with backslashes, tabs and line breaks is stored exactly and still verifies', async () => {
    const d = make();
    const tenant = unique('t');
    const awkward = 'a\\b\tc\nd\re \\N "q"';
    const r = await d.audit.record(
      'doc.edit',
      { type: 'doc', id: awkward, name: awkward },
      { tenant, userAgent: awkward, metadata: { awkward, nested: [awkward] } },
    );
    await d.audit.flush();
    const e = await d.audit.get(r.id, { tenant });
    expect(e.resource).toEqual({ type: 'doc', id: awkward, name: awkward });
    expect(e.userAgent).toBe(awkward);
    expect(e.metadata).toEqual({ awkward, nested: [awkward] });
    expect(await d.audit.verify({ tenant })).toMatchObject({ ok: true, events: 1 });
  });

  it('close() writes what is buffered and ends the thread', async () => {
    const d = make();
    const tenant = unique('t');
    for (let i = 0; i < 300; i++) {
      await d.audit.record('doc.edit', { type: 'doc', id: String(i) }, { tenant });
    }
    const service = await d.internals.auditService();
    await d.close();
    expect(service.writerThread?.running).toBe(false);
    expect(await make().audit.verify({ tenant })).toMatchObject({ ok: true, events: 300 });
  });

  it('an event the store refuses on the thread is dropped, counted and alerted; the rest are written', async () => {
    const d = make();
    const tenant = unique('t');
    const service = await d.internals.auditService();
    const good = (i: number) =>
      service.prepare(tenant, 'doc.edit', { type: 'doc', id: String(i) }, {});
    // The outcome check constraint refuses it (prepare() would have refused it earlier).
    const bad: PreparedAuditEvent = { ...good(-1), outcome: 'bogus' };
    for (const e of [good(1), bad, good(2)]) await service.writer.enqueue(e);
    await d.audit.flush();
    expect(await d.audit.verify({ tenant })).toMatchObject({ ok: true, events: 2 });
    expect(await droppedCount(d, 'rejected')).toBe(1);
    const alerts = await (
      await d.internals.systemDb()
    )
      .selectFrom('alerts')
      .select('key')
      .where('key', '=', 'audit.writer.failing')
      .execute();
    expect(alerts).toHaveLength(1);
  });

  it('a thread that cannot reach the store fails appends as STORE_UNAVAILABLE, so they are retried, not dropped', async () => {
    const config = resolveConfig(
      backend === 'sqlite'
        ? { store: { dialect: 'sqlite', path: '/dev/null/unreachable.sqlite' } }
        : { store: { dialect: 'postgres', url: 'postgres://postgres@127.0.0.1:1/none' } },
    );
    const thread = new AuditThreadAppender(config);
    const d = make();
    const event = (await d.internals.auditService()).prepare(
      unique('t'),
      'doc.edit',
      { type: 'doc', id: '1' },
      {},
    );
    const err = await thread.append([event], Date.now()).catch((e: unknown) => e);
    expect(isDocketError(err, 'STORE_UNAVAILABLE')).toBe(true);
    await thread.close();
    expect(thread.running).toBe(false);
  });
});

// PostgreSQL only (SQLite has no privileges): its own block, so no case is skipped anywhere.
describe('audit writer thread on PostgreSQL', () => {
  const suite = useDocketSuite<Jobs>('postgres', { audit: { writerThread: true } });
  const make = suite.make;

  it('without the TEMPORARY privilege batches stay buffered and are retried, not dropped', async () => {
    const admin = new pg.Client({ connectionString: suite.ts.url });
    await admin.connect();
    const database = (await admin.query('select current_database() as d')).rows[0].d as string;
    await admin.query(`revoke temporary on database ${database} from public`);
    try {
      const d = make();
      const tenant = unique('t');
      await d.audit.record('doc.edit', { type: 'doc', id: '1' }, { tenant });
      const err = await d.audit.flush().catch((e: unknown) => e);
      expect(isDocketError(err, 'STORE_UNAVAILABLE')).toBe(true);
      expect(await droppedCount(d, 'rejected')).toBe(0);
      await admin.query(`grant temporary on database ${database} to public`);
      await d.audit.flush();
      expect(await d.audit.verify({ tenant })).toMatchObject({ ok: true, events: 1 });
    } finally {
      await admin.query(`grant temporary on database ${database} to public`);
      await admin.end();
    }
  });
});
