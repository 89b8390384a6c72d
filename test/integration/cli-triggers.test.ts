// `docket triggers` on every store (SPEC S-6, OPS-5): the DOCKET_HANDLERS module's `triggers`
// make their types known to the CLI; a tenant's triggers are listed with state filters, and a
// pending one is canceled (audited, actor cli) while a second cancel is refused.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocket, type Docket } from '../../src/docket.js';
import { BACKENDS, createTestStore, type TestStore } from '../helpers/backends.js';
import { docketCli } from '../helpers/cli.js';

for (const backend of BACKENDS) {
  describe(`docket triggers on ${backend}`, () => {
    let ts: TestStore;
    let docket: Docket;
    let handlersModule: string;
    const cli = (...args: string[]) =>
      docketCli({ ...ts.env, DOCKET_HANDLERS: handlersModule }, ...args);

    beforeAll(async () => {
      ts = await createTestStore(backend);
      handlersModule = join(ts.dataDir, 'handlers.mjs');
      writeFileSync(
        handlersModule,
        [
          'export const handlers = {};',
          "export const triggers = { 'cart.reminder': async () => 'ok' };",
        ].join('\n'),
      );
      docket = createDocket({
        store: ts.store,
        dataDir: ts.dataDir,
        reapIntervalMs: 0,
        pruneIntervalMs: 0,
        triggers: { handlers: { 'cart.reminder': () => undefined } },
      });
      await docket.migrate();
    });

    afterAll(async () => {
      await docket?.close();
      await ts?.dispose();
    });

    it('lists and cancels triggers', async () => {
      const fireAt = Date.now() + 86_400_000;
      const a = await docket.triggers.schedule(
        { type: 'cart.reminder', target: 'cart:1', fireAt },
        { tenant: 'acme' },
      );
      await docket.triggers.schedule(
        { type: 'cart.reminder', target: 'cart:2', fireAt },
        { tenant: 'acme' },
      );
      const list = await cli('triggers', 'list', '--tenant', 'acme');
      expect(list.code).toBe(0);
      expect(list.stdout.trim().split('\n')).toHaveLength(2);
      expect(list.stdout).toMatch(/pending\s+cart\.reminder\s+cart:1/);

      const canceled = await cli('triggers', 'cancel', a.trigger.id, '--tenant', 'acme');
      expect(canceled.code).toBe(0);
      expect(canceled.stdout).toMatch(new RegExp(`${a.trigger.id}\\s+canceled`));
      const twice = await cli('triggers', 'cancel', a.trigger.id, '--tenant', 'acme');
      expect(twice.code).not.toBe(0);
      expect(twice.stderr).toContain('TRIGGER_NOT_PENDING');

      const only = await cli(
        'triggers',
        'list',
        '--tenant',
        'acme',
        '--state',
        'canceled',
        '--json',
      );
      const page = JSON.parse(only.stdout) as { items: Array<{ id: string }> };
      expect(page.items.map((t) => t.id)).toEqual([a.trigger.id]);
      const events = await docket.audit.list({ action: 'trigger.canceled' }, { tenant: 'acme' });
      expect(events.items[0]?.actor).toMatchObject({ id: 'cli' });
    });
  });
}
