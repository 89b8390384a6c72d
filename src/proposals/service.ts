// Proposals, confirm-before-apply (SPEC S-7): a generated change set waits, with an expiry and
// the version of its target it was made against, until a person applies or rejects it.
// Applying runs the kind's callback in one Docket transaction together with the proposal's
// guarded move to `applied`, the stored outcome of the request's idempotency key and the audit
// event: all of it commits, or none of it. A refusal (expired, stale, not open) is itself a
// decision that commits and is replayed to a repeat of the same request.
import type { Transaction } from 'kysely';
import { appendAuditEvents, prepareAuditEvent, principalFromActor } from '../audit/index.js';
import type { JsonValue } from '../audit/content.js';
import { canonicalJson } from '../core/canonical-json.js';
import type { Clock } from '../core/clock.js';
import { requireTenant, resolveTraceId } from '../core/context.js';
import { DocketError, ERROR_CODES, type ErrorCode } from '../core/errors.js';
import { isUuid, type IdGenerator } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import type { Store } from '../store/index.js';
import type { DocketDatabase } from '../store/schema.js';
import { decodeCursor, encodeCursor } from '../jobs/backends/rows.js';
import {
  checkKindName,
  checkReason,
  checkVersion,
  prepareApply,
  prepareProposal,
  type PreparedApply,
} from './input.js';
import { proposalRows, type StoredApply } from './store.js';
import {
  PROPOSAL_STATES,
  type Proposal,
  type ProposalActorOptions,
  type ProposalApplyInput,
  type ProposalApplyOutcome,
  type ProposalCandidate,
  type ProposalInput,
  type ProposalKind,
  type ProposalListFilter,
} from './types.js';

type Trx = Transaction<DocketDatabase>;

/** Proposal options of createDocket. */
export interface ProposalsOptions {
  /** Kinds registered at construction, by name. Default none. */
  kinds?: Record<string, ProposalKind<DocketDatabase>>;
  /** Largest change set (canonical JSON, with its candidates), bytes. Default 262,144. */
  changesLimitBytes?: number;
}

/** What the service needs from Docket. */
export interface ProposalsDeps {
  /** The store, opened on first use (the service itself does no I/O until called). */
  store: () => Promise<Store>;
  clock: Clock;
  ids: IdGenerator;
  logger: Logger;
  /** The tenant of a transaction opened by withTransaction. */
  tenantOfTx: (tx: object) => string | undefined;
}

const RESULT_LIMIT_BYTES = 64 * 1024;
const SYSTEM_ACTOR = 'system:proposals';

type Decision =
  { kind: 'applied'; outcome: ProposalApplyOutcome } | { kind: 'refused'; error: DocketError };

/** Validates proposals options (CONFIG_INVALID) and fills the defaults. */
export function resolveProposalsOptions(o: ProposalsOptions = {}) {
  const limit = o.changesLimitBytes ?? 262_144;
  if (!Number.isSafeInteger(limit) || limit < 1024 || limit > 16 * 1024 * 1024) {
    throw new DocketError('CONFIG_INVALID', 'proposals.changesLimitBytes must be 1 KiB – 16 MiB', {
      name: 'proposals.changesLimitBytes',
    });
  }
  return Object.freeze({ changesLimitBytes: limit, kinds: { ...o.kinds } });
}

const notFound = (id: string) =>
  new DocketError('PROPOSAL_NOT_FOUND', `proposal ${id} not found`, { proposalId: id });

/** The proposals of one Docket instance. */
export class ProposalsService {
  private readonly kinds = new Map<string, ProposalKind<DocketDatabase>>();
  private readonly limitBytes: number;

  constructor(
    private readonly deps: ProposalsDeps,
    options: ProposalsOptions = {},
  ) {
    const o = resolveProposalsOptions(options);
    this.limitBytes = o.changesLimitBytes;
    for (const [name, def] of Object.entries(o.kinds)) this.register(name, def);
  }

  /** Declares a kind: its apply callback and how to read its target's version. */
  register<DB>(name: string, def: ProposalKind<DB>): void {
    checkKindName(name);
    if (!def || typeof def.apply !== 'function' || typeof def.currentVersion !== 'function') {
      throw new DocketError('VALIDATION_FAILED', 'a proposal kind needs apply and currentVersion', {
        field: 'kind',
        kind: name,
      });
    }
    if (this.kinds.has(name)) {
      throw new DocketError('VALIDATION_FAILED', `proposal kind ${name} is registered already`, {
        field: 'kind',
        kind: name,
      });
    }
    this.kinds.set(name, def as unknown as ProposalKind<DocketDatabase>);
  }

