import { Command } from 'commander';
import type { DueTrigger, TriggerState } from '../scheduler/index.js';
import { intOption, say, withDocket } from './runtime.js';

const at = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString());

function triggerLine(t: DueTrigger): string {
  const why = t.state === 'skipped' ? t.skipReason : t.error;
  return (
    `${t.id}  ${t.state}  ${t.type}  ${t.target}  fireAt=${at(t.fireAt)}  ` +
    `attempts=${t.attempts}  ${why ?? ''}`
  ).trimEnd();
}

/** `docket triggers list|cancel`: a tenant's due triggers (SPEC S-6), as an operator. */
export function triggersCommand(): Command {
  const triggers = new Command('triggers').description('due triggers (SPEC S-6)');
  triggers
    .command('list')
    .description("list a tenant's due triggers, newest first")
    .requiredOption('--tenant <id>', 'tenant')
    .option('--state <states>', 'comma-separated: pending,triggered,canceled,skipped,failed')
    .option('--type <type>', 'only this trigger type')
    .option('--limit <n>', 'page size (1–200)', intOption('limit', 1, 200), 50)
    .option('--cursor <cursor>', 'cursor from a previous page')
    .option('--json', 'print the page as JSON')
    .action(
      async (o: {
        tenant: string;
        state?: string;
        type?: string;
        limit: number;
        cursor?: string;
        json?: boolean;
      }) => {
        await withDocket(async (docket) => {
          const page = await docket.triggers.list(
            {
              state: o.state?.split(',').map((s) => s.trim() as TriggerState),
              type: o.type,
              limit: o.limit,
              cursor: o.cursor,
            },
            { tenant: o.tenant },
          );
          if (o.json) return say(JSON.stringify(page));
          if (page.items.length === 0) say('no triggers');
          for (const t of page.items) say(triggerLine(t));
          if (page.nextCursor) say(`more: --cursor ${page.nextCursor}`);
        });
      },
    );
  triggers
    .command('cancel')
    .description('cancel a pending trigger (audited, actor cli); its job then does nothing')
    .argument('<id>', 'trigger id')
    .requiredOption('--tenant <id>', 'tenant')
    .action(async (id: string, o: { tenant: string }) => {
      await withDocket(async (docket) => {
        say(triggerLine(await docket.triggers.cancel(id, { tenant: o.tenant, actor: 'cli' })));
      });
    });
  return triggers;
}
