import { Command } from 'commander';
import { DocketError } from '../core/errors.js';
import { createApiKey, revokeApiKey } from '../http/index.js';
import { say, withDocket } from './runtime.js';

/** `docket keys create|revoke`. */
export function keysCommand(): Command {
  const keys = new Command('keys').description('API keys (operator)');
  keys
    .command('create')
    .description('create an API key for a tenant; the key is printed once')
    .requiredOption('--tenant <id>', 'tenant')
    .option('--label <label>', 'label stored with the key')
    .action(async (o: { tenant: string; label?: string }) => {
      await withDocket(async (docket) => {
        const created = await createApiKey(docket, { tenant: o.tenant, label: o.label });
        say(`API key for tenant ${created.tenant} (shown only now, stored hashed):`);
        say(created.key);
      });
    });
  keys
    .command('revoke')
    .description('revoke an API key')
    .argument('<keyId>', 'the key id (the part after dk_)')
    .action(async (keyId: string) => {
      await withDocket(async (docket) => {
        if (!(await revokeApiKey(docket, keyId))) {
          throw new DocketError('NOT_FOUND', `no active API key ${keyId}`, { keyId });
        }
        say(`revoked ${keyId}`);
      });
    });
  return keys;
}
