// Due triggers (SPEC S-6): a row with a fire time, a dedupe key with a window, and a state
// machine. Scheduling enqueues, in the same transaction, a job of the internal type
// `docket.trigger:<type>` due at fire_at, so triggers are fired by the claim machinery of jobs
// (leases, retries, the reaper, the Redis lane) and there is no second scanner. When the job
// runs, the handler sees the trigger as stored, re-reads whatever real state it is about, and
// completes it (`triggered`), skips it, or throws (retried like any job; `failed` after the
// last attempt). A canceled trigger's job finds it final and does nothing.
import type { JsonValue } from '../audit/index.js';
import type { Clock } from '../core/clock.js';
import { resolveTraceId, runWithContext } from '../core/context.js';
import { DocketError } from '../core/errors.js';
import { isUuid, type IdGenerator } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import { decodeCursor, encodeCursor } from '../jobs/backends/rows.js';
import {
  PermanentJobError,
  type Job,
  type JobContext,
  type JobTypeOptions,
} from '../jobs/index.js';
import type { Store, TenantTransaction } from '../store/index.js';
import { TriggerStore, type TriggerFinish } from './triggers-store.js';
import {
  TRIGGER_JOB_PREFIX,
  TRIGGER_STATES,
  TRIGGER_TYPE_PATTERN,
  type DueTrigger,
  type ScheduleTriggerInput,
  type ScheduleTriggerOptions,
  type ScheduleTriggerResult,
  type TriggerHandler,
  type TriggerListFilter,
  type TriggerTypeOptions,
} from './triggers-types.js';

/** Payload of a `docket.trigger:<type>` job. */
export interface TriggerJobPayload {
  /** The trigger it fires. */
  triggerId: string;
}

const DAY_MS = 86_400_000;
const DEFAULT_DEDUPE_WINDOW_MS = DAY_MS;
const MAX_DEDUPE_WINDOW_MS = 366 * DAY_MS;
const MAX_TIME_MS = 8.64e15;

const invalid = (field: string, message: string, extra: Record<string, unknown> = {}) =>
  new DocketError('VALIDATION_FAILED', message, { field, ...extra });

/**
 * The trigger types this instance handles, known at construction (no I/O): each becomes the
 * job type `docket.trigger:<type>`, so a worker claims only the triggers it has a handler for.
 */
export class TriggerRegistry {
  private readonly types = new Map<
    string,
    { handler: TriggerHandler<never>; options: TriggerTypeOptions }
  >();

  /** Adds a type (VALIDATION_FAILED for a bad name or a second registration); returns its job type. */
  register(type: string, handler: TriggerHandler<never>, options: TriggerTypeOptions = {}): string {
    if (typeof type !== 'string' || !TRIGGER_TYPE_PATTERN.test(type)) {
      throw invalid('type', 'a trigger type is 1–100 of A-Z a-z 0-9 _ . : - (a letter first)', {
        type,
      });
    }
    if (typeof handler !== 'function') {
      throw invalid('handler', `the handler of trigger type ${type} must be a function`);
    }
    if (this.types.has(type)) throw invalid('type', `trigger type ${type} is registered already`);
    checkMaxAttempts(options.maxAttempts, 'maxAttempts');
    if (
      options.timeoutMs !== undefined &&
      (!Number.isInteger(options.timeoutMs) || options.timeoutMs < 1)
    ) {
      throw invalid('timeoutMs', 'timeoutMs must be a positive integer');
    }
    this.types.set(type, { handler, options: { ...options } });
    return triggerJobType(type);
  }

  /** The handler and options of a type, if registered. */
  get(type: string) {
    return this.types.get(type);
  }

  /** Job type options of a registered type (retry and timeout). */
  jobTypeOptions(type: string): JobTypeOptions {
    const o = this.types.get(type)?.options ?? {};
    return {
      ...(o.maxAttempts === undefined ? {} : { retry: { maxAttempts: o.maxAttempts } }),
      ...(o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }),
    };
  }

  /** Registered type names, sorted. */
  names(): string[] {
    return [...this.types.keys()].sort();
  }
}

/** The internal job type firing triggers of `type`. */
export function triggerJobType(type: string): string {
  return `${TRIGGER_JOB_PREFIX}${type}`;
}

function checkMaxAttempts(v: number | undefined, field: string): void {
  if (v !== undefined && (!Number.isInteger(v) || v < 1 || v > 1000)) {
    throw invalid(field, 'maxAttempts must be an integer 1–1000');
  }
}

