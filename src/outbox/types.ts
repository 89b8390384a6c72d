import type { Transaction } from 'kysely';
import type { JsonValue } from '../audit/content.js';
import type { DocketDatabase } from '../store/schema.js';

/** The states of an outbox event (SPEC O-1); the database refuses any other transition. */
export type OutboxStatus = 'pending' | 'publishing' | 'published' | 'failed' | 'dead';

/** Every outbox state, in lifecycle order. */
export const OUTBOX_STATUSES: readonly OutboxStatus[] = [
  'pending',
  'publishing',
  'published',
  'failed',
  'dead',
];

/** What `outbox.add` takes. */
export interface OutboxAddInput {
  /** Routing topic, 1–200 of `A-Z a-z 0-9 . _ : -` (routes match it, `*` as a wildcard). */
  topic: string;
  /** Ordering key (e.g. an aggregate id): with ordering on, a key's events go out in order. */
  key?: string;
  /** The event body (JSON). */
  payload: JsonValue;
  /** String headers handed to the sinks (e.g. a content type, a schema version). */
  headers?: Record<string, string>;
  /** Publication attempts before the event is `dead`. Default `outbox.maxAttempts` (10). */
  maxAttempts?: number;
  /** Publish no earlier than this, epoch ms. Default now. */
  availableAt?: number;
}

/** A stored outbox event. */
export interface OutboxEvent {
  id: string;
  tenantId: string;
  topic: string;
  key: string | null;
  payload: JsonValue;
  headers: Record<string, string>;
  traceId: string;
  status: OutboxStatus;
  /** Publication attempts started (claims), including the current one. */
  attempts: number;
  maxAttempts: number;
  /** Next attempt no earlier than this, epoch ms. */
  availableAt: number;
  /** The relay holding a `publishing` lease, and until when. */
  leaseOwner: string | null;
  leaseUntil: number | null;
  lastError: string | null;
  /** Sinks that already accepted the event (a retry skips them). */
  sinksDone: string[];
  createdAt: number;
  updatedAt: number;
  publishedAt: number | null;
}

/** What a sink returns when it accepted an event. */
export interface SinkReceipt {
  /** A reference the sink gave (job id, JetStream sequence, HTTP status), for the record. */
  ref?: string;
}

/** The outcome of one event of a `publishMany` call. */
export type SinkOutcome = { ok: true; receipt: SinkReceipt } | { ok: false; error: unknown };

/** A destination of events (SPEC O-6). Throwing means "not accepted"; the relay retries. */
export interface OutboxSink {
  /** Publishes one event; must be idempotent by `event.id` where the destination allows. */
  publish(event: OutboxEvent, signal: AbortSignal): Promise<SinkReceipt>;
  /**
   * Publishes a relay's batch at once (one outcome per event, in order), where the destination
   * has a cheaper batch path. Default: the relay calls `publish` for every event concurrently.
   */
  publishMany?(events: readonly OutboxEvent[], signal: AbortSignal): Promise<SinkOutcome[]>;
  /**
   * For a sink whose writes live in Docket's own store (the job queue): writes the events inside
   * the relay's claim transaction, so they commit with the published mark or not at all. A
   * throw rolls the whole batch back (the relay then publishes it through `publish`).
   */
  publishInStore?(trx: Transaction<DocketDatabase>, events: readonly OutboxEvent[]): Promise<void>;
  /** Called once the transaction `publishInStore` wrote in has committed (dispatch, wake-ups). */
  inStoreCommitted?(trx: Transaction<DocketDatabase>): Promise<void>;
  /** Releases connections. */
  close?(): Promise<void>;
}

/** Thrown by a sink for an event that can never be accepted: the event goes `dead` at once. */
export class PermanentSinkError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PermanentSinkError';
  }
}

/** A route: events whose topic matches `topic` (`*` matches any run of characters) go to `sink`. */
export interface OutboxRoute {
  topic: string;
  sink: string;
}
