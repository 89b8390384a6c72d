import { Command } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import type { Docket } from '../docket.js';
import type { DlqItem } from '../jobs/index.js';
import { intOption, say, withDocket } from './runtime.js';

/** `docket dlq list|replay`. */
export function dlqCommand(): Command {
  const dlq = new Command('dlq').description('the dead-letter queue');
  dlq
    .command('list')
    .description("list a tenant's dead-lettered jobs")
    .requiredOption('--tenant <id>', 'tenant')
    .option('--limit <n>', 'page size (1–200)', intOption('limit', 1, 200), 50)
    .option('--cursor <cursor>', 'cursor from a previous page')
    .option('--json', 'print the page as JSON')
    .action(async (o: { tenant: string; limit: number; cursor?: string; json?: boolean }) => {
      await withDocket(async (docket) => {
        const page = await docket.dlq.list({ tenant: o.tenant, limit: o.limit, cursor: o.cursor });
        if (o.json) return say(JSON.stringify(page));
        if (page.items.length === 0) say('the dead-letter queue is empty');
        for (const item of page.items) {
          say(
            `${item.jobId}  ${item.type}  attempts=${item.attempts}  ` +
              `${new Date(item.createdAt).toISOString()}  ${item.lastError?.message ?? ''}`,
          );
        }
        if (page.nextCursor) say(`more: --cursor ${page.nextCursor}`);
      });
    });
  dlq
    .command('replay')
    .description('replay one dead job, or all of a tenant with --all')
    .argument('[jobId]', 'the dead job to replay')
    .requiredOption('--tenant <id>', 'tenant')
    .option('--all', 'replay every dead job of the tenant (progress on stderr)')
    .action(async (jobId: string | undefined, o: { tenant: string; all?: boolean }) => {
      if (!jobId && !o.all) throw new Error('give a job id or --all');
      await withDocket(async (docket) => {
        if (jobId) {
          const job = await docket.dlq.replay(jobId, { tenant: o.tenant, actor: 'cli' });
          say(`replayed job ${job.id}: now ${job.status}`);
          return;
        }
        const n = await replayAll(docket, o.tenant);
        say(`replayed ${n} job(s)`);
      });
    });
  return dlq;
}

async function replayAll(docket: Docket, tenant: string): Promise<number> {
  const items: DlqItem[] = [];
  let cursor: string | undefined;
  do {
    const page = await docket.dlq.list({ tenant, cursor, limit: 200 });
    items.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  const bar = new SingleBar({ stream: process.stderr, noTTYOutput: false }, Presets.shades_classic);
  bar.start(items.length, 0);
  for (const item of items) {
    await docket.dlq.replay(item.jobId, { tenant, actor: 'cli' });
    bar.increment();
  }
  bar.stop();
  return items.length;
}
