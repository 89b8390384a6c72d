/** Throw from a handler to fail the job permanently: no retry, straight to the dead-letter queue. */
export class PermanentJobError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PermanentJobError';
  }
}

/** Throw from a handler to be retried at a given time instead of the backoff schedule. */
export class RetryJobError extends Error {
  /** When to retry, epoch ms. */
  readonly retryAt: number;
  constructor(message: string, retryAt: Date | number) {
    super(message);
    this.name = 'RetryJobError';
    this.retryAt = typeof retryAt === 'number' ? retryAt : retryAt.getTime();
  }
}
