import { types } from 'node:util';
import { DocketError } from '../core/errors.js';
import {
  diffJson,
  fromPointer,
  isJsonObject,
  setMember,
  toPointer,
  type AuditDiffEntry,
  type DiffResult,
  type JsonObject,
  type JsonValue,
} from './diff.js';
import { createSecretFieldTest, REDACTED, type SecretFieldTest } from './redact.js';
import { jsonBytes, jsonStringBytes, SizedSlots, TRUNCATED, type JsonSlot } from './truncate.js';

export type { AuditDiffEntry, JsonValue } from './diff.js';
export { DEFAULT_SECRET_FIELDS, isSecretField } from './redact.js';

/** What is stored with an audit event besides its columns (SPEC A-2). */
export interface AuditContent {
  /** Changes from `before` to `after`; absent when neither was given. */
  diff?: AuditDiffEntry[];
  /** The application's context, secret keys redacted. */
  metadata?: JsonValue;
  /** JSON Pointers of values cut, replaced or dropped to fit, sorted; capped with "…N more". */
  truncated?: string[];
}

/** What an application passes to `audit.record(...)`, before any cleaning. */
export interface AuditContentInput {
  /** The resource before the action; default none (a creation). */
  before?: unknown;
  /** The resource after the action; default none (a deletion). */
  after?: unknown;
  /** Free-form context; default none. */
  metadata?: unknown;
  /** The resource type's secret field names, on top of DEFAULT_SECRET_FIELDS; default none. */
  secretFields?: readonly string[];
}

/** Limits of the stored content. */
export interface AuditContentOptions {
  /** Most UTF-8 bytes `JSON.stringify(content)` may take, >= MIN_CONTENT_BYTES; required. */
  maxBytes: number;
}

/** Below this the skeleton of a truncated event (markers, truncated list) may not fit. */
export const MIN_CONTENT_BYTES = 256;

const MAX_DEPTH = 32;
// Guards against inputs that share one object many times (a DAG expands when serialized).
const NODE_BUDGET = 5_000_000;
const MAX_LISTED_PATHS = 100;
const CIRCULAR = '[Circular]';
const MAX_DEPTH_MARK = '[MaxDepth]';
const UNSERIALIZABLE = '[Unserializable]';
const PLACEHOLDERS: ReadonlySet<JsonValue> = new Set([
  CIRCULAR,
  MAX_DEPTH_MARK,
  UNSERIALIZABLE,
  TRUNCATED,
]);
// `{"path":"","op":"added"}` plus a comma: no entry is smaller, so no more than this can fit.
const MIN_ENTRY_BYTES = 25;

/** Diff plus redacted metadata within `maxBytes`; odd input never throws, cuts are listed. */
export function buildAuditContent(
  input: AuditContentInput,
  options: AuditContentOptions,
): AuditContent {
  const { maxBytes } = options;
  if (!(maxBytes >= MIN_CONTENT_BYTES)) {
    const message = `audit content needs maxBytes >= ${MIN_CONTENT_BYTES}`;
    throw new DocketError('CONFIG_INVALID', message, { maxBytes });
  }
  const isSecret = createSecretFieldTest(input.secretFields);
  const before = normalizeJson(input.before);
  const after = normalizeJson(input.after);
  const metadata = normalizeJson(input.metadata, isSecret);
  const limit = Math.floor(maxBytes / MIN_ENTRY_BYTES) + 1;
  const diff =
    before.value === undefined && after.value === undefined
      ? undefined
      : diffJson(before.value, after.value, { isSecret, limit });
  const replaced = [
    ...locateInDiff(diff, 'before', before.replaced),
    ...locateInDiff(diff, 'after', after.replaced),
    ...metadata.replaced.map((p) => `/metadata${p}`),
  ];
  return fitContent({ diff, metadata: metadata.value, replaced }, maxBytes);
}

// A JSON-safe copy of any value and the pointers of what had to be replaced on the way.
interface NormalizedJson {
  value: JsonValue | undefined;
  replaced: string[];
}

// Converts any value as JSON.stringify would, minus its throws; secret keys become "[redacted]".
function normalizeJson(input: unknown, redactKey?: SecretFieldTest): NormalizedJson {
  const normalizer = new Normalizer(redactKey);
  return { value: normalizer.value(input), replaced: normalizer.replaced };
}

