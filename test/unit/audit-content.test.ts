import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildAuditContent,
  DEFAULT_SECRET_FIELDS,
  isSecretField,
  MIN_CONTENT_BYTES,
  type AuditContent,
  type AuditDiffEntry,
  type JsonValue,
} from '../../src/audit/content.js';
import { cutString, jsonBytes, SizedSlots } from '../../src/audit/truncate.js';
import { isDocketError } from '../../src/core/errors.js';

const UNLIMITED = { maxBytes: Number.MAX_SAFE_INTEGER };
// Shrinking inputs of hundreds of KB can take minutes: report the counterexample found by then.
const SHRINK_LIMIT = { interruptAfterTimeLimit: 20_000 };
const bytesOf = (content: AuditContent): number =>
  Buffer.byteLength(JSON.stringify(content), 'utf8');
const diffOf = (before: unknown, after: unknown, secretFields?: string[]): AuditDiffEntry[] =>
  buildAuditContent({ before, after, secretFields }, UNLIMITED).diff ?? [];

type JsonObject = { [key: string]: JsonValue };
const isObject = (v: unknown): v is JsonObject =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

// RFC 6901, written independently of the code under test.
function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}
const escapeKey = (key: string): string => key.replace(/~/g, '~0').replace(/\//g, '~1');

function resolve(root: unknown, pointer: string): { found: boolean; value?: unknown } {
  let node: unknown = root;
  for (const key of parsePointer(pointer)) {
    if (Array.isArray(node) && /^(0|[1-9]\d*)$/.test(key) && Number(key) < node.length) {
      node = node[Number(key)];
    } else if (isObject(node) && Object.hasOwn(node, key)) node = node[key];
    else return { found: false };
  }
  return { found: true, value: node };
}

function setOwn(target: JsonObject, key: string, value: JsonValue): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

/** Replays a diff on a copy of `before`, as an audit viewer reconstructing `after` would. */
function applyDiff(before: JsonValue, diff: readonly AuditDiffEntry[]): JsonValue {
  let root = structuredClone(before);
  for (const entry of diff) {
    const keys = parsePointer(entry.path);
    const last = keys.pop();
    if (last === undefined) {
      root = entry.after!;
      continue;
    }
    const parent = resolve(root, keys.map((k) => '/' + escapeKey(k)).join('')).value;
    if (Array.isArray(parent)) {
      const index = Number(last);
      if (entry.op === 'removed') parent.length = Math.min(parent.length, index);
      else parent[index] = entry.after!;
    } else if (isObject(parent)) {
      if (entry.op === 'removed') delete parent[last];
      else setOwn(parent, last, entry.after!);
    } else throw new Error(`no container at ${entry.path}`);
  }
  return root;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const viaJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value) ?? 'null');

function hasSecretKey(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(hasSecretKey);
  if (!isObject(value)) return false;
  return Object.keys(value).some((k) => isSecretField(k) || hasSecretKey(value[k]));
}

/** Every leaf (scalar or empty container) with its pointer, depth-first, keys sorted. */
function leaves(value: JsonValue, path = ''): [string, JsonValue][] {
  if (Array.isArray(value) && value.length > 0) {
    return value.flatMap((v, i) => leaves(v, `${path}/${i}`));
  }
  if (isObject(value) && Object.keys(value).length > 0) {
    return Object.keys(value)
      .sort()
      .flatMap((k) => leaves(value[k]!, `${path}/${escapeKey(k)}`));
  }
  return [[path, value]];
}