/** Dependencies of the trigger service. */
export interface TriggerServiceDeps {
  store: Store;
  registry: TriggerRegistry;
  clock: Clock;
  ids: IdGenerator;
  logger: Logger;
  /** Largest payload, bytes. */
  payloadLimitBytes: number;
  /** Tenant of a transaction handed out by withTransaction. */
  tenantOfTx: (tx: TenantTransaction) => string | undefined;
  /** Runs `fn` in a tenant transaction whose jobs are dispatched when it commits. */
  withTransaction: <T>(tenant: string, fn: (tx: TenantTransaction) => Promise<T>) => Promise<T>;
  /** Enqueues the firing job in `tx`. */
  enqueueTx: (
    tx: TenantTransaction,
    type: string,
    payload: TriggerJobPayload,
    options: { runAt: number; idempotencyKey: string; traceId: string; maxAttempts?: number },
  ) => Promise<Job>;
}

interface ValidInput {
  type: string;
  target: string;
  fireAt: number;
  dedupeKey: string | null;
  dedupeWindow: number;
  payloadJson: string;
}

/** Scheduling, reading, canceling and firing due triggers. */
export class TriggerService {
  private readonly rows: TriggerStore;

  constructor(private readonly deps: TriggerServiceDeps) {
    this.rows = new TriggerStore(deps.store);
  }

  /** Schedules in a transaction of its own (see scheduleTx). */
  async schedule(
    tenant: string,
    input: ScheduleTriggerInput,
    o: Omit<ScheduleTriggerOptions, 'tenant'> = {},
  ): Promise<ScheduleTriggerResult> {
    // Validated before the transaction so a bad input opens nothing.
    this.validate(input, o);
    return this.deps.withTransaction(tenant, (tx) => this.scheduleIn(tx, tenant, input, o));
  }

  /**
   * Schedules in the caller's transaction: the trigger, its dedupe key and its job exist only
   * if it commits. Within an open dedupe window the existing trigger is returned instead.
   */
  async scheduleTx(
    tx: TenantTransaction,
    input: ScheduleTriggerInput,
    o: Omit<ScheduleTriggerOptions, 'tenant'> = {},
  ): Promise<ScheduleTriggerResult> {
    const tenant = this.deps.tenantOfTx(tx);
    if (!tenant) {
      throw new DocketError(
        'TX_INVALID',
        'the transaction was not opened by docket.withTransaction',
      );
    }
    return this.scheduleIn(tx, tenant, input, o);
  }

  private async scheduleIn(
    tx: TenantTransaction,
    tenant: string,
    input: ScheduleTriggerInput,
    o: Omit<ScheduleTriggerOptions, 'tenant'>,
  ): Promise<ScheduleTriggerResult> {
    // Everything is checked before the first write: a caller's transaction that catches the
    // error and commits must not keep half a trigger.
    const v = this.validate(input, o);
    const traceId = resolveTraceId(o.traceId);
    const now = this.deps.clock.now();
    const id = this.deps.ids.next();
    if (v.dedupeKey !== null) {
      const key = {
        tenantId: tenant,
        type: v.type,
        key: v.dedupeKey,
        now,
        expiresAt: now + v.dedupeWindow,
      };
      const holder = await this.rows.claimKey(tx, { ...key, triggerId: id });
      if (holder !== id) {
        const existing = await this.rows.get(tx, tenant, holder);
        if (existing) return { trigger: existing, deduplicated: true };
        // The window's trigger was removed (retention): the key is free for this one.
        if (!(await this.rows.takeOverKey(tx, { ...key, from: holder, to: id }))) {
          throw new DocketError('INTERNAL', 'the dedupe key changed hands while scheduling', {
            dedupeKey: v.dedupeKey,
          });
        }
      }
    }
    const job = await this.deps.enqueueTx(
      tx,
      triggerJobType(v.type),
      { triggerId: id },
      { runAt: v.fireAt, idempotencyKey: id, traceId, maxAttempts: o.maxAttempts },
    );
    const trigger = await this.rows.insert(tx, {
      id,
      tenantId: tenant,
      type: v.type,
      target: v.target,
      payloadJson: v.payloadJson,
      fireAt: v.fireAt,
      dedupeKey: v.dedupeKey,
      traceId,
      jobId: job.id,
      now,
    });
    return { trigger, deduplicated: false };
  }

