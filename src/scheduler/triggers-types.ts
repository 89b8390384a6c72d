// Public types of due triggers (SPEC S-6).
import type { JsonValue } from '../audit/content.js';
import type { Logger } from '../core/logger.js';

/** States of a due trigger; every state but `pending` is final. */
export const TRIGGER_STATES = ['pending', 'triggered', 'canceled', 'skipped', 'failed'] as const;
/** State of a due trigger. */
export type TriggerState = (typeof TRIGGER_STATES)[number];

/** Trigger type names: dotted identifiers of up to 100 characters. */
export const TRIGGER_TYPE_PATTERN = /^[A-Za-z][A-Za-z0-9_.:-]{0,99}$/;

/** Prefix of the internal job type that fires triggers of one type (`docket.trigger:<type>`). */
export const TRIGGER_JOB_PREFIX = 'docket.trigger:';

/** A due trigger as stored. Times are epoch milliseconds. */
export interface DueTrigger<Payload = JsonValue> {
  /** Time-sortable id (UUIDv7). */
  id: string;
  /** Owning tenant. */
  tenantId: string;
  /** Trigger type; selects the handler. */
  type: string;
  /** What the trigger is about (e.g. `invoice:42`), for the handler to re-read. */
  target: string;
  /** JSON payload given at schedule time. */
  payload: Payload;
  /** When it fires. */
  fireAt: number;
  /** Current state. */
  state: TriggerState;
  /** Dedupe key, if one was given. */
  dedupeKey: string | null;
  /** Trace id kept from schedule time; the firing runs under it. */
  traceId: string;
  /** The internal job that fires it. */
  jobId: string;
  /** Handler attempts so far. */
  attempts: number;
  /** What a handler that completed returned (JSON), or null. */
  result: JsonValue | null;
  /** Why the handler skipped it (state `skipped`). */
  skipReason: string | null;
  /** The last handler error (the final one for state `failed`). */
  error: string | null;
  /** Creation time. */
  createdAt: number;
  /** Last change. */
  updatedAt: number;
  /** When it reached a final state. */
  finishedAt: number | null;
}

/** What a trigger handler receives when its trigger is due. */
export interface TriggerContext<Payload = JsonValue> {
  /** The trigger, read at fire time (still `pending`). */
  trigger: DueTrigger<Payload>;
  /** Aborted at the job's timeout or when its lease is lost; stop work promptly. */
  signal: AbortSignal;
  /** The trigger's tenant (also the ambient tenant context). */
  tenant: string;
  /** The trace id kept from schedule time. */
  traceId: string;
  /** Attempt number, starting at 1. */
  attempt: number;
  /** Attempts allowed before the trigger is `failed`. */
  maxAttempts: number;
  /** Logger bound to the trigger. */
  logger: Logger;
}

/**
 * What a trigger handler returns: `{ skip: reason }` when the real state (re-read by the
 * handler) says there is nothing to do, anything else (a JSON value or nothing) to mark the
 * trigger `triggered` with it as the result. A throw is retried like a job's.
 */
export type TriggerOutcome = { skip: string } | JsonValue | undefined | void;

/**
 * A handler for one trigger type. It returns a TriggerOutcome: an object whose `skip` is a
 * string skips the trigger with that reason; any other value is stored as the result (a value
 * JSON cannot hold is stored as null).
 */
export type TriggerHandler<Payload = JsonValue> = (ctx: TriggerContext<Payload>) => unknown;

/** Options of one trigger type. */
export interface TriggerTypeOptions {
  /** Attempts before the trigger is `failed`. Default the global `jobs.retry.maxAttempts`. */
  maxAttempts?: number;
  /** Handler timeout, ms. Default `jobs.timeoutMs`. */
  timeoutMs?: number;
}

/** The `triggers` option of createDocket. */
export interface TriggersOptions {
  /** Handlers by trigger type; more can be added with `docket.triggers.register`. Default none. */
  handlers?: Record<string, TriggerHandler<never>>;
  /** Options by trigger type. Default none (job defaults). */
  types?: Record<string, TriggerTypeOptions>;
  /** How long final triggers are kept (the `docket.prune` job removes older ones), ms. Default 2_592_000_000 (30 days). */
  retentionMs?: number;
}

/** What to schedule. */
export interface ScheduleTriggerInput<Payload = JsonValue> {
  /** A registered trigger type (UNKNOWN_TRIGGER_TYPE otherwise). */
  type: string;
  /** What the trigger is about, 1–500 characters. */
  target: string;
  /** When it fires (a past time fires at once). */
  fireAt: Date | number;
  /** Key that makes scheduling idempotent per (tenant, type) within `dedupeWindow`. Default none. */
  dedupeKey?: string;
  /** How long, ms, a dedupe key returns the trigger it created. Default 86_400_000 (a day). */
  dedupeWindow?: number;
  /** JSON payload for the handler. Default `{}`. */
  payload?: Payload;
}

/** Options of one schedule call. */
export interface ScheduleTriggerOptions {
  /** Tenant; default the ambient tenant context (ignored with a transaction). */
  tenant?: string;
  /** Trace id kept on the trigger and used when it fires. Default the ambient one or a new one. */
  traceId?: string;
  /** Attempts before `failed`. Default the type's, else `jobs.retry.maxAttempts`. */
  maxAttempts?: number;
}

/** Result of a schedule call. */
export interface ScheduleTriggerResult<Payload = JsonValue> {
  /** The trigger (new, or the one holding the dedupe key's window). */
  trigger: DueTrigger<Payload>;
  /** True when the dedupe key's window was open: no new trigger was created. */
  deduplicated: boolean;
}

/** Filter of the trigger list. */
export interface TriggerListFilter {
  /** Only these states. */
  state?: TriggerState[];
  /** Only this type. */
  type?: string;
  /** Keyset cursor from a previous page. */
  cursor?: string;
  /** Page size, 1–200. Default 50. */
  limit?: number;
}
