export { buildHttpApp, type HttpAppOptions } from './app.js';
export {
  createApiKey,
  createTenant,
  generateApiKey,
  hasNoTenants,
  listTenants,
  parseApiKey,
  revokeApiKey,
  verifyApiKey,
  type CreatedApiKey,
  type KeyStore,
  type Principal,
} from './api-keys.js';
export { errorBody, toDocketError, type ErrorBody } from './errors.js';