describe('buildAuditContent: structured diff', () => {
  it('reports a changed nested field as one "changed" entry at its JSON Pointer', () => {
    const before = { name: 'Ada', address: { city: 'London', zip: 'N1' } };
    const after = { name: 'Ada', address: { city: 'Paris', zip: 'N1' } };
    expect(diffOf(before, after)).toEqual([
      { path: '/address/city', op: 'changed', before: 'London', after: 'Paris' },
    ]);
  });

  it('compares arrays by index: growth adds the new indexes, shrinking removes the lost ones', () => {
    expect(diffOf({ items: [1, 2] }, { items: [1, 5, 3, { a: 1 }] })).toEqual([
      { path: '/items/1', op: 'changed', before: 2, after: 5 },
      { path: '/items/2', op: 'added', after: 3 },
      { path: '/items/3', op: 'added', after: { a: 1 } },
    ]);
    expect(diffOf({ items: [1, 2, 3] }, { items: [1] })).toEqual([
      { path: '/items/1', op: 'removed', before: 2 },
      { path: '/items/2', op: 'removed', before: 3 },
    ]);
  });

  it('reports a type change (object, array, scalar) as one "changed" entry with both whole values', () => {
    expect(diffOf({ v: { a: 1 } }, { v: [1] })).toEqual([
      { path: '/v', op: 'changed', before: { a: 1 }, after: [1] },
    ]);
    expect(diffOf({ v: [1, 2] }, { v: 'none' })).toEqual([
      { path: '/v', op: 'changed', before: [1, 2], after: 'none' },
    ]);
    expect(diffOf('old', { a: 1 })).toEqual([
      { path: '', op: 'changed', before: 'old', after: { a: 1 } },
    ]);
  });

  it('lists every leaf as added on creation and as removed on deletion', () => {
    const record = { id: 7, tags: ['a', 'b'], profile: { bio: 'hi', links: [] } };
    expect(diffOf(undefined, record)).toEqual([
      { path: '/id', op: 'added', after: 7 },
      { path: '/profile/bio', op: 'added', after: 'hi' },
      { path: '/profile/links', op: 'added', after: [] },
      { path: '/tags/0', op: 'added', after: 'a' },
      { path: '/tags/1', op: 'added', after: 'b' },
    ]);
    expect(diffOf(record, undefined).map((e) => [e.path, e.op, e.before])).toEqual(
      leaves(record).map(([path, value]) => [path, 'removed', value]),
    );
  });

  it('gives an empty diff for equal values and no diff when neither before nor after is given', () => {
    expect(diffOf({ a: [1, { b: 2 }] }, { a: [1, { b: 2 }] })).toEqual([]);
    expect(buildAuditContent({ metadata: { why: 'x' } }, UNLIMITED)).toEqual({
      metadata: { why: 'x' },
    });
  });

  it('escapes "~" as ~0 and "/" as ~1 in entry paths', () => {
    expect(diffOf({}, { 'a/b': { 'c~d': 1 } })).toEqual([
      { path: '/a~1b', op: 'added', after: { 'c~d': 1 } },
    ]);
    expect(diffOf({ '~/': 1 }, { '~/': 2 })[0]?.path).toBe('/~0~1');
  });

  it('orders entries depth-first with keys sorted, whatever the input key order', () => {
    const before = { z: 1, a: { y: 1, b: 1 }, m: 1 };
    const after = { m: 2, a: { b: 2, y: 2 }, z: 2 };
    expect(diffOf(before, after).map((e) => e.path)).toEqual(['/a/b', '/a/y', '/m', '/z']);
  });
});

