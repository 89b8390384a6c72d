import { Command } from 'commander';
import { DocketError } from '../core/errors.js';
import { intOption, say, withDocket } from './runtime.js';

interface EnqueueFlags {
  tenant: string;
  queue?: string;
  priority?: number;
  delayMs?: number;
  runAt?: string;
  idempotencyKey?: string;
  maxAttempts?: number;
  json?: boolean;
}

/** Parses the payload argument; INVALID_JSON when it is not JSON. */
export function parsePayload(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new DocketError(
      'INVALID_JSON',
      `the payload is not valid JSON: ${(err as Error).message}`,
    );
  }
}

/** `docket enqueue <type> <json> --tenant <id>`. */
export function enqueueCommand(): Command {
  return new Command('enqueue')
    .description('enqueue one job')
    .argument('<type>', 'job type')
    .argument('[json]', 'JSON payload', '{}')
    .requiredOption('--tenant <id>', 'tenant')
    .option('--queue <name>', 'queue')
    .option('--priority <n>', 'priority (smaller runs first)', intOption('priority', -1e6, 1e6))
    .option(
      '--delay-ms <ms>',
      'delay before the job may start',
      intOption('delay-ms', 0, 366 * 86_400_000),
    )
    .option('--run-at <iso>', 'earliest start time (ISO 8601)')
    .option('--idempotency-key <key>', 'tenant-scoped idempotency key')
    .option('--max-attempts <n>', 'attempts before the DLQ', intOption('max-attempts', 1, 1000))
    .option('--json', 'print the job as JSON')
    .action(async (type: string, json: string, o: EnqueueFlags) => {
      const payload = parsePayload(json);
      let runAt: Date | undefined;
      if (o.runAt !== undefined) {
        runAt = new Date(o.runAt);
        if (Number.isNaN(runAt.getTime())) {
          throw new DocketError('VALIDATION_FAILED', '--run-at is not a date', { field: 'runAt' });
        }
      }
      await withDocket(async (docket) => {
        const { job, deduplicated } = await docket.enqueue(type, payload, {
          tenant: o.tenant,
          queue: o.queue,
          priority: o.priority,
          delayMs: o.delayMs,
          runAt,
          idempotencyKey: o.idempotencyKey,
          maxAttempts: o.maxAttempts,
        });
        if (o.json) return say(JSON.stringify({ job, deduplicated }));
        say(
          deduplicated
            ? `already enqueued: job ${job.id} (${job.type}, ${job.status}) has this idempotency key`
            : `enqueued job ${job.id} (${job.type}) for tenant ${job.tenantId} on queue ${job.queue}`,
        );
      });
    });
}
