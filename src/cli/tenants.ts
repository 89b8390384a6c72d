import { Command } from 'commander';
import { createTenant, listTenants } from '../http/index.js';
import { say, withDocket } from './runtime.js';

/** `docket tenants create|list`. */
export function tenantsCommand(): Command {
  const tenants = new Command('tenants').description('tenants (operator)');
  tenants
    .command('create')
    .description('create a tenant (no-op if it exists)')
    .argument('<id>', 'tenant id: letters, digits, _ . - (up to 64)')
    .option('--name <name>', 'display name (default the id)')
    .action(async (id: string, o: { name?: string }) => {
      await withDocket(async (docket) => {
        const t = await createTenant(docket, { id, name: o.name });
        say(t.created ? `created tenant ${t.id}` : `tenant ${t.id} already exists`);
      });
    });
  tenants
    .command('list')
    .description('list tenants')
    .action(async () => {
      await withDocket(async (docket) => {
        for (const t of await listTenants(docket)) {
          say(`${t.id}  ${t.name}  ${new Date(t.createdAt).toISOString()}`);
        }
      });
    });
  return tenants;
}
