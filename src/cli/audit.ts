import { Command } from 'commander';
import { Presets, SingleBar } from 'cli-progress';
import { intOption, say, withDocket } from './runtime.js';

/** `docket audit verify|list`. */
export function auditCommand(): Command {
  const audit = new Command('audit').description('the audit log');
  audit
    .command('verify')
    .description(
      'walk the hash chains (one tenant, or every tenant) and report the first broken link; exits 1 if broken',
    )
    .option('--tenant <id>', 'only this tenant')
    .option('--json', 'print the result as JSON')
    .action(async (o: { tenant?: string; json?: boolean }) => {
      await withDocket(async (docket) => {
        const bar = new SingleBar(
          { stream: process.stderr, format: 'verifying {tenant} |{bar}| {value} events' },
          Presets.shades_classic,
        );
        let started = false;
        const result = await docket.audit.verify({
          tenant: o.tenant,
          onProgress: ({ tenant, events }) => {
            if (!started) bar.start(0, 0, { tenant });
            started = true;
            bar.setTotal(events);
            bar.update(events, { tenant });
          },
        });
        if (started) bar.stop();
        if (o.json) say(JSON.stringify(result));
        else if (result.ok) {
          say(`ok: ${result.events} event(s) in ${result.tenants} chain(s) verified`);
        } else {
          const b = result.broken;
          say(
            `BROKEN: tenant ${b?.tenantId} at seq ${b?.seq}` +
              `${b?.eventId ? ` (event ${b.eventId})` : ''}: ${b?.reason} — ${b?.message}`,
          );
        }
        if (!result.ok) process.exitCode = 1;
      });
    });
  audit
    .command('list')
    .description("list a tenant's audit events, newest first")
    .requiredOption('--tenant <id>', 'tenant')
    .option('--action <action>', 'only this action')
    .option('--actor <id>', 'only this actor id')
    .option('--limit <n>', 'page size (1–200)', intOption('limit', 1, 200), 50)
    .option('--cursor <cursor>', 'cursor from a previous page')
    .option('--json', 'print the page as JSON')
    .action(
      async (o: {
        tenant: string;
        action?: string;
        actor?: string;
        limit: number;
        cursor?: string;
        json?: boolean;
      }) => {
        await withDocket(async (docket) => {
          const page = await docket.audit.list(
            { action: o.action, actorId: o.actor, limit: o.limit, cursor: o.cursor },
            { tenant: o.tenant },
          );
          if (o.json) return say(JSON.stringify(page));
          if (page.items.length === 0) say('no audit events');
          for (const e of page.items) {
            say(
              `${new Date(e.createdAt).toISOString()}  #${e.seq}  ${e.action}  ${e.outcome}  ` +
                `${e.resource.type}:${e.resource.id}  by ${e.actor.type}:${e.actor.id}`,
            );
          }
          if (page.nextCursor) say(`more: --cursor ${page.nextCursor}`);
        });
      },
    );
  return audit;
}
