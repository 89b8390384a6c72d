// Validation of effects.run input and the small values the ledger hands back.
import { createHash } from 'node:crypto';
import type { JsonValue } from '../audit/content.js';
import { canonicalJson } from '../core/canonical-json.js';
import { DocketError } from '../core/errors.js';
import type { Effect, EffectInput, EffectOutcome } from './types.js';

const KEY = /^[^\u0000-\u001f\u007f]{1,255}$/u;
const TYPE = /^[A-Za-z0-9._:-]{1,100}$/;
const DEFAULT_LEASE_MS = 60_000;

/** A validated run input. */
export interface PreparedEffect {
  tenant: string;
  key: string;
  type: string;
  payloadHash: string;
  idempotentProvider: boolean;
  leaseMs: number;
  signal: AbortSignal | undefined;
}

/**
 * The stable key handed to providers for an effect: SHA-256 of tenant and key, 40 hex
 * characters (the same on every attempt; two tenants' equal keys get different ones).
 */
export function effectIdempotencyKey(tenant: string, key: string): string {
  return createHash('sha256').update(`${tenant}\u0000${key}`).digest('hex').slice(0, 40);
}

/** Validates an `effects.run` input (VALIDATION_FAILED, PAYLOAD_TOO_LARGE). */
export function prepareEffect(
  payloadLimitBytes: number,
  tenant: string,
  input: EffectInput,
): PreparedEffect {
  const bad = (field: string, message: string) =>
    new DocketError('VALIDATION_FAILED', message, { field });
  if (!input || typeof input !== 'object') throw bad('', 'effects.run takes { key, payload }');
  if (typeof input.key !== 'string' || !KEY.test(input.key)) {
    throw bad('key', 'key must be 1–255 characters without control characters');
  }
  const type = input.type ?? 'custom';
  if (typeof type !== 'string' || !TYPE.test(type)) {
    throw bad('type', 'type must be 1–100 of A-Z a-z 0-9 . _ : -');
  }
  let payload: string | undefined;
  try {
    payload = canonicalJson(input.payload ?? null);
  } catch {
    payload = undefined;
  }
  if (payload === undefined) throw bad('payload', 'payload must be JSON (no cycles, no BigInt)');
  if (Buffer.byteLength(payload) > payloadLimitBytes) {
    throw new DocketError('PAYLOAD_TOO_LARGE', 'effect payload exceeds payloadLimitBytes', {
      field: 'payload',
      limit: payloadLimitBytes,
    });
  }
  const leaseMs = input.leaseMs ?? DEFAULT_LEASE_MS;
  if (!Number.isInteger(leaseMs) || leaseMs < 1000 || leaseMs > 3_600_000) {
    throw bad('leaseMs', 'leaseMs must be an integer 1000–3600000');
  }
  return {
    tenant,
    key: input.key,
    type,
    // The type is part of what the key stands for: the same key for another type conflicts.
    payloadHash: createHash('sha256').update(`${type}\u0000${payload}`).digest('hex'),
    idempotentProvider: input.idempotentProvider === true,
    leaseMs,
    signal: input.signal,
  };
}

/** EFFECT_CONFLICT when the stored effect was made for another payload or type. */
export function checkEffectPayload(effect: Effect, p: PreparedEffect): void {
  if (effect.payloadHash !== p.payloadHash) {
    throw new DocketError(
      'EFFECT_CONFLICT',
      `effect ${p.key} was already used with a different payload (or type)`,
      { key: p.key, state: effect.state, type: effect.type },
    );
  }
}

/** The outcome `run` returns for a sent effect. */
export function effectOutcome<R extends JsonValue>(
  effect: Effect,
  replayed: boolean,
): EffectOutcome<R> {
  return {
    effect,
    providerMessageId: effect.providerMessageId,
    result: effect.result as R | null,
    replayed,
  };
}

/** EFFECT_UNKNOWN for a held effect. */
export function effectUnknownError(key: string, cause?: unknown): DocketError {
  return new DocketError(
    'EFFECT_UNKNOWN',
    `effect ${key} is unknown: a provider call may or may not have happened, so it is held ` +
      'for an operator (resolve it as sent or failed) instead of being repeated',
    { key },
    { cause },
  );
}
