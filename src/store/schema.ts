import type { ColumnType } from 'kysely';

// Column types as Kysely sees them. JSON columns travel as text on every dialect (the pg pool
// is told not to parse jsonb) so that backends encode and decode JSON in exactly one place.

/** A tenant. */
export interface TenantsTable {
  id: string;
  name: string;
  created_at: number;
}

/** A hashed API key bound to one tenant. */
export interface ApiKeysTable {
  id: string;
  tenant_id: string;
  secret_hash: string;
  label: ColumnType<string, string | undefined, string>;
  created_at: number;
  revoked_at: number | null;
}

/** A durable job. */
export interface JobsTable {
  id: string;
  tenant_id: string;
  queue: string;
  type: string;
  payload: string;
  payload_hash: string;
  priority: number;
  status: string;
  available_at: number;
  attempts: number;
  max_attempts: number;
  last_error: string | null;
  locked_by: string | null;
  locked_at: number | null;
  lease_until: number | null;
  idempotency_key: string | null;
  trace_id: string;
  result: string | null;
  timeout_ms: number | null;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
}

/** A dead-letter queue item, one per dead job. */
export interface DlqItemsTable {
  id: string;
  tenant_id: string;
  job_id: string;
  type: string;
  queue: string;
  attempts: number;
  last_error: string | null;
  trace_id: string;
  created_at: number;
  replayed_at: number | null;
}

/** A minimal audit row (grown into the audit module later). */
export interface AuditLogsTable {
  id: string;
  tenant_id: string;
  action: string;
  resource_type: string;
  resource_id: string;
  actor: string;
  trace_id: string;
  data: string;
  created_at: number;
}

/** Docket's tables. */
export interface DocketDatabase {
  tenants: TenantsTable;
  api_keys: ApiKeysTable;
  jobs: JobsTable;
  dlq_items: DlqItemsTable;
  audit_logs: AuditLogsTable;
}
