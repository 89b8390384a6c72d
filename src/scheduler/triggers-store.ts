// Due trigger rows (SPEC S-6, migration 013). Every state change is one guarded
// `UPDATE … WHERE state = 'pending'` whose affected-row count says whether it happened; the
// database's trigger refuses any other transition, whoever writes.
import { sql, type Kysely, type Transaction } from 'kysely';
import { appendAuditEvents, prepareAuditEvent, principalFromActor } from '../audit/index.js';
import type { JsonValue } from '../audit/index.js';
import type { Store } from '../store/index.js';
import type { DocketDatabase, DueTriggersTable } from '../store/schema.js';
import type { DueTrigger, TriggerState } from './triggers-types.js';

type Db = Kysely<DocketDatabase> | Transaction<DocketDatabase>;

/** A new trigger row. */
export interface NewTrigger {
  id: string;
  tenantId: string;
  type: string;
  target: string;
  payloadJson: string;
  fireAt: number;
  dedupeKey: string | null;
  traceId: string;
  jobId: string;
  now: number;
}

/** How a final transition is recorded. */
export type TriggerFinish =
  | { state: 'triggered'; resultJson: string | null }
  | { state: 'skipped'; reason: string }
  | { state: 'failed'; error: string };

function parseJson(text: string | null): JsonValue | null {
  if (text === null) return null;
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    return null;
  }
}

/** Converts a row to the domain type. */
export function rowToTrigger(r: DueTriggersTable): DueTrigger {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    type: r.type,
    target: r.target,
    payload: parseJson(r.payload) ?? {},
    fireAt: Number(r.fire_at),
    state: r.state as TriggerState,
    dedupeKey: r.dedupe_key,
    traceId: r.trace_id,
    jobId: r.job_id,
    attempts: r.attempts,
    result: parseJson(r.result),
    skipReason: r.skip_reason,
    error: r.error,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    finishedAt: r.finished_at === null ? null : Number(r.finished_at),
  };
}

/** Queries and guarded updates of due_triggers and due_trigger_keys. */
export class TriggerStore {
  constructor(private readonly store: Store) {}

  /**
   * Takes the dedupe key for `triggerId` until `expiresAt` unless another trigger holds an open
   * window on it: one upsert, so concurrent schedules (any process) cannot both win. Returns
   * the id of the trigger holding the key now.
   */
  async claimKey(
    trx: Transaction<DocketDatabase>,
    p: {
      tenantId: string;
      type: string;
      key: string;
      triggerId: string;
      now: number;
      expiresAt: number;
    },
  ): Promise<string> {
    const won = await trx
      .insertInto('due_trigger_keys')
      .values({
        tenant_id: p.tenantId,
        type: p.type,
        dedupe_key: p.key,
        trigger_id: p.triggerId,
        expires_at: p.expiresAt,
      })
      .onConflict((oc) =>
        oc
          .columns(['tenant_id', 'type', 'dedupe_key'])
          .doUpdateSet({ trigger_id: p.triggerId, expires_at: p.expiresAt })
          .where('due_trigger_keys.expires_at', '<=', p.now),
      )
      .returning('trigger_id')
      .executeTakeFirst();
    if (won) return won.trigger_id;
    const holder = await trx
      .selectFrom('due_trigger_keys')
      .select('trigger_id')
      .where('tenant_id', '=', p.tenantId)
      .where('type', '=', p.type)
      .where('dedupe_key', '=', p.key)
      .executeTakeFirstOrThrow();
    return holder.trigger_id;
  }