describe('buildAuditContent: normalization', () => {
  it('turns a circular reference into "[Circular]" and lists its path as truncated', () => {
    const node: Record<string, unknown> = { name: 'n' };
    node.self = node;
    const content = buildAuditContent({ after: { node } }, UNLIMITED);
    expect(content.diff).toEqual([
      { path: '/node/name', op: 'added', after: 'n' },
      { path: '/node/self', op: 'added', after: '[Circular]' },
    ]);
    expect(content.truncated).toEqual(['/diff/1/after']);
  });

  it('serializes an object shared (not circular) at each place it appears', () => {
    const shared = { v: 1 };
    const content = buildAuditContent({ metadata: { a: shared, b: [shared] } }, UNLIMITED);
    expect(content).toEqual({ metadata: { a: { v: 1 }, b: [{ v: 1 }] } });
  });

  it('converts BigInt, Date, Map, Set, binary data, Error and non-finite numbers to JSON', () => {
    const metadata = {
      big: 12345678901234567890n,
      at: new Date(Date.UTC(2024, 0, 2)),
      invalid: new Date('nope'),
      map: new Map<unknown, unknown>([
        ['k', 1],
        [2, 'two'],
      ]),
      set: new Set(['x', 'y']),
      buffer: Buffer.from('hello'),
      floats: new Float64Array(4),
      error: new TypeError('bad input'),
      numbers: [NaN, Infinity, -Infinity, -0],
      boxed: [new String('s'), new Number(2)],
    };
    expect(buildAuditContent({ metadata }, UNLIMITED).metadata).toEqual({
      big: '12345678901234567890',
      at: '2024-01-02T00:00:00.000Z',
      invalid: null,
      map: { k: 1, '2': 'two' },
      set: ['x', 'y'],
      buffer: '[Binary 5 bytes]',
      floats: '[Binary 32 bytes]',
      error: { name: 'TypeError', message: 'bad input' },
      numbers: [null, null, null, 0],
      boxed: ['s', 2],
    });
  });

  it('drops functions, symbols and undefined properties, and turns undefined array items into null', () => {
    const metadata = { f: () => 1, s: Symbol('s'), u: undefined, list: [undefined, () => 1, 1] };
    expect(buildAuditContent({ metadata }, UNLIMITED).metadata).toEqual({
      list: [null, null, 1],
    });
  });

  it('uses toJSON, and replaces a throwing toJSON or getter by "[Unserializable]"', () => {
    const metadata = {
      money: { toJSON: () => '12.50 EUR' },
      broken: {
        toJSON: () => {
          throw new Error('nope');
        },
      },
      get trap(): string {
        throw new Error('getter');
      },
      ok: 1,
    };
    const content = buildAuditContent({ metadata }, UNLIMITED);
    expect(content.metadata).toEqual({
      money: '12.50 EUR',
      broken: '[Unserializable]',
      trap: '[Unserializable]',
      ok: 1,
    });
    expect(content.truncated).toEqual(['/metadata/broken', '/metadata/trap']);
  });

  it('replaces what is nested deeper than 32 levels by "[MaxDepth]"', () => {
    let deep: unknown = 'bottom';
    for (let i = 0; i < 40; i++) deep = { d: deep };
    const content = buildAuditContent({ metadata: deep }, UNLIMITED);
    const at32 = '/d'.repeat(32);
    expect(resolve(content.metadata, at32).value).toBe('[MaxDepth]');
    expect(content.truncated).toEqual([`/metadata${at32}`]);
  });
});

describe('buildAuditContent: secret fields', () => {
  it('shows a secret field at any depth only as its operation, never its value', () => {
    const before = { user: { profile: { password: 'old-pw' }, name: 'a' } };
    const after = { user: { profile: { password: 'new-pw' }, name: 'b' }, apiKey: 'k-1' };
    const diff = diffOf(before, after);
    expect(diff).toEqual([
      { path: '/apiKey', op: 'added', secret: true },
      { path: '/user/name', op: 'changed', before: 'a', after: 'b' },
      { path: '/user/profile/password', op: 'changed', secret: true },
    ]);
  });

  it('matches secret names ignoring case, "_" and "-"', () => {
    for (const name of [
      'api_key',
      'API-KEY',
      'apiKey',
      'Access_Token',
      'COOKIE',
      'session-token',
    ]) {
      expect(isSecretField(name)).toBe(true);
    }
    expect(isSecretField('tokenizer')).toBe(false);
    expect(isSecretField('pin')).toBe(false);
    expect(isSecretField('PIN', ['pin'])).toBe(true);
    expect(DEFAULT_SECRET_FIELDS).toContain('password');
  });

  it('treats the whole subtree under a secret key as one secret entry', () => {
    const before = { credentials: { a: 1 }, private_key: { pem: 'x', meta: [1] } };
    const after = { credentials: { a: 2 }, private_key: { pem: 'y', meta: [1, 2] } };
    expect(diffOf(before, after, ['credentials'])).toEqual([
      { path: '/credentials', op: 'changed', secret: true },
      { path: '/private_key', op: 'changed', secret: true },
    ]);
  });

  it('produces no entry for an unchanged secret and removed/added for one that (dis)appears', () => {
    expect(diffOf({ token: 't', n: 1 }, { token: 't', n: 2 })).toEqual([
      { path: '/n', op: 'changed', before: 1, after: 2 },
    ]);
    expect(diffOf({ token: 't' }, { cookie: 'c' })).toEqual([
      { path: '/cookie', op: 'added', secret: true },
      { path: '/token', op: 'removed', secret: true },
    ]);
  });

  it('cuts secret keys out of a value carried whole and lists each one on its own', () => {
    const after = { cfg: { url: 'u', auth: { token: 's3', user: 'me' } } };
    expect(diffOf({}, after)).toEqual([
      { path: '/cfg', op: 'added', after: { url: 'u', auth: { user: 'me' } } },
      { path: '/cfg/auth/token', op: 'added', secret: true },
    ]);
    expect(diffOf({ cfg: 'none' }, after)).toEqual([
      { path: '/cfg', op: 'changed', before: 'none', after: { url: 'u', auth: { user: 'me' } } },
      { path: '/cfg/auth/token', op: 'added', secret: true },
    ]);
    expect(diffOf({ cfg: { url: 'u', token: 's3' } }, { cfg: 'none' })).toEqual([
      { path: '/cfg', op: 'changed', before: { url: 'u' }, after: 'none' },
      { path: '/cfg/token', op: 'removed', secret: true },
    ]);
    expect(diffOf(undefined, { password: 'p', name: 'n' })).toEqual([
      { path: '/name', op: 'added', after: 'n' },
      { path: '/password', op: 'added', secret: true },
    ]);
  });

  it('stores metadata values under secret keys as "[redacted]"', () => {
    const metadata = {
      headers: { Authorization: 'Bearer abc', accept: 'json' },
      pin: { digits: '1234' },
      list: [{ refresh_token: 'r' }],
    };
    const content = buildAuditContent({ metadata, secretFields: ['pin'] }, UNLIMITED);
    expect(content.metadata).toEqual({
      headers: { Authorization: '[redacted]', accept: 'json' },
      pin: '[redacted]',
      list: [{ refresh_token: '[redacted]' }],
    });
  });
});

