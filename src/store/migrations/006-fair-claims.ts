import type { DocketMigration } from './index.js';

// Fair claims across tenants (SPEC Q-11). A claim now enumerates the tenants that have pending
// jobs (a loose index scan: one descent per tenant over the leading column) and takes each
// tenant's share in its own (priority, available_at, id) order, so it needs that order per
// tenant. jobs_fair replaces jobs_claim rather than joining it: every claim and completion is a
// non-HOT update, so an extra pending index would cost an entry per enqueue and retry, and no
// statement needs the cross-tenant order any more (claims are per tenant, and the Redis lane's
// reconciliation walks pending jobs in this index's order). Same index on both dialects.
const statements = [
  `create index jobs_fair on jobs (tenant_id, priority, available_at, id) where status = 'pending'`,
  `drop index jobs_claim`,
];

/** Per-tenant claim order for round-robin claims across tenants. */
export const m006FairClaims: DocketMigration = {
  name: '006-fair-claims',
  postgres: statements,
  sqlite: statements,
  down: {
    postgres: [
      `create index jobs_claim on jobs (priority, available_at, id) where status = 'pending'`,
      `drop index jobs_fair`,
    ],
    sqlite: [
      `create index jobs_claim on jobs (priority, available_at, id) where status = 'pending'`,
      `drop index jobs_fair`,
    ],
  },
};