  /** Hands a key whose trigger no longer exists to `triggerId` (guarded by the old holder). */
  async takeOverKey(
    trx: Transaction<DocketDatabase>,
    p: { tenantId: string; type: string; key: string; from: string; to: string; expiresAt: number },
  ): Promise<boolean> {
    const r = await trx
      .updateTable('due_trigger_keys')
      .set({ trigger_id: p.to, expires_at: p.expiresAt })
      .where('tenant_id', '=', p.tenantId)
      .where('type', '=', p.type)
      .where('dedupe_key', '=', p.key)
      .where('trigger_id', '=', p.from)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Inserts a pending trigger in the caller's transaction. */
  async insert(trx: Transaction<DocketDatabase>, t: NewTrigger): Promise<DueTrigger> {
    const row = await trx
      .insertInto('due_triggers')
      .values({
        id: t.id,
        tenant_id: t.tenantId,
        type: t.type,
        target: t.target,
        payload: t.payloadJson,
        fire_at: t.fireAt,
        state: 'pending',
        dedupe_key: t.dedupeKey,
        trace_id: t.traceId,
        job_id: t.jobId,
        attempts: 0,
        result: null,
        skip_reason: null,
        error: null,
        created_at: t.now,
        updated_at: t.now,
        finished_at: null,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    return rowToTrigger(row);
  }

  /** One trigger of the tenant, read with `db` (a tenant transaction or the system handle). */
  async get(db: Db, tenant: string, id: string): Promise<DueTrigger | undefined> {
    const r = await db
      .selectFrom('due_triggers')
      .selectAll()
      .where('tenant_id', '=', tenant)
      .where('id', '=', id)
      .executeTakeFirst();
    return r ? rowToTrigger(r) : undefined;
  }

  /** A tenant's triggers, newest first, after the keyset id `before`. */
  async list(p: {
    tenant: string;
    states?: readonly TriggerState[];
    type?: string;
    before?: string;
    limit: number;
  }): Promise<DueTrigger[]> {
    return this.store.withTenantTransaction(p.tenant, async (trx) => {
      let q = trx.selectFrom('due_triggers').selectAll().where('tenant_id', '=', p.tenant);
      if (p.states?.length) q = q.where('state', 'in', [...p.states]);
      if (p.type !== undefined) q = q.where('type', '=', p.type);
      if (p.before !== undefined) q = q.where('id', '<', p.before);
      const rows = await q.orderBy('id', 'desc').limit(p.limit).execute();
      return rows.map(rowToTrigger);
    });
  }

  /** Counts a tenant's triggers by state. */
  async counts(tenant: string): Promise<Record<string, number>> {
    return this.store.withTenantTransaction(tenant, async (trx) => {
      const rows = await trx
        .selectFrom('due_triggers')
        .select(['state', (eb) => eb.fn.countAll<number>().as('n')])
        .where('tenant_id', '=', tenant)
        .groupBy('state')
        .execute();
      return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
    });
  }

  /**
   * pending → canceled (audited as `trigger.canceled` in the same transaction), and the trigger
   * frees its dedupe key. Undefined when absent; `changed: false` when it was not pending.
   */
  async cancel(p: {
    tenant: string;
    id: string;
    actor: string;
    traceId: string;
    now: number;
  }): Promise<{ trigger: DueTrigger; changed: boolean } | undefined> {
    // The system role moves triggers (tenants may only schedule and read them); the tenant
    // filter keeps the operation to the caller's tenant.
    return this.store.withSystemTransaction(async (trx) => {
      const row = await trx
        .updateTable('due_triggers')
        .set({ state: 'canceled', finished_at: p.now, updated_at: p.now })
        .where('tenant_id', '=', p.tenant)
        .where('id', '=', p.id)
        .where('state', '=', 'pending')
        .returningAll()
        .executeTakeFirst();
      if (!row) {
        const cur = await this.get(trx, p.tenant, p.id);
        return cur ? { trigger: cur, changed: false } : undefined;
      }
      const trigger = rowToTrigger(row);
      if (trigger.dedupeKey !== null) {
        await trx
          .deleteFrom('due_trigger_keys')
          .where('tenant_id', '=', p.tenant)
          .where('type', '=', trigger.type)
          .where('dedupe_key', '=', trigger.dedupeKey)
          .where('trigger_id', '=', trigger.id)
          .execute();
      }
      const event = prepareAuditEvent({
        tenant: trigger.tenantId,
        traceId: p.traceId,
        createdAt: p.now,
        action: 'trigger.canceled',
        resource: { type: 'trigger', id: trigger.id, name: trigger.type },
        actor: principalFromActor(p.actor),
        metadata: { target: trigger.target, fireAt: trigger.fireAt },
      });
      await appendAuditEvents(trx, [event], p.now);
      return { trigger, changed: true };
    });
  }

  /** pending → a final state for one firing attempt; undefined when it was not pending. */
  async finish(p: {
    tenant: string;
    id: string;
    attempt: number;
    now: number;
    outcome: TriggerFinish;
  }): Promise<DueTrigger | undefined> {
    const o = p.outcome;
    const row = await this.store.systemDb
      .updateTable('due_triggers')
      .set({
        state: o.state,
        attempts: p.attempt,
        result: o.state === 'triggered' ? o.resultJson : null,
        skip_reason: o.state === 'skipped' ? o.reason : null,
        error: o.state === 'failed' ? o.error : null,
        finished_at: p.now,
        updated_at: p.now,
      })
      .where('tenant_id', '=', p.tenant)
      .where('id', '=', p.id)
      .where('state', '=', 'pending')
      .returningAll()
      .executeTakeFirst();
    return row ? rowToTrigger(row) : undefined;
  }

  /** Records a failed attempt that will be retried (the trigger stays pending). */
  async recordAttempt(p: {
    tenant: string;
    id: string;
    attempt: number;
    error: string;
    now: number;
  }): Promise<void> {
    await this.store.systemDb
      .updateTable('due_triggers')
      .set({ attempts: p.attempt, error: p.error, updated_at: p.now })
      .where('tenant_id', '=', p.tenant)
      .where('id', '=', p.id)
      .where('state', '=', 'pending')
      .execute();
  }

  /**
   * Settles pending triggers whose job ended without the handler saying so (its last attempt
   * timed out or its worker died, or an operator canceled the job): a failed job makes the
   * trigger `failed`, a canceled one `canceled`. Returns how many changed.
   */
  async settleStranded(now: number): Promise<number> {
    let total = 0;
    for (const [jobStatus, state, error] of [
      ['failed', 'failed', 'its job failed without recording an outcome (timeout or crash)'],
      ['canceled', 'canceled', null],
    ] as const) {
      const r = await this.store.systemDb
        .updateTable('due_triggers')
        .set({ state, error, finished_at: now, updated_at: now })
        .where('state', '=', 'pending')
        .where('fire_at', '<=', now)
        .where((eb) =>
          eb.exists(
            eb
              .selectFrom('jobs')
              .select(sql.lit(1).as('one'))
              .whereRef('jobs.tenant_id', '=', 'due_triggers.tenant_id')
              .whereRef('jobs.id', '=', 'due_triggers.job_id')
              .where('jobs.status', '=', jobStatus),
          ),
        )
        .executeTakeFirst();
      total += Number(r.numUpdatedRows);
    }
    return total;
  }

  /**
   * Deletes up to `limit` final triggers that finished before `before` and no open dedupe
   * window names, and expired dedupe keys; returns how many triggers went.
   */
  async prune(p: { before: number; now: number; limit: number }): Promise<number> {
    const db = this.store.systemDb;
    await db.deleteFrom('due_trigger_keys').where('expires_at', '<=', p.now).execute();
    const r = await db
      .deleteFrom('due_triggers')
      .where(
        'id',
        'in',
        db
          .selectFrom('due_triggers')
          .select('id')
          .where('state', '!=', 'pending')
          .where('finished_at', '<', p.before)
          .where((eb) =>
            eb.not(
              eb.exists(
                eb
                  .selectFrom('due_trigger_keys')
                  .select(sql.lit(1).as('one'))
                  .whereRef('due_trigger_keys.trigger_id', '=', 'due_triggers.id'),
              ),
            ),
          )
          .limit(p.limit),
      )
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }
}