describe('buildAuditContent: size cap', () => {
  it('cuts a long string to a prefix plus a marker with the number of bytes removed', () => {
    const content = buildAuditContent({ after: { bio: 'a'.repeat(10_000) } }, { maxBytes: 1024 });
    const bio = content.diff?.[0]?.after as string;
    expect(bio).toMatch(/^a+…\[truncated \d+ bytes\]$/);
    const kept = bio.indexOf('…');
    expect(bio).toContain(`[truncated ${10_000 - kept} bytes]`);
    expect(content.truncated).toEqual(['/diff/0/after']);
    expect(bytesOf(content)).toBeLessThanOrEqual(1024);
  });

  it('never splits a surrogate pair when cutting a string', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 600, max: 4000 }),
        (pad, max) => {
          const text = 'x'.repeat(pad) + '😀é'.repeat(5000);
          const content = buildAuditContent({ metadata: { text } }, { maxBytes: max });
          const cut = (content.metadata as JsonObject).text as string;
          expect(cut).not.toMatch(LONE_SURROGATE);
          expect(text.startsWith(cut.slice(0, cut.indexOf('…')))).toBe(true);
        },
      ),
    );
  });

  it('trims a long array to its first items followed by "[… N more items]"', () => {
    const items = Array.from({ length: 2000 }, (_, i) => i);
    const content = buildAuditContent({ metadata: { items } }, { maxBytes: 2048 });
    const kept = (content.metadata as JsonObject).items as JsonValue[];
    const marker = kept.at(-1) as string;
    expect(kept.slice(0, -1)).toEqual(items.slice(0, kept.length - 1));
    expect(marker).toBe(`[… ${2000 - (kept.length - 1)} more items]`);
    expect(content.truncated).toEqual(['/metadata/items']);
    expect(bytesOf(content)).toBeLessThanOrEqual(2048);
  });

  it('replaces the smallest subtree that makes it fit by "[truncated]" when cutting strings and arrays is not enough', () => {
    const many = Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`k${i}`, i]));
    const after = { account: { settings: many, owner: { name: 'Ada' } }, title: 't2' };
    const content = buildAuditContent({ before: { title: 't1' }, after }, { maxBytes: 4096 });
    expect(content.diff).toEqual([
      {
        path: '/account',
        op: 'added',
        after: { settings: '[truncated]', owner: { name: 'Ada' } },
      },
      { path: '/title', op: 'changed', before: 't1', after: 't2' },
    ]);
    expect(content.truncated).toEqual(['/diff/0/after/settings']);
  });

  it('drops trailing diff entries when there are too many to fit, and lists "/diff"', () => {
    const after = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`f${1000 + i}`, i]));
    const content = buildAuditContent({ after }, { maxBytes: 4096 });
    const all = diffOf(undefined, after);
    expect(content.diff!.length).toBeGreaterThan(10);
    expect(content.diff).toEqual(all.slice(0, content.diff!.length));
    expect(content.truncated).toEqual(['/diff']);
    expect(bytesOf(content)).toBeLessThanOrEqual(4096);
  });

  it('caps a huge truncated list at 100 paths plus "…N more"', () => {
    const rows = Array.from({ length: 300 }, () => {
      const row: Record<string, unknown> = {};
      row.self = row;
      return row;
    });
    const content = buildAuditContent({ metadata: rows }, { maxBytes: 65_536 });
    expect(content.truncated).toHaveLength(101);
    expect(content.truncated?.at(-1)).toBe('…200 more');
    expect(content.truncated?.slice(0, 100)).toEqual(
      Array.from({ length: 300 }, (_, i) => `/metadata/${i}/self`)
        .sort()
        .slice(0, 100),
    );
  });

  it('reduces a 10 MB input to the cap', () => {
    const rows = Array.from({ length: 50_000 }, (_, i) => ({
      id: i,
      name: `customer ${i}`,
      notes: 'n'.repeat(150),
    }));
    const input = { before: { rows: [] }, after: { rows, blob: 'b'.repeat(2_000_000) } };
    const content = buildAuditContent(input, { maxBytes: 60_000 });
    expect(bytesOf(content)).toBeLessThanOrEqual(60_000);
    expect(content.truncated?.length).toBeGreaterThan(0);
  });

  it(`refuses a maxBytes below ${MIN_CONTENT_BYTES} with CONFIG_INVALID`, () => {
    const attempt = (): AuditContent => buildAuditContent({ after: 1 }, { maxBytes: 100 });
    expect(attempt).toThrow();
    try {
      attempt();
    } catch (err) {
      expect(isDocketError(err, 'CONFIG_INVALID')).toBe(true);
    }
  });
});