  private async withTenant<T>(tenant: string, fn: (trx: Trx) => Promise<T>): Promise<T> {
    return (await this.deps.store()).withTenantTransaction(tenant, fn);
  }

  private kind(name: string): ProposalKind<DocketDatabase> {
    const def = this.kinds.get(name);
    if (!def) {
      throw new DocketError('PROPOSAL_KIND_UNKNOWN', `no proposal kind ${name} is registered`, {
        kind: name,
        known: [...this.kinds.keys()],
      });
    }
    return def;
  }

  /** Creates an `open` proposal in its own transaction (audited). */
  create(input: ProposalInput, o: ProposalActorOptions = {}): Promise<Proposal> {
    const tenant = requireTenant(o.tenant);
    return this.withTenant(tenant, (trx) => this.insert(trx, tenant, input, o));
  }

  /** Creates an `open` proposal inside a transaction from withTransaction. */
  createTx(tx: Trx, input: ProposalInput, o: Omit<ProposalActorOptions, 'tenant'> = {}) {
    const tenant = this.deps.tenantOfTx(tx);
    if (!tenant) {
      throw new DocketError(
        'TX_INVALID',
        'proposals.createTx needs a transaction from docket.withTransaction',
      );
    }
    return this.insert(tx, tenant, input, o);
  }

  private async insert(
    trx: Trx,
    tenant: string,
    input: ProposalInput,
    o: Omit<ProposalActorOptions, 'tenant'>,
  ): Promise<Proposal> {
    const now = this.deps.clock.now();
    const p = prepareProposal(input, { now, limitBytes: this.limitBytes });
    const kind = this.kind(p.kind);
    if (kind.validate) {
      try {
        kind.validate(p.changes, p.candidates);
      } catch (err) {
        if (err instanceof DocketError) throw err;
        throw new DocketError(
          'VALIDATION_FAILED',
          `the ${p.kind} change set was refused: ${(err as Error).message}`,
          { field: 'changes', kind: p.kind },
        );
      }
    }
    const id = this.deps.ids.next();
    let baseVersion = p.baseVersion;
    if (baseVersion === undefined) {
      const current = await kind.currentVersion(trx, {
        id,
        tenantId: tenant,
        kind: p.kind,
        target: p.target,
        changes: p.changes,
      });
      if (current === null) {
        throw new DocketError('VALIDATION_FAILED', `target ${p.target} has no current version`, {
          field: 'target',
        });
      }
      baseVersion = checkVersion('currentVersion', current);
    }
    const traceId = resolveTraceId(o.traceId);
    const actor = o.actor ?? 'library';
    const proposal = await proposalRows.insert(trx, {
      id,
      tenant_id: tenant,
      kind: p.kind,
      target: p.target,
      changes: p.changesJson,
      candidates: p.candidatesJson,
      base_version: JSON.stringify(baseVersion),
      state: 'open',
      expires_at: p.expiresAt,
      created_by: actor,
      trace_id: traceId,
      created_at: now,
      updated_at: now,
      decided_at: null,
      decided_by: null,
      reason: null,
      applied_candidate: null,
      applied_key: null,
    });
    await this.audit(
      trx,
      proposal,
      'proposal.created',
      { actor, traceId, now },
      {
        target: p.target,
        expiresAt: p.expiresAt,
      },
    );
    return proposal;
  }

  /**
   * Applies an open proposal once. The same key and request return the stored outcome (the
   * callback is not called again), a different request under the key is IDEMPOTENCY_CONFLICT;
   * PROPOSAL_EXPIRED, PROPOSAL_STALE and PROPOSAL_NOT_OPEN refuse it (stored for the key too).
   */
  async apply(
    id: string,
    input: ProposalApplyInput,
    o: ProposalActorOptions = {},
  ): Promise<ProposalApplyOutcome> {
    const tenant = requireTenant(o.tenant);
    const p = prepareApply(input);
    const ctx = { actor: o.actor ?? 'library', traceId: resolveTraceId(o.traceId) };
    if (typeof id !== 'string' || !isUuid(id)) throw notFound(String(id));
    const decision = await this.withTenant(tenant, (trx) =>
      this.decideApply(trx, tenant, id, p, ctx),
    );
    if (decision.kind === 'refused') throw decision.error;
    return decision.outcome;
  }

