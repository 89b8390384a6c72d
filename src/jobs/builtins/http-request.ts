import { randomBytes } from 'node:crypto';
import { DocketError } from '../../core/errors.js';
import { checkWebhookUrl, type UrlSafetyOptions } from '../../outbox/url-safety.js';
import { sendWebhook } from '../../outbox/webhook-request.js';
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
 * Makes the `http` job handler: POSTs the payload's body as JSON through the webhook request
 * (SPEC O-7: only public addresses unless allowed, checked on the address connected to; no
 * redirects followed). 2xx succeeds (the response status and a body excerpt become the
 * result); 5xx, 408, 429, timeouts and connection errors are retried; other 4xx, redirects and
 * refused targets fail permanently.
 */
export function createHttpJobHandler(
  safety: UrlSafetyOptions,
): (ctx: JobContext<HttpJobPayload>) => Promise<{ status: number; body: string }> {
  return async (ctx) => {
    const p = ctx.payload;
    const body = JSON.stringify(p.body ?? {});
    const record = await sendWebhook({
      ...safety,
      url: p.url,
      body,
      timeoutMs: p.timeoutMs ?? 10_000,
      signal: ctx.signal,
      headers: {
        'idempotency-key': ctx.job.id,
        // A fresh span id per request: the trace continues, the parent span is this attempt.
        traceparent: `00-${ctx.traceId}-${randomBytes(8).toString('hex')}-01`,
        ...p.headers,
      },
    });
    if (record.class === 'success' && record.response) {
      return { status: record.response.status, body: record.response.body };
    }
    const what = record.response
      ? `answered ${record.response.status}`
      : `failed: ${record.error?.message ?? 'no response'}`;
    let target = p.url;
    try {
      const u = new URL(p.url);
      target = `${u.origin}${u.pathname}`;
    } catch {
      // reported as is
    }
    const message = `POST ${target} ${what}`;
    if (record.class === 'retryable') throw new Error(message);
    throw new PermanentJobError(message);
  };
}

/**
 * Makes the `http` payload validator, run at enqueue time so bad URLs fail fast with a 4xx:
 * VALIDATION_FAILED for a missing or malformed URL, WEBHOOK_URL_REFUSED for credentials in it
 * or a non-public IP literal (hostnames are checked after DNS resolution, when the job runs).
 */
export function createHttpPayloadValidator(safety: UrlSafetyOptions): (payload: unknown) => void {
  return (payload) => validateHttpPayload(payload, safety);
}

function validateHttpPayload(payload: unknown, safety: UrlSafetyOptions): void {
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
  checkWebhookUrl(p.url, safety);
}
