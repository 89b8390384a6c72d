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
  /** Null on PostgreSQL (and '' on SQLite) for a job without an idempotency key. */
  payload_hash: string | null;
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

/** One hash-chained audit event (SPEC A). JSON `data` is text on SQLite. */
export interface AuditEventsTable {
  id: string;
  tenant_id: string;
  seq: number;
  action: string;
  outcome: string;
  resource_type: string;
  resource_id: string;
  resource_name: string | null;
  actor_type: string;
  actor_id: string;
  actor_display: string | null;
  trace_id: string;
  client_ip: string | null;
  user_agent: string | null;
  data: string;
  created_at: number;
  prev_hash: string;
  hash: string;
}

/** Head of a tenant's audit chain; also the lock that serializes its appends. */
export interface AuditChainTable {
  tenant_id: string;
  seq: number;
  hash: string;
  updated_at: number;
}

/** A retention purge's checkpoint: the last removed event's seq and hash. */
export interface AuditCheckpointsTable {
  tenant_id: string;
  seq: number;
  hash: string;
  removed: number;
  created_at: number;
}

/** Per-tenant audit settings changed at runtime. */
export interface AuditSettingsTable {
  tenant_id: string;
  retention_days: number;
  updated_at: number;
}

/** Rows present only inside a purge transaction (audit_purge_guard, effects_purge_guard); the append-only triggers let deletes pass then. */
export interface AuditPurgeGuardTable {
  txid: string;
}

/** Operational alerts (SPEC OPS-2), deduplicated by key while not resolved. */
export interface AlertsTable {
  id: string;
  key: string;
  tenant_id: string | null;
  source: string;
  severity: string;
  message: string;
  details: string;
  status: string;
  occurrences: number;
  first_seen_at: number;
  last_seen_at: number;
}

/** Docket's tables. */
/** Taken allowance of one rate limit in one fixed window (migration 005). */
export interface RateCountersTable {
  key: string;
  window_start: number;
  taken: number;
}

export interface DocketDatabase {
  tenants: TenantsTable;
  api_keys: ApiKeysTable;
  jobs: JobsTable;
  dlq_items: DlqItemsTable;
  audit_events: AuditEventsTable;
  audit_chain: AuditChainTable;
  audit_checkpoints: AuditCheckpointsTable;
  audit_settings: AuditSettingsTable;
  audit_purge_guard: AuditPurgeGuardTable;
  effects_purge_guard: AuditPurgeGuardTable;
  alerts: AlertsTable;
  rate_counters: RateCountersTable;
  outbox_events: OutboxEventsTable;
  outbox_consumed: OutboxConsumedTable;
  webhook_deliveries: WebhookDeliveriesTable;
  effects: EffectsTable;
  scheduler_tasks: SchedulerTasksTable;
  scheduler_executions: SchedulerExecutionsTable;
  scheduler_locks: SchedulerLocksTable;
  proposals: ProposalsTable;
  proposal_applies: ProposalAppliesTable;
  due_triggers: DueTriggersTable;
  due_trigger_keys: DueTriggerKeysTable;
}

/** An outbox event (SPEC O-1); JSON columns as text. */
export interface OutboxEventsTable {
  id: string;
  tenant_id: string;
  topic: string;
  key: string | null;
  payload: string;
  headers: string;
  trace_id: string;
  status: string;
  attempts: number;
  max_attempts: number;
  available_at: number;
  lease_owner: string | null;
  lease_until: number | null;
  last_error: string | null;
  /** JSON array of the sink names that accepted the event. */
  sinks_done: string;
  created_at: number;
  updated_at: number;
  published_at: number | null;
}

/** An exactly-once consumer's record of an event it applied (SPEC O-4). */
export interface OutboxConsumedTable {
  tenant_id: string;
  consumer: string;
  event_id: string;
  consumed_at: number;
}

