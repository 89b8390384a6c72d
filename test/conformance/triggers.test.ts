// Due triggers on every store and queue backend (SPEC S-6), driven by a ManualClock and
// processBatch(): a trigger fires once at fire_at through its job, dedupe within and outside the window (also under
// concurrent schedules from two instances), skip after re-reading real state, retries and
// `failed` after the last attempt, cancel before the fire, and a state machine the database
// itself enforces.
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import {
  ManualClock,
  type DueTrigger,
  type TriggerContext,
  type TriggerHandler,
} from '../../src/index.js';
import { QUEUE_BACKENDS, createBusinessTable, useDocketSuite } from '../helpers/backends.js';

const T0 = Date.parse('2026-06-01T00:00:00Z');
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';

/** Rejects with a DocketError of `code` (the error is returned for more checks). */
async function failsWith(p: Promise<unknown>, code: string) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e as { code?: string; details?: Record<string, unknown> },
  );
  expect(err?.code).toBe(code);
  return err as { code: string; details: Record<string, unknown> };
}

describe.each(QUEUE_BACKENDS)('due triggers on %s', (backend) => {
  const suite = useDocketSuite(backend, {
    pruneIntervalMs: 0,
    jobs: { retry: { baseMs: 1000, capMs: 1000 } },
  });
  let n = 0;
  const tenantName = () => `trig-${++n}`;

  /** A Docket with a ManualClock and one `reminder` handler; `calls` lists what it saw. */
  function setup(handler: TriggerHandler = () => ({ sent: true }), extra = {}) {
    const clock = new ManualClock(T0);
    const calls: TriggerContext[] = [];
    const d = suite.make({
      clock,
      triggers: {
        handlers: {
          reminder: async (ctx: TriggerContext) => {
            calls.push(ctx);
            return handler(ctx);
          },
          digest: () => undefined,
        },
      },
      ...extra,
    });
    const tenant = tenantName();
    const fire = () => d.processBatch({ tenant, max: 50 });
    return { d, clock, calls, tenant, fire };
  }

  it('fires once at fireAt and not before, under the trace id given at schedule time', async () => {
    const { d, clock, calls, tenant, fire } = setup();
    const { trigger, deduplicated } = await d.triggers.schedule(
      { type: 'reminder', target: 'invoice:1', fireAt: T0 + 60_000, payload: { n: 1 } },
      { tenant, traceId: TRACE },
    );
    expect(deduplicated).toBe(false);
    expect(trigger).toMatchObject({ state: 'pending', traceId: TRACE, attempts: 0 });
    expect((await fire()).processed).toBe(0);
    clock.advance(59_999);
    expect((await fire()).processed).toBe(0);
    expect(calls).toHaveLength(0);
    clock.advance(1);
    expect((await fire()).succeeded).toBe(1);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ tenant, traceId: TRACE, attempt: 1 });
    expect(calls[0]?.trigger).toMatchObject({
      id: trigger.id,
      target: 'invoice:1',
      payload: { n: 1 },
    });
    const done = await d.triggers.get(trigger.id, { tenant });
    expect(done).toMatchObject({ state: 'triggered', result: { sent: true }, attempts: 1 });
    expect(done.finishedAt).toBe(T0 + 60_000);
    const job = await d.jobs.get(trigger.jobId, { tenant });
    expect(job).toMatchObject({ status: 'succeeded', traceId: TRACE, idempotencyKey: trigger.id });
    clock.advance(3_600_000);
    expect((await fire()).processed).toBe(0);
    expect(calls).toHaveLength(1);
  });

  it('a dedupe key returns the existing trigger within its window and a new one after it', async () => {
    const { d, clock, tenant } = setup();
    const input = { type: 'reminder', target: 'cart:7', dedupeKey: 'cart:7', dedupeWindow: 10_000 };
    const first = await d.triggers.schedule({ ...input, fireAt: T0 + 60_000 }, { tenant });
    clock.advance(9_999);
    const again = await d.triggers.schedule({ ...input, fireAt: T0 + 90_000 }, { tenant });
    expect(again.deduplicated).toBe(true);
    expect(again.trigger.id).toBe(first.trigger.id);
    expect(again.trigger.fireAt).toBe(T0 + 60_000);
    // The same key under another type or tenant is another key.
    const digest = await d.triggers.schedule({ ...input, type: 'digest', fireAt: T0 }, { tenant });
    expect(digest.deduplicated).toBe(false);
    const other = await d.triggers.schedule({ ...input, fireAt: T0 }, { tenant: tenantName() });
    expect(other.deduplicated).toBe(false);
    clock.advance(1);
    const later = await d.triggers.schedule({ ...input, fireAt: T0 + 90_000 }, { tenant });
    expect(later.deduplicated).toBe(false);
    expect(later.trigger.id).not.toBe(first.trigger.id);
    const reminders = await d.triggers.list({ type: 'reminder' }, { tenant });
    expect(reminders.items.map((t) => t.id)).toEqual([later.trigger.id, first.trigger.id]);
    // One firing job per trigger, none for the deduplicated call.
    const jobs = await d.jobs.list({ type: 'docket.trigger:reminder' }, { tenant });
    expect(jobs.items).toHaveLength(2);
  });

  it('concurrent schedules with one dedupe key from two instances create one trigger', async () => {
    const a = setup();
    const b = suite.make({ clock: a.clock, triggers: { handlers: { reminder: () => undefined } } });
    const input = { type: 'reminder', target: 'user:1', fireAt: T0 + 1000, dedupeKey: 'welcome' };
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        (i % 2 ? a.d : b).triggers.schedule(input, { tenant: a.tenant }),
      ),
    );
    expect(new Set(results.map((r) => r.trigger.id)).size).toBe(1);
    expect(results.filter((r) => !r.deduplicated)).toHaveLength(1);
    expect((await a.d.triggers.list({}, { tenant: a.tenant })).items).toHaveLength(1);
    const jobs = await a.d.jobs.list({ type: 'docket.trigger:reminder' }, { tenant: a.tenant });
    expect(jobs.items).toHaveLength(1);
  });

  it('a handler that re-reads the real state at fire time skips with its reason', async () => {
    const paid = new Set<string>();
    const { d, clock, tenant, fire } = setup(({ trigger }) =>
      paid.has(trigger.target) ? { skip: `${trigger.target} is paid` } : { reminded: true },
    );
    const one = await d.triggers.schedule(
      { type: 'reminder', target: 'inv:1', fireAt: T0 + 10 },
      { tenant },
    );
    const two = await d.triggers.schedule(
      { type: 'reminder', target: 'inv:2', fireAt: T0 + 10 },
      { tenant },
    );
    paid.add('inv:1');
    clock.advance(10);
    expect((await fire()).succeeded).toBe(2);
    expect(await d.triggers.get(one.trigger.id, { tenant })).toMatchObject({
      state: 'skipped',
      skipReason: 'inv:1 is paid',
      result: null,
    });
    expect(await d.triggers.get(two.trigger.id, { tenant })).toMatchObject({
      state: 'triggered',
      result: { reminded: true },
    });
    const skipped = await d.triggers.list({ state: ['skipped'] }, { tenant });
    expect(skipped.items.map((t) => t.id)).toEqual([one.trigger.id]);
  });

  it("a throwing handler is retried on the job's policy and the trigger ends failed after the last attempt", async () => {
    let failures = 1;
    const { d, clock, calls, tenant, fire } = setup(({ trigger }) => {
      if (trigger.target === 'always' || failures-- > 0)
        throw new Error(`smtp down (${trigger.target})`);
      return 'ok';
    });
    const flaky = await d.triggers.schedule(
      { type: 'reminder', target: 'once', fireAt: T0 },
      { tenant, maxAttempts: 3 },
    );
    const broken = await d.triggers.schedule(
      { type: 'reminder', target: 'always', fireAt: T0 },
      { tenant, maxAttempts: 3 },
    );
    expect((await fire()).retried).toBe(2);
    expect(await d.triggers.get(broken.trigger.id, { tenant })).toMatchObject({
      state: 'pending',
      attempts: 1,
      error: 'smtp down (always)',
    });
    clock.advance(500);
    expect((await fire()).processed).toBe(0);
    clock.advance(1500);
    const second = await fire();
    expect(second).toMatchObject({ succeeded: 1, retried: 1 });
    expect(await d.triggers.get(flaky.trigger.id, { tenant })).toMatchObject({
      state: 'triggered',
      attempts: 2,
      result: 'ok',
      error: null,
    });
    clock.advance(2000);
    expect((await fire()).dead).toBe(1);
    const failed = await d.triggers.get(broken.trigger.id, { tenant });
    expect(failed).toMatchObject({ state: 'failed', attempts: 3, error: 'smtp down (always)' });
    expect((await d.jobs.get(failed.jobId, { tenant })).status).toBe('failed');
    expect(calls.filter((c) => c.trigger.target === 'always').map((c) => c.attempt)).toEqual([
      1, 2, 3,
    ]);
    expect(calls.every((c) => c.maxAttempts === 3)).toBe(true);
  });

  it('a trigger canceled before its time never reaches the handler, is audited and frees its dedupe key', async () => {
    const { d, clock, calls, tenant, fire } = setup();
    const input = { type: 'reminder', target: 'order:9', fireAt: T0 + 5000, dedupeKey: 'order:9' };
    const { trigger } = await d.triggers.schedule(input, { tenant });
    const canceled = await d.triggers.cancel(trigger.id, {
      tenant,
      actor: 'user:ops',
      traceId: TRACE,
    });
    expect(canceled).toMatchObject({ state: 'canceled', finishedAt: T0 });
    clock.advance(5000);
    expect((await fire()).succeeded).toBe(1);
    expect(calls).toHaveLength(0);
    expect((await d.triggers.get(trigger.id, { tenant })).state).toBe('canceled');
    const again = await failsWith(d.triggers.cancel(trigger.id, { tenant }), 'TRIGGER_NOT_PENDING');
    expect(again.details.state).toBe('canceled');
    await failsWith(d.triggers.cancel(trigger.id, { tenant: tenantName() }), 'TRIGGER_NOT_FOUND');
    await failsWith(d.triggers.cancel('not-a-uuid', { tenant }), 'TRIGGER_NOT_FOUND');
    await failsWith(
      d.triggers.get('0190a1b2-0000-7000-8000-000000000000', { tenant }),
      'TRIGGER_NOT_FOUND',
    );
    const events = await d.audit.list({ action: 'trigger.canceled' }, { tenant });
    expect(events.items).toHaveLength(1);
    expect(events.items[0]).toMatchObject({
      resource: { type: 'trigger', id: trigger.id },
      traceId: TRACE,
    });
    const next = await d.triggers.schedule(input, { tenant });
    expect(next.deduplicated).toBe(false);
    expect(next.trigger.id).not.toBe(trigger.id);
  });

  it('the database refuses state transitions the state machine does not name', async () => {
    const { d, tenant, fire } = setup();
    const fired = await d.triggers.schedule(
      { type: 'reminder', target: 'a', fireAt: T0 },
      { tenant },
    );
    const canceled = await d.triggers.schedule(
      { type: 'reminder', target: 'b', fireAt: T0 + 1000 },
      { tenant },
    );
    await fire();
    await d.triggers.cancel(canceled.trigger.id, { tenant });
    const db = await d.internals.systemDb();
    const update = (id: string, set: Record<string, unknown>) =>
      db.updateTable('due_triggers').set(set).where('id', '=', id).execute();
    for (const [id, set] of [
      [fired.trigger.id, { state: 'pending', finished_at: null }],
      [fired.trigger.id, { state: 'failed', error: 'x' }],
      [fired.trigger.id, { result: '"rewritten"' }],
      [canceled.trigger.id, { state: 'triggered' }],
    ] as const) {
      await expect(update(id, set)).rejects.toThrow(/cannot/);
    }
    expect((await d.triggers.get(fired.trigger.id, { tenant })).state).toBe('triggered');
    expect((await d.triggers.get(canceled.trigger.id, { tenant })).state).toBe('canceled');
    // pending → pending bookkeeping and pending → a final state are what the engine writes.
    const open = await d.triggers.schedule(
      { type: 'reminder', target: 'c', fireAt: T0 + 9000 },
      { tenant },
    );
    await update(open.trigger.id, { attempts: 1 });
    await expect(update(open.trigger.id, { state: 'bogus' })).rejects.toThrow();
  });

  // Row-level security is PostgreSQL's (SQLite relies on the tenant filter of every query).
  const onRls = backend.startsWith('postgres') ? it : () => undefined;
  onRls(
    'a tenant transaction sees only its own triggers and keys, and cannot move states',
    async () => {
      const { d, tenant } = setup();
      const other = tenantName();
      const input = { type: 'reminder', target: 'x', fireAt: T0 + 1000, dedupeKey: 'k' };
      const mine = await d.triggers.schedule(input, { tenant });
      await d.triggers.schedule(input, { tenant: other });
      const seen = await d.withTransaction(tenant, async (tx) => ({
        triggers: await tx.selectFrom('due_triggers').select(['id', 'tenant_id']).execute(),
        keys: await tx.selectFrom('due_trigger_keys').select('tenant_id').execute(),
      }));
      expect(seen.triggers).toEqual([{ id: mine.trigger.id, tenant_id: tenant }]);
      expect(seen.keys).toEqual([{ tenant_id: tenant }]);
      await expect(
        d.withTransaction(tenant, (tx) =>
          tx.updateTable('due_triggers').set({ state: 'triggered', finished_at: T0 }).execute(),
        ),
      ).rejects.toThrow(/permission denied/);
      expect((await d.triggers.get(mine.trigger.id, { tenant })).state).toBe('pending');
    },
  );

  it('bad input is refused with a stable code and writes nothing', async () => {
    const { d, tenant } = setup();
    const ok = { type: 'reminder', target: 'x', fireAt: T0 };
    const unknown = await failsWith(
      d.triggers.schedule({ ...ok, type: 'nope' }, { tenant }),
      'UNKNOWN_TRIGGER_TYPE',
    );
    expect(unknown.details.known).toEqual(['digest', 'reminder']);
    for (const bad of [
      { ...ok, fireAt: Number.NaN },
      { ...ok, fireAt: new Date('garbage') },
      { ...ok, target: '' },
      { ...ok, type: '9lives' },
      { ...ok, dedupeWindow: 1000 },
      { ...ok, dedupeKey: 'k', dedupeWindow: 0 },
      { ...ok, dedupeKey: '' },
      { ...ok, payload: { big: 10n } as never },
    ]) {
      await failsWith(d.triggers.schedule(bad, { tenant }), 'VALIDATION_FAILED');
    }
    await failsWith(d.triggers.schedule(ok, { tenant, maxAttempts: 0 }), 'VALIDATION_FAILED');
    await failsWith(d.triggers.list({ cursor: 'garbage' }, { tenant }), 'INVALID_CURSOR');
    await failsWith(d.triggers.list({ limit: 0 }, { tenant }), 'VALIDATION_FAILED');
    expect(() => d.triggers.register('reminder', () => undefined)).toThrow(/registered already/);
    expect((await d.triggers.list({}, { tenant })).items).toHaveLength(0);
    expect((await d.jobs.list({}, { tenant })).items).toHaveLength(0);
  });

  it("scheduleTx joins the caller's transaction: the trigger and its job exist only if it commits", async () => {
    const { d, clock, calls, tenant, fire } = setup();
    const table = `trig_orders_${backend.replace(/\W/g, '_')}_${n}`;
    await createBusinessTable(suite.ts, d, table);
    const input = { type: 'reminder', target: 'order:1', fireAt: T0 + 100, dedupeKey: 'o1' };
    await expect(
      d.withTransaction(tenant, async (tx) => {
        await d.triggers.scheduleTx(tx, input);
        throw new Error('business rule failed');
      }),
    ).rejects.toThrow('business rule failed');
    expect((await d.triggers.list({}, { tenant })).items).toHaveLength(0);
    const made = await d.withTransaction(tenant, async (tx) => {
      await sql`insert into ${sql.table(table)} (id, tenant_id) values ('o1', ${tenant})`.execute(
        tx,
      );
      return d.triggers.scheduleTx(tx, input, { traceId: TRACE });
    });
    // The rolled-back attempt left no dedupe key behind.
    expect(made.deduplicated).toBe(false);
    expect(made.trigger.traceId).toBe(TRACE);
    const db = await d.internals.systemDb();
    await failsWith(d.triggers.scheduleTx(db as never, input), 'TX_INVALID');
    clock.advance(100);
    await fire();
    expect(calls.map((c) => c.trigger.id)).toEqual([made.trigger.id]);
  });

  it('the sweep settles triggers whose job ended without an outcome: timed out on the last attempt, or job canceled', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const { d, clock, tenant, fire } = setup(undefined, {
      jobs: { graceMs: 10, retry: { baseMs: 1000, capMs: 1000 } },
    });
    d.triggers.register(
      'slowpoke',
      async () => {
        await gate;
        return 'late';
      },
      { timeoutMs: 30, maxAttempts: 1 },
    );
    const slow = await d.triggers.schedule(
      { type: 'slowpoke', target: 'slow', fireAt: T0 },
      { tenant },
    );
    const later = await d.triggers.schedule(
      { type: 'reminder', target: 'later', fireAt: T0 + 60_000 },
      { tenant },
    );
    expect((await fire()).dead).toBe(1);
    expect((await d.triggers.get(slow.trigger.id, { tenant })).state).toBe('pending');
    await d.jobs.cancel(later.trigger.jobId, { tenant });
    expect(await d.triggers.sweepOnce()).toBe(1);
    expect(await d.triggers.get(slow.trigger.id, { tenant })).toMatchObject({
      state: 'failed',
      error: expect.stringMatching(/timeout or crash/),
    });
    release();
    // A handler returning after its attempt was given up does not flip the final state.
    await new Promise((r) => setTimeout(r, 20));
    expect((await d.triggers.get(slow.trigger.id, { tenant })).state).toBe('failed');
    // The canceled job's trigger is settled once its time has come.
    clock.advance(60_000);
    expect(await d.triggers.sweepOnce()).toBe(1);
    expect((await d.triggers.get(later.trigger.id, { tenant })).state).toBe('canceled');
  });

  it("only the trigger's own job fires it; another job naming its id does nothing", async () => {
    const { d, calls, tenant, fire } = setup();
    const { trigger } = await d.triggers.schedule(
      { type: 'reminder', target: 'x', fireAt: T0 + 60_000 },
      { tenant },
    );
    await d.enqueue('docket.trigger:reminder', { triggerId: trigger.id }, { tenant });
    expect((await fire()).succeeded).toBe(1);
    expect(calls).toHaveLength(0);
    expect((await d.triggers.get(trigger.id, { tenant })).state).toBe('pending');
  });

  it('lists newest first in keyset pages filtered by state and type', async () => {
    const { d, tenant } = setup();
    const made: DueTrigger[] = [];
    for (let i = 0; i < 5; i++) {
      const type = i % 2 ? 'digest' : 'reminder';
      made.push(
        (await d.triggers.schedule({ type, target: `t${i}`, fireAt: T0 + 1e6 }, { tenant }))
          .trigger,
      );
    }
    await d.triggers.cancel(made[4]?.id ?? '', { tenant });
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await d.triggers.list({ limit: 2, cursor }, { tenant });
      seen.push(...page.items.map((t) => t.id));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(seen).toEqual(made.map((t) => t.id).reverse());
    const pendingReminders = await d.triggers.list(
      { state: ['pending'], type: 'reminder' },
      { tenant },
    );
    expect(pendingReminders.items.map((t) => t.target)).toEqual(['t2', 't0']);
    expect(await d.triggers.counts({ tenant })).toEqual({ pending: 4, canceled: 1 });
  });

  it('prune removes final triggers past retention, except one an open dedupe window returns', async () => {
    const { d, clock, tenant, fire } = setup(undefined, {
      triggers: { retentionMs: 1000, handlers: { reminder: () => 'ok' } },
    });
    const plain = await d.triggers.schedule(
      { type: 'reminder', target: 'a', fireAt: T0 },
      { tenant },
    );
    const keyed = await d.triggers.schedule(
      { type: 'reminder', target: 'b', fireAt: T0, dedupeKey: 'b' },
      { tenant },
    );
    const waiting = await d.triggers.schedule(
      { type: 'reminder', target: 'c', fireAt: T0 + 1e7 },
      { tenant },
    );
    await fire();
    clock.advance(2000);
    await d.pruneOnce();
    await failsWith(d.triggers.get(plain.trigger.id, { tenant }), 'TRIGGER_NOT_FOUND');
    expect((await d.triggers.get(keyed.trigger.id, { tenant })).state).toBe('triggered');
    expect((await d.triggers.get(waiting.trigger.id, { tenant })).state).toBe('pending');
    const again = await d.triggers.schedule(
      { type: 'reminder', target: 'b', fireAt: T0, dedupeKey: 'b' },
      { tenant },
    );
    expect(again).toMatchObject({ deduplicated: true, trigger: { id: keyed.trigger.id } });
  });
});
