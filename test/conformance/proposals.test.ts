// Proposals, confirm-before-apply (SPEC S-7), on every store: a change set applied once per
// proposal in one transaction with the application's own writes, repeated requests answered
// from the stored outcome, conflicts, expiry (ManualClock), staleness, nothing half-applied,
// one winner among concurrent applies, and a database that refuses illegal transitions.
import { sql, type Kysely, type Transaction } from 'kysely';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  ManualClock,
  type Docket,
  type JsonValue,
  type Proposal,
  type ProposalCandidate,
  type ProposalKind,
} from '../../src/index.js';
import type { DocketDatabase } from '../../src/store/index.js';
import { BACKENDS, useDocketSuite, waitFor, type TestStore } from '../helpers/backends.js';

/** The application's own table the proposals change. */
interface DocsDB {
  test_docs: { id: string; tenant_id: string; version: number; title: string };
}

const TENANT = 'acme';
// What each store's triggers and constraints say (PostgreSQL wording | SQLite wording).
const TRANSITION = /cannot go from|cannot make this state transition/;
const FINAL = /is applied and final|cannot make this state transition/;
const CONTENT = /keeps the change set/;
const CHECK = /check constraint/i;
const HOUR = 3_600_000;

async function createDocsTable(ts: TestStore, docket: Docket): Promise<void> {
  const ddl = `create table test_docs (id text primary key, tenant_id text not null,
    version integer not null, title text not null)`;
  if (ts.url) {
    const c = new pg.Client({ connectionString: ts.url });
    await c.connect();
    await c.query(ddl);
    await c.query('grant select, insert, update on test_docs to docket_app, docket_system');
    await c.end();
  } else {
    await sql.raw(ddl).execute(await docket.internals.systemDb());
  }
}

/** A kind renaming a document; `calls` counts apply callbacks, `hooks` lets a test intervene. */
function renameKind(
  calls: string[],
  hooks: { beforeReturn?: () => Promise<void>; failAfterWrite?: boolean } = {},
): ProposalKind<DocsDB> {
  return {
    async currentVersion(tx, p) {
      const row = await tx
        .selectFrom('test_docs')
        .select('version')
        .where('id', '=', p.target)
        .executeTakeFirst();
      return row ? Number(row.version) : null;
    },
    async apply(tx, p, candidate, ctx) {
      calls.push(ctx.idempotencyKey);
      const title = String(
        ((candidate?.changes ?? p.changes) as { title?: string } | null)?.title ?? '?',
      );
      await tx
        .updateTable('test_docs')
        .set((eb) => ({ title, version: eb('version', '+', 1) }))
        .where('id', '=', p.target)
        .execute();
      if (hooks.failAfterWrite) throw new Error('the application failed after its write');
      await hooks.beforeReturn?.();
      return { title, request: ctx.request };
    },
    validate(changes) {
      if (Array.isArray(changes)) throw new Error('a rename is an object');
    },
  };
}

