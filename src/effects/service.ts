// The effect ledger as Docket exposes it (SPEC O-8): run a provider call at most once per
// (tenant, key), record its answer the moment it arrives, replay it to every retry, and hold
// a call whose outcome nobody saw for an operator instead of repeating it blindly.
import type { Transaction } from 'kysely';
import type { JsonValue } from '../audit/content.js';
import { requireTenant, resolveTraceId } from '../core/context.js';
import { DocketError } from '../core/errors.js';
import type { IdGenerator } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import { decodeCursor, encodeCursor } from '../jobs/backends/rows.js';
import { PermanentJobError } from '../jobs/index.js';
import type { Store } from '../store/index.js';
import type { DocketDatabase } from '../store/schema.js';
import {
  checkEffectPayload,
  effectIdempotencyKey,
  effectOutcome,
  effectUnknownError,
  prepareEffect,
  type PreparedEffect,
} from './input.js';
import { EffectStore } from './store.js';
import {
  EFFECT_STATES,
  EffectUnknownError,
  type Effect,
  type EffectAnswer,
  type EffectError,
  type EffectFailpoint,
  type EffectInput,
  type EffectOutcome,
  type EffectProvider,
  type EffectReservation,
  type EffectState,
} from './types.js';

/** What the service needs. */
export interface EffectsServiceDeps {
  store: Store;
  logger: Logger;
  now: () => number;
  ids: IdGenerator;
  payloadLimitBytes: number;
  tenantOfTx: (tx: object) => string | undefined;
  /** Test-only crash injection. */
  failpoint?: (name: EffectFailpoint) => void | Promise<void>;
}

const RESULT_BYTES = 64 * 1024;

/** The effect ledger of one Docket instance. */
export class EffectsService {
  readonly rows: EffectStore;
  private readonly afterCommit = new WeakMap<object, Array<(committed: boolean) => void>>();

  constructor(private readonly deps: EffectsServiceDeps) {
    this.rows = new EffectStore(deps.store);
  }

  /**
   * Runs `fn` (the provider call) unless the effect was already sent, and records its answer
   * before returning. Outside any transaction; see `reserve` for the transactional form.
   */
  async run<R extends JsonValue>(
    input: EffectInput,
    fn: EffectProvider<R>,
  ): Promise<EffectOutcome<R>> {
    const p = prepareEffect(this.deps.payloadLimitBytes, requireTenant(input.tenant), input);
    const token = this.deps.ids.next();
    const leaseUntil = this.deps.now() + p.leaseMs;
    const decision = await this.deps.store.withTenantTransaction(p.tenant, (trx) =>
      this.decide(trx, p, token, leaseUntil),
    );
    if (decision.kind === 'replay') return effectOutcome<R>(decision.effect, true);
    if (decision.kind === 'held') throw effectUnknownError(p.key);
    return this.call(p, decision.effect, token, fn);
  }

  /**
   * The transactional form: in `tx` the effect is created (`pending`) or read, a conflict
   * fails the transaction, and an effect already sent is returned as replayed. The provider
   * is never called inside `tx` (a rollback would forget the call, and a retry would repeat
   * it): once `tx` commits, the effect runs as `run` does and `outcome` settles.
   */
  async reserve<R extends JsonValue>(
    tx: Transaction<DocketDatabase>,
    input: EffectInput,
    fn: EffectProvider<R>,
  ): Promise<EffectReservation<R>> {
    const tenant = this.deps.tenantOfTx(tx);
    if (!tenant) {
      throw new DocketError(
        'TX_INVALID',
        'effects.run needs a transaction from docket.withTransaction (or null)',
      );
    }
    if (input.tenant !== undefined && input.tenant !== tenant) {
      throw new DocketError('VALIDATION_FAILED', 'tenant differs from the transaction’s tenant', {
        field: 'tenant',
      });
    }
    const p = prepareEffect(this.deps.payloadLimitBytes, tenant, input);
    const effect = await this.rows.insertOrLock(tx, this.newEffect(p));
    checkEffectPayload(effect, p);
    if (effect.state === 'sent') {
      return { effect, replayed: true, outcome: Promise.resolve(effectOutcome<R>(effect, true)) };
    }
    const outcome = new Promise<EffectOutcome<R>>((resolve, reject) => {
      const hooks = this.afterCommit.get(tx) ?? [];
      hooks.push((committed) => {
        if (!committed) {
          reject(
            new DocketError(
              'TX_INVALID',
              `the transaction that reserved effect ${p.key} rolled back: nothing was sent`,
              { key: p.key },
            ),
          );
          return;
        }
        this.run({ ...input, tenant }, fn).then(resolve, reject);
      });
      this.afterCommit.set(tx, hooks);
    });
    // A caller that never looks at `outcome` must not crash the process with an unhandled
    // rejection: the failure is in the ledger (and the log) either way.
    outcome.catch((err: unknown) =>
      this.deps.logger.warn({ err, key: p.key, tenant }, 'a reserved effect did not complete'),
    );
    return { effect, replayed: false, outcome };
  }

