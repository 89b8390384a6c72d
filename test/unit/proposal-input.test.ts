// The apply request hash and proposal input validation (SPEC S-7), property-based where the
// input is structured: the hash ignores key order and nothing else.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { JsonValue } from '../../src/index.js';
import { prepareApply, prepareProposal } from '../../src/proposals/input.js';

/** The same value with every object's keys put in the order `order` gives them. */
function withKeys(v: JsonValue, order: (keys: string[]) => string[]): JsonValue {
  if (Array.isArray(v)) return v.map((x) => withKeys(x, order));
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, JsonValue>;
    return Object.fromEntries(
      order(Object.keys(o)).map((k) => [k, withKeys(o[k] as JsonValue, order)]),
    );
  }
  return v;
}
const reorder = (v: JsonValue) => withKeys(v, (keys) => keys.reverse());
const sortDeep = (v: JsonValue) => withKeys(v, (keys) => keys.sort());

const json = fc.jsonValue({ maxDepth: 4 }) as fc.Arbitrary<JsonValue>;
const hash = (request: JsonValue, candidateId?: string) =>
  prepareApply({ idempotencyKey: 'k', request, candidateId }).requestHash;

describe('proposal apply request hash', () => {
  it('is the same for the same request whatever its key order', () => {
    fc.assert(
      fc.property(json, (request) => {
        expect(hash(reorder(request))).toBe(hash(request));
      }),
    );
  });

  it('differs when the request or the chosen candidate differs', () => {
    fc.assert(
      fc.property(json, json, (a, b) => {
        const same = JSON.stringify(sortDeep(a)) === JSON.stringify(sortDeep(b));
        expect(hash(a) === hash(b)).toBe(same);
      }),
    );
    expect(hash({ x: 1 }, 'a')).not.toBe(hash({ x: 1 }, 'b'));
    expect(hash({ x: 1 }, 'a')).not.toBe(hash({ x: 1 }));
  });

  it('refuses a missing or malformed key, a bad candidate id and an oversized request', () => {
    for (const input of [
      { idempotencyKey: '' },
      { idempotencyKey: 'a\nb' },
      { idempotencyKey: 'x'.repeat(256) },
      { idempotencyKey: 'k', candidateId: 'a b' },
    ]) {
      expect(() => prepareApply(input)).toThrow(
        expect.objectContaining({ code: 'VALIDATION_FAILED' }),
      );
    }
    expect(() => prepareApply({ idempotencyKey: 'k', request: 'x'.repeat(70_000) })).toThrow(
      expect.objectContaining({ code: 'PAYLOAD_TOO_LARGE' }),
    );
  });
});

describe('proposal create input', () => {
  const now = Date.parse('2026-05-01T00:00:00Z');
  const base = { kind: 'k', target: 't', changes: {}, expiresAt: now + 1 };

  it('measures the change set and its candidates together against the limit', () => {
    const half = { blob: 'x'.repeat(600) };
    expect(() =>
      prepareProposal({ ...base, changes: half }, { now, limitBytes: 1024 }),
    ).not.toThrow();
    expect(() =>
      prepareProposal(
        { ...base, changes: half, candidates: [{ id: 'a', changes: half }] },
        { now, limitBytes: 1024 },
      ),
    ).toThrow(expect.objectContaining({ code: 'PAYLOAD_TOO_LARGE' }));
  });

  it('accepts a Date expiry and keeps the change set as canonical JSON', () => {
    const p = prepareProposal(
      { ...base, changes: { b: 1, a: [2, { d: 1, c: 2 }] }, expiresAt: new Date(now + 60_000) },
      { now, limitBytes: 1024 },
    );
    expect(p.expiresAt).toBe(now + 60_000);
    expect(p.changesJson).toBe('{"a":[2,{"c":2,"d":1}],"b":1}');
  });
});
