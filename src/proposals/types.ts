import type { Transaction } from 'kysely';
import type { JsonValue } from '../audit/content.js';
import type { DocketDatabase } from '../store/schema.js';

/** The states of a proposal (SPEC S-7); the database refuses any other transition. */
export type ProposalState = 'open' | 'applied' | 'rejected' | 'expired' | 'stale';

/** Every proposal state, `open` first (the others are final). */
export const PROPOSAL_STATES: readonly ProposalState[] = [
  'open',
  'applied',
  'rejected',
  'expired',
  'stale',
];

/** A version of a proposal's target: whatever the application compares (a counter, an etag). */
export type ProposalVersion = string | number;

/** One alternative of a proposal the person confirming picks from (e.g. one of three slots). */
export interface ProposalCandidate {
  /** Unique within the proposal: 1–100 of `A-Z a-z 0-9 _ . : -`. */
  id: string;
  /** What choosing this candidate changes (JSON). Default null. */
  changes?: JsonValue;
  /** A line for the person confirming. Default none. */
  summary?: string;
}

/** A stored proposal. */
export interface Proposal {
  /** Time-sortable id (UUIDv7). */
  id: string;
  /** The tenant it belongs to. */
  tenantId: string;
  /** The registered kind whose apply callback applies it. */
  kind: string;
  /** What it changes, in the application's words (`invoice:42`). */
  target: string;
  /** The change set (JSON), exactly as created. */
  changes: JsonValue;
  /** The alternatives to pick from, or null. */
  candidates: ProposalCandidate[] | null;
  /** The target's version the change set was generated against. */
  baseVersion: ProposalVersion;
  /** Where it is in its lifecycle. */
  state: ProposalState;
  /** After this (epoch ms) it can no longer be applied. */
  expiresAt: number;
  /** Who created it (`apikey:<id>`, `library`). */
  createdBy: string;
  /** Trace of the operation that created it. */
  traceId: string;
  /** Created, epoch ms. */
  createdAt: number;
  /** Last changed, epoch ms. */
  updatedAt: number;
  /** When it left `open`, epoch ms. */
  decidedAt: number | null;
  /** Who applied or rejected it (`system:proposals` for expiry and staleness). */
  decidedBy: string | null;
  /** Why it was rejected (or what made it stale). */
  reason: string | null;
  /** The candidate that was applied. */
  appliedCandidate: string | null;
  /** The idempotency key of the request that applied it. */
  appliedKey: string | null;
}

/** What the apply callback gets besides the transaction, the proposal and the candidate. */
export interface ProposalApplyContext {
  /** The request as the caller sent it (the HTTP body without its idempotency key). */
  request: JsonValue;
  /** The request's idempotency key. */
  idempotencyKey: string;
  /** Who applies it. */
  actor: string;
  /** The time of the decision, epoch ms (the injected clock). */
  now: number;
}

/** An application's proposal kind: how to apply one and how to read its target's version. */
export interface ProposalKind<DB = DocketDatabase> {
  /**
   * Applies the change set with writes through `tx`, Docket's transaction: they commit together
   * with the proposal's move to `applied` and the stored outcome, or (if this throws) none of
   * them does. Returns the result replayed to repeated requests (JSON, at most 64 KiB).
   */
  apply(
    tx: Transaction<DB>,
    proposal: Proposal,
    candidate: ProposalCandidate | null,
    context: ProposalApplyContext,
  ): Promise<JsonValue | void> | JsonValue | void;
  /**
   * Reads the target's current version in `tx` (null when the target is gone): a version other
   * than the proposal's base version makes it stale. Also the default base version at creation.
   */
  currentVersion(
    tx: Transaction<DB>,
    proposal: Pick<Proposal, 'id' | 'tenantId' | 'kind' | 'target' | 'changes'>,
  ): Promise<ProposalVersion | null> | ProposalVersion | null;
  /** Checks a change set at creation; throw to refuse it (VALIDATION_FAILED). Default none. */
  validate?(changes: JsonValue, candidates: ProposalCandidate[] | null): void;
}

/** What `proposals.create` takes. */
export interface ProposalInput {
  /** A registered kind. */
  kind: string;
  /** What it changes: 1–500 characters without control characters. */
  target: string;
  /** The change set: a JSON object or array. */
  changes: JsonValue;
  /** Alternatives to pick from at apply time (1–50, unique ids). Default none. */
  candidates?: ProposalCandidate[];
  /** Until when it may be applied: epoch ms or a Date, in the future, at most 366 days ahead. */
  expiresAt: number | Date;
  /** The target's version it was generated against. Default the kind's `currentVersion` now. */
  baseVersion?: ProposalVersion;
}

/** Who acts, for which tenant, in which trace. */
export interface ProposalActorOptions {
  /** Tenant; default the ambient tenant context. */
  tenant?: string;
  /** Recorded as the actor (`apikey:<id>`, `user:<id>`). Default `library`. */
  actor?: string;
  /** Trace id (32 hex). Default the ambient trace or a new one. */
  traceId?: string;
}

/** What `proposals.apply` takes. */
export interface ProposalApplyInput {
  /** The chosen candidate; required when the proposal has candidates, refused otherwise. */
  candidateId?: string;
  /** The request's idempotency key: 1–255 characters without control characters. */
  idempotencyKey: string;
  /** The request (JSON); its canonical hash, with the candidate, is compared on a repeat. Default null. */
  request?: JsonValue;
}

/** What an apply returns. */
export interface ProposalApplyOutcome {
  /** The proposal after the apply (`applied`). */
  proposal: Proposal;
  /** What the apply callback returned (null for nothing). */
  result: JsonValue | null;
  /** The candidate applied. */
  candidateId: string | null;
  /** True when this is the stored outcome of an earlier request with the same key and hash. */
  replayed: boolean;
}

/** Filters of `proposals.list`. */
export interface ProposalListFilter {
  /** Only these states. Default all. */
  state?: ProposalState[];
  /** Only this kind. Default all. */
  kind?: string;
  /** Only this target. Default all. */
  target?: string;
  /** The previous page's `nextCursor`. */
  cursor?: string;
  /** Page size, 1–200. Default 50. */
  limit?: number;
}
