// Effect ledger rows on both stores (SPEC O-8). Every state change is a guarded UPDATE (the
// expected state and, for a provider call, its attempt token in the WHERE clause), and the
// database's trigger refuses any transition O-8 does not name, whoever writes.
import { randomBytes } from 'node:crypto';
import type { Transaction } from 'kysely';
import { appendAuditEvents, prepareAuditEvent, principalFromActor } from '../audit/index.js';
import type { JsonValue } from '../audit/content.js';
import type { Store } from '../store/index.js';
import type { DocketDatabase, EffectsTable } from '../store/schema.js';
import type { Effect, EffectError, EffectState } from './types.js';

type Trx = Transaction<DocketDatabase>;

/** The row as the API shows it. */
export function rowToEffect(r: EffectsTable): Effect {
  const json = <T>(v: unknown): T | null =>
    v === null || v === undefined ? null : ((typeof v === 'string' ? JSON.parse(v) : v) as T);
  return {
    id: r.id,
    tenantId: r.tenant_id,
    key: r.key,
    type: r.type,
    payloadHash: r.payload_hash,
    state: r.state as EffectState,
    idempotentProvider: Number(r.idempotent_provider) === 1,
    attempts: Number(r.attempts),
    leaseUntil: r.lease_until === null ? null : Number(r.lease_until),
    providerMessageId: r.provider_message_id,
    result: json<JsonValue>(r.result),
    lastError: json<EffectError>(r.last_error),
    resolvedBy: r.resolved_by,
    resolutionNote: r.resolution_note,
    traceId: r.trace_id,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    sentAt: r.sent_at === null ? null : Number(r.sent_at),
  };
}

/** A new effect's identity (the row is created `pending`). */
export interface NewEffect {
  id: string;
  tenant: string;
  key: string;
  type: string;
  payloadHash: string;
  idempotentProvider: boolean;
  traceId: string;
  now: number;
}

const EXPIRED_MESSAGE =
  'the provider call ran out of its lease before its answer was recorded (the worker died or ' +
  'the call hung): the effect may or may not have happened';

/** Effect reads and guarded writes. */
export class EffectStore {
  constructor(private readonly store: Store) {}

  /**
   * Creates the effect as `pending` unless its key exists, then reads it locked (PostgreSQL
   * `FOR UPDATE`; SQLite's insert already holds the one write lock), so the caller's next
   * decision and write cannot interleave with another process's.
   */
  async insertOrLock(trx: Trx, e: NewEffect): Promise<Effect> {
    await trx
      .insertInto('effects')
      .values({
        id: e.id,
        tenant_id: e.tenant,
        key: e.key,
        type: e.type,
        payload_hash: e.payloadHash,
        state: 'pending',
        idempotent_provider: e.idempotentProvider ? 1 : 0,
        attempts: 0,
        attempt_token: null,
        lease_until: null,
        provider_message_id: null,
        result: null,
        last_error: null,
        resolved_by: null,
        resolution_note: null,
        trace_id: e.traceId,
        created_at: e.now,
        updated_at: e.now,
        sent_at: null,
      })
      .onConflict((oc) => oc.columns(['tenant_id', 'key']).doNothing())
      .execute();
    let q = trx
      .selectFrom('effects')
      .selectAll()
      .where('tenant_id', '=', e.tenant)
      .where('key', '=', e.key);
    if (this.store.capabilities.supportsSkipLocked) q = q.forUpdate();
    return rowToEffect(await q.executeTakeFirstOrThrow());
  }

  /** `pending | failed | unknown | sending (expired) → sending` under a new attempt token. */
  async startCall(
    trx: Trx,
    p: {
      effect: Effect;
      token: string;
      leaseUntil: number;
      idempotentProvider: boolean;
      now: number;
    },
  ): Promise<Effect | null> {
    const row = await trx
      .updateTable('effects')
      .set((eb) => ({
        state: 'sending',
        attempts: eb('attempts', '+', 1),
        attempt_token: p.token,
        lease_until: p.leaseUntil,
        idempotent_provider: p.idempotentProvider ? 1 : 0,
        updated_at: p.now,
      }))
      .where('tenant_id', '=', p.effect.tenantId)
      .where('key', '=', p.effect.key)
      .where('state', '=', p.effect.state)
      .where('attempts', '=', p.effect.attempts)
      .returningAll()
      .executeTakeFirst();
    return row ? rowToEffect(row) : null;
  }

