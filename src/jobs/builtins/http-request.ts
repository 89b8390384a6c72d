import { randomBytes } from 'node:crypto';
import { DocketError } from '../../core/errors.js';
import { PermanentJobError } from '../handler-errors.js';
import type { JobContext } from '../registry.js';

/** Payload of the built-in `http` job type. */
export interface HttpJobPayload {
  /** Target URL (http or https). */
  url: string;
  /** Body sent as JSON. Default `{}`. */
  body?: unknown;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** Request timeout in ms. Default 10,000. */
  timeoutMs?: number;
}

/**
 * POSTs the payload's body as JSON. 2xx succeeds (the response status and a body excerpt become
 * the result); 5xx, 408, 429, timeouts and connection errors are retried; other 4xx and
 * redirects fail permanently.
 */
export async function httpJobHandler(
  ctx: JobContext<HttpJobPayload>,
): Promise<{ status: number; body: string }> {
  const p = ctx.payload;
  let url: URL;
  try {
    url = new URL(p.url);
  } catch {
    throw new PermanentJobError(`invalid url: ${String(p.url)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new PermanentJobError('only http and https URLs are allowed');
  }
  const timeout = AbortSignal.timeout(p.timeoutMs ?? 10_000);
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'idempotency-key': ctx.job.id,
      // A fresh span id per request: the trace continues, the parent span is this attempt.
      traceparent: `00-${ctx.traceId}-${randomBytes(8).toString('hex')}-01`,
      ...p.headers,
    },
    body: JSON.stringify(p.body ?? {}),
    redirect: 'manual',
    signal: AbortSignal.any([ctx.signal, timeout]),
  });
  const text = (await res.text()).slice(0, 1024);
  if (res.status >= 200 && res.status < 300) return { status: res.status, body: text };
  const retryable = res.status >= 500 || res.status === 408 || res.status === 429;
  const message = `POST ${url.origin}${url.pathname} answered ${res.status}`;
  if (retryable) throw new Error(message);
  throw new PermanentJobError(message);
}

/** Validates an `http` payload at enqueue time so bad URLs fail fast with a 4xx. */
export function validateHttpPayload(payload: unknown): void {
  const p = payload as Partial<HttpJobPayload> | null;
  if (!p || typeof p !== 'object' || typeof p.url !== 'string') {
    throw new DocketError('VALIDATION_FAILED', 'http jobs need a payload with a url', {
      field: 'payload.url',
    });
  }
  let url: URL;
  try {
    url = new URL(p.url);
  } catch {
    throw new DocketError('VALIDATION_FAILED', 'payload.url is not a URL', {
      field: 'payload.url',
    });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new DocketError('VALIDATION_FAILED', 'payload.url must be http or https', {
      field: 'payload.url',
    });
  }
}
