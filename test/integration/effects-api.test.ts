// The operator surface of the effect ledger (SPEC O-8): GET /v1/effects (state filter, keyset
// pages), GET /v1/effects/:key, POST /v1/effects/:key/resolve (audited with the API key as
// actor; bad input is a 4xx that changes nothing), and `docket effects list|get|resolve`.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocket, EffectUnknownError, type Docket } from '../../src/index.js';
import { silentLogger } from '../../src/core/logger.js';
import { buildHttpApp, createApiKey, createTenant } from '../../src/http/index.js';
import { BACKENDS, createTestStore, type TestStore } from '../helpers/backends.js';
import { startSmtpServer } from '../helpers/smtp-server.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

function docketCli(env: Record<string, string>, ...args: string[]) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: root,
    env: { ...process.env, ...env, DOCKET_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('exit', (code) => resolve({ code, stdout, stderr })),
  );
}

/** A provider call whose outcome nobody knows: the effect is left `unknown`. */
const lost = async () => {
  throw new EffectUnknownError('connection dropped after the request was written');
};

for (const backend of BACKENDS) {
  describe(`effects API and CLI on ${backend}`, () => {
    let ts: TestStore;
    let docket: Docket;
    let app: FastifyInstance;
    let key: string;
    let keyId: string;
    let otherKey: string;
    const auth = (k = key) => ({ authorization: `Bearer ${k}` });
    const get = (url: string, k?: string) => app.inject({ method: 'GET', url, headers: auth(k) });
    const resolve = (effectKey: string, body: unknown) =>
      app.inject({
        method: 'POST',
        url: `/v1/effects/${encodeURIComponent(effectKey)}/resolve`,
        headers: { ...auth(), 'content-type': 'application/json' },
        payload: JSON.stringify(body),
      });
    const makeUnknown = (k: string) =>
      expect(
        docket.effects.run(null, { key: k, payload: { k }, type: 'sms', tenant: 'acme' }, lost),
      ).rejects.toMatchObject({ code: 'EFFECT_UNKNOWN' });

    beforeAll(async () => {
      ts = await createTestStore(backend);
      docket = createDocket({
        store: ts.store,
        dataDir: ts.dataDir,
        reapIntervalMs: 0,
        pruneIntervalMs: 0,
      });
      await docket.start();
      app = buildHttpApp({ docket, logger: silentLogger() });
      await app.ready();
      await createTenant(docket, { id: 'acme' });
      await createTenant(docket, { id: 'globex' });
      ({ key, id: keyId } = await createApiKey(docket, { tenant: 'acme' }));
      ({ key: otherKey } = await createApiKey(docket, { tenant: 'globex' }));
    });
    afterAll(async () => {
      await app?.close();
      await docket?.close();
      await ts?.dispose();
    });

    it('lists, gets and resolves effects over HTTP, tenant-bound and audited', async () => {
      await makeUnknown('sms/order-1');
      await makeUnknown('sms/order-2');
      await docket.effects.run(
        null,
        { key: 'sms/order-3', payload: {}, type: 'sms', tenant: 'acme' },
        async () => ({ providerMessageId: 'SM3' }),
      );
      const unknown = await get('/v1/effects?state=unknown&limit=1');
      expect(unknown.statusCode).toBe(200);
      const page = unknown.json() as { items: Array<{ key: string }>; nextCursor: string };
      expect(page.items.map((e) => e.key)).toEqual(['sms/order-2']);
      const next = (await get(`/v1/effects?state=unknown&cursor=${page.nextCursor}`)).json() as {
        items: Array<{ key: string }>;
      };
      expect(next.items.map((e) => e.key)).toEqual(['sms/order-1']);
      expect((await get('/v1/effects?state=nope')).json()).toMatchObject({
        error: { code: 'VALIDATION_FAILED' },
      });

      const one = await get(`/v1/effects/${encodeURIComponent('sms/order-1')}`);
      expect(one.statusCode).toBe(200);
      expect(one.json()).toMatchObject({
        effect: {
          key: 'sms/order-1',
          state: 'unknown',
          type: 'sms',
          attempts: 1,
          lastError: { name: 'EffectUnknownError', at: expect.stringMatching(/Z$/) },
        },
      });
      const hidden = await get(`/v1/effects/${encodeURIComponent('sms/order-1')}`, otherKey);
      expect(hidden.statusCode).toBe(404);
      expect(hidden.json()).toMatchObject({ error: { code: 'EFFECT_NOT_FOUND' } });

      for (const body of [{ outcome: 'maybe' }, { outcome: 'sent', extra: 1 }, {}]) {
        const r = await resolve('sms/order-1', body);
        expect(r.statusCode).toBe(400);
        expect(r.json()).toMatchObject({ error: { code: 'VALIDATION_FAILED' } });
      }
      expect((await docket.effects.get('sms/order-1', { tenant: 'acme' })).state).toBe('unknown');
      const ok = await resolve('sms/order-1', {
        outcome: 'sent',
        providerMessageId: 'SM1',
        note: 'delivered per the provider console',
      });
      expect(ok.statusCode).toBe(200);
      expect(ok.json()).toMatchObject({
        effect: { state: 'sent', providerMessageId: 'SM1', resolvedBy: `apikey:${keyId}` },
      });
      const twice = await resolve('sms/order-1', { outcome: 'failed' });
      expect(twice.statusCode).toBe(409);
      expect(twice.json()).toMatchObject({
        error: { code: 'EFFECT_NOT_UNKNOWN', details: { state: 'sent' } },
      });
      expect((await resolve('nope', { outcome: 'sent' })).statusCode).toBe(404);
      const audit = await docket.audit.list({ action: 'effect.resolved' }, { tenant: 'acme' });
      expect(audit.items).toHaveLength(1);
      expect(audit.items[0]).toMatchObject({
        resource: { type: 'effect', id: 'sms/order-1' },
        actor: { type: 'api_key', id: keyId },
      });
      const doc = (await app.inject({ method: 'GET', url: '/v1/openapi.json' })).json() as {
        paths: Record<string, unknown>;
      };
      expect(Object.keys(doc.paths)).toEqual(
        expect.arrayContaining(['/v1/effects', '/v1/effects/{key}', '/v1/effects/{key}/resolve']),
      );
    });

    it('docket effects list and resolve; doctor checks the email transport', async () => {
      await makeUnknown('cli-1');
      const cli = (...args: string[]) => docketCli(ts.env, ...args);
      const smtp = await startSmtpServer();
      const deadPort = `smtp://127.0.0.1:${new URL(smtp.url).port}`;
      const [listed, bad, both, doctor] = await Promise.all([
        cli('effects', 'list', '--tenant', 'acme', '--state', 'unknown'),
        cli('effects', 'list', '--tenant', 'acme', '--state', 'bogus'),
        cli('effects', 'resolve', 'cli-1', '--tenant', 'acme', '--sent', '--failed'),
        docketCli({ ...ts.env, DOCKET_SMTP_URL: smtp.url }, 'doctor'),
      ]);
      expect(doctor.stdout).toMatch(/^ok\s+email: SMTP server 127\.0\.0\.1:\d+ answers/m);
      await smtp.close();
      const noSmtp = await docketCli({ ...ts.env, DOCKET_SMTP_URL: deadPort }, 'doctor');
      expect(noSmtp.code).toBe(1);
      expect(noSmtp.stdout).toMatch(/^FAIL\s+email: /m);
      expect(listed.code).toBe(0);
      expect(listed.stdout).toMatch(/^cli-1\s+sms\s+unknown\s+attempts=1/m);
      expect(bad.code).not.toBe(0);
      expect(both.code).toBe(1);
      expect((await docket.effects.get('cli-1', { tenant: 'acme' })).state).toBe('unknown');
      const resolved = await cli(
        'effects',
        'resolve',
        'cli-1',
        '--tenant',
        'acme',
        '--failed',
        '--note',
        'not in the provider log',
      );
      expect(resolved).toMatchObject({ code: 0 });
      expect(resolved.stdout).toContain('resolved effect cli-1: now failed');
      expect(await docket.effects.get('cli-1', { tenant: 'acme' })).toMatchObject({
        state: 'failed',
        resolvedBy: 'cli',
        resolutionNote: 'not in the provider log',
      });
      const [again, shown] = await Promise.all([
        cli('effects', 'resolve', 'cli-1', '--tenant', 'acme', '--sent'),
        cli('effects', 'get', 'cli-1', '--tenant', 'acme'),
      ]);
      expect(again).toMatchObject({
        code: 1,
        stderr: expect.stringContaining('EFFECT_NOT_UNKNOWN'),
      });
      expect(JSON.parse(shown.stdout)).toMatchObject({ key: 'cli-1', state: 'failed' });
    }, 240_000);
  });
}
