// The effect ledger and the built-in email job type (SPEC O-8, O-9): the public face of the
// effects capability.
export { EffectsService, type EffectsServiceDeps } from './service.js';
export { effectIdempotencyKey } from './input.js';
export {
  classifySmtpError,
  createEmailJobHandler,
  createEmailTransport,
  emailMessageId,
  validateEmailPayload,
  type EmailJobPayload,
  type EmailJobResult,
  type EmailMessage,
  type EmailTransport,
} from './email.js';
export {
  EFFECT_STATES,
  EffectUnknownError,
  type Effect,
  type EffectAnswer,
  type EffectCall,
  type EffectError,
  type EffectFailpoint,
  type EffectInput,
  type EffectOutcome,
  type EffectProvider,
  type EffectReservation,
  type EffectState,
} from './types.js';