  /**
   * `sending → unknown` for a call whose lease expired (or `→ failed`, retryable, when its
   * provider is idempotent), audited as `effect.unknown` in the same transaction.
   */
  async expire(
    trx: Trx,
    p: {
      tenant: string;
      key: string;
      attempts: number;
      /** Whether the provider is idempotent; default the row's declaration. */
      idempotent?: boolean;
      now: number;
      actor: string;
    },
  ): Promise<Effect | null> {
    let idempotent = p.idempotent;
    if (idempotent === undefined) {
      const cur = await trx
        .selectFrom('effects')
        .select(['idempotent_provider'])
        .where('tenant_id', '=', p.tenant)
        .where('key', '=', p.key)
        .executeTakeFirst();
      if (!cur) return null;
      idempotent = Number(cur.idempotent_provider) === 1;
    }
    const error: EffectError = {
      message: EXPIRED_MESSAGE,
      name: 'LeaseExpired',
      retryable: idempotent,
      at: p.now,
    };
    const row = await trx
      .updateTable('effects')
      .set({
        state: idempotent ? 'failed' : 'unknown',
        lease_until: null,
        last_error: JSON.stringify(error),
        updated_at: p.now,
      })
      .where('tenant_id', '=', p.tenant)
      .where('key', '=', p.key)
      .where('state', '=', 'sending')
      .where('attempts', '=', p.attempts)
      .where('lease_until', '<', p.now)
      .returningAll()
      .executeTakeFirst();
    if (!row) return null;
    const effect = rowToEffect(row);
    if (effect.state === 'unknown') {
      await this.audit(trx, effect, 'effect.unknown', p.actor, p.now, {
        attempts: effect.attempts,
      });
    }
    return effect;
  }

  /**
   * Records the provider's acceptance: `sending | unknown → sent`, only while the row carries
   * this call's token (a late answer heals an `unknown` it caused; it never overwrites a newer
   * call's outcome or an operator's resolution).
   */
  async recordSent(p: {
    tenant: string;
    key: string;
    token: string;
    providerMessageId: string | null;
    result: string | null;
    now: number;
  }): Promise<Effect | null> {
    return this.store.withTenantTransaction(p.tenant, async (trx) => {
      const row = await trx
        .updateTable('effects')
        .set({
          state: 'sent',
          lease_until: null,
          provider_message_id: p.providerMessageId,
          result: p.result,
          sent_at: p.now,
          updated_at: p.now,
        })
        .where('tenant_id', '=', p.tenant)
        .where('key', '=', p.key)
        .where('attempt_token', '=', p.token)
        .where('state', 'in', ['sending', 'unknown'])
        .returningAll()
        .executeTakeFirst();
      return row ? rowToEffect(row) : null;
    });
  }

  /**
   * Records a failure (`sending | unknown → failed`) or an ambiguous answer (`sending →
   * unknown`), under this call's token.
   */
  async recordFailed(p: {
    tenant: string;
    key: string;
    token: string;
    state: 'failed' | 'unknown';
    error: EffectError;
    now: number;
  }): Promise<Effect | null> {
    return this.store.withTenantTransaction(p.tenant, async (trx) => {
      const row = await trx
        .updateTable('effects')
        .set({
          state: p.state,
          lease_until: null,
          last_error: JSON.stringify(p.error),
          updated_at: p.now,
        })
        .where('tenant_id', '=', p.tenant)
        .where('key', '=', p.key)
        .where('attempt_token', '=', p.token)
        // A definite late failure also settles an `unknown` this call left; an ambiguous one
        // has nothing to add to it.
        .where('state', 'in', p.state === 'failed' ? ['sending', 'unknown'] : ['sending'])
        .returningAll()
        .executeTakeFirst();
      if (!row) return null;
      const effect = rowToEffect(row);
      if (effect.state === 'unknown') {
        await this.audit(trx, effect, 'effect.unknown', 'system:effects', p.now, {
          attempts: effect.attempts,
          error: p.error.message.slice(0, 500),
        });
      }
      return effect;
    });
  }

  /**
   * An operator's verdict on an `unknown` effect (or a `sending` one whose lease expired):
   * `→ sent | failed`, audited as `effect.resolved` in the same transaction. Null when the
   * effect is not in a resolvable state.
   */
  async resolve(p: {
    tenant: string;
    key: string;
    outcome: 'sent' | 'failed';
    providerMessageId?: string;
    note?: string;
    actor: string;
    traceId: string;
    now: number;
  }): Promise<Effect | null> {
    return this.store.withTenantTransaction(p.tenant, async (trx) => {
      const error: EffectError = {
        message: `resolved as failed by ${p.actor}${p.note ? `: ${p.note}` : ''}`,
        name: 'ResolvedFailed',
        retryable: true,
        at: p.now,
      };
      const row = await trx
        .updateTable('effects')
        .set((eb) => ({
          state: p.outcome,
          lease_until: null,
          provider_message_id:
            p.providerMessageId === undefined ? eb.ref('provider_message_id') : p.providerMessageId,
          sent_at: p.outcome === 'sent' ? p.now : null,
          last_error: p.outcome === 'failed' ? JSON.stringify(error) : eb.ref('last_error'),
          resolved_by: p.actor,
          resolution_note: p.note ?? null,
          updated_at: p.now,
        }))
        .where('tenant_id', '=', p.tenant)
        .where('key', '=', p.key)
        .where((eb) =>
          eb.or([
            eb('state', '=', 'unknown'),
            eb.and([eb('state', '=', 'sending'), eb('lease_until', '<', p.now)]),
          ]),
        )
        .returningAll()
        .executeTakeFirst();
      if (!row) return null;
      const effect = rowToEffect(row);
      const data: Record<string, JsonValue> = { outcome: p.outcome };
      if (p.note) data.note = p.note.slice(0, 500);
      if (p.providerMessageId) data.providerMessageId = p.providerMessageId;
      await this.audit(trx, effect, 'effect.resolved', p.actor, p.now, data, p.traceId);
      return effect;
    });
  }

