import { Command, Option } from 'commander';
import { intOption, say, withDocket } from './runtime.js';

/** `docket process`: processes a batch of jobs now (cron- and serverless-friendly, SPEC Q-10). */
export function processCommand(): Command {
  return new Command('process')
    .description('process at most --max jobs within --budget-ms in this process, then exit')
    .option('--max <n>', 'most jobs to process (1–50)', intOption('max', 1, 50), 10)
    .option('--budget-ms <ms>', 'time budget', intOption('budget-ms', 1, 300_000), 20_000)
    .option('--type <type>', 'only this job type')
    .option('--tenant <id>', 'only this tenant')
    .addOption(
      new Option('--mode <mode>', 'lane mode').choices(['balanced', 'strict']).default('balanced'),
    )
    .option('--json', 'print the result as JSON')
    .action(
      async (o: {
        max: number;
        budgetMs: number;
        type?: string;
        tenant?: string;
        mode: 'balanced' | 'strict';
        json?: boolean;
      }) => {
        await withDocket(async (docket) => {
          const r = await docket.processBatch({
            max: o.max,
            budgetMs: o.budgetMs,
            type: o.type,
            tenant: o.tenant,
            mode: o.mode,
          });
          if (o.json) return say(JSON.stringify(r));
          const lanes = Object.entries(r.byLane)
            .map(([lane, n]) => `${lane}=${n}`)
            .join(' ');
          say(
            `processed ${r.processed} job(s) in ${r.durationMs} ms: ${r.succeeded} succeeded, ` +
              `${r.retried} to retry, ${r.dead} dead${lanes ? ` [${lanes}]` : ''}` +
              (r.budgetExhausted ? ' (budget exhausted)' : ''),
          );
        });
      },
    );
}