describe.each(BACKENDS)('proposals on %s', (backend) => {
  const suite = useDocketSuite(backend, { pruneIntervalMs: 0 });
  let n = 0;
  let tableReady = false;

  /** A Docket with the rename kind and a fresh document (version 1). */
  async function setup(o: { clock?: ManualClock; calls?: string[] } = {}) {
    const clock = o.clock ?? new ManualClock(Date.now());
    const calls = o.calls ?? [];
    const d = suite.make({ clock });
    d.proposals.register<DocsDB>('doc.rename', renameKind(calls));
    if (!tableReady) {
      await createDocsTable(suite.ts, d);
      tableReady = true;
    }
    const doc = `doc-${++n}`;
    await d.withTransaction<void, DocsDB>(TENANT, (tx) =>
      tx
        .insertInto('test_docs')
        .values({ id: doc, tenant_id: TENANT, version: 1, title: 'draft' })
        .execute()
        .then(() => undefined),
    );
    return { d, clock, calls, doc };
  }

  async function docOf(d: Docket, id: string) {
    const db = (await d.internals.systemDb()) as unknown as Kysely<DocsDB>;
    const row = await db
      .selectFrom('test_docs')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row && { title: row.title, version: Number(row.version) };
  }

  const eventsOf = (d: Docket, id: string, action: string) =>
    d.audit.list({ resourceId: id, action }, { tenant: TENANT });

  const propose = (
    d: Docket,
    clock: ManualClock,
    doc: string,
    extra: {
      kind?: string;
      title?: string;
      candidates?: ProposalCandidate[];
      ttlMs?: number;
      baseVersion?: number;
    } = {},
  ) =>
    d.proposals.create(
      {
        kind: extra.kind ?? 'doc.rename',
        target: doc,
        changes: { title: extra.title ?? 'final' },
        candidates: extra.candidates,
        expiresAt: clock.now() + (extra.ttlMs ?? HOUR),
        baseVersion: extra.baseVersion,
      },
      { tenant: TENANT, actor: 'user:alice' },
    );

  it('creates an open proposal whose base version defaults to the target’s current one', async () => {
    const { d, clock, doc } = await setup();
    const p = await propose(d, clock, doc);
    expect(p).toMatchObject({
      tenantId: TENANT,
      kind: 'doc.rename',
      target: doc,
      changes: { title: 'final' },
      candidates: null,
      baseVersion: 1,
      state: 'open',
      expiresAt: clock.now() + HOUR,
      createdBy: 'user:alice',
      decidedAt: null,
      appliedKey: null,
    });
    expect(await d.proposals.get(p.id, { tenant: TENANT })).toEqual(p);
    const events = await d.audit.list({ resourceId: p.id }, { tenant: TENANT });
    expect(events.items.map((e) => e.action)).toEqual(['proposal.created']);
  });

  it('refuses bad input with stable codes and stores nothing', async () => {
    const { d, clock, doc } = await setup();
    const base = { kind: 'doc.rename', target: doc, changes: {}, expiresAt: clock.now() + HOUR };
    const o = { tenant: TENANT };
    const cases: Array<[string, Record<string, unknown>]> = [
      ['PROPOSAL_KIND_UNKNOWN', { kind: 'doc.nope' }],
      ['VALIDATION_FAILED', { kind: '1bad' }],
      ['VALIDATION_FAILED', { target: '' }],
      ['VALIDATION_FAILED', { changes: 'rename it' }],
      ['VALIDATION_FAILED', { changes: ['a rename is an object'] }],
      ['VALIDATION_FAILED', { expiresAt: clock.now() }],
      ['VALIDATION_FAILED', { expiresAt: clock.now() + 400 * 24 * HOUR }],
      ['VALIDATION_FAILED', { candidates: [{ id: 'a' }, { id: 'a' }] }],
      ['VALIDATION_FAILED', { candidates: [] }],
      ['VALIDATION_FAILED', { baseVersion: { v: 1 } }],
      ['PAYLOAD_TOO_LARGE', { changes: { title: 'x'.repeat(300_000) } }],
      ['VALIDATION_FAILED', { target: 'doc-gone' }],
    ];
    for (const [code, override] of cases) {
      await expect(
        d.proposals.create({ ...base, ...override } as never, o),
        JSON.stringify(override).slice(0, 80),
      ).rejects.toMatchObject({ code });
    }
    const page = await d.proposals.list({ target: doc }, o);
    expect(page.items).toEqual([]);
  });

  it('the same key and request return the stored outcome without a second apply call', async () => {
    const { d, clock, calls, doc } = await setup();
    const p = await propose(d, clock, doc);
    const request = { confirmedBy: 'alice', note: { a: 1, b: 2 } };
    const first = await d.proposals.apply(
      p.id,
      { idempotencyKey: 'k-1', request },
      { tenant: TENANT, actor: 'user:alice' },
    );
    expect(first).toMatchObject({
      replayed: false,
      result: { title: 'final', request },
      proposal: { state: 'applied', appliedKey: 'k-1', decidedBy: 'user:alice' },
    });
    // Key order does not change the request's canonical hash.
    const again = await d.proposals.apply(
      p.id,
      { idempotencyKey: 'k-1', request: { note: { b: 2, a: 1 }, confirmedBy: 'alice' } },
      { tenant: TENANT },
    );
    expect(again).toMatchObject({ replayed: true, result: first.result, candidateId: null });
    expect(again.proposal.state).toBe('applied');
    expect(calls).toEqual(['k-1']);
    expect(await docOf(d, doc)).toEqual({ title: 'final', version: 2 });
    const applied = await eventsOf(d, p.id, 'proposal.applied');
    expect(applied.items).toHaveLength(1);
  });

  it('the same key with a different request is IDEMPOTENCY_CONFLICT; a new key is PROPOSAL_NOT_OPEN', async () => {
    const { d, clock, calls, doc } = await setup();
    const p = await propose(d, clock, doc);
    const o = { tenant: TENANT };
    await d.proposals.apply(p.id, { idempotencyKey: 'k', request: { n: 1 } }, o);
    await expect(
      d.proposals.apply(p.id, { idempotencyKey: 'k', request: { n: 2 } }, o),
    ).rejects.toMatchObject({ code: 'IDEMPOTENCY_CONFLICT', status: 409 });
    await expect(
      d.proposals.apply(p.id, { idempotencyKey: 'other', request: { n: 1 } }, o),
    ).rejects.toMatchObject({ code: 'PROPOSAL_NOT_OPEN', details: { state: 'applied' } });
    // The refusal is the stored outcome of that key too.
    await expect(
      d.proposals.apply(p.id, { idempotencyKey: 'other', request: { n: 1 } }, o),
    ).rejects.toMatchObject({ code: 'PROPOSAL_NOT_OPEN', details: { replayed: true } });
    expect(calls).toEqual(['k']);
    expect(await docOf(d, doc)).toEqual({ title: 'final', version: 2 });
  });

  it('an expired proposal is refused (and becomes expired) without calling apply', async () => {
    const { d, clock, calls, doc } = await setup();
    const p = await propose(d, clock, doc, { ttlMs: 60_000 });
    clock.advance(60_000);
    await expect(
      d.proposals.apply(p.id, { idempotencyKey: 'late' }, { tenant: TENANT }),
    ).rejects.toMatchObject({ code: 'PROPOSAL_EXPIRED', status: 409 });
    const after = await d.proposals.get(p.id, { tenant: TENANT });
    expect(after).toMatchObject({ state: 'expired', decidedBy: 'system:proposals' });
    await expect(
      d.proposals.apply(p.id, { idempotencyKey: 'late' }, { tenant: TENANT }),
    ).rejects.toMatchObject({ code: 'PROPOSAL_EXPIRED', details: { replayed: true } });
    await expect(d.proposals.reject(p.id, {}, { tenant: TENANT })).rejects.toMatchObject({
      code: 'PROPOSAL_NOT_OPEN',
    });
    expect(calls).toEqual([]);
    expect(await docOf(d, doc)).toEqual({ title: 'draft', version: 1 });
  });

  it('a proposal one millisecond before its expiry still applies', async () => {
    const { d, clock, doc } = await setup();
    const p = await propose(d, clock, doc, { ttlMs: 60_000 });
    clock.advance(59_999);
    const out = await d.proposals.apply(p.id, { idempotencyKey: 'k' }, { tenant: TENANT });
    expect(out.proposal.state).toBe('applied');
  });

  it('a proposal whose target moved past its base version is refused as stale', async () => {
    const { d, clock, calls, doc } = await setup();
    const p = await propose(d, clock, doc);
    await d.withTransaction<void, DocsDB>(TENANT, async (tx) => {
      await tx
        .updateTable('test_docs')
        .set({ version: 2, title: 'edited' })
        .where('id', '=', doc)
        .execute();
    });
    await expect(
      d.proposals.apply(p.id, { idempotencyKey: 'k' }, { tenant: TENANT }),
    ).rejects.toMatchObject({ code: 'PROPOSAL_STALE', status: 409 });
    expect(await d.proposals.get(p.id, { tenant: TENANT })).toMatchObject({
      state: 'stale',
      reason: 'the target is now at version 2',
    });
    expect(calls).toEqual([]);
    expect(await docOf(d, doc)).toEqual({ title: 'edited', version: 2 });
    const refused = await eventsOf(d, p.id, 'proposal.apply_refused');
    expect(refused.items.map((e) => [e.outcome, e.metadata])).toEqual([
      ['failure', expect.objectContaining({ code: 'PROPOSAL_STALE' })],
    ]);
  });

  it('nothing is half-applied: a callback that throws after its write leaves no trace', async () => {
    const { d, clock, doc } = await setup();
    const calls: string[] = [];
    const hooks = { failAfterWrite: true };
    d.proposals.register<DocsDB>('doc.flaky', renameKind(calls, hooks));
    const p = await propose(d, clock, doc, { kind: 'doc.flaky' });
    await expect(
      d.proposals.apply(p.id, { idempotencyKey: 'k' }, { tenant: TENANT }),
    ).rejects.toThrow('the application failed after its write');
    expect(await docOf(d, doc)).toEqual({ title: 'draft', version: 1 });
    expect(await d.proposals.get(p.id, { tenant: TENANT })).toMatchObject({
      state: 'open',
      appliedKey: null,
    });
    const applied = await eventsOf(d, p.id, 'proposal.applied');
    expect(applied.items).toEqual([]);
    // No outcome was stored for the key: the same request can be retried once the cause is fixed.
    hooks.failAfterWrite = false;
    const out = await d.proposals.apply(p.id, { idempotencyKey: 'k' }, { tenant: TENANT });
    expect(out).toMatchObject({ replayed: false, proposal: { state: 'applied' } });
    expect(calls).toEqual(['k', 'k']);
    expect(await docOf(d, doc)).toEqual({ title: 'final', version: 2 });
  });

  it('concurrent applies of one proposal from two instances: exactly one wins', async () => {
    const clock = new ManualClock(Date.now());
    const calls: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const { d: a, doc } = await setup({ clock, calls: [] });
    const b = suite.make({ clock });
    // Both instances know the kind; the first apply to get in holds its transaction open.
    const gated = renameKind(calls, {
      beforeReturn: async () => {
        entered();
        await gate;
      },
    });
    a.proposals.register<DocsDB>('doc.gated', gated);
    b.proposals.register<DocsDB>('doc.gated', gated);
    const p = await propose(a, clock, doc, { kind: 'doc.gated' });
    const first = a.proposals.apply(p.id, { idempotencyKey: 'from-a' }, { tenant: TENANT });
    await inside;
    const second = b.proposals.apply(p.id, { idempotencyKey: 'from-b' }, { tenant: TENANT });
    const settled = Promise.allSettled([second]);
    if (suite.ts.url) {
      // PostgreSQL: b's transaction is really waiting for a's row lock before a commits.
      const admin = new pg.Client({ connectionString: suite.ts.url });
      await admin.connect();
      try {
        await waitFor(
          async () =>
            (
              await admin.query(
                `select 1 from pg_stat_activity
                  where datname = current_database() and wait_event_type = 'Lock'`,
              )
            ).rowCount,
          { what: 'the second apply to wait for the lock' },
        );
      } finally {
        await admin.end();
      }
    }
    release();
    await expect(first).resolves.toMatchObject({
      proposal: { state: 'applied', appliedKey: 'from-a' },
    });
    const [r] = await settled;
    expect(r).toMatchObject({ status: 'rejected', reason: { code: 'PROPOSAL_NOT_OPEN' } });
    expect(calls).toEqual(['from-a']);
    expect(await docOf(a, doc)).toEqual({ title: 'final', version: 2 });

    // A burst of different keys from both instances at once: one applies, the rest are refused.
    const { doc: doc2 } = await setup({ clock });
    const q = await propose(a, clock, doc2, { kind: 'doc.rename', title: 'burst' });
    b.proposals.register<DocsDB>('doc.rename', renameKind([]));
    const burst = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) =>
        (i % 2 ? a : b).proposals.apply(q.id, { idempotencyKey: `burst-${i}` }, { tenant: TENANT }),
      ),
    );
    expect(burst.filter((s) => s.status === 'fulfilled')).toHaveLength(1);
    for (const s of burst.filter((x) => x.status === 'rejected')) {
      expect((s as PromiseRejectedResult).reason).toMatchObject({ code: 'PROPOSAL_NOT_OPEN' });
    }
    expect(await docOf(a, doc2)).toEqual({ title: 'burst', version: 2 });
  });

  it('candidates: the chosen one reaches the callback; a missing or unknown one is refused', async () => {
    const { d, clock, doc } = await setup();
    const candidates = [
      { id: 'morning', changes: { title: 'at 9' }, summary: '9:00' },
      { id: 'evening', changes: { title: 'at 18' } },
    ];
    const p = await propose(d, clock, doc, { candidates });
    expect(p.candidates).toEqual([
      { id: 'morning', changes: { title: 'at 9' }, summary: '9:00' },
      { id: 'evening', changes: { title: 'at 18' } },
    ]);
    const o = { tenant: TENANT };
    await expect(d.proposals.apply(p.id, { idempotencyKey: 'k' }, o)).rejects.toMatchObject({
      code: 'PROPOSAL_NO_CANDIDATE',
      status: 400,
    });
    await expect(
      d.proposals.apply(p.id, { idempotencyKey: 'k', candidateId: 'noon' }, o),
    ).rejects.toMatchObject({ code: 'PROPOSAL_NO_CANDIDATE' });
    const out = await d.proposals.apply(p.id, { idempotencyKey: 'k', candidateId: 'evening' }, o);
    expect(out).toMatchObject({
      candidateId: 'evening',
      proposal: { appliedCandidate: 'evening' },
    });
    expect(await docOf(d, doc)).toEqual({ title: 'at 18', version: 2 });
    // Choosing another candidate under the same key is a different request.
    await expect(
      d.proposals.apply(p.id, { idempotencyKey: 'k', candidateId: 'morning' }, o),
    ).rejects.toMatchObject({ code: 'IDEMPOTENCY_CONFLICT' });
  });

  it('reject closes an open proposal (audited); apply afterwards is PROPOSAL_NOT_OPEN', async () => {
    const { d, clock, calls, doc } = await setup();
    const p = await propose(d, clock, doc);
    const r = await d.proposals.reject(
      p.id,
      { reason: 'not what I asked for' },
      { tenant: TENANT, actor: 'user:bob' },
    );
    expect(r).toMatchObject({
      state: 'rejected',
      reason: 'not what I asked for',
      decidedBy: 'user:bob',
    });
    await expect(d.proposals.reject(p.id, {}, { tenant: TENANT })).rejects.toMatchObject({
      code: 'PROPOSAL_NOT_OPEN',
    });
    await expect(
      d.proposals.apply(p.id, { idempotencyKey: 'k' }, { tenant: TENANT }),
    ).rejects.toMatchObject({ code: 'PROPOSAL_NOT_OPEN' });
    expect(calls).toEqual([]);
    const events = await eventsOf(d, p.id, 'proposal.rejected');
    expect(events.items[0]).toMatchObject({ actor: { type: 'user', id: 'bob' } });
  });

  it('unknown ids, other tenants’ proposals and malformed ids are PROPOSAL_NOT_FOUND', async () => {
    const { d, clock, doc } = await setup();
    const p = await propose(d, clock, doc);
    for (const id of [p.id, '0190a0a0-0000-7000-8000-000000000000', 'not-a-uuid']) {
      const tenant = id === p.id ? 'globex' : TENANT;
      await expect(d.proposals.get(id, { tenant })).rejects.toMatchObject({
        code: 'PROPOSAL_NOT_FOUND',
        status: 404,
      });
      await expect(
        d.proposals.apply(id, { idempotencyKey: 'k' }, { tenant }),
      ).rejects.toMatchObject({ code: 'PROPOSAL_NOT_FOUND' });
      await expect(d.proposals.reject(id, {}, { tenant })).rejects.toMatchObject({
        code: 'PROPOSAL_NOT_FOUND',
      });
    }
    expect((await d.proposals.list({}, { tenant: 'globex' })).items).toEqual([]);
    await expect(
      d.proposals.apply(p.id, { idempotencyKey: '' }, { tenant: TENANT }),
    ).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
  });

  it('lists newest first with state, kind and target filters and keyset pages', async () => {
    const { d, clock, doc } = await setup();
    const made: Proposal[] = [];
    for (let i = 0; i < 5; i++) made.push(await propose(d, clock, doc));
    await d.proposals.reject(made[1]!.id, {}, { tenant: TENANT });
    const o = { tenant: TENANT };
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await d.proposals.list({ target: doc, limit: 2, cursor }, o);
      expect(page.items.length).toBeLessThanOrEqual(2);
      ids.push(...page.items.map((x) => x.id));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(ids).toEqual(made.map((x) => x.id).reverse());
    const open = await d.proposals.list({ target: doc, state: ['open'] }, o);
    expect(open.items).toHaveLength(4);
    const rejected = await d.proposals.list(
      { target: doc, state: ['rejected'], kind: 'doc.rename' },
      o,
    );
    expect(rejected.items.map((x) => x.id)).toEqual([made[1]!.id]);
    await expect(d.proposals.list({ state: ['bogus' as never] }, o)).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
    });
    await expect(d.proposals.list({ cursor: 'nope' }, o)).rejects.toMatchObject({
      code: 'INVALID_CURSOR',
    });
  });

  it('expireOnce moves open proposals past their expiry to expired', async () => {
    const { d, clock, doc } = await setup();
    const soon = await propose(d, clock, doc, { ttlMs: 1000 });
    const later = await propose(d, clock, doc, { ttlMs: HOUR });
    clock.advance(1000);
    expect(await d.proposals.expireOnce()).toBeGreaterThanOrEqual(1);
    expect((await d.proposals.get(soon.id, { tenant: TENANT })).state).toBe('expired');
    expect((await d.proposals.get(later.id, { tenant: TENANT })).state).toBe('open');
  });

  it('the database refuses illegal transitions, content changes and rewritten outcomes', async () => {
    const { d, clock, doc } = await setup();
    const applied = await propose(d, clock, doc);
    await d.proposals.apply(applied.id, { idempotencyKey: 'k' }, { tenant: TENANT });
    const open = await propose(d, clock, doc, { baseVersion: 2 });
    const db = (await d.internals.systemDb()) as Kysely<DocketDatabase>;
    const update = (id: string, set: Record<string, unknown>) =>
      db.updateTable('proposals').set(set).where('id', '=', id).execute();
    const now = clock.now();
    await expect(update(applied.id, { state: 'open', decided_at: null })).rejects.toThrow(
      TRANSITION,
    );
    await expect(update(applied.id, { state: 'rejected' })).rejects.toThrow(TRANSITION);
    await expect(update(applied.id, { applied_key: 'someone-else' })).rejects.toThrow(FINAL);
    await expect(update(open.id, { changes: '{"title":"sneaky"}' })).rejects.toThrow(CONTENT);
    await expect(update(open.id, { expires_at: now + 10 * HOUR })).rejects.toThrow(CONTENT);
    await expect(update(open.id, { state: 'bogus', decided_at: now })).rejects.toThrow(TRANSITION);
    // An applied proposal names the key that applied it.
    await expect(update(open.id, { state: 'applied', decided_at: now })).rejects.toThrow(CHECK);
    await expect(
      db
        .updateTable('proposal_applies')
        .set({ result: '{"forged":true}' })
        .where('proposal_id', '=', applied.id)
        .execute(),
    ).rejects.toThrow(/never changed/);
    // A second winning outcome for the same proposal cannot be stored.
    await expect(
      db
        .insertInto('proposal_applies')
        .values({
          tenant_id: TENANT,
          proposal_id: applied.id,
          idempotency_key: 'second-winner',
          request_hash: 'x',
          candidate_id: null,
          outcome: 'applied',
          result: null,
          error_code: null,
          error_message: null,
          actor: 'library',
          trace_id: 'x',
          created_at: now,
        })
        .execute(),
    ).rejects.toThrow(/unique/i);
    // The legal move still works, and a final proposal keeps what it recorded.
    await update(open.id, { state: 'rejected', decided_at: now, decided_by: 'sql' });
    expect(await d.proposals.get(open.id, { tenant: TENANT })).toMatchObject({ state: 'rejected' });
    expect(await d.proposals.get(applied.id, { tenant: TENANT })).toMatchObject({
      state: 'applied',
      appliedKey: 'k',
    });
  });

  it('createTx creates a proposal inside the caller’s transaction (and not after a rollback)', async () => {
    const { d, clock, doc } = await setup();
    const p = await d.withTransaction(TENANT, (tx) =>
      d.proposals.createTx(tx, {
        kind: 'doc.rename',
        target: doc,
        changes: { title: 'in tx' },
        expiresAt: clock.now() + HOUR,
      }),
    );
    expect((await d.proposals.get(p.id, { tenant: TENANT })).baseVersion).toBe(1);
    let inside: Proposal | undefined;
    await expect(
      d.withTransaction(TENANT, async (tx: Transaction<DocketDatabase>) => {
        inside = await d.proposals.createTx(tx, {
          kind: 'doc.rename',
          target: doc,
          changes: { title: 'rolled back' },
          expiresAt: clock.now() + HOUR,
        });
        throw new Error('rollback');
      }),
    ).rejects.toThrow('rollback');
    await expect(d.proposals.get(inside!.id, { tenant: TENANT })).rejects.toMatchObject({
      code: 'PROPOSAL_NOT_FOUND',
    });
  });

  it('stores and replays a JSON result exactly', async () => {
    const { d, clock, doc } = await setup();
    const p = await propose(d, clock, doc);
    const request: JsonValue = { list: [3, 1, 2], nested: { z: null, a: 'ü' } };
    const out = await d.proposals.apply(p.id, { idempotencyKey: 'k', request }, { tenant: TENANT });
    const again = await d.proposals.apply(
      p.id,
      { idempotencyKey: 'k', request },
      { tenant: TENANT },
    );
    expect(again.result).toEqual(out.result);
    expect(again.replayed).toBe(true);
  });
});
