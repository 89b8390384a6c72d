import { Counter, Gauge, Registry } from 'prom-client';

/** Prometheus metrics of one Docket instance (SPEC OPS-4); no tenant labels, so no tenant data leaks. */
export interface DocketMetrics {
  /** The registry `/metrics` renders. */
  readonly registry: Registry;
  /** Audit events written to the store. */
  readonly auditWritten: Counter;
  /** Audit events dropped, by reason (`buffer_full`, `rejected`, `shutdown`). */
  readonly auditDropped: Counter<'reason'>;
  /** Batched audit writes that failed. */
  readonly auditFlushFailures: Counter;
  /** Audit events waiting in the writer's buffer. */
  readonly auditBuffered: Gauge;
}

/** A fresh registry per instance: two Docket instances in one process never share counters. */
export function createMetrics(): DocketMetrics {
  const registry = new Registry();
  const registers = [registry];
  return {
    registry,
    auditWritten: new Counter({
      name: 'docket_audit_events_written_total',
      help: 'Audit events written to the store.',
      registers,
    }),
    auditDropped: new Counter({
      name: 'docket_audit_events_dropped_total',
      help: 'Audit events dropped (buffer full, refused by the store, or unwritten at shutdown).',
      labelNames: ['reason'],
      registers,
    }),
    auditFlushFailures: new Counter({
      name: 'docket_audit_flush_failures_total',
      help: 'Batched audit writes that failed and were retried.',
      registers,
    }),
    auditBuffered: new Gauge({
      name: 'docket_audit_buffered_events',
      help: 'Audit events waiting in the batched writer.',
      registers,
    }),
  };
}