// ---- property tests ----------------------------------------------------------------------

const NORMAL_KEYS = ['a', 'b', 'id', 'name', 'items', 'x/y', 'm~n', '', 'nested', '0'];
const SECRET_KEYS = ['password', 'API_KEY', 'api-key', 'Access_Token', 'cookie', 'PIN', 'ssn'];
const EXTRA_SECRETS = ['pin', 'ssn'];

const text = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 300 }) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(
        fc.constantFrom('x', 'é', '😀', '"\\\n\u0001', '\u2028'),
        fc.integer({ min: 500, max: 40_000 }),
      )
      .map(([unit, n]) => unit.repeat(n)),
  },
);

/** Nested values with large strings, long arrays and (sometimes) secret keys. */
const bulky: fc.Arbitrary<JsonValue> = fc.letrec<{
  value: JsonValue;
  array: JsonValue[];
  object: JsonObject;
}>((tie) => ({
  value: fc.oneof(
    { maxDepth: 5, depthSize: 'small' },
    text,
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.boolean(),
    fc.constant(null),
    tie('array'),
    tie('object'),
  ),
  array: fc.oneof(
    fc.array(tie('value'), { maxLength: 6 }),
    fc.array(fc.oneof(fc.integer(), fc.string({ maxLength: 12 })), {
      minLength: 50,
      maxLength: 3000,
      size: 'max',
    }),
    fc.array(fc.record({ id: fc.nat(), name: fc.string({ maxLength: 20 }) }), {
      minLength: 50,
      maxLength: 1500,
      size: 'max',
    }),
  ),
  object: fc.oneof(
    fc.dictionary(fc.constantFrom(...NORMAL_KEYS, ...SECRET_KEYS), tie('value'), { maxKeys: 6 }),
    fc.dictionary(fc.string({ maxLength: 8 }), fc.integer(), {
      minKeys: 50,
      maxKeys: 1500,
      size: 'max',
    }),
  ),
})).object;

