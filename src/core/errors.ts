/** The single list of Docket error codes, each with the HTTP status it maps to. */
export const ERROR_CODES = {
  TENANT_REQUIRED: 400,
  VALIDATION_FAILED: 400,
  INVALID_JSON: 400,
  UNKNOWN_JOB_TYPE: 400,
  UNKNOWN_TRIGGER_TYPE: 400,
  AUDIT_ACTION_UNKNOWN: 400,
  AUDIT_RESOURCE_UNKNOWN: 400,
  WEBHOOK_URL_REFUSED: 400,
  PAYLOAD_TOO_LARGE: 413,
  INVALID_CURSOR: 400,
  SCHEDULE_INVALID: 400,
  TX_INVALID: 400,
  PROPOSAL_KIND_UNKNOWN: 400,
  PROPOSAL_NO_CANDIDATE: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  JOB_NOT_FOUND: 404,
  AUDIT_EVENT_NOT_FOUND: 404,
  OUTBOX_EVENT_NOT_FOUND: 404,
  DELIVERY_NOT_FOUND: 404,
  EFFECT_NOT_FOUND: 404,
  ROUTE_NOT_FOUND: 404,
  TASK_NOT_FOUND: 404,
  EXECUTION_NOT_FOUND: 404,
  PROPOSAL_NOT_FOUND: 404,
  TRIGGER_NOT_FOUND: 404,
  IDEMPOTENCY_CONFLICT: 409,
  JOB_NOT_CANCELABLE: 409,
  JOB_NOT_RETRYABLE: 409,
  JOB_NOT_IN_DLQ: 409,
  OUTBOX_EVENT_NOT_DEAD: 409,
  SINK_NOT_CONFIGURED: 409,
  EFFECT_CONFLICT: 409,
  EFFECT_IN_PROGRESS: 409,
  EFFECT_UNKNOWN: 409,
  EFFECT_NOT_UNKNOWN: 409,
  TASK_DISABLED: 409,
  TASK_RUNNING: 409,
  EXECUTION_NOT_RUNNING: 409,
  PROPOSAL_NOT_OPEN: 409,
  PROPOSAL_EXPIRED: 409,
  PROPOSAL_STALE: 409,
  TRIGGER_NOT_PENDING: 409,
  RATE_LIMITED: 429,
  STORE_UNAVAILABLE: 503,
  LOCKS_UNAVAILABLE: 503,
  SHUTTING_DOWN: 503,
  CONFIG_INVALID: 500,
  INTERNAL: 500,
} as const;

/** A stable, documented Docket error code. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** The one error class Docket throws; `code` is stable and documented in docs/errors.md. */
export class DocketError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCode;
  /** Structured context for the caller (field names, limits, ids). */
  readonly details: Record<string, unknown>;

  constructor(
    code: ErrorCode,
    message: string,
    details: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DocketError';
    this.code = code;
    this.details = details;
  }

  /** HTTP status for this error's code. */
  get status(): number {
    return ERROR_CODES[this.code];
  }
}

/** True when `err` is a DocketError (optionally with the given code). */
export function isDocketError(err: unknown, code?: ErrorCode): err is DocketError {
  return err instanceof DocketError && (code === undefined || err.code === code);
}