class Normalizer {
  readonly replaced: string[] = [];
  private readonly path: (string | number)[] = [];
  private readonly ancestors: object[] = []; // at most MAX_DEPTH, so a list beats a Set
  private budget = NODE_BUDGET;

  constructor(private readonly redactKey: SecretFieldTest | undefined) {}

  value(input: unknown): JsonValue | undefined {
    switch (typeof input) {
      case 'string':
      case 'boolean':
        return input;
      case 'number':
        return Number.isFinite(input) ? input || 0 : null; // `|| 0`: JSON has no -0
      case 'bigint':
        return input.toString();
      case 'object':
        return input === null ? null : this.object(input, true);
      default:
        return undefined; // undefined, functions, symbols
    }
  }

  // Anything reachable from here may throw (proxies, getters, toJSON); the node is replaced.
  private object(input: object, useToJson: boolean): JsonValue | undefined {
    const depth = this.path.length;
    try {
      return this.convert(input, useToJson);
    } catch {
      this.path.length = depth;
      return this.mark(UNSERIALIZABLE);
    }
  }

  private convert(input: object, useToJson: boolean): JsonValue | undefined {
    if (this.ancestors.includes(input)) return this.mark(CIRCULAR);
    const proto: unknown = Object.getPrototypeOf(input);
    const plain = proto === Object.prototype || proto === null;
    if (!plain && proto !== Array.prototype) {
      const special = builtinValue(input);
      if (special !== undefined) return special === BOXED ? this.boxed(input) : special;
    }
    const toJSON: unknown = useToJson && (input as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') {
      const result: unknown = toJSON.call(input, String(this.path.at(-1) ?? ''));
      return typeof result === 'object' && result !== null
        ? this.object(result, false)
        : this.value(result);
    }
    if (this.path.length >= MAX_DEPTH) return this.mark(MAX_DEPTH_MARK);
    return this.container(input, plain);
  }

  private boxed(input: object): JsonValue {
    return this.value(input.valueOf()) ?? null;
  }

  private container(input: object, plain: boolean): JsonValue {
    const collection = !plain && (Array.isArray(input) || types.isSet(input) || types.isMap(input));
    const keys = collection ? undefined : Object.keys(input);
    this.budget -= keys?.length ?? collectionSize(input);
    if (this.budget < 0) return this.mark(TRUNCATED);
    this.ancestors.push(input);
    try {
      if (keys !== undefined) return this.members(input, keys);
      if (types.isMap(input)) return this.map(input);
      return this.array(Array.isArray(input) ? input : [...(input as ReadonlySet<unknown>)]);
    } finally {
      this.ancestors.pop();
    }
  }

  private array(items: readonly unknown[]): JsonValue[] {
    const out = new Array<JsonValue>(items.length);
    for (let i = 0; i < items.length; i++) out[i] = this.child(items, i) ?? null;
    return out;
  }

  private members(input: object, keys: readonly string[]): JsonObject {
    const out: JsonObject = {};
    for (const key of keys) {
      const value = this.redactKey?.(key) ? REDACTED : this.child(input, key);
      if (value !== undefined) setMember(out, key, value);
    }
    return out;
  }

  private map(input: ReadonlyMap<unknown, unknown>): JsonObject {
    const out: JsonObject = {};
    for (const [k, v] of input) {
      const key = typeof k === 'string' ? k : safeString(k);
      this.path.push(key);
      const value = this.redactKey?.(key) ? REDACTED : this.value(v);
      this.path.pop();
      if (value !== undefined) setMember(out, key, value);
    }
    return out;
  }

  // Reading a property runs getters, which may throw; converting the value never does.
  private child(container: object, key: string | number): JsonValue | undefined {
    this.path.push(key);
    let value: JsonValue | undefined;
    try {
      value = this.value((container as Record<string | number, unknown>)[key]);
    } catch {
      value = this.mark(UNSERIALIZABLE);
    }
    this.path.pop();
    return value;
  }

  private mark(placeholder: string): string {
    this.replaced.push(toPointer(this.path));
    return placeholder;
  }
}

const BOXED = Symbol('boxed');

