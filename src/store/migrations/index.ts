import { m001Foundation } from './001-foundation.js';
import { m002Audit } from './002-audit.js';
import { m003JobKeys } from './003-job-keys.js';
import { m005RateLimits } from './005-rate-limits.js';
import { m006FairClaims } from './006-fair-claims.js';
import { m007Outbox } from './007-outbox.js';
import { m008WebhookDeliveries } from './008-webhook-deliveries.js';
import { m009Effects } from './009-effects.js';
import { m012Scheduler } from './012-scheduler.js';
import { m013Triggers } from './013-triggers.js';
import { m014Proposals } from './014-proposals.js';
import { m016OutboxInStorePublish } from './016-outbox-in-store-publish.js';
import { m017EffectsRetention } from './017-effects-retention.js';
import { m018AuditDayIndexes } from './018-audit-day-indexes.js';
import { m019AuditDayIndexesPostgres } from './019-audit-day-indexes-postgres.js';

/** A numbered, never-edited migration with one statement list per dialect. */
export interface DocketMigration {
  /** Sortable name, e.g. `001-foundation`. */
  name: string;
  /** Statements for PostgreSQL, run in order in one transaction. */
  postgres: readonly string[];
  /** Statements for SQLite, run in order in one transaction. */
  sqlite: readonly string[];
  /** The documented down path (only the latest release's migration must have one). */
  down: { postgres: readonly string[]; sqlite: readonly string[] };
}

/** Every migration, in order. Append; never edit a released one. */
export const MIGRATIONS: readonly DocketMigration[] = [
  m001Foundation,
  m002Audit,
  m003JobKeys,
  m005RateLimits,
  m006FairClaims,
  m007Outbox,
  m008WebhookDeliveries,
  m009Effects,
  m012Scheduler,
  m013Triggers,
  m014Proposals,
  m016OutboxInStorePublish,
  m017EffectsRetention,
  m018AuditDayIndexes,
  m019AuditDayIndexesPostgres,
];
