import type { JsonValue } from '../audit/content.js';

/** The states of an effect (SPEC O-8); the database refuses any other transition. */
export type EffectState = 'pending' | 'sending' | 'sent' | 'failed' | 'unknown';

/** Every effect state, in lifecycle order. */
export const EFFECT_STATES: readonly EffectState[] = [
  'pending',
  'sending',
  'sent',
  'failed',
  'unknown',
];

/** The last failure recorded for an effect. */
export interface EffectError {
  /** What the provider (or the ledger) said. */
  message: string;
  /** The error's name (`Error`, `PermanentJobError`, …). */
  name: string;
  /** Whether the failure is worth retrying (a 4xx SMTP reply is; a 5xx is not). */
  retryable: boolean;
  /** When it was recorded, epoch ms. */
  at: number;
  /** Provider specifics (an SMTP reply code and text). */
  details?: Record<string, JsonValue>;
}

/** A ledger row as the API shows it. */
export interface Effect {
  /** Time-sortable id (pagination order). */
  id: string;
  /** The tenant the effect belongs to. */
  tenantId: string;
  /** The caller's key, unique per tenant. */
  key: string;
  /** The effect type (`email`, `payment`, …). */
  type: string;
  /** SHA-256 of the canonical JSON of the payload. */
  payloadHash: string;
  /** Where the effect is in its lifecycle. */
  state: EffectState;
  /** Whether the type declared its provider idempotent (an expired call is retried, not held). */
  idempotentProvider: boolean;
  /** Provider calls started. */
  attempts: number;
  /** While `sending`: until when the current call holds the effect. */
  leaseUntil: number | null;
  /** The provider's id of what it did (a Message-ID, a charge id). */
  providerMessageId: string | null;
  /** What the provider returned (JSON), replayed to every later run. */
  result: JsonValue | null;
  /** The latest failure (or the reason it became `unknown`). */
  lastError: EffectError | null;
  /** Who resolved an `unknown` effect (`apikey:<id>`, `cli`), and their note. */
  resolvedBy: string | null;
  resolutionNote: string | null;
  /** Trace of the operation that created it. */
  traceId: string;
  /** Created, epoch ms. */
  createdAt: number;
  /** Last changed, epoch ms. */
  updatedAt: number;
  /** When the provider's acceptance was recorded (or an operator resolved it as sent), epoch ms. */
  sentAt: number | null;
}

/** What `effects.run` takes besides the provider call. */
export interface EffectInput {
  /** The effect's key, unique per tenant: 1–255 characters without control characters. */
  key: string;
  /** What the effect does (JSON); the same key with a different payload is EFFECT_CONFLICT. */
  payload: JsonValue;
  /** The effect type, for operators and metrics: 1–100 of `A-Z a-z 0-9 . _ : -`. Default `custom`. */
  type?: string;
  /**
   * The provider dedupes by the idempotency key (Stripe, a file named by the key): a call whose
   * lease expired is then retried with the same key instead of being held as `unknown`.
   * Default false.
   */
  idempotentProvider?: boolean;
  /** How long one provider call may take before it counts as lost, ms (1 s – 1 h). Default 60,000. */
  leaseMs?: number;
  /** Tenant; default the ambient tenant context (a job handler's is the job's tenant). */
  tenant?: string;
  /** Aborts the provider call with the caller (e.g. a job's signal). Default none. */
  signal?: AbortSignal;
}

/** What the provider call receives. */
export interface EffectCall {
  /** The effect's key. */
  key: string;
  /**
   * A stable key to hand the provider (`Idempotency-Key`, a `Message-ID`): the same for every
   * attempt of this effect, different across tenants. 40 lowercase hex characters.
   */
  idempotencyKey: string;
  /** This call's number, from 1. */
  attempt: number;
  /** Aborted when the lease runs out or the caller's signal aborts. */
  signal: AbortSignal;
}

/** What the provider call returns once the provider accepted the effect. */
export interface EffectAnswer<R extends JsonValue = JsonValue> {
  /** The provider's id for it. */
  providerMessageId?: string;
  /** Anything worth replaying to a later run (JSON, at most 64 KiB; larger is stored as null). */
  result?: R;
}

/** Calls the provider. Throw to report a failure (`PermanentJobError`: not worth retrying). */
export type EffectProvider<R extends JsonValue = JsonValue> = (
  call: EffectCall,
) => Promise<EffectAnswer<R>>;

/** The outcome of `effects.run`: the effect is sent. */
export interface EffectOutcome<R extends JsonValue = JsonValue> {
  /** The ledger row (state `sent`). */
  effect: Effect;
  /** The provider's id. */
  providerMessageId: string | null;
  /** The recorded result. */
  result: R | null;
  /** True when the effect had been sent before and the provider was not called. */
  replayed: boolean;
}

/** What `effects.run(tx, …)` returns inside a transaction: the send happens after commit. */
export interface EffectReservation<R extends JsonValue = JsonValue> {
  /** The ledger row as the transaction sees it (`pending` for a new effect). */
  effect: Effect;
  /** True when the effect was already sent (then `outcome` is already settled). */
  replayed: boolean;
  /**
   * Settles after the transaction commits and the provider answered (or at once when replayed);
   * rejects if the transaction rolls back (nothing was called) or the call fails. Never await
   * it inside the transaction's callback: it waits for that transaction to end.
   */
  outcome: Promise<EffectOutcome<R>>;
}

/**
 * Throw from a provider call when the provider may or may not have acted (the connection
 * dropped after the request went out): the ledger records `unknown`, held for an operator,
 * instead of `failed`, which a retry would send again.
 */
export class EffectUnknownError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EffectUnknownError';
  }
}

/** Test-only crash injection points of the ledger (the `failpoint` option of createDocket). */
export type EffectFailpoint = 'effect.providerAnswered' | 'effect.recorded';
