import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/core/canonical-json.js';

// The definition canonicalJson must keep matching: stored payload and audit hashes depend on it.
function reference(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) =>
            a < b ? -1 : a > b ? 1 : 0,
          ),
        )
      : v,
  );
}

describe('canonicalJson', () => {
  it('serializes exactly like JSON.stringify with a key-sorting replacer', () => {
    fc.assert(
      fc.property(
        fc.anything({ withDate: true, withNullPrototype: true, withSparseArray: true }),
        (v) => {
          expect(canonicalJson(v)).toBe(reference(v));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('orders keys independently of insertion order', () => {
    expect(canonicalJson({ b: 1, a: { d: 2, c: [3, { z: 1, y: 2 }] } })).toBe(
      canonicalJson({ a: { c: [3, { y: 2, z: 1 }], d: 2 }, b: 1 }),
    );
  });
});

describe('uuidV7At', () => {
  it('gives ids of one millisecond in creation order, stamped with that millisecond', async () => {
    const { uuidV7At } = await import('../../src/core/ids.js');
    const state = { msecs: -1, seq: 0 };
    const ids = Array.from({ length: 1000 }, () => uuidV7At(1_700_000_000_123, state));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(1000);
    expect(
      ids.every((id) =>
        id.replace(/-/g, '').startsWith((1_700_000_000_123).toString(16).padStart(12, '0')),
      ),
    ).toBe(true);
  });
});
