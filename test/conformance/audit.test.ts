// The audit log (SPEC A-1 … A-8), written once and run against every store.
import { sql } from 'kysely';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { defineAudit, ManualClock, type AuditEvent, type Docket } from '../../src/index.js';
import {
  BACKENDS,
  createBusinessTable,
  runBehindTriggers,
  useDocketSuite,
} from '../helpers/backends.js';

type Jobs = Record<string, unknown>;
let n = 0;
const unique = (p: string) => `${p}${++n}${Math.random().toString(36).slice(2, 6)}`;
const DAY = 86_400_000;

const vocabulary = defineAudit({
  actions: ['invoice.create', 'invoice.void', 'user.login'],
  resources: { invoice: {}, user: { secretFields: ['pin'] } },
});

describe.each(BACKENDS)('audit conformance on %s', (backend) => {
  const suite = useDocketSuite<Jobs>(backend);
  const make = suite.make;

  /** Runs raw SQL as the database owner (triggers on). */
  async function asOwner(statement: string): Promise<void> {
    if (suite.ts.url) {
      const c = new pg.Client({ connectionString: suite.ts.url });
      await c.connect();
      try {
        await c.query(statement);
      } finally {
        await c.end();
      }
      return;
    }
    await sql.raw(statement).execute(await make().internals.systemDb());
  }

  it('an event recorded in a transaction commits and rolls back with the business row', async () => {
    const d = make();
    const tenant = unique('t');
    const table = unique('invoices');
    await createBusinessTable(suite.ts, d, table);
    await d.withTransaction(tenant, async (tx) => {
      await sql`insert into ${sql.table(table)} values ('inv-1', ${tenant})`.execute(tx);
      await d.audit.record(
        tx,
        'invoice.create',
        { type: 'invoice', id: 'inv-1' },
        {
          after: { total: 10 },
        },
      );
    });
    await expect(
      d.withTransaction(tenant, async (tx) => {
        await sql`insert into ${sql.table(table)} values ('inv-2', ${tenant})`.execute(tx);
        await d.audit.record(tx, 'invoice.create', { type: 'invoice', id: 'inv-2' });
        throw new Error('business rule failed');
      }),
    ).rejects.toThrow('business rule failed');
    const page = await d.audit.list({}, { tenant });
    expect(page.items.map((e) => e.resource.id)).toEqual(['inv-1']);
    expect(page.items[0]?.diff).toEqual([{ path: '/total', op: 'added', after: 10 }]);
    expect(page.items[0]?.seq).toBe(1);
  });

  it('records principal, resource, trace, client, outcome and a redacted diff', async () => {
    const d = make({ auditDefinition: vocabulary });
    const tenant = unique('t');
    const receipt = await d.audit.record(
      'user.login',
      { type: 'user', id: 'u1', name: 'Ada' },
      {
        tenant,
        actor: { type: 'user', id: 'u1', display: 'Ada' },
        outcome: 'denied',
        traceId: 'a'.repeat(32),
        clientIp: '203.0.113.7',
        userAgent: 'test-agent/1.0',
        before: { pin: '1234', name: 'Ada' },
        after: { pin: '9876', name: 'Ada L.' },
        metadata: { reason: 'bad pin', password: 'hunter2' },
      },
    );
    expect(receipt.status).toBe('queued');
    await d.audit.flush();
    const e = await d.audit.get(receipt.id, { tenant });
    expect(e).toMatchObject({
      action: 'user.login',
      outcome: 'denied',
      resource: { type: 'user', id: 'u1', name: 'Ada' },
      actor: { type: 'user', id: 'u1', display: 'Ada' },
      traceId: 'a'.repeat(32),
      clientIp: '203.0.113.7',
      userAgent: 'test-agent/1.0',
      metadata: { reason: 'bad pin', password: '[redacted]' },
    });
    expect(e.diff).toEqual([
      { path: '/name', op: 'changed', before: 'Ada', after: 'Ada L.' },
      { path: '/pin', op: 'changed', secret: true },
    ]);
    // As JSON strings: the bare digits can occur in a timestamp or hash by chance.
    expect(JSON.stringify(e)).not.toMatch(/"1234"|"9876"|hunter2/);
    await expect(d.audit.get(receipt.id, { tenant: unique('other') })).rejects.toMatchObject({
      code: 'AUDIT_EVENT_NOT_FOUND',
    });
  });

  it('refuses undeclared actions and resource types, and malformed input, changing nothing', async () => {
    // Typed by the vocabulary (the suite's factory is typed by the job map only).
    const d = suite.make({ auditDefinition: vocabulary }) as unknown as Docket<
      Jobs,
      typeof vocabulary
    >;
    const tenant = unique('t');
    // @ts-expect-error 'invoice.delete' is not a declared action: rejected at compile time too.
    const unknown = d.audit.record('invoice.delete', { type: 'invoice', id: '1' }, { tenant });
    await expect(unknown).rejects.toMatchObject({ code: 'AUDIT_ACTION_UNKNOWN' });
    await expect(
      // @ts-expect-error 'order' is not a declared resource type.
      d.audit.record('invoice.void', { type: 'order', id: '1' }, { tenant }),
    ).rejects.toMatchObject({ code: 'AUDIT_RESOURCE_UNKNOWN' });
    await expect(
      d.audit.record('invoice.void', { type: 'invoice', id: '1' }, { tenant, clientIp: 'x' }),
    ).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(
      d.audit.record('invoice.void', { type: 'invoice', id: '' }, { tenant }),
    ).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(
      d.audit.record('invoice.void', { type: 'invoice', id: '1' }),
    ).rejects.toMatchObject({ code: 'TENANT_REQUIRED' });
    await expect(d.audit.list({ from: 10, to: 5 }, { tenant })).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
    });
    await expect(d.audit.list({ cursor: 'nope' }, { tenant })).rejects.toMatchObject({
      code: 'INVALID_CURSOR',
    });
    await d.audit.flush();
    expect((await d.audit.list({}, { tenant })).items).toEqual([]);
  });

  it('keeps circular and oversized values as recorded truncations within 64 KiB', async () => {
    const d = make();
    const tenant = unique('t');
    const loop: Record<string, unknown> = { name: 'loop' };
    loop.self = loop;
    const huge = { blob: 'x'.repeat(300_000), list: Array.from({ length: 5000 }, (_, i) => i) };
    const r = await d.audit.record(
      'doc.update',
      { type: 'doc', id: 'd1' },
      {
        tenant,
        metadata: { loop, huge },
      },
    );
    await d.audit.flush();
    const e = await d.audit.get(r.id, { tenant });
    expect(Buffer.byteLength(JSON.stringify(e))).toBeLessThanOrEqual(64 * 1024);
    expect(e.truncated).toEqual(expect.arrayContaining(['/metadata/loop/self']));
    expect(e.truncated?.some((p) => p.startsWith('/metadata/huge'))).toBe(true);
    expect((e.metadata as { loop: { name: string } }).loop.name).toBe('loop');
  });

  it('filters by actor, action, resource, outcome and time, with keyset pages', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const d = make({ clock });
    const tenant = unique('t');
    for (let i = 0; i < 30; i++) {
      clock.advance(1000);
      await d.audit.record(
        i % 2 ? 'invoice.void' : 'invoice.create',
        {
          type: 'invoice',
          id: `inv-${i % 5}`,
        },
        {
          tenant,
          actor: { type: 'user', id: i % 3 === 0 ? 'alice' : 'bob' },
          outcome: i % 7 === 0 ? 'failure' : 'success',
        },
      );
    }
    await d.audit.flush();
    const all: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await d.audit.list({ limit: 7, cursor }, { tenant });
      all.push(...page.items.map((e) => e.id));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(all).toHaveLength(30);
    expect(new Set(all).size).toBe(30);
    const t0 = 1_700_000_000_000;
    const count = async (f: Parameters<typeof d.audit.list>[0]) =>
      (await d.audit.list({ ...f, limit: 200 }, { tenant })).items.length;
    expect(await count({ actorId: 'alice' })).toBe(10);
    expect(await count({ action: 'invoice.void' })).toBe(15);
    expect(await count({ resourceType: 'invoice', resourceId: 'inv-0' })).toBe(6);
    expect(await count({ outcome: 'failure' })).toBe(5);
    expect(await count({ from: t0 + 5000, to: t0 + 10_000 })).toBe(5);
    expect(await count({ actorId: 'bob', action: 'invoice.create', from: t0 + 10_000 })).toBe(7);
  });

  it('actor and resource pages across many days match a filter over every event', async () => {
    // SQLite walks its day-prefixed indexes one day at a time (migration 018): pages must stay
    // in id order across day boundaries, skip empty days, and honour cursors and time ranges.
    const DAY = 86_400_000;
    const t0 = Date.UTC(2026, 2, 1) - 3 * 3_600_000; // 21:00 the day before
    const clock = new ManualClock(t0);
    const d = make({ clock });
    const tenant = unique('t');
    for (let i = 0; i < 240; i++) {
      // Uneven steps: bursts within a day, gaps of several empty days.
      clock.advance(i % 40 === 39 ? 3 * DAY + 17 : ((i * 7919) % 13) * 1_111_111);
      await d.audit.record(
        i % 3 ? 'doc.edit' : 'doc.share',
        { type: i % 2 ? 'doc' : 'folder', id: `r-${i % 4}` },
        { tenant, actor: { type: 'user', id: `u-${i % 5}` } },
      );
    }
    await d.audit.flush();
    const every: AuditEvent[] = [];
    let cursor: string | undefined;
    do {
      const page = await d.audit.list({ limit: 100, cursor }, { tenant });
      every.push(...page.items);
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(every).toHaveLength(240);
    const span = (every[0]?.createdAt ?? 0) - (every[239]?.createdAt ?? 0);
    expect(span).toBeGreaterThan(15 * DAY);

    const pages = async (f: Parameters<typeof d.audit.list>[0], limit: number) => {
      const ids: string[] = [];
      let c: string | undefined;
      do {
        const page = await d.audit.list({ ...f, limit, cursor: c }, { tenant });
        expect(page.items.length).toBeLessThanOrEqual(limit);
        ids.push(...page.items.map((e) => e.id));
        c = page.nextCursor ?? undefined;
      } while (c);
      return ids;
    };
    const mid = (every[60]?.createdAt ?? 0) + 1;
    const late = (every[20]?.createdAt ?? 0) + 1;
    const cases: Array<[Parameters<typeof d.audit.list>[0], (e: AuditEvent) => boolean]> = [
      [{ actorId: 'u-2' }, (e) => e.actor.id === 'u-2'],
      [{ actorId: 'nobody' }, () => false],
      [{ resourceType: 'doc', resourceId: 'r-1' }, (e) => e.resource.id === 'r-1'],
      [{ resourceType: 'folder' }, (e) => e.resource.type === 'folder'],
      [
        { actorId: 'u-1', from: mid - 9 * DAY, to: late },
        (e) => e.actor.id === 'u-1' && e.createdAt >= mid - 9 * DAY && e.createdAt < late,
      ],
      [
        { actorId: 'u-4', action: 'doc.share', to: mid },
        (e) => e.actor.id === 'u-4' && e.action === 'doc.share' && e.createdAt < mid,
      ],
    ];
    for (const [filter, keep] of cases) {
      const expected = every.filter(keep).map((e) => e.id);
      for (const limit of [1, 7, 200]) {
        expect(await pages(filter, limit), JSON.stringify({ filter, limit })).toEqual(expected);
      }
    }
  });

  it('the store refuses UPDATE and DELETE of audit events', async () => {
    const d = make();
    const tenant = unique('t');
    await d.withTransaction(tenant, (tx) => d.audit.record(tx, 'x.y', { type: 'doc', id: '1' }));
    // Even the database owner (trigger), and Docket's own engine role, cannot rewrite history.
    await expect(
      asOwner(`update audit_events set action = 'forged' where tenant_id = '${tenant}'`),
    ).rejects.toThrow(/append-only/);
    await expect(asOwner(`delete from audit_events where tenant_id = '${tenant}'`)).rejects.toThrow(
      /append-only/,
    );
    const db = await d.internals.systemDb();
    await expect(
      db
        .updateTable('audit_events')
        .set({ action: 'forged' })
        .where('tenant_id', '=', tenant)
        .execute(),
    ).rejects.toThrow(/append-only|permission denied/);
    await expect(
      db.deleteFrom('audit_events').where('tenant_id', '=', tenant).execute(),
    ).rejects.toThrow(/append-only/);
    if (suite.ts.url) {
      await expect(asOwner('truncate audit_events')).rejects.toThrow(/append-only/);
      // The tenant's own role has no right to change its history either.
      await expect(
        d.withTransaction(tenant, (tx) =>
          sql`delete from audit_events`.execute(tx).then(() => undefined),
        ),
      ).rejects.toThrow(/permission denied/);
    }
    expect((await d.audit.verify({ tenant })).ok).toBe(true);
  });

  it('verify finds an event changed behind the triggers, and a deleted tail', async () => {
    const d = make();
    const tenant = unique('t');
    for (let i = 0; i < 5; i++) {
      await d.audit.record('doc.edit', { type: 'doc', id: `d${i}` }, { tenant, metadata: { i } });
    }
    await d.audit.flush();
    expect(await d.audit.verify({ tenant })).toMatchObject({ ok: true, events: 5, tenants: 1 });
    await runBehindTriggers(
      suite.ts,
      make(),
      `update audit_events set resource_id = 'forged' where tenant_id = '${tenant}' and seq = 3`,
    );
    expect(await d.audit.verify({ tenant })).toMatchObject({
      ok: false,
      broken: { tenantId: tenant, seq: 3, reason: 'hash_mismatch' },
    });
    // Every tenant is checked when none is named: the broken one is found.
    expect((await d.audit.verify()).ok).toBe(false);

    const t2 = unique('t');
    for (let i = 0; i < 4; i++)
      await d.audit.record('doc.edit', { type: 'doc', id: 'x' }, { tenant: t2 });
    await d.audit.flush();
    await runBehindTriggers(
      suite.ts,
      make(),
      `delete from audit_events where tenant_id = '${t2}' and seq = 4`,
    );
    expect(await d.audit.verify({ tenant: t2 })).toMatchObject({
      ok: false,
      broken: { reason: 'head_mismatch' },
    });
  });

  it('concurrent writers from two instances never fork a chain', async () => {
    const a = make();
    const b = make();
    const tenant = unique('t');
    await Promise.all(
      [a, b].flatMap((d, k) =>
        Array.from({ length: 40 }, (_, i) =>
          i % 4 === 0
            ? d.withTransaction(tenant, (tx) =>
                d.audit.record(tx, 'doc.edit', { type: 'doc', id: `${k}-${i}` }),
              )
            : d.audit.record('doc.edit', { type: 'doc', id: `${k}-${i}` }, { tenant }),
        ),
      ),
    );
    await a.audit.flush();
    await b.audit.flush();
    expect(await a.audit.verify({ tenant })).toMatchObject({ ok: true, events: 80 });
  });

  it('retention purges an old prefix, keeps the chain verifiable, and is changeable at runtime', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const d = make({ clock });
    const tenant = unique('t');
    for (let i = 0; i < 6; i++) {
      await d.audit.record('doc.edit', { type: 'doc', id: `old${i}` }, { tenant });
    }
    await d.audit.flush();
    clock.advance(40 * DAY);
    await d.audit.record('doc.edit', { type: 'doc', id: 'recent' }, { tenant });
    await d.audit.flush();
    expect(await d.audit.getSettings({ tenant })).toEqual({ retentionDays: 90, source: 'default' });
    expect(await d.audit.purgeOnce()).toBe(0);
    await d.audit.setSettings(
      { retentionDays: 30 },
      { tenant, actor: { type: 'user', id: 'ops' } },
    );
    expect(await d.audit.getSettings({ tenant })).toEqual({ retentionDays: 30, source: 'tenant' });
    const purged = await d.audit.purgeOnce();
    expect(purged).toBe(6);
    const left = (await d.audit.list({}, { tenant })).items;
    expect(left.map((e) => e.action).sort()).toEqual(['audit.config_updated', 'doc.edit']);
    expect(await d.audit.verify({ tenant })).toMatchObject({ ok: true, events: 2 });
    await d.audit.record('doc.edit', { type: 'doc', id: 'after' }, { tenant });
    await d.audit.flush();
    expect(await d.audit.verify({ tenant })).toMatchObject({ ok: true, events: 3 });
  });

  it('dead-letter moves and operator actions land in the tenant chain atomically', async () => {
    const d = make({
      handlers: { boom: () => Promise.reject(new Error('no')) },
      jobs: { retry: { maxAttempts: 1 } },
    });
    const tenant = unique('t');
    const job = await d.enqueue('boom', {}, { tenant });
    await d.processBatch({ max: 5, tenant });
    await d.dlq.replay(job.job.id, { tenant, actor: 'apikey:k1' });
    const events = (await d.audit.list({ resourceId: job.job.id }, { tenant })).items;
    expect(events.map((e) => e.action).sort()).toEqual(['job.dead_lettered', 'job.dlq_replayed']);
    expect(events.find((e) => e.action === 'job.dlq_replayed')?.actor).toEqual({
      type: 'api_key',
      id: 'k1',
    });
    expect((await d.audit.verify({ tenant })).ok).toBe(true);
  });
});