// fast-check types JSON objects more loosely (optional members); the values are the same.
const json = (maxDepth?: number): fc.Arbitrary<JsonValue> =>
  fc.jsonValue({ maxDepth }) as fc.Arbitrary<JsonValue>;

/** `before` and an `after` made from it by a few edits at random places. */
const nearPair = fc
  .tuple(
    json(4),
    fc.array(fc.tuple(fc.array(fc.nat(), { maxLength: 4 }), fc.option(json(2)), fc.string()), {
      maxLength: 4,
    }),
  )
  .map(([before, edits]): [JsonValue, JsonValue] => {
    let after = structuredClone(before) as JsonValue;
    for (const [route, replacement, newKey] of edits)
      after = edit(after, route, replacement, newKey);
    return [before, after];
  });

function edit(
  value: JsonValue,
  route: number[],
  replacement: JsonValue | null,
  newKey: string,
): JsonValue {
  const [step, ...rest] = route;
  const children = Array.isArray(value)
    ? value.length
    : isObject(value)
      ? Object.keys(value).length
      : 0;
  if (step === undefined || children === 0) {
    if (isObject(value)) setOwn(value, newKey, replacement);
    else if (Array.isArray(value)) value.push(replacement);
    else return replacement;
    return value;
  }
  if (Array.isArray(value)) {
    const i = step % children;
    if (replacement === null && rest.length === 0) value.splice(i);
    else value[i] = edit(value[i]!, rest, replacement, newKey);
  } else if (isObject(value)) {
    const key = Object.keys(value)[step % children]!;
    if (replacement === null && rest.length === 0) delete value[key];
    else setOwn(value, key, edit(value[key]!, rest, replacement, newKey));
  }
  return value;
}

/** Asserts every listed path exists and every value outside them equals the untruncated one. */
function expectTruncatedOnlyWhereListed(out: AuditContent, full: AuditContent): void {
  const json = viaJson(out) as JsonObject;
  const listed = out.truncated ?? [];
  const paths = listed.filter((p) => p.startsWith('/'));
  expect(paths.filter((p) => !resolve(json, p).found)).toEqual([]);
  if (paths.length < listed.length) return; // capped list: the unlisted cuts are unknown
  // "/diff" means entries were dropped from the end; the kept ones must be intact.
  const cuts = paths.filter((p) => p !== '/diff');
  const covered = (p: string): boolean => cuts.some((t) => p === t || p.startsWith(`${t}/`));
  const differences: string[] = [];
  const compare = (path: string, actual: unknown, expected: unknown): void => {
    if (covered(path)) return;
    if (Array.isArray(expected) && Array.isArray(actual) && actual.length === expected.length) {
      expected.forEach((v, i) => compare(`${path}/${i}`, actual[i], v));
    } else if (isObject(expected) && isObject(actual)) {
      const keys = Object.keys(expected);
      if (Object.keys(actual).length !== keys.length) differences.push(path);
      for (const k of keys) compare(`${path}/${escapeKey(k)}`, actual[k], expected[k]);
    } else if (JSON.stringify(actual) !== JSON.stringify(expected)) differences.push(path);
  };
  const fullJson = viaJson(full) as JsonObject;
  const entries = (json.diff ?? []) as JsonValue[];
  if (!paths.includes('/diff')) expect(entries.length).toBe(full.diff?.length ?? 0);
  compare('/diff', entries, ((fullJson.diff ?? []) as JsonValue[]).slice(0, entries.length));
  compare('/metadata', json.metadata, fullJson.metadata);
  expect(differences).toEqual([]);
}