  /** Called by withTransaction when `tx` ended: runs (or abandons) the effects it reserved. */
  transactionEnded(tx: object, committed: boolean): void {
    const hooks = this.afterCommit.get(tx);
    if (!hooks) return;
    this.afterCommit.delete(tx);
    for (const h of hooks) h(committed);
  }

  private newEffect(p: PreparedEffect) {
    return {
      id: this.deps.ids.next(),
      tenant: p.tenant,
      key: p.key,
      type: p.type,
      payloadHash: p.payloadHash,
      idempotentProvider: p.idempotentProvider,
      traceId: resolveTraceId(),
      now: this.deps.now(),
    };
  }

  /**
   * In one short transaction: create or lock the row and decide. Only `pending` and `failed`
   * effects (and, for idempotent providers, lost and `unknown` calls) start a call; a lost
   * call of any other provider becomes `unknown`, which must commit before EFFECT_UNKNOWN is
   * raised, so it leaves the transaction as a decision rather than as an error.
   */
  private async decide(
    trx: Transaction<DocketDatabase>,
    p: PreparedEffect,
    token: string,
    leaseUntil: number,
  ): Promise<{ kind: 'replay' | 'call' | 'held'; effect: Effect }> {
    const now = this.deps.now();
    let effect = await this.rows.insertOrLock(trx, this.newEffect(p));
    checkEffectPayload(effect, p);
    if (effect.state === 'sent') return { kind: 'replay', effect };
    if (effect.state === 'sending' && (effect.leaseUntil ?? 0) >= now) {
      throw new DocketError(
        'EFFECT_IN_PROGRESS',
        `effect ${p.key} is being sent by another call; retry after its lease`,
        {
          key: p.key,
          leaseUntil: effect.leaseUntil,
          retryAfterMs: (effect.leaseUntil ?? now) - now + 1,
        },
      );
    }
    if (effect.state === 'sending' && !p.idempotentProvider) {
      effect =
        (await this.rows.expire(trx, {
          tenant: p.tenant,
          key: p.key,
          attempts: effect.attempts,
          idempotent: false,
          now,
          actor: 'system:effects',
        })) ?? effect;
    }
    if (effect.state === 'unknown' && !p.idempotentProvider) return { kind: 'held', effect };
    const started = await this.rows.startCall(trx, {
      effect,
      token,
      leaseUntil,
      idempotentProvider: p.idempotentProvider,
      now,
    });
    if (!started) {
      throw new DocketError('EFFECT_IN_PROGRESS', `effect ${p.key} changed meanwhile; retry`, {
        key: p.key,
        retryAfterMs: 0,
      });
    }
    return { kind: 'call', effect: started };
  }