// Built-in objects with a JSON form of their own; only checked for non-plain prototypes.
function builtinValue(input: object): JsonValue | typeof BOXED | undefined {
  if (types.isDate(input)) return Number.isNaN(input.getTime()) ? null : input.toISOString();
  if (types.isAnyArrayBuffer(input) || ArrayBuffer.isView(input)) {
    return `[Binary ${input.byteLength} bytes]`;
  }
  if (types.isBoxedPrimitive(input)) return BOXED;
  if (types.isNativeError(input) || input instanceof Error) {
    return { name: String(input.name), message: String(input.message) };
  }
  return undefined;
}

function collectionSize(input: object): number {
  return Array.isArray(input) ? input.length : (input as ReadonlySet<unknown>).size;
}

function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return UNSERIALIZABLE;
  }
}

// Normalization reports pointers into `before`/`after`; in the content they live inside the
// value of the diff entry that covers them (entries at secret keys carry no value).
function locateInDiff(
  diff: DiffResult | undefined,
  side: 'before' | 'after',
  pointers: readonly string[],
): string[] {
  if (diff === undefined || pointers.length === 0) return [];
  const entryAt = new Map<string, number>();
  diff.entries.forEach((e, i) => e[side] !== undefined && entryAt.set(e.path, i));
  return pointers.flatMap((p) => {
    for (let end = p.length; ; end = p.lastIndexOf('/', end - 1)) {
      const i = entryAt.get(p.slice(0, end));
      if (i !== undefined) return [`/diff/${i}/${side}${p.slice(end)}`];
      if (end === 0) return [];
    }
  });
}

interface Draft {
  diff: DiffResult | undefined;
  metadata: JsonValue | undefined;
  /** Pointers of placeholders put in by normalization. */
  replaced: string[];
}

// `{…}` or `[…]` around parts that are already sized (members include their `"key":`).
function enclosedBytes(parts: readonly number[]): number {
  return parts.length === 0 ? 2 : parts.reduce((sum, part) => sum + part + 1, 1);
}

function memberBytes(key: string, valueBytes: number): number {
  return jsonStringBytes(key) + 1 + valueBytes;
}

function entryBytes(entry: AuditDiffEntry, before?: number, after?: number): number {
  const parts = [
    memberBytes('path', jsonStringBytes(entry.path)),
    memberBytes('op', jsonStringBytes(entry.op)),
  ];
  if (before !== undefined) parts.push(memberBytes('before', before));
  if (after !== undefined) parts.push(memberBytes('after', after));
  if (entry.secret) parts.push(memberBytes('secret', 4));
  return enclosedBytes(parts);
}

// Sizes of the content's parts; `diff` holds the size of each entry.
interface ContentSizes {
  diff?: number[];
  metadata?: number;
}

function contentBytes(sizes: ContentSizes, kept: number, list?: readonly string[]): number {
  const parts: number[] = [];
  if (sizes.diff) parts.push(memberBytes('diff', enclosedBytes(sizes.diff.slice(0, kept))));
  if (sizes.metadata !== undefined) parts.push(memberBytes('metadata', sizes.metadata));
  if (list?.length) parts.push(memberBytes('truncated', enclosedBytes(list.map(jsonStringBytes))));
  return enclosedBytes(parts);
}

/** Slots of every value in the content, each paired with where its shrunk copy goes. */
function slotsOf(draft: Draft): { slots: JsonSlot[]; store: ((v: JsonValue) => void)[] } {
  const slots: JsonSlot[] = [];
  const store: ((v: JsonValue) => void)[] = [];
  draft.diff?.entries.forEach((entry, i) => {
    for (const side of ['before', 'after'] as const) {
      const value = entry[side];
      if (value === undefined) continue;
      slots.push({ pointer: `/diff/${i}/${side}`, value });
      store.push((v) => (entry[side] = v));
    }
  });
  if (draft.metadata !== undefined) {
    slots.push({ pointer: '/metadata', value: draft.metadata });
    store.push((v) => (draft.metadata = v));
  }
  return { slots, store };
}

// Sizes in the order slotsOf lists the values: each entry's before then after, then metadata.
function measure(draft: Draft, bytes: readonly number[]): ContentSizes {
  let next = 0;
  const take = (present: boolean): number | undefined => (present ? bytes[next++] : undefined);
  const diff = draft.diff?.entries.map((e) =>
    entryBytes(e, take(e.before !== undefined), take(e.after !== undefined)),
  );
  return { diff, metadata: take(draft.metadata !== undefined) };
}

