import type { Logger } from 'pino';
import {
  createApiKey,
  createTenant,
  hasNoTenants,
  parseApiKey,
  type KeyStore,
} from '../http/index.js';
import { DocketError } from '../core/errors.js';
import { say } from './runtime.js';

/** Tenant created on the first start of the service. */
export const DEFAULT_TENANT = 'default';

/**
 * On first start (no tenants), creates the `default` tenant and an API key for it — the one in
 * DOCKET_BOOTSTRAP_API_KEY, else a new one printed once.
 */
export async function bootstrapFirstTenant(
  docket: KeyStore,
  logger: Logger,
  bootstrapKey: string | undefined,
): Promise<void> {
  if (bootstrapKey !== undefined && bootstrapKey !== '' && !parseApiKey(bootstrapKey)) {
    throw new DocketError(
      'CONFIG_INVALID',
      'DOCKET_BOOTSTRAP_API_KEY must look like dk_<keyId>_<secret> (8–64 letters/digits, 16–256 of A-Z a-z 0-9 _ -)',
    );
  }
  if (!(await hasNoTenants(docket))) return;
  await createTenant(docket, { id: DEFAULT_TENANT, name: 'Default tenant' });
  const created = await createApiKey(docket, {
    tenant: DEFAULT_TENANT,
    label: 'bootstrap',
    key: bootstrapKey || undefined,
  });
  logger.info(
    { tenant: DEFAULT_TENANT, keyId: created.id },
    'first start: created the default tenant',
  );
  say('');
  say(`First start: created tenant "${DEFAULT_TENANT}".`);
  if (bootstrapKey) {
    say(`Its API key is the one in DOCKET_BOOTSTRAP_API_KEY (key id ${created.id}).`);
  } else {
    say('Its API key (shown only now, stored hashed — copy it):');
    say('');
    say(`    ${created.key}`);
  }
  say('');
}