  /** Calls the provider outside any transaction and records its answer at once. */
  private async call<R extends JsonValue>(
    p: PreparedEffect,
    effect: Effect,
    token: string,
    fn: EffectProvider<R>,
  ): Promise<EffectOutcome<R>> {
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new Error(`the effect's lease of ${p.leaseMs} ms ran out`)),
      p.leaseMs,
    );
    timer.unref();
    const onAbort = () => controller.abort(p.signal?.reason);
    p.signal?.addEventListener('abort', onAbort, { once: true });
    if (p.signal?.aborted) onAbort();
    let answer: EffectAnswer<R>;
    try {
      answer = await fn({
        key: p.key,
        idempotencyKey: effectIdempotencyKey(p.tenant, p.key),
        attempt: effect.attempts,
        signal: controller.signal,
      });
    } catch (err) {
      // A call cut off by its lease or its caller may have reached the provider.
      return this.recordFailure(p, token, err, controller.signal.aborted);
    } finally {
      clearTimeout(timer);
      p.signal?.removeEventListener('abort', onAbort);
    }
    await this.deps.failpoint?.('effect.providerAnswered');
    const providerMessageId =
      typeof answer?.providerMessageId === 'string' ? answer.providerMessageId.slice(0, 998) : null;
    const result = this.encodeResult(p, answer?.result);
    const recorded = await this.withRetries(p, providerMessageId, () =>
      this.rows.recordSent({
        tenant: p.tenant,
        key: p.key,
        token,
        providerMessageId,
        result,
        now: this.deps.now(),
      }),
    );
    await this.deps.failpoint?.('effect.recorded');
    if (recorded) return effectOutcome<R>(recorded, false);
    // The call outlived its lease and the effect moved on (an operator resolved it, or an
    // idempotent retry took over): the provider did act, so say so, and keep the ledger's word.
    const current = await this.get(p.tenant, p.key);
    this.deps.logger.error(
      { tenant: p.tenant, key: p.key, providerMessageId, state: current.state },
      'a provider accepted an effect after its lease had expired and the effect had moved on',
    );
    return {
      effect: current,
      providerMessageId,
      result: (answer?.result ?? null) as R | null,
      replayed: false,
    };
  }

  /**
   * The answer is the one thing that must reach the ledger: a store hiccup right then is
   * retried a few times (within the lease) before the error goes up and the effect is left to
   * become `unknown`.
   */
  private async withRetries<T>(
    p: PreparedEffect,
    providerMessageId: string | null,
    write: () => Promise<T>,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await write();
      } catch (err) {
        if (attempt >= 3) {
          this.deps.logger.error(
            { err, tenant: p.tenant, key: p.key, providerMessageId },
            'the provider answered but the ledger could not record it; the effect will be unknown',
          );
          throw err;
        }
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
  }

  private encodeResult(p: PreparedEffect, result: JsonValue | undefined): string | null {
    if (result === undefined) return null;
    let text: string | undefined;
    try {
      text = JSON.stringify(result);
    } catch {
      text = undefined;
    }
    if (text === undefined || Buffer.byteLength(text) > RESULT_BYTES) {
      this.deps.logger.warn(
        { tenant: p.tenant, key: p.key },
        'effect result is not JSON or over 64 KiB; stored as null',
      );
      return null;
    }
    return text;
  }

  /**
   * Records a failed call: `failed` (with whether it is worth retrying), or `unknown` when the
   * provider may have acted and is not idempotent. Rethrows the provider's error (so a job's
   * PermanentJobError still means "no retry"), or EFFECT_UNKNOWN.
   */
  private async recordFailure(
    p: PreparedEffect,
    token: string,
    err: unknown,
    aborted: boolean,
  ): Promise<never> {
    const ambiguous = err instanceof EffectUnknownError || aborted;
    const e = err instanceof Error ? err : new Error(String(err));
    const details = (e as { details?: unknown }).details;
    const error: EffectError = {
      message: e.message.slice(0, 2000),
      name: e.name,
      retryable: ambiguous ? p.idempotentProvider : !(err instanceof PermanentJobError),
      at: this.deps.now(),
      ...(details && typeof details === 'object' && !Array.isArray(details)
        ? { details: details as Record<string, JsonValue> }
        : {}),
    };
    const state = ambiguous && !p.idempotentProvider ? 'unknown' : 'failed';
    await this.withRetries(p, null, () =>
      this.rows.recordFailed({
        tenant: p.tenant,
        key: p.key,
        token,
        state,
        error,
        now: this.deps.now(),
      }),
    );
    if (state === 'unknown') throw effectUnknownError(p.key, err);
    throw err;
  }

  /**
   * An operator's verdict on an `unknown` effect: `sent` (the provider did act; later runs
   * replay it) or `failed` (it did not; the next run sends again). Audited.
   */
  async resolve(
    tenant: string,
    key: string,
    o: {
      outcome: 'sent' | 'failed';
      providerMessageId?: string;
      note?: string;
      actor?: string;
      traceId?: string;
    },
  ): Promise<Effect> {
    const bad = (field: string, message: string) =>
      new DocketError('VALIDATION_FAILED', message, { field });
    if (o.outcome !== 'sent' && o.outcome !== 'failed') {
      throw bad('outcome', 'outcome must be sent or failed');
    }
    if (
      o.providerMessageId !== undefined &&
      (typeof o.providerMessageId !== 'string' ||
        o.providerMessageId.length < 1 ||
        o.providerMessageId.length > 998)
    ) {
      throw bad('providerMessageId', 'providerMessageId must be 1–998 characters');
    }
    if (o.note !== undefined && (typeof o.note !== 'string' || o.note.length > 1000)) {
      throw bad('note', 'note must be at most 1000 characters');
    }
    const effect = await this.rows.resolve({
      tenant,
      key,
      outcome: o.outcome,
      providerMessageId: o.providerMessageId,
      note: o.note,
      actor: o.actor ?? 'library',
      traceId: resolveTraceId(o.traceId),
      now: this.deps.now(),
    });
    if (effect) return effect;
    const current = await this.get(tenant, key);
    throw new DocketError(
      'EFFECT_NOT_UNKNOWN',
      `effect ${key} is ${current.state}; only an unknown effect can be resolved`,
      { key, state: current.state },
    );
  }

  /**
   * Moves calls whose lease expired on, across tenants: to `unknown` (audited), or to `failed`
   * (retryable) for idempotent providers. Returns how many. The reaper's interval runs it.
   */
  async sweepOnce(): Promise<number> {
    const now = this.deps.now();
    let moved = 0;
    for (const r of await this.rows.expiredCalls({ now, limit: 500 })) {
      const e = await this.rows.expireAsSystem({
        tenant: r.tenant_id,
        key: r.key,
        attempts: Number(r.attempts),
        now,
      });
      if (e) moved++;
    }
    return moved;
  }

  /**
   * Removes final (`sent`, `failed`) effects last changed before `before`, in batches; `unknown`
   * and in-flight ones are kept whatever their age. Returns how many. `docket.prune` runs it.
   */
  async purgeOnce(before: number): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.rows.purge({ before, limit: 1000 });
      total += n;
      if (n < 1000) return total;
    }
  }

  /** One effect (EFFECT_NOT_FOUND if absent or another tenant's). */
  async get(tenant: string, key: string): Promise<Effect> {
    const e = await this.rows.get(tenant, key);
    if (!e) throw new DocketError('EFFECT_NOT_FOUND', `effect ${key} not found`, { key });
    return e;
  }

  /** A page of a tenant's effects, newest first. */
  async list(
    tenant: string,
    o: { state?: EffectState[]; cursor?: string; limit?: number } = {},
  ): Promise<{ items: Effect[]; nextCursor: string | null }> {
    const limit = o.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > 200) {
      throw new DocketError('VALIDATION_FAILED', 'limit must be an integer 1–200', {
        field: 'limit',
      });
    }
    for (const s of o.state ?? []) {
      if (!EFFECT_STATES.includes(s)) {
        throw new DocketError('VALIDATION_FAILED', `unknown effect state ${String(s)}`, {
          field: 'state',
        });
      }
    }
    const before = o.cursor ? decodeCursor(o.cursor) : undefined;
    const rows = await this.rows.list({ tenant, states: o.state, before, limit: limit + 1 });
    const items = rows.slice(0, limit);
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null };
  }

  /** Counts by state. */
  counts(tenant: string): Promise<Record<string, number>> {
    return this.rows.counts(tenant);
  }
}
