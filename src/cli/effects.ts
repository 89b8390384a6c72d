import { Command, InvalidArgumentError } from 'commander';
import { EFFECT_STATES, type Effect, type EffectState } from '../effects/index.js';
import { intOption, say, withDocket } from './runtime.js';

function stateList(value: string): EffectState[] {
  const states = value.split(',').map((s) => s.trim());
  for (const s of states) {
    if (!EFFECT_STATES.includes(s as EffectState)) {
      throw new InvalidArgumentError(`state must be among ${EFFECT_STATES.join(', ')}`);
    }
  }
  return states as EffectState[];
}

function line(e: Effect): string {
  const error = e.state === 'sent' ? '' : (e.lastError?.message ?? '');
  return (
    `${e.key}  ${e.type}  ${e.state}  attempts=${e.attempts}  ` +
    `${new Date(e.updatedAt).toISOString()}  ${e.providerMessageId ?? '-'}  ${error}`.trimEnd()
  );
}

/** `docket effects list|get|resolve`: the effect ledger (SPEC O-8). */
export function effectsCommand(): Command {
  const effects = new Command('effects').description('the effect ledger (emails, payments, …)');
  effects
    .command('list')
    .description("list a tenant's effects, newest first")
    .requiredOption('--tenant <id>', 'tenant')
    .option('--state <states>', `comma-separated states (${EFFECT_STATES.join(', ')})`, stateList)
    .option('--limit <n>', 'page size (1–200)', intOption('limit', 1, 200), 50)
    .option('--cursor <cursor>', 'cursor from a previous page')
    .option('--json', 'print the page as JSON')
    .action(
      async (o: {
        tenant: string;
        state?: EffectState[];
        limit: number;
        cursor?: string;
        json?: boolean;
      }) => {
        await withDocket(async (docket) => {
          const page = await docket.effects.list(
            { state: o.state, limit: o.limit, cursor: o.cursor },
            { tenant: o.tenant },
          );
          if (o.json) return say(JSON.stringify(page));
          if (page.items.length === 0) say('no effects');
          for (const e of page.items) say(line(e));
          if (page.nextCursor) say(`more: --cursor ${page.nextCursor}`);
        });
      },
    );
  effects
    .command('get')
    .description('show one effect as JSON')
    .argument('<key>', 'the effect key')
    .requiredOption('--tenant <id>', 'tenant')
    .action(async (key: string, o: { tenant: string }) => {
      await withDocket(async (docket) => {
        say(JSON.stringify(await docket.effects.get(key, { tenant: o.tenant }), null, 2));
      });
    });
  effects
    .command('resolve')
    .description('resolve an unknown effect: --sent (it happened) or --failed (send it again)')
    .argument('<key>', 'the effect key')
    .requiredOption('--tenant <id>', 'tenant')
    .option('--sent', 'the provider did act: later runs replay it')
    .option('--failed', 'the provider did not act: the next run sends it again')
    .option('--provider-message-id <id>', "the provider's id, if you found it")
    .option('--note <text>', 'why (kept with the effect and in the audit log)')
    .action(
      async (
        key: string,
        o: {
          tenant: string;
          sent?: boolean;
          failed?: boolean;
          providerMessageId?: string;
          note?: string;
        },
      ) => {
        if (Boolean(o.sent) === Boolean(o.failed))
          throw new Error('give exactly one of --sent, --failed');
        await withDocket(async (docket) => {
          const e = await docket.effects.resolve(
            key,
            {
              outcome: o.sent ? 'sent' : 'failed',
              providerMessageId: o.providerMessageId,
              note: o.note,
            },
            { tenant: o.tenant, actor: 'cli' },
          );
          say(`resolved effect ${e.key}: now ${e.state}`);
        });
      },
    );
  return effects;
}
