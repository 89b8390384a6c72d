import type { Transaction } from 'kysely';
import { raiseAlert } from '../alerts/index.js';
import type { Clock } from '../core/clock.js';
import type { DocketConfig } from '../config/index.js';
import { requireTenant, resolveTraceId } from '../core/context.js';
import { DocketError } from '../core/errors.js';
import type { IdGenerator } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import type { DocketMetrics } from '../core/metrics.js';
import type { DocketDatabase, Store } from '../store/index.js';
import { auditBatchAppenderFor } from './backends/index.js';
import { prepareAuditEvent } from './event.js';
import {
  appendAuditEvents,
  auditTenants,
  findAuditEvent,
  purgeAuditPrefix,
  queryAuditEvents,
  readRetentionDays,
  rowToAuditEvent,
  verifyAuditChain,
  writeRetentionDays,
  type PreparedAuditEvent,
} from './store.js';
import {
  BUILTIN_AUDIT_ACTIONS,
  BUILTIN_AUDIT_RESOURCES,
  type AuditDefinition,
  type AuditEvent,
  type AuditEventFilter,
  type AuditPrincipal,
  type AuditReceipt,
  type AuditRecordOptions,
  type AuditResource,
  type AuditVerifyResult,
} from './types.js';
import { AuditThreadAppender } from './thread-appender.js';
import { AuditWriter } from './writer.js';

const DAY = 86_400_000;
const PURGE_BATCH = 1000;

/** What the audit service needs. */
export interface AuditServiceDeps {
  store: Store;
  config: DocketConfig;
  clock: Clock;
  ids: IdGenerator;
  logger: Logger;
  metrics: DocketMetrics;
  /** Declared vocabulary; when set, other actions and resource types are refused. */
  definition?: AuditDefinition;
  /** Tenant of a transaction handed out by withTransaction (undefined for foreign objects). */
  tenantOfTx(tx: object): string | undefined;
}

/** Effective audit settings of a tenant. */
export interface AuditSettings {
  /** Days events are kept. */
  retentionDays: number;
  /** Whether the tenant set it or the configuration default applies. */
  source: 'tenant' | 'default';
}

/** Records, queries, verifies and purges audit events (SPEC A). */
export class AuditService {
  /** The batched writer behind `record()` without a transaction. */
  readonly writer: AuditWriter;
  /** The thread the writer appends on (undefined with `audit.writerThread: false`). */
  readonly writerThread: AuditThreadAppender | undefined;
  private readonly actions: Set<string> | undefined;
  private readonly resources: Set<string> | undefined;

  constructor(private readonly deps: AuditServiceDeps) {
    const def = deps.definition;
    this.actions = def && new Set<string>([...BUILTIN_AUDIT_ACTIONS, ...def.actions]);
    this.resources =
      def && new Set<string>([...BUILTIN_AUDIT_RESOURCES, ...Object.keys(def.resources)]);
    const m = deps.metrics;
    const thread = deps.config.audit.writerThread
      ? new AuditThreadAppender(deps.config)
      : undefined;
    this.writerThread = thread;
    const appendInProcess = auditBatchAppenderFor(deps.store);
    this.writer = new AuditWriter(
      {
        append: thread
          ? (events) => thread.append(events, deps.clock.now())
          : (events) => appendInProcess(events, deps.clock.now()),
        release: thread && (() => thread.close()),
        raiseAlert: (a) =>
          raiseAlert(
            deps.store.systemDb,
            { ...a, source: 'audit', severity: 'critical' },
            deps.ids,
            deps.clock.now(),
          ),
        metrics: {
          written: (n) => m.auditWritten.inc(n),
          dropped: (n, reason) => m.auditDropped.inc({ reason }, n),
          flushFailed: () => m.auditFlushFailures.inc(),
          buffered: (n) => m.auditBuffered.set(n),
        },
        logger: deps.logger,
      },
      {
        batchSize: deps.config.audit.batchSize,
        flushIntervalMs: deps.config.audit.flushIntervalMs,
        maxBuffer: deps.config.audit.maxBuffer,
        maxBlockMs: deps.config.audit.maxBlockMs,
        retryBaseMs: 100,
        alertAfterFailures: 5,
      },
    );
  }

