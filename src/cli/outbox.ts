import { Command } from 'commander';
import { Presets, SingleBar } from 'cli-progress';
import type { Docket } from '../docket.js';
import { isDocketError } from '../core/errors.js';
import type { OutboxStatus } from '../outbox/types.js';
import { intOption, say, withDocket } from './runtime.js';

/** `docket outbox list|replay`. */
export function outboxCommand(): Command {
  const outbox = new Command('outbox').description('the transactional outbox');
  outbox
    .command('list')
    .description("list a tenant's outbox events, newest first")
    .requiredOption('--tenant <id>', 'tenant')
    .option('--status <states>', 'comma-separated: pending,publishing,published,failed,dead')
    .option('--topic <pattern>', 'topic, or a pattern with * for any run of characters')
    .option('--limit <n>', 'page size (1–200)', intOption('limit', 1, 200), 50)
    .option('--cursor <cursor>', 'cursor from a previous page')
    .option('--json', 'print the page as JSON')
    .action(
      async (o: {
        tenant: string;
        status?: string;
        topic?: string;
        limit: number;
        cursor?: string;
        json?: boolean;
      }) => {
        await withDocket(async (docket) => {
          const page = await docket.outbox.list(
            {
              status: o.status?.split(',').map((s) => s.trim() as OutboxStatus),
              topic: o.topic,
              limit: o.limit,
              cursor: o.cursor,
            },
            { tenant: o.tenant },
          );
          if (o.json) return say(JSON.stringify(page));
          if (page.items.length === 0) say('no outbox events');
          for (const e of page.items) {
            say(
              `${e.id}  ${e.status}  ${e.topic}  attempts=${e.attempts}/${e.maxAttempts}  ` +
                `${new Date(e.createdAt).toISOString()}  ${e.lastError ?? ''}`.trimEnd(),
            );
          }
          if (page.nextCursor) say(`more: --cursor ${page.nextCursor}`);
        });
      },
    );
  outbox
    .command('replay')
    .description('replay one dead event, or every dead event of a tenant with --all-dead')
    .argument('[eventId]', 'the dead event to replay')
    .requiredOption('--tenant <id>', 'tenant')
    .option('--all-dead', 'replay every dead event of the tenant (progress on stderr)')
    .action(async (eventId: string | undefined, o: { tenant: string; allDead?: boolean }) => {
      if (!eventId === !o.allDead) throw new Error('give an event id or --all-dead (not both)');
      await withDocket(async (docket) => {
        if (eventId) {
          const e = await docket.outbox.replay(eventId, { tenant: o.tenant, actor: 'cli' });
          say(`replayed event ${e.id}: now ${e.status}`);
          return;
        }
        const r = await replayAllDead(docket, o.tenant);
        say(
          `replayed ${r.replayed} event(s)` +
            (r.skipped ? `, ${r.skipped} skipped (no longer dead)` : ''),
        );
      });
    });
  return outbox;
}

async function replayAllDead(
  docket: Docket,
  tenant: string,
): Promise<{ replayed: number; skipped: number }> {
  // The ids first: a replayed event that dies again before the walk ends is not replayed twice.
  const ids: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await docket.outbox.list({ status: ['dead'], cursor, limit: 200 }, { tenant });
    ids.push(...page.items.map((e) => e.id));
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  // Progress also without a terminal (every 2 s and at the end), so logs of long replays show it.
  const bar = new SingleBar({ stream: process.stderr, noTTYOutput: true }, Presets.shades_classic);
  bar.start(ids.length, 0);
  let skipped = 0;
  for (const id of ids) {
    try {
      await docket.outbox.replay(id, { tenant, actor: 'cli' });
    } catch (err) {
      // Replayed by someone else meanwhile: nothing to do for it.
      if (!isDocketError(err, 'OUTBOX_EVENT_NOT_DEAD')) throw err;
      skipped++;
    }
    bar.increment();
  }
  bar.stop();
  return { replayed: ids.length - skipped, skipped };
}