// Cuts values (strings, arrays, subtrees) until the content fits, then drops trailing entries.
function fitContent(draft: Draft, maxBytes: number): AuditContent {
  const { slots, store } = slotsOf(draft);
  const entries = draft.diff?.entries.length ?? 0;
  const whole = assemble(draft, entries, [], Infinity);
  // Counting stops past maxBytes: a 10 MB value is only walked once, by SizedSlots.
  const sizes = measure(
    draft,
    slots.map((slot) => jsonBytes(slot.value, maxBytes)),
  );
  if (contentBytes(sizes, entries, whole.truncated) <= maxBytes) return whole;
  // Room kept for the truncated list, so the cuts it reports cannot push the event over.
  const listBytes = Math.min(4096, Math.max(64, Math.floor(maxBytes / 8)));
  const budget = maxBytes - listBytes - memberBytes('truncated', 0) - 1;
  const sized = new SizedSlots(slots);
  sized.shrink(contentBytes(measure(draft, sized.bytes()), entries) - budget, maxBytes);
  const shrunk = sized.result();
  shrunk.values.forEach((value, i) => store[i]!(value));
  const shrunkSizes = measure(draft, shrunk.bytes);
  let [fits, tooMany] = [0, entries + 1];
  while (tooMany - fits > 1) {
    const mid = (fits + tooMany) >>> 1;
    if (contentBytes(shrunkSizes, mid) <= budget) fits = mid;
    else tooMany = mid;
  }
  return assemble(draft, fits, shrunk.truncated, listBytes);
}

function assemble(
  draft: Draft,
  kept: number,
  cuts: readonly string[],
  listBytes: number,
): AuditContent {
  const content: AuditContent = {};
  if (draft.diff) content.diff = draft.diff.entries.slice(0, kept);
  if (draft.metadata !== undefined) content.metadata = draft.metadata;
  // Placeholders inside secret or dropped parts never reached the content: not reported.
  const paths = [
    ...draft.replaced.filter((p) => PLACEHOLDERS.has(valueIn(content, p) ?? null)),
    ...cuts.filter((p) => valueIn(content, p) !== undefined),
  ];
  if (draft.diff && kept < draft.diff.total) paths.push('/diff');
  const truncated = capPaths([...new Set(paths)].sort(), listBytes);
  if (truncated.length > 0) content.truncated = truncated;
  return content;
}

// The first paths (at most MAX_LISTED_PATHS) that fit in `maxBytes`, then "…N more".
function capPaths(paths: readonly string[], maxBytes: number): string[] {
  const kept: string[] = [];
  let used = 1;
  for (const path of paths) {
    const rest = paths.length - kept.length - 1;
    const cost = jsonStringBytes(path) + 1;
    const marker = rest > 0 ? jsonStringBytes(`…${rest} more`) + 1 : 0;
    if (kept.length === MAX_LISTED_PATHS || used + cost + marker > maxBytes) break;
    kept.push(path);
    used += cost;
  }
  if (kept.length < paths.length) kept.push(`…${paths.length - kept.length} more`);
  return kept;
}

// The value a pointer designates in the content; the diff list itself counts as `null`.
function valueIn(content: AuditContent, pointer: string): JsonValue | undefined {
  const [field, index = '', side, ...rest] = fromPointer(pointer);
  if (field === 'metadata') {
    return content.metadata === undefined
      ? undefined
      : valueAt(content.metadata, fromPointer(pointer).slice(1));
  }
  if (field !== 'diff' || content.diff === undefined) return undefined;
  if (side === undefined) return index === '' ? null : undefined;
  const entry = /^(0|[1-9]\d*)$/.test(index) ? content.diff[Number(index)] : undefined;
  const value = side === 'before' ? entry?.before : side === 'after' ? entry?.after : undefined;
  return value === undefined ? undefined : valueAt(value, rest);
}

function valueAt(root: JsonValue, keys: readonly string[]): JsonValue | undefined {
  let node: JsonValue | undefined = root;
  for (const key of keys) {
    if (Array.isArray(node)) node = /^(0|[1-9]\d*)$/.test(key) ? node[Number(key)] : undefined;
    else if (isJsonObject(node) && Object.hasOwn(node, key)) node = node[key];
    else return undefined;
    if (node === undefined) return undefined;
  }
  return node;
}