  /** Refuses an action outside the declared vocabulary (when one is declared). */
  assertKnownAction(action: string): void {
    if (this.actions && !this.actions.has(action)) {
      throw new DocketError('AUDIT_ACTION_UNKNOWN', `unknown audit action: ${action}`, {
        action,
      });
    }
  }

  private assertKnownResource(type: string): void {
    if (this.resources && !this.resources.has(type)) {
      throw new DocketError('AUDIT_RESOURCE_UNKNOWN', `unknown audit resource type: ${type}`, {
        resourceType: type,
      });
    }
  }

  /** Validates and builds one event for `tenant`. */
  prepare(
    tenant: string,
    action: string,
    resource: AuditResource,
    o: AuditRecordOptions = {},
  ): PreparedAuditEvent {
    if (typeof action !== 'string')
      throw new DocketError('VALIDATION_FAILED', 'action must be a string', { field: 'action' });
    this.assertKnownAction(action);
    if (resource && typeof resource === 'object' && typeof resource.type === 'string')
      this.assertKnownResource(resource.type);
    const secretFields =
      resource && typeof resource === 'object'
        ? this.deps.definition?.resources[resource.type]?.secretFields
        : undefined;
    return prepareAuditEvent({
      ...o,
      tenant,
      traceId: resolveTraceId(o.traceId),
      createdAt: this.deps.clock.now(),
      action,
      resource,
      secretFields,
    });
  }

  /** Queues an event for the batched writer; waits at most `maxBlockMs`. */
  async record(
    action: string,
    resource: AuditResource,
    o: AuditRecordOptions = {},
  ): Promise<AuditReceipt> {
    const event = this.prepare(requireTenant(o.tenant), action, resource, o);
    const status = await this.writer.enqueue(event);
    return { id: event.id, status };
  }

  /** Writes an event inside a transaction from withTransaction; it commits or rolls back with it. */
  async recordTx(
    tx: object,
    action: string,
    resource: AuditResource,
    o: AuditRecordOptions = {},
  ): Promise<AuditEvent> {
    const tenant = this.deps.tenantOfTx(tx);
    if (!tenant) {
      throw new DocketError('TX_INVALID', 'pass the transaction given by docket.withTransaction');
    }
    if (o.tenant !== undefined && o.tenant !== tenant) {
      throw new DocketError('VALIDATION_FAILED', 'tenant differs from the transaction tenant', {
        field: 'tenant',
      });
    }
    const event = this.prepare(tenant, action, resource, o);
    const [row] = await appendAuditEvents(
      tx as Transaction<DocketDatabase>,
      [event],
      this.deps.clock.now(),
    );
    return rowToAuditEvent(row as NonNullable<typeof row>);
  }

