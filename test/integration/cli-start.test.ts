import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocket } from '../../src/index.js';
import { BACKENDS, createTestStore, waitFor, type TestStore } from '../helpers/backends.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

for (const backend of BACKENDS) {
  describe(`docket start on ${backend}`, () => {
    let ts: TestStore;
    let hook: Server;
    let hookUrl: string;
    const received: Received[] = [];
    let child: ChildProcess | undefined;

    beforeAll(async () => {
      ts = await createTestStore(backend);
      hook = createServer((req, res) => {
        let body = '';
        req.on('data', (d: Buffer) => (body += d.toString()));
        req.on('end', () => {
          received.push({ headers: req.headers, body });
          res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
        });
      });
      await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
      hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
    });

    afterAll(async () => {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await new Promise((r) => hook?.close(r));
      await ts?.dispose();
    });

    it('prints a key and its URL, runs an http job to success, and exits cleanly on SIGTERM', async () => {
      const handlersPath = join(ts.dataDir, 'handlers.mjs');
      writeFileSync(
        handlersPath,
        [
          'export const handlers = { greet: async ({ payload }) => ({ hello: payload.name }) };',
          // With outbox routes in the module, the service also runs a relay.
          `export const outbox = { routes: [{ topic: 'order.*', sink: 'hook' }],`,
          `  sinks: { hook: { kind: 'webhook', url: ${JSON.stringify(hookUrl)}, secret: 's3cret' } } };`,
          // Scheduler tasks in the module run in the service.
          `export const tasks = [{ name: 'heartbeat', tenant: 'default', cron: '* * * * * *',`,
          `  handler: async () => 'beat' }];`,
        ].join('\n'),
      );
      const port = await freePort();
      // One backend uses a generated first key, the other a key chosen by the operator.
      const bootstrapKey =
        backend === 'postgres' ? 'dk_bootstrap01_0123456789abcdefghijklmnop' : undefined;
      const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'start'], {
        cwd: root,
        env: {
          ...process.env,
          ...ts.env,
          DOCKET_HOST: '127.0.0.1',
          DOCKET_PORT: String(port),
          DOCKET_CONCURRENCY: '4',
          DOCKET_HANDLERS: handlersPath,
          DOCKET_LOG_LEVEL: 'warn',
          // The test's webhook receiver listens on loopback, which is refused by default (O-7).
          DOCKET_WEBHOOK_ALLOW: '127.0.0.1',
          ...(bootstrapKey ? { DOCKET_BOOTSTRAP_API_KEY: bootstrapKey } : {}),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child = proc;
      let stdout = '';
      let stderr = '';
      proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
        proc.on('exit', (code, signal) => r({ code, signal })),
      );

      const url = await waitFor(
        () => {
          if (proc.exitCode !== null) throw new Error(`exited early: ${stdout}${stderr}`);
          return /listening on (http:\/\/\S+)/.exec(stdout)?.[1];
        },
        { timeoutMs: 30_000, what: `the service to listen (${stdout}${stderr})` },
      );
      expect(url).toBe(`http://127.0.0.1:${port}`);
      const key = bootstrapKey ?? /\b(dk_[A-Za-z0-9]+_[A-Za-z0-9_-]+)/.exec(stdout)?.[1];
      expect(key).toBeTruthy();
      expect(stdout).toContain('created tenant "default"');
      const headers = {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        traceparent: `00-${TRACE_ID}-b7ad6b7169203331-01`,
      };

      const enqueued = await fetch(`${url}/v1/jobs`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ type: 'http', payload: { url: hookUrl, body: { hello: 'world' } } }),
      });
      expect(enqueued.status).toBe(201);
      const { job } = (await enqueued.json()) as { job: { id: string; tenantId: string } };
      expect(job.tenantId).toBe('default');
      const greet = await fetch(`${url}/v1/jobs`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ type: 'greet', payload: { name: 'docket' } }),
      });
      const greetId = ((await greet.json()) as { job: { id: string } }).job.id;
      // The service accepts only the types it can run: built-ins and the handlers module's.
      const unknown = await fetch(`${url}/v1/jobs`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ type: 'nope', payload: {} }),
      });
      expect(unknown.status).toBe(400);
      expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe(
        'UNKNOWN_JOB_TYPE',
      );

      const statusOf = async (id: string) => {
        const res = await fetch(`${url}/v1/jobs/${id}`, { headers });
        return ((await res.json()) as { job: { status: string; result: unknown } }).job;
      };
      const done = await waitFor(
        async () => {
          const j = await statusOf(job.id);
          return j.status === 'succeeded' ? j : undefined;
        },
        { what: 'the http job to succeed' },
      );
      expect(done.result).toMatchObject({ status: 200 });
      expect(received).toHaveLength(1);
      expect(JSON.parse(received[0]?.body ?? '')).toEqual({ hello: 'world' });
      expect(received[0]?.headers.traceparent).toContain(TRACE_ID);
      const greeted = await waitFor(
        async () => {
          const j = await statusOf(greetId);
          return j.status === 'succeeded' ? j : undefined;
        },
        { what: 'the greet job to succeed' },
      );
      expect(greeted.result).toEqual({ hello: 'docket' });

      // An event the application adds in its own transaction reaches the service's relay.
      expect(stdout).toContain('Outbox relay running for 1 route(s)');
      const app = createDocket({ store: ts.store, dataDir: ts.dataDir });
      try {
        await app.withTransaction('default', (tx) =>
          app.outbox.add(tx, { topic: 'order.paid', key: 'o-1', payload: { total: 5 } }),
        );
      } finally {
        await app.close();
      }
      const delivered = await waitFor(
        () => received.find((r) => r.headers['docket-event-topic'] === 'order.paid'),
        { what: 'the outbox event to reach the webhook through the service relay' },
      );
      expect(JSON.parse(delivered.body)).toMatchObject({
        topic: 'order.paid',
        payload: { total: 5 },
      });

      // The module's every-second task runs in the service, visible to the tenant's key.
      expect(stdout).toContain('Scheduler running 1 task(s)');
      const beats = await waitFor(
        async () => {
          const res = await fetch(
            `${url}/v1/scheduler/executions?task=heartbeat&status=succeeded`,
            {
              headers,
            },
          );
          const page = (await res.json()) as { items: { status: string }[] };
          return page.items.length >= 2 ? page.items : undefined;
        },
        { what: 'the heartbeat task to run in the service' },
      );
      expect(beats[0]?.status).toBe('succeeded');

      proc.kill('SIGTERM');
      const exit = await exited;
      expect(exit).toEqual({ code: 0, signal: null });
      expect(stdout).toContain('stopped');
    });
  });
}
