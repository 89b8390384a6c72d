// Proposal rows on both stores (SPEC S-7). Every decision is a guarded UPDATE from `open` (the
// affected row is checked), and the database's triggers refuse every other transition and any
// change to a proposal's content or to a stored apply outcome, whoever writes.
import type { Transaction } from 'kysely';
import { appendAuditEvents, prepareAuditEvent, principalFromActor } from '../audit/index.js';
import type { JsonValue } from '../audit/content.js';
import type { DocketDatabase, ProposalAppliesTable, ProposalsTable } from '../store/schema.js';
import type { Proposal, ProposalCandidate, ProposalState, ProposalVersion } from './types.js';

type Trx = Transaction<DocketDatabase>;

/** The row as the API shows it. */
export function rowToProposal(r: ProposalsTable): Proposal {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    kind: r.kind,
    target: r.target,
    changes: JSON.parse(r.changes) as JsonValue,
    candidates: r.candidates === null ? null : (JSON.parse(r.candidates) as ProposalCandidate[]),
    baseVersion: JSON.parse(r.base_version) as ProposalVersion,
    state: r.state as ProposalState,
    expiresAt: Number(r.expires_at),
    createdBy: r.created_by,
    traceId: r.trace_id,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    decidedAt: r.decided_at === null ? null : Number(r.decided_at),
    decidedBy: r.decided_by,
    reason: r.reason,
    appliedCandidate: r.applied_candidate,
    appliedKey: r.applied_key,
  };
}

/** A stored apply outcome. */
export type StoredApply = ProposalAppliesTable;

/** A decision: the state a proposal leaves `open` for, and what is recorded with it. */
export interface ProposalDecision {
  tenant: string;
  id: string;
  to: Exclude<ProposalState, 'open'>;
  actor: string;
  now: number;
  reason?: string | null;
  appliedCandidate?: string | null;
  appliedKey?: string | null;
}

/** Proposal reads and guarded writes; every method runs in the caller's transaction. */
export const proposalRows = {
  /** Inserts a new `open` proposal. */
  async insert(trx: Trx, row: ProposalsTable): Promise<Proposal> {
    const stored = await trx
      .insertInto('proposals')
      .values(row)
      .returningAll()
      .executeTakeFirstOrThrow();
    return rowToProposal(stored);
  },

  /**
   * Reads the proposal while locking it for a decision: a no-op write (the triggers let it pass
   * even on a final proposal) takes PostgreSQL's row lock and SQLite's write lock as the
   * transaction's first statement, so a concurrent apply waits here and then sees the winner's
   * outcome instead of deciding again (and SQLite never has to upgrade a read lock).
   */
  async lock(trx: Trx, tenant: string, id: string): Promise<Proposal | null> {
    const row = await trx
      .updateTable('proposals')
      .set((eb) => ({ updated_at: eb.ref('updated_at') }))
      .where('tenant_id', '=', tenant)
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    return row ? rowToProposal(row) : null;
  },

  /** The stored outcome of `key` for this proposal, or null. */
  async findApply(trx: Trx, tenant: string, id: string, key: string): Promise<StoredApply | null> {
    const row = await trx
      .selectFrom('proposal_applies')
      .selectAll()
      .where('tenant_id', '=', tenant)
      .where('proposal_id', '=', id)
      .where('idempotency_key', '=', key)
      .executeTakeFirst();
    return row ?? null;
  },

  /** Stores an apply outcome (never updated afterwards). */
  async insertApply(trx: Trx, row: StoredApply): Promise<void> {
    await trx.insertInto('proposal_applies').values(row).execute();
  },

  /** `open → d.to`, guarded; null when the proposal was not open (or does not exist). */
  async decide(trx: Trx, d: ProposalDecision): Promise<Proposal | null> {
    const row = await trx
      .updateTable('proposals')
      .set({
        state: d.to,
        updated_at: d.now,
        decided_at: d.now,
        decided_by: d.actor,
        reason: d.reason ?? null,
        applied_candidate: d.appliedCandidate ?? null,
        applied_key: d.appliedKey ?? null,
      })
      .where('tenant_id', '=', d.tenant)
      .where('id', '=', d.id)
      .where('state', '=', 'open')
      .returningAll()
      .executeTakeFirst();
    return row ? rowToProposal(row) : null;
  },

  /** One proposal of a tenant, or null. */
  async get(trx: Trx, tenant: string, id: string): Promise<Proposal | null> {
    const row = await trx
      .selectFrom('proposals')
      .selectAll()
      .where('tenant_id', '=', tenant)
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? rowToProposal(row) : null;
  },

  /** A page of a tenant's proposals, newest first. */
  async list(
    trx: Trx,
    p: {
      tenant: string;
      states?: readonly ProposalState[];
      kind?: string;
      target?: string;
      before?: string;
      limit: number;
    },
  ): Promise<Proposal[]> {
    let q = trx.selectFrom('proposals').selectAll().where('tenant_id', '=', p.tenant);
    if (p.states?.length) q = q.where('state', 'in', [...p.states]);
    if (p.kind !== undefined) q = q.where('kind', '=', p.kind);
    if (p.target !== undefined) q = q.where('target', '=', p.target);
    if (p.before) q = q.where('id', '<', p.before);
    const rows = await q.orderBy('id', 'desc').limit(p.limit).execute();
    return rows.map(rowToProposal);
  },

  /** Open proposals of every tenant past their deadline, soonest first (the sweep's work). */
  async expiredOpen(trx: Trx, p: { now: number; limit: number }) {
    return trx
      .selectFrom('proposals')
      .select(['tenant_id', 'id', 'kind', 'target'])
      .where('state', '=', 'open')
      .where('expires_at', '<=', p.now)
      .orderBy('expires_at')
      .limit(p.limit)
      .execute();
  },
};

/** Writes a proposal's audit event in the same transaction as its change. */
export async function auditProposal(
  trx: Trx,
  proposal: Proposal,
  action: string,
  ctx: { actor: string; traceId: string; now: number },
  data: Record<string, JsonValue>,
  outcome: 'success' | 'failure' = 'success',
): Promise<void> {
  const prepared = prepareAuditEvent({
    tenant: proposal.tenantId,
    traceId: ctx.traceId,
    createdAt: ctx.now,
    action,
    outcome,
    resource: { type: 'proposal', id: proposal.id, name: proposal.kind },
    actor: principalFromActor(ctx.actor),
    metadata: { target: proposal.target, ...data },
  });
  await appendAuditEvents(trx, [prepared], ctx.now);
}
