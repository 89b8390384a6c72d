// One webhook HTTP delivery (SPEC O-6, O-7; issue 5 item 9): a signed POST through node:http(s)
// whose connection may reach only checked public addresses, with a timeout, never following a
// redirect, and a record of the request and response (headers masked, bodies capped at 1 KiB)
// classed as success, retryable or permanent.
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { isDocketError } from '../core/errors.js';
import {
  checkWebhookUrl,
  safeLookup,
  type ResolveAll,
  type UrlSafetyOptions,
} from './url-safety.js';

/** Bytes of a request or response body kept on the delivery record. */
export const BODY_EXCERPT_BYTES = 1024;

/** Header names whose values are never stored (they carry credentials). */
const SENSITIVE =
  /^(authorization|proxy-authorization|cookie|set-cookie|x-api-key|api-key)$|token|secret|password/i;

/** How a delivery ended: done, worth retrying, or not worth retrying. */
export type DeliveryClass = 'success' | 'retryable' | 'permanent';

/** What is stored about one delivery attempt. */
export interface WebhookDeliveryRecord {
  /** success (2xx), retryable (408, 429, 5xx, connection errors, timeouts) or permanent. */
  class: DeliveryClass;
  request: { url: string; method: string; headers: Record<string, string>; body: string };
  /** Absent when no response arrived. */
  response?: { status: number; headers: Record<string, string>; body: string };
  /** Why there was no usable response (connection error, timeout, refused URL, redirect). */
  error?: { code: string; message: string };
  /** From the request start to the end of the response excerpt, ms. */
  durationMs: number;
}

/** One delivery to perform. */
export interface WebhookRequestOptions extends UrlSafetyOptions {
  url: string;
  /** The exact body sent (what the signature covers). */
  body: string;
  /** Extra headers (e.g. `Idempotency-Key`, the signature headers). */
  headers?: Record<string, string>;
  /** Aborts the attempt after this long, ms. */
  timeoutMs: number;
  /** Aborts the request (a job's cancellation or timeout); the record is `retryable`. */
  signal?: AbortSignal;
  /** DNS resolution (injectable for tests that need names resolving to chosen addresses). */
  resolveAll?: ResolveAll;
}

/**
 * The signature header value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, so a
 * receiver can check both the body and its freshness (replayed old requests fail the check).
 */
export function signWebhook(secret: string, timestampSeconds: number, body: string): string {
  const mac = createHmac('sha256', secret).update(`${timestampSeconds}.${body}`).digest('hex');
  return `t=${timestampSeconds},v1=${mac}`;
}

/** Checks a signature header as a receiver would; `toleranceSeconds` bounds its age. */
export function verifyWebhookSignature(
  secret: string,
  header: string,
  body: string,
  nowSeconds: number,
  toleranceSeconds = 300,
): boolean {
  const parts = new Map(
    header.split(',').map((p) => {
      const i = p.indexOf('=');
      return [p.slice(0, i).trim(), p.slice(i + 1).trim()] as const;
    }),
  );
  const t = Number(parts.get('t'));
  const v1 = parts.get('v1') ?? '';
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > toleranceSeconds) return false;
  const expected = Buffer.from(signWebhook(secret, t, body).split('v1=')[1] as string, 'hex');
  const got = Buffer.from(v1, 'hex');
  return got.length === expected.length && timingSafeEqual(got, expected);
}

function mask(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    out[k.toLowerCase()] = SENSITIVE.test(k) ? '***' : Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

function excerpt(s: string): string {
  const b = Buffer.from(s);
  return b.length <= BODY_EXCERPT_BYTES ? s : b.subarray(0, BODY_EXCERPT_BYTES).toString();
}

/** The class of an HTTP status: 2xx success; 408, 429 and 5xx retryable; the rest permanent. */
export function classifyStatus(status: number): DeliveryClass {
  if (status >= 200 && status < 300) return 'success';
  if (status === 408 || status === 429 || status >= 500) return 'retryable';
  return 'permanent';
}

/**
 * Performs one POST and records it. Never throws for the target's behaviour: a refused URL is a
 * `permanent` record with code WEBHOOK_URL_REFUSED, a redirect is `permanent` (never followed,
 * so it cannot lead to a private address), connection errors and timeouts are `retryable`.
 */
export async function sendWebhook(o: WebhookRequestOptions): Promise<WebhookDeliveryRecord> {
  const started = performance.now();
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'docket-webhooks',
    ...o.headers,
  };
  const request = { url: o.url, method: 'POST', headers: mask(headers), body: excerpt(o.body) };
  const done = (
    r: Omit<WebhookDeliveryRecord, 'request' | 'durationMs'>,
  ): WebhookDeliveryRecord => ({
    ...r,
    request,
    durationMs: Math.round((performance.now() - started) * 100) / 100,
  });
  let url: URL;
  try {
    url = checkWebhookUrl(o.url, o);
  } catch (err) {
    return done({ class: 'permanent', error: errorOf(err) });
  }
  request.url = url.href;
  const lib = url.protocol === 'https:' ? https : http;
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: Omit<WebhookDeliveryRecord, 'request' | 'durationMs'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(done(r));
    };
    const req = lib.request(url, {
      method: 'POST',
      headers: { ...headers, 'content-length': String(Buffer.byteLength(o.body)) },
      lookup: safeLookup(o, o.resolveAll),
      // One connection per delivery: a pooled socket would skip the lookup (and its check).
      agent: false,
    });
    const timer = setTimeout(() => {
      finish({
        class: 'retryable',
        error: { code: 'TIMEOUT', message: `no complete response within ${o.timeoutMs} ms` },
      });
      req.destroy();
    }, o.timeoutMs);
    if (o.signal) {
      const onAbort = () => {
        finish({
          class: 'retryable',
          error: { code: 'ABORTED', message: 'the request was aborted' },
        });
        req.destroy();
      };
      if (o.signal.aborted) onAbort();
      else {
        o.signal.addEventListener('abort', onAbort, { once: true });
        req.on('close', () => o.signal?.removeEventListener('abort', onAbort));
      }
    }
    req.on('error', (err) =>
      finish({ class: isRefused(err) ? 'permanent' : 'retryable', error: errorOf(err) }),
    );
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const status = res.statusCode ?? 0;
      const record = () => {
        const body = Buffer.concat(chunks).subarray(0, BODY_EXCERPT_BYTES).toString();
        const response = { status, headers: mask(res.headers), body };
        const cls = classifyStatus(status);
        if (status >= 300 && status < 400) {
          finish({
            class: 'permanent',
            response,
            error: {
              code: 'REDIRECT_NOT_FOLLOWED',
              message: `the target answered ${status} (redirects are never followed)`,
            },
          });
        } else {
          finish({ class: cls, response });
        }
        res.destroy();
      };
      res.on('data', (c: Buffer) => {
        if (size < BODY_EXCERPT_BYTES) chunks.push(c);
        size += c.length;
        if (size >= BODY_EXCERPT_BYTES) record();
      });
      res.on('end', record);
      res.on('error', (err) => finish({ class: 'retryable', error: errorOf(err) }));
    });
    req.end(o.body);
  });
}

function isRefused(err: unknown): boolean {
  return isDocketError(err, 'WEBHOOK_URL_REFUSED');
}

function errorOf(err: unknown): { code: string; message: string } {
  const e = err as NodeJS.ErrnoException & { code?: string };
  return { code: String(e.code ?? 'ERROR'), message: String(e.message ?? err) };
}
