import { Command } from 'commander';
import type { SchedulerTask, TaskExecution } from '../scheduler/index.js';
import { intOption, say, withDocket } from './runtime.js';

const at = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString());

function taskLine(t: SchedulerTask): string {
  return (
    `${t.name}  ${t.enabled ? 'enabled ' : 'disabled'}  ${t.cron} (${t.timezone})` +
    `${t.overridden ? ' [override]' : ''}  tenant=${t.tenantId}  next=${at(t.enabled ? t.nextRunAt : null)}`
  );
}

function executionLine(e: TaskExecution): string {
  return (
    `${e.id}  ${e.task}  ${e.trigger}  ${e.status}  scheduled=${at(e.scheduledFor)}  ` +
    `duration=${e.durationMs === null ? '-' : `${e.durationMs}ms`}  ${e.error ?? ''}`
  ).trimEnd();
}

/**
 * `docket tasks list|enable|disable|trigger|history`: the scheduler's tasks (registered by the
 * DOCKET_HANDLERS module's `tasks`), as an operator. Changes are audited with actor `cli`.
 */
export function tasksCommand(): Command {
  const tasks = new Command('tasks').description('scheduler tasks (DOCKET_HANDLERS `tasks`)');
  tasks
    .command('list')
    .description('list tasks with their schedule, state and next run')
    .option('--tenant <id>', "only this tenant's tasks")
    .option('--json', 'print the tasks as JSON')
    .action(async (o: { tenant?: string; json?: boolean }) => {
      await withDocket(async (docket) => {
        const list = await docket.scheduler.list({ tenant: o.tenant });
        if (o.json) return say(JSON.stringify(list));
        if (list.length === 0) say('no tasks');
        for (const t of list) say(taskLine(t));
      });
    });
  for (const action of ['enable', 'disable'] as const) {
    tasks
      .command(action)
      .description(`${action} a task's cron ticks (every instance, within one tick)`)
      .argument('<name>', 'task name')
      .action(async (name: string) => {
        await withDocket(async (docket) => {
          say(taskLine(await docket.scheduler[action](name, { actor: 'cli' })));
        });
      });
  }
  tasks
    .command('trigger')
    .description('run a task now in this process (through the task lock) and wait for it')
    .argument('<name>', 'task name')
    .action(async (name: string) => {
      await withDocket(async (docket) => {
        const e = await docket.scheduler.trigger(name, { actor: 'cli' });
        await docket.scheduler.idle();
        const done = await docket.scheduler.execution(e.id);
        say(executionLine(done));
        if (done.status !== 'succeeded') process.exitCode = 1;
      });
    });
  tasks
    .command('cancel')
    .description('cancel a running execution (its instance aborts the handler within a tick)')
    .argument('<executionId>', 'execution id (from `docket tasks history`)')
    .option('--reason <text>', 'why, kept in the execution and its audit event')
    .action(async (id: string, o: { reason?: string }) => {
      await withDocket(async (docket) => {
        say(
          executionLine(
            await docket.scheduler.cancelExecution(id, { actor: 'cli', reason: o.reason }),
          ),
        );
      });
    });
  tasks
    .command('history')
    .description('list executions, newest first')
    .argument('[name]', 'only this task')
    .option('--tenant <id>', "only this tenant's executions")
    .option('--limit <n>', 'page size (1–500)', intOption('limit', 1, 500), 20)
    .option('--cursor <cursor>', 'cursor from a previous page')
    .option('--json', 'print the page as JSON')
    .action(
      async (
        name: string | undefined,
        o: { tenant?: string; limit: number; cursor?: string; json?: boolean },
      ) => {
        await withDocket(async (docket) => {
          const page = await docket.scheduler.executions(
            { task: name, limit: o.limit, cursor: o.cursor },
            { tenant: o.tenant },
          );
          if (o.json) return say(JSON.stringify(page));
          if (page.items.length === 0) say('no executions');
          for (const e of page.items) say(executionLine(e));
          if (page.nextCursor) say(`more: --cursor ${page.nextCursor}`);
        });
      },
    );
  return tasks;
}
