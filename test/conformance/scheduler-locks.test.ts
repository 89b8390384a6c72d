// The LockBackend conformance suite (SPEC S-2): every lock provider must pass it — the
// database lease on each store, Redis and etcd. Adding a provider is a line in PROVIDERS.
// Redis and etcd are real servers (127.0.0.1:6379 and :2379); each run uses a key prefix of its
// own and deletes it. An unreachable etcd fails its block, as an unreachable Redis does.
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  DatabaseLockBackend,
  EtcdLockBackend,
  RedisLockBackend,
  type LockBackend,
} from '../../src/index.js';
import { BACKENDS, ETCD_URL, REDIS_URL, useDocketSuite, waitFor } from '../helpers/backends.js';

interface Provider {
  name: string;
  /** Whether the server itself ends a lease (a key TTL), not only the caller's clock. */
  serverExpiry: boolean;
  /** Registers the block's hooks; `make()` opens one more client of the provider. */
  use(): { make(): Promise<LockBackend> };
}

/** Clients a block opened, stopped after each test. */
function clients() {
  const open: LockBackend[] = [];
  afterEach(async () => {
    for (const c of open.splice(0)) await c.stop?.();
  });
  return async (c: LockBackend) => {
    open.push(c);
    await c.start?.();
    return c;
  };
}

const database = (store: (typeof BACKENDS)[number]): Provider => ({
  name: `database lease on ${store}`,
  serverExpiry: false,
  use() {
    const suite = useDocketSuite(store);
    return { make: async () => new DatabaseLockBackend(await suite.make().internals.systemDb()) };
  },
});

const redis: Provider = {
  name: 'redis',
  serverExpiry: true,
  use() {
    const prefix = `docket-test-locks-${randomBytes(6).toString('hex')}:`;
    const track = clients();
    afterAll(async () => {
      const r = new Redis(REDIS_URL);
      const keys = await r.keys(`${prefix}*`);
      if (keys.length) await r.del(...keys);
      await r.quit();
    });
    return { make: () => track(new RedisLockBackend({ url: REDIS_URL, prefix })) };
  },
};

const etcd: Provider = {
  name: 'etcd',
  serverExpiry: true,
  use() {
    const prefix = `docket-test-locks-${randomBytes(6).toString('hex')}/`;
    const track = clients();
    afterAll(async () => {
      const c = new Etcd3({ hosts: ETCD_URL });
      await c.delete().prefix(prefix);
      c.close();
    });
    return { make: () => track(new EtcdLockBackend({ url: ETCD_URL, prefix })) };
  },
};

// etcd is a backend like the others: unreachable, its suite fails (naming the URL) instead of
// being skipped; `.ci/run` installs and starts it.
const PROVIDERS: Provider[] = [...BACKENDS.map(database), redis, etcd];