  /** Expired `sending` effects of every tenant, oldest lease first (the sweep's work). */
  async expiredCalls(p: { now: number; limit: number }) {
    return this.store.withSystemStatement((db) =>
      db
        .selectFrom('effects')
        .select(['tenant_id', 'key', 'attempts'])
        .where('state', '=', 'sending')
        .where('lease_until', '<', p.now)
        .orderBy('lease_until')
        .limit(p.limit)
        .execute(),
    );
  }

  /** Moves one expired call on (see `expire`) in a system transaction. */
  async expireAsSystem(p: { tenant: string; key: string; attempts: number; now: number }) {
    return this.store.withSystemTransaction((trx) =>
      this.expire(trx, { ...p, actor: 'system:effects' }),
    );
  }

  /**
   * Removes up to `limit` final (`sent`, `failed`) effects last changed before `before`, across
   * tenants (SPEC O-8 retention; migration 017). The guard row lets the ledger's trigger accept
   * these deletes and no others; it never commits. Returns how many were removed.
   */
  async purge(p: { before: number; limit: number }): Promise<number> {
    return this.store.withSystemTransaction(async (trx) => {
      const txid = randomBytes(12).toString('hex');
      await trx.insertInto('effects_purge_guard').values({ txid }).execute();
      const due = trx
        .selectFrom('effects')
        .select('id')
        .where('state', 'in', ['sent', 'failed'])
        .where('updated_at', '<', p.before)
        .orderBy('updated_at')
        .limit(p.limit);
      const r = await trx.deleteFrom('effects').where('id', 'in', due).executeTakeFirst();
      await trx.deleteFrom('effects_purge_guard').where('txid', '=', txid).execute();
      return Number(r.numDeletedRows);
    });
  }

  /** One effect of a tenant, or null. */
  async get(tenant: string, key: string): Promise<Effect | null> {
    return this.store.withTenantTransaction(tenant, async (trx) => {
      const row = await trx
        .selectFrom('effects')
        .selectAll()
        .where('tenant_id', '=', tenant)
        .where('key', '=', key)
        .executeTakeFirst();
      return row ? rowToEffect(row) : null;
    });
  }

  /** A page of a tenant's effects, newest first, optionally of some states. */
  async list(p: {
    tenant: string;
    states?: readonly EffectState[];
    before?: string;
    limit: number;
  }): Promise<Effect[]> {
    return this.store.withTenantTransaction(p.tenant, async (trx) => {
      let q = trx.selectFrom('effects').selectAll().where('tenant_id', '=', p.tenant);
      if (p.states?.length) q = q.where('state', 'in', [...p.states]);
      if (p.before) q = q.where('id', '<', p.before);
      const rows = await q.orderBy('id', 'desc').limit(p.limit).execute();
      return rows.map(rowToEffect);
    });
  }

  /** Counts of a tenant's effects by state. */
  async counts(tenant: string): Promise<Record<string, number>> {
    return this.store.withTenantTransaction(tenant, async (trx) => {
      const rows = await trx
        .selectFrom('effects')
        .select(['state', (eb) => eb.fn.countAll<number>().as('n')])
        .where('tenant_id', '=', tenant)
        .groupBy('state')
        .execute();
      return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
    });
  }

  private async audit(
    trx: Trx,
    effect: Effect,
    action: string,
    actor: string,
    now: number,
    data: Record<string, JsonValue>,
    traceId: string = effect.traceId,
  ): Promise<void> {
    const prepared = prepareAuditEvent({
      tenant: effect.tenantId,
      traceId,
      createdAt: now,
      action,
      resource: { type: 'effect', id: effect.key, name: effect.type },
      actor: principalFromActor(actor),
      metadata: Object.keys(data).length ? data : undefined,
    });
    await appendAuditEvents(trx, [prepared], now);
  }
}
