import { Command } from 'commander';
import { say, withDocket } from './runtime.js';

/** `docket migrate`: applies pending migrations and prints them. */
export function migrateCommand(): Command {
  return new Command('migrate').description('apply pending store migrations').action(async () => {
    await withDocket(async (docket) => {
      const applied = await docket.migrate();
      if (applied.length === 0) say('no pending migrations');
      for (const name of applied) say(`applied ${name}`);
    });
  });
}