describe.each(PROVIDERS)('lock backend: $name', (provider) => {
  const { make } = provider.use();
  let n = 0;
  const lockName = () => `test-lock-${Date.now()}-${++n}`;

  it('grants a free lock once; a second owner is refused until the lease expires', async () => {
    const locks = await make();
    const name = lockName();
    const a = await locks.lockAcquire({ name, owner: 'a', leaseMs: 60_000, now: 10_000 });
    expect(a).toMatchObject({ name, owner: 'a', expiresAt: 70_000 });
    expect(await locks.lockAcquire({ name, owner: 'b', leaseMs: 60_000, now: 69_999 })).toBeNull();
    // The same owner asking again is refused too: a lease is not re-entrant.
    expect(await locks.lockAcquire({ name, owner: 'a', leaseMs: 60_000, now: 20_000 })).toBeNull();
    const b = await locks.lockAcquire({ name, owner: 'b', leaseMs: 60_000, now: 70_000 });
    expect(b?.owner).toBe('b');
    expect(b!.token).toBeGreaterThan(a!.token);
  });

  it('only the current grant may extend or release; fencing tokens only grow', async () => {
    const locks = await make();
    const name = lockName();
    const a = (await locks.lockAcquire({ name, owner: 'a', leaseMs: 30_000, now: 0 }))!;
    expect(await locks.lockExtend({ grant: a, leaseMs: 30_000, now: 20_000 })).toBe(true);
    // Extended to 50,000: still held at 40,000.
    expect(await locks.lockAcquire({ name, owner: 'b', leaseMs: 30_000, now: 40_000 })).toBeNull();
    const b = (await locks.lockAcquire({ name, owner: 'b', leaseMs: 30_000, now: 50_000 }))!;
    expect(b).not.toBeNull();
    // The stale holder can neither extend nor release the new grant.
    expect(await locks.lockExtend({ grant: a, leaseMs: 30_000, now: 50_100 })).toBe(false);
    expect(await locks.lockRelease({ grant: a })).toBe(false);
    // Nor can anyone holding the current token under another owner name, or the reverse.
    expect(await locks.lockExtend({ grant: { ...b, owner: 'a' }, leaseMs: 1, now: 50_100 })).toBe(
      false,
    );
    expect(await locks.lockRelease({ grant: { ...b, owner: 'a' } })).toBe(false);
    expect(await locks.lockRelease({ grant: { ...b, token: a.token } })).toBe(false);
    expect(await locks.lockRelease({ grant: b })).toBe(true);
    expect(await locks.lockRelease({ grant: b })).toBe(false);
    // Released: free at once, with a larger token than every earlier grant.
    const c = (await locks.lockAcquire({ name, owner: 'c', leaseMs: 30_000, now: 50_100 }))!;
    expect(c.token).toBeGreaterThan(b.token);
    expect(b.token).toBeGreaterThan(a.token);
    expect(await locks.lockExtend({ grant: b, leaseMs: 30_000, now: 50_200 })).toBe(false);
  });

  it('tokens grow across clients, releases, expiries and takeovers', async () => {
    const [one, two] = [await make(), await make()];
    const name = lockName();
    const tokens: number[] = [];
    const a = (await one.lockAcquire({ name, owner: 'a', leaseMs: 30_000, now: 0 }))!;
    tokens.push(a.token);
    expect(await one.lockRelease({ grant: a })).toBe(true);
    const b = (await two.lockAcquire({ name, owner: 'b', leaseMs: 30_000, now: 1000 }))!;
    tokens.push(b.token);
    // b's lease ends at 31,000 by the callers' clock: another client takes over.
    const c = (await one.lockAcquire({ name, owner: 'c', leaseMs: 30_000, now: 31_000 }))!;
    tokens.push(c.token);
    expect(await two.lockRelease({ grant: b })).toBe(false);
    const d = (await two.lockAcquire({ name, owner: 'd', leaseMs: 30_000, now: 61_000 }))!;
    tokens.push(d.token);
    // A different lock's grants do not make this one's go back either.
    const other = (await one.lockAcquire({ name: lockName(), owner: 'x', leaseMs: 1, now: 0 }))!;
    expect(other).not.toBeNull();
    const e = (await one.lockAcquire({ name, owner: 'e', leaseMs: 30_000, now: 91_000 }))!;
    tokens.push(e.token);
    for (let i = 1; i < tokens.length; i++) {
      expect(tokens[i]!).toBeGreaterThan(tokens[i - 1]!);
    }
  });

  it('of many clients racing for a free lock exactly one wins', async () => {
    const racers = await Promise.all(Array.from({ length: 5 }, () => make()));
    const name = lockName();
    const grants = await Promise.all(
      racers.flatMap((locks, c) =>
        Array.from({ length: 4 }, (_, i) =>
          locks.lockAcquire({ name, owner: `c${c}-${i}`, leaseMs: 60_000, now: 5000 }),
        ),
      ),
    );
    expect(grants.filter(Boolean)).toHaveLength(1);
    // And racing for it again once its lease ended: again exactly one, with a larger token.
    const again = await Promise.all(
      racers.map((locks, c) =>
        locks.lockAcquire({ name, owner: `late-${c}`, leaseMs: 60_000, now: 65_000 }),
      ),
    );
    const winners = again.filter(Boolean);
    expect(winners).toHaveLength(1);
    expect(winners[0]!.token).toBeGreaterThan(grants.find(Boolean)!.token);
  });

  if (provider.serverExpiry) {
    it('a lease the server ended (key expiry) frees the lock, and the token still grows', async () => {
      const [one, two] = [await make(), await make()];
      const name = lockName();
      // The callers' clock stands still; only the server's TTL can end this lease.
      const a = (await one.lockAcquire({ name, owner: 'a', leaseMs: 1000, now: 0 }))!;
      expect(await two.lockAcquire({ name, owner: 'b', leaseMs: 1000, now: 0 })).toBeNull();
      const b = await waitFor(
        () => two.lockAcquire({ name, owner: 'b', leaseMs: 60_000, now: 0 }),
        {
          timeoutMs: 15_000,
          what: 'the server to expire the lease',
        },
      );
      expect(b.token).toBeGreaterThan(a.token);
      expect(await one.lockExtend({ grant: a, leaseMs: 1000, now: 0 })).toBe(false);
      expect(await one.lockRelease({ grant: a })).toBe(false);
    }, 20_000);
  }
});
