import { AsyncLocalStorage } from 'node:async_hooks';
import { randomHexPooled } from './random.js';
import { DocketError } from './errors.js';

/** The tenant and trace an operation runs for. */
export interface OperationContext {
  /** Tenant id every read and write is scoped to. */
  tenant: string;
  /** W3C trace id (32 hex chars) propagated into everything the operation causes. */
  traceId?: string;
}

const storage = new AsyncLocalStorage<OperationContext>();

/** Runs `fn` with the given tenant (and trace) as the ambient context. */
export function runWithContext<T>(ctx: OperationContext, fn: () => T): T {
  assertTenantId(ctx.tenant);
  return storage.run(ctx, fn);
}

/** The ambient context, if any. */
export function currentContext(): OperationContext | undefined {
  return storage.getStore();
}

/** Resolves the tenant from an explicit value or the ambient context; fails with TENANT_REQUIRED. */
export function requireTenant(explicit?: string): string {
  const tenant = explicit ?? storage.getStore()?.tenant;
  if (tenant === undefined || tenant === '') {
    throw new DocketError('TENANT_REQUIRED', 'this operation needs a tenant context');
  }
  assertTenantId(tenant);
  return tenant;
}

const TENANT_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** True when `tenant` is a well-formed tenant id (see assertTenantId). */
export function isTenantId(tenant: string): boolean {
  return TENANT_ID.test(tenant);
}

/** Validates a tenant id: 1–64 chars of letters, digits, `_`, `.`, `-`. */
export function assertTenantId(tenant: string): void {
  if (!TENANT_ID.test(tenant)) {
    throw new DocketError('VALIDATION_FAILED', 'invalid tenant id', { tenant });
  }
}

/** A new random W3C trace id. */
export function newTraceId(): string {
  return randomHexPooled(16);
}

/** Extracts the trace id from a W3C `traceparent` header, or undefined if malformed. */
export function traceIdFromTraceparent(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(header.trim());
  if (!m || m[1] === '0'.repeat(32)) return undefined;
  return m[1];
}

/** The trace id to use: explicit, else ambient, else a new one; must be 32 lowercase hex chars. */
export function resolveTraceId(explicit?: string): string {
  const id = explicit ?? storage.getStore()?.traceId;
  // A generated id is well formed (an all-zero one, 2^-128, is not worth a check per event).
  if (id === undefined) return newTraceId();
  if (!/^[0-9a-f]{32}$/.test(id) || /^0+$/.test(id)) {
    throw new DocketError(
      'VALIDATION_FAILED',
      'traceId must be 32 lowercase hex characters (W3C)',
      {
        field: 'traceId',
      },
    );
  }
  return id;
}
