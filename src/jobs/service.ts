import type { DocketConfig, RetryPolicy } from '../config/index.js';
import type { Clock } from '../core/clock.js';
import { requireTenant, resolveTraceId } from '../core/context.js';
import { DocketError } from '../core/errors.js';
import type { IdGenerator } from '../core/ids.js';
import type { TenantTransaction } from '../store/index.js';
import type { AuditEntry, JobBackend } from './backend.js';
import { MAX_TIMER_MS } from './execution.js';
import { canonicalJson, hashCanonicalJson } from './hashing.js';
import { JOB_TYPE_PATTERN, type JobTypeOptions } from './registry.js';
import type { DlqItem, EnqueueResult, Job, JobListFilter, NewJob, Page } from './types.js';

/** Options of one enqueue. */
export interface EnqueueOptions {
  /** Tenant; default the ambient tenant context. */
  tenant?: string;
  /** Queue; default the type's queue or `jobs.queue`. */
  queue?: string;
  /** Priority, smaller first, integer in ±1,000,000. Default the type's priority or 0. */
  priority?: number;
  /** Earliest start time. Default now. */
  runAt?: Date | number;
  /** Delay from now in ms (alternative to runAt). Default 0. */
  delayMs?: number;
  /** Tenant-scoped idempotency key (1–255 chars). Default none. */
  idempotencyKey?: string;
  /** Attempts before the dead-letter queue. Default the type's or `jobs.retry.maxAttempts`. */
  maxAttempts?: number;
  /** Timeout for this job in ms. Default the type's or `jobs.timeoutMs`. */
  timeoutMs?: number;
  /** Trace id; default the ambient one or a new one. */
  traceId?: string;
}

/** Who performs an operator action (recorded in the audit log). */
export interface ActorOptions {
  /** Tenant; default the ambient tenant context. */
  tenant?: string;
  /** Actor recorded in the audit row. Default `library`. */
  actor?: string;
  /** Trace id. Default ambient or new. */
  traceId?: string;
}

const MAX_PRIORITY = 1_000_000;
const MAX_DELAY_MS = 366 * 86_400_000;

/** Enqueueing, reading and operator actions on jobs (the queue's public face). */
export class JobsService {
  constructor(
    private readonly deps: {
      backend: JobBackend;
      config: DocketConfig;
      clock: Clock;
      ids: IdGenerator;
      /** Declared job types; when present, other types are rejected with UNKNOWN_JOB_TYPE. */
      knownTypes: () => ReadonlyMap<string, JobTypeOptions> | undefined;
      /** Options of a type (built-ins included even when no types are declared). */
      typeOptions: (type: string) => JobTypeOptions | undefined;
      /** Tenant of a transaction handed out by withTransaction. */
      tenantOfTx: (tx: TenantTransaction) => string | undefined;
    },
  ) {}

  /** Retry policy of a type (type overrides over global defaults). */
  retryPolicy(type: string): RetryPolicy {
    const t = this.deps.typeOptions(type)?.retry;
    return { ...this.deps.config.jobs.retry, ...t };
  }

  /** Enqueues many jobs for one tenant in one transaction (each item its own options). */
  async enqueueMany(
    items: Array<{ type: string; payload: unknown; options?: EnqueueOptions }>,
    common: {
      tenant?: string;
      tx?: TenantTransaction;
      /** A system transaction of Docket's own (the outbox relay's): `tenant` names the tenant. */
      systemTx?: TenantTransaction;
    } = {},
  ): Promise<EnqueueResult[]> {
    let tenant: string;
    if (common.systemTx) {
      tenant = requireTenant(common.tenant);
    } else if (common.tx) {
      const t = this.deps.tenantOfTx(common.tx);
      if (!t)
        throw new DocketError(
          'TX_INVALID',
          'the transaction was not opened by docket.withTransaction',
        );
      tenant = t;
    } else {
      tenant = requireTenant(common.tenant ?? items[0]?.options?.tenant);
    }
    if (items.length === 0) return [];
    if (items.length > 10_000) {
      throw new DocketError('VALIDATION_FAILED', 'a batch holds at most 10,000 jobs', {
        size: items.length,
      });
    }
    items.forEach((item, index) => {
      const own = item.options?.tenant;
      if (own !== undefined && own !== tenant) {
        throw new DocketError(
          'VALIDATION_FAILED',
          'every job of a batch belongs to the same tenant',
          {
            field: `[${index}].tenant`,
            tenant: own,
            batchTenant: tenant,
          },
        );
      }
    });
    const now = this.deps.clock.now();
    // One trace for the whole call unless an item names its own.
    const traceId = resolveTraceId(items.find((i) => i.options?.traceId)?.options?.traceId);
    const prepared = items.map((item, index) =>
      this.prepare(item.type, item.payload, { traceId, ...item.options }, tenant, now, index),
    );
    const outcomes = await this.deps.backend.jobInsertMany({
      tenant,
      jobs: prepared,
      tx: common.systemTx ?? common.tx,
    });
    return outcomes.map((o) => ({ job: o.job, deduplicated: o.kind === 'existing' }));
  }

