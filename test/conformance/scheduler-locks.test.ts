// The LockBackend conformance suite (SPEC S-2): every lock provider must pass it. Today the
// matrix holds the database lease on each store; Redis and etcd providers add a line.
import { describe, expect, it } from 'vitest';
import { DatabaseLockBackend, type LockBackend } from '../../src/index.js';
import { BACKENDS, useDocketSuite } from '../helpers/backends.js';

const PROVIDERS = BACKENDS.map((store) => ({
  name: `database lease on ${store}`,
  store,
  make: async (d: ReturnType<ReturnType<typeof useDocketSuite>['make']>): Promise<LockBackend> =>
    new DatabaseLockBackend(await d.internals.systemDb()),
}));

describe.each(PROVIDERS)('lock backend: $name', ({ store, make }) => {
  const suite = useDocketSuite(store);
  let n = 0;
  const lockName = () => `test-lock-${++n}`;

  it('grants a free lock once; a second owner is refused until the lease expires', async () => {
    const locks = await make(suite.make());
    const name = lockName();
    const a = await locks.lockAcquire({ name, owner: 'a', leaseMs: 1000, now: 10_000 });
    expect(a).toMatchObject({ name, owner: 'a', expiresAt: 11_000 });
    expect(await locks.lockAcquire({ name, owner: 'b', leaseMs: 1000, now: 10_500 })).toBeNull();
    const b = await locks.lockAcquire({ name, owner: 'b', leaseMs: 1000, now: 11_000 });
    expect(b?.owner).toBe('b');
    expect(b!.token).toBeGreaterThan(a!.token);
  });

  it('only the current grant may extend or release; fencing tokens only grow', async () => {
    const locks = await make(suite.make());
    const name = lockName();
    const a = (await locks.lockAcquire({ name, owner: 'a', leaseMs: 1000, now: 0 }))!;
    expect(await locks.lockExtend({ grant: a, leaseMs: 1000, now: 900 })).toBe(true);
    // Extended to 1900: still held at 1500.
    expect(await locks.lockAcquire({ name, owner: 'b', leaseMs: 1000, now: 1500 })).toBeNull();
    const b = (await locks.lockAcquire({ name, owner: 'b', leaseMs: 1000, now: 2000 }))!;
    // The stale holder can neither extend nor release the new grant.
    expect(await locks.lockExtend({ grant: a, leaseMs: 1000, now: 2100 })).toBe(false);
    expect(await locks.lockRelease({ grant: a })).toBe(false);
    expect(await locks.lockRelease({ grant: b })).toBe(true);
    expect(await locks.lockRelease({ grant: b })).toBe(false);
    // Released: free at once, with a larger token than every earlier grant.
    const c = (await locks.lockAcquire({ name, owner: 'c', leaseMs: 1000, now: 2100 }))!;
    expect(c.token).toBeGreaterThan(b.token);
    expect(b.token).toBeGreaterThan(a.token);
  });

  it('of many owners racing for a free lock exactly one wins', async () => {
    const d = suite.make();
    const locks = await make(d);
    const name = lockName();
    const grants = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        locks.lockAcquire({ name, owner: `o${i}`, leaseMs: 60_000, now: 5000 }),
      ),
    );
    expect(grants.filter(Boolean)).toHaveLength(1);
  });
});
