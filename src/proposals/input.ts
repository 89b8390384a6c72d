// Validation of proposal input and the hash that identifies an apply request.
import type { JsonValue } from '../audit/content.js';
import { canonicalJson, sha256Hex } from '../core/canonical-json.js';
import { DocketError } from '../core/errors.js';
import type {
  ProposalApplyInput,
  ProposalCandidate,
  ProposalInput,
  ProposalVersion,
} from './types.js';

const KIND = /^[A-Za-z][A-Za-z0-9_.:-]{0,99}$/;
const TARGET = /^[^\u0000-\u001f\u007f]{1,500}$/u;
const KEY = /^[^\u0000-\u001f\u007f]{1,255}$/u;
const CANDIDATE_ID = /^[A-Za-z0-9_.:-]{1,100}$/;
const MAX_CANDIDATES = 50;
const MAX_TTL_MS = 366 * 86_400_000;
/** Largest apply request (canonical JSON) Docket hashes and hands to the callback. */
export const REQUEST_LIMIT_BYTES = 64 * 1024;

const bad = (field: string, message: string, details: Record<string, unknown> = {}) =>
  new DocketError('VALIDATION_FAILED', message, { field, ...details });

/** A validated create input, JSON already encoded. */
export interface PreparedProposal {
  kind: string;
  target: string;
  changes: JsonValue;
  changesJson: string;
  candidates: ProposalCandidate[] | null;
  candidatesJson: string | null;
  expiresAt: number;
  baseVersion: ProposalVersion | undefined;
}

/** Checks a kind name (VALIDATION_FAILED). */
export function checkKindName(kind: unknown): string {
  if (typeof kind !== 'string' || !KIND.test(kind)) {
    throw bad('kind', 'a proposal kind is a letter then up to 99 of A-Z a-z 0-9 _ . : -');
  }
  return kind;
}

/** Checks a version (a string of 1–200 characters or a safe integer). */
export function checkVersion(field: string, v: unknown): ProposalVersion {
  if (typeof v === 'string' && v.length >= 1 && v.length <= 200) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  throw bad(field, `${field} must be a string of 1–200 characters or a safe integer`);
}

function encode(field: string, v: unknown): string {
  let text: string | undefined;
  try {
    text = canonicalJson(v);
  } catch {
    text = undefined;
  }
  if (text === undefined) throw bad(field, `${field} must be JSON (no cycles, no BigInt)`);
  return text;
}

function prepareCandidates(list: unknown): ProposalCandidate[] | null {
  if (list === undefined || list === null) return null;
  if (!Array.isArray(list) || list.length < 1 || list.length > MAX_CANDIDATES) {
    throw bad('candidates', `candidates must be a list of 1–${MAX_CANDIDATES}`);
  }
  const seen = new Set<string>();
  return list.map((c: unknown, i) => {
    const field = `candidates[${i}]`;
    if (!c || typeof c !== 'object' || Array.isArray(c))
      throw bad(field, 'a candidate is an object');
    const { id, changes, summary, ...rest } = c as Record<string, unknown>;
    if (Object.keys(rest).length) {
      throw bad(field, 'a candidate has only id, changes and summary', {
        unknown: Object.keys(rest),
      });
    }
    if (typeof id !== 'string' || !CANDIDATE_ID.test(id)) {
      throw bad(`${field}.id`, 'a candidate id is 1–100 of A-Z a-z 0-9 _ . : -');
    }
    if (seen.has(id)) throw bad(`${field}.id`, `candidate id ${id} appears twice`);
    seen.add(id);
    if (summary !== undefined && (typeof summary !== 'string' || summary.length > 1000)) {
      throw bad(`${field}.summary`, 'a summary is at most 1000 characters');
    }
    const out: ProposalCandidate = { id, changes: (changes ?? null) as JsonValue };
    if (summary !== undefined) out.summary = summary;
    return out;
  });
}

