// One webhook delivery against a real local HTTP server (SPEC O-6, O-7; issue 5 item 9):
// localhost is refused unless allowed, the socket connects to the address that was checked,
// redirects are never followed (not even to a public-looking URL, so never to a private one),
// statuses are classed, headers masked, bodies capped at 1 KiB, requests signed.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ResolveAll } from '../../src/outbox/url-safety.js';
import {
  BODY_EXCERPT_BYTES,
  sendWebhook,
  signWebhook,
  verifyWebhookSignature,
} from '../../src/outbox/webhook-request.js';

interface Seen {
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

describe('sendWebhook against a local HTTP server', () => {
  let server: Server;
  let base: string;
  let port: number;
  const seen: Seen[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen.push({ url: req.url ?? '', headers: req.headers, body });
        const path = req.url ?? '/';
        if (path === '/ok') {
          res.writeHead(200, { 'content-type': 'text/plain', 'set-cookie': 'sid=secret' });
          res.end('thanks');
        } else if (path === '/big') {
          res.writeHead(200);
          res.end('x'.repeat(10_000));
        } else if (path.startsWith('/status/')) {
          res.writeHead(Number(path.slice(8)));
          res.end(`status ${path.slice(8)}`);
        } else if (path === '/redirect-private') {
          res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' });
          res.end();
        } else if (path === '/redirect-here') {
          res.writeHead(307, { location: `${base}/ok` });
          res.end();
        } else if (path === '/slow') {
          setTimeout(() => {
            res.writeHead(200);
            res.end('late');
          }, 2_000).unref();
        } else {
          res.writeHead(404);
          res.end('no');
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    base = `http://localhost:${port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  const allow = ['localhost', '127.0.0.1'];
  const send = (path: string, extra: Partial<Parameters<typeof sendWebhook>[0]> = {}) =>
    sendWebhook({ url: `${base}${path}`, body: '{"a":1}', timeoutMs: 1_000, allow, ...extra });

  it('refuses localhost and 127.0.0.1 without the allowlist, sending nothing', async () => {
    const before = seen.length;
    for (const url of [
      `${base}/ok`,
      `http://127.0.0.1:${port}/ok`,
      `http://[::ffff:127.0.0.1]:${port}/ok`,
    ]) {
      const r = await sendWebhook({ url, body: '{}', timeoutMs: 1_000 });
      expect(r).toMatchObject({ class: 'permanent', error: { code: 'WEBHOOK_URL_REFUSED' } });
      expect(r.response).toBeUndefined();
    }
    expect(seen.length).toBe(before);
  });

  it('connects to the address that was checked: a name that resolves to loopback is refused at connect time', async () => {
    // An injected resolver stands in for an attacker's DNS (we cannot run one here): the name
    // looks harmless, its answer is loopback. The check sits in the socket's own lookup, so
    // there is no earlier "safe" answer to rebind away from.
    const before = seen.length;
    const rebinding: ResolveAll = async () => [{ address: '127.0.0.1', family: 4 }];
    const r = await sendWebhook({
      url: `http://hooks.example.test:${port}/ok`,
      body: '{}',
      timeoutMs: 1_000,
      resolveAll: rebinding,
    });
    expect(r).toMatchObject({ class: 'permanent', error: { code: 'WEBHOOK_URL_REFUSED' } });
    expect(seen.length).toBe(before);
    // Allowed by address, the same resolver's answer is used for the connection.
    const ok = await sendWebhook({
      url: `http://hooks.example.test:${port}/ok`,
      body: '{}',
      timeoutMs: 1_000,
      resolveAll: rebinding,
      allow: ['127.0.0.0/8'],
    });
    expect(ok).toMatchObject({ class: 'success', response: { status: 200, body: 'thanks' } });
  });

  it('records a success with masked headers and the exact body', async () => {
    const r = await send('/ok', {
      headers: { authorization: 'Bearer s3cret', 'idempotency-key': 'evt_1', 'x-api-key': 'k' },
    });
    expect(r.class).toBe('success');
    expect(r.response).toMatchObject({ status: 200, body: 'thanks' });
    expect(r.response?.headers['set-cookie']).toBe('***');
    expect(r.request.headers.authorization).toBe('***');
    expect(r.request.headers['x-api-key']).toBe('***');
    expect(r.request.headers['idempotency-key']).toBe('evt_1');
    expect(r.request.body).toBe('{"a":1}');
    expect(r.durationMs).toBeGreaterThan(0);
    const got = seen.at(-1) as Seen;
    expect(got.headers.authorization).toBe('Bearer s3cret'); // masked in the record only
    expect(got.body).toBe('{"a":1}');
  });

  it('caps stored bodies at 1 KiB', async () => {
    const r = await send('/big', { body: JSON.stringify({ s: 'y'.repeat(5_000) }) });
    expect(r.response?.body.length).toBe(BODY_EXCERPT_BYTES);
    expect(Buffer.byteLength(r.request.body)).toBe(BODY_EXCERPT_BYTES);
  });

  it.each([
    [500, 'retryable'],
    [503, 'retryable'],
    [429, 'retryable'],
    [408, 'retryable'],
    [400, 'permanent'],
    [401, 'permanent'],
    [404, 'permanent'],
    [410, 'permanent'],
    [204, 'success'],
  ] as const)('classes status %i as %s', async (status, cls) => {
    const r = await send(`/status/${status}`);
    expect(r).toMatchObject({ class: cls, response: { status } });
  });

  it('never follows a redirect, to a private address or anywhere', async () => {
    for (const path of ['/redirect-private', '/redirect-here']) {
      const before = seen.length;
      const r = await send(path);
      expect(r).toMatchObject({ class: 'permanent', error: { code: 'REDIRECT_NOT_FOLLOWED' } });
      expect(seen.length).toBe(before + 1); // only the first request
    }
  });

  it('is retryable on a timeout and on a refused connection', async () => {
    const slow = await send('/slow', { timeoutMs: 100 });
    expect(slow).toMatchObject({ class: 'retryable', error: { code: 'TIMEOUT' } });
    const closed = await sendWebhook({
      url: 'http://127.0.0.1:1/',
      body: '{}',
      timeoutMs: 1_000,
      allow: ['127.0.0.1'],
    });
    expect(closed).toMatchObject({ class: 'retryable', error: { code: 'ECONNREFUSED' } });
  });

  it('aborts with the signal', async () => {
    const ac = new AbortController();
    const p = send('/slow', { timeoutMs: 5_000, signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    expect(await p).toMatchObject({ class: 'retryable', error: { code: 'ABORTED' } });
  });

  it('signs timestamp + body with HMAC-SHA256 so a receiver can verify and reject replays', async () => {
    const body = '{"event":"invoice.paid"}';
    const now = 1_800_000_000;
    const header = signWebhook('whsec_test', now, body);
    expect(header).toMatch(/^t=1800000000,v1=[0-9a-f]{64}$/);
    expect(verifyWebhookSignature('whsec_test', header, body, now + 10)).toBe(true);
    expect(verifyWebhookSignature('whsec_test', header, `${body} `, now)).toBe(false);
    expect(verifyWebhookSignature('other', header, body, now)).toBe(false);
    expect(verifyWebhookSignature('whsec_test', header, body, now + 301)).toBe(false);
  });
});
