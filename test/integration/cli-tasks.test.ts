// `docket tasks` on every store (SPEC S, OPS-5): the DOCKET_HANDLERS module's `tasks` are
// listed with schedule and state, disabled and enabled (audited, actor cli), triggered in the
// CLI process through the lock path, and their history listed.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocket, type Docket } from '../../src/docket.js';
import { BACKENDS, createTestStore, type TestStore } from '../helpers/backends.js';
import { docketCli } from '../helpers/cli.js';

for (const backend of BACKENDS) {
  describe(`docket tasks on ${backend}`, () => {
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
          'export const tasks = [',
          "  { name: 'nightly.report', cron: '0 2 * * *', timezone: 'Europe/Berlin', handler: async () => 'ok' },",
          "  { name: 'always.fails', cron: '*/10 * * * *', handler: async () => { throw new Error('broken on purpose'); } },",
          '];',
        ].join('\n'),
      );
      docket = createDocket({ store: ts.store, dataDir: ts.dataDir });
      await docket.migrate();
    });

    afterAll(async () => {
      await docket?.close();
      await ts?.dispose();
    });

    it('lists, disables, enables, triggers and shows history', async () => {
      const list = await cli('tasks', 'list');
      expect(list.code).toBe(0);
      expect(list.stdout).toMatch(/always\.fails\s+enabled\s+\*\/10 \* \* \* \* \(UTC\)/);
      expect(list.stdout).toMatch(/nightly\.report\s+enabled\s+0 2 \* \* \* \(Europe\/Berlin\)/);

      expect((await cli('tasks', 'disable', 'nightly.report')).stdout).toMatch(/disabled/);
      const refused = await cli('tasks', 'trigger', 'nightly.report');
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain('TASK_DISABLED');
      expect((await cli('tasks', 'enable', 'nightly.report')).stdout).toMatch(/enabled/);

      const ok = await cli('tasks', 'trigger', 'nightly.report');
      expect(ok.code).toBe(0);
      expect(ok.stdout).toMatch(/nightly\.report\s+manual\s+succeeded/);
      const bad = await cli('tasks', 'trigger', 'always.fails');
      expect(bad.code).toBe(1);
      expect(bad.stdout).toMatch(/always\.fails\s+manual\s+failed .*broken on purpose/);

      const history = await cli('tasks', 'history');
      expect(history.stdout.trim().split('\n')).toHaveLength(2);
      const one = await cli('tasks', 'history', 'nightly.report', '--json');
      const page = JSON.parse(one.stdout) as { items: { status: string }[] };
      expect(page.items.map((e) => e.status)).toEqual(['succeeded']);

      const audit = await docket.audit.list(
        { resourceType: 'scheduler_task' },
        { tenant: 'system' },
      );
      expect(audit.items.map((e) => [e.action, e.actor.id])).toEqual(
        expect.arrayContaining([
          ['scheduler.task_disabled', 'cli'],
          ['scheduler.task_triggered', 'cli'],
        ]),
      );
      expect((await cli('tasks', 'enable', 'no.such.task')).stderr).toContain('TASK_NOT_FOUND');
    });
    it('cancel stops a running execution of another process, and refuses a finished one', async () => {
      let aborted = false;
      docket.scheduler.register({
        name: 'slow.export',
        cron: '0 5 * * *',
        graceMs: 100,
        handler: (ctx) =>
          new Promise((_, reject) =>
            ctx.signal.addEventListener('abort', () => {
              aborted = true;
              reject(ctx.signal.reason as Error);
            }),
          ),
      });
      const e = await docket.scheduler.trigger('slow.export');
      const out = await cli('tasks', 'cancel', e.id, '--reason', 'not today');
      expect(out.code).toBe(0);
      expect(out.stdout).toContain('canceled');
      await docket.scheduler.runOnce(); // this process learns of it at its next pass
      await docket.scheduler.idle();
      expect(aborted).toBe(true);
      expect(await docket.scheduler.execution(e.id)).toMatchObject({
        status: 'canceled',
        error: 'canceled by cli: not today',
      });
      const again = await cli('tasks', 'cancel', e.id);
      expect(again.code).not.toBe(0);
      expect(again.stderr).toContain('EXECUTION_NOT_RUNNING');
    });
  });
}
