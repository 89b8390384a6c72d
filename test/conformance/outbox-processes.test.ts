// Outbox relays as separate processes on every store (SPEC O-2): three relay processes drain
// the outbox together into a real HTTP receiver that counts deliveries per event id. In the
// normal path every event arrives exactly once; when one relay is SIGKILLed mid-batch, no event
// is lost, and the only events delivered twice are ones the dead relay held (at most its batch),
// delivered again only after their lease expired.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Docket } from '../../src/index.js';
import { BACKENDS, useDocketSuite, waitFor } from '../helpers/backends.js';
import { spawnRelay, type WorkerProcess } from '../helpers/processes.js';

const EVENTS = 600;
const BATCH = 10;
// Batches a relay has in flight at once (RelayOptions.concurrency).
const IN_FLIGHT = 2;
const LEASE_MS = 2000;
// The normal path's lease: long enough that a loaded host never lets one lapse mid-batch (a
// lapsed lease is a takeover, and a takeover may publish again, which that test forbids).
const NORMAL_LEASE_MS = 30_000;
const RESPONSE_DELAY_MS = 40;

describe.each(BACKENDS)('outbox relay processes on %s', (backend) => {
  const suite = useDocketSuite(backend);
  let server: Server;
  let url: string;
  // Arrival times (ms) of every delivery, by event id (the Idempotency-Key header).
  let arrivals = new Map<string, number[]>();
  let relays: WorkerProcess[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      const id = String(req.headers['idempotency-key']);
      const at = Date.now();
      req.resume();
      req.on('end', () => {
        const list = arrivals.get(id) ?? [];
        list.push(at);
        arrivals.set(id, list);
        // A slow receiver: relays spend most of a batch waiting, holding their leases.
        setTimeout(() => res.writeHead(200).end('ok'), RESPONSE_DELAY_MS);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`;
  });
  afterEach(async () => {
    for (const r of relays) {
      if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGTERM');
      await r.exited;
    }
    relays = [];
    arrivals = new Map();
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const start = (ids: string[], leaseMs = LEASE_MS) =>
    Promise.all(
      ids.map((id) =>
        spawnRelay({
          ...suite.ts.env,
          DOCKET_WEBHOOK_ALLOW: '127.0.0.1',
          TEST_WEBHOOK_URL: url,
          TEST_RELAY_ID: id,
          TEST_LEASE_MS: String(leaseMs),
          TEST_BATCH: String(BATCH),
          TEST_CONCURRENCY: String(IN_FLIGHT),
        }),
      ),
    );
  const addEvents = async (d: Docket, tenant: string): Promise<string[]> => {
    const added = await d.withTransaction(tenant, (tx) =>
      d.outbox.addMany(
        tx,
        Array.from({ length: EVENTS }, (_, i) => ({ topic: 'order.placed', payload: { i } })),
      ),
    );
    return added.map((e) => e.id);
  };
  const allPublished = (d: Docket, tenant: string) =>
    waitFor(async () => (await d.outbox.counts({ tenant })).published === EVENTS, {
      timeoutMs: 60_000,
      what: `${EVENTS} events published`,
    });

  it('three relay processes publish every event exactly once', async () => {
    const d = suite.make();
    const tenant = `t${Date.now().toString(36)}`;
    relays = await start(['relay-1', 'relay-2', 'relay-3'], NORMAL_LEASE_MS);
    const ids = await addEvents(d, tenant);
    await allPublished(d, tenant);
    expect([...arrivals.keys()].sort()).toEqual([...ids].sort());
    const twice = [...arrivals].filter(([, at]) => at.length > 1);
    expect(twice).toEqual([]);
    // Every delivery was stored, by the relay that made it.
    const db = await d.internals.systemDb();
    const stored = await db
      .selectFrom('webhook_deliveries')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('tenant_id', '=', tenant)
      .where('class', '=', 'success')
      .executeTakeFirstOrThrow();
    expect(Number(stored.n)).toBe(EVENTS);
    const owners = await db
      .selectFrom('outbox_events')
      .select('lease_owner')
      .where('tenant_id', '=', tenant)
      .where('lease_owner', 'is not', null)
      .execute();
    expect(owners).toEqual([]);
  });

  it('a relay SIGKILLed mid-batch loses no event; only its held events repeat, after the lease', async () => {
    const d = suite.make();
    const tenant = `k${Date.now().toString(36)}`;
    // Only the doomed relay has the short lease: a survivor's lease lapsing on a loaded host
    // would repeat events of its own, which is at-least-once but not what this test is about.
    relays = [
      ...(await start(['doomed'])),
      ...(await start(['relay-2', 'relay-3'], NORMAL_LEASE_MS)),
    ];
    const ids = await addEvents(d, tenant);
    const db = await d.internals.systemDb();
    const held = () =>
      db
        .selectFrom('outbox_events')
        .select(['id', 'lease_until'])
        .where('tenant_id', '=', tenant)
        .where('status', '=', 'publishing')
        .where('lease_owner', '=', 'doomed')
        .execute();
    // Mid-batch: the doomed relay holds claimed events and the drain is well under way.
    await waitFor(async () => arrivals.size >= 100 && (await held()).length > 0, {
      what: 'the doomed relay holding a batch',
    });
    const doomed = relays[0] as WorkerProcess;
    doomed.child.kill('SIGKILL');
    expect((await doomed.exited).signal).toBe('SIGKILL');
    // Its leases stay until they expire (LEASE_MS, far longer than this read).
    const atDeath = await held();
    expect(atDeath.length).toBeGreaterThan(0);
    expect(atDeath.length).toBeLessThanOrEqual(BATCH * IN_FLIGHT);
    const leaseEnd = new Map(atDeath.map((e) => [e.id, Number(e.lease_until)]));

    await allPublished(d, tenant);
    // None lost: every event reached the receiver.
    expect([...arrivals.keys()].sort()).toEqual([...ids].sort());
    const twice = [...arrivals].filter(([, at]) => at.length > 1);
    expect(twice.length).toBeLessThanOrEqual(BATCH * IN_FLIGHT);
    for (const [id, at] of twice) {
      // Only an event the dead relay held, and only once more, after its lease expired.
      expect(leaseEnd.has(id)).toBe(true);
      expect(at).toHaveLength(2);
      expect(at[1]).toBeGreaterThanOrEqual(leaseEnd.get(id) as number);
    }
    // The events it held all end published: by the others after the lease (attempt 2), or on
    // attempt 1 when the dead relay's mark statement had reached PostgreSQL before the kill (the
    // server finishes and commits it).
    const retaken = await db
      .selectFrom('outbox_events')
      .select(['status', 'attempts', 'lease_owner'])
      .where('tenant_id', '=', tenant)
      .where('id', 'in', [...leaseEnd.keys()])
      .execute();
    expect(retaken.every((e) => e.status === 'published' && Number(e.attempts) >= 1)).toBe(true);
  });
});
