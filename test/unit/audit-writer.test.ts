// The batched audit writer's buffering, retry, alert and drop rules (SPEC A-5). The store is
// replaced by an in-memory append function here because the subject is the writer's own
// logic; the conformance suite runs the writer against SQLite and PostgreSQL.
import { describe, expect, it } from 'vitest';
import {
  AuditWriter,
  type AuditWriterOptions,
  type PreparedAuditEvent,
} from '../../src/audit/index.js';
import { DocketError } from '../../src/index.js';
import { silentLogger } from '../../src/core/logger.js';

function event(i: number): PreparedAuditEvent {
  return {
    id: `00000000-0000-7000-8000-${String(i).padStart(12, '0')}`,
    tenant_id: 't',
    action: 'doc.edit',
    outcome: 'success',
    resource_type: 'doc',
    resource_id: String(i),
    resource_name: null,
    actor_type: 'system',
    actor_id: 'test',
    actor_display: null,
    trace_id: 'a'.repeat(32),
    client_ip: null,
    user_agent: null,
    created_at: i,
    data: '{}',
  };
}

function harness(
  options: Partial<AuditWriterOptions>,
  append: (e: PreparedAuditEvent[]) => Promise<void>,
) {
  const counts = { written: 0, dropped: {} as Record<string, number>, failures: 0 };
  const alerts: Array<{ key: string; details: Record<string, unknown> }> = [];
  const writer = new AuditWriter(
    {
      append,
      raiseAlert: async (a) => {
        alerts.push(a);
      },
      metrics: {
        written: (n) => (counts.written += n),
        dropped: (n, reason) => (counts.dropped[reason] = (counts.dropped[reason] ?? 0) + n),
        flushFailed: () => (counts.failures += 1),
        buffered: () => undefined,
      },
      logger: silentLogger(),
    },
    {
      batchSize: 10,
      flushIntervalMs: 5,
      maxBuffer: 100,
      maxBlockMs: 20,
      retryBaseMs: 1,
      alertAfterFailures: 3,
      ...options,
    },
  );
  return { writer, counts, alerts };
}

const down = () => new DocketError('STORE_UNAVAILABLE', 'down');

describe('audit writer', () => {
  it('writes one batch per flush, by size and by interval', async () => {
    const batches: number[] = [];
    const { writer } = harness({}, async (e) => {
      batches.push(e.length);
    });
    await writer.start();
    for (let i = 0; i < 25; i++) await writer.enqueue(event(i));
    await writer.flush();
    expect(batches.reduce((a, b) => a + b, 0)).toBe(25);
    expect(Math.max(...batches)).toBeLessThanOrEqual(10);
    await writer.stop();
  });

  it('keeps events through a store outage, retries, and raises one alert after recovery', async () => {
    let failing = 5;
    const written: string[] = [];
    const { writer, counts, alerts } = harness({}, async (e) => {
      if (failing-- > 0) throw down();
      written.push(...e.map((x) => x.id));
    });
    await writer.start();
    for (let i = 0; i < 20; i++) await writer.enqueue(event(i));
    await expect(writer.flush()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    for (let i = 0; i < 50 && writer.pending > 0; i++) await new Promise((r) => setTimeout(r, 10));
    await writer.flush();
    expect(written).toHaveLength(20);
    expect(new Set(written).size).toBe(20);
    expect(counts.failures).toBeGreaterThanOrEqual(3);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]?.key).toBe('audit.writer.failing');
    await writer.stop();
  });

  it('drops and counts events when the buffer stays full, never waiting past maxBlockMs', async () => {
    const { writer, counts } = harness({ maxBuffer: 5, maxBlockMs: 15 }, async () => {
      throw down();
    });
    await writer.start();
    const t0 = performance.now();
    const results = [];
    for (let i = 0; i < 8; i++) results.push(await writer.enqueue(event(i)));
    const waited = performance.now() - t0;
    expect(results.filter((r) => r === 'queued')).toHaveLength(5);
    expect(results.filter((r) => r === 'dropped')).toHaveLength(3);
    expect(counts.dropped.buffer_full).toBe(3);
    // Three drops, each after at most maxBlockMs (plus timer slack).
    expect(waited).toBeLessThan(3 * 15 + 500);
    await writer.stop({ deadlineMs: 10 });
    expect(counts.dropped.shutdown).toBe(5);
  });

  it('isolates an event the store refuses so the rest of its batch is written', async () => {
    const written: string[] = [];
    const { writer, counts, alerts } = harness({}, async (e) => {
      if (e.some((x) => x.resource_id === '3')) throw new Error('check constraint');
      written.push(...e.map((x) => x.resource_id));
    });
    await writer.start();
    for (let i = 0; i < 6; i++) await writer.enqueue(event(i));
    await writer.flush();
    expect(written.sort()).toEqual(['0', '1', '2', '4', '5']);
    expect(counts.dropped.rejected).toBe(1);
    expect(alerts).toHaveLength(1);
    await writer.stop();
  });
});