  private async decideApply(
    trx: Trx,
    tenant: string,
    id: string,
    p: PreparedApply,
    ctx: { actor: string; traceId: string },
  ): Promise<Decision> {
    const proposal = await proposalRows.lock(trx, tenant, id);
    if (!proposal) throw notFound(id);
    const stored = await proposalRows.findApply(trx, tenant, id, p.idempotencyKey);
    if (stored) return replay(proposal, stored, p);
    const candidate = pickCandidate(proposal, p.candidateId);
    const now = this.deps.clock.now();
    const refuse = async (
      code: ErrorCode,
      message: string,
      to?: 'expired' | 'stale',
      reason?: string,
    ): Promise<Decision> => {
      const after = to
        ? await proposalRows.decide(trx, { tenant, id, to, actor: SYSTEM_ACTOR, now, reason })
        : proposal;
      const details = { proposalId: id, state: (after ?? proposal).state };
      await this.storeOutcome(trx, proposal, p, ctx, now, { code, message });
      await this.audit(
        trx,
        proposal,
        'proposal.apply_refused',
        { ...ctx, now },
        { code, idempotencyKey: p.idempotencyKey },
        'failure',
      );
      return { kind: 'refused', error: new DocketError(code, message, details) };
    };
    if (proposal.state !== 'open') {
      return refuse('PROPOSAL_NOT_OPEN', `proposal ${id} is ${proposal.state}, not open`);
    }
    if (now >= proposal.expiresAt) {
      return refuse(
        'PROPOSAL_EXPIRED',
        `proposal ${id} expired at ${new Date(proposal.expiresAt).toISOString()}`,
        'expired',
      );
    }
    const kind = this.kind(proposal.kind);
    const current = await kind.currentVersion(trx, proposal);
    if (current === null || canonicalJson(current) !== canonicalJson(proposal.baseVersion)) {
      const where = current === null ? 'gone' : `at version ${canonicalJson(current)}`;
      return refuse(
        'PROPOSAL_STALE',
        `proposal ${id} was made against version ${canonicalJson(proposal.baseVersion)} of ` +
          `${proposal.target}, which is now ${where}`,
        'stale',
        `the target is now ${where}`,
      );
    }
    const returned = await kind.apply(trx, proposal, candidate, {
      request: p.request,
      idempotencyKey: p.idempotencyKey,
      actor: ctx.actor,
      now,
    });
    const result = encodeResult(returned);
    const applied = await proposalRows.decide(trx, {
      tenant,
      id,
      to: 'applied',
      actor: ctx.actor,
      now,
      appliedCandidate: p.candidateId,
      appliedKey: p.idempotencyKey,
    });
    // The row is locked since the first statement, so this cannot miss; if it ever did, the
    // callback's writes must not commit without the decision.
    if (!applied) throw new DocketError('PROPOSAL_NOT_OPEN', `proposal ${id} is not open`);
    await this.storeOutcome(trx, applied, p, ctx, now, { result });
    await this.audit(
      trx,
      applied,
      'proposal.applied',
      { ...ctx, now },
      {
        idempotencyKey: p.idempotencyKey,
        ...(p.candidateId ? { candidateId: p.candidateId } : {}),
      },
    );
    return {
      kind: 'applied',
      outcome: {
        proposal: applied,
        result: result === null ? null : (JSON.parse(result) as JsonValue),
        candidateId: p.candidateId,
        replayed: false,
      },
    };
  }

