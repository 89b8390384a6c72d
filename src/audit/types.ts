import type { AuditDiffEntry, JsonValue } from './content.js';

/** Actions Docket itself records (job operator actions, API mutations). */
export const BUILTIN_AUDIT_ACTIONS = [
  'job.canceled',
  'job.retried',
  'job.dlq_replayed',
  'job.dlq_purged',
  'job.dead_lettered',
  'outbox.event_dead',
  'outbox.event_replayed',
  'effect.unknown',
  'effect.resolved',
  'audit.config_updated',
  'scheduler.task_enabled',
  'scheduler.task_disabled',
  'scheduler.task_rescheduled',
  'scheduler.task_triggered',
  'scheduler.execution_canceled',
  'proposal.created',
  'proposal.applied',
  'proposal.apply_refused',
  'proposal.rejected',
  'proposal.expired',
  'http.post',
  'http.put',
  'http.patch',
  'http.delete',
] as const;

/** An action Docket records by itself. */
export type BuiltinAuditAction = (typeof BUILTIN_AUDIT_ACTIONS)[number];

/** Resource types Docket itself records. */
export const BUILTIN_AUDIT_RESOURCES = [
  'job',
  'outbox_event',
  'effect',
  'audit_config',
  'scheduler_task',
  'proposal',
  'http',
] as const;

/** How a resource type is audited. */
export interface AuditResourceOptions {
  /** Field names whose values never appear in a diff or metadata (only "changed"). Default none (plus the built-in list). */
  secretFields?: readonly string[];
}

/** An application's audit vocabulary, declared once (SPEC A-1). */
export interface AuditDefinition<A extends string = string, R extends string = string> {
  /** The actions the application records. */
  readonly actions: readonly A[];
  /** The resource types, each with its secret fields. */
  readonly resources: { readonly [K in R]: AuditResourceOptions };
}

/** Declares actions and resource types with literal types, for `createDocket<Jobs, typeof def>`. */
export function defineAudit<const A extends string, const R extends string>(definition: {
  actions: readonly A[];
  resources: { readonly [K in R]: AuditResourceOptions };
}): AuditDefinition<A, R> {
  return definition;
}

/** Action names accepted for a definition (its own plus Docket's). */
export type ActionOf<D extends AuditDefinition> =
  D extends AuditDefinition<infer A, string> ? A | BuiltinAuditAction : never;

/** Resource type names accepted for a definition (its own plus Docket's). */
export type ResourceTypeOf<D extends AuditDefinition> =
  D extends AuditDefinition<string, infer R> ? R | (typeof BUILTIN_AUDIT_RESOURCES)[number] : never;

/** Whether the action succeeded, failed, or was refused. */
export type AuditOutcome = 'success' | 'failure' | 'denied';

/** Who acted. */
export interface AuditPrincipal {
  /** Kind of principal, e.g. `user`, `api_key`, `service`, `system`. */
  type: string;
  /** Stable id of the principal. */
  id: string;
  /** Human-readable name, if any. */
  display?: string;
}

/** What was acted on. */
export interface AuditResource<R extends string = string> {
  /** Declared resource type. */
  type: R;
  /** Id of the resource. */
  id: string;
  /** Human-readable name, if any. */
  name?: string;
}

/** Options of one audit record (SPEC A-3). */
export interface AuditRecordOptions {
  /** Object before the change; diffed against `after`. Default none. */
  before?: unknown;
  /** Object after the change. Default none. */
  after?: unknown;
  /** Free-form context (secret keys redacted). Default none. */
  metadata?: unknown;
  /** Outcome. Default `success`. */
  outcome?: AuditOutcome;
  /** Who acted. Default `{ type: 'system', id: 'library' }`. */
  actor?: AuditPrincipal;
  /** Tenant; default the ambient tenant (TENANT_REQUIRED without one). */
  tenant?: string;
  /** Trace id (32 hex); default the ambient one, else a new one. */
  traceId?: string;
  /** Client IP address. Default none. */
  clientIp?: string;
  /** Client user agent. Default none. */
  userAgent?: string;
}

/** An audit event as stored and returned. */
export interface AuditEvent {
  /** Time-sortable id. */
  id: string;
  /** Owning tenant. */
  tenantId: string;
  /** Position in the tenant's hash chain (1, 2, …). */
  seq: number;
  /** The action. */
  action: string;
  /** The outcome. */
  outcome: AuditOutcome;
  /** The resource acted on. */
  resource: AuditResource;
  /** Who acted. */
  actor: AuditPrincipal;
  /** Trace id. */
  traceId: string;
  /** Client IP, if known. */
  clientIp: string | null;
  /** User agent, if known. */
  userAgent: string | null;
  /** Structured before/after diff. */
  diff?: AuditDiffEntry[];
  /** Redacted, size-capped metadata. */
  metadata?: JsonValue;
  /** JSON Pointers of values shortened to keep the event within 64 KiB. */
  truncated?: string[];
  /** Epoch ms when recorded. */
  createdAt: number;
  /** Hash of the previous event of the tenant (64 zeros for the first). */
  prevHash: string;
  /** sha256(prevHash, canonical content), hex. */
  hash: string;
}

/** Filter of the audit query (SPEC A-8). */
export interface AuditEventFilter {
  /** Actor id. */
  actorId?: string;
  /** Action. */
  action?: string;
  /** Resource type. */
  resourceType?: string;
  /** Resource id (with or without a type). */
  resourceId?: string;
  /** Outcome. */
  outcome?: AuditOutcome;
  /** Inclusive lower bound, epoch ms. */
  from?: number;
  /** Exclusive upper bound, epoch ms. */
  to?: number;
  /** Cursor from the previous page. */
  cursor?: string;
  /** Page size 1–200. Default 50. */
  limit?: number;
}

/** What `record()` without a transaction did with the event. */
export interface AuditReceipt {
  /** Id the event is (or would have been) stored under. */
  id: string;
  /** `queued` for the batched writer, or `dropped` because the buffer stayed full. */
  status: 'queued' | 'dropped';
}

/** Result of walking hash chains (`docket audit verify`). */
export interface AuditVerifyResult {
  /** True when every chain checked is intact. */
  ok: boolean;
  /** Tenants checked. */
  tenants: number;
  /** Events checked. */
  events: number;
  /** The first broken link found, if any. */
  broken?: {
    tenantId: string;
    seq: number;
    eventId: string | null;
    reason: 'hash_mismatch' | 'prev_hash_mismatch' | 'sequence_gap' | 'head_mismatch';
    message: string;
  };
}