/** Validates a create input (VALIDATION_FAILED; PAYLOAD_TOO_LARGE over `limitBytes`). */
export function prepareProposal(
  input: ProposalInput,
  o: { now: number; limitBytes: number },
): PreparedProposal {
  if (!input || typeof input !== 'object') throw bad('', 'proposals.create takes an object');
  const kind = checkKindName(input.kind);
  if (typeof input.target !== 'string' || !TARGET.test(input.target)) {
    throw bad('target', 'target must be 1–500 characters without control characters');
  }
  const changes = input.changes;
  if (changes === null || typeof changes !== 'object') {
    throw bad('changes', 'changes must be a JSON object or array');
  }
  const changesJson = encode('changes', changes);
  const candidates = prepareCandidates(input.candidates);
  const candidatesJson = candidates ? encode('candidates', candidates) : null;
  const size = Buffer.byteLength(changesJson) + Buffer.byteLength(candidatesJson ?? '');
  if (size > o.limitBytes) {
    throw new DocketError(
      'PAYLOAD_TOO_LARGE',
      'the change set (with its candidates) exceeds the proposals limit',
      { field: 'changes', size, limit: o.limitBytes },
    );
  }
  const expiresAt = input.expiresAt instanceof Date ? input.expiresAt.getTime() : input.expiresAt;
  if (typeof expiresAt !== 'number' || !Number.isSafeInteger(expiresAt)) {
    throw bad('expiresAt', 'expiresAt must be epoch milliseconds or a Date');
  }
  if (expiresAt <= o.now || expiresAt > o.now + MAX_TTL_MS) {
    throw bad('expiresAt', 'expiresAt must be in the future, at most 366 days ahead', {
      now: o.now,
    });
  }
  const baseVersion =
    input.baseVersion === undefined ? undefined : checkVersion('baseVersion', input.baseVersion);
  return {
    kind,
    target: input.target,
    changes: JSON.parse(changesJson) as JsonValue,
    changesJson,
    candidates,
    candidatesJson,
    expiresAt,
    baseVersion,
  };
}

/** A validated apply input with its request hash. */
export interface PreparedApply {
  candidateId: string | null;
  idempotencyKey: string;
  request: JsonValue;
  /** SHA-256 of the canonical JSON of `{ candidateId, request }`. */
  requestHash: string;
}

/** Validates an apply input and hashes its request (VALIDATION_FAILED, PAYLOAD_TOO_LARGE). */
export function prepareApply(input: ProposalApplyInput): PreparedApply {
  if (!input || typeof input !== 'object') {
    throw bad('', 'proposals.apply takes { idempotencyKey, candidateId?, request? }');
  }
  if (typeof input.idempotencyKey !== 'string' || !KEY.test(input.idempotencyKey)) {
    throw bad(
      'idempotencyKey',
      'an idempotency key (1–255 characters without control characters) is required',
    );
  }
  const candidateId = input.candidateId ?? null;
  if (
    candidateId !== null &&
    (typeof candidateId !== 'string' || !CANDIDATE_ID.test(candidateId))
  ) {
    throw bad('candidateId', 'a candidate id is 1–100 of A-Z a-z 0-9 _ . : -');
  }
  const requestJson = encode('request', input.request ?? null);
  if (Buffer.byteLength(requestJson) > REQUEST_LIMIT_BYTES) {
    throw new DocketError('PAYLOAD_TOO_LARGE', 'the apply request exceeds 64 KiB', {
      field: 'request',
      limit: REQUEST_LIMIT_BYTES,
    });
  }
  return {
    candidateId,
    idempotencyKey: input.idempotencyKey,
    request: JSON.parse(requestJson) as JsonValue,
    // The candidate is part of what the key stands for: the same key choosing another one
    // is a different request.
    requestHash: sha256Hex(canonicalJson({ candidateId, request: JSON.parse(requestJson) })),
  };
}

/** Checks a rejection reason (at most 1000 characters). */
export function checkReason(reason: unknown): string | null {
  if (reason === undefined || reason === null) return null;
  if (typeof reason !== 'string' || reason.length > 1000) {
    throw bad('reason', 'reason must be at most 1000 characters');
  }
  return reason;
}
