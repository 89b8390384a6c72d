// Proposals, confirm-before-apply (SPEC S-7): a generated change set waits, with an expiry and
// the version of its target it was made against, until a person applies or rejects it.
// Applying runs the kind's callback in one Docket transaction together with the proposal's
// guarded move to `applied`, the stored outcome of the request's idempotency key and the audit
// event: all of it commits, or none of it. A refusal (expired, stale, not open) is itself a
// decision that commits and is replayed to a repeat of the same request.
import type { Transaction } from 'kysely';
import type { Clock } from '../core/clock.js';
import { requireTenant, resolveTraceId } from '../core/context.js';
import { DocketError } from '../core/errors.js';
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
} from './input.js';
import { decideApply, notFound, SYSTEM_ACTOR } from './apply.js';
import { auditProposal, proposalRows } from './store.js';
import {
  PROPOSAL_STATES,
  type Proposal,
  type ProposalActorOptions,
  type ProposalApplyInput,
  type ProposalApplyOutcome,
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
    await auditProposal(
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
      decideApply(trx, {
        kindOf: (name) => this.kind(name),
        clock: () => this.deps.clock.now(),
        tenant,
        id,
        p,
        ctx,
      }),
    );
    if (decision.kind === 'refused') throw decision.error;
    return decision.outcome;
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
      await auditProposal(
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
        await auditProposal(
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
}
