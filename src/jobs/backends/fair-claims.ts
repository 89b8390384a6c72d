// Round-robin claiming across tenants on the SQL backends (SPEC Q-11), the same semantics as
// the Redis lane's CLAIM script:
//
// - A claim of `limit` jobs is made of rounds. One round visits up to `limit` tenants that have
//   pending jobs, in tenant-id order starting after a cursor and wrapping around (the "ring"),
//   and gives each of them an equal share of the limit: `limit / n` jobs, plus one more for the
//   first `limit % n` tenants of the ring. A tenant's share is its own first due jobs in
//   (priority, available_at, id) order. So when `limit` ≥ the number of tenants, every tenant
//   with due jobs gets at least one job in every round, and one tenant's flood delays another
//   tenant's job by at most one round.
// - The cursor then moves to the last tenant that was given a share's extra job (or the ring's
//   last tenant), so the next round starts after it: with more tenants than `limit`, every
//   tenant is visited within ceil(tenants / limit) rounds, and the remainder slots rotate.
// - Priority orders jobs within a tenant, never across tenants: priority is chosen by whoever
//   enqueues, so a tenant that enqueues a flood at the highest priority must not be able to
//   take the others' share. (The jobs of one claim are handed to the worker in priority order.)
// - When tenants had fewer due jobs than their share, the slots left over go to another round
//   in the same claim, so a worker is not left with a short claim while work is waiting.
//
// The cursor lives in the backend instance (one per process): it only decides where the next
// rotation starts, so losing it on a restart costs nothing but that rotation's start.

/** The outcome of one fair round. */
export interface FairRound<J extends { tenantId: string }> {
  /** Jobs claimed in this round. */
  jobs: J[];
  /** Tenants the round visited (the ring's size; 0 = no tenant has pending jobs). */
  tenants: number;
  /** Where the next round starts (after this tenant); unchanged when null. */
  cursor: string | null;
}

/** Rounds per claim at most (each visits up to `limit` tenants). */
const MAX_ROUNDS = 8;

/** The share of `limit` a ring's tenant at 1-based position `pos` of `n` gets. */
export function fairShare(limit: number, n: number, pos: number): number {
  return Math.floor(limit / n) + (pos <= limit % n ? 1 : 0);
}

/** The tenant a round's cursor moves to: the last one given an extra job, or the ring's last. */
export function cursorPosition(limit: number, n: number): number {
  return limit % n || n;
}

/**
 * Claims up to `limit` jobs in fair rounds (see the header), keeping the rotation's cursor.
 * `round` runs one round, atomically, for at most `limit` jobs after `cursor`.
 */
export class FairClaims {
  private cursor = '';

  /** Runs rounds until `limit` jobs are claimed or no visited tenant can have more. */
  async claim<J extends { tenantId: string }>(
    limit: number,
    round: (p: { limit: number; cursor: string }) => Promise<FairRound<J>>,
  ): Promise<J[]> {
    const jobs: J[] = [];
    for (let i = 0; i < MAX_ROUNDS && jobs.length < limit; i++) {
      const want = limit - jobs.length;
      const r = await round({ limit: want, cursor: this.cursor });
      if (r.cursor !== null) this.cursor = r.cursor;
      jobs.push(...r.jobs);
      if (r.tenants === 0 || !mayHaveMore(r, want)) break;
    }
    return jobs;
  }
}

/**
 * Whether another round could claim more: the ring was cut at `limit` tenants (others wait
 * after the cursor), or some tenant used its whole share (it may have more due jobs).
 */
function mayHaveMore(r: FairRound<{ tenantId: string }>, limit: number): boolean {
  if (r.jobs.length >= limit) return false;
  if (r.tenants >= limit) return true;
  const least = Math.floor(limit / r.tenants);
  const perTenant = new Map<string, number>();
  for (const j of r.jobs) perTenant.set(j.tenantId, (perTenant.get(j.tenantId) ?? 0) + 1);
  for (const n of perTenant.values()) if (n >= least) return true;
  return false;
}
