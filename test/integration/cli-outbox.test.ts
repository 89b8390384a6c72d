// `docket outbox list|replay` as a real child process on every store (SPEC O-5, OPS-5): lists a
// tenant's events with filters, replays one dead event or all of them with progress on stderr,
// each replay audited with the actor `cli`; bad input exits 1 naming a stable code.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDocket, type Docket } from '../../src/docket.js';
import { PermanentSinkError } from '../../src/index.js';
import { BACKENDS, createTestStore, type TestStore } from '../helpers/backends.js';
import { docketCli } from '../helpers/cli.js';

for (const backend of BACKENDS) {
  describe(`docket outbox on ${backend}`, () => {
    let ts: TestStore;
    let docket: Docket;
    const dead: string[] = [];
    const published: string[] = [];
    let foreignDead: string;
    const cli = (...args: string[]) => docketCli(ts.env, ...args);
    const statusOf = async (id: string, tenant = 'acme') =>
      (await docket.outbox.get(id, { tenant })).status;

    beforeAll(async () => {
      ts = await createTestStore(backend);
      docket = createDocket({
        store: ts.store,
        dataDir: ts.dataDir,
        reapIntervalMs: 0,
        pruneIntervalMs: 0,
        outbox: {
          routes: [{ topic: 'order.*', sink: 'erp' }],
          sinks: {
            erp: {
              async publish(e) {
                if (e.topic === 'order.bad') throw new PermanentSinkError('erp refused it');
                return {};
              },
            },
          },
        },
      });
      await docket.migrate();
      const add = (tenant: string, topic: string, n: number) =>
        docket.withTransaction(tenant, (tx) =>
          docket.outbox.addMany(
            tx,
            Array.from({ length: n }, (_, i) => ({ topic, payload: { i } })),
          ),
        );
      dead.push(...(await add('acme', 'order.bad', 3)).map((e) => e.id));
      published.push(...(await add('acme', 'order.good', 2)).map((e) => e.id));
      foreignDead = (await add('globex', 'order.bad', 1))[0]!.id;
      expect(await (await docket.outbox.createRelay()).runOnce()).toBe(6);
    });

    afterAll(async () => {
      await docket?.close();
      await ts?.dispose();
    });

    it('lists a tenant’s events by state and topic, as text or JSON', async () => {
      const [deadText, json, byTopic, badStatus, badCursor] = await Promise.all([
        cli('outbox', 'list', '--tenant', 'acme', '--status', 'dead', '--limit', '2'),
        cli('outbox', 'list', '--tenant', 'acme', '--json'),
        cli('outbox', 'list', '--tenant', 'acme', '--topic', 'order.go*', '--json'),
        cli('outbox', 'list', '--tenant', 'acme', '--status', 'dead,zombie'),
        cli('outbox', 'list', '--tenant', 'acme', '--cursor', 'zzz'),
      ]);
      expect(deadText.code).toBe(0);
      const [first, second, more] = deadText.stdout.trim().split('\n');
      for (const line of [first, second]) {
        expect(dead).toContain(line!.split(/\s+/)[0]);
        expect(line).toMatch(/\bdead\s+order\.bad\s+attempts=1\/10\b.*erp refused it$/);
      }
      expect(more).toMatch(/^more: --cursor \S+$/);
      const all = JSON.parse(json.stdout) as { items: Array<{ id: string; tenantId: string }> };
      expect(all.items.map((e) => e.id).sort()).toEqual([...dead, ...published].sort());
      expect(all.items.every((e) => e.tenantId === 'acme')).toBe(true);
      const good = JSON.parse(byTopic.stdout) as { items: Array<{ id: string }> };
      expect(good.items.map((e) => e.id).sort()).toEqual([...published].sort());
      expect(badStatus).toMatchObject({
        code: 1,
        stderr: expect.stringContaining('VALIDATION_FAILED'),
      });
      expect(badCursor).toMatchObject({
        code: 1,
        stderr: expect.stringContaining('INVALID_CURSOR'),
      });
    });

    it('replays one dead event (audited as cli) and refuses what cannot be replayed', async () => {
      const [one] = dead;
      const [ok, notDead, foreign, neither] = await Promise.all([
        cli('outbox', 'replay', one!, '--tenant', 'acme'),
        cli('outbox', 'replay', published[0]!, '--tenant', 'acme'),
        cli('outbox', 'replay', foreignDead, '--tenant', 'acme'),
        cli('outbox', 'replay', '--tenant', 'acme'),
      ]);
      expect(ok).toMatchObject({ code: 0 });
      expect(ok.stdout).toContain(`replayed event ${one}: now pending`);
      expect(await statusOf(one!)).toBe('pending');
      expect(notDead).toMatchObject({
        code: 1,
        stderr: expect.stringContaining('OUTBOX_EVENT_NOT_DEAD'),
      });
      expect(foreign).toMatchObject({
        code: 1,
        stderr: expect.stringContaining('OUTBOX_EVENT_NOT_FOUND'),
      });
      expect(await statusOf(foreignDead, 'globex')).toBe('dead');
      expect(neither.code).toBe(1);
      const db = await docket.internals.systemDb();
      const audit = await db
        .selectFrom('audit_events')
        .select(['actor_type', 'actor_id'])
        .where('action', '=', 'outbox.event_replayed')
        .where('resource_id', '=', one!)
        .execute();
      expect(audit).toEqual([{ actor_type: 'system', actor_id: 'cli' }]);
    });

    it('replays every dead event of the tenant with --all-dead, with progress on stderr', async () => {
      const r = await cli('outbox', 'replay', '--all-dead', '--tenant', 'acme');
      expect(r.code).toBe(0);
      // The event replayed by the previous test is pending, not dead: two are left.
      expect(r.stdout).toContain('replayed 2 event(s)');
      expect(r.stderr).toMatch(/2\/2/);
      for (const id of dead) expect(await statusOf(id)).toBe('pending');
      expect(await statusOf(foreignDead, 'globex')).toBe('dead');
      const none = await cli('outbox', 'replay', '--all-dead', '--tenant', 'acme');
      expect(none.stdout).toContain('replayed 0 event(s)');
    });
  });
}