  private storeOutcome(
    trx: Trx,
    proposal: Proposal,
    p: PreparedApply,
    ctx: { actor: string; traceId: string },
    now: number,
    o: { result?: string | null; code?: ErrorCode; message?: string },
  ): Promise<void> {
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

  /** Rejects an open proposal (audited); PROPOSAL_NOT_OPEN, PROPOSAL_EXPIRED past its expiry. */
  async reject(
    id: string,
    r: { reason?: string } = {},
    o: ProposalActorOptions = {},
  ): Promise<Proposal> {
    const tenant = requireTenant(o.tenant);
    const reason = checkReason(r?.reason);
    const actor = o.actor ?? 'library';
    const traceId = resolveTraceId(o.traceId);
    if (typeof id !== 'string' || !isUuid(id)) throw notFound(String(id));
    const decided = await this.withTenant(tenant, async (trx) => {
      const proposal = await proposalRows.lock(trx, tenant, id);
      if (!proposal) throw notFound(id);
      if (proposal.state !== 'open') {
        return new DocketError(
          'PROPOSAL_NOT_OPEN',
          `proposal ${id} is ${proposal.state}, not open`,
          {
            proposalId: id,
            state: proposal.state,
          },
        );
      }
      const now = this.deps.clock.now();
      const expired = now >= proposal.expiresAt;
      const after = await proposalRows.decide(trx, {
        tenant,
        id,
        to: expired ? 'expired' : 'rejected',
        actor: expired ? SYSTEM_ACTOR : actor,
        now,
        reason: expired ? null : reason,
      });
      if (!after) throw new DocketError('PROPOSAL_NOT_OPEN', `proposal ${id} is not open`);
      await this.audit(
        trx,
        after,
        expired ? 'proposal.expired' : 'proposal.rejected',
        { actor, traceId, now },
        reason && !expired ? { reason: reason.slice(0, 500) } : {},
      );
      if (!expired) return after;
      return new DocketError('PROPOSAL_EXPIRED', `proposal ${id} expired before it was rejected`, {
        proposalId: id,
        state: after.state,
      });
    });
    if (decided instanceof DocketError) throw decided;
    return decided;
  }

  /** One proposal; PROPOSAL_NOT_FOUND if absent or another tenant's. */
  async get(id: string, o: { tenant?: string } = {}): Promise<Proposal> {
    const tenant = requireTenant(o.tenant);
    if (typeof id !== 'string' || !isUuid(id)) throw notFound(String(id));
    const proposal = await this.withTenant(tenant, (trx) => proposalRows.get(trx, tenant, id));
    if (!proposal) throw notFound(id);
    return proposal;
  }

  /** A page of the tenant's proposals, newest first. */
  async list(
    filter: ProposalListFilter = {},
    o: { tenant?: string } = {},
  ): Promise<{ items: Proposal[]; nextCursor: string | null }> {
    const tenant = requireTenant(o.tenant);
    const limit = filter.limit ?? 50;
    const bad = (field: string, message: string) =>
      new DocketError('VALIDATION_FAILED', message, { field });
    if (!Number.isInteger(limit) || limit < 1 || limit > 200) {
      throw bad('limit', 'limit must be an integer 1–200');
    }
    for (const s of filter.state ?? []) {
      if (!PROPOSAL_STATES.includes(s)) throw bad('state', `unknown proposal state ${String(s)}`);
    }
    if (filter.kind !== undefined) checkKindName(filter.kind);
    if (filter.target !== undefined && (typeof filter.target !== 'string' || !filter.target)) {
      throw bad('target', 'target must be a non-empty string');
    }
    const before = filter.cursor ? decodeCursor(filter.cursor) : undefined;
    const rows = await this.withTenant(tenant, (trx) =>
      proposalRows.list(trx, {
        tenant,
        states: filter.state,
        kind: filter.kind,
        target: filter.target,
        before,
        limit: limit + 1,
      }),
    );
    const items = rows.slice(0, limit);
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null };
  }

  /**
   * Moves open proposals past their expiry to `expired` across tenants (audited); returns how
   * many. The reaper's interval runs it; apply and reject also expire what they find expired.
   */
  async expireOnce(): Promise<number> {
    const now = this.deps.clock.now();
    return (await this.deps.store()).withSystemTransaction(async (trx) => {
      let moved = 0;
      for (const r of await proposalRows.expiredOpen(trx, { now, limit: 500 })) {
        const after = await proposalRows.decide(trx, {
          tenant: r.tenant_id,
          id: r.id,
          to: 'expired',
          actor: SYSTEM_ACTOR,
          now,
        });
        if (!after) continue;
        moved++;
        await this.audit(
          trx,
          after,
          'proposal.expired',
          { actor: SYSTEM_ACTOR, traceId: resolveTraceId(), now },
          {},
        );
      }
      return moved;
    });
  }

  private async audit(
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
}

/** The stored outcome of a repeated request, or IDEMPOTENCY_CONFLICT for a different one. */
function replay(proposal: Proposal, stored: StoredApply, p: PreparedApply): Decision {
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
