// Lease locks for `overlap: 'forbid'` tasks (SPEC S-2). The database lease is the default
// backend; Redis (locks-redis.ts) and etcd (locks-etcd.ts) implement the same interface and pass
// the same conformance suite (test/conformance/scheduler-locks.test.ts). Every grant carries a
// fencing token that only grows, so a holder whose lease expired can be told apart from the
// current one by anything that checks the token.
import type { Kysely } from 'kysely';
import type { DocketDatabase } from '../store/schema.js';

/** A granted lock. */
export interface LockGrant {
  /** Lock name. */
  name: string;
  /** Who holds it (an execution id). */
  owner: string;
  /** Fencing token of this grant; strictly greater than every earlier grant's. */
  token: number;
  /** Epoch ms the lease ends unless extended. */
  expiresAt: number;
}

/** Parameters of lockAcquire. */
export interface LockAcquireParams {
  /** Lock name. */
  name: string;
  /** Owner to record. */
  owner: string;
  /** Lease length, ms. */
  leaseMs: number;
  /** Current time, epoch ms. */
  now: number;
}

/** A lock provider: acquire, extend and release by owner and fencing token. */
export interface LockBackend {
  /** Grants the lock if it is free or its lease expired; null when someone else holds it. */
  lockAcquire(p: LockAcquireParams): Promise<LockGrant | null>;
  /** Extends a lease still held under `grant.token`; false when it was lost. */
  lockExtend(p: { grant: LockGrant; leaseMs: number; now: number }): Promise<boolean>;
  /** Releases a lease still held under `grant.token`; false when it was lost already. */
  lockRelease(p: { grant: LockGrant }): Promise<boolean>;
  /** Connects, failing clearly (LOCKS_UNAVAILABLE naming the server) if it cannot. Optional. */
  start?(): Promise<void>;
  /** Disconnects. Optional. */
  stop?(): Promise<void>;
}

/** Lease locks in the `scheduler_locks` table, moved only by guarded single-row updates. */
export class DatabaseLockBackend implements LockBackend {
  constructor(private readonly db: Kysely<DocketDatabase>) {}

  async lockAcquire(p: LockAcquireParams): Promise<LockGrant | null> {
    const expiresAt = p.now + p.leaseMs;
    // First grant ever: the insert wins or conflicts; no read-then-write window.
    const inserted = await this.db
      .insertInto('scheduler_locks')
      .values({ name: p.name, owner: p.owner, token: 1, expires_at: expiresAt })
      .onConflict((oc) => oc.column('name').doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 1) {
      return { name: p.name, owner: p.owner, token: 1, expiresAt };
    }
    // Later grants: only a free (released or expired) lock moves, and its token grows.
    const row = await this.db
      .updateTable('scheduler_locks')
      .set((eb) => ({ owner: p.owner, token: eb('token', '+', 1), expires_at: expiresAt }))
      .where('name', '=', p.name)
      .where('expires_at', '<=', p.now)
      .returning('token')
      .executeTakeFirst();
    return row ? { name: p.name, owner: p.owner, token: Number(row.token), expiresAt } : null;
  }

  async lockExtend(p: { grant: LockGrant; leaseMs: number; now: number }): Promise<boolean> {
    const r = await this.db
      .updateTable('scheduler_locks')
      .set({ expires_at: p.now + p.leaseMs })
      .where('name', '=', p.grant.name)
      .where('token', '=', p.grant.token)
      .where('owner', '=', p.grant.owner)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async lockRelease(p: { grant: LockGrant }): Promise<boolean> {
    // The row stays (expired, no owner) so the next grant's token is larger than this one's.
    const r = await this.db
      .updateTable('scheduler_locks')
      .set({ owner: null, expires_at: 0 })
      .where('name', '=', p.grant.name)
      .where('token', '=', p.grant.token)
      .where('owner', '=', p.grant.owner)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }
}
