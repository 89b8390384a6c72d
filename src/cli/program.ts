import { Command } from 'commander';
import { auditCommand } from './audit.js';
import { dlqCommand } from './dlq.js';
import { doctorCommand } from './doctor.js';
import { effectsCommand } from './effects.js';
import { enqueueCommand } from './enqueue.js';
import { keysCommand } from './keys.js';
import { migrateCommand } from './migrate.js';
import { outboxCommand } from './outbox.js';
import { processCommand } from './process.js';
import { startCommand } from './start.js';
import { tasksCommand } from './tasks.js';
import { tenantsCommand } from './tenants.js';
import { triggersCommand } from './triggers.js';
import { workerCommand } from './worker.js';

/** The `docket` command line, one subcommand per file. */
export function buildProgram(): Command {
  return new Command('docket')
    .description('Docket: durable background jobs on SQLite and PostgreSQL')
    .showHelpAfterError()
    .addCommand(startCommand())
    .addCommand(migrateCommand())
    .addCommand(workerCommand())
    .addCommand(enqueueCommand())
    .addCommand(processCommand())
    .addCommand(dlqCommand())
    .addCommand(outboxCommand())
    .addCommand(effectsCommand())
    .addCommand(tasksCommand())
    .addCommand(triggersCommand())
    .addCommand(auditCommand())
    .addCommand(tenantsCommand())
    .addCommand(keysCommand())
    .addCommand(doctorCommand());
}
