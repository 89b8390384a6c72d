import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocket, type Docket } from '../../src/docket.js';
import { verifyApiKey } from '../../src/http/index.js';
import {
  BACKENDS,
  createTestStore,
  runBehindTriggers,
  type TestStore,
} from '../helpers/backends.js';
import { docketCli } from '../helpers/cli.js';

for (const backend of BACKENDS) {
  describe(`docket CLI on ${backend}`, () => {
    let ts: TestStore;
    let docket: Docket;
    let handlersModule: string;
    const cli = (...args: string[]) =>
      docketCli({ ...ts.env, DOCKET_HANDLERS: handlersModule }, ...args);

    beforeAll(async () => {
      ts = await createTestStore(backend);
      // The CLI, like the service, accepts only job types it knows: built-ins + this module's.
      handlersModule = join(ts.dataDir, 'handlers.mjs');
      writeFileSync(
        handlersModule,
        'export const handlers = { report: async ({ payload }) => ({ month: payload.month }) };\n',
      );
      docket = createDocket({ store: ts.store, dataDir: ts.dataDir, migrate: false });
    });

    afterAll(async () => {
      await docket?.close();
      await ts?.dispose();
    });

    it('migrate applies the migrations once, and doctor then passes every check', async () => {
      const before = await cli('doctor');
      expect(before.code).toBe(1);
      expect(before.stdout).toMatch(/FAIL\s+migrations/);

      const first = await cli('migrate');
      expect(first).toMatchObject({ code: 0 });
      expect(first.stdout).toContain('applied 001-foundation');
      expect((await cli('migrate')).stdout).toContain('no pending migrations');

      const doctor = await cli('doctor');
      expect(doctor.stdout).toContain('all checks passed');
      expect(doctor.stdout).toMatch(
        backend === 'postgres'
          ? /ok\s+postgres roles: tenant connections are bound/
          : /ok\s+postgres roles: not needed/,
      );
      expect(doctor.code).toBe(0);
    });

    it('creates a tenant and a working key, enqueues, processes and lists the DLQ', async () => {
      expect((await cli('tenants', 'create', 'acme')).stdout).toContain('created tenant acme');
      const keys = await cli('keys', 'create', '--tenant', 'acme', '--label', 'cli test');
      expect(keys.code).toBe(0);
      const key = /^(dk_\S+)$/m.exec(keys.stdout)?.[1];
      expect(await verifyApiKey(docket, key)).toMatchObject({ tenant: 'acme' });

      // Independent commands run side by side to keep the suite fast.
      const [noTenant, badTenant, badJson, unknownType, ok] = await Promise.all([
        cli('keys', 'create', '--tenant', 'nobody'),
        cli('enqueue', 'report', '{}', '--tenant', 'not a tenant'),
        cli('enqueue', 'report', '{not json', '--tenant', 'acme'),
        cli('enqueue', 'nope', '{}', '--tenant', 'acme'),
        cli('enqueue', 'report', '{"month":"2026-11"}', '--tenant', 'acme', '--json'),
      ]);
      expect(noTenant).toMatchObject({ code: 1, stderr: expect.stringContaining('NOT_FOUND') });
      expect(badTenant).toMatchObject({
        code: 1,
        stderr: expect.stringContaining('VALIDATION_FAILED'),
      });
      expect(badJson).toMatchObject({ code: 1, stderr: expect.stringContaining('INVALID_JSON') });
      expect(unknownType).toMatchObject({
        code: 1,
        stderr: expect.stringContaining('UNKNOWN_JOB_TYPE'),
      });
      expect(ok.code).toBe(0);
      const { job } = JSON.parse(ok.stdout) as { job: { id: string; status: string } };
      expect(job.status).toBe('pending');
      expect((await docket.jobs.get(job.id, { tenant: 'acme' })).payload).toEqual({
        month: '2026-11',
      });

      const [processed, dlq] = await Promise.all([
        cli('process', '--tenant', 'acme', '--max', '5', '--json'),
        cli('dlq', 'list', '--tenant', 'acme'),
      ]);
      expect(processed.code).toBe(0);
      expect(JSON.parse(processed.stdout)).toMatchObject({ processed: 1, succeeded: 1 });
      expect(dlq.stdout).toContain('the dead-letter queue is empty');
      expect(await docket.jobs.counts({ tenant: 'acme' })).toEqual({ succeeded: 1 });
    });

    it('audit verify walks the chains, and exits 1 naming the first broken link', async () => {
      for (let i = 0; i < 3; i++) {
        await docket.audit.record('doc.edit', { type: 'doc', id: `d${i}` }, { tenant: 'acme' });
      }
      await docket.audit.flush();
      const ok = await cli('audit', 'verify', '--tenant', 'acme');
      expect(ok.code).toBe(0);
      expect(ok.stdout).toMatch(/^ok: \d+ event\(s\) in 1 chain\(s\) verified/m);
      const listed = await cli('audit', 'list', '--tenant', 'acme', '--action', 'doc.edit');
      expect(listed.stdout.match(/doc\.edit/g)).toHaveLength(3);
      // Tamper behind the append-only trigger, as someone with the owner's access could.
      await runBehindTriggers(
        ts,
        docket,
        `update audit_events set action = 'doc.view' where tenant_id = 'acme' and seq = 2`,
      );
      const broken = await cli('audit', 'verify', '--json');
      expect(broken.code).toBe(1);
      expect(JSON.parse(broken.stdout)).toMatchObject({
        ok: false,
        broken: { tenantId: 'acme', reason: 'hash_mismatch' },
      });
    });
  });
}
