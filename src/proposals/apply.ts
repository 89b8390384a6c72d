// How one apply request is decided, inside its transaction (SPEC S-7): lock, replay a stored
// outcome, check the candidate, refuse (expired, stale, not open) or apply. Refusals are
// decisions that commit; only an error thrown by the kind's callback rolls everything back.
import type { Transaction } from 'kysely';
import type { JsonValue } from '../audit/content.js';
import { canonicalJson } from '../core/canonical-json.js';
import { DocketError, ERROR_CODES, type ErrorCode } from '../core/errors.js';
import type { DocketDatabase } from '../store/schema.js';
import type { PreparedApply } from './input.js';
import { auditProposal, proposalRows, type StoredApply } from './store.js';
import type { Proposal, ProposalApplyOutcome, ProposalCandidate, ProposalKind } from './types.js';

type Trx = Transaction<DocketDatabase>;

/** Who decides expiry and staleness. */
export const SYSTEM_ACTOR = 'system:proposals';
const RESULT_LIMIT_BYTES = 64 * 1024;

/** PROPOSAL_NOT_FOUND (also for another tenant's and malformed ids). */
export const notFound = (id: string) =>
  new DocketError('PROPOSAL_NOT_FOUND', `proposal ${id} not found`, { proposalId: id });

/** One apply request as it is being decided, inside its transaction. */
interface ApplyAttempt {
  trx: Trx;
  /** The proposal as locked at the start. */
  proposal: Proposal;
  p: PreparedApply;
  ctx: { actor: string; traceId: string };
  now: number;
}

/** One apply request and what deciding it needs. */
export interface ApplyRequest {
  /** The registered kind of a name (PROPOSAL_KIND_UNKNOWN if none). */
  kindOf: (name: string) => ProposalKind<DocketDatabase>;
  /** The injected clock, read once the proposal is locked. */
  clock: () => number;
  tenant: string;
  id: string;
  p: PreparedApply;
  ctx: { actor: string; traceId: string };
}

/** What the transaction decided: an outcome to return, or a refusal to raise after commit. */
export type ApplyDecision =
  { kind: 'applied'; outcome: ProposalApplyOutcome } | { kind: 'refused'; error: DocketError };

/**
 * Decides one apply request inside its transaction: replay, refusal or apply (see
 * docs/proposals.md, "What apply does, in order").
 */
export async function decideApply(trx: Trx, a: ApplyRequest): Promise<ApplyDecision> {
  const { kindOf, clock, tenant, id, p, ctx } = a;
  const proposal = await proposalRows.lock(trx, tenant, id);
  if (!proposal) throw notFound(id);
  const stored = await proposalRows.findApply(trx, tenant, id, p.idempotencyKey);
  if (stored) return replay(proposal, stored, p);
  const candidate = pickCandidate(proposal, p.candidateId);
  const at = { trx, proposal, p, ctx, now: clock() };
  if (proposal.state !== 'open') {
    return refuse(at, 'PROPOSAL_NOT_OPEN', `proposal ${id} is ${proposal.state}, not open`);
  }
  if (at.now >= proposal.expiresAt) {
    const when = new Date(proposal.expiresAt).toISOString();
    return refuse(at, 'PROPOSAL_EXPIRED', `proposal ${id} expired at ${when}`, {
      to: 'expired',
    });
  }
  const kind = kindOf(proposal.kind);
  const current = await kind.currentVersion(trx, proposal);
  if (current === null || canonicalJson(current) !== canonicalJson(proposal.baseVersion)) {
    const where = current === null ? 'gone' : `at version ${canonicalJson(current)}`;
    const base = canonicalJson(proposal.baseVersion);
    return refuse(
      at,
      'PROPOSAL_STALE',
      `proposal ${id} was made against version ${base} of ${proposal.target}, which is now ${where}`,
      { to: 'stale', reason: `the target is now ${where}` },
    );
  }
  return applyNow(at, kind, candidate);
}

/**
 * Runs the kind's callback, then the guarded `open → applied`, the stored outcome and the
 * audit event, all in the apply transaction.
 */
async function applyNow(
  at: ApplyAttempt,
  kind: ProposalKind<DocketDatabase>,
  candidate: ProposalCandidate | null,
): Promise<ApplyDecision> {
  const { trx, proposal, p, ctx, now } = at;
  const returned = await kind.apply(trx, proposal, candidate, {
    request: p.request,
    idempotencyKey: p.idempotencyKey,
    actor: ctx.actor,
    now,
  });
  const result = encodeResult(returned);
  const applied = await proposalRows.decide(trx, {
    tenant: proposal.tenantId,
    id: proposal.id,
    to: 'applied',
    actor: ctx.actor,
    now,
    appliedCandidate: p.candidateId,
    appliedKey: p.idempotencyKey,
  });
  // The row is locked since the first statement, so this cannot miss; if it ever did, the
  // callback's writes must not commit without the decision.
  if (!applied) throw new DocketError('PROPOSAL_NOT_OPEN', `proposal ${proposal.id} is not open`);
  await storeOutcome(at, { result });
  await auditProposal(
    trx,
    applied,
    'proposal.applied',
    { ...ctx, now },
    {
      idempotencyKey: p.idempotencyKey,
      ...(p.candidateId ? { candidateId: p.candidateId } : {}),
    },
  );
  const outcome = {
    proposal: applied,
    result: result === null ? null : (JSON.parse(result) as JsonValue),
    candidateId: p.candidateId,
    replayed: false,
  };
  return { kind: 'applied', outcome };
}