  /** A page of the tenant's events, newest first (SPEC A-8). */
  async list(
    f: AuditEventFilter = {},
    o: { tenant?: string } = {},
  ): Promise<{ items: AuditEvent[]; nextCursor: string | null }> {
    const tenant = requireTenant(o.tenant);
    const limit = f.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > 200) {
      throw new DocketError('VALIDATION_FAILED', 'limit must be an integer 1–200', {
        field: 'limit',
      });
    }
    for (const k of ['from', 'to'] as const) {
      const v = f[k];
      if (v !== undefined && !Number.isSafeInteger(v)) {
        throw new DocketError('VALIDATION_FAILED', `${k} must be a time`, { field: k });
      }
    }
    if (f.from !== undefined && f.to !== undefined && f.from > f.to) {
      throw new DocketError('VALIDATION_FAILED', 'from must not be after to', {
        field: 'from',
        from: f.from,
        to: f.to,
      });
    }
    if (f.action !== undefined) this.assertKnownAction(f.action);
    return this.deps.store.withTenantTransaction(tenant, (trx) =>
      queryAuditEvents(trx, tenant, { ...f, limit }),
    );
  }

  /** One event of the tenant; AUDIT_EVENT_NOT_FOUND if absent or another tenant's. */
  async get(id: string, o: { tenant?: string } = {}): Promise<AuditEvent> {
    const tenant = requireTenant(o.tenant);
    const event = /^[0-9a-f-]{36}$/i.test(id)
      ? await this.deps.store.withTenantTransaction(tenant, (trx) =>
          findAuditEvent(trx, tenant, id.toLowerCase()),
        )
      : undefined;
    if (!event) throw new DocketError('AUDIT_EVENT_NOT_FOUND', 'audit event not found', { id });
    return event;
  }

  /** Walks the hash chain of one tenant, or of every tenant (operator). */
  async verify(
    o: { tenant?: string; onProgress?: (p: { tenant: string; events: number }) => void } = {},
  ): Promise<AuditVerifyResult> {
    const db = this.deps.store.systemDb;
    const tenants = o.tenant !== undefined ? [requireTenant(o.tenant)] : await auditTenants(db);
    let events = 0;
    for (const tenant of tenants) {
      const r = await verifyAuditChain(db, tenant, (n) => {
        events += n;
        o.onProgress?.({ tenant, events });
      });
      if (!r.ok) return { ok: false, tenants: tenants.length, events, broken: r.broken };
    }
    return { ok: true, tenants: tenants.length, events };
  }

  /** The tenant's effective settings. */
  async getSettings(o: { tenant?: string } = {}): Promise<AuditSettings> {
    const tenant = requireTenant(o.tenant);
    const days = await this.deps.store.withTenantTransaction(tenant, (trx) =>
      readRetentionDays(trx, tenant),
    );
    return days === undefined
      ? { retentionDays: this.deps.config.audit.retentionDays, source: 'default' }
      : { retentionDays: days, source: 'tenant' };
  }

  /** Changes the tenant's retention at runtime; audited in the same transaction. */
  async setSettings(
    s: { retentionDays: number },
    o: { tenant?: string; actor?: AuditPrincipal; clientIp?: string; userAgent?: string } = {},
  ): Promise<AuditSettings> {
    const tenant = requireTenant(o.tenant);
    const days = s.retentionDays;
    if (!Number.isInteger(days) || days < 1 || days > 36_500) {
      throw new DocketError('VALIDATION_FAILED', 'retentionDays must be an integer 1–36500', {
        field: 'retentionDays',
      });
    }
    const before = await this.getSettings({ tenant });
    const event = this.prepare(
      tenant,
      'audit.config_updated',
      { type: 'audit_config', id: tenant },
      {
        before: { retentionDays: before.retentionDays },
        after: { retentionDays: days },
        actor: o.actor,
        clientIp: o.clientIp,
        userAgent: o.userAgent,
      },
    );
    await this.deps.store.withTenantTransaction(tenant, async (trx) => {
      await writeRetentionDays(trx, tenant, days, this.deps.clock.now());
      await appendAuditEvents(trx, [event], this.deps.clock.now());
    });
    return { retentionDays: days, source: 'tenant' };
  }

  /** Removes events past each tenant's retention, keeping every chain verifiable; returns how many. */
  async purgeOnce(): Promise<number> {
    const { store, clock, config } = this.deps;
    let total = 0;
    for (const tenant of await auditTenants(store.systemDb)) {
      const days = (await readRetentionDays(store.systemDb, tenant)) ?? config.audit.retentionDays;
      const cutoff = clock.now() - days * DAY;
      for (;;) {
        const n = await store.withSystemTransaction((trx) =>
          purgeAuditPrefix(trx, { tenant, cutoff, batch: PURGE_BATCH, now: clock.now() }),
        );
        total += n;
        if (n < PURGE_BATCH) break;
      }
    }
    await store.analyze(['audit_events']);
    return total;
  }
}
