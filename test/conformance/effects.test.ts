// The effect ledger on every store (SPEC O-8): a sent effect is never called again and its
// recorded result is replayed, a different payload under a key is a conflict, a failure is
// recorded and retried under the same idempotency key, a call whose lease expired becomes
// `unknown` (held, audited, resolvable) unless its provider is idempotent, a late answer heals
// `unknown`, the transactional form never calls the provider before commit, and the state
// machine is enforced by the database.
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import {
  EffectUnknownError,
  ManualClock,
  PermanentJobError,
  type EffectCall,
  type EffectProvider,
} from '../../src/index.js';
import { BACKENDS, createBusinessTable, useDocketSuite, waitFor } from '../helpers/backends.js';

let seq = 0;
const unique = (p: string) => `${p}${++seq}${Math.random().toString(36).slice(2, 6)}`;

/** A provider of the test's own: records its calls; `gate` holds a call until released. */
function provider(
  answer: (
    c: EffectCall,
  ) =>
    | Promise<{ providerMessageId?: string; result?: never }>
    | { providerMessageId?: string; result?: never } = (c) => ({
    providerMessageId: `msg-${c.attempt}`,
  }),
) {
  const calls: EffectCall[] = [];
  const fn: EffectProvider = async (c) => {
    calls.push(c);
    return answer(c);
  };
  return { fn, calls };
}

/** A call that waits until released (a worker stuck or dead mid-call). */
function heldCall() {
  let release: (v: { providerMessageId: string }) => void = () => undefined;
  const calls: EffectCall[] = [];
  const fn: EffectProvider = (c) => {
    calls.push(c);
    return new Promise((resolve) => (release = resolve));
  };
  return { fn, calls, release: (id: string) => release({ providerMessageId: id }) };
}