/**
 * A refusal is a decision: the proposal moves to `expired` or `stale` if that is the cause,
 * the refusal is stored for the key and audited, and the transaction commits before it is
 * raised.
 */
async function refuse(
  at: ApplyAttempt,
  code: ErrorCode,
  message: string,
  o: { to?: 'expired' | 'stale'; reason?: string } = {},
): Promise<ApplyDecision> {
  const { trx, proposal, p, ctx, now } = at;
  const after = o.to
    ? await proposalRows.decide(trx, {
        tenant: proposal.tenantId,
        id: proposal.id,
        to: o.to,
        actor: SYSTEM_ACTOR,
        now,
        reason: o.reason,
      })
    : proposal;
  await storeOutcome(at, { code, message });
  await auditProposal(
    trx,
    proposal,
    'proposal.apply_refused',
    { ...ctx, now },
    { code, idempotencyKey: p.idempotencyKey },
    'failure',
  );
  const details = { proposalId: proposal.id, state: (after ?? proposal).state };
  return { kind: 'refused', error: new DocketError(code, message, details) };
}

function storeOutcome(
  at: ApplyAttempt,
  o: { result?: string | null; code?: ErrorCode; message?: string },
): Promise<void> {
  const { trx, proposal, p, ctx, now } = at;
  return proposalRows.insertApply(trx, {
    tenant_id: proposal.tenantId,
    proposal_id: proposal.id,
    idempotency_key: p.idempotencyKey,
    request_hash: p.requestHash,
    candidate_id: p.candidateId,
    outcome: o.code ? 'refused' : 'applied',
    result: o.result ?? null,
    error_code: o.code ?? null,
    error_message: o.message?.slice(0, 2000) ?? null,
    actor: ctx.actor,
    trace_id: ctx.traceId,
    created_at: now,
  });
}

/** The stored outcome of a repeated request, or IDEMPOTENCY_CONFLICT for a different one. */
function replay(proposal: Proposal, stored: StoredApply, p: PreparedApply): ApplyDecision {
  if (stored.request_hash !== p.requestHash) {
    throw new DocketError(
      'IDEMPOTENCY_CONFLICT',
      `idempotency key ${p.idempotencyKey} was used for a different apply request of proposal ${proposal.id}`,
      { proposalId: proposal.id, idempotencyKey: p.idempotencyKey },
    );
  }
  if (stored.outcome === 'applied') {
    return {
      kind: 'applied',
      outcome: {
        proposal,
        result: stored.result === null ? null : (JSON.parse(stored.result) as JsonValue),
        candidateId: stored.candidate_id,
        replayed: true,
      },
    };
  }
  const code = (stored.error_code ?? 'INTERNAL') as ErrorCode;
  return {
    kind: 'refused',
    error: new DocketError(code in ERROR_CODES ? code : 'INTERNAL', stored.error_message ?? code, {
      proposalId: proposal.id,
      state: proposal.state,
      replayed: true,
    }),
  };
}

/** The chosen candidate; PROPOSAL_NO_CANDIDATE for a missing, extra or unknown one. */
function pickCandidate(proposal: Proposal, candidateId: string | null): ProposalCandidate | null {
  const unknown = (message: string) =>
    new DocketError('PROPOSAL_NO_CANDIDATE', message, {
      proposalId: proposal.id,
      candidateId,
      candidates: (proposal.candidates ?? []).map((c) => c.id),
    });
  if (!proposal.candidates) {
    if (candidateId !== null) throw unknown(`proposal ${proposal.id} has no candidates`);
    return null;
  }
  if (candidateId === null) throw unknown(`proposal ${proposal.id} needs a candidateId`);
  const found = proposal.candidates.find((c) => c.id === candidateId);
  if (!found) throw unknown(`proposal ${proposal.id} has no candidate ${candidateId}`);
  return found;
}

function encodeResult(value: JsonValue | void): string | null {
  if (value === undefined || value === null) return null;
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    text = undefined;
  }
  if (text === undefined) {
    throw new DocketError('VALIDATION_FAILED', 'an apply callback must return JSON', {
      field: 'result',
    });
  }
  if (Buffer.byteLength(text) > RESULT_LIMIT_BYTES) {
    throw new DocketError('PAYLOAD_TOO_LARGE', 'an apply result is at most 64 KiB', {
      field: 'result',
      limit: RESULT_LIMIT_BYTES,
    });
  }
  return text;
}
