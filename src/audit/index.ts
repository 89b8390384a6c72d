// The audit module's public face (SPEC A): other folders import only from here.
export { AuditService, type AuditServiceDeps, type AuditSettings } from './service.js';
export { AuditWriter, type AuditWriterOptions } from './writer.js';
export { AuditThreadAppender } from './thread-appender.js';
export {
  AUDIT_EVENT_MAX_BYTES,
  LIBRARY_PRINCIPAL,
  prepareAuditEvent,
  principalFromActor,
  type AuditEventInput,
} from './event.js';
export { appendAuditEvents, type PreparedAuditEvent } from './store.js';
export {
  createClientIpResolver,
  validateTrustedProxies,
  type ClientIpResolver,
} from './client-ip.js';
export type { AuditDiffEntry, AuditContent, JsonValue } from './content.js';
export * from './types.js';