describe.each(BACKENDS)('effect ledger on %s', (backend) => {
  const suite = useDocketSuite(backend);

  it('records the answer before returning, and a retry after sent replays it without calling the provider', async () => {
    const d = suite.make();
    const tenant = unique('t');
    const p = provider((c) => ({
      providerMessageId: 'ch_1',
      result: { amount: 42, key: c.idempotencyKey } as never,
    }));
    const first = await d.effects.run(
      null,
      { key: 'charge-1', payload: { amount: 42 }, tenant, type: 'payment' },
      async (c) => {
        const out = await p.fn(c);
        return out;
      },
    );
    expect(first.replayed).toBe(false);
    expect(first.effect).toMatchObject({
      state: 'sent',
      attempts: 1,
      providerMessageId: 'ch_1',
      type: 'payment',
    });
    expect(await d.effects.get('charge-1', { tenant })).toMatchObject({
      state: 'sent',
      result: { amount: 42 },
    });
    const again = await d.effects.run(
      null,
      { key: 'charge-1', payload: { amount: 42 }, tenant, type: 'payment' },
      p.fn,
    );
    expect(again).toMatchObject({
      replayed: true,
      providerMessageId: 'ch_1',
      result: first.result,
    });
    expect(p.calls).toHaveLength(1);
    // Key order inside the payload does not matter (canonical JSON).
    const reordered = await d.effects.run(
      null,
      { key: 'x-order', payload: { a: 1, b: 2 }, tenant },
      p.fn,
    );
    expect(
      (await d.effects.run(null, { key: 'x-order', payload: { b: 2, a: 1 }, tenant }, p.fn))
        .replayed,
    ).toBe(true);
    expect(reordered.replayed).toBe(false);
    // Keys are tenant-scoped: the same key in another tenant is another effect, with another
    // idempotency key for the provider.
    const other = unique('other');
    await d.effects.run(
      null,
      { key: 'charge-1', payload: { amount: 42 }, tenant: other, type: 'payment' },
      p.fn,
    );
    expect(p.calls.map((c) => c.idempotencyKey)).toHaveLength(3);
    expect(p.calls[2]?.idempotencyKey).not.toBe(p.calls[0]?.idempotencyKey);
    expect(p.calls[0]?.idempotencyKey).toMatch(/^[0-9a-f]{40}$/);
  });

  it('refuses a different payload or type under a key with EFFECT_CONFLICT, and bad input, changing nothing', async () => {
    const d = suite.make();
    const tenant = unique('t');
    const p = provider();
    await d.effects.run(null, { key: 'k', payload: { to: 'a' }, tenant }, p.fn);
    await expect(
      d.effects.run(null, { key: 'k', payload: { to: 'b' }, tenant }, p.fn),
    ).rejects.toMatchObject({ code: 'EFFECT_CONFLICT', status: 409 });
    await expect(
      d.effects.run(null, { key: 'k', payload: { to: 'a' }, tenant, type: 'sms' }, p.fn),
    ).rejects.toMatchObject({ code: 'EFFECT_CONFLICT' });
    const bad = (input: object, code: string) =>
      expect(
        d.effects.run(null, { tenant, payload: {}, ...input } as never, p.fn),
      ).rejects.toMatchObject({ code });
    await bad({ key: '' }, 'VALIDATION_FAILED');
    await bad({ key: 'x'.repeat(256) }, 'VALIDATION_FAILED');
    await bad({ key: 'a\nb' }, 'VALIDATION_FAILED');
    await bad({ key: 'ok', type: 'bad type' }, 'VALIDATION_FAILED');
    await bad({ key: 'ok', leaseMs: 5 }, 'VALIDATION_FAILED');
    await bad({ key: 'ok', payload: 'y'.repeat(300_000) }, 'PAYLOAD_TOO_LARGE');
    await expect(d.effects.run(null, { key: 'ok', payload: {} }, p.fn)).rejects.toMatchObject({
      code: 'TENANT_REQUIRED',
    });
    await expect(
      d.effects.run({} as never, { key: 'ok', payload: {} }, p.fn),
    ).rejects.toMatchObject({ code: 'TX_INVALID' });
    expect(p.calls).toHaveLength(1);
    expect((await d.effects.list({}, { tenant })).items.map((e) => e.key)).toEqual(['k']);
    await expect(d.effects.get('nope', { tenant })).rejects.toMatchObject({
      code: 'EFFECT_NOT_FOUND',
    });
    await expect(d.effects.get('k', { tenant: unique('other') })).rejects.toMatchObject({
      code: 'EFFECT_NOT_FOUND',
    });
  });

  it('records a failure with its error and whether it is retryable; the next run calls again with the same idempotency key', async () => {
    const d = suite.make();
    const tenant = unique('t');
    let n = 0;
    const p = provider(() => {
      n++;
      if (n === 1)
        throw Object.assign(new Error('451 try later'), { details: { responseCode: 451 } });
      if (n === 2) throw new PermanentJobError('550 no such user');
      return { providerMessageId: 'm3' };
    });
    const input = { key: 'mail-1', payload: { to: 'x' }, tenant };
    await expect(d.effects.run(null, input, p.fn)).rejects.toThrow('451 try later');
    expect(await d.effects.get('mail-1', { tenant })).toMatchObject({
      state: 'failed',
      attempts: 1,
      lastError: { message: '451 try later', retryable: true, details: { responseCode: 451 } },
    });
    await expect(d.effects.run(null, input, p.fn)).rejects.toBeInstanceOf(PermanentJobError);
    expect((await d.effects.get('mail-1', { tenant })).lastError).toMatchObject({
      retryable: false,
      name: 'PermanentJobError',
    });
    const sent = await d.effects.run(null, input, p.fn);
    expect(sent.effect).toMatchObject({ state: 'sent', attempts: 3, providerMessageId: 'm3' });
    expect(new Set(p.calls.map((c) => c.idempotencyKey)).size).toBe(1);
    expect(p.calls.map((c) => c.attempt)).toEqual([1, 2, 3]);
  });

  it('a live call answers EFFECT_IN_PROGRESS; once its lease expired the effect is unknown, held, audited and never called again', async () => {
    const clock = new ManualClock(Date.now());
    const d = suite.make({ clock });
    const tenant = unique('t');
    const lost = heldCall();
    const input = { key: 'sms-1', payload: { text: 'hi' }, tenant, type: 'sms', leaseMs: 5000 };
    const first = d.effects.run(null, input, lost.fn);
    first.catch(() => undefined);
    await waitFor(() => lost.calls.length === 1);
    const p = provider();
    await expect(d.effects.run(null, input, p.fn)).rejects.toMatchObject({
      code: 'EFFECT_IN_PROGRESS',
      details: { retryAfterMs: expect.any(Number) },
    });
    clock.advance(5001);
    await expect(d.effects.run(null, input, p.fn)).rejects.toMatchObject({
      code: 'EFFECT_UNKNOWN',
    });
    await expect(d.effects.run(null, input, p.fn)).rejects.toMatchObject({
      code: 'EFFECT_UNKNOWN',
    });
    expect(p.calls).toHaveLength(0);
    const held = await d.effects.get('sms-1', { tenant });
    expect(held).toMatchObject({
      state: 'unknown',
      leaseUntil: null,
      attempts: 1,
      lastError: { name: 'LeaseExpired', retryable: false },
    });
    expect(
      (await d.effects.list({ state: ['unknown'] }, { tenant })).items.map((e) => e.key),
    ).toEqual(['sms-1']);
    const audit = await d.audit.list({ action: 'effect.unknown' }, { tenant });
    expect(audit.items).toHaveLength(1);
    expect(audit.items[0]).toMatchObject({ resource: { type: 'effect', id: 'sms-1' } });
    // The lost call's late answer is still the truth: it heals `unknown` into `sent`.
    lost.release('late-1');
    await expect(first).resolves.toMatchObject({
      effect: { state: 'sent', providerMessageId: 'late-1' },
    });
    expect((await d.effects.run(null, input, p.fn)).replayed).toBe(true);
    expect(p.calls).toHaveLength(0);
  });

  it('an idempotent provider’s lost call is retried with the same idempotency key instead of being held', async () => {
    const clock = new ManualClock(Date.now());
    const d = suite.make({ clock });
    const tenant = unique('t');
    const lost = heldCall();
    const input = {
      key: 'pay-1',
      payload: { cents: 100 },
      tenant,
      idempotentProvider: true,
      leaseMs: 2000,
    };
    const first = d.effects.run(null, input, lost.fn);
    first.catch(() => undefined);
    await waitFor(() => lost.calls.length === 1);
    clock.advance(2001);
    const p = provider();
    const retried = await d.effects.run(null, input, p.fn);
    expect(retried.effect).toMatchObject({
      state: 'sent',
      attempts: 2,
      providerMessageId: 'msg-2',
    });
    expect(p.calls[0]?.idempotencyKey).toBe(lost.calls[0]?.idempotencyKey);
    // The first call's answer arrives late: it cannot overwrite the newer call's record.
    lost.release('stale');
    await expect(first).resolves.toMatchObject({ effect: { providerMessageId: 'msg-2' } });
    expect((await d.effects.get('pay-1', { tenant })).providerMessageId).toBe('msg-2');
    // A provider that says it may have acted (connection dropped after the request) is held
    // unless it is idempotent.
    const maybe: EffectProvider = async () => {
      throw new EffectUnknownError('connection reset after the request was written');
    };
    await expect(
      d.effects.run(null, { key: 'pay-2', payload: {}, tenant }, maybe),
    ).rejects.toMatchObject({ code: 'EFFECT_UNKNOWN' });
    expect((await d.effects.get('pay-2', { tenant })).state).toBe('unknown');
    await expect(
      d.effects.run(null, { key: 'pay-3', payload: {}, tenant, idempotentProvider: true }, maybe),
    ).rejects.toBeInstanceOf(EffectUnknownError);
    expect(await d.effects.get('pay-3', { tenant })).toMatchObject({
      state: 'failed',
      lastError: { retryable: true },
    });
  });

  it('sweeps expired calls to unknown, and an operator resolves them as sent (replayed) or failed (sent again), audited', async () => {
    const clock = new ManualClock(Date.now());
    const d = suite.make({ clock });
    const tenant = unique('t');
    for (const key of ['a', 'b']) {
      const lost = heldCall();
      void d.effects
        .run(null, { key, payload: {}, tenant, leaseMs: 1000 }, lost.fn)
        .catch(() => undefined);
      await waitFor(() => lost.calls.length === 1);
    }
    await expect(d.effects.resolve('a', { outcome: 'sent' }, { tenant })).rejects.toMatchObject({
      code: 'EFFECT_NOT_UNKNOWN',
      details: { state: 'sending' },
    });
    clock.advance(1001);
    expect(await d.effects.sweepOnce()).toBeGreaterThanOrEqual(2);
    expect((await d.effects.counts({ tenant })).unknown).toBe(2);
    const a = await d.effects.resolve(
      'a',
      {
        outcome: 'sent',
        providerMessageId: 'found-in-provider-log',
        note: 'checked the dashboard',
      },
      { tenant, actor: 'apikey:k1' },
    );
    expect(a).toMatchObject({
      state: 'sent',
      providerMessageId: 'found-in-provider-log',
      resolvedBy: 'apikey:k1',
      resolutionNote: 'checked the dashboard',
    });
    const b = await d.effects.resolve('b', { outcome: 'failed' }, { tenant, actor: 'cli' });
    expect(b).toMatchObject({ state: 'failed', lastError: { retryable: true } });
    const p = provider();
    expect((await d.effects.run(null, { key: 'a', payload: {}, tenant }, p.fn)).replayed).toBe(
      true,
    );
    expect((await d.effects.run(null, { key: 'b', payload: {}, tenant }, p.fn)).effect.state).toBe(
      'sent',
    );
    expect(p.calls.map((c) => c.key)).toEqual(['b']);
    await expect(d.effects.resolve('a', { outcome: 'failed' }, { tenant })).rejects.toMatchObject({
      code: 'EFFECT_NOT_UNKNOWN',
    });
    await expect(d.effects.resolve('zzz', { outcome: 'sent' }, { tenant })).rejects.toMatchObject({
      code: 'EFFECT_NOT_FOUND',
    });
    await expect(
      d.effects.resolve('a', { outcome: 'maybe' as never }, { tenant }),
    ).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    const audit = await d.audit.list({ action: 'effect.resolved' }, { tenant });
    expect(audit.items.map((e) => [e.resource.id, e.actor.id])).toEqual([
      ['b', 'cli'],
      ['a', 'k1'],
    ]);
  });

  it('in a transaction: reserved with the business change, called only after commit; a rollback calls nothing', async () => {
    const d = suite.make();
    const table = unique('orders_');
    const tenant = unique('t');
    await createBusinessTable(suite.ts, d, table);
    const p = provider();
    let calledInside = false;
    const rolledBack = d.withTransaction(tenant, async (tx) => {
      await sql`insert into ${sql.table(table)} (id, tenant_id) values ('o1', ${tenant})`.execute(
        tx,
      );
      const r = await d.effects.run(tx, { key: 'confirm-o1', payload: { order: 'o1' } }, p.fn);
      expect(r.effect.state).toBe('pending');
      calledInside ||= p.calls.length > 0;
      throw new Error('roll back');
    });
    await expect(rolledBack).rejects.toThrow('roll back');
    await expect(d.effects.get('confirm-o1', { tenant })).rejects.toMatchObject({
      code: 'EFFECT_NOT_FOUND',
    });
    const reservation = await d.withTransaction(tenant, async (tx) => {
      await sql`insert into ${sql.table(table)} (id, tenant_id) values ('o2', ${tenant})`.execute(
        tx,
      );
      const r = await d.effects.run(tx, { key: 'confirm-o2', payload: { order: 'o2' } }, p.fn);
      calledInside ||= p.calls.length > 0;
      return r;
    });
    expect(calledInside).toBe(false);
    const out = await reservation.outcome;
    expect(out.effect).toMatchObject({ state: 'sent', key: 'confirm-o2' });
    expect(p.calls).toHaveLength(1);
    // Once sent, a reservation in a later transaction finds it sent and calls nothing.
    const again = await d.withTransaction(tenant, (tx) =>
      d.effects.run(tx, { key: 'confirm-o2', payload: { order: 'o2' } }, p.fn),
    );
    expect(again.replayed).toBe(true);
    await expect(again.outcome).resolves.toMatchObject({ replayed: true });
    await expect(
      d.withTransaction(tenant, (tx) =>
        d.effects.run(tx, { key: 'confirm-o2', payload: { order: 'other' } }, p.fn),
      ),
    ).rejects.toMatchObject({ code: 'EFFECT_CONFLICT' });
    expect(p.calls).toHaveLength(1);
  });

  it('pages a tenant’s effects newest first, filtered by state', async () => {
    const d = suite.make();
    const tenant = unique('t');
    const p = provider();
    for (let i = 0; i < 5; i++)
      await d.effects.run(null, { key: `k${i}`, payload: {}, tenant }, p.fn);
    const first = await d.effects.list({ limit: 2 }, { tenant });
    expect(first.items.map((e) => e.key)).toEqual(['k4', 'k3']);
    const second = await d.effects.list(
      { limit: 2, cursor: first.nextCursor as string },
      { tenant },
    );
    expect(second.items.map((e) => e.key)).toEqual(['k2', 'k1']);
    expect((await d.effects.list({ state: ['failed'] }, { tenant })).items).toEqual([]);
    await expect(d.effects.list({ state: ['nope' as never] }, { tenant })).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
    });
    await expect(d.effects.list({ cursor: 'zzz' }, { tenant })).rejects.toMatchObject({
      code: 'INVALID_CURSOR',
    });
  });

  it('enforces the state machine in the database, whoever writes', async () => {
    const d = suite.make();
    const tenant = unique('t');
    await d.effects.run(null, { key: 'done', payload: {}, tenant }, provider().fn);
    const db = await d.internals.systemDb();
    for (const state of ['pending', 'sending', 'failed', 'unknown']) {
      await expect(
        db
          .updateTable('effects')
          .set({ state, lease_until: state === 'sending' ? 1 : null })
          .where('tenant_id', '=', tenant)
          .where('key', '=', 'done')
          .execute(),
      ).rejects.toThrow();
    }
    await expect(
      db.deleteFrom('effects').where('tenant_id', '=', tenant).execute(),
    ).rejects.toThrow();
    await expect(
      db
        .updateTable('effects')
        .set({ payload_hash: 'x' })
        .where('tenant_id', '=', tenant)
        .execute(),
    ).rejects.toThrow();
    const row = {
      ...(await db
        .selectFrom('effects')
        .selectAll()
        .where('tenant_id', '=', tenant)
        .executeTakeFirstOrThrow()),
    };
    await db
      .insertInto('effects')
      .values({
        ...row,
        id: '00000000-0000-7000-8000-000000000001',
        key: 'raw',
        state: 'pending',
        attempt_token: null,
        sent_at: null,
      })
      .execute();
    const raw = (set: { state: string; lease_until?: number | null; attempt_token?: string }) =>
      db
        .updateTable('effects')
        .set(set)
        .where('tenant_id', '=', tenant)
        .where('key', '=', 'raw')
        .execute();
    // pending → sent skips sending; pending → unknown likewise; sending needs a lease.
    await expect(raw({ state: 'sent' })).rejects.toThrow();
    await expect(raw({ state: 'unknown', attempt_token: 't' })).rejects.toThrow();
    await expect(raw({ state: 'sending', attempt_token: 't' })).rejects.toThrow();
    await raw({ state: 'sending', attempt_token: 't', lease_until: 1 });
    expect((await d.effects.get('raw', { tenant })).state).toBe('sending');
    expect((await d.effects.get('done', { tenant })).state).toBe('sent');
  });
  // Last in the file: pruneOnce purges across tenants, so earlier tests' final rows may go too.
  it('prunes final effects past retention and keeps unknown ones; only the purge can delete', async () => {
    const DAY = 86_400_000;
    const clock = new ManualClock(Date.now());
    const d = suite.make({
      clock,
      pruneIntervalMs: 0,
      retention: { failedMs: DAY, effectsMs: 2 * DAY },
    });
    const tenant = unique('t');
    await d.effects.run(null, { key: 'old-sent', payload: {}, tenant }, provider().fn);
    await expect(
      d.effects.run(null, { key: 'old-failed', payload: {}, tenant }, async () => {
        throw new PermanentJobError('550 rejected');
      }),
    ).rejects.toThrow('550');
    const db = await d.internals.systemDb();
    const sent = await db
      .selectFrom('effects')
      .selectAll()
      .where('tenant_id', '=', tenant)
      .where('key', '=', 'old-sent')
      .executeTakeFirstOrThrow();
    // An unknown effect as old as the others (written directly: the state needs a lost call).
    await db
      .insertInto('effects')
      .values({
        ...sent,
        id: '00000000-0000-7000-8000-0000000000aa',
        key: 'old-unknown',
        state: 'unknown',
      })
      .execute();
    clock.advance(3 * DAY);
    await d.effects.run(null, { key: 'new-sent', payload: {}, tenant }, provider().fn);
    await d.pruneOnce();
    const keys = (await d.effects.list({}, { tenant })).items.map((e) => e.key).sort();
    expect(keys).toEqual(['new-sent', 'old-unknown']);
    // Outside the purge the ledger still refuses every delete, of final rows too.
    await expect(
      db
        .deleteFrom('effects')
        .where('tenant_id', '=', tenant)
        .where('key', '=', 'new-sent')
        .execute(),
    ).rejects.toThrow();
    // Even inside a purge's guard, an unknown effect cannot be deleted.
    await expect(
      db.transaction().execute(async (trx) => {
        await trx.insertInto('effects_purge_guard').values({ txid: 'test' }).execute();
        await trx
          .deleteFrom('effects')
          .where('tenant_id', '=', tenant)
          .where('key', '=', 'old-unknown')
          .execute();
      }),
    ).rejects.toThrow();
    // A retention shorter than the failed-job one would let a DLQ replay repeat an effect.
    expect(() => suite.make({ retention: { failedMs: 2 * DAY, effectsMs: DAY } })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }) as Error,
    );
  });
});