/** One HTTP request a webhook sink made for an outbox event (migration 008); never updated. */
export interface WebhookDeliveriesTable {
  id: string;
  tenant_id: string;
  event_id: string;
  sink: string;
  attempt: number;
  /** success, retryable or permanent. */
  class: string;
  request_url: string;
  request_method: string;
  /** JSON object, sensitive values masked. */
  request_headers: string;
  /** At most 1 KiB of the body sent. */
  request_body: string;
  response_status: number | null;
  response_headers: string | null;
  response_body: string | null;
  error_code: string | null;
  error_message: string | null;
  duration_ms: number;
  /** The delivery this one re-ran. */
  repeats_delivery_id: string | null;
  created_at: number;
}

/** One external side effect in the ledger (SPEC O-8); JSON columns as text. */
export interface EffectsTable {
  id: string;
  tenant_id: string;
  key: string;
  type: string;
  payload_hash: string;
  state: string;
  /** 1 when the effect type declared its provider idempotent. */
  idempotent_provider: number;
  attempts: number;
  /** The latest provider call's token; only its answer is recorded. */
  attempt_token: string | null;
  lease_until: number | null;
  provider_message_id: string | null;
  result: string | null;
  /** JSON `{ message, name, retryable, at, details }` of the last failure. */
  last_error: string | null;
  resolved_by: string | null;
  resolution_note: string | null;
  trace_id: string;
  created_at: number;
  updated_at: number;
  sent_at: number | null;
}

/** A scheduler task: its definition from code plus runtime state (migration 012). */
export interface SchedulerTasksTable {
  name: string;
  tenant_id: string;
  cron_default: string;
  timezone_default: string;
  cron_override: string | null;
  timezone_override: string | null;
  /** 0 or 1 on every dialect. */
  enabled: number;
  timeout_ms: number;
  grace_ms: number;
  priority: number;
  overlap: string;
  catch_up: string;
  next_due_at: number | null;
  version: number;
  created_at: number;
  updated_at: number;
}

/** One run of a scheduler task (SPEC S-3). */
export interface SchedulerExecutionsTable {
  id: string;
  task: string;
  tenant_id: string;
  scheduled_for: number;
  trigger_kind: string;
  status: string;
  instance_id: string;
  fencing_token: number | null;
  trace_id: string;
  started_at: number;
  lease_until: number | null;
  finished_at: number | null;
  duration_ms: number | null;
  error: string | null;
  stack: string | null;
}

/** A lease lock with a fencing token (SPEC S-2). */
export interface SchedulerLocksTable {
  name: string;
  owner: string | null;
  token: number;
  expires_at: number;
}

/** A proposal, confirm-before-apply (SPEC S-7, migration 014); JSON columns as text. */
export interface ProposalsTable {
  id: string;
  tenant_id: string;
  kind: string;
  target: string;
  changes: string;
  /** JSON array of candidates, or null for a proposal without alternatives. */
  candidates: string | null;
  /** JSON text of the target's version the change set was generated against. */
  base_version: string;
  state: string;
  expires_at: number;
  created_by: string;
  trace_id: string;
  created_at: number;
  updated_at: number;
  decided_at: number | null;
  decided_by: string | null;
  reason: string | null;
  applied_candidate: string | null;
  applied_key: string | null;
}

/** The stored outcome of one apply request per idempotency key (SPEC S-7); never updated. */
export interface ProposalAppliesTable {
  tenant_id: string;
  proposal_id: string;
  idempotency_key: string;
  request_hash: string;
  candidate_id: string | null;
  /** applied or refused. */
  outcome: string;
  result: string | null;
  error_code: string | null;
  error_message: string | null;
  actor: string;
  trace_id: string;
  created_at: number;
}

/** A due trigger (SPEC S-6, migration 013). */
export interface DueTriggersTable {
  id: string;
  tenant_id: string;
  type: string;
  target: string;
  /** JSON text. */
  payload: string;
  fire_at: number;
  state: string;
  dedupe_key: string | null;
  trace_id: string;
  job_id: string;
  attempts: number;
  /** JSON text of the handler's result, or null. */
  result: string | null;
  skip_reason: string | null;
  error: string | null;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
}

/** The dedupe window of (tenant, type, dedupe_key): which trigger holds it, until when. */
export interface DueTriggerKeysTable {
  tenant_id: string;
  type: string;
  dedupe_key: string;
  trigger_id: string;
  expires_at: number;
}