describe('buildAuditContent: properties', () => {
  it('replaying the diff on before gives after, when no key is secret and nothing is cut', () => {
    const pairs = fc.oneof(
      nearPair,
      fc.tuple(fc.jsonValue(), fc.jsonValue()),
      fc.tuple(fc.object(), fc.object()),
    );
    fc.assert(
      fc.property(pairs, ([before, after]) => {
        fc.pre(!hasSecretKey(before) && !hasSecretKey(after));
        const content = buildAuditContent({ before, after }, UNLIMITED);
        expect(content.truncated).toBeUndefined();
        expect(applyDiff(viaJson(before) as JsonValue, content.diff!)).toEqual(viaJson(after));
      }),
      { numRuns: 500 },
    );
  });

  it('lists exactly the leaves of after on creation', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (after) => {
        fc.pre(!hasSecretKey(after));
        const diff = buildAuditContent({ after }, UNLIMITED).diff!;
        const expected = leaves(viaJson(after) as JsonValue);
        expect(diff.map((e) => [e.path, e.after])).toEqual(expected);
        expect(diff.every((e) => e.op === 'added')).toBe(true);
      }),
    );
  });

  it('measures the serialized size of any JSON value exactly, lone surrogates and escapes included', () => {
    const anyText = fc.string({ unit: 'binary', maxLength: 40 });
    const value = fc.jsonValue({ stringUnit: 'binary' }) as fc.Arbitrary<JsonValue>;
    fc.assert(
      fc.property(fc.oneof(value, anyText), (v) => {
        expect(jsonBytes(v)).toBe(Buffer.byteLength(JSON.stringify(v), 'utf8'));
      }),
      { numRuns: 1000 },
    );
  });

  it('cuts a string within its byte budget, on a code point boundary, keeping a true prefix', () => {
    const anyText = fc.string({ unit: 'binary', minLength: 1, maxLength: 400 });
    fc.assert(
      fc.property(anyText, fc.integer({ min: 40, max: 600 }), (text, max) => {
        const cut = cutString(text, max);
        const prefix = cut.slice(0, cut.lastIndexOf('…'));
        expect(Buffer.byteLength(JSON.stringify(cut), 'utf8')).toBeLessThanOrEqual(max);
        expect(text.startsWith(prefix)).toBe(true);
        expect(
          /[\uD800-\uDBFF]$/.test(prefix) && /^[\uDC00-\uDFFF]/.test(text.slice(prefix.length)),
        ).toBe(false);
      }),
      { numRuns: 1000 },
    );
  });

  it('accounts the size of every shrunk value exactly and reports what it saved', () => {
    const sizeOf = (v: JsonValue): number => Buffer.byteLength(JSON.stringify(v), 'utf8');
    const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
    fc.assert(
      fc.property(
        fc.array(bulky, { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 512, max: 65_536 }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        (values, maxBytes, share) => {
          const total = sum(values.map(sizeOf));
          const sized = new SizedSlots(values.map((value, i) => ({ pointer: `/v/${i}`, value })));
          const saved = sized.shrink(Math.ceil(total * share), maxBytes);
          const shrunk = sized.result();
          expect(shrunk.bytes).toEqual(shrunk.values.map(sizeOf));
          expect(total - sum(shrunk.bytes)).toBe(saved);
        },
      ),
      { numRuns: 200, ...SHRINK_LIMIT },
    );
  });

  it('keeps content that fits exactly whole, and cuts something when one byte is missing', () => {
    fc.assert(
      fc.property(bulky, bulky, (after, metadata) => {
        const full = buildAuditContent({ after, metadata }, UNLIMITED);
        const size = bytesOf(full);
        fc.pre(size > MIN_CONTENT_BYTES);
        expect(buildAuditContent({ after, metadata }, { maxBytes: size })).toEqual(full);
        const tight = buildAuditContent({ after, metadata }, { maxBytes: size - 1 });
        expect(tight.truncated?.length).toBeGreaterThan(0);
        expect(bytesOf(tight)).toBeLessThan(size);
      }),
      { numRuns: 100, ...SHRINK_LIMIT },
    );
  });

  it('keeps the serialized content within maxBytes for any input and any maxBytes', () => {
    fc.assert(
      fc.property(
        fc.option(bulky, { nil: undefined }),
        fc.option(bulky, { nil: undefined }),
        fc.option(bulky, { nil: undefined }),
        fc.integer({ min: 512, max: 65_536 }),
        (before, after, metadata, maxBytes) => {
          const content = buildAuditContent({ before, after, metadata }, { maxBytes });
          expect(bytesOf(content)).toBeLessThanOrEqual(maxBytes);
        },
      ),
      { numRuns: 200, ...SHRINK_LIMIT },
    );
  });

  it('lists only paths that exist in the output and changes nothing outside them', () => {
    fc.assert(
      fc.property(
        fc.option(bulky, { nil: undefined }),
        bulky,
        bulky,
        fc.integer({ min: 512, max: 65_536 }),
        (before, after, metadata, maxBytes) => {
          const input = { before, after, metadata, secretFields: EXTRA_SECRETS };
          const out = buildAuditContent(input, { maxBytes });
          expectTruncatedOnlyWhereListed(out, buildAuditContent(input, UNLIMITED));
        },
      ),
      { numRuns: 200, ...SHRINK_LIMIT },
    );
  });

  it('never lets a secret value appear anywhere in the output', () => {
    const marker = fc.nat().map((n) => `SECRET${n}Z`);
    const plain = fc.string({ unit: fc.constantFrom('a', 'b', ' ', 'é', '😀'), maxLength: 30 });
    const secretValue = fc.oneof(
      marker,
      fc.array(marker, { maxLength: 3 }),
      fc.record({ inner: marker, deeper: fc.record({ list: fc.array(marker) }) }),
    );
    const withSecrets = fc.letrec<{ node: unknown }>((tie) => ({
      node: fc.oneof(
        { maxDepth: 4 },
        plain,
        fc.integer(),
        fc.array(tie('node'), { maxLength: 4 }),
        fc
          .tuple(
            fc.dictionary(fc.constantFrom(...NORMAL_KEYS), tie('node'), { maxKeys: 4 }),
            fc.dictionary(fc.constantFrom(...SECRET_KEYS), secretValue, { maxKeys: 3 }),
          )
          .map(([normal, secret]) => ({ ...normal, ...secret })),
        fc.tuple(fc.constantFrom(...SECRET_KEYS), secretValue).map(([k, v]) => new Map([[k, v]])),
      ),
    })).node;
    fc.assert(
      fc.property(
        withSecrets,
        withSecrets,
        withSecrets,
        fc.integer({ min: 512, max: 65_536 }),
        (before, after, metadata, maxBytes) => {
          const input = { before, after, metadata, secretFields: EXTRA_SECRETS };
          expect(JSON.stringify(buildAuditContent(input, { maxBytes }))).not.toContain('SECRET');
        },
      ),
      { numRuns: 300, ...SHRINK_LIMIT },
    );
  });

  it('never throws, whatever it is given, and always returns plain JSON', () => {
    const hostile = fc.constantFrom(
      (): unknown => {
        const o: Record<string, unknown> = { a: 1 };
        o.loop = [o, { back: o }];
        return o;
      },
      (): unknown => ({
        get boom(): never {
          throw new Error('getter');
        },
      }),
      (): unknown => ({
        toJSON(): never {
          throw new Error('toJSON');
        },
      }),
      (): unknown => {
        const { proxy, revoke } = Proxy.revocable({}, {});
        revoke();
        return proxy;
      },
      (): unknown => new Map<unknown, unknown>([[Object.create(null), 1]]),
      (): unknown => Object.assign(Object.create(null) as object, { x: 1n }),
      (): unknown => [new WeakMap(), Promise.resolve(), Symbol('s'), () => 1],
    );
    const anything = fc.anything({
      maxDepth: 4,
      withBigInt: true,
      withBoxedValues: true,
      withDate: true,
      withMap: true,
      withNullPrototype: true,
      withObjectString: true,
      withSet: true,
      withSparseArray: true,
      withTypedArray: true,
    });
    const input = fc.oneof(
      anything,
      fc.tuple(anything, hostile).map(([a, make]) => ({ a, h: make() })),
    );
    fc.assert(
      fc.property(input, input, input, fc.integer({ min: 512, max: 65_536 }), (b, a, m, max) => {
        const content = buildAuditContent({ before: b, after: a, metadata: m }, { maxBytes: max });
        expect(viaJson(content)).toEqual(content);
        expect(bytesOf(content)).toBeLessThanOrEqual(max);
      }),
      { numRuns: 300, ...SHRINK_LIMIT },
    );
  });
});