  private prepare(
    type: string,
    payload: unknown,
    o: EnqueueOptions,
    tenant: string,
    now: number,
    index: number,
  ): NewJob {
    const at = (field: string) => (index === 0 ? field : `[${index}].${field}`);
    if (typeof type !== 'string' || !JOB_TYPE_PATTERN.test(type)) {
      throw new DocketError('VALIDATION_FAILED', 'invalid job type name', {
        field: at('type'),
        type,
      });
    }
    const known = this.deps.knownTypes();
    const typeOptions = this.deps.typeOptions(type);
    if (known && !known.has(type)) {
      throw new DocketError('UNKNOWN_JOB_TYPE', `no job type named ${type}`, {
        type,
        known: [...known.keys()],
      });
    }
    typeOptions?.validate?.(payload);
    let payloadJson: string;
    try {
      payloadJson = canonicalJson(payload === undefined ? {} : payload);
    } catch (err) {
      throw new DocketError('VALIDATION_FAILED', 'payload is not JSON-serializable', {
        field: at('payload'),
        reason: (err as Error).message,
      });
    }
    const size = Buffer.byteLength(payloadJson, 'utf8');
    if (size > this.deps.config.payloadLimitBytes) {
      throw new DocketError('PAYLOAD_TOO_LARGE', 'payload exceeds the size limit', {
        field: at('payload'),
        size,
        limit: this.deps.config.payloadLimitBytes,
      });
    }
    const priority = o.priority ?? typeOptions?.priority ?? 0;
    if (!Number.isInteger(priority) || Math.abs(priority) > MAX_PRIORITY) {
      throw new DocketError(
        'VALIDATION_FAILED',
        `priority must be an integer within ±${MAX_PRIORITY}`,
        {
          field: at('priority'),
        },
      );
    }
    let availableAt = now;
    if (o.runAt !== undefined) {
      const t = typeof o.runAt === 'number' ? o.runAt : o.runAt.getTime();
      if (!Number.isFinite(t))
        throw new DocketError('VALIDATION_FAILED', 'runAt is not a valid date', {
          field: at('runAt'),
        });
      availableAt = Math.max(now, t);
    } else if (o.delayMs !== undefined) {
      if (!Number.isFinite(o.delayMs) || o.delayMs < 0 || o.delayMs > MAX_DELAY_MS) {
        throw new DocketError('VALIDATION_FAILED', 'delayMs must be between 0 and one year', {
          field: at('delayMs'),
        });
      }
      availableAt = now + Math.round(o.delayMs);
    }
    const maxAttempts = o.maxAttempts ?? this.retryPolicy(type).maxAttempts;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 1000) {
      throw new DocketError('VALIDATION_FAILED', 'maxAttempts must be an integer 1–1000', {
        field: at('maxAttempts'),
      });
    }
    if (
      o.timeoutMs !== undefined &&
      (!Number.isInteger(o.timeoutMs) || o.timeoutMs < 1 || o.timeoutMs > MAX_TIMER_MS)
    ) {
      throw new DocketError('VALIDATION_FAILED', `timeoutMs must be an integer 1–${MAX_TIMER_MS}`, {
        field: at('timeoutMs'),
      });
    }
    const key = o.idempotencyKey ?? null;
    if (key !== null && (typeof key !== 'string' || key.length < 1 || key.length > 255)) {
      throw new DocketError('VALIDATION_FAILED', 'idempotencyKey must be 1–255 characters', {
        field: at('idempotencyKey'),
      });
    }
    const queue = o.queue ?? typeOptions?.queue ?? this.deps.config.jobs.queue;
    if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(queue)) {
      throw new DocketError('VALIDATION_FAILED', 'invalid queue name', { field: at('queue') });
    }
    return {
      id: this.deps.ids.next(),
      tenantId: tenant,
      queue,
      type,
      payloadJson,
      payloadHash: key === null ? null : hashCanonicalJson(payloadJson),
      priority,
      availableAt,
      maxAttempts,
      idempotencyKey: key,
      traceId: resolveTraceId(o.traceId),
      timeoutMs: o.timeoutMs ?? typeOptions?.timeoutMs ?? null,
      createdAt: now,
    };
  }

  /** One job of the tenant; JOB_NOT_FOUND if absent or another tenant's. */
  async get(id: string, o: { tenant?: string } = {}): Promise<Job> {
    const tenant = requireTenant(o.tenant);
    const job = await this.deps.backend.jobGet({ tenant, id });
    if (!job) throw new DocketError('JOB_NOT_FOUND', 'no such job', { id });
    return job;
  }

  /** A page of the tenant's jobs, newest first. */
  async list(filter: JobListFilter = {}, o: { tenant?: string } = {}): Promise<Page<Job>> {
    const tenant = requireTenant(o.tenant);
    if (
      filter.limit !== undefined &&
      (!Number.isInteger(filter.limit) || filter.limit < 1 || filter.limit > 200)
    ) {
      throw new DocketError('VALIDATION_FAILED', 'limit must be an integer 1–200', {
        field: 'limit',
      });
    }
    return this.deps.backend.jobList({ tenant, filter });
  }

  /** Cancels a pending or running job (a running job's handler sees its signal abort). */
  async cancel(id: string, o: ActorOptions = {}): Promise<Job> {
    const tenant = requireTenant(o.tenant);
    const change = await this.deps.backend.jobCancel({
      tenant,
      id,
      now: this.deps.clock.now(),
      audit: this.audit(tenant, 'job.canceled', id, o),
    });
    if (!change) throw new DocketError('JOB_NOT_FOUND', 'no such job', { id });
    const { job } = change;
    // Canceling a canceled job is a no-op success; any other final state is a conflict.
    if (job.status !== 'canceled') {
      throw new DocketError('JOB_NOT_CANCELABLE', `a ${job.status} job cannot be canceled`, {
        id,
        status: job.status,
      });
    }
    return job;
  }

  /** Runs a failed (dead) or canceled job again with a fresh attempt budget; audited. */
  async retry(id: string, o: ActorOptions = {}): Promise<Job> {
    return this.replay(id, o, false);
  }

  /** Replays a dead-lettered job; JOB_NOT_IN_DLQ if the job is not dead. */
  async replayDeadLetter(id: string, o: ActorOptions = {}): Promise<Job> {
    return this.replay(id, o, true);
  }

  private async replay(id: string, o: ActorOptions, requireDead: boolean): Promise<Job> {
    const tenant = requireTenant(o.tenant);
    const now = this.deps.clock.now();
    const change = await this.deps.backend.jobReplay({
      tenant,
      id,
      now,
      requireDead,
      audit: this.audit(tenant, requireDead ? 'job.dlq_replayed' : 'job.retried', id, o),
    });
    if (!change) throw new DocketError('JOB_NOT_FOUND', 'no such job', { id });
    const { job } = change;
    if (!change.changed) {
      throw new DocketError(
        requireDead ? 'JOB_NOT_IN_DLQ' : 'JOB_NOT_RETRYABLE',
        requireDead
          ? `a ${job.status} job is not in the dead-letter queue`
          : `a ${job.status} job cannot be retried`,
        { id, status: job.status },
      );
    }
    return job;
  }

  /** Removes a dead job from the dead-letter queue without running it; audited. */
  async purgeDeadLetter(id: string, o: ActorOptions = {}): Promise<void> {
    const tenant = requireTenant(o.tenant);
    const purged = await this.deps.backend.dlqPurge({
      tenant,
      jobId: id,
      audit: this.audit(tenant, 'job.dlq_purged', id, o),
    });
    if (purged) return;
    const job = await this.deps.backend.jobGet({ tenant, id });
    if (!job) throw new DocketError('JOB_NOT_FOUND', 'no such job', { id });
    throw new DocketError('JOB_NOT_IN_DLQ', `a ${job.status} job is not in the dead-letter queue`, {
      id,
      status: job.status,
    });
  }

  /** A page of the tenant's dead-letter queue. */
  async listDeadLetters(
    o: { tenant?: string; cursor?: string; limit?: number } = {},
  ): Promise<Page<DlqItem>> {
    const tenant = requireTenant(o.tenant);
    const limit = o.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > 200) {
      throw new DocketError('VALIDATION_FAILED', 'limit must be an integer 1–200', {
        field: 'limit',
      });
    }
    return this.deps.backend.dlqList({ tenant, cursor: o.cursor, limit });
  }

  private audit(tenant: string, action: string, id: string, o: ActorOptions): AuditEntry {
    return {
      tenantId: tenant,
      action,
      resourceType: 'job',
      resourceId: id,
      actor: o.actor ?? 'library',
      traceId: resolveTraceId(o.traceId),
      data: {},
      createdAt: this.deps.clock.now(),
    };
  }
}