  private validate(input: ScheduleTriggerInput, o: ScheduleTriggerOptions): ValidInput {
    if (!input || typeof input !== 'object')
      throw invalid('', 'a trigger needs { type, target, fireAt }');
    const { type, target, fireAt, dedupeKey, dedupeWindow } = input;
    if (typeof type !== 'string' || !TRIGGER_TYPE_PATTERN.test(type)) {
      throw invalid('type', 'a trigger type is 1–100 of A-Z a-z 0-9 _ . : - (a letter first)', {
        type,
      });
    }
    if (!this.deps.registry.get(type)) {
      throw new DocketError('UNKNOWN_TRIGGER_TYPE', `no trigger type named ${type}`, {
        type,
        known: this.deps.registry.names(),
      });
    }
    if (typeof target !== 'string' || target.length < 1 || target.length > 500) {
      throw invalid('target', 'target is a string of 1–500 characters');
    }
    const at = fireAt instanceof Date ? fireAt.getTime() : fireAt;
    if (typeof at !== 'number' || !Number.isFinite(at) || at < 0 || at > MAX_TIME_MS) {
      throw invalid('fireAt', 'fireAt is not a valid time');
    }
    if (
      dedupeKey !== undefined &&
      (typeof dedupeKey !== 'string' || dedupeKey.length < 1 || dedupeKey.length > 255)
    ) {
      throw invalid('dedupeKey', 'dedupeKey is a string of 1–255 characters');
    }
    if (dedupeWindow !== undefined) {
      if (dedupeKey === undefined) throw invalid('dedupeWindow', 'dedupeWindow needs a dedupeKey');
      if (
        !Number.isInteger(dedupeWindow) ||
        dedupeWindow < 1 ||
        dedupeWindow > MAX_DEDUPE_WINDOW_MS
      ) {
        throw invalid(
          'dedupeWindow',
          `dedupeWindow is an integer of ms, 1–${MAX_DEDUPE_WINDOW_MS}`,
        );
      }
    }
    checkMaxAttempts(o.maxAttempts, 'maxAttempts');
    let payloadJson: string;
    try {
      payloadJson = JSON.stringify(input.payload === undefined ? {} : input.payload);
    } catch (err) {
      throw invalid('payload', 'payload is not JSON-serializable', {
        reason: (err as Error).message,
      });
    }
    if (payloadJson === undefined) throw invalid('payload', 'payload is not JSON-serializable');
    const size = Buffer.byteLength(payloadJson, 'utf8');
    if (size > this.deps.payloadLimitBytes) {
      throw new DocketError('PAYLOAD_TOO_LARGE', 'payload exceeds the size limit', {
        field: 'payload',
        size,
        limit: this.deps.payloadLimitBytes,
      });
    }
    return {
      type,
      target,
      fireAt: Math.round(at),
      dedupeKey: dedupeKey ?? null,
      dedupeWindow: dedupeWindow ?? DEFAULT_DEDUPE_WINDOW_MS,
      payloadJson,
    };
  }

  /** One trigger; TRIGGER_NOT_FOUND if absent or another tenant's. */
  async get(tenant: string, id: string): Promise<DueTrigger> {
    const t = isUuid(id)
      ? await this.deps.store.withTenantTransaction(tenant, (trx) => this.rows.get(trx, tenant, id))
      : undefined;
    if (!t) throw new DocketError('TRIGGER_NOT_FOUND', `trigger ${id} not found`, { id });
    return t;
  }

  /** A page of the tenant's triggers, newest first. */
  async list(
    tenant: string,
    f: TriggerListFilter = {},
  ): Promise<{ items: DueTrigger[]; nextCursor: string | null }> {
    const limit = f.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > 200) {
      throw invalid('limit', 'limit is an integer 1–200');
    }
    for (const s of f.state ?? []) {
      if (!(TRIGGER_STATES as readonly string[]).includes(s)) {
        throw invalid('state', `unknown trigger state ${String(s)}`, { states: TRIGGER_STATES });
      }
    }
    const before = f.cursor === undefined ? undefined : decodeCursor(f.cursor);
    const rows = await this.rows.list({
      tenant,
      states: f.state,
      type: f.type,
      before,
      limit: limit + 1,
    });
    const items = rows.slice(0, limit);
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null };
  }

  /** Counts the tenant's triggers by state. */
  counts(tenant: string): Promise<Record<string, number>> {
    return this.rows.counts(tenant);
  }

  /** pending → canceled (audited); TRIGGER_NOT_FOUND, TRIGGER_NOT_PENDING. */
  async cancel(
    tenant: string,
    id: string,
    o: { actor?: string; traceId?: string } = {},
  ): Promise<DueTrigger> {
    const r = isUuid(id)
      ? await this.rows.cancel({
          tenant,
          id,
          actor: o.actor ?? 'library',
          traceId: resolveTraceId(o.traceId),
          now: this.deps.clock.now(),
        })
      : undefined;
    if (!r) throw new DocketError('TRIGGER_NOT_FOUND', `trigger ${id} not found`, { id });
    if (!r.changed) {
      throw new DocketError(
        'TRIGGER_NOT_PENDING',
        `trigger ${id} is ${r.trigger.state}; only a pending trigger can be canceled`,
        { id, state: r.trigger.state },
      );
    }
    return r.trigger;
  }

  /** Settles pending triggers whose job ended without an outcome; returns how many. */
  sweepOnce(): Promise<number> {
    return this.rows.settleStranded(this.deps.clock.now());
  }

  /** Removes final triggers finished before `before` and expired dedupe keys. */
  async pruneOnce(before: number): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.rows.prune({ before, now: this.deps.clock.now(), limit: 1000 });
      total += n;
      if (n < 1000) return total;
    }
  }

  /** The job handler of `docket.trigger:<type>`: fires the trigger its payload names. */
  async fire(ctx: JobContext<TriggerJobPayload>): Promise<{ trigger: string; state: string }> {
    const id = ctx.payload?.triggerId;
    const t =
      typeof id === 'string'
        ? await this.rows.get(this.deps.store.systemDb, ctx.tenant, id)
        : undefined;
    if (!t) {
      ctx.logger.warn({ triggerId: id }, 'the trigger of this job does not exist; nothing to fire');
      return { trigger: String(id), state: 'missing' };
    }
    // Only the job scheduled with the trigger fires it (not another job naming its id).
    if (t.jobId !== ctx.job.id) {
      ctx.logger.warn({ triggerId: t.id }, "this job is not the trigger's own; nothing to fire");
      return { trigger: t.id, state: 'not_its_job' };
    }
    // Canceled (or finished by an earlier attempt whose completion was lost): nothing to do.
    if (t.state !== 'pending') return { trigger: t.id, state: t.state };
    const reg = this.deps.registry.get(t.type);
    if (!reg) throw new Error(`no handler for trigger type ${t.type} in this process`);
    const logger = ctx.logger.child({ triggerId: t.id, triggerType: t.type });
    let outcome: unknown;
    try {
      outcome = await runWithContext({ tenant: t.tenantId, traceId: t.traceId }, () =>
        (reg.handler as TriggerHandler)({
          trigger: t,
          get signal() {
            return ctx.signal;
          },
          tenant: t.tenantId,
          traceId: t.traceId,
          attempt: ctx.attempt,
          maxAttempts: ctx.job.maxAttempts,
          logger,
        }),
      );
    } catch (err) {
      const message = (err instanceof Error ? err.message : String(err)).slice(0, 2000);
      const now = this.deps.clock.now();
      if (err instanceof PermanentJobError || ctx.attempt >= ctx.job.maxAttempts) {
        await this.rows.finish({
          tenant: t.tenantId,
          id: t.id,
          attempt: ctx.attempt,
          now,
          outcome: { state: 'failed', error: message },
        });
      } else {
        await this.rows.recordAttempt({
          tenant: t.tenantId,
          id: t.id,
          attempt: ctx.attempt,
          error: message,
          now,
        });
      }
      throw err;
    }
    const done = await this.rows.finish({
      tenant: t.tenantId,
      id: t.id,
      attempt: ctx.attempt,
      now: this.deps.clock.now(),
      outcome: toFinish(outcome, logger),
    });
    // Null: canceled while the handler ran (its work is done; the row says canceled).
    if (!done) {
      const cur = await this.rows.get(this.deps.store.systemDb, t.tenantId, t.id);
      return { trigger: t.id, state: cur?.state ?? 'missing' };
    }
    return { trigger: t.id, state: done.state };
  }
}

function toFinish(outcome: unknown, logger: Logger): TriggerFinish {
  if (
    outcome !== null &&
    typeof outcome === 'object' &&
    !Array.isArray(outcome) &&
    typeof (outcome as { skip?: unknown }).skip === 'string'
  ) {
    return { state: 'skipped', reason: (outcome as { skip: string }).skip.slice(0, 2000) };
  }
  if (outcome === undefined) return { state: 'triggered', resultJson: null };
  try {
    return { state: 'triggered', resultJson: JSON.stringify(outcome as JsonValue) ?? null };
  } catch (err) {
    logger.warn({ err }, 'trigger handler result is not JSON-serializable; stored as null');
    return { state: 'triggered', resultJson: null };
  }
}
